//! Issue #16.6: every reading of the power and modem panels is true or flagged stale.
//! A real node (temp SQLite, real router) reads the emulators on ptys; the tests pin
//! values in the emulators and look for them in `GET /api/v1/status`, then silence the
//! devices and look for the stale flags. Table-driven: one row per field, and a failure
//! names the rows that did not show.
//!
//! Also #16.2's remainder at node level: a generator start the controller refuses raises
//! the "generator did not start" technician alert (an outbox row for the technician's
//! phone and an error line in the node log) and the panel says "start failed" with the
//! reason.

use crate::support;

use std::time::Duration;

use markaz_config::{NodeConfig, VeDirectConfig, VeDirectRole};
use markaz_hardware::modem::emulator::{self, EmulatorHandle, Hang};
use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, Overrides, PowerEmulator};
use markaz_node::error::AppError;
use serde_json::Value;
use support::TestNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A node reading a modem and a full set of power devices on ptys.
struct Rig {
    node: TestNode,
    tech: support::Client,
    modem: EmulatorHandle,
    power: PowerEmulator,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    emu_cancel: CancellationToken,
}

impl Rig {
    async fn start(tweak: impl FnOnce(&mut NodeConfig)) -> Rig {
        let emu_cancel = CancellationToken::new();
        let (modem, _t) = emulator::start(emu_cancel.clone()).unwrap();
        let power = PowerEmulator::start(
            DayProfile::damascus_summer(),
            EmulatorOptions {
                start: "2026-11-29T09:00:00Z".parse().unwrap(),
                tz: jiff::tz::TimeZone::get("Asia/Damascus").unwrap(),
                time_scale: 1.0,
                block_interval: Duration::from_millis(200),
                ..EmulatorOptions::default()
            },
            &emu_cancel,
        )
        .unwrap();
        // A closed probe target: the link monitor settles at once and stays put.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = l.local_addr().unwrap().to_string();
        drop(l);
        let mut kept = None;
        let node = TestNode::start_with(|c| {
            c.modem.enabled = true;
            c.modem.port = modem.path().display().to_string();
            c.modem.poll_interval_secs = 1;
            c.modem.command_timeout_ms = 1000;
            c.link.probe_targets = vec![dead.parse().unwrap()];
            c.power.sample_interval_secs = 1;
            c.power.vedirect = vec![
                VeDirectConfig {
                    port: power.mppt.path().display().to_string(),
                    role: VeDirectRole::Mppt,
                },
                VeDirectConfig {
                    port: power.bmv.path().display().to_string(),
                    role: VeDirectRole::Bmv,
                },
            ];
            c.power.inverter.enabled = true;
            c.power.inverter.port = Some(power.inverter.path().display().to_string());
            c.power.inverter.poll_interval_secs = 1;
            c.power.generator.enabled = true;
            c.power.generator.port = Some(power.generator.path().display().to_string());
            tweak(c);
            kept = Some(c.clone());
        })
        .await;
        let cfg = kept.unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        markaz_node::devices::start(&node.app, &cfg, &tracker, &shutdown).unwrap();
        let tech = node.staff("tech", &["technician"], &[]).await;
        Rig {
            node,
            tech,
            modem,
            power,
            shutdown,
            tracker,
            emu_cancel,
        }
    }

    async fn panels(&self) -> Value {
        let (s, b) = self.tech.get("/status").await;
        assert_eq!(s, 200, "{b}");
        b["panels"].clone()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(20), self.tracker.wait())
            .await
            .expect("the supervisors stop");
        self.emu_cancel.cancel();
    }
}

/// One field of a panel: how a test sees it in `panels`.
struct Row {
    field: &'static str,
    seen: Box<dyn Fn(&Value) -> bool>,
}

fn row(field: &'static str, seen: impl Fn(&Value) -> bool + 'static) -> Row {
    Row {
        field,
        seen: Box::new(seen),
    }
}

/// Polls the panels until every row is seen; on timeout, panics naming the rows that
/// were not.
async fn all_seen(rig: &Rig, what: &str, rows: &[Row], secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let p = rig.panels().await;
        let missing: Vec<&str> = rows
            .iter()
            .filter(|r| !(r.seen)(&p))
            .map(|r| r.field)
            .collect();
        if missing.is_empty() {
            return p;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{what}: not on the panel after {secs} s: {missing:?}\npower: {}\nmodem: {}",
                p["power"]["data"], p["modem"]["data"]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn power(p: &Value) -> &Value {
    &p["power"]["data"]
}

fn modem(p: &Value) -> &Value {
    &p["modem"]["data"]
}

fn device<'a>(p: &'a Value, kind: &str) -> &'a Value {
    power(p)["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == kind))
        .unwrap_or(&Value::Null)
}

fn stale_field(p: &Value, f: &str) -> bool {
    power(p)["stale_fields"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 0.011)
}

/// Pinned power values, three sets (grid; generator; battery alone and low): each
/// proves the one before was no coincidence.
fn pinned(set: usize) -> Overrides {
    fn pick<T>(set: usize, a: T, b: T, c: T) -> Option<T> {
        Some(match set {
            0 => a,
            1 => b,
            _ => c,
        })
    }
    Overrides {
        soc_permille: pick(set, 730, 250, 220),
        battery_mv: pick(set, 25_310, 24_170, 23_880),
        pv_w: pick(set, 812, 333, 95),
        pv_inverter_w: pick(set, 345, 120, 40),
        load_w: pick(set, 1234, 777, 1500),
        grid: pick(set, true, false, false),
        generator_running: pick(set, false, true, false),
        fuel_percent: pick(set, 64, 41, 40),
        run_seconds: pick(set, 36_000, 45_000, 46_800),
        starts: pick(set, 17, 18, 19),
    }
}

fn power_rows(set: usize) -> Vec<Row> {
    let o = pinned(set);
    let soc = u64::from(o.soc_permille.unwrap() / 10);
    let volts = f64::from(o.battery_mv.unwrap()) / 1000.0;
    let (mppt, inv) = (
        u64::from(o.pv_w.unwrap()),
        u64::from(o.pv_inverter_w.unwrap()),
    );
    let load = u64::from(o.load_w.unwrap());
    let grid = o.grid.unwrap();
    let running = o.generator_running.unwrap();
    let fuel = u64::from(o.fuel_percent.unwrap());
    let hours = f64::from(o.run_seconds.unwrap()) / 3600.0;
    let starts = u64::from(o.starts.unwrap());
    vec![
        row("soc_percent", move |p| power(p)["soc_percent"] == soc),
        row("battery_v", move |p| close(&power(p)["battery_v"], volts)),
        row("pv.mppt_w", move |p| power(p)["pv"]["mppt_w"] == mppt),
        row("pv.inverter_w", move |p| {
            power(p)["pv"]["inverter_w"] == inv
        }),
        row("pv.total_w", move |p| {
            power(p)["pv"]["total_w"] == mppt + inv
        }),
        row("pv_w", move |p| power(p)["pv_w"] == mppt + inv),
        row("load_w", move |p| power(p)["load_w"] == load),
        row("grid_available", move |p| {
            power(p)["grid_available"] == grid
        }),
        row("inverter_mode", move |p| {
            power(p)["inverter_mode"] == if grid || running { "line" } else { "battery" }
        }),
        row("devices.inverter.mode", move |p| {
            device(p, "inverter")["mode"] == if grid || running { "line" } else { "battery" }
        }),
        row("source", move |p| {
            power(p)["source"]
                == match (running, grid) {
                    (true, _) => "generator",
                    (false, true) => "grid",
                    (false, false) => "battery",
                }
        }),
        row("generator.running", move |p| {
            power(p)["generator"]["running"] == running
        }),
        row("generator.engine", move |p| {
            power(p)["generator"]["engine"] == if running { "running" } else { "stopped" }
        }),
        row("generator.fuel_percent", move |p| {
            power(p)["generator"]["fuel_percent"] == fuel
        }),
        row("fuel_percent", move |p| power(p)["fuel_percent"] == fuel),
        row("generator.run_hours", move |p| {
            close(&power(p)["generator"]["run_hours"], hours)
        }),
        row("generator.starts", move |p| {
            power(p)["generator"]["starts"] == starts
        }),
        // The policy's reading of the battery: on the battery alone, 22 % is below the
        // low threshold (30); the generator or the grid keeps the level normal.
        row("level", move |p| {
            power(p)["level"] == if grid || running { "normal" } else { "low" }
        }),
        row("bulk_sync_deferred", move |p| {
            power(p)["bulk_sync_deferred"] == !(grid || running)
        }),
        row("no_fresh_device", |p| power(p)["no_fresh_device"] == false),
        row("stale_fields", |p| {
            power(p)["stale_fields"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        }),
        row("generator.stale", |p| {
            power(p)["generator"]["stale"] == false
        }),
        row("devices.*.stale", |p| {
            ["mppt", "bmv", "inverter", "generator"]
                .iter()
                .all(|k| device(p, k)["stale"] == false)
        }),
        row("devices.*.updated_at", |p| {
            ["mppt", "bmv", "inverter", "generator"]
                .iter()
                .all(|k| device(p, k)["updated_at"].is_string())
        }),
        row("sample_at", |p| power(p)["sample_at"].is_string()),
        row("today", |p| power(p)["today"]["date"] == "2026-11-29"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_power_reading_follows_its_device_or_is_flagged_stale() {
    let rig = Rig::start(|_| {}).await;
    for (set, what) in ["on the grid", "on the generator", "on the battery, low"]
        .into_iter()
        .enumerate()
    {
        rig.power.set_overrides(pinned(set));
        all_seen(&rig, what, &power_rows(set), 30).await;
    }

    // Frame errors are counted per device.
    rig.power.bmv.knobs().inject_bad_checksums(2);
    rig.power.inverter.knobs().inject_bad_checksums(1);
    all_seen(
        &rig,
        "frame errors",
        &[
            row("devices.bmv.bad_checksums", |p| {
                device(p, "bmv")["bad_checksums"].as_u64() >= Some(2)
            }),
            row("devices.inverter.bad_crc", |p| {
                device(p, "inverter")["bad_crc"].as_u64() >= Some(1)
            }),
        ],
        20,
    )
    .await;

    // The battery monitor alone goes silent: the charge comes from the inverter (a true
    // value, from a fresh device), the monitor is flagged.
    rig.power.bmv.knobs().set_silent(true);
    all_seen(
        &rig,
        "battery monitor silent",
        &[
            row("devices.bmv.stale", |p| device(p, "bmv")["stale"] == true),
            row("soc_percent from the inverter", |p| {
                power(p)["soc_percent"] == 22
            }),
            row("soc_percent not stale", |p| !stale_field(p, "soc_percent")),
        ],
        20,
    )
    .await;

    // Every power device silent: each figure is flagged, the generator too.
    for port in [&rig.power.mppt, &rig.power.inverter] {
        port.knobs().set_silent(true);
    }
    rig.power.generator.knobs().set_silent(true);
    let stale = |f: &'static str| row(f, move |p| stale_field(p, f));
    let mut rows: Vec<Row> = [
        "source",
        "soc_percent",
        "battery_v",
        "pv_w",
        "load_w",
        "grid_available",
        "fuel_percent",
        "inverter_mode",
        "generator",
    ]
    .into_iter()
    .map(stale)
    .collect();
    rows.push(row("no_fresh_device", |p| {
        power(p)["no_fresh_device"] == true
    }));
    rows.push(row("generator.stale", |p| {
        power(p)["generator"]["stale"] == true
    }));
    rows.push(row("devices.*.stale", |p| {
        ["mppt", "bmv", "inverter", "generator"]
            .iter()
            .all(|k| device(p, k)["stale"] == true)
    }));
    rows.push(row("inverter_mode withdrawn", |p| {
        power(p)["inverter_mode"].is_null()
    }));
    all_seen(&rig, "every power device silent", &rows, 40).await;

    // They speak again: the flags clear.
    for port in [&rig.power.mppt, &rig.power.bmv, &rig.power.inverter] {
        port.knobs().set_silent(false);
    }
    rig.power.generator.knobs().set_silent(false);
    all_seen(&rig, "devices back", &power_rows(2), 40).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_modem_reading_follows_the_modem_or_is_flagged_stale() {
    let rig = Rig::start(|_| {}).await;
    let m = |p: &Value| modem(p).clone();
    all_seen(
        &rig,
        "the modem ready",
        &[row("state", move |p| m(p)["state"] == "ready")],
        20,
    )
    .await;
    // Values of a working modem.
    rig.modem.set_signal(11);
    rig.modem.set_operator("MTN SYRIA");
    rig.modem.set_clock_offset(-120);
    all_seen(
        &rig,
        "signal, operator, network clock",
        &[
            row("signal.rssi", |p| modem(p)["signal"]["rssi"] == 11),
            row("signal.dbm", |p| modem(p)["signal"]["dbm"] == -91),
            row("signal.bars", |p| {
                modem(p)["signal"]["bars"].as_u64().is_some()
            }),
            row("operator", |p| modem(p)["operator"] == "MTN SYRIA"),
            row("registration.packet", |p| {
                modem(p)["registration"]["packet"]["status"] == "home"
            }),
            row("registration.circuit", |p| {
                modem(p)["registration"]["circuit"]["status"] == "home"
            }),
            row("network_time.skew_seconds", |p| {
                modem(p)["network_time"]["skew_seconds"]
                    .as_i64()
                    .is_some_and(|s| (118..=125).contains(&s))
            }),
            row("last_ok", |p| modem(p)["last_ok"].is_string()),
            row("consecutive_timeouts", |p| {
                modem(p)["consecutive_timeouts"] == 0
            }),
            row("readings_stale", |p| modem(p)["readings_stale"] == false),
            row("port", |p| {
                modem(p)["port"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("/dev/"))
            }),
        ],
        20,
    )
    .await;
    rig.modem.set_signal(25);
    rig.modem.set_registration(5, false);
    all_seen(
        &rig,
        "roaming, stronger signal",
        &[
            row("signal.dbm", |p| modem(p)["signal"]["dbm"] == -63),
            row("registration.packet", |p| {
                modem(p)["registration"]["packet"]["status"] == "roaming"
            }),
        ],
        20,
    )
    .await;
    // Not registered, then no SIM, then a PIN.
    rig.modem.set_registration(2, false);
    all_seen(
        &rig,
        "searching",
        &[
            row("state", |p| modem(p)["state"] == "not_registered"),
            row("registration.packet", |p| {
                modem(p)["registration"]["packet"]["status"] == "searching"
            }),
        ],
        20,
    )
    .await;
    rig.modem.set_registration(1, false);
    rig.modem.set_sim_present(false);
    all_seen(
        &rig,
        "no SIM",
        &[
            row("state", |p| modem(p)["state"] == "no_sim"),
            row("sim", |p| modem(p)["sim"] == "missing"),
        ],
        20,
    )
    .await;
    rig.modem.set_sim_present(true);
    rig.modem.set_sim_pin(true);
    all_seen(
        &rig,
        "SIM PIN",
        &[
            row("state", |p| modem(p)["state"] == "no_sim"),
            row("sim", |p| modem(p)["sim"] == "pin_required"),
        ],
        30,
    )
    .await;
    rig.modem.set_sim_pin(false);
    all_seen(
        &rig,
        "ready again",
        &[row("state", |p| modem(p)["state"] == "ready")],
        30,
    )
    .await;
    // The module goes silent: what it said last is flagged.
    let last_ok = modem(&rig.panels().await)["last_ok"].clone();
    rig.modem.set_hang(Hang::Forever);
    all_seen(
        &rig,
        "a silent modem",
        &[
            row("readings_stale", |p| modem(p)["readings_stale"] == true),
            row("state", |p| {
                ["resetting", "dead", "starting"]
                    .contains(&modem(p)["state"].as_str().unwrap_or(""))
                    || modem(p)["consecutive_timeouts"].as_u64() > Some(0)
            }),
            row("last_error", |p| modem(p)["last_error"].is_string()),
        ],
        30,
    )
    .await;
    let p = rig.panels().await;
    assert!(
        modem(&p)["last_ok"] == last_ok || modem(&p)["last_ok"].as_str() >= last_ok.as_str(),
        "last_ok is the last answer: {}",
        modem(&p)
    );
    rig.modem.set_hang(Hang::No);
    rig.stop().await;
}

async fn count(app: &markaz_node::app::App, sql: &'static str) -> i64 {
    app.db
        .readers
        .read(move |c| -> Result<i64, AppError> { Ok(c.query_row(sql, [], |r| r.get(0))?) })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_generator_start_raises_the_technician_alert() {
    let rig = Rig::start(|c| {
        c.center.technician_phone = Some("+963944000001".parse().unwrap());
        c.power.generator.auto_start = true;
        c.power.generator.start_attempts = 2;
        c.power.generator.start_retry_secs = 1;
    })
    .await;
    rig.power.generator.faults().refuse_starts(10);
    // The battery at 20 %: below the start threshold (35), so the policy starts.
    rig.power.set_overrides(Overrides {
        soc_permille: Some(200),
        grid: Some(false),
        generator_running: None,
        ..Overrides::default()
    });
    let p = all_seen(
        &rig,
        "start failed on the panel",
        &[row("generator.start", |p| {
            power(p)["generator"]["start"]["state"] == "start_failed"
        })],
        60,
    )
    .await;
    let reason = power(&p)["generator"]["start"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!reason.is_empty(), "the reason is shown: {}", power(&p));
    assert!(rig.power.generator.faults().starts_received() >= 2);
    // The alert row: an SMS queued for the technician, and the node log's error line.
    let mut alerts = 0;
    for _ in 0..40 {
        alerts = count(
            &rig.node.app,
            "SELECT count(*) FROM outbox WHERE kind = 'alert_generator' AND recipient = '+963944000001'",
        )
        .await;
        if alerts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(alerts, 1, "one alert for the failed start");
    assert_eq!(
        count(
            &rig.node.app,
            "SELECT count(*) FROM node_log WHERE level = 'error' AND source = 'power' AND message GLOB 'generator start failed: *'",
        )
        .await,
        1
    );
    assert!(!power(&p)["last_alert"]["alert"].is_null(), "{}", power(&p));
    rig.stop().await;
}

/// The technician's page as a browser gets it (session cookie, language cookie).
async fn page(rig: &Rig, path: &str, lang: &str) -> String {
    reqwest::Client::new()
        .get(format!("{}{path}", rig.node.base))
        .header(
            "cookie",
            format!("markaz_session={}; markaz_lang={lang}", rig.tech.token),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// #15.2 without a browser: the page writes the typed panels in words (the browser test
/// `tests/browser_technician.rs` checks the same on screen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_technician_page_writes_the_panels_in_words() {
    let rig = Rig::start(|_| {}).await;
    rig.modem.set_sim_present(false);
    let target = rig.panels().await["link"]["data"]["probe_targets"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut last = String::new();
    for _ in 0..80 {
        last = page(&rig, "/technician/panels", "en").await;
        if last.contains("No SIM: check the SIM card is seated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        last.contains("id=\"panel-modem\" data-state=\"fault\""),
        "the modem panel is a fault:\n{last}"
    );
    for lang in ["ar", "en"] {
        let html = page(&rig, "/technician", lang).await;
        let panels = html
            .split("id=\"panels\"")
            .nth(1)
            .and_then(|p| p.split("id=\"errors-h\"").next())
            .unwrap_or_default();
        assert!(!panels.is_empty(), "{html}");
        for bad in [
            "null",
            "{&quot;",
            "&quot;:",
            "soc_percent",
            "no_sim",
            "consecutive_timeouts",
        ] {
            assert!(
                !panels.contains(bad),
                "{lang}: `{bad}` on the panels:\n{panels}"
            );
        }
        let sentence = if lang == "ar" {
            "لا توجد شريحة: تأكد أن الشريحة مثبتة في مكانها، ثم أعد تشغيل المودم."
        } else {
            "No SIM: check the SIM card is seated, then reset the modem."
        };
        assert!(panels.contains(sentence), "{lang}:\n{panels}");
        // The probe target keeps its Latin digits on the Arabic page too.
        assert!(
            panels.contains(&target),
            "{lang}: {target} not as is:\n{panels}"
        );
        // The power figures carry their units.
        let units: &[&str] = if lang == "ar" {
            &["فولت", "واط", "٪", "ساعة"]
        } else {
            &[" V", " W", " %", " hours"]
        };
        for u in units {
            assert!(panels.contains(u), "{lang}: no `{u}` on the panels");
        }
        if lang == "ar" {
            assert!(
                panels
                    .chars()
                    .any(|c| ('\u{0660}'..='\u{0669}').contains(&c)),
                "the Arabic page's own figures are in its digits"
            );
        }
    }
    // The reset asks first: the confirmation page changes nothing.
    let resets = rig.modem.resets();
    let html = page(&rig, "/technician?confirm=modem_reset", "en").await;
    assert!(html.contains("id=\"confirm\""), "{html}");
    assert!(html.contains("Reset the 3G modem?"));
    assert!(html.contains("name=\"action\" value=\"modem_reset\""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.modem.resets(),
        resets,
        "nothing before the confirmation"
    );
    rig.stop().await;
}
