//! The device supervisors in a real node (temp SQLite, real router) against the real
//! emulators on ptys: live modem and power panels, the uplink switching to the modem
//! in the node log, power samples and the daily summary, the technician's actions, and
//! the clean shutdown at critical battery after a WAL checkpoint.

use crate::support;

use std::time::Duration;

use jiff::civil::Time;
use markaz_config::{NodeConfig, VeDirectConfig, VeDirectRole};
use markaz_hardware::modem::emulator;
use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, PowerEmulator};
use markaz_node::app::App;
use markaz_node::error::AppError;
use serde_json::Value;
use support::TestNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A node whose config the test keeps, to start the devices on.
async fn node_with(tweak: impl FnOnce(&mut NodeConfig)) -> (TestNode, NodeConfig) {
    let mut kept = None;
    let node = TestNode::start_with(|c| {
        tweak(c);
        kept = Some(c.clone());
    })
    .await;
    (node, kept.expect("config"))
}

async fn query_strings(app: &App, sql: &'static str) -> Vec<String> {
    app.db
        .readers
        .read(move |c| -> Result<Vec<String>, AppError> {
            let mut st = c.prepare(sql)?;
            let v = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
        .unwrap()
}

async fn count(app: &App, sql: &'static str) -> i64 {
    app.db
        .readers
        .read(move |c| -> Result<i64, AppError> { Ok(c.query_row(sql, [], |r| r.get(0))?) })
        .await
        .unwrap()
}

/// Polls `probe` until it returns Some (or fails after `secs`).
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

/// A TCP port nobody listens on (connects are refused at once).
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

fn power_options(start: &str, scale: f64) -> EmulatorOptions {
    EmulatorOptions {
        start: start.parse().unwrap(),
        tz: jiff::tz::TimeZone::get("Asia/Damascus").unwrap(),
        time_scale: scale,
        block_interval: Duration::from_millis(200),
        ..EmulatorOptions::default()
    }
}

#[tokio::test]
async fn panels_link_failover_power_samples_and_technician_actions() {
    let emu_cancel = CancellationToken::new();
    let (modem, _t) = emulator::start(emu_cancel.clone()).unwrap();
    // 09:00 in Damascus: the grid is cut (06:00–10:00) and the sun is up.
    let power = PowerEmulator::start(
        DayProfile::damascus_summer(),
        power_options("2026-11-29T06:00:00Z", 60.0),
        &emu_cancel,
    )
    .unwrap();
    let dead = closed_port().await;
    let (node, cfg) = node_with(|c| {
        c.modem.enabled = true;
        c.modem.port = modem.path().display().to_string();
        c.modem.poll_interval_secs = 1;
        c.modem.command_timeout_ms = 2000;
        c.link.probe_targets = vec![dead.parse().unwrap()];
        c.link.probe_interval_secs = markaz_config::Secs(1.0);
        c.link.probe_timeout_secs = markaz_config::Secs(1.0);
        c.link.down_after = 2;
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
    })
    .await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    markaz_node::devices::start(&node.app, &cfg, &tracker, &shutdown).unwrap();
    // The node's manual clock runs 2.5 times real time, so samples span time (and stay
    // within the summary's gap limit of three intervals).
    let clock = node.app.clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            clock.advance(Duration::from_secs(1));
        }
    });

    let tech = node.staff("tech", &["technician"], &[]).await;
    let panels: Value = eventually("live modem and power panels", 20, || async {
        let (s, b) = tech.get("/status").await;
        if s != 200 {
            return Err(b.to_string());
        }
        let p = b["panels"].clone();
        let ok = p["modem"]["data"]["state"] == "ready"
            && p["power"]["data"]["soc_percent"].is_u64()
            && p["power"]["data"]["pv_w"].is_u64()
            && p["power"]["data"]["generator"]["fuel_percent"].is_u64();
        if ok { Ok(p) } else { Err(p.to_string()) }
    })
    .await;
    let m = &panels["modem"]["data"];
    assert_eq!(m["signal"]["dbm"], -73, "{m}");
    assert_eq!(m["signal"]["bars"], 5, "{m}");
    assert_eq!(m["registration"]["packet"]["status"], "home", "{m}");
    assert!(m["operator"].is_string(), "{m}");
    assert!(m["network_time"]["network"].is_string(), "{m}");
    let p = &panels["power"]["data"];
    let snap = power.snapshot();
    let soc = p["soc_percent"].as_u64().unwrap() as i64;
    assert!(
        (soc - i64::from(snap.soc_permille / 10)).abs() <= 2,
        "panel SOC {soc} vs emulated {}",
        snap.soc_permille
    );
    assert!(p["battery_v"].as_f64().unwrap() > 20.0, "{p}");
    assert!(p["load_w"].is_u64(), "{p}");
    assert_ne!(p["source"], "grid", "the grid is cut at 09:00: {p}");
    // The inverter's mode and PV per charger are on the panel.
    assert_eq!(p["inverter_mode"], "battery", "grid cut: battery mode: {p}");
    assert!(p["pv"]["total_w"].is_u64(), "{p}");
    assert_eq!(
        p["pv"]["total_w"].as_u64(),
        p["pv_w"].as_u64(),
        "the sample's PV is the total: {p}"
    );
    assert_eq!(p["devices"].as_array().unwrap().len(), 4, "{p}");

    // The primary's probe target refuses from the start: the first probe round decides
    // the modem, and no (false) "primary → modem" change is logged.
    eventually("the modem chosen by the first round", 20, || async {
        match node.app.devices.uplink() {
            markaz_hardware::link::Uplink::Modem => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let lines = query_strings(
        &node.app,
        "SELECT message FROM node_log WHERE source = 'link' ORDER BY id",
    )
    .await;
    assert!(
        !lines.iter().any(|l| l.contains("uplink primary →")),
        "a change logged before any state was known: {lines:?}"
    );
    let (_, b) = tech.get("/status").await;
    assert_eq!(b["panels"]["link"]["data"]["uplink"], "modem", "{b}");
    assert_eq!(
        b["panels"]["link"]["data"]["primary"]["state"], "down",
        "{b}"
    );

    // Samples are stored and today's summary is folded from them.
    let day: Value = eventually("samples and a daily summary", 20, || async {
        let n = count(&node.app, "SELECT count(*) FROM power_samples").await;
        let (s, b) = tech.get("/power/daily?from=2026-11-29&to=2026-11-30").await;
        let days = b["days"].as_array().cloned().unwrap_or_default();
        let covered = days.first().is_some_and(|d| {
            let s = &d["seconds_per_source"];
            ["grid", "solar", "battery", "generator"]
                .iter()
                .map(|k| s[k].as_u64().unwrap_or(0))
                .sum::<u64>()
                >= 5
        });
        if s == 200 && n >= 4 && covered {
            Ok(days[0].clone())
        } else {
            Err(format!("{n} samples, {s} {b}"))
        }
    })
    .await;
    assert_eq!(day["date"], "2026-11-29", "{day}");
    assert!(day["min_soc"].is_u64(), "{day}");
    let levels = query_strings(&node.app, "SELECT DISTINCT level FROM power_samples").await;
    assert!(!levels.is_empty());
    // The sampler wrote today's energy document with its first sample (then at most
    // hourly): an MPPT is configured, so the center has solar.
    let energy = node
        .app
        .read_metrics_doc(
            markaz_sync::docs::DocKind::Energy,
            jiff::civil::date(2026, 11, 29),
        )
        .await
        .unwrap()
        .expect("today's energy document");
    assert_eq!(energy.get("has_solar"), Some(&1), "{energy:?}");
    assert!(energy.contains_key("min_soc_pct"), "{energy:?}");

    // Technician actions: a modem reset power-cycles the module (the emulator sees
    // AT+CFUN=1,1) and the init sequence runs again; sync-now wakes the sync client;
    // both are audited. A clerk may do neither.
    let inits = || {
        modem
            .commands()
            .iter()
            .filter(|c| c.as_str() == "AT+CMGF=0")
            .count()
    };
    let before = inits();
    let resets_before = modem.resets();
    let (s, b) = tech
        .post("/technician/modem/reset", serde_json::json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    eventually("the module power-cycled", 10, || async {
        match modem.resets() {
            n if n > resets_before => Ok(()),
            n => Err(format!("{n} resets")),
        }
    })
    .await;
    // The driver reopens the port after its settle time (10 s by default).
    eventually("the modem re-initialised", 30, || async {
        let (_, b) = tech.get("/status").await;
        if inits() > before && b["panels"]["modem"]["data"]["state"] == "ready" {
            Ok(())
        } else {
            Err(format!("{} inits; {}", inits(), b["panels"]["modem"]))
        }
    })
    .await;
    let devices = node.app.devices.clone();
    let waiter = tokio::spawn(async move { devices.sync_now_requested().await });
    let (s, b) = tech
        .post("/technician/sync-now", serde_json::json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("sync-now reaches the sync client")
        .unwrap();
    let audited = query_strings(
        &node.app,
        "SELECT action FROM audit_log WHERE action LIKE 'technician.%' ORDER BY id",
    )
    .await;
    assert_eq!(audited, ["technician.modem_reset", "technician.sync_now"]);
    let clerk = node.staff("clerk9", &["clerk"], &[]).await;
    let (s, _) = clerk
        .post("/technician/sync-now", serde_json::json!({}))
        .await;
    assert_eq!(s, 403);

    ticker.abort();
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(15), tracker.wait())
        .await
        .expect("every supervisor stops on the shutdown token");
    emu_cancel.cancel();
}

#[tokio::test]
async fn critical_battery_checkpoints_then_runs_the_shutdown_command() {
    let emu_cancel = CancellationToken::new();
    // Night, no grid all day, 10 % charge: critical at the first sample.
    let t = |h: i8, m: i8| Time::constant(h, m, 0, 0);
    let profile = DayProfile {
        pv_peak_w: 0,
        grid_cuts: vec![(t(0, 0), t(23, 59))],
        generator_runs: vec![],
        initial_soc_permille: 100,
        ..DayProfile::damascus_summer()
    };
    let power = PowerEmulator::start(
        profile,
        power_options("2026-11-29T00:00:00Z", 1.0),
        &emu_cancel,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("shutdown-ran");
    let (node, cfg) = node_with(|c| {
        c.link.probe_targets = vec![alive.parse().unwrap()];
        c.power.sample_interval_secs = 1;
        c.power.vedirect = vec![VeDirectConfig {
            port: power.bmv.path().display().to_string(),
            role: VeDirectRole::Bmv,
        }];
        // Records the WAL's size at the moment the command runs: 0 after TRUNCATE.
        let wal = c.storage.data_dir.join("markaz-node.db-wal");
        c.power.shutdown_command = format!("wc -c < '{}' > '{}'", wal.display(), marker.display());
    })
    .await;
    // Something in the WAL before the shutdown.
    let _ = node.staff("tech", &["technician"], &[]).await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let defer = node.app.devices.defer_bulk_sync();
    markaz_node::devices::start(&node.app, &cfg, &tracker, &shutdown).unwrap();

    tokio::time::timeout(Duration::from_secs(20), shutdown.cancelled())
        .await
        .expect("the policy cancels the node's shutdown token");
    let wal_size = std::fs::read_to_string(&marker).expect("the shutdown command ran");
    assert_eq!(
        wal_size.trim(),
        "0",
        "the WAL was checkpointed and truncated first"
    );
    assert!(*defer.borrow(), "bulk sync deferred at critical");
    let log = query_strings(
        &node.app,
        "SELECT message FROM node_log WHERE source = 'power' ORDER BY id",
    )
    .await;
    assert!(
        log.iter().any(|l| l.contains("checkpointing the database")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("البطارية حرجة")), "{log:?}");
    let level = query_strings(
        &node.app,
        "SELECT level FROM power_samples ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert_eq!(level, ["critical"]);
    tracker.close();
    tokio::time::timeout(Duration::from_secs(15), tracker.wait())
        .await
        .expect("every supervisor stops");
    emu_cancel.cancel();
    drop(listener);
}

#[tokio::test]
async fn link_down_alert_is_queued_once_per_cooldown() {
    use markaz_node::devices::outbox::{AlertKind, Alerter, Raised};
    let node = TestNode::start().await;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let alerter = Alerter::new(
        node.app.clone(),
        Some("+963944000001".into()),
        Duration::from_secs(3600),
        wake,
    );
    let mut settings = markaz_hardware::link::LinkSettings::new(vec![closed_port().await]);
    settings.interval = Duration::from_millis(200);
    settings.timeout = Duration::from_millis(200);
    settings.thresholds.down_after = 1;
    let (_modem_tx, modem_rx) =
        tokio::sync::watch::channel(markaz_hardware::modem::ModemStatus::not_configured());
    let (out, _out_rx) = tokio::sync::watch::channel(None);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(markaz_node::devices::link::supervise(
        node.app.clone(),
        settings,
        modem_rx,
        out,
        alerter.clone(),
        Duration::from_millis(500),
        cancel.clone(),
    ));
    let body = eventually("the link-down alert queued", 10, || async {
        let rows = query_strings(
            &node.app,
            "SELECT recipient || ' ' || body FROM outbox WHERE kind = 'alert_link_down'",
        )
        .await;
        match rows.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(body.starts_with("+963944000001 "), "{body}");
    assert!(body.contains("الرابط الرئيسي مقطوع"), "{body}");
    let log = query_strings(
        &node.app,
        "SELECT message FROM node_log WHERE source = 'link'",
    )
    .await;
    // The target was closed from the start: the first round decided "offline", which
    // is no change of uplink.
    assert!(
        !log.iter().any(|l| l.contains("uplink primary →")),
        "{log:?}"
    );
    // Once per outage, and a flapping condition does not flood: within the cooldown a
    // second alert of the kind is logged but not sent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count(
            &node.app,
            "SELECT count(*) FROM outbox WHERE kind = 'alert_link_down'"
        )
        .await,
        1
    );
    let again = alerter
        .raise(AlertKind::LinkDown, "again".into())
        .await
        .unwrap();
    assert_eq!(again, Raised::CoolingDown);
    node.advance(Duration::from_secs(3601));
    let later = alerter
        .raise(AlertKind::LinkDown, "later".into())
        .await
        .unwrap();
    assert_eq!(later, Raised::Queued);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_demo_emulators_feed_a_node() {
    let cancel = CancellationToken::new();
    let mut demo = None;
    let (node, cfg) = node_with(|c| {
        demo = Some(markaz_node::devices::demo::emulate(c, cancel.clone()).unwrap());
        c.modem.poll_interval_secs = 1;
    })
    .await;
    let demo = demo.unwrap();
    assert!(cfg.modem.enabled && cfg.power.generator.auto_start);
    assert!(!cfg.power.shutdown_command.contains("poweroff"));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    markaz_node::devices::start(&node.app, &cfg, &tracker, &shutdown).unwrap();
    let tech = node.staff("tech", &["technician"], &[]).await;
    eventually("the demo's modem and power on the panels", 20, || async {
        let (_, b) = tech.get("/status").await;
        let p = &b["panels"];
        if p["modem"]["data"]["state"] == "ready" && p["power"]["data"]["soc_percent"].is_u64() {
            Ok(())
        } else {
            Err(p.to_string())
        }
    })
    .await;
    demo.modem.set_signal(5);
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(15), tracker.wait())
        .await
        .unwrap();
    cancel.cancel();
}

#[tokio::test]
async fn the_uplink_connector_follows_the_link_monitor() {
    use markaz_uplink::Connector;
    let node = TestNode::start().await;
    let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hub.local_addr().unwrap().port();
    let c = markaz_node::devices::UplinkConnector::new(
        node.app.devices.clone(),
        Duration::from_secs(2),
    );
    // No link monitor: the primary link.
    assert_eq!(c.name(), "primary");
    c.connect("127.0.0.1", port).await.expect("over the OS");
    // A monitor that finds the primary down and no modem: offline, refused at once.
    let dead = closed_port().await;
    let (node2, cfg) = node_with(|c| {
        c.link.probe_targets = vec![dead.parse().unwrap()];
        c.link.probe_interval_secs = markaz_config::Secs(1.0);
        c.link.probe_timeout_secs = markaz_config::Secs(1.0);
        c.link.down_after = 1;
    })
    .await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    markaz_node::devices::start(&node2.app, &cfg, &tracker, &shutdown).unwrap();
    let c2 = markaz_node::devices::UplinkConnector::new(
        node2.app.devices.clone(),
        Duration::from_secs(2),
    );
    eventually("offline", 10, || async {
        if c2.name() == "offline" {
            Ok(())
        } else {
            Err(c2.name().to_owned())
        }
    })
    .await;
    let err = match c2.connect("127.0.0.1", port).await {
        Ok(_) => panic!("connected while offline"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .unwrap();
}

/// `[link] modem_route = "os-route"`: while the modem is the uplink, the connector opens
/// an OS socket bound to `os_route_interface` (here `lo`) instead of an AT socket; the
/// driver still polls the modem.
#[tokio::test]
async fn the_os_route_binds_the_modem_uplink_to_its_interface() {
    use markaz_uplink::Connector;
    let probe = tokio::net::TcpSocket::new_v4().unwrap();
    if let Err(e) = probe.bind_device(Some(b"lo")) {
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        eprintln!("skipped: SO_BINDTODEVICE needs CAP_NET_RAW ({e})");
        return;
    }
    let emu_cancel = CancellationToken::new();
    let (modem, _t) = emulator::start(emu_cancel.clone()).unwrap();
    let dead = closed_port().await;
    let (node, cfg) = node_with(|c| {
        c.modem.enabled = true;
        c.modem.port = modem.path().display().to_string();
        c.modem.poll_interval_secs = 1;
        c.modem.command_timeout_ms = 2000;
        c.link.probe_targets = vec![dead.parse().unwrap()];
        c.link.probe_interval_secs = markaz_config::Secs(1.0);
        c.link.probe_timeout_secs = markaz_config::Secs(1.0);
        c.link.down_after = 1;
        c.link.modem_route = markaz_config::ModemRoute::OsRoute;
        c.link.os_route_interface = "lo".into();
    })
    .await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    markaz_node::devices::start(&node.app, &cfg, &tracker, &shutdown).unwrap();
    assert_eq!(node.app.devices.os_route(), Some("lo"));
    let c = markaz_node::devices::UplinkConnector::new(
        node.app.devices.clone(),
        Duration::from_secs(2),
    );
    eventually("the modem uplink", 20, || async {
        if c.name() == "modem" {
            Ok(())
        } else {
            Err(c.name().to_owned())
        }
    })
    .await;
    let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hub.local_addr().unwrap().port();
    let mut stream = c.connect("127.0.0.1", port).await.expect("over lo");
    let (mut peer, _) = hub.accept().await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"hello hub").await.unwrap();
    let mut got = [0u8; 9];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello hub");
    let direct = node
        .app
        .devices
        .connect("127.0.0.1", port, Duration::from_secs(2))
        .await
        .expect("DeviceHandles::connect follows the route too");
    assert!(matches!(
        direct,
        markaz_hardware::link::connect::UplinkStream::Os(_)
    ));
    let commands = modem.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("AT+QIOPEN")),
        "no AT socket was opened: {commands:?}"
    );
    assert!(
        commands.iter().any(|c| c == "AT+CSQ"),
        "the driver still polls the modem"
    );
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(15), tracker.wait())
        .await
        .unwrap();
    emu_cancel.cancel();
}
