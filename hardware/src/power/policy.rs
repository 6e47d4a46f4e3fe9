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
//!
//! Besides the state of charge, optional [`StartConditions`] (all off by default) start
//! the generator on a low battery voltage, a high discharge current or a high load, each
//! held for a configured time, and a weekly test run at a set day and time. Each
//! condition is active from its start threshold until its own stop threshold (the test
//! run for its duration); the generator runs while any is active, and stops once none is
//! and the minimum run time is over (a run only the test asked for stops when the test
//! ends). In quiet hours only the state of charge (with its quiet thresholds) may start
//! it, except at Critical, where quiet hours do not hold. Every start carries its
//! [`StartReason`].

use jiff::civil::{Date, Time, Weekday};
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

/// A start condition on a measured value that must hold for a while: active once the
/// value has been past `start` for `after`, inactive again once it is past `stop` the
/// other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// The start threshold.
    pub start: u32,
    /// The stop threshold.
    pub stop: u32,
    /// How long the value must stay past `start`.
    pub after: SignedDuration,
}

/// A weekly generator test run, in the policy's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    /// Day of the week.
    pub weekday: Weekday,
    /// Local start time; the run is started by the first sample at or after it on that
    /// day (and not at all if no sample comes before the run would have ended).
    pub at: Time,
    /// How long it runs.
    pub duration: SignedDuration,
}

/// Start conditions besides the state of charge; `None` = off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartConditions {
    /// Battery voltage, mV: start at or below `start`, stop at or above `stop`.
    pub battery_voltage: Option<Trigger>,
    /// Battery discharge current, mA: start at or above `start`, stop at or below `stop`.
    pub discharge_current: Option<Trigger>,
    /// Load, W: start at or above `start`, stop at or below `stop`.
    pub load: Option<Trigger>,
    /// The weekly test run.
    pub test_run: Option<TestRun>,
}

/// Why the policy asked the generator to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReason {
    /// State of charge at or below the start threshold.
    StateOfCharge,
    /// Battery voltage low for the set time.
    BatteryVoltage,
    /// Battery discharge current high for the set time.
    DischargeCurrent,
    /// Load high for the set time.
    Load,
    /// The weekly test run.
    TestRun,
    /// The battery monitor was lost and the rule says start.
    MonitorLost,
    /// The battery is critical (quiet hours do not hold).
    Critical,
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
    /// Start conditions besides the state of charge.
    pub conditions: StartConditions,
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
    /// Ask the generator controller to start, and why.
    StartGenerator(StartReason),
    /// Ask the generator controller to stop.
    StopGenerator,
    /// Checkpoint and shut down cleanly.
    Shutdown,
}

/// Readings the policy uses that are not in the stored [`PowerSample`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// Battery current, mA, positive while charging (the battery monitor's or the
    /// inverter's). Without it, the discharge current is estimated from load, PV and
    /// voltage.
    pub battery_ma: Option<i32>,
}

impl Extra {
    /// The discharge current, mA (0 while charging), measured or estimated.
    fn discharge_ma(&self, s: &PowerSample) -> Option<u32> {
        if let Some(ma) = self.battery_ma {
            return Some(u32::try_from(-i64::from(ma)).unwrap_or(0));
        }
        if matches!(s.source, Source::Grid | Source::Generator) {
            // The AC input carries the load and charges the battery.
            return Some(0);
        }
        let (load, mv) = (s.load_w?, s.battery_mv.filter(|v| *v > 0)?);
        let deficit = u64::from(load).saturating_sub(u64::from(s.pv_w.unwrap_or(0)));
        u32::try_from(deficit * 1_000_000 / u64::from(mv)).ok()
    }
}

#[derive(Debug, Clone, Default)]
struct GeneratorState {
    /// Start time of a run the policy asked for.
    requested_at: Option<Timestamp>,
    /// Why it was asked for.
    reason: Option<StartReason>,
    alerted_no_start: bool,
    /// The state-of-charge condition (or a critical battery, or a lost monitor under the
    /// `Start` rule) holds until the stop threshold.
    soc_active: bool,
    /// Since when each sustained condition's value has been past its start threshold:
    /// voltage, discharge current, load.
    past_start: [Option<Timestamp>; 3],
    /// Whether each sustained condition is active.
    active: [bool; 3],
    /// The test run in progress ends then.
    test_until: Option<Timestamp>,
    /// The local day of the last test run (one a week: that day is done).
    last_test_day: Option<Date>,
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

    /// Why the generator was asked to run, while it is.
    pub fn start_reason(&self) -> Option<StartReason> {
        self.generator.requested_at.and(self.generator.reason)
    }

    /// The local day of the last weekly test run the policy started.
    pub fn last_test_run(&self) -> Option<Date> {
        self.generator.last_test_day
    }

    /// Restores the day of the last test run (kept by the caller across restarts), so a
    /// restart inside the test's window does not run it twice.
    pub fn restore_last_test_run(&mut self, day: Date) {
        self.generator.last_test_day = Some(day);
    }

    /// Whether the battery monitor is considered lost.
    pub fn monitor_lost(&self) -> bool {
        self.monitor_lost
    }

    /// Feeds one sample; returns the actions it calls for, in the order to apply them.
    pub fn on_sample(&mut self, s: &PowerSample) -> Vec<Action> {
        self.on_sample_with(s, &Extra::default())
    }

    /// [`Policy::on_sample`] with readings beyond the sample (the battery current).
    pub fn on_sample_with(&mut self, s: &PowerSample, extra: &Extra) -> Vec<Action> {
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

        self.generator_actions(s, extra, newly_lost, &mut actions);
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

    fn generator_actions(
        &mut self,
        s: &PowerSample,
        extra: &Extra,
        newly_lost: bool,
        actions: &mut Vec<Action>,
    ) {
        let Some(auto) = &self.settings.auto_start else {
            return;
        };
        let g = &mut self.generator;
        if let Some(at) = g.requested_at {
            if s.generator_running {
                g.alerted_no_start = false;
            } else if !g.alerted_no_start && s.at.duration_since(at) >= auto.start_timeout {
                g.alerted_no_start = true;
                actions.push(Action::AlertTechnician(Alert::GeneratorDidNotStart));
            }
        }
        if self.monitor_lost {
            if newly_lost {
                match auto.on_monitor_lost {
                    MonitorLostRule::Stop if g.requested_at.is_some() => {
                        *g = GeneratorState {
                            last_test_day: g.last_test_day,
                            ..GeneratorState::default()
                        };
                        actions.push(Action::StopGenerator);
                    }
                    MonitorLostRule::Start if g.requested_at.is_none() && !s.generator_running => {
                        g.soc_active = true;
                        g.request(s.at, StartReason::MonitorLost, actions);
                    }
                    _ => {}
                }
            }
            return;
        }
        let local = s.at.to_zoned(auto.tz.clone());
        let quiet = auto.quiet_hours.is_some_and(|q| q.contains(local.time()));
        let critical = self.level == Level::Critical;
        let (start_soc, stop_soc) = if quiet {
            (auto.quiet_start_soc_percent, auto.quiet_stop_soc_percent)
        } else {
            (auto.start_soc_percent, auto.stop_soc_percent)
        };
        let grid = s.grid_available == Some(true);

        // Each condition's state, whether or not it may start the generator now.
        let mut reason = None;
        if critical && !g.soc_active {
            g.soc_active = true;
            reason = Some(StartReason::Critical);
        } else if s.soc_percent.is_some_and(|v| v <= start_soc) && !g.soc_active {
            g.soc_active = true;
            reason = Some(StartReason::StateOfCharge);
        }
        if grid || s.soc_percent.is_some_and(|v| v >= stop_soc) {
            g.soc_active = false;
        }
        let c = &auto.conditions;
        let sustained = [
            (
                c.battery_voltage,
                s.battery_mv,
                true,
                StartReason::BatteryVoltage,
            ),
            (
                c.discharge_current,
                extra.discharge_ma(s),
                false,
                StartReason::DischargeCurrent,
            ),
            (c.load, s.load_w, false, StartReason::Load),
        ];
        let mut newly_sustained = None;
        for (i, (trigger, value, below, why)) in sustained.into_iter().enumerate() {
            let (Some(t), Some(v)) = (trigger, value) else {
                g.past_start[i] = None;
                g.active[i] = false;
                continue;
            };
            let (past_start, past_stop) = if below {
                (v <= t.start, v >= t.stop)
            } else {
                (v >= t.start, v <= t.stop)
            };
            if past_start {
                let since = *g.past_start[i].get_or_insert(s.at);
                if !g.active[i] && s.at.duration_since(since) >= t.after {
                    g.active[i] = true;
                    newly_sustained.get_or_insert(why);
                }
            } else {
                g.past_start[i] = None;
            }
            if grid || past_stop {
                g.active[i] = false;
            }
        }
        if g.test_until.is_some_and(|until| s.at >= until) {
            g.test_until = None;
        }
        let mut test_due = c.test_run.filter(|t| {
            let begins = local.date().to_datetime(t.at);
            let ends = begins.checked_add(t.duration).unwrap_or(begins);
            local.date().weekday() == t.weekday
                && local.datetime() >= begins
                && local.datetime() < ends
                && g.last_test_day != Some(local.date())
        });
        if s.generator_running && test_due.is_some() {
            // It runs in the test's window anyway (by hand or for another reason): the
            // week's test is done.
            g.last_test_day = Some(local.date());
            test_due = None;
        }

        match g.requested_at {
            None => {
                if s.generator_running {
                    return;
                }
                let blocked = quiet && !critical;
                let soc_start = g.soc_active && !grid;
                let sustained_start = !blocked && !grid && g.active.iter().any(|a| *a);
                let why = if soc_start {
                    Some(reason.unwrap_or(if critical {
                        StartReason::Critical
                    } else {
                        StartReason::StateOfCharge
                    }))
                } else if sustained_start {
                    Some(newly_sustained.unwrap_or_else(|| {
                        sustained
                            .iter()
                            .zip(g.active)
                            .find(|(_, a)| *a)
                            .map_or(StartReason::Load, |((.., why), _)| *why)
                    }))
                } else {
                    None
                };
                if let Some(why) = why {
                    g.request(s.at, why, actions);
                } else if let Some(t) = test_due.filter(|_| !blocked) {
                    g.last_test_day = Some(local.date());
                    g.test_until = Some(s.at.checked_add(t.duration).unwrap_or(s.at));
                    g.request(s.at, StartReason::TestRun, actions);
                }
            }
            Some(at) => {
                let needed = g.soc_active || g.active.iter().any(|a| *a) || g.test_until.is_some();
                let only_test = g.reason == Some(StartReason::TestRun);
                let ran_enough = only_test || s.at.duration_since(at) >= auto.min_run;
                if !needed && ran_enough {
                    g.requested_at = None;
                    g.reason = None;
                    actions.push(Action::StopGenerator);
                }
            }
        }
    }
}

impl GeneratorState {
    fn request(&mut self, at: Timestamp, why: StartReason, actions: &mut Vec<Action>) {
        self.requested_at = Some(at);
        self.reason = Some(why);
        self.alerted_no_start = false;
        actions.push(Action::StartGenerator(why));
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
                conditions: StartConditions::default(),
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
            vec![StartGenerator(StartReason::StateOfCharge)]
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
                StartGenerator(StartReason::StateOfCharge)
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
            vec![StartGenerator(StartReason::StateOfCharge)]
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
            vec![StartGenerator(StartReason::StateOfCharge)]
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

    fn with_conditions(conditions: StartConditions) -> PolicySettings {
        let mut st = settings(true);
        if let Some(a) = st.auto_start.as_mut() {
            a.conditions = conditions;
        }
        st
    }

    /// A battery sample with a load (no PV: the discharge current is load / voltage).
    fn ls(hhmm: &str, soc: u8, mv: u32, load_w: u32, gen_on: bool) -> PowerSample {
        PowerSample {
            load_w: Some(load_w),
            ..s(
                hhmm,
                if gen_on {
                    Source::Generator
                } else {
                    Source::Battery
                },
                Some(soc),
                Some(mv),
                gen_on,
            )
        }
    }

    /// A scripted Monday with every extra condition on: each start carries its reason,
    /// each condition stops at its own threshold after the minimum run, the test run
    /// runs its 15 minutes once, quiet hours hold back all but the critical start.
    #[test]
    fn extra_start_conditions_over_a_scripted_day() {
        use Action::*;
        use StartReason as R;
        let mut p = Policy::new(with_conditions(StartConditions {
            battery_voltage: Some(Trigger {
                start: 24_000,
                stop: 25_600,
                after: SignedDuration::ZERO,
            }),
            discharge_current: Some(Trigger {
                start: 40_000,
                stop: 5_000,
                after: SignedDuration::from_mins(10),
            }),
            load: Some(Trigger {
                start: 2_000,
                stop: 1_000,
                after: SignedDuration::from_mins(5),
            }),
            test_run: Some(TestRun {
                weekday: Weekday::Monday,
                at: Time::constant(14, 0, 0, 0),
                duration: SignedDuration::from_mins(15),
            }),
        }));
        let script: Vec<(PowerSample, Vec<Action>)> = vec![
            // 2.5 kW from a 25 V bank: 100 A of discharge and a high load, not yet long.
            (ls("08:00", 70, 25_000, 2_500, false), vec![]),
            (ls("08:04", 70, 25_000, 2_500, false), vec![]),
            (
                ls("08:05", 70, 25_000, 2_500, false),
                vec![StartGenerator(R::Load)],
            ),
            (ls("08:06", 70, 25_000, 2_500, true), vec![]),
            // The load falls below its stop value, but the minimum run (1 h) holds.
            (ls("08:30", 72, 26_000, 800, true), vec![]),
            (ls("09:05", 75, 26_000, 800, true), vec![StopGenerator]),
            // Voltage at its start value: no delay configured.
            (
                ls("10:00", 60, 23_900, 500, false),
                vec![StartGenerator(R::BatteryVoltage)],
            ),
            (ls("10:30", 62, 25_700, 500, true), vec![]),
            (ls("11:05", 65, 26_000, 500, true), vec![StopGenerator]),
            // Discharge current alone (a heavy load at a low voltage): 1.9 kW at 24.2 V.
            (ls("12:00", 60, 24_200, 1_900, false), vec![]),
            (ls("12:09", 60, 24_200, 1_900, false), vec![]),
            (
                ls("12:10", 60, 24_200, 1_900, false),
                vec![StartGenerator(R::DischargeCurrent)],
            ),
            (ls("12:40", 66, 26_500, 1_900, true), vec![]),
            (ls("13:10", 70, 26_500, 1_900, true), vec![StopGenerator]),
            // The weekly test: 15 minutes, no minimum run, once.
            (
                ls("14:00", 75, 25_500, 300, false),
                vec![StartGenerator(R::TestRun)],
            ),
            (ls("14:10", 75, 26_000, 300, true), vec![]),
            (ls("14:15", 75, 26_000, 300, true), vec![StopGenerator]),
            (ls("14:16", 75, 25_500, 300, false), vec![]),
            // Quiet hours: a low voltage and a high load do not start it...
            (ls("23:00", 50, 23_900, 2_500, false), vec![]),
            (ls("23:40", 50, 23_900, 2_500, false), vec![]),
            // ...but a critical battery does.
            (
                ls("24:10", 25, 22_500, 2_500, false),
                vec![
                    AlertTechnician(Alert::Critical),
                    DeferBulkSync(true),
                    StartGenerator(R::Critical),
                    Shutdown,
                ],
            ),
        ];
        for (sample, want) in script {
            let got = p.on_sample(&sample);
            assert_eq!(got, want, "at {}", sample.at);
            if let Some(StartGenerator(why)) = got.iter().find(|a| matches!(a, StartGenerator(_))) {
                assert_eq!(p.start_reason(), Some(*why), "the reason is kept");
            }
        }
        assert_eq!(p.last_test_run(), Some(jiff::civil::date(2026, 6, 1)));
    }

    #[test]
    fn a_test_run_in_quiet_hours_or_during_a_run_is_not_started() {
        let test_at = |h: i8| StartConditions {
            test_run: Some(TestRun {
                weekday: Weekday::Monday,
                at: Time::constant(h, 0, 0, 0),
                duration: SignedDuration::from_mins(15),
            }),
            ..StartConditions::default()
        };
        let mut p = Policy::new(with_conditions(test_at(23)));
        assert_eq!(p.on_sample(&ls("23:00", 80, 26_000, 300, false)), vec![]);
        assert_eq!(p.on_sample(&ls("23:10", 80, 26_000, 300, false)), vec![]);
        assert_eq!(p.last_test_run(), None);

        let mut p = Policy::new(with_conditions(test_at(12)));
        // Running by hand through the window: that is the week's run.
        assert_eq!(p.on_sample(&ls("12:00", 80, 26_000, 300, true)), vec![]);
        assert_eq!(p.on_sample(&ls("12:05", 80, 26_000, 300, false)), vec![]);
        assert_eq!(p.last_test_run(), Some(jiff::civil::date(2026, 6, 1)));
        // Restarted inside the window after the day's run: not run twice.
        let mut p = Policy::new(with_conditions(test_at(12)));
        p.restore_last_test_run(jiff::civil::date(2026, 6, 1));
        assert_eq!(p.on_sample(&ls("12:05", 80, 26_000, 300, false)), vec![]);
        let mut p = Policy::new(with_conditions(test_at(12)));
        assert_eq!(
            p.on_sample(&ls("12:05", 80, 26_000, 300, false)),
            vec![Action::StartGenerator(StartReason::TestRun)]
        );
        // A measured charging current wins over the estimate: no discharge start.
        let mut p = Policy::new(with_conditions(StartConditions {
            discharge_current: Some(Trigger {
                start: 40_000,
                stop: 5_000,
                after: SignedDuration::ZERO,
            }),
            ..StartConditions::default()
        }));
        let heavy = ls("15:00", 70, 25_000, 2_500, false);
        let charging = Extra {
            battery_ma: Some(3_000),
        };
        assert_eq!(p.on_sample_with(&heavy, &charging), vec![]);
        let discharging = Extra {
            battery_ma: Some(-45_000),
        };
        assert_eq!(
            p.on_sample_with(&ls("15:01", 70, 25_000, 2_500, false), &discharging),
            vec![Action::StartGenerator(StartReason::DischargeCurrent)]
        );
    }

    proptest::proptest! {
        /// Whatever the samples, actions come in consistent pairs: defer/resume and
        /// start/stop alternate, and Shutdown comes only with the entry into Critical.
        #[test]
        fn actions_are_consistent_over_any_day(
            steps in proptest::collection::vec(
                (0u8..4, proptest::option::of(0u8..=100), proptest::option::of(21_000u32..28_000), proptest::bool::ANY, 1i64..120, proptest::option::of(0u32..4_000)),
                1..200,
            ),
            all_conditions in proptest::bool::ANY,
        ) {
            let trigger = |start, stop, mins| Some(Trigger { start, stop, after: SignedDuration::from_mins(mins) });
            let mut p = Policy::new(if all_conditions {
                with_conditions(StartConditions {
                    battery_voltage: trigger(24_000, 25_600, 0),
                    discharge_current: trigger(40_000, 5_000, 10),
                    load: trigger(2_000, 1_000, 5),
                    test_run: Some(TestRun {
                        weekday: Weekday::Monday,
                        at: Time::constant(14, 0, 0, 0),
                        duration: SignedDuration::from_mins(30),
                    }),
                })
            } else {
                settings(true)
            });
            let mut t: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
            let mut deferring = false;
            let mut requested = false;
            for (src, soc, mv, gen_on, mins, load) in steps {
                t += SignedDuration::from_mins(mins);
                let source = [Source::Grid, Source::Solar, Source::Battery, Source::Generator][usize::from(src)];
                let before = p.level();
                let sample = PowerSample {
                    at: t,
                    source,
                    soc_percent: soc,
                    battery_mv: mv,
                    pv_w: None,
                    load_w: load,
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
                        Action::StartGenerator(_) => {
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
