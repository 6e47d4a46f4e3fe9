//! The service manager's side of a running node or hub (sd_notify(3)): `READY=1` once
//! it serves, `WATCHDOG=1` every half `WatchdogSec` while a liveness check passes,
//! `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` (not under systemd, or not
//! `Type=notify`) every call is a no-op.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Tells the service manager that start-up is finished.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager that the process is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// With `WATCHDOG_USEC` set, pings every half of it while `check` passes (each check
/// given a quarter of it), until `shutdown`. A check that fails skips that ping and is
/// logged once, with its reason, until checks pass again; systemd restarts the service
/// when no ping came for the whole `WatchdogSec`.
pub fn spawn_watchdog<C, F>(mut check: C, shutdown: CancellationToken)
where
    C: FnMut(Duration) -> F + Send + 'static,
    F: Future<Output = Result<(), String>> + Send,
{
    let Some(limit) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (limit / 2).max(Duration::from_millis(100));
    let timeout = (limit / 4).max(Duration::from_millis(50));
    tracing::info!(?limit, ?every, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match check(timeout).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("liveness check passes again: watchdog pings resume");
                        failing = false;
                    }
                    notify(&[NotifyState::Watchdog]);
                }
                Err(reason) => {
                    if !failing {
                        tracing::error!(%reason, "liveness check failed: no watchdog ping (systemd restarts the service if this lasts)");
                        failing = true;
                    }
                }
            }
        }
    });
}
