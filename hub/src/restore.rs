//! `markaz hub restore`: bring the hub back from a backup so that it never reuses what the
//! centers may have seen of the lost hub. With SQLite it puts the backup file in place of
//! `<data_dir>/markaz-hub.db` (the files it replaces are moved aside, never deleted).
//! With PostgreSQL the operator restores the database with PostgreSQL's own tools first
//! (`pg_restore` of a `pg_dump`, a base backup with point-in-time recovery, a promoted
//! replica that lagged) and runs the command without `--from`; it refuses while another
//! hub process is connected to the database (every process of the hub must be stopped:
//! each keeps the old epoch and actor in memory). Then, for any engine, it runs the after-restore step through the storage interface
//! ([`crate::storage::HubDocs::after_restore`]): a new epoch, a new actor id for the hub's
//! edits, every feed moved beyond the positions the lost hub may have handed out. The
//! rules are `markaz_sync::protocol::restore`; a running hub detects a restore that
//! skipped this command by itself (a center with a cursor beyond its feed, or an epoch it
//! never had) and runs the same step.
//!
//! Run it with the hub stopped: it refuses when something answers on the hub's sync
//! address.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use markaz_config::{HubConfig, StorageEngine};
use rusqlite::{Connection, OpenFlags};

use crate::storage::{DB_FILE, HubDb, HubDocs, PgHub, PgSettings};

/// What a restore did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The hub's new epoch.
    pub epoch: String,
    /// Every center's feed continues after this position.
    pub feed_floor: u64,
    /// Where the database files the backup replaced were moved (SQLite).
    pub set_aside: Option<PathBuf>,
}

/// Restore the hub of `cfg` from `from` (SQLite: a copy of `markaz-hub.db` made with
/// SQLite's backup or `VACUUM INTO`; PostgreSQL: none — restore the database with its own
/// tools first, then run this step).
pub fn restore(cfg: &HubConfig, from: Option<&Path>) -> anyhow::Result<RestoreReport> {
    ensure_stopped(cfg.hub.listen)?;
    let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    match cfg.storage.engine {
        StorageEngine::Sqlite => {
            let from = from.context(
                "--from is required with the sqlite engine: the backup of markaz-hub.db to restore",
            )?;
            let data_dir = &cfg.hub.data_dir;
            check_backup(from)?;
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("while creating {}", data_dir.display()))?;
            let set_aside = set_aside(data_dir)?;
            put_in_place(from, &data_dir.join(DB_FILE))?;
            let mut db = HubDb::open(data_dir).context("while opening the restored database")?;
            let r = db
                .after_restore(now_ms)
                .context("while running the after-restore step")?;
            Ok(RestoreReport {
                epoch: r.epoch,
                feed_floor: r.feed_floor,
                set_aside,
            })
        }
        StorageEngine::Postgres => {
            ensure!(
                from.is_none(),
                "with the postgres engine, restore the database with PostgreSQL's tools (base \
                 backup, point-in-time recovery) first, then run `markaz hub restore` without --from"
            );
            let settings = PgSettings::from_config(&cfg.storage)?;
            let url = settings.url.as_str().to_string();
            let mut hub = PgHub::open(&settings)
                .with_context(|| format!("while opening the restored database {url}"))?;
            let others = hub
                .other_hub_connections()
                .context("while looking for running hub processes")?;
            ensure!(
                others == 0,
                "{others} connection(s) of running hub processes on {url}: stop every hub \
                 process first"
            );
            let r = hub
                .after_restore(now_ms)
                .context("while running the after-restore step")?;
            Ok(RestoreReport {
                epoch: r.epoch,
                feed_floor: r.feed_floor,
                set_aside: None,
            })
        }
    }
}

/// Refuse to run while a hub answers on its sync address (it would keep the old epoch
/// and actor in memory, and write to the file being replaced).
fn ensure_stopped(listen: SocketAddr) -> anyhow::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if addr.port() != 0 && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
        bail!("something answers on the hub's sync address {addr}: stop the hub first");
    }
    Ok(())
}

/// The backup must be a readable, intact hub database.
fn check_backup(from: &Path) -> anyhow::Result<()> {
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("while opening the backup {}", from.display()))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .with_context(|| format!("while checking the backup {}", from.display()))?;
    ensure!(
        check == "ok",
        "the backup {} is damaged: {check}",
        from.display()
    );
    let epoch: Option<String> = conn
        .query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
            r.get(0)
        })
        .ok();
    ensure!(
        epoch.is_some(),
        "{} is not a hub database (no hub epoch in it)",
        from.display()
    );
    Ok(())
}

/// Move the current database files (if any) into `<data_dir>/before-restore-<time>/`.
fn set_aside(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let names = [
        DB_FILE.to_string(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
    ];
    let present: Vec<&String> = names.iter().filter(|n| data_dir.join(n).exists()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let dir = data_dir.join(format!("before-restore-{stamp}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    for n in present {
        std::fs::rename(data_dir.join(n), dir.join(n))
            .with_context(|| format!("while moving {n} to {}", dir.display()))?;
    }
    Ok(Some(dir))
}

/// Copy `from` to `to` through a temporary file, synced, then renamed.
fn put_in_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("db.restoring");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("while copying {} to {}", from.display(), tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("while syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("while moving {} to {}", tmp.display(), to.display()))?;
    if let Some(dir) = to.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}
