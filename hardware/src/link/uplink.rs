//! Which uplink the sync should use, and the task that probes the primary link.
//!
//! [`UplinkSelector`] is sans-IO: it takes probe results, the modem's registration and
//! the time, and answers with [`UplinkChange`] events that carry their reason. The rule:
//! the primary (laser) link when it is up, else the modem when it is registered, else
//! offline. Failing back from the modem to a primary that came up again waits
//! `failback_hold` on top of the `up_after` successes, so a link that recovers briefly
//! does not bounce the sync; leaving *offline* for the primary needs no hold.
//!
//! [`LinkMonitor`] is the task around it: TCP-connect probes to the configured targets
//! every `interval` (a round succeeds when any target accepts within `timeout`), the
//! modem's status from its watch channel, the latest [`LinkStatus`] on a watch channel
//! and every change on a broadcast channel (for the log and the sync log).

use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info};

use super::probe::{HealthChange, LinkHealth, ProbeResult, ProbeTracker, Thresholds};
use crate::modem::ModemStatus;

/// The path sync traffic takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// The primary (laser) link, through the OS.
    Primary,
    /// The 3G modem.
    Modem,
    /// Nothing usable: sync waits.
    Offline,
    /// Not known yet: no probe round has finished since start. Sync waits.
    Unknown,
}

/// Why the uplink changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// The primary failed `failures` probe rounds in a row.
    PrimaryDown {
        /// Failed rounds.
        failures: u32,
    },
    /// The primary has been up again for the failback hold.
    PrimaryRestored {
        /// How long it was held before failing back.
        held: Duration,
    },
    /// The primary came up while there was no uplink at all.
    PrimaryUp,
    /// The modem registered while the primary was down.
    ModemRegistered,
    /// The modem lost registration (or went away).
    ModemUnavailable,
}

/// One change of uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkChange {
    /// Previous uplink.
    pub from: Uplink,
    /// New uplink.
    pub to: Uplink,
    /// Why.
    pub reason: ChangeReason,
}

/// The uplink state machine.
#[derive(Debug, Clone)]
pub struct UplinkSelector {
    tracker: ProbeTracker,
    hold: Duration,
    modem_ok: bool,
    current: Uplink,
    primary_up_at: Option<Instant>,
    last_down: u32,
}

impl UplinkSelector {
    /// A selector; the primary starts up or down as given (mwan3 starts it up), or
    /// unknown (`None`): then the uplink is [`Uplink::Unknown`] until the first probe
    /// round decides it, and that first decision is not reported as a change.
    pub fn new(
        thresholds: Thresholds,
        failback_hold: Duration,
        primary_initially_up: Option<bool>,
    ) -> Self {
        Self {
            tracker: ProbeTracker::new(thresholds, primary_initially_up),
            hold: failback_hold,
            modem_ok: false,
            current: match primary_initially_up {
                None => Uplink::Unknown,
                Some(true) => Uplink::Primary,
                Some(false) => Uplink::Offline,
            },
            primary_up_at: None,
            last_down: 0,
        }
    }

    /// The uplink in use.
    pub fn current(&self) -> Uplink {
        self.current
    }

    /// The primary link's health.
    pub fn primary(&self) -> LinkHealth {
        self.tracker.health()
    }

    /// When the failback hold ends, if one is running.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.current, self.primary_up_at) {
            (Uplink::Modem, Some(at)) if self.tracker.health().is_up() => Some(at + self.hold),
            _ => None,
        }
    }

    /// Records a probe round.
    pub fn on_probe(&mut self, result: ProbeResult, now: Instant) -> Option<UplinkChange> {
        match self.tracker.record(result) {
            Some(HealthChange::WentDown { failures }) => {
                self.last_down = failures;
                self.primary_up_at = None;
            }
            Some(HealthChange::CameUp { .. }) => self.primary_up_at = Some(now),
            None => {}
        }
        self.reevaluate(now)
    }

    /// Records the modem's registration.
    pub fn on_modem(&mut self, registered: bool, now: Instant) -> Option<UplinkChange> {
        self.modem_ok = registered;
        self.reevaluate(now)
    }

    /// Lets time pass (ends a failback hold).
    pub fn tick(&mut self, now: Instant) -> Option<UplinkChange> {
        self.reevaluate(now)
    }

    fn reevaluate(&mut self, now: Instant) -> Option<UplinkChange> {
        if self.tracker.health() == LinkHealth::Unknown {
            return None;
        }
        let primary_up = self.tracker.health().is_up();
        let held = self
            .primary_up_at
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
        let target = if primary_up {
            match self.current {
                Uplink::Modem if self.modem_ok && held < self.hold => Uplink::Modem,
                _ => Uplink::Primary,
            }
        } else if self.modem_ok {
            Uplink::Modem
        } else {
            Uplink::Offline
        };
        if target == self.current {
            return None;
        }
        if self.current == Uplink::Unknown {
            // The first state known: not a change of uplink.
            self.current = target;
            return None;
        }
        let reason = match (self.current, target) {
            (Uplink::Modem, Uplink::Primary) if self.modem_ok => {
                ChangeReason::PrimaryRestored { held }
            }
            (Uplink::Modem, Uplink::Primary) => ChangeReason::ModemUnavailable,
            (_, Uplink::Primary) => ChangeReason::PrimaryUp,
            (Uplink::Primary, _) => ChangeReason::PrimaryDown {
                failures: self.last_down,
            },
            (_, Uplink::Modem) => ChangeReason::ModemRegistered,
            (_, Uplink::Offline | Uplink::Unknown) => ChangeReason::ModemUnavailable,
        };
        let change = UplinkChange {
            from: self.current,
            to: target,
            reason,
        };
        self.current = target;
        Some(change)
    }
}

/// Where and how to probe the primary link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// `host:port` targets reached over the primary link (any one answering is enough).
    pub targets: Vec<String>,
    /// Time between probe rounds.
    pub interval: Duration,
    /// Time allowed for one connect.
    pub timeout: Duration,
    /// Hysteresis thresholds.
    pub thresholds: Thresholds,
    /// Time the primary must stay up before the sync fails back from the modem.
    pub failback_hold: Duration,
    /// Whether the primary counts as up (`Some(true)`, mwan3's habit) or down before
    /// the first round; `None` (the default): unknown until the first round decides.
    pub primary_initially_up: Option<bool>,
}

impl LinkSettings {
    /// mwan3-like defaults: every 10 s, 4 s timeout, down 5, up 5; 60 s failback hold.
    pub fn new(targets: Vec<String>) -> Self {
        Self {
            targets,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(4),
            thresholds: Thresholds::default(),
            failback_hold: Duration::from_secs(60),
            primary_initially_up: None,
        }
    }
}

/// The latest view of the links, published on a watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Uplink in use.
    pub uplink: Uplink,
    /// Primary link health.
    pub primary: LinkHealth,
    /// Result of the last probe round.
    pub last_probe: Option<ProbeResult>,
    /// Whether the modem is registered.
    pub modem_registered: bool,
    /// The last change of uplink.
    pub last_change: Option<UplinkChange>,
}

/// Handle to the link monitor task.
#[derive(Debug, Clone)]
pub struct LinkMonitor {
    status: watch::Receiver<LinkStatus>,
    changes: broadcast::Sender<UplinkChange>,
}

impl LinkMonitor {
    /// Starts probing; runs until `cancel` fires.
    pub fn spawn(
        settings: LinkSettings,
        modem: watch::Receiver<ModemStatus>,
        cancel: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let selector = UplinkSelector::new(
            settings.thresholds,
            settings.failback_hold,
            settings.primary_initially_up,
        );
        let (status_tx, status) = watch::channel(LinkStatus {
            uplink: selector.current(),
            primary: selector.primary(),
            last_probe: None,
            modem_registered: false,
            last_change: None,
        });
        let (changes, _) = broadcast::channel(64);
        let task = tokio::spawn(
            monitor(
                settings,
                selector,
                modem,
                status_tx,
                changes.clone(),
                cancel,
            )
            .instrument(tracing::info_span!("link")),
        );
        (Self { status, changes }, task)
    }

    /// Latest link status.
    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// Every uplink change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UplinkChange> {
        self.changes.subscribe()
    }
}

/// One probe round: does any target accept a TCP connection within `timeout`?
pub async fn probe_round(targets: &[String], timeout: Duration) -> ProbeResult {
    let attempts = targets.iter().map(|t| async move {
        matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(t.as_str())).await,
            Ok(Ok(_))
        )
    });
    if futures::future::join_all(attempts)
        .await
        .into_iter()
        .any(|ok| ok)
    {
        ProbeResult::Success
    } else {
        ProbeResult::Failure
    }
}

async fn monitor(
    settings: LinkSettings,
    mut selector: UplinkSelector,
    mut modem: watch::Receiver<ModemStatus>,
    status_tx: watch::Sender<LinkStatus>,
    changes: broadcast::Sender<UplinkChange>,
    cancel: CancellationToken,
) {
    let mut next_probe = tokio::time::Instant::now();
    let mut modem_alive = true;
    let mut last_probe = None;
    let mut last_change = None;
    let registered = modem.borrow_and_update().is_registered();
    let mut change = selector.on_modem(registered, Instant::now());
    loop {
        if let Some(c) = change.take() {
            info!(from = ?c.from, to = ?c.to, reason = ?c.reason, "uplink changed");
            let _ = changes.send(c);
            last_change = Some(c);
        }
        status_tx.send_if_modified(|s| {
            let new = LinkStatus {
                uplink: selector.current(),
                primary: selector.primary(),
                last_probe,
                modem_registered: modem_alive && modem.borrow().is_registered(),
                last_change,
            };
            let modified = *s != new;
            *s = new;
            modified
        });
        let hold_end = selector.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next_probe) => {
                let r = probe_round(&settings.targets, settings.timeout).await;
                last_probe = Some(r);
                change = selector.on_probe(r, Instant::now());
                next_probe = tokio::time::Instant::now() + settings.interval;
            }
            r = modem.changed(), if modem_alive => {
                let registered = r.is_ok() && modem.borrow_and_update().is_registered();
                modem_alive = r.is_ok();
                change = selector.on_modem(registered, Instant::now());
            }
            _ = tokio::time::sleep_until(hold_end.unwrap_or_else(tokio::time::Instant::now)), if hold_end.is_some() => {
                change = selector.tick(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeResult::{Failure as F, Success as S};

    const HOLD: Duration = Duration::from_secs(60);

    /// A selector with the primary up and the modem registered; a clock.
    fn setup() -> (UplinkSelector, Instant) {
        let mut s = UplinkSelector::new(Thresholds::default(), HOLD, Some(true));
        let t0 = Instant::now();
        assert_eq!(s.on_modem(true, t0), None);
        (s, t0)
    }

    fn round(i: u64, t0: Instant) -> Instant {
        t0 + Duration::from_secs(10 * i)
    }

    #[test]
    fn unknown_until_the_first_round_which_decides_without_a_change() {
        let t0 = Instant::now();
        // Primary closed at start, modem registered: the first failed round picks the
        // modem at once, and no "primary → modem" change is reported.
        let mut s = UplinkSelector::new(Thresholds::default(), HOLD, None);
        assert_eq!(s.current(), Uplink::Unknown);
        assert_eq!(s.on_modem(true, t0), None);
        assert_eq!(
            s.current(),
            Uplink::Unknown,
            "the modem alone does not decide"
        );
        assert_eq!(s.on_probe(F, t0), None);
        assert_eq!(s.current(), Uplink::Modem);
        assert!(!s.primary().is_up());
        // A primary that answers the first round is used at once, no change either.
        let mut s = UplinkSelector::new(Thresholds::default(), HOLD, None);
        s.on_modem(true, t0);
        assert_eq!(s.on_probe(S, t0), None);
        assert_eq!(s.current(), Uplink::Primary);
        // From then on, changes are reported as usual.
        for i in 1..5 {
            assert_eq!(s.on_probe(F, round(i, t0)), None);
        }
        let c = s.on_probe(F, round(5, t0)).expect("a change");
        assert_eq!((c.from, c.to), (Uplink::Primary, Uplink::Modem));
        // Without a modem, a failed first round is offline.
        let mut s = UplinkSelector::new(Thresholds::default(), HOLD, None);
        assert_eq!(s.on_probe(F, t0), None);
        assert_eq!(s.current(), Uplink::Offline);
    }

    #[test]
    fn flapping_one_in_five_does_not_flap_the_uplink() {
        let (mut s, t0) = setup();
        for i in 0..300 {
            let r = if i % 5 == 2 { F } else { S };
            assert_eq!(s.on_probe(r, round(i, t0)), None, "round {i}");
            assert_eq!(s.current(), Uplink::Primary);
        }
    }

    #[test]
    fn cut_goes_to_modem_after_n_failures() {
        let (mut s, t0) = setup();
        for i in 0..4 {
            assert_eq!(s.on_probe(F, round(i, t0)), None);
        }
        assert_eq!(
            s.on_probe(F, round(4, t0)),
            Some(UplinkChange {
                from: Uplink::Primary,
                to: Uplink::Modem,
                reason: ChangeReason::PrimaryDown { failures: 5 }
            })
        );
    }

    #[test]
    fn restore_fails_back_only_after_m_successes_and_hold() {
        let (mut s, t0) = setup();
        for i in 0..5 {
            s.on_probe(F, round(i, t0));
        }
        assert_eq!(s.current(), Uplink::Modem);
        // A failure while recovering restarts the count.
        for i in 5..9 {
            assert_eq!(s.on_probe(S, round(i, t0)), None);
        }
        assert_eq!(s.on_probe(F, round(9, t0)), None);
        for i in 10..15 {
            assert_eq!(s.on_probe(S, round(i, t0)), None);
        }
        // Up now (5 successes), but held on the modem.
        let up_at = round(14, t0);
        assert!(s.primary().is_up());
        assert_eq!(s.current(), Uplink::Modem);
        assert_eq!(s.next_deadline(), Some(up_at + HOLD));
        assert_eq!(s.tick(up_at + HOLD - Duration::from_secs(1)), None);
        assert_eq!(
            s.tick(up_at + HOLD),
            Some(UplinkChange {
                from: Uplink::Modem,
                to: Uplink::Primary,
                reason: ChangeReason::PrimaryRestored { held: HOLD }
            })
        );
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn primary_dropping_during_hold_cancels_failback() {
        let (mut s, t0) = setup();
        for i in 0..5 {
            s.on_probe(F, round(i, t0));
        }
        for i in 5..10 {
            s.on_probe(S, round(i, t0));
        }
        for i in 10..15 {
            s.on_probe(F, round(i, t0));
        }
        assert!(!s.primary().is_up());
        assert_eq!(s.tick(round(100, t0)), None);
        assert_eq!(s.current(), Uplink::Modem);
    }

    #[test]
    fn offline_without_modem_and_back() {
        let mut s = UplinkSelector::new(Thresholds::default(), HOLD, Some(true));
        let t0 = Instant::now();
        for i in 0..5 {
            s.on_probe(F, round(i, t0));
        }
        assert_eq!(s.current(), Uplink::Offline);
        let c = s.on_modem(true, round(6, t0)).unwrap();
        assert_eq!(
            (c.to, c.reason),
            (Uplink::Modem, ChangeReason::ModemRegistered)
        );
        let c = s.on_modem(false, round(7, t0)).unwrap();
        assert_eq!(
            (c.to, c.reason),
            (Uplink::Offline, ChangeReason::ModemUnavailable)
        );
        // From offline the primary is taken as soon as it is up: no hold.
        for i in 8..12 {
            assert_eq!(s.on_probe(S, round(i, t0)), None);
        }
        let c = s.on_probe(S, round(12, t0)).unwrap();
        assert_eq!((c.to, c.reason), (Uplink::Primary, ChangeReason::PrimaryUp));
    }

    #[test]
    fn modem_lost_during_hold_takes_primary_at_once() {
        let (mut s, t0) = setup();
        for i in 0..5 {
            s.on_probe(F, round(i, t0));
        }
        for i in 5..10 {
            s.on_probe(S, round(i, t0));
        }
        assert_eq!(s.current(), Uplink::Modem);
        let c = s.on_modem(false, round(11, t0)).unwrap();
        assert_eq!(
            (c.to, c.reason),
            (Uplink::Primary, ChangeReason::ModemUnavailable)
        );
    }
}
