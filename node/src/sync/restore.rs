//! `markaz restore --from-hub`: a replaced center box gets its center back from the hub
//! before it serves anyone.
//!
//! On a fresh database (an existing one holding anything is refused unless the technician
//! says `--force`, and then it is moved aside, never deleted), the ordinary sync sessions
//! run until one ends well having pulled nothing new: every document the hub holds for the
//! center is then here (cases, citizens, staff, the catalog and fees, portal cases routed
//! here), projected into the tables the pages read. Such a session confirms the center's
//! numbers (`app::numbering::confirm`), so the first case and receipt the node hands out
//! continue the main series above the highest the hub has seen.
//!
//! What the hub does not hold is not invented: queue tickets (their day's numbers
//! continue above what the hub's statistics of today counted, see
//! `numbering::raise_tickets`), login sessions, the SMS outbox and the audit trail of the
//! lost box stay lost (docs/OPERATIONS.md says so). Projecting pulled case events never
//! queues an SMS (only the local "ready" transition does), so no citizen is sent again a
//! message the lost box already sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use markaz_config::NodeConfig;
use rusqlite::{Connection, OpenFlags, params};

use super::{SyncOptions, numbering};
use crate::app::{App, Clock};
use crate::devices::UplinkConnector;
use crate::storage::{Db, StorageOptions};
use markaz_uplink::{HubClient, client_config};

/// Sessions a restore runs at most (each drains as much as `MAX_REQUESTS` allows).
pub const MAX_SESSIONS: usize = 100;
/// Failed sessions in a row after which the restore gives up.
pub const MAX_FAILURES: usize = 5;
/// `meta` key: when this database was restored from the hub.
pub const RESTORED_KEY: &str = "restore.from_hub_at";

/// What an existing database file holds (the restore refuses to run over it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    pub changes: u64,
    pub cases: u64,
    pub citizens: u64,
    pub tickets: u64,
}

impl Holdings {
    pub fn is_empty(&self) -> bool {
        *self == Holdings::default()
    }
}

/// What the restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub db: PathBuf,
    /// Where a database that was there before went (`--force`).
    pub moved_aside: Option<PathBuf>,
    pub sessions: usize,
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub changes_down: u64,
    pub documents: u64,
    pub cases: u64,
    pub citizens: u64,
    pub staff: u64,
    pub portal_cases: u64,
    /// The highest case number of the center's main series the documents carry.
    pub highest_case: Option<String>,
    pub elapsed: Duration,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "restored {} from the hub", self.db.display())?;
        if let Some(p) = &self.moved_aside {
            writeln!(
                f,
                "  the database that was there is kept as {}",
                p.display()
            )?;
        }
        writeln!(
            f,
            "  {} documents ({} changes) in {} sessions, {} bytes down, {} up, {:.1} s",
            self.documents,
            self.changes_down,
            self.sessions,
            self.bytes_down,
            self.bytes_up,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {} cases ({} from the portal), {} citizens, {} staff accounts",
            self.cases, self.portal_cases, self.citizens, self.staff
        )?;
        writeln!(
            f,
            "  new case numbers continue after {}",
            self.highest_case.as_deref().unwrap_or("none (no case yet)")
        )?;
        write!(
            f,
            "  not on the hub, not restored: login sessions, the SMS outbox, the audit trail, \
             the queue tickets (today's numbers continue above what the hub counted)"
        )
    }
}

/// What the database file at `path` holds; a file without the node's tables holds nothing.
pub fn holdings(path: &Path) -> anyhow::Result<Holdings> {
    if !path.exists() {
        return Ok(Holdings::default());
    }
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("while opening {}", path.display()))?;
    let count = |table: &str| -> anyhow::Result<u64> {
        let exists: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok(Holdings {
        changes: count("changes")?,
        cases: count("cases")?,
        citizens: count("citizens")?,
        tickets: count("tickets")?,
    })
}

/// Moves the database at `path` (with its WAL and shared-memory files) aside.
fn move_aside(path: &Path, at: jiff::Timestamp) -> anyhow::Result<PathBuf> {
    let suffix = format!("before-restore-{}", at.as_second());
    let aside = PathBuf::from(format!("{}.{suffix}", path.display()));
    for ext in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{ext}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{ext}", aside.display()));
            std::fs::rename(&from, &to)
                .with_context(|| format!("while moving {} aside", from.display()))?;
        }
    }
    Ok(aside)
}

/// Restores the center of `cfg` from its hub into `storage.data_dir` (see the module
/// documentation). The node must not be running.
pub async fn from_hub(cfg: &NodeConfig, force: bool) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let mut opts = SyncOptions::from_config(cfg)?
        .context("[sync] is not enabled in this config: there is no hub to restore from")?;
    // No clerk works while the node is restored: each pulled batch in one transaction.
    opts.limits.merge_bytes = usize::MAX;
    let data_dir = cfg.storage.data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("while creating data dir {}", data_dir.display()))?;
    let db_path = data_dir.join(crate::center::DB_FILE);
    let held = holdings(&db_path)?;
    let mut report = RestoreReport {
        db: db_path.clone(),
        ..RestoreReport::default()
    };
    if !held.is_empty() {
        if !force {
            bail!(
                "{} is not empty ({} document changes, {} cases, {} citizens, {} tickets): \
                 refusing to restore over it. Stop the node; to keep this database, do nothing; \
                 to replace it with what the hub holds, run again with --force (it is moved \
                 aside, not deleted)",
                db_path.display(),
                held.changes,
                held.cases,
                held.citizens,
                held.tickets
            );
        }
        report.moved_aside = Some(move_aside(&db_path, jiff::Timestamp::now())?);
    }

    let storage = StorageOptions {
        busy_timeout_ms: u64::from(cfg.storage.busy_timeout_ms),
        group_commit_max_batch: cfg.storage.group_commit_max_batch as usize,
        readers: 2,
        center: cfg.center.id.clone(),
        inline_check_max_bytes: crate::storage::integrity::INLINE_CHECK_MAX_BYTES,
    };
    let db = Db::open(&db_path, &storage)
        .with_context(|| format!("while opening {}", db_path.display()))?;
    let app = App::new(db, crate::center::settings_from(cfg)?, Clock::System);
    let tls = client_config(&opts.tls).context("while loading the sync TLS files")?;
    let connector = Arc::new(UplinkConnector::new(
        app.devices.clone(),
        opts.connect_timeout,
    ));
    let mut client = HubClient::new(tls, connector, opts.hubs[0].clone(), opts.client);

    let mut failures = 0;
    let mut ok_sessions = 0;
    let mut current = 0;
    loop {
        if report.sessions >= MAX_SESSIONS {
            bail!(
                "the hub was still sending after {MAX_SESSIONS} sessions; run the restore again \
                 with --force to go on (nothing is lost)"
            );
        }
        let record = super::sync_any_hub(&app, &mut client, &opts, &mut current).await;
        report.sessions += 1;
        report.bytes_down += record.bytes_down;
        report.bytes_up += record.bytes_up;
        report.changes_down += record.changes_down;
        if record.new_incarnation {
            continue;
        }
        if !record.ok() {
            failures += 1;
            tracing::warn!(error = %record.result, failures, "a restore session failed");
            if failures >= MAX_FAILURES {
                bail!(
                    "the hub could not be reached or did not answer ({}); the node was not \
                     restored. Check the link and the certificate bundle, then run again with \
                     --force",
                    record.result
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        failures = 0;
        ok_sessions += 1;
        tracing::info!(
            changes = record.changes_down,
            bytes = record.bytes_down,
            "restore session done"
        );
        // A session that brought nothing new: the hub has nothing more for the center.
        if ok_sessions > 1 && record.changes_down == 0 {
            break;
        }
    }

    let prefix = app.settings.receipt_prefix.to_ascii_uppercase();
    let at = app.now();
    let summary = app
        .db
        .writer
        .write(move |tx| -> Result<Summary, crate::error::AppError> {
            let actor = tx.docs.actor().to_bytes().to_vec();
            if !numbering::is_confirmed(tx.conn, &actor)? {
                return Err(crate::error::AppError::Internal(
                    "the hub has not confirmed the center's numbers (a document was not \
                     repaired): run the restore again with --force"
                        .into(),
                ));
            }
            let s = summary(tx.conn, &prefix)?;
            tx.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![RESTORED_KEY, at.to_string()],
            )?;
            let line = format!(
                "restored from the hub: {} cases, {} citizens, {} staff accounts; login \
                 sessions, the SMS outbox and the audit trail of the lost box are not on the hub",
                s.cases, s.citizens, s.staff
            );
            crate::app::node_log(tx.conn, at, "info", "restore", &line)?;
            Ok(s)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    report.documents = summary.documents;
    report.cases = summary.cases;
    report.citizens = summary.citizens;
    report.staff = summary.staff;
    report.portal_cases = summary.portal_cases;
    report.highest_case = summary.highest_case;
    report.elapsed = started.elapsed();
    Ok(report)
}

struct Summary {
    documents: u64,
    cases: u64,
    citizens: u64,
    staff: u64,
    portal_cases: u64,
    highest_case: Option<String>,
}

fn summary(c: &Connection, prefix: &str) -> Result<Summary, crate::error::AppError> {
    let n = |sql: &str| -> rusqlite::Result<u64> {
        c.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
    };
    let marks = numbering::marks(c, prefix)?;
    let highest_case = marks
        .cases
        .iter()
        .filter(|((_, s), _)| s.is_none())
        .max_by_key(|((year, _), seq)| (*year, **seq))
        .map(|((year, _), seq)| format!("{prefix}-{year}-{seq:06}"));
    Ok(Summary {
        documents: n("SELECT count(*) FROM doc_meta")?,
        cases: n("SELECT count(*) FROM cases")?,
        citizens: n("SELECT count(*) FROM citizens")?,
        staff: n("SELECT count(*) FROM staff")?,
        portal_cases: n("SELECT count(*) FROM doc_meta WHERE doc_id LIKE 'portal:%'")?,
        highest_case,
    })
}
