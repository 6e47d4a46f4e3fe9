//! The power policy: a pure state machine fed with [`PowerSample`]s that moves the node
//! between Normal → OnBattery → Low → Critical (and back, with hysteresis) and returns the
//! actions the node must take: alert the technician, defer bulk sync, start or stop the
//! generator, shut down.
//!
//! Guarantees: a level is entered as soon as its threshold is crossed but left only once
//! the battery is back above threshold + hysteresis (so a voltage that wobbles under load
//! does not flap); each action is emitted once per transition, never repeated per sample;
//! `Shutdown` is emitted on entering Critical; bulk sync is deferred exactly while the
//! level is Low or Critical. Generator auto-start follows Venus OS: start at or below one
//! state of charge, stop at or above another (separate values in quiet hours), never
//! stop before the minimum run time, only stop a generator the policy started, and apply
//! a configured rule when the battery monitor stops reporting.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::model::{PowerSample, Source};

/// How the node stands with power, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// On grid or generator.
    Normal,
    /// On solar/battery, battery healthy.
    OnBattery,
    /// On battery, below the low threshold.
    Low,
    /// On battery, below the critical threshold: shut down cleanly.
    Critical,
}

/// Battery thresholds. A sample is "below" a level if its state of charge or its voltage
/// (whichever are known) is at or below the level's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    /// Low state of charge, %.
    pub low_soc_percent: u8,
    /// Critical state of charge, %.
    pub critical_soc_percent: u8,
    /// Margin above a threshold needed to leave its level, %.
    pub soc_hysteresis_percent: u8,
    /// Low battery voltage, mV.
    pub low_mv: u32,
    /// Critical battery voltage, mV.
    pub critical_mv: u32,
    /// Margin above a voltage threshold needed to leave its level, mV.
    pub hysteresis_mv: u32,
}

impl Default for Thresholds {
    /// Values for a 24 V lead-acid/LiFePO4 bank.
    fn default() -> Self {
        Self {
            low_soc_percent: 30,
            critical_soc_percent: 12,
            soc_hysteresis_percent: 5,
            low_mv: 23_600,
            critical_mv: 22_800,
            hysteresis_mv: 400,
        }
    }
}

/// Daily quiet hours in local time; `from > to` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start (inclusive).
    pub from: Time,
    /// End (exclusive).
    pub to: Time,
}

impl QuietHours {
    /// Whether a local time falls within.
    pub fn contains(&self, t: Time) -> bool {
        if self.from <= self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }
}

/// What to do with the generator when the battery monitor stops reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorLostRule {
    /// Stop a generator the policy started.
    Stop,
    /// Start the generator.
    Start,
    /// Leave it as it is.
    KeepRunning,
}

/// Generator auto-start settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoStart {
    /// Start at or below this state of charge, %.
    pub start_soc_percent: u8,
    /// Stop at or above this state of charge, %.
    pub stop_soc_percent: u8,
    /// Start threshold during quiet hours, %.
    pub quiet_start_soc_percent: u8,
    /// Stop threshold during quiet hours, %.
    pub quiet_stop_soc_percent: u8,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// Time zone in which quiet hours are read.
    pub tz: TimeZone,
    /// Never stop sooner after a start.
    pub min_run: SignedDuration,
    /// Alert if the generator does not run this long after a start request.
    pub start_timeout: SignedDuration,
    /// Rule when the battery monitor is lost.
    pub on_monitor_lost: MonitorLostRule,
}

/// All policy settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// Battery thresholds.
    pub thresholds: Thresholds,
    /// Generator auto-start; `None` disables it.
    pub auto_start: Option<AutoStart>,
    /// The battery monitor counts as lost after this long without a state of charge.
    pub monitor_lost_after: SignedDuration,
}

/// Why the technician is alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alert {
    /// Battery low.
    Low,
    /// Battery critical: the node is shutting down.
    Critical,
    /// A start was requested but the generator does not run.
    GeneratorDidNotStart,
    /// No state of charge from the battery monitor.
    MonitorLost,
}

/// What the node must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Tell the technician (UI and SMS).
    AlertTechnician(Alert),
    /// Defer (true) or resume (false) bulk sync.
    DeferBulkSync(bool),
    /// Ask the generator controller to start.
    StartGenerator,
    /// Ask the generator controller to stop.
    StopGenerator,
    /// Checkpoint and shut down cleanly.
    Shutdown,
}

#[derive(Debug, Clone, Default)]
struct GeneratorState {
    /// Start time of a run the policy asked for.
    requested_at: Option<Timestamp>,
    alerted_no_start: bool,
}

/// The policy state machine.
#[derive(Debug, Clone)]
pub struct Policy {
    settings: PolicySettings,
    level: Level,
    deferring: bool,
    generator: GeneratorState,
    last_soc_at: Option<Timestamp>,
    monitor_lost: bool,
}

impl Policy {
    /// A policy in the Normal level.
    pub fn new(settings: PolicySettings) -> Self {
        Self {
            settings,
            level: Level::Normal,
            deferring: false,
            generator: GeneratorState::default(),
            last_soc_at: None,
            monitor_lost: false,
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether the policy has asked the generator to run (and not yet to stop).
    pub fn generator_requested(&self) -> bool {
        self.generator.requested_at.is_some()
    }

    /// Whether the battery monitor is considered lost.
    pub fn monitor_lost(&self) -> bool {
        self.monitor_lost
    }

    /// Feeds one sample; returns the actions it calls for, in the order to apply them.
    pub fn on_sample(&mut self, s: &PowerSample) -> Vec<Action> {
        let mut actions = Vec::new();
        if s.soc_percent.is_some() {
            self.last_soc_at = Some(s.at);
        }
        // Only a monitor that has reported can be lost: a site without one gets no alert.
        let lost = s.soc_percent.is_none()
            && self.last_soc_at.is_some_and(|since| {
                s.at.duration_since(since) >= self.settings.monitor_lost_after
            });
        let newly_lost = lost && !self.monitor_lost;
        self.monitor_lost = lost;
        if newly_lost {
            actions.push(Action::AlertTechnician(Alert::MonitorLost));
        }

        let next = self.next_level(s);
        if next > self.level && next >= Level::Low {
            actions.push(Action::AlertTechnician(if next == Level::Critical {
                Alert::Critical
            } else {
                Alert::Low
            }));
        }
        let defer = next >= Level::Low;
        if defer != self.deferring {
            self.deferring = defer;
            actions.push(Action::DeferBulkSync(defer));
        }
        let entering_critical = next == Level::Critical && self.level != Level::Critical;
        self.level = next;

        self.generator_actions(s, newly_lost, &mut actions);
        if entering_critical {
            actions.push(Action::Shutdown);
        }
        actions
    }

    fn next_level(&self, s: &PowerSample) -> Level {
        if matches!(s.source, Source::Grid | Source::Generator) {
            return Level::Normal;
        }
        if s.soc_percent.is_none() && s.battery_mv.is_none() {
            return self.level.max(Level::OnBattery);
        }
        let t = &self.settings.thresholds;
        let below = |soc: u8, mv: u32| {
            s.soc_percent.is_some_and(|v| v <= soc) || s.battery_mv.is_some_and(|v| v <= mv)
        };
        let above = |soc: u8, mv: u32| {
            s.soc_percent
                .is_none_or(|v| v >= soc.saturating_add(t.soc_hysteresis_percent))
                && s.battery_mv
                    .is_none_or(|v| v >= mv.saturating_add(t.hysteresis_mv))
        };
        if below(t.critical_soc_percent, t.critical_mv)
            || (self.level == Level::Critical && !above(t.critical_soc_percent, t.critical_mv))
        {
            Level::Critical
        } else if below(t.low_soc_percent, t.low_mv)
            || (self.level >= Level::Low && !above(t.low_soc_percent, t.low_mv))
        {
            Level::Low
        } else {
            Level::OnBattery
        }
    }

    fn generator_actions(&mut self, s: &PowerSample, newly_lost: bool, actions: &mut Vec<Action>) {
        let Some(auto) = &self.settings.auto_start else {
            return;
        };
        if let Some(at) = self.generator.requested_at {
            if s.generator_running {
                self.generator.alerted_no_start = false;
            } else if !self.generator.alerted_no_start
                && s.at.duration_since(at) >= auto.start_timeout
            {
                self.generator.alerted_no_start = true;
                actions.push(Action::AlertTechnician(Alert::GeneratorDidNotStart));
            }
        }
        if self.monitor_lost {
            if newly_lost {
                match auto.on_monitor_lost {
                    MonitorLostRule::Stop if self.generator.requested_at.is_some() => {
                        self.generator.requested_at = None;
                        actions.push(Action::StopGenerator);
                    }
                    MonitorLostRule::Start
                        if self.generator.requested_at.is_none() && !s.generator_running =>
                    {
                        self.generator.requested_at = Some(s.at);
                        self.generator.alerted_no_start = false;
                        actions.push(Action::StartGenerator);
                    }
                    _ => {}
                }
            }
            return;
        }
        let quiet = auto
            .quiet_hours
            .is_some_and(|q| q.contains(s.at.to_zoned(auto.tz.clone()).time()));
        let (start_soc, stop_soc) = if quiet {
            (auto.quiet_start_soc_percent, auto.quiet_stop_soc_percent)
        } else {
            (auto.start_soc_percent, auto.stop_soc_percent)
        };
        let grid = s.grid_available == Some(true);
        match self.generator.requested_at {
            None => {
                if !grid && !s.generator_running && s.soc_percent.is_some_and(|v| v <= start_soc) {
                    self.generator.requested_at = Some(s.at);
                    self.generator.alerted_no_start = false;
                    actions.push(Action::StartGenerator);
                }
            }
            Some(at) => {
                let ran_enough = s.at.duration_since(at) >= auto.min_run;
                let charged = s.soc_percent.is_some_and(|v| v >= stop_soc);
                if ran_enough && (charged || grid) {
                    self.generator.requested_at = None;
                    actions.push(Action::StopGenerator);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auto: bool) -> PolicySettings {
        PolicySettings {
            thresholds: Thresholds::default(),
            auto_start: auto.then(|| AutoStart {
                start_soc_percent: 35,
                stop_soc_percent: 80,
                quiet_start_soc_percent: 20,
                quiet_stop_soc_percent: 60,
                quiet_hours: Some(QuietHours {
                    from: Time::constant(22, 0, 0, 0),
                    to: Time::constant(7, 0, 0, 0),
                }),
                tz: TimeZone::UTC,
                min_run: SignedDuration::from_hours(1),
                start_timeout: SignedDuration::from_mins(5),
                on_monitor_lost: MonitorLostRule::Stop,
            }),
            monitor_lost_after: SignedDuration::from_mins(10),
        }
    }

    /// `"HH:MM"` on 2026-06-01 UTC; hours past 23 run into the next day.
    fn at(hhmm: &str) -> Timestamp {
        let (h, m) = hhmm.split_once(':').unwrap();
        let base: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        base + SignedDuration::from_secs(
            h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60,
        )
    }

    fn s(
        hhmm: &str,
        source: Source,
        soc: Option<u8>,
        mv: Option<u32>,
        gen_on: bool,
    ) -> PowerSample {
        PowerSample {
            at: at(hhmm),
            source,
            soc_percent: soc,
            battery_mv: mv,
            pv_w: None,
            load_w: None,
            generator_running: gen_on,
            fuel_percent: None,
            grid_available: Some(source == Source::Grid),
        }
    }

    /// A scripted day without a generator: grid cut in the evening, the battery runs down
    /// to critical; then the grid returns.
    #[test]
    fn scripted_day_without_generator() {
        use Action::*;
        let mut p = Policy::new(settings(false));
        let script: Vec<(PowerSample, Level, Vec<Action>)> = vec![
            (
                s("08:00", Source::Grid, Some(95), Some(27_000), false),
                Level::Normal,
                vec![],
            ),
            (
                s("18:00", Source::Battery, Some(90), Some(25_800), false),
                Level::OnBattery,
                vec![],
            ),
            (
                s("20:00", Source::Battery, Some(31), Some(24_100), false),
                Level::OnBattery,
                vec![],
            ),
            (
                s("20:30", Source::Battery, Some(30), Some(24_000), false),
                Level::Low,
                vec![AlertTechnician(Alert::Low), DeferBulkSync(true)],
            ),
            // Load removed, SOC estimate bounces up a little: hysteresis keeps Low.
            (
                s("20:40", Source::Battery, Some(33), Some(24_200), false),
                Level::Low,
                vec![],
            ),
            (
                s("21:00", Source::Solar, Some(29), Some(23_900), false),
                Level::Low,
                vec![],
            ),
            // Voltage sags to critical before the SOC does.
            (
                s("22:00", Source::Battery, Some(18), Some(22_700), false),
                Level::Critical,
                vec![AlertTechnician(Alert::Critical), Shutdown],
            ),
            (
                s("22:01", Source::Battery, Some(13), Some(23_000), false),
                Level::Critical,
                vec![],
            ),
            (
                s("22:30", Source::Grid, Some(14), Some(26_000), false),
                Level::Normal,
                vec![DeferBulkSync(false)],
            ),
        ];
        for (sample, level, want) in script {
            let got = p.on_sample(&sample);
            assert_eq!((p.level(), &got), (level, &want), "at {}", sample.at);
        }
    }

    #[test]
    fn critical_clears_to_low_then_on_battery_with_hysteresis() {
        let mut p = Policy::new(settings(false));
        p.on_sample(&s("10:00", Source::Battery, Some(10), None, false));
        assert_eq!(p.level(), Level::Critical);
        p.on_sample(&s("10:10", Source::Solar, Some(16), None, false));
        assert_eq!(p.level(), Level::Critical, "12 + 5 not reached");
        let a = p.on_sample(&s("10:20", Source::Solar, Some(17), None, false));
        assert_eq!((p.level(), a), (Level::Low, vec![]));
        p.on_sample(&s("11:00", Source::Solar, Some(34), None, false));
        assert_eq!(p.level(), Level::Low);
        let a = p.on_sample(&s("11:30", Source::Solar, Some(35), None, false));
        assert_eq!(
            (p.level(), a),
            (Level::OnBattery, vec![Action::DeferBulkSync(false)])
        );
    }

    #[test]
    fn generator_auto_start_min_run_and_quiet_hours() {
        use Action::*;
        let mut p = Policy::new(settings(true));
        // Daytime: start at 35 %.
        assert_eq!(
            p.on_sample(&s("15:00", Source::Battery, Some(36), None, false)),
            vec![]
        );
        assert_eq!(
            p.on_sample(&s("15:10", Source::Battery, Some(35), None, false)),
            vec![StartGenerator]
        );
        assert!(p.generator_requested());
        // Charged quickly, but the minimum run time holds it.
        assert_eq!(
            p.on_sample(&s("15:40", Source::Generator, Some(85), None, true)),
            vec![]
        );
        assert_eq!(
            p.on_sample(&s("16:10", Source::Generator, Some(86), None, true)),
            vec![StopGenerator]
        );
        // Quiet hours: 30 % is not low enough to start, 20 % is.
        assert_eq!(
            p.on_sample(&s("23:00", Source::Battery, Some(32), None, false)),
            vec![]
        );
        assert_eq!(
            p.on_sample(&s("23:30", Source::Battery, Some(20), None, false)),
            vec![
                AlertTechnician(Alert::Low),
                DeferBulkSync(true),
                StartGenerator
            ]
        );
        // In quiet hours it stops at 60 %.
        assert_eq!(
            p.on_sample(&s("23:59", Source::Generator, Some(59), None, true)),
            vec![DeferBulkSync(false)]
        );
        assert_eq!(
            p.on_sample(&s("24:31", Source::Generator, Some(60), None, true))
                .last(),
            Some(&StopGenerator)
        );
    }

    #[test]
    fn generator_not_started_by_policy_is_left_alone_and_failed_start_alerts() {
        use Action::*;
        let mut p = Policy::new(settings(true));
        // Running by hand: never stopped by the policy.
        assert_eq!(
            p.on_sample(&s("10:00", Source::Generator, Some(90), None, true)),
            vec![]
        );
        assert_eq!(
            p.on_sample(&s("12:00", Source::Generator, Some(99), None, true)),
            vec![]
        );
        // Start requested, engine never turns.
        assert_eq!(
            p.on_sample(&s("13:00", Source::Battery, Some(34), None, false)),
            vec![StartGenerator]
        );
        assert_eq!(
            p.on_sample(&s("13:04", Source::Battery, Some(34), None, false)),
            vec![]
        );
        assert_eq!(
            p.on_sample(&s("13:05", Source::Battery, Some(34), None, false)),
            vec![AlertTechnician(Alert::GeneratorDidNotStart)]
        );
        assert_eq!(
            p.on_sample(&s("13:06", Source::Battery, Some(34), None, false)),
            vec![]
        );
    }

    #[test]
    fn monitor_lost_applies_the_rule_once() {
        use Action::*;
        let mut p = Policy::new(settings(true));
        p.on_sample(&s("10:00", Source::Battery, Some(30), Some(24_500), false));
        assert!(p.generator_requested());
        assert_eq!(
            p.on_sample(&s("10:05", Source::Generator, None, Some(24_500), true)),
            vec![DeferBulkSync(false)]
        );
        assert_eq!(
            p.on_sample(&s("10:10", Source::Generator, None, Some(24_500), true)),
            vec![AlertTechnician(Alert::MonitorLost), StopGenerator]
        );
        assert!(p.monitor_lost());
        assert_eq!(
            p.on_sample(&s("10:20", Source::Battery, None, Some(24_500), false)),
            vec![]
        );
        // Monitor back: normal rules again.
        assert_eq!(p.level(), Level::OnBattery);
        assert_eq!(
            p.on_sample(&s("10:30", Source::Battery, Some(33), Some(24_500), false)),
            vec![StartGenerator]
        );
    }

    #[test]
    fn a_site_without_a_monitor_gets_no_lost_alert() {
        let mut p = Policy::new(settings(true));
        for m in ["10:00", "10:30", "11:00"] {
            let got = p.on_sample(&s(m, Source::Battery, None, Some(25_000), false));
            assert!(!got.contains(&Action::AlertTechnician(Alert::MonitorLost)));
        }
        assert!(!p.monitor_lost());
    }

    proptest::proptest! {
        /// Whatever the samples, actions come in consistent pairs: defer/resume and
        /// start/stop alternate, and Shutdown comes only with the entry into Critical.
        #[test]
        fn actions_are_consistent_over_any_day(
            steps in proptest::collection::vec(
                (0u8..4, proptest::option::of(0u8..=100), proptest::option::of(21_000u32..28_000), proptest::bool::ANY, 1i64..120),
                1..200,
            )
        ) {
            let mut p = Policy::new(settings(true));
            let mut t: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
            let mut deferring = false;
            let mut requested = false;
            for (src, soc, mv, gen_on, mins) in steps {
                t += SignedDuration::from_mins(mins);
                let source = [Source::Grid, Source::Solar, Source::Battery, Source::Generator][usize::from(src)];
                let before = p.level();
                let sample = PowerSample {
                    at: t,
                    source,
                    soc_percent: soc,
                    battery_mv: mv,
                    pv_w: None,
                    load_w: None,
                    generator_running: gen_on,
                    fuel_percent: None,
                    grid_available: Some(source == Source::Grid),
                };
                for a in p.on_sample(&sample) {
                    match a {
                        Action::DeferBulkSync(d) => {
                            proptest::prop_assert_ne!(d, deferring);
                            deferring = d;
                        }
                        Action::StartGenerator => {
                            proptest::prop_assert!(!requested);
                            requested = true;
                        }
                        Action::StopGenerator => {
                            proptest::prop_assert!(requested);
                            requested = false;
                        }
                        Action::Shutdown => {
                            proptest::prop_assert!(before != Level::Critical && p.level() == Level::Critical);
                        }
                        Action::AlertTechnician(_) => {}
                    }
                }
                proptest::prop_assert_eq!(deferring, p.level() >= Level::Low);
                proptest::prop_assert_eq!(requested, p.generator_requested());
                if matches!(source, Source::Grid | Source::Generator) {
                    proptest::prop_assert_eq!(p.level(), Level::Normal);
                }
            }
        }
    }
}
