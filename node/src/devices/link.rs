//! The link supervisor: runs the link monitor (TCP probes of the primary link and the
//! uplink choice), feeds the technician's `link` panel, writes every change of uplink to
//! the node log (and tracing), and alerts the technician when the primary link has been
//! down longer than `link.alert_after_down_minutes` — once per outage.

use std::time::Duration;

use jiff::Timestamp;
use markaz_hardware::link::{
    ChangeReason, LinkHealth, LinkMonitor, LinkSettings, LinkStatus, Uplink, UplinkChange,
};
use markaz_hardware::modem::ModemStatus;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::outbox::{AlertKind, Alerter};
use crate::app::{App, node_log};

/// The snake_case name of an uplink.
pub fn uplink_name(u: Uplink) -> &'static str {
    match u {
        Uplink::Primary => "primary",
        Uplink::Modem => "modem",
        Uplink::Offline => "offline",
        Uplink::Unknown => "unknown",
    }
}

/// Why the uplink changed, in words a technician reads.
pub fn reason_text(r: ChangeReason) -> String {
    match r {
        ChangeReason::PrimaryDown { failures } => {
            format!("primary link down after {failures} failed probe rounds")
        }
        ChangeReason::PrimaryRestored { held } => {
            format!("primary link back and stable for {} s", held.as_secs())
        }
        ChangeReason::PrimaryUp => "primary link came up".into(),
        ChangeReason::ModemRegistered => "modem registered while the primary link is down".into(),
        ChangeReason::ModemUnavailable => "modem lost registration or went away".into(),
    }
}

/// One line for the node log.
pub fn change_text(c: &UplinkChange) -> String {
    format!(
        "uplink {} → {}: {}",
        uplink_name(c.from),
        uplink_name(c.to),
        reason_text(c.reason)
    )
}

/// The `link` panel: the probe targets, the monitor's latest status, and since when
/// the primary link is down (wall time, from the first round that found it down).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPanel {
    /// `host:port` of each probe target.
    pub targets: Vec<String>,
    /// The monitor's status.
    pub status: LinkStatus,
    /// When the primary was first found down in this outage.
    pub primary_down_since: Option<Timestamp>,
}

/// Starts the link monitor and supervises it until `cancel`; `out` receives every
/// status (the sync client reads the uplink from it).
pub async fn supervise(
    app: App,
    settings: LinkSettings,
    modem: watch::Receiver<ModemStatus>,
    out: watch::Sender<Option<LinkStatus>>,
    alerter: Alerter,
    alert_after: Duration,
    cancel: CancellationToken,
) {
    let targets = settings.targets.clone();
    let (monitor, task) = LinkMonitor::spawn(settings, modem, cancel.child_token());
    let mut changes = monitor.subscribe();
    let mut status = monitor.status();
    // When the primary went down: wall time for the panel, monotonic for the alert.
    let mut down: Option<(Timestamp, Instant)> = None;
    let mut alerted = false;
    loop {
        let s = status.borrow_and_update().clone();
        // Down time counts from the first round that found it down, never from start.
        match (s.primary, down) {
            (LinkHealth::Unknown, _) => down = None,
            (LinkHealth::Down { .. }, None) => {
                down = Some((app.now(), Instant::now()));
                alerted = false;
            }
            (LinkHealth::Up { .. }, Some(_)) => down = None,
            _ => {}
        }
        app.status.link.send_replace(Some(LinkPanel {
            targets: targets.clone(),
            status: s.clone(),
            primary_down_since: down.map(|d| d.0),
        }));
        out.send_replace(Some(s.clone()));
        let alert_at = down.filter(|_| !alerted).map(|(_, i)| i + alert_after);
        tokio::select! {
            () = cancel.cancelled() => break,
            r = status.changed() => if r.is_err() { break },
            c = changes.recv() => match c {
                Ok(c) => log_change(&app, &c).await,
                Err(broadcast::error::RecvError::Lagged(n)) => warn!(missed = n, "uplink changes missed"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(alert_at.unwrap_or_else(Instant::now)), if alert_at.is_some() => {
                alerted = true;
                let minutes = alert_after.as_secs() / 60;
                let via = match s.uplink {
                    Uplink::Modem => "المزامنة عبر المودم",
                    _ => "لا اتصال بالمركز الرئيسي",
                };
                let text = format!("الرابط الرئيسي مقطوع منذ أكثر من {minutes} دقيقة؛ {via}.");
                if let Err(e) = alerter.raise(AlertKind::LinkDown, text).await {
                    warn!(error = %e, "cannot raise the link-down alert");
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

async fn log_change(app: &App, c: &UplinkChange) {
    let text = change_text(c);
    info!(from = uplink_name(c.from), to = uplink_name(c.to), "{text}");
    let level = if c.to == Uplink::Offline {
        "warn"
    } else {
        "info"
    };
    let at = app.now();
    if let Err(e) = app
        .db
        .writer
        .write(move |tx| node_log(tx.conn, at, level, "link", &text))
        .await
    {
        warn!(error = %e, "cannot write the node log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_as_a_sentence() {
        let c = UplinkChange {
            from: Uplink::Primary,
            to: Uplink::Modem,
            reason: ChangeReason::PrimaryDown { failures: 5 },
        };
        assert_eq!(
            change_text(&c),
            "uplink primary → modem: primary link down after 5 failed probe rounds"
        );
    }
}
