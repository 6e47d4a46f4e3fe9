//! The disk guard (issue 18.7) in a real node with real power emulators on ptys: with
//! `storage.min_free_mb` above the disk's free space, the technician is alerted (node log
//! and a queued SMS), power samples and statistics documents are refused, and citizens'
//! writes are still taken.

use crate::support;

use std::time::Duration;

use markaz_config::{VeDirectConfig, VeDirectRole};
use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, PowerEmulator};
use markaz_node::app::App;
use markaz_node::error::AppError;
use support::TestNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

async fn count(app: &App, sql: &'static str) -> i64 {
    app.db
        .readers
        .read(move |c| -> Result<i64, AppError> { Ok(c.query_row(sql, [], |r| r.get(0))?) })
        .await
        .unwrap()
}

#[tokio::test]
async fn below_min_free_the_node_alerts_and_keeps_room_for_citizens() {
    let cancel = CancellationToken::new();
    let power = PowerEmulator::start(
        DayProfile::damascus_summer(),
        EmulatorOptions {
            start: "2026-11-29T06:00:00Z".parse().unwrap(),
            tz: jiff::tz::TimeZone::get("Asia/Damascus").unwrap(),
            time_scale: 60.0,
            block_interval: Duration::from_millis(200),
            ..EmulatorOptions::default()
        },
        &cancel,
    )
    .unwrap();
    let mut kept = None;
    let node = TestNode::start_with(|c| {
        // More than any test machine has free: the guard is on from the first reading.
        c.storage.min_free_mb = 1_048_576;
        c.center.technician_phone = Some("+963944123456".parse().unwrap());
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
        kept = Some(c.clone());
    })
    .await;
    let cfg = kept.unwrap();
    let tracker = TaskTracker::new();
    markaz_node::devices::start(&node.app, &cfg, &tracker, &cancel).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = count(
            &node.app,
            "SELECT count(*) FROM outbox WHERE kind = 'alert_disk_low'",
        )
        .await;
        let logged = count(
            &node.app,
            "SELECT count(*) FROM node_log WHERE source = 'disk' AND level = 'warn'",
        )
        .await;
        if alerts == 1 && logged == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no disk alert: {alerts} SMS, {logged} log lines"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.app.db.writer.low_value_refused().is_some());

    // The power emulators report every 200 ms and the node samples every second: none
    // of those samples is stored while the disk is low.
    let samples = count(&node.app, "SELECT count(*) FROM power_samples").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        count(&node.app, "SELECT count(*) FROM power_samples").await,
        samples,
        "power samples were stored on a low disk"
    );
    let stats = node.app.write_stats_docs().await;
    assert!(
        matches!(
            stats,
            Err(AppError::Storage(
                markaz_node::storage::StorageError::Refused(_)
            ))
        ),
        "statistics documents are refused: {stats:?}"
    );

    // A citizen's case work goes on.
    let admin = node.admin().await;
    let (s, b) = admin
        .post("/citizens", support::citizen("01234567890"))
        .await;
    assert_eq!(s, 201, "{b}");
    // One alert per episode, however long it lasts.
    assert_eq!(
        count(
            &node.app,
            "SELECT count(*) FROM outbox WHERE kind = 'alert_disk_low'"
        )
        .await,
        1
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
