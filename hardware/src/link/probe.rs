//! Sans-IO health of the primary link, with mwan3's hysteresis.
//!
//! Feed it one [`ProbeResult`] per probe round. An up link is declared down after
//! `down_after` failed rounds in a row, and any success while it is up restores the full
//! score (the failure count goes back to zero). A down link is declared up after
//! `up_after` successful rounds in a row, and any failure while it recovers restarts the
//! count. So a link that loses one round in five never goes down with the default 5/5.

/// Outcome of one probe round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// At least one target answered in time.
    Success,
    /// No target answered in time.
    Failure,
}

/// Health of the link as the hysteresis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHealth {
    /// No probe round yet: the first one decides.
    Unknown,
    /// Usable; `failures` rounds in a row have failed (fewer than `down_after`).
    Up {
        /// Consecutive failed rounds.
        failures: u32,
    },
    /// Not usable; `successes` rounds in a row have succeeded (fewer than `up_after`).
    Down {
        /// Consecutive successful rounds.
        successes: u32,
    },
}

impl LinkHealth {
    /// Whether the link counts as up.
    pub fn is_up(&self) -> bool {
        matches!(self, LinkHealth::Up { .. })
    }
}

/// A change of health decided by [`ProbeTracker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// `down_after` rounds failed in a row.
    WentDown {
        /// Rounds that failed.
        failures: u32,
    },
    /// `up_after` rounds succeeded in a row.
    CameUp {
        /// Rounds that succeeded.
        successes: u32,
    },
}

/// Thresholds of the hysteresis; both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failed rounds in a row that take an up link down.
    pub down_after: u32,
    /// Successful rounds in a row that bring a down link up.
    pub up_after: u32,
}

impl Default for Thresholds {
    /// mwan3's defaults: down 5, up 5.
    fn default() -> Self {
        Self {
            down_after: 5,
            up_after: 5,
        }
    }
}

/// The hysteresis state machine.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    thresholds: Thresholds,
    health: LinkHealth,
}

impl ProbeTracker {
    /// Starts up or down as given (mwan3 starts links online), or unknown (`None`)
    /// until the first round, which then decides at once. Thresholds of 0 count as 1.
    pub fn new(thresholds: Thresholds, initially_up: Option<bool>) -> Self {
        let thresholds = Thresholds {
            down_after: thresholds.down_after.max(1),
            up_after: thresholds.up_after.max(1),
        };
        let health = match initially_up {
            None => LinkHealth::Unknown,
            Some(true) => LinkHealth::Up { failures: 0 },
            Some(false) => LinkHealth::Down { successes: 0 },
        };
        Self { thresholds, health }
    }

    /// Current health.
    pub fn health(&self) -> LinkHealth {
        self.health
    }

    /// Records one round; returns the change it caused, if any.
    pub fn record(&mut self, result: ProbeResult) -> Option<HealthChange> {
        let t = self.thresholds;
        let (next, change) = match (self.health, result) {
            (LinkHealth::Unknown, ProbeResult::Success) => (
                LinkHealth::Up { failures: 0 },
                Some(HealthChange::CameUp { successes: 1 }),
            ),
            (LinkHealth::Unknown, ProbeResult::Failure) => (
                LinkHealth::Down { successes: 0 },
                Some(HealthChange::WentDown { failures: 1 }),
            ),
            (LinkHealth::Up { .. }, ProbeResult::Success) => (LinkHealth::Up { failures: 0 }, None),
            (LinkHealth::Up { failures }, ProbeResult::Failure) => {
                let failures = failures + 1;
                if failures >= t.down_after {
                    (
                        LinkHealth::Down { successes: 0 },
                        Some(HealthChange::WentDown { failures }),
                    )
                } else {
                    (LinkHealth::Up { failures }, None)
                }
            }
            (LinkHealth::Down { .. }, ProbeResult::Failure) => {
                (LinkHealth::Down { successes: 0 }, None)
            }
            (LinkHealth::Down { successes }, ProbeResult::Success) => {
                let successes = successes + 1;
                if successes >= t.up_after {
                    (
                        LinkHealth::Up { failures: 0 },
                        Some(HealthChange::CameUp { successes }),
                    )
                } else {
                    (LinkHealth::Down { successes }, None)
                }
            }
        };
        self.health = next;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use ProbeResult::{Failure as F, Success as S};

    fn tracker() -> ProbeTracker {
        ProbeTracker::new(Thresholds::default(), Some(true))
    }

    #[test]
    fn down_after_n_failures_in_a_row() {
        let mut t = tracker();
        for _ in 0..4 {
            assert_eq!(t.record(F), None);
        }
        assert!(t.health().is_up());
        assert_eq!(t.record(F), Some(HealthChange::WentDown { failures: 5 }));
        assert!(!t.health().is_up());
    }

    #[test]
    fn success_while_up_restores_full_score() {
        let mut t = tracker();
        for _ in 0..4 {
            t.record(F);
        }
        t.record(S);
        assert_eq!(t.health(), LinkHealth::Up { failures: 0 });
        for _ in 0..4 {
            assert_eq!(t.record(F), None);
        }
    }

    #[test]
    fn failure_while_recovering_restarts_count() {
        let mut t = ProbeTracker::new(Thresholds::default(), Some(false));
        for _ in 0..4 {
            assert_eq!(t.record(S), None);
        }
        assert_eq!(t.record(F), None);
        assert_eq!(t.health(), LinkHealth::Down { successes: 0 });
        for _ in 0..4 {
            assert_eq!(t.record(S), None);
        }
        assert_eq!(t.record(S), Some(HealthChange::CameUp { successes: 5 }));
    }

    #[test]
    fn one_in_five_loss_never_goes_down() {
        let mut t = tracker();
        for i in 0..500 {
            let r = if i % 5 == 0 { F } else { S };
            assert_eq!(t.record(r), None, "round {i}");
        }
    }

    proptest! {
        #[test]
        fn changes_alternate_and_need_runs(rounds in proptest::collection::vec(any::<bool>(), 0..300), down in 1u32..6, up in 1u32..6) {
            let mut t = ProbeTracker::new(Thresholds { down_after: down, up_after: up }, Some(true));
            let mut run_f = 0u32;
            let mut run_s = 0u32;
            let mut up_now = true;
            for ok in rounds {
                if ok { run_s += 1; run_f = 0; } else { run_f += 1; run_s = 0; }
                match t.record(if ok { S } else { F }) {
                    Some(HealthChange::WentDown { .. }) => { prop_assert!(up_now); prop_assert_eq!(run_f, down); up_now = false; run_f = 0; run_s = 0; }
                    Some(HealthChange::CameUp { .. }) => { prop_assert!(!up_now); prop_assert_eq!(run_s, up); up_now = true; run_f = 0; run_s = 0; }
                    None => {}
                }
                prop_assert_eq!(t.health().is_up(), up_now);
            }
        }
    }
}
