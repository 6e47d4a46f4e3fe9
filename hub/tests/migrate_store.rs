//! `markaz hub migrate-store`: a hub that ran on SQLite (two centers synced through it,
//! sessions logged) is copied into an empty PostgreSQL database and
//! checked; the same hub then serves from PostgreSQL and the centers go on where they
//! were — nothing to repair, nothing downloaded again. The check catches a copy that
//! differs, and a target that already holds a hub is refused.
//!
//! Skipped (printed) without PostgreSQL unless CI is set.

use crate::support;

use anyhow::Context;
use markaz_config::{HubStorage, StorageEngine};
use markaz_hub::storage::DB_FILE;
use markaz_hub::storage::pg::copy;
use markaz_hub::storage::{PgSettings, StorageError};
use support::{Center, Hub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_hub_moves_to_postgres_and_its_centers_go_on() -> anyhow::Result<()> {
    let Some(cluster) =
        markaz_e2e::pg::cluster_or_skip("a_sqlite_hub_moves_to_postgres_and_its_centers_go_on")
    else {
        return Ok(());
    };
    let old = Hub::start().await?;
    let mut midan = Center::new(&old, "midan")?;
    let mut qanawat = Center::new(&old, "qanawat")?;
    midan.new_case(1)?;
    midan.new_case(2)?;
    qanawat.new_case(3)?;
    for _ in 0..2 {
        midan.sync_in_session().await?;
        qanawat.sync_in_session().await?;
    }
    old.shutdown.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let url = cluster.fresh_db()?;
    let settings = PgSettings {
        url: url.clone().try_into()?,
        password: None,
        pool_size: 2,
        tls: markaz_hub::storage::pg::PgTls::Off,
    };
    let file = old.data.join(DB_FILE);
    let (f, s) = (file.clone(), settings.clone());
    let report = tokio::task::spawn_blocking(move || copy::from_sqlite(&f, &s)).await??;
    assert!(
        report.docs_checked >= 4,
        "three cases and the catalog: {report:?}"
    );
    assert_eq!(report.centers_checked, 2, "{report:?}");
    assert!(report.sessions_checked >= 4, "{report:?}");
    assert!(report.rows["changes"] > 0);
    assert!(report.not_copied.is_empty(), "{report:?}");

    // Into a database that already holds a hub: refused, untouched.
    let (f, s) = (file.clone(), settings.clone());
    let again = tokio::task::spawn_blocking(move || copy::from_sqlite(&f, &s)).await?;
    assert!(
        matches!(&again, Err(StorageError::Invalid(m)) if m.contains("already holds a hub")),
        "{again:?}"
    );

    // A copy that differs is caught: one acknowledgement changed behind its back.
    let db = url.rsplit('/').next().context("db")?.to_string();
    cluster.psql(&db, "UPDATE push_acks SET acked = acked + 1")?;
    let (f, s) = (file.clone(), settings.clone());
    let checked = tokio::task::spawn_blocking(move || copy::verify(&f, &s)).await?;
    assert!(
        matches!(&checked, Err(StorageError::Invalid(m)) if m.contains("acknowledgements")),
        "{checked:?}"
    );
    cluster.psql(&db, "UPDATE push_acks SET acked = acked - 1")?;
    let (f, s) = (file.clone(), settings.clone());
    tokio::task::spawn_blocking(move || copy::verify(&f, &s)).await??;

    // The same hub on PostgreSQL: the centers carry on from their cursors.
    let new = old
        .on_store(HubStorage {
            engine: StorageEngine::Postgres,
            url: Some(url.clone().try_into()?),
            pool_size: 2,
            ..HubStorage::default()
        })
        .await?;
    midan.switch_to(&new)?;
    qanawat.switch_to(&new)?;
    let (_, r) = midan.sync_in_session().await?;
    assert_eq!(
        (r.requests, r.pushed, r.pulled_new),
        (1, 0, 0),
        "nothing new, nothing to repair after the move: {r:?}"
    );
    let case = midan.new_case(4)?;
    let (_, r) = midan.sync_in_session().await?;
    assert_eq!(r.pushed, 1, "{r:?}");
    let (_, sessions) = new
        .http("GET", "/api/v1/sync-log?center=qanawat", None)
        .await?;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&sessions)?;
    assert!(
        sessions.len() >= 2,
        "qanawat's sessions came along: {sessions:?}"
    );
    assert!(!qanawat.has(&case), "midan's case stays midan's");
    new.shutdown.cancel();

    Ok(())
}
