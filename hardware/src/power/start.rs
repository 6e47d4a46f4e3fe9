//! A generator start, from the command to a running engine, as a pure state machine
//! (time in, actions out): the driver calls [`StartSupervisor::request`] when asked to
//! start, carries out [`StartAction::SendStart`], reports the controller's answer with
//! [`StartSupervisor::on_send_result`] and each reading with
//! [`StartSupervisor::on_reading`], and calls [`StartSupervisor::on_timeout`] at
//! [`StartSupervisor::poll_timeout`].
//!
//! Guarantees: a refused or unanswered start command is tried again after
//! `retry_after`, doubled each time, up to `attempts` commands in all; an accepted
//! command must be followed by a "running" reading within `confirm_within`; either
//! failure ends in [`StartPhase::Failed`] with its reason, which stays until the next
//! request or a stop. A running reading ends the attempt at any point.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// How hard a start is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartSettings {
    /// Start commands sent at most (≥ 1).
    pub attempts: u32,
    /// Pause after the first failed command, doubled after each.
    pub retry_after: Duration,
    /// After an accepted command, the engine must read "running" within this.
    pub confirm_within: Duration,
}

impl Default for StartSettings {
    /// Three attempts, 10 s then 20 s apart, 90 s to run.
    fn default() -> Self {
        Self {
            attempts: 3,
            retry_after: Duration::from_secs(10),
            confirm_within: Duration::from_secs(90),
        }
    }
}

/// Why a start failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// Every command was refused or unanswered; the last error.
    Refused {
        /// Commands sent.
        attempts: u32,
        /// The controller's (or the port's) last answer.
        last_error: String,
    },
    /// The command was accepted but the engine did not read "running" in time.
    NeverRan {
        /// How long it was given.
        waited: Duration,
    },
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                attempts,
                last_error,
            } => write!(f, "start refused {attempts} times: {last_error}"),
            Self::NeverRan { waited } => write!(
                f,
                "start accepted but the engine was not running after {} s",
                waited.as_secs()
            ),
        }
    }
}

/// Where a start stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPhase {
    /// Command `attempt` (1-based) is being sent.
    Sending {
        /// Which command.
        attempt: u32,
    },
    /// Command `attempt` failed; the next goes out later.
    Retrying {
        /// The command that failed.
        attempt: u32,
        /// Its error.
        reason: String,
    },
    /// Accepted; waiting for a running reading.
    Confirming,
    /// The engine runs.
    Running,
    /// Given up.
    Failed(StartFailure),
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Send the start command now.
    SendStart,
}

/// The start state machine.
#[derive(Debug, Clone)]
pub struct StartSupervisor {
    settings: StartSettings,
    phase: Option<StartPhase>,
    attempt: u32,
    deadline: Option<Instant>,
    send_due: bool,
}

impl StartSupervisor {
    /// Idle.
    pub fn new(settings: StartSettings) -> Self {
        Self {
            settings,
            phase: None,
            attempt: 0,
            deadline: None,
            send_due: false,
        }
    }

    /// The current phase; `None` when no start was asked for (or after a stop).
    pub fn phase(&self) -> Option<&StartPhase> {
        self.phase.as_ref()
    }

    /// A start is asked for: the first command goes out at once (an attempt already
    /// under way goes on).
    pub fn request(&mut self, _now: Instant) {
        if matches!(
            self.phase,
            Some(StartPhase::Sending { .. } | StartPhase::Retrying { .. } | StartPhase::Confirming)
        ) {
            return;
        }
        self.attempt = 1;
        self.phase = Some(StartPhase::Sending { attempt: 1 });
        self.deadline = None;
        self.send_due = true;
    }

    /// A stop was asked for: whatever the start did is over.
    pub fn cancel(&mut self) {
        *self = Self::new(self.settings);
    }

    /// The controller's answer to the start command.
    pub fn on_send_result(&mut self, now: Instant, result: Result<(), String>) {
        if !matches!(self.phase, Some(StartPhase::Sending { .. })) {
            return;
        }
        match result {
            Ok(()) => {
                self.phase = Some(StartPhase::Confirming);
                self.deadline = Some(now + self.settings.confirm_within);
            }
            Err(reason) if self.attempt < self.settings.attempts.max(1) => {
                let factor = 1u32 << (self.attempt - 1).min(16);
                self.deadline = Some(now + self.settings.retry_after * factor);
                self.phase = Some(StartPhase::Retrying {
                    attempt: self.attempt,
                    reason,
                });
            }
            Err(last_error) => {
                self.deadline = None;
                self.phase = Some(StartPhase::Failed(StartFailure::Refused {
                    attempts: self.attempt,
                    last_error,
                }));
            }
        }
    }

    /// A reading of the engine.
    pub fn on_reading(&mut self, _now: Instant, running: bool) {
        if running
            && matches!(
                self.phase,
                Some(
                    StartPhase::Sending { .. }
                        | StartPhase::Retrying { .. }
                        | StartPhase::Confirming
                        | StartPhase::Failed(_)
                )
            )
        {
            self.phase = Some(StartPhase::Running);
            self.deadline = None;
            self.send_due = false;
        }
    }

    /// Time passed: a retry falls due, or the wait for "running" ends.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.deadline = None;
        match self.phase {
            Some(StartPhase::Retrying { .. }) => {
                self.attempt += 1;
                self.phase = Some(StartPhase::Sending {
                    attempt: self.attempt,
                });
                self.send_due = true;
            }
            Some(StartPhase::Confirming) => {
                self.phase = Some(StartPhase::Failed(StartFailure::NeverRan {
                    waited: self.settings.confirm_within,
                }));
            }
            _ => {}
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<StartAction> {
        std::mem::take(&mut self.send_due).then_some(StartAction::SendStart)
    }

    /// When [`StartSupervisor::on_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StartSettings {
        StartSettings {
            attempts: 3,
            retry_after: Duration::from_secs(10),
            confirm_within: Duration::from_secs(60),
        }
    }

    #[test]
    fn refused_starts_are_retried_with_doubling_pauses_then_fail() {
        let t0 = Instant::now();
        let mut s = StartSupervisor::new(settings());
        s.request(t0);
        assert_eq!(s.poll_action(), Some(StartAction::SendStart));
        assert_eq!(s.poll_action(), None);
        s.on_send_result(t0, Err("exception 4".into()));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        s.on_timeout(t0 + Duration::from_secs(9));
        assert_eq!(s.poll_action(), None, "not before the pause");
        let t1 = t0 + Duration::from_secs(10);
        s.on_timeout(t1);
        assert_eq!(s.phase(), Some(&StartPhase::Sending { attempt: 2 }));
        assert_eq!(s.poll_action(), Some(StartAction::SendStart));
        s.on_send_result(t1, Err("exception 4".into()));
        assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        s.on_timeout(t2);
        assert_eq!(s.poll_action(), Some(StartAction::SendStart));
        s.on_send_result(t2, Err("exception 4".into()));
        assert_eq!(
            s.phase(),
            Some(&StartPhase::Failed(StartFailure::Refused {
                attempts: 3,
                last_error: "exception 4".into()
            }))
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn a_retry_that_is_accepted_and_runs_succeeds() {
        let t0 = Instant::now();
        let mut s = StartSupervisor::new(settings());
        s.request(t0);
        s.poll_action();
        s.on_send_result(t0, Err("timeout".into()));
        s.on_timeout(t0 + Duration::from_secs(10));
        s.poll_action();
        s.on_send_result(t0 + Duration::from_secs(10), Ok(()));
        assert_eq!(s.phase(), Some(&StartPhase::Confirming));
        s.on_reading(t0 + Duration::from_secs(15), false);
        assert_eq!(s.phase(), Some(&StartPhase::Confirming));
        s.on_reading(t0 + Duration::from_secs(20), true);
        assert_eq!(s.phase(), Some(&StartPhase::Running));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn accepted_but_never_running_fails_after_the_confirm_time() {
        let t0 = Instant::now();
        let mut s = StartSupervisor::new(settings());
        s.request(t0);
        s.poll_action();
        s.on_send_result(t0, Ok(()));
        s.on_reading(t0 + Duration::from_secs(59), false);
        s.on_timeout(t0 + Duration::from_secs(59));
        assert_eq!(s.phase(), Some(&StartPhase::Confirming));
        s.on_timeout(t0 + Duration::from_secs(60));
        assert_eq!(
            s.phase(),
            Some(&StartPhase::Failed(StartFailure::NeverRan {
                waited: Duration::from_secs(60)
            }))
        );
        // A new request starts over; a stop clears it.
        s.request(t0 + Duration::from_secs(70));
        assert_eq!(s.phase(), Some(&StartPhase::Sending { attempt: 1 }));
        s.cancel();
        assert_eq!(s.phase(), None);
    }
}
