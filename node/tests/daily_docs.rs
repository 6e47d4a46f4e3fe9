//! The daily documents a center writes for the hub, in a real node (temp SQLite, real
//! writer and document store): a scripted power day gives an `energy:` document whose
//! metrics equal `summarize`'s figures, a day of tickets and cases gives a `stats:`
//! document with the supervisor's figures, and writing either again adds no change.

use crate::support;

use std::time::Duration;

use jiff::SignedDuration;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use markaz_config::{NodeConfig, VeDirectConfig, VeDirectRole};
use markaz_hardware::power::model::{PowerSample, Source, summarize};
use markaz_hardware::power::policy::Level;
use markaz_node::app::App;
use markaz_node::app::daily_docs::{self, StatsSettings};
use markaz_node::devices::power::{self, SamplerSettings};
use markaz_node::error::AppError;
use markaz_sync::docs::DocKind;
use markaz_sync::model::ids::CenterId;
use serde_json::json;
use support::{TestNode, citizen};
use tokio_util::sync::CancellationToken;

async fn node_with(tweak: impl FnOnce(&mut NodeConfig)) -> (TestNode, NodeConfig) {
    let mut kept = None;
    let node = TestNode::start_with(|c| {
        tweak(c);
        kept = Some(c.clone());
    })
    .await;
    (node, kept.expect("config"))
}

async fn changes_of(app: &App, doc: String) -> i64 {
    app.db
        .readers
        .read(move |c| -> Result<i64, AppError> {
            Ok(c.query_row(
                "SELECT count(*) FROM changes WHERE doc_id = ?1",
                [doc],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

async fn insert(app: &App, samples: Vec<PowerSample>) {
    app.db
        .writer
        .write(move |tx| -> Result<(), AppError> {
            let c = tx.conn;
            for s in &samples {
                power::insert_sample(c, s, Level::Normal)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// One sample a minute over the local day 2026-11-28 in Damascus (+03:00): grid until
/// 06:00, an outage until 10:00 (battery, then solar from 08:00), grid until 18:00, the
/// generator 18:00–20:00 burning 80 → 70 % fuel, the battery after, and the node off
/// 22:00–23:00 (unknown time).
fn scripted_day(tz: &TimeZone, day: Date) -> Vec<PowerSample> {
    let start = tz
        .to_timestamp(day.to_datetime(jiff::civil::Time::midnight()))
        .unwrap();
    let mut out = Vec::new();
    for minute in 0..(24 * 60) {
        let h = minute / 60;
        if h == 22 {
            continue;
        }
        let at = start + SignedDuration::from_mins(minute);
        let (source, grid, pv, soc, gen_on) = match h {
            0..6 => (Source::Grid, Some(true), 0, 100, false),
            6..8 => (
                Source::Battery,
                Some(false),
                0,
                100 - u8::try_from((minute - 360) / 6).unwrap(),
                false,
            ),
            8..10 => (Source::Solar, Some(false), 900, 80, false),
            10..18 => (Source::Grid, Some(true), 600, 95, false),
            18..20 => (Source::Generator, Some(false), 0, 90, true),
            _ => (Source::Battery, Some(false), 0, 85, false),
        };
        let fuel = gen_on.then(|| 80 - u16::try_from((minute - 18 * 60) / 12).unwrap());
        out.push(PowerSample {
            at,
            source,
            soc_percent: Some(soc),
            battery_mv: Some(25_500),
            pv_w: Some(pv),
            load_w: Some(400),
            generator_running: gen_on,
            fuel_percent: fuel.or(Some(70).filter(|_| h >= 20)),
            grid_available: grid,
        });
    }
    out
}

#[tokio::test]
async fn a_scripted_power_day_becomes_an_energy_document_written_once() {
    let (node, cfg) = node_with(|c| {
        c.power.sample_interval_secs = 60;
        c.power.vedirect = vec![VeDirectConfig {
            port: "/dev/null".into(),
            role: VeDirectRole::Mppt,
        }];
    })
    .await;
    let app = &node.app;
    let tz = cfg.center.timezone.time_zone();
    let day = date(2026, 11, 28);
    let samples = scripted_day(&tz, day);
    insert(app, samples.clone()).await;

    let settings = SamplerSettings::from_config(&cfg);
    let center: CenterId = cfg.center.id.to_string().parse().unwrap();
    let written = power::backfill_energy(app, &settings, &center)
        .await
        .unwrap();
    assert_eq!(
        written,
        vec![day],
        "only the day with samples gets a document"
    );
    assert!(
        app.read_metrics_doc(DocKind::Energy, date(2026, 11, 27))
            .await
            .unwrap()
            .is_none()
    );

    let want = summarize(day, &tz, &samples, SignedDuration::from_mins(3));
    let m = app
        .read_metrics_doc(DocKind::Energy, day)
        .await
        .unwrap()
        .expect("energy document of the scripted day");
    let s = &want.seconds_per_source;
    let outage_seconds: u64 = want.outages.iter().map(|o| o.duration_seconds).sum();
    let longest = want.outages.iter().map(|o| o.duration_seconds).max();
    let expect = [
        ("has_solar", 1),
        ("seconds_grid", s.grid as i64),
        ("seconds_solar", s.solar as i64),
        ("seconds_battery", s.battery as i64),
        ("seconds_generator", s.generator as i64),
        ("seconds_unknown", want.unknown_seconds as i64),
        ("generator_run_seconds", want.generator_run_seconds as i64),
        ("generator_starts", i64::from(want.generator_starts)),
        ("pv_wh", want.pv_wh as i64),
        ("min_soc_pct", i64::from(want.min_soc.unwrap())),
        ("outages", want.outages.len() as i64),
        ("outage_seconds", outage_seconds as i64),
        ("longest_outage_seconds", longest.unwrap() as i64),
        ("fuel_used_pct", 10),
    ];
    for (name, v) in expect {
        assert_eq!(m.get(name), Some(&v), "metric {name} in {m:?}");
    }
    // And when the center computed them, which the hub shows as the day's "as of".
    let as_of = m.get(daily_docs::AS_OF_MS).copied().expect("as_of_ms");
    assert!(as_of > 0 && as_of <= app.now().as_millisecond(), "{as_of}");
    assert_eq!(m.len(), expect.len() + 1, "no other metric: {m:?}");
    // What the script says, so that a summary that drifted from it would show.
    assert_eq!(s.generator, 2 * 3600);
    assert_eq!(want.generator_starts, 1);
    assert_eq!(want.min_soc, Some(80));
    // 06:00–10:00, from 18:00 to the node going off at 22:00 (its last sample, 21:59,
    // holds for the 3-minute gap), and 23:00 to the day's last sample at 23:59.
    assert_eq!(want.outages.len(), 3);
    assert_eq!(outage_seconds, 4 * 3600 + (4 * 3600 + 120) + 3540);

    // Written again: no new automerge change; the back-fill is done for that day.
    let doc = format!("energy:{center}:{day}");
    let before = changes_of(app, doc.clone()).await;
    assert_eq!(before, 1);
    let (tz2, c2) = (tz.clone(), center.clone());
    let now = app.now();
    app.db
        .writer
        .write(move |tx| {
            power::energy_day(
                tx,
                day,
                &tz2,
                SignedDuration::from_mins(3),
                now,
                &c2,
                true,
                true,
            )
        })
        .await
        .unwrap();
    assert_eq!(changes_of(app, doc.clone()).await, before);
    assert!(
        power::backfill_energy(app, &settings, &center)
            .await
            .unwrap()
            .is_empty()
    );

    // A sample the node stored late (the 22:00 gap) changes the figures: one change.
    let late = PowerSample {
        at: samples[22 * 60 - 1].at + SignedDuration::from_mins(2),
        ..samples[22 * 60 - 1].clone()
    };
    insert(app, vec![late]).await;
    let (tz2, c2) = (tz.clone(), center.clone());
    app.db
        .writer
        .write(move |tx| {
            power::energy_day(
                tx,
                day,
                &tz2,
                SignedDuration::from_mins(3),
                now,
                &c2,
                true,
                true,
            )
        })
        .await
        .unwrap();
    assert_eq!(changes_of(app, doc).await, before + 1);
}

#[tokio::test]
async fn a_center_without_power_devices_or_activity_writes_no_document() {
    let (node, _) = node_with(|_| {}).await;
    let app = &node.app;
    assert_eq!(app.write_stats_docs().await.unwrap(), 0);
    assert!(
        app.read_metrics_doc(DocKind::Stats, app.today())
            .await
            .unwrap()
            .is_none()
    );
    let docs = app
        .db
        .readers
        .read(|c| -> Result<i64, AppError> {
            Ok(c.query_row(
                "SELECT count(*) FROM changes WHERE doc_id LIKE 'energy:%' OR doc_id LIKE 'stats:%'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(docs, 0);
}

#[tokio::test]
async fn a_day_of_tickets_and_cases_becomes_a_stats_document() {
    let (node, cfg) = node_with(|_| {}).await;
    let app = &node.app;
    let today = app.today();
    let rec = node.staff("rec", &["reception"], &[]).await;
    let clerk = node
        .staff(
            "clerk1",
            &["clerk", "reception"],
            &[("justice", "2027-06-30")],
        )
        .await;
    for _ in 0..3 {
        let (s, b) = rec.post("/tickets", json!({"group": "civil"})).await;
        assert_eq!(s, 201, "{b}");
    }
    node.advance(Duration::from_secs(300));
    let (s, b) = clerk.post("/counters/1/call-next", json!({})).await;
    assert_eq!(s, 200, "{b}");
    node.advance(Duration::from_secs(120));
    let (s, b) = clerk.post("/counters/1/finish", json!({})).await;
    assert_eq!(s, 200, "{b}");
    node.advance(Duration::from_secs(60));
    clerk.post("/counters/1/call-next", json!({})).await;
    let (s, b) = clerk.post("/counters/1/no-show", json!({})).await;
    assert_eq!(s, 200, "{b}");

    let (s, b) = clerk.post("/citizens", citizen("01234567890")).await;
    assert!(s == 201 || s == 200, "{b}");
    let mut cases = Vec::new();
    for _ in 0..2 {
        let (s, b) = clerk
            .post(
                "/cases",
                json!({"national_id": "01234567890", "service": "criminal_record",
                       "fields": {"purpose": "توظيف"}, "delivery": {"method": "pickup"}}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        cases.push(b["case_no"].as_str().unwrap().to_string());
    }
    let (s, b) = clerk
        .post(
            &format!("/cases/{}/payment", cases[0]),
            json!({"method": "cash"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for body in [
        json!({"action": "start"}),
        json!({"action": "ready"}),
        json!({"action": "deliver", "receiver_national_id": "01234567890"}),
    ] {
        let (s, b) = clerk
            .post(&format!("/cases/{}/transitions", cases[0]), body)
            .await;
        assert_eq!(s, 200, "{b}");
    }

    // The run_stats task writes today's document at once.
    let cancel = CancellationToken::new();
    let task = tokio::spawn(daily_docs::run_stats(
        app.clone(),
        StatsSettings {
            check_every: Duration::from_millis(50),
            refresh_every: SignedDuration::from_hours(1),
        },
        cancel.clone(),
    ));
    let mut m = None;
    for _ in 0..100 {
        m = app.read_metrics_doc(DocKind::Stats, today).await.unwrap();
        if m.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    let m = m.expect("stats document of today");
    let expect = [
        ("tickets_issued", 3),
        ("tickets_served", 1),
        ("no_shows", 1),
        ("wait_seconds_avg", (300 + 480) / 2),
        ("wait_seconds_max", 480),
        ("service_seconds_avg", 120),
        ("cases_created", 2),
        ("cases_delivered", 1),
    ];
    for (name, v) in expect {
        assert_eq!(m.get(name), Some(&v), "metric {name} in {m:?}");
    }
    // And when the center computed them (the hub shows it as the day's "as of").
    assert!(m.get(daily_docs::AS_OF_MS).is_some_and(|t| *t > 0), "{m:?}");
    assert_eq!(m.len(), expect.len() + 1, "{m:?}");
    let sup = node.staff("sup", &["supervisor"], &[]).await;
    let (_, rep) = sup.get("/reports/queue").await;
    assert_eq!(rep["total"]["issued"], 3);
    assert_eq!(rep["total"]["avg_wait_secs"], m["wait_seconds_avg"]);

    // The day ends: the finished day is written once more (unchanged: no new change),
    // and marked final.
    let doc = format!("stats:{}:{today}", cfg.center.id);
    let before = changes_of(app, doc.clone()).await;
    node.advance(Duration::from_secs(24 * 3600));
    assert_eq!(app.write_stats_docs().await.unwrap(), 0);
    assert_eq!(changes_of(app, doc).await, before);
    let mark = app
        .db
        .readers
        .read(|c| -> Result<_, AppError> {
            Ok(daily_docs::date_mark(c, daily_docs::STATS_FINAL_THROUGH)?)
        })
        .await
        .unwrap();
    assert_eq!(mark, Some(today));
    // A quiet new day gets no document.
    assert!(
        app.read_metrics_doc(DocKind::Stats, app.today())
            .await
            .unwrap()
            .is_none()
    );
}

/// The running sampler against the emulated battery monitor: its first sample writes
/// today's energy document; when the node's clock passes local midnight, the finished
/// day's document is written again and marked final, and the new day gets its own.
#[tokio::test]
async fn the_sampler_finishes_the_day_at_midnight() {
    use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, PowerEmulator};
    use tokio_util::task::TaskTracker;
    let emu_cancel = CancellationToken::new();
    let power = PowerEmulator::start(
        DayProfile::damascus_summer(),
        EmulatorOptions {
            start: "2026-11-29T20:00:00Z".parse().unwrap(),
            tz: TimeZone::get("Asia/Damascus").unwrap(),
            time_scale: 1.0,
            block_interval: Duration::from_millis(200),
            ..EmulatorOptions::default()
        },
        &emu_cancel,
    )
    .unwrap();
    let (node, cfg) = node_with(|c| {
        c.power.sample_interval_secs = 1;
        c.power.vedirect = vec![VeDirectConfig {
            port: power.bmv.path().display().to_string(),
            role: VeDirectRole::Bmv,
        }];
    })
    .await;
    let app = &node.app;
    // 23:59:50 in Damascus (+03:00).
    node.advance(Duration::from_secs(14 * 3600 + 59 * 60 + 50));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    markaz_node::devices::start(app, &cfg, &tracker, &shutdown).unwrap();
    let (day, next) = (date(2026, 11, 29), date(2026, 11, 30));
    let mut first = None;
    for _ in 0..100 {
        first = app.read_metrics_doc(DocKind::Energy, day).await.unwrap();
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.expect("today's energy document from the first sample");
    assert_eq!(first.get("has_solar"), Some(&0), "a BMV only: {first:?}");
    // Every second of the node's clock until past midnight, one real tick each.
    for _ in 0..20 {
        node.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut done = None;
    for _ in 0..100 {
        let mark = app
            .db
            .readers
            .read(|c| -> Result<_, AppError> {
                Ok(daily_docs::date_mark(c, daily_docs::ENERGY_FINAL_THROUGH)?)
            })
            .await
            .unwrap();
        let new_day = app.read_metrics_doc(DocKind::Energy, next).await.unwrap();
        if mark == Some(day) && new_day.is_some() {
            done = new_day;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done.is_some(),
        "the finished day is marked and the new day has a document"
    );
    let last = app
        .read_metrics_doc(DocKind::Energy, day)
        .await
        .unwrap()
        .unwrap();
    // The finished day's document holds the last seconds before midnight too.
    let known = |m: &std::collections::BTreeMap<String, i64>| 86_400 - m["seconds_unknown"];
    assert!(known(&last) > known(&first), "{first:?} then {last:?}");
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(15), tracker.wait())
        .await
        .unwrap();
    emu_cancel.cancel();
}
