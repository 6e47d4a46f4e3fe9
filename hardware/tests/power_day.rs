//! A whole day, without ptys: the emulator's world stepped minute by minute, samples
//! derived from what each device would report, then (1) the daily summary compared with
//! figures computed from the profile alone, and (2) the policy driving the generator in a
//! closed loop.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use markaz_hardware::power::emulator::{DayProfile, Snapshot, World};
use markaz_hardware::power::model::{Devices, Outage, PowerSample, Source, summarize};
use markaz_hardware::power::policy::{
    Action, Alert, AutoStart, Level, MonitorLostRule, Policy, PolicySettings, QuietHours,
    StartConditions, Thresholds,
};

fn day() -> Date {
    Date::constant(2026, 6, 1)
}

fn at(t: Time) -> Timestamp {
    TimeZone::UTC
        .to_timestamp(day().to_datetime(t))
        .expect("valid time")
}

fn sample(snap: &Snapshot) -> PowerSample {
    let (mppt, bmv, qpigs, gen_reading) = (snap.mppt(), snap.bmv(), snap.qpigs(), snap.generator());
    PowerSample::derive(
        snap.at,
        &Devices {
            mppt: Some(&mppt),
            bmv: Some(&bmv),
            inverter: Some((&qpigs, Some(snap.mode()))),
            generator: Some(&gen_reading),
        },
    )
}

fn minutes(t: Time) -> u64 {
    u64::from(t.hour().unsigned_abs()) * 60 + u64::from(t.minute().unsigned_abs())
}

#[test]
fn daily_summary_equals_the_profile() {
    let profile = DayProfile::damascus_summer();
    let start = at(Time::midnight());
    let mut world = World::new(profile.clone(), TimeZone::UTC, start);
    let samples: Vec<PowerSample> = (0..=24 * 60)
        .map(|m| sample(&world.advance(start + SignedDuration::from_mins(m))))
        .collect();
    let s = summarize(
        day(),
        &TimeZone::UTC,
        &samples,
        SignedDuration::from_mins(5),
    );

    // PV energy = integral of the sun curve (half sine), within 0.5 %.
    let want_pv = profile.pv_wh_per_day();
    assert!(
        (s.pv_wh as f64 - want_pv).abs() < want_pv * 0.005,
        "pv {} Wh vs {want_pv:.0} Wh",
        s.pv_wh
    );
    // Outages = the grid cuts, exactly (the generator run inside a cut does not hide it).
    let want_outages: Vec<Outage> = profile
        .grid_cuts
        .iter()
        .map(|&(from, to)| Outage {
            start: at(from),
            duration_seconds: (minutes(to) - minutes(from)) * 60,
        })
        .collect();
    assert_eq!(s.outages, want_outages);
    // Hours per source: the grid whenever it is on, the generator during its run, the
    // rest on solar or battery.
    let cut_s: u64 = want_outages.iter().map(|o| o.duration_seconds).sum();
    let gen_s: u64 = profile
        .generator_runs
        .iter()
        .map(|&(a, b)| (minutes(b) - minutes(a)) * 60)
        .sum();
    assert_eq!(s.seconds_per_source.grid, 86_400 - cut_s);
    assert_eq!(s.seconds_per_source.generator, gen_s);
    assert_eq!(
        s.seconds_per_source.solar + s.seconds_per_source.battery,
        cut_s - gen_s
    );
    assert_eq!(s.unknown_seconds, 0);
    assert_eq!(s.generator_run_seconds, gen_s);
    assert_eq!(s.generator_starts, profile.generator_runs.len() as u32);
    assert!((s.hours_on(Source::Grid) - 15.5).abs() < 1e-9);
    // The lowest charge is the lowest the battery reached within the day (not the
    // next midnight's sample).
    let min = samples
        .iter()
        .filter(|x| x.at < at(Time::MAX))
        .filter_map(|x| x.soc_percent)
        .min();
    assert_eq!(s.min_soc, min);
}

#[test]
fn policy_runs_the_generator_through_a_long_cut() {
    // Grid gone from 08:00 to 20:00, cloudy (weak sun), small battery: the policy must
    // start the generator when the charge falls, keep it at least its minimum run time,
    // stop it once charged, and never reach Critical.
    let t = |h: i8, m: i8| Time::constant(h, m, 0, 0);
    let profile = DayProfile {
        pv_peak_w: 150,
        grid_cuts: vec![(t(8, 0), t(20, 0))],
        generator_runs: vec![],
        battery_wh: 2400,
        initial_soc_permille: 700,
        charger_w: 900,
        ..DayProfile::damascus_summer()
    };
    let settings = PolicySettings {
        thresholds: Thresholds::default(),
        auto_start: Some(AutoStart {
            start_soc_percent: 35,
            stop_soc_percent: 80,
            quiet_start_soc_percent: 20,
            quiet_stop_soc_percent: 60,
            quiet_hours: Some(QuietHours {
                from: t(22, 0),
                to: t(6, 0),
            }),
            tz: TimeZone::UTC,
            min_run: SignedDuration::from_hours(1),
            start_timeout: SignedDuration::from_mins(3),
            on_monitor_lost: MonitorLostRule::KeepRunning,
            conditions: StartConditions::default(),
        }),
        monitor_lost_after: SignedDuration::from_mins(10),
    };
    let start = at(Time::midnight());
    let mut world = World::new(profile, TimeZone::UTC, start);
    let mut policy = Policy::new(settings);
    let mut log: Vec<(Timestamp, Action)> = Vec::new();
    let mut levels = vec![Level::Normal];
    for m in 0..24 * 60 {
        let now = start + SignedDuration::from_mins(m);
        let s = sample(&world.advance(now));
        for a in policy.on_sample(&s) {
            match a {
                Action::StartGenerator(_) => {
                    world.command(markaz_hardware::power::generator::GeneratorCommand::Start)
                }
                Action::StopGenerator => {
                    world.command(markaz_hardware::power::generator::GeneratorCommand::Stop)
                }
                _ => {}
            }
            log.push((now, a));
        }
        if levels.last() != Some(&policy.level()) {
            levels.push(policy.level());
        }
    }
    let starts: Vec<Timestamp> = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::StartGenerator(_)))
        .map(|(t, _)| *t)
        .collect();
    let stops: Vec<Timestamp> = log
        .iter()
        .filter(|(_, a)| *a == Action::StopGenerator)
        .map(|(t, _)| *t)
        .collect();
    assert!(!starts.is_empty(), "the generator was started: {log:?}");
    assert_eq!(
        starts.len(),
        stops.len(),
        "every start was followed by a stop: {log:?}"
    );
    for (on, off) in starts.iter().zip(&stops) {
        assert!(
            *on >= at(t(8, 0)) && *on < at(t(20, 0)),
            "started only during the cut"
        );
        assert!(*off <= at(t(21, 0)), "stopped once the grid is back");
        assert!(
            off.duration_since(*on) >= SignedDuration::from_hours(1),
            "minimum run"
        );
    }
    assert!(!levels.contains(&Level::Critical), "levels: {levels:?}");
    assert!(!log.iter().any(|(_, a)| *a == Action::Shutdown));
    assert!(
        !log.iter()
            .any(|(_, a)| *a == Action::AlertTechnician(Alert::GeneratorDidNotStart))
    );
    assert_eq!(policy.level(), Level::Normal, "grid back in the evening");
}
