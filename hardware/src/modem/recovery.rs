//! The modem's recovery rule as a sans-IO state machine that takes time as input, the
//! way [`crate::link::UplinkSelector`] decides the uplink.
//!
//! The rule: after `hung_after_timeouts` AT timeouts in a row on a module that was
//! answering, power-cycle it (`AT+CFUN=1,1`), close the port, wait `reset_settle`, reopen
//! and run the init sequence again. A bring-up that fails (the port cannot be opened, the
//! init goes unanswered, the port errors) also resets; after more than
//! `resets_before_dead` failed bring-ups in a row the modem is `Dead` and a bring-up is
//! tried only every `dead_retry_interval`. A technician's reset power-cycles an open
//! module, or, when the port is closed, starts the count afresh and tries at once.
//!
//! The driver ([`super::driver`]) only carries the actions out: it feeds events in
//! (`on_answer`, `on_timeout(now)`, `on_ready`, `on_failure(now)`, …), asks
//! [`Recovery::poll_action`] what to do and sleeps until [`Recovery::poll_timeout`].
//! Every path is tested here in microseconds; a few pty tests in the driver keep the
//! wiring honest.

use std::time::Duration;

use tokio::time::Instant;

/// The numbers of the rule (from the modem's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryRules {
    /// AT timeouts in a row after which an answering module is considered hung.
    pub hung_after_timeouts: u32,
    /// Failed bring-ups in a row tolerated before the modem is declared dead.
    pub resets_before_dead: u32,
    /// Wait after a reset (or a failed bring-up) before the port is reopened.
    pub reset_settle: Duration,
    /// Wait between bring-ups once dead.
    pub dead_retry_interval: Duration,
}

/// Where the module is, as far as recovery is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Never brought up yet.
    Starting,
    /// The port is open and the init sequence runs.
    Initialising,
    /// Initialised and answering; status polls, SMS and sockets run.
    Ready,
    /// Closed after a reset or a failed bring-up; reopened at the retry time.
    Resetting,
    /// Too many failed bring-ups; retried only every `dead_retry_interval`.
    Dead,
}

/// Why the module is power-cycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `hung_after_timeouts` AT timeouts in a row.
    Hung,
    /// The technician asked for it.
    Requested,
}

impl Why {
    /// The phrase the driver logs and fails open sockets with.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Hung => "modem reset",
            Why::Requested => "reset requested",
        }
    }
}

/// What the driver should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open the port and run the init sequence; report [`Recovery::on_ready`] or
    /// [`Recovery::on_failure`].
    BringUp,
    /// Send `AT+CFUN=1,1`, close the port, then report [`Recovery::on_power_cycled`].
    PowerCycle(Why),
}

/// The outcome of a failed bring-up, for the log and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Reset; the bring-up is tried again after `reset_settle`.
    Resetting { attempt: u32 },
    /// Declared dead (`newly`: this failure crossed the line, log it once at error level).
    Dead { attempts: u32, newly: bool },
}

/// What a technician's reset request led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetRequest {
    /// The module is open: [`Action::PowerCycle`] is queued.
    PowerCycle,
    /// The port is closed: the failure count starts afresh and a bring-up is due now.
    BringUpNow,
}

/// The recovery state machine.
#[derive(Debug, Clone)]
pub struct Recovery {
    rules: RecoveryRules,
    phase: Phase,
    timeouts: u32,
    failed_bringups: u32,
    retry_at: Instant,
    queued: Option<Why>,
    /// The phase the current bring-up started from.
    opened_from: Phase,
    /// Declared dead and not answering since.
    declared_dead: bool,
}

impl Recovery {
    /// A module not yet brought up; the first bring-up is due at `now`.
    pub fn new(rules: RecoveryRules, now: Instant) -> Self {
        Self {
            rules,
            phase: Phase::Starting,
            timeouts: 0,
            failed_bringups: 0,
            retry_at: now,
            queued: None,
            opened_from: Phase::Starting,
            declared_dead: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The port is open (initialising or ready).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Initialising | Phase::Ready)
    }

    /// AT timeouts in a row since the last answer.
    pub fn consecutive_timeouts(&self) -> u32 {
        self.timeouts
    }

    /// Failed bring-ups in a row.
    pub fn failed_bringups(&self) -> u32 {
        self.failed_bringups
    }

    /// The module answered a command. Returns whether the timeout count changed.
    pub fn on_answer(&mut self) -> bool {
        std::mem::replace(&mut self.timeouts, 0) != 0
    }

    /// A command went unanswered. On a ready module, the `hung_after_timeouts`-th in a
    /// row queues a power cycle; during the init the bring-up decides for itself.
    pub fn on_timeout(&mut self, _now: Instant) {
        self.timeouts = self.timeouts.saturating_add(1);
        if self.phase == Phase::Ready
            && self.timeouts >= self.rules.hung_after_timeouts
            && self.queued.is_none()
        {
            self.queued = Some(Why::Hung);
        }
    }

    /// The driver is opening the port for a bring-up.
    pub fn on_bring_up_started(&mut self) {
        self.opened_from = self.phase;
        self.phase = Phase::Initialising;
    }

    /// The init sequence succeeded. Returns whether this is a recovery (a failed bring-up
    /// or a reset came before), which the driver logs.
    pub fn on_ready(&mut self) -> bool {
        let recovered = self.failed_bringups > 0 || self.opened_from != Phase::Starting;
        self.phase = Phase::Ready;
        self.declared_dead = false;
        self.failed_bringups = 0;
        self.timeouts = 0;
        recovered
    }

    /// A bring-up failed or the open port errored: the port is closed (the driver
    /// writes a best-effort `AT+CFUN=1,1` first). Decides between resetting and dead.
    pub fn on_failure(&mut self, now: Instant) -> Failure {
        self.queued = None;
        self.failed_bringups = self.failed_bringups.saturating_add(1);
        if self.failed_bringups > self.rules.resets_before_dead {
            // The phase is `Initialising` during a bring-up from `Dead`: remember the
            // verdict itself, so it is logged once per descent.
            let newly = !self.declared_dead;
            self.declared_dead = true;
            self.phase = Phase::Dead;
            self.retry_at = now + self.rules.dead_retry_interval;
            Failure::Dead {
                attempts: self.failed_bringups,
                newly,
            }
        } else {
            self.phase = Phase::Resetting;
            self.retry_at = now + self.rules.reset_settle;
            Failure::Resetting {
                attempt: self.failed_bringups,
            }
        }
    }

    /// `AT+CFUN=1,1` was sent and the port closed: reopen after `reset_settle`. A power
    /// cycle is not a failed bring-up; the count is left as it is.
    pub fn on_power_cycled(&mut self, now: Instant) {
        self.queued = None;
        self.phase = Phase::Resetting;
        self.retry_at = now + self.rules.reset_settle;
    }

    /// The technician's reset.
    pub fn on_reset_requested(&mut self, now: Instant) -> ResetRequest {
        if self.is_open() {
            self.queued = Some(Why::Requested);
            ResetRequest::PowerCycle
        } else {
            // Out of `Dead` too: a requested reset starts the count afresh.
            self.failed_bringups = 0;
            self.declared_dead = false;
            self.retry_at = now;
            ResetRequest::BringUpNow
        }
    }

    /// What to do at `now`, if anything. A queued power cycle comes first; a closed
    /// port is brought up once its retry time has come.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if let Some(why) = self.queued.take()
            && self.is_open()
        {
            return Some(Action::PowerCycle(why));
        }
        if !self.is_open() && now >= self.retry_at {
            return Some(Action::BringUp);
        }
        None
    }

    /// When the next action falls due without another event: the retry time while the
    /// port is closed, none while it is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_open()).then_some(self.retry_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: RecoveryRules = RecoveryRules {
        hung_after_timeouts: 3,
        resets_before_dead: 2,
        reset_settle: Duration::from_secs(10),
        dead_retry_interval: Duration::from_secs(300),
    };

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A machine brought up and ready at `t0`.
    fn ready(t0: Instant) -> Recovery {
        let mut r = Recovery::new(RULES, t0);
        assert_eq!(r.poll_action(t0), Some(Action::BringUp));
        r.on_bring_up_started();
        assert!(!r.on_ready(), "a first start is not a recovery");
        r
    }

    #[test]
    fn the_first_bring_up_is_due_at_once_and_nothing_while_ready() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RULES, t0);
        assert_eq!(r.phase(), Phase::Starting);
        assert_eq!(r.poll_timeout(), Some(t0));
        assert_eq!(r.poll_action(t0), Some(Action::BringUp));
        r.on_bring_up_started();
        assert!(r.is_open());
        assert_eq!(
            r.poll_action(t0),
            None,
            "no second bring-up while initialising"
        );
        assert!(!r.on_ready());
        assert_eq!(r.phase(), Phase::Ready);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.poll_action(t0 + s(3600)), None);
    }

    #[test]
    fn hung_after_n_timeouts_in_a_row_and_an_answer_starts_the_count_again() {
        let t0 = Instant::now();
        let mut r = ready(t0);
        r.on_timeout(t0);
        r.on_timeout(t0);
        assert!(r.on_answer(), "the count changed");
        assert!(!r.on_answer(), "already zero");
        r.on_timeout(t0);
        r.on_timeout(t0);
        assert_eq!(r.poll_action(t0), None, "two in a row are not three");
        r.on_timeout(t0);
        assert_eq!(r.consecutive_timeouts(), 3);
        assert_eq!(r.poll_action(t0), Some(Action::PowerCycle(Why::Hung)));
        assert_eq!(r.poll_action(t0), None, "queued once");
    }

    #[test]
    fn a_power_cycle_waits_the_settle_time_then_brings_up_and_logs_a_recovery() {
        let t0 = Instant::now();
        let mut r = ready(t0);
        for _ in 0..3 {
            r.on_timeout(t0);
        }
        assert_eq!(r.poll_action(t0), Some(Action::PowerCycle(Why::Hung)));
        r.on_power_cycled(t0);
        assert_eq!(r.phase(), Phase::Resetting);
        assert_eq!(r.failed_bringups(), 0, "a reset is not a failed bring-up");
        assert_eq!(r.poll_timeout(), Some(t0 + s(10)));
        assert_eq!(r.poll_action(t0 + s(9)), None);
        assert_eq!(r.poll_action(t0 + s(10)), Some(Action::BringUp));
        r.on_bring_up_started();
        assert!(r.on_ready(), "answering again after a reset");
        assert_eq!(r.consecutive_timeouts(), 0);
    }

    #[test]
    fn timeouts_during_the_init_do_not_queue_a_power_cycle() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RULES, t0);
        r.poll_action(t0);
        r.on_bring_up_started();
        for _ in 0..10 {
            r.on_timeout(t0);
        }
        assert_eq!(r.poll_action(t0), None);
        assert_eq!(r.on_failure(t0), Failure::Resetting { attempt: 1 });
    }

    #[test]
    fn failed_bring_ups_reset_then_declare_dead_once_then_retry_slowly() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RULES, t0);
        let mut now = t0;
        for attempt in 1..=2 {
            assert_eq!(r.poll_action(now), Some(Action::BringUp));
            r.on_bring_up_started();
            assert_eq!(r.on_failure(now), Failure::Resetting { attempt });
            assert_eq!(r.phase(), Phase::Resetting);
            assert_eq!(r.poll_action(now + s(9)), None);
            now += s(10);
        }
        assert_eq!(r.poll_action(now), Some(Action::BringUp));
        r.on_bring_up_started();
        assert_eq!(
            r.on_failure(now),
            Failure::Dead {
                attempts: 3,
                newly: true
            }
        );
        assert_eq!(r.phase(), Phase::Dead);
        assert_eq!(r.poll_timeout(), Some(now + s(300)));
        assert_eq!(r.poll_action(now + s(299)), None);
        now += s(300);
        assert_eq!(r.poll_action(now), Some(Action::BringUp));
        r.on_bring_up_started();
        assert_eq!(
            r.on_failure(now),
            Failure::Dead {
                attempts: 4,
                newly: false
            },
            "logged at error level only once"
        );
        now += s(300);
        r.poll_action(now);
        r.on_bring_up_started();
        assert!(r.on_ready(), "back from dead");
        assert_eq!(r.failed_bringups(), 0);
        assert_eq!(r.phase(), Phase::Ready);
    }

    #[test]
    fn a_port_error_while_ready_drops_a_queued_power_cycle() {
        let t0 = Instant::now();
        let mut r = ready(t0);
        for _ in 0..3 {
            r.on_timeout(t0);
        }
        assert_eq!(r.on_failure(t0), Failure::Resetting { attempt: 1 });
        assert_eq!(r.poll_action(t0), None, "closed: nothing to power-cycle");
        assert_eq!(r.poll_action(t0 + s(10)), Some(Action::BringUp));
    }

    #[test]
    fn a_requested_reset_power_cycles_an_open_module() {
        let t0 = Instant::now();
        let mut r = ready(t0);
        assert_eq!(r.on_reset_requested(t0), ResetRequest::PowerCycle);
        assert_eq!(r.poll_action(t0), Some(Action::PowerCycle(Why::Requested)));
        r.on_power_cycled(t0);
        assert_eq!(r.poll_action(t0 + s(10)), Some(Action::BringUp));
    }

    #[test]
    fn a_requested_reset_of_a_dead_modem_tries_at_once_with_a_fresh_count() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RULES, t0);
        for _ in 0..3 {
            let due = r.poll_timeout().unwrap();
            r.poll_action(due);
            r.on_bring_up_started();
            r.on_failure(due);
        }
        assert_eq!(r.phase(), Phase::Dead);
        let later = t0 + s(100);
        assert_eq!(r.poll_action(later), None, "dead: waits its retry interval");
        assert_eq!(r.on_reset_requested(later), ResetRequest::BringUpNow);
        assert_eq!(r.failed_bringups(), 0);
        assert_eq!(r.poll_action(later), Some(Action::BringUp));
        r.on_bring_up_started();
        assert_eq!(
            r.on_failure(later),
            Failure::Resetting { attempt: 1 },
            "the count starts afresh"
        );
    }
}
