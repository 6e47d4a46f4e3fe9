//! The generator's extra start conditions in a closed loop with the emulated site,
//! minute by minute over a Monday without grid: a heavy morning load starts the
//! generator (reason: load) once it has lasted five minutes, the minimum run time holds
//! it after the load falls, the weekly test run starts it at 14:00 for its 15 minutes,
//! and the day's summary counts exactly those two runs.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use markaz_hardware::power::emulator::{DayProfile, Snapshot, World};
use markaz_hardware::power::generator::GeneratorCommand;
use markaz_hardware::power::model::{Devices, PowerSample, summarize};
use markaz_hardware::power::policy::{
    Action, AutoStart, Extra, MonitorLostRule, Policy, PolicySettings, StartConditions,
    StartReason, TestRun, Thresholds, Trigger,
};

fn t(h: i8, m: i8) -> Time {
    Time::constant(h, m, 0, 0)
}

/// A Monday.
fn day() -> Date {
    Date::constant(2026, 6, 1)
}

fn at(time: Time) -> Timestamp {
    TimeZone::UTC
        .to_timestamp(day().to_datetime(time))
        .expect("valid time")
}

fn sample(snap: &Snapshot) -> (PowerSample, Extra) {
    let (mppt, bmv, qpigs, gen_reading) = (snap.mppt(), snap.bmv(), snap.qpigs(), snap.generator());
    let s = PowerSample::derive(
        snap.at,
        &Devices {
            mppt: Some(&mppt),
            bmv: Some(&bmv),
            inverter: Some((&qpigs, Some(snap.mode()))),
            generator: Some(&gen_reading),
        },
    );
    (
        s,
        Extra {
            battery_ma: Some(bmv.battery_ma),
        },
    )
}

#[test]
fn load_and_test_run_start_the_generator_with_their_reasons() {
    let profile = DayProfile {
        pv_peak_w: 0,
        load: vec![
            (t(0, 0), 200),
            (t(7, 59), 200),
            (t(8, 0), 2_500),
            (t(9, 0), 2_500),
            (t(9, 1), 300),
            (t(23, 59), 300),
        ],
        grid_cuts: vec![(t(0, 0), Time::MAX)],
        generator_runs: vec![],
        battery_wh: 40_000,
        initial_soc_permille: 950,
        ..DayProfile::damascus_summer()
    };
    let settings = PolicySettings {
        thresholds: Thresholds::default(),
        auto_start: Some(AutoStart {
            start_soc_percent: 35,
            stop_soc_percent: 80,
            quiet_start_soc_percent: 20,
            quiet_stop_soc_percent: 60,
            quiet_hours: None,
            tz: TimeZone::UTC,
            min_run: SignedDuration::from_hours(1),
            start_timeout: SignedDuration::from_mins(3),
            on_monitor_lost: MonitorLostRule::KeepRunning,
            conditions: StartConditions {
                load: Some(Trigger {
                    start: 2_000,
                    stop: 1_000,
                    after: SignedDuration::from_mins(5),
                }),
                test_run: Some(TestRun {
                    weekday: Weekday::Monday,
                    at: t(14, 0),
                    duration: SignedDuration::from_mins(15),
                }),
                ..StartConditions::default()
            },
        }),
        monitor_lost_after: SignedDuration::from_mins(10),
    };
    let start = at(Time::midnight());
    let mut world = World::new(profile, TimeZone::UTC, start);
    let mut policy = Policy::new(settings);
    let mut log: Vec<(Timestamp, Action)> = Vec::new();
    let mut samples = Vec::new();
    for m in 0..=24 * 60 {
        let now = start + SignedDuration::from_mins(m);
        let (s, extra) = sample(&world.advance(now));
        for a in policy.on_sample_with(&s, &extra) {
            match a {
                Action::StartGenerator(_) => world.command(GeneratorCommand::Start),
                Action::StopGenerator => world.command(GeneratorCommand::Stop),
                _ => {}
            }
            log.push((now, a));
        }
        samples.push(s);
    }
    let generator: Vec<(Timestamp, Action)> = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::StartGenerator(_) | Action::StopGenerator))
        .copied()
        .collect();
    assert_eq!(
        generator,
        vec![
            (at(t(8, 5)), Action::StartGenerator(StartReason::Load)),
            (at(t(9, 5)), Action::StopGenerator),
            (at(t(14, 0)), Action::StartGenerator(StartReason::TestRun)),
            (at(t(14, 15)), Action::StopGenerator),
        ],
        "{log:?}"
    );
    assert_eq!(policy.last_test_run(), Some(day()));
    let s = summarize(
        day(),
        &TimeZone::UTC,
        &samples,
        SignedDuration::from_mins(5),
    );
    assert_eq!(s.generator_starts, 2);
    assert_eq!(s.generator_run_seconds, (60 + 15) * 60);
}
