//! The modem supervisor: runs the modem driver, republishes its status on a channel
//! that outlives driver restarts (the link monitor and the outbox hold it), feeds the
//! technician's `modem` panel, writes state changes that matter (dead, recovered) to the
//! node log, and resets the modem when the technician asks.
//!
//! A reset power-cycles the module: the running driver sends `AT+CFUN=1,1`, closes the
//! port, and after its settle time reopens it and runs the whole init sequence again. If
//! the port was not open (the modem was resetting or dead), the driver retries its
//! bring-up at once (power-cycling a module that does not answer). Only a driver that
//! does not answer the request at all is stopped and replaced by a fresh one.

use std::sync::Arc;
use std::time::Duration;

use markaz_hardware::modem::driver::ResetOutcome;
use markaz_hardware::modem::status::{RegStatus, SimState};
use markaz_hardware::modem::{ModemHandle, ModemSettings, ModemState, ModemStatus, Quectel};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::{App, node_log};

/// The snake_case name of a modem state, as the API shows it.
pub fn state_name(s: ModemState) -> &'static str {
    match s {
        ModemState::Starting => "starting",
        ModemState::Ready => "ready",
        ModemState::NoSim => "no_sim",
        ModemState::NotRegistered => "not_registered",
        ModemState::Resetting => "resetting",
        ModemState::Dead => "dead",
        ModemState::NotConfigured => "not_configured",
    }
}

pub fn reg_name(r: RegStatus) -> &'static str {
    match r {
        RegStatus::NotRegistered => "not_registered",
        RegStatus::Home => "home",
        RegStatus::Searching => "searching",
        RegStatus::Denied => "denied",
        RegStatus::Unknown => "unknown",
        RegStatus::Roaming => "roaming",
    }
}

pub fn sim_name(s: &SimState) -> String {
    match s {
        SimState::Unknown => "unknown".into(),
        SimState::Ready => "ready".into(),
        SimState::Missing => "missing".into(),
        SimState::PinRequired => "pin_required".into(),
        SimState::PukRequired => "puk_required".into(),
        SimState::Other(o) => o.clone(),
    }
}

/// The `modem` panel: the port and the driver's latest status (the API writes it as
/// JSON, the technician page in words).
#[derive(Debug, Clone, PartialEq)]
pub struct ModemPanel {
    /// The serial device.
    pub port: String,
    /// What the driver last found.
    pub status: ModemStatus,
}

impl ModemPanel {
    /// Whether signal, registration and operator are old news: the module stopped
    /// answering (timeouts, a reset under way, dead), so they are what it said last.
    pub fn readings_stale(&self) -> bool {
        matches!(
            self.status.state,
            ModemState::Resetting | ModemState::Dead | ModemState::Starting
        ) || self.status.consecutive_timeouts > 0
    }
}

/// Runs the driver (restarting it on `reset`) until `cancel`. `current` receives each
/// new driver handle; `status` the latest status of whichever driver runs.
pub async fn supervise(
    app: App,
    settings: ModemSettings,
    current: watch::Sender<ModemHandle>,
    status: watch::Sender<ModemStatus>,
    reset: Arc<Notify>,
    cancel: CancellationToken,
) {
    let port = settings.port.display().to_string();
    let mut last_state = ModemState::Starting;
    loop {
        let child = cancel.child_token();
        let (handle, task) = ModemHandle::spawn(settings.clone(), Arc::new(Quectel), child.clone());
        let mut rx = handle.status();
        current.send_replace(handle);
        let restart = loop {
            let s = rx.borrow_and_update().clone();
            app.status.modem.send_replace(Some(ModemPanel {
                port: port.clone(),
                status: s.clone(),
            }));
            if s.state != last_state {
                log_change(&app, last_state, &s).await;
                last_state = s.state;
            }
            status.send_replace(s);
            tokio::select! {
                () = cancel.cancelled() => break false,
                () = reset.notified() => {
                    let driver = current.borrow().clone();
                    let outcome = driver.reset().await;
                    let text = match outcome {
                        ResetOutcome::PowerCycled => {
                            "modem reset: AT+CFUN=1,1 sent; port reopened after the settle time"
                        }
                        ResetOutcome::BringUpRetried => {
                            "modem reset: port was closed; bring-up retried now"
                        }
                        ResetOutcome::Unavailable => {
                            "modem reset: driver did not answer; restarting it"
                        }
                    };
                    info!(?outcome, "modem reset requested");
                    let _ = crate::devices::log(&app, "info", "modem", text).await;
                    if outcome == ResetOutcome::Unavailable {
                        break true;
                    }
                }
                r = rx.changed() => if r.is_err() {
                    // The driver ended on its own: start another after a pause.
                    warn!("modem driver ended; restarting");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    break true;
                },
            }
        };
        child.cancel();
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            warn!("modem driver did not stop within 10 s");
        }
        if !restart || cancel.is_cancelled() {
            break;
        }
        info!("modem driver restarting");
    }
    status.send_replace(ModemStatus::not_configured());
}

async fn log_change(app: &App, from: ModemState, s: &ModemStatus) {
    let (level, message) = match s.state {
        ModemState::Dead => (
            "error",
            format!(
                "modem is dead: {}; retrying every few minutes",
                s.last_error.as_deref().unwrap_or("no answer")
            ),
        ),
        ModemState::Ready if from != ModemState::Starting => {
            ("info", "modem ready again".to_owned())
        }
        ModemState::Ready => ("info", "modem ready".to_owned()),
        ModemState::NoSim => (
            "warn",
            format!("modem: SIM not usable ({})", sim_name(&s.sim)),
        ),
        ModemState::NotRegistered if from == ModemState::Ready => {
            ("warn", "modem lost network registration".to_owned())
        }
        _ => return,
    };
    let at = app.now();
    if let Err(e) = app
        .db
        .writer
        .write(move |tx| node_log(tx.conn, at, level, "modem", &message))
        .await
    {
        warn!(error = %e, "cannot write the node log");
    }
}
