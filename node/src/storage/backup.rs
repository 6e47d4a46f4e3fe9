//! Backups of the node's database made while it serves, and their restore.
//!
//! A backup is SQLite's online backup of the live file: one step that copies every page
//! of one read snapshot (WAL lets the writer go on meanwhile, and a write during the copy
//! does not restart it), into `FILE.partial`, which is then checked with
//! `PRAGMA integrity_check`, flushed to disk and renamed to `FILE`; `FILE.sha256` beside
//! it holds its SHA-256 in `sha256sum` format. So a backup that exists is whole, sound,
//! and holds every write acknowledged before it started.
//!
//! A restore refuses a file whose checksum file disagrees, that fails `integrity_check`,
//! or whose schema is newer than this binary's ([`super::LATEST_VERSION`]); refuses to
//! replace the database of a node that runs (the node holds [`DataDirLock`]); keeps the
//! database it replaces beside it; and starts a new database incarnation in the restored
//! file (a fresh automerge actor, numbers unconfirmed until the hub is heard from: see
//! `app::numbering`), so the restored copy never reuses what the lost one handed out.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use super::LATEST_VERSION;

/// File in the data directory a running node holds locked.
pub const LOCK_FILE: &str = "markaz-node.lock";

/// What can go wrong making or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path} is damaged: integrity_check says {problems}")]
    Corrupt { path: PathBuf, problems: String },
    #[error(
        "{path} has schema version {found}, newer than this markaz supports ({supported}); \
         restore it with the markaz that made it"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: the checksum file says {expected}, the file's SHA-256 is {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "the node is running on {data_dir} (it holds {LOCK_FILE}); stop it first \
         (systemctl stop markaz-node)"
    )]
    NodeRunning { data_dir: PathBuf },
    #[error("no database at {0}")]
    NoDatabase(PathBuf),
    #[error("documents: {0}")]
    Docs(String),
}

/// A backup made and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub checksum_path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub schema_version: i64,
    pub took: Duration,
}

/// `FILE.sha256`.
pub fn checksum_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn partial_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Backs the live database at `db` up to `to` (see the module docs). `to` must not exist.
pub fn backup(db: &Path, to: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if !db.exists() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if to.exists() {
        return Err(BackupError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists; choose a new file", to.display()),
        )));
    }
    let partial = partial_path(to);
    let _ = std::fs::remove_file(&partial);
    let made = (|| -> Result<(), BackupError> {
        // Read-write flags, though nothing is written: a read-only connection cannot
        // open a WAL database whose -wal and -shm a stopped node has removed.
        let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        src.busy_timeout(Duration::from_secs(10))?;
        let mut dst = Connection::open(&partial)?;
        {
            let b = Backup::new(&src, &mut dst)?;
            // All pages in one step: one read snapshot, which a concurrent write does
            // not invalidate (several small steps would restart after every commit).
            loop {
                match b.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More => continue,
                    StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        // A backup is one file: no WAL beside it to lose when it is copied.
        dst.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))?;
        integrity(&dst, &partial)?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, to)?;
    sync_dir(to);
    let (sha256, bytes) = sha256_of(to)?;
    let schema_version = schema_version(to)?;
    let checksum_path = checksum_path(to);
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut f = File::create(&checksum_path)?;
    // `sha256sum -c FILE.sha256` checks it from the backup's folder.
    writeln!(f, "{sha256}  {name}")?;
    f.sync_all()?;
    sync_dir(&checksum_path);
    Ok(BackupReport {
        path: to.to_path_buf(),
        checksum_path,
        bytes,
        sha256,
        schema_version,
        took: started.elapsed(),
    })
}

fn integrity(conn: &Connection, path: &Path) -> Result<(), BackupError> {
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()
        .map_err(|e| BackupError::Corrupt {
            path: path.to_path_buf(),
            problems: e.to_string(),
        })?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            problems: rows.join("; "),
        })
    }
}

fn schema_version(path: &Path) -> Result<i64, BackupError> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// The SHA-256 (hex) and length of a file.
pub fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent()
        && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = d.sync_all();
    }
}

/// Checks a backup before it is restored: its checksum file (when there is one), its
/// integrity and its schema version. Returns the schema version.
pub fn verify(file: &Path) -> Result<i64, BackupError> {
    if !file.exists() {
        return Err(BackupError::NoDatabase(file.to_path_buf()));
    }
    let sums = checksum_path(file);
    if sums.exists() {
        let text = std::fs::read_to_string(&sums)?;
        let expected = text.split_whitespace().next().unwrap_or("").to_lowercase();
        let (actual, _) = sha256_of(file)?;
        if expected != actual {
            return Err(BackupError::Checksum {
                path: file.to_path_buf(),
                expected,
                actual,
            });
        }
    } else {
        tracing::warn!(file = %file.display(), "no checksum file beside the backup; checking its integrity only");
    }
    let c = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| {
        BackupError::Corrupt {
            path: file.to_path_buf(),
            problems: e.to_string(),
        }
    })?;
    let found: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| BackupError::Corrupt {
            path: file.to_path_buf(),
            problems: e.to_string(),
        })?;
    if found > LATEST_VERSION {
        return Err(BackupError::TooNew {
            path: file.to_path_buf(),
            found,
            supported: LATEST_VERSION,
        });
    }
    integrity(&c, file)?;
    Ok(found)
}

/// The lock a running node holds on its data directory (an `flock` on [`LOCK_FILE`],
/// released when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock; [`BackupError::NodeRunning`] when another process holds it.
    #[allow(unsafe_code)] // each `unsafe` block here says why it is sound
    pub fn take(data_dir: &Path) -> Result<Self, BackupError> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                BackupError::NodeRunning {
                    data_dir: data_dir.to_path_buf(),
                }
            } else {
                BackupError::Io(e)
            });
        }
        Ok(Self { _file: file })
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub schema_version: i64,
    /// Where the database it replaced was moved (none when there was none).
    pub kept: Option<PathBuf>,
}

/// Puts the backup `file` in place of `db` (see the module docs); `center` names the new
/// incarnation. The node must be stopped.
pub fn restore(
    file: &Path,
    db: &Path,
    center: &str,
    now_ms: i64,
) -> Result<RestoreReport, BackupError> {
    let data_dir = db.parent().unwrap_or(Path::new("."));
    let _lock = DataDirLock::take(data_dir)?;
    let schema_version = verify(file)?;
    let staged = partial_path(db);
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(file, &staged)?;
    File::open(&staged)?.sync_all()?;
    {
        // The restored copy is a new incarnation: a fresh actor, cursors forgotten (the
        // next sync session repairs), numbers unconfirmed.
        let mut c = Connection::open(&staged)?;
        let txn = c.transaction()?;
        markaz_sync::store::new_incarnation(&txn, center, now_ms)
            .map_err(|e| BackupError::Docs(e.to_string()))?;
        txn.commit()?;
        c.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))?;
    }
    let kept = if db.exists() {
        let stamp = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|_| now_ms.to_string());
        let mut aside = db.as_os_str().to_owned();
        aside.push(format!(".before-restore-{stamp}"));
        let aside = PathBuf::from(aside);
        for suffix in ["", "-wal", "-shm"] {
            let mut from = db.as_os_str().to_owned();
            from.push(suffix);
            let from = PathBuf::from(from);
            if from.exists() {
                let mut to = aside.as_os_str().to_owned();
                to.push(suffix);
                std::fs::rename(&from, PathBuf::from(to))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staged, db)?;
    sync_dir(db);
    Ok(RestoreReport {
        schema_version,
        kept,
    })
}

/// The scheduled backups in `folder`: `markaz-node-<stamp>.db`, newest last.
pub fn scheduled_backups(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("markaz-node-") && n.ends_with(".db"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The file name of a scheduled backup made at `at`.
pub fn scheduled_name(at: jiff::Timestamp) -> String {
    format!("markaz-node-{}.db", at.strftime("%Y%m%dT%H%M%SZ"))
}

/// Deletes the oldest scheduled backups (and their checksum files) beyond `keep`.
pub fn prune(folder: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let all = scheduled_backups(folder)?;
    let excess = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for p in all.into_iter().take(excess) {
        std::fs::remove_file(&p)?;
        let _ = std::fs::remove_file(checksum_path(&p));
        removed.push(p);
    }
    Ok(removed)
}

/// `[backup]` as the node runs it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub folder: PathBuf,
    /// Local time of day, minutes since midnight.
    pub minute_of_day: u16,
    pub keep: usize,
    pub tz: jiff::tz::TimeZone,
}

/// The first time after `now` whose local time of day in `tz` is `minute_of_day`.
pub fn next_run(
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
    minute_of_day: u16,
) -> jiff::Timestamp {
    let local = now.to_zoned(tz.clone());
    let (h, m) = ((minute_of_day / 60) as i8, (minute_of_day % 60) as i8);
    let mut day = local.date();
    for _ in 0..3 {
        if let Ok(at) = day.at(h, m, 0, 0).to_zoned(tz.clone())
            && at.timestamp() > now
        {
            return at.timestamp();
        }
        day = day.tomorrow().unwrap_or(day);
    }
    now + jiff::SignedDuration::from_hours(24)
}

/// Makes one scheduled backup into `schedule.folder` and prunes the old ones; a line in
/// the node log says how it went. Runs on a blocking thread.
pub async fn scheduled_backup(
    db: &super::Db,
    schedule: &Schedule,
    now: jiff::Timestamp,
) -> Result<BackupReport, BackupError> {
    let (path, folder, keep) = (
        db.path().to_path_buf(),
        schedule.folder.clone(),
        schedule.keep,
    );
    let to = folder.join(scheduled_name(now));
    let done = tokio::task::spawn_blocking(move || {
        let r = backup(&path, &to)?;
        let removed = prune(&folder, keep)?;
        Ok::<_, BackupError>((r, removed))
    })
    .await
    .map_err(|e| BackupError::Io(std::io::Error::other(e.to_string())))?;
    let (level, message) = match &done {
        Ok((r, removed)) => (
            "info",
            format!(
                "backup {} made ({} bytes, integrity ok); {} old backup(s) removed",
                r.path.display(),
                r.bytes,
                removed.len()
            ),
        ),
        Err(e) => ("error", format!("the daily backup failed: {e}")),
    };
    match &done {
        Ok(_) => tracing::info!("{message}"),
        Err(_) => tracing::error!("{message}"),
    }
    let at = now.to_string();
    let logged = db
        .writer
        .write_sql(move |c| {
            c.execute(
                "INSERT INTO node_log(at, level, source, message) VALUES (?1, ?2, 'backup', ?3)",
                rusqlite::params![at, level, message],
            )
            .map(drop)
        })
        .await;
    if let Err(e) = logged {
        tracing::warn!(error = %e, "cannot write the backup's node log line");
    }
    done.map(|(r, _)| r)
}

/// Runs `[backup]`: one backup a day at the configured local time, until `cancel`.
pub async fn run_daily(
    db: super::Db,
    schedule: Schedule,
    cancel: tokio_util::sync::CancellationToken,
) {
    tracing::info!(folder = %schedule.folder.display(), keep = schedule.keep, "daily backups scheduled");
    loop {
        let now = jiff::Timestamp::now();
        let next = next_run(now, &schedule.tz, schedule.minute_of_day);
        let wait = now.duration_until(next).unsigned_abs();
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        let _ = scheduled_backup(&db, &schedule, jiff::Timestamp::now()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_next_local_time_of_day() {
        let tz = jiff::tz::TimeZone::get("Asia/Damascus").unwrap();
        // 02:30 in Damascus (+03:00) is 23:30 UTC the day before.
        let now: jiff::Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let next = next_run(now, &tz, 150);
        assert_eq!(next.to_string(), "2026-12-03T23:30:00Z");
        let just_after: jiff::Timestamp = "2026-12-03T23:30:00Z".parse().unwrap();
        assert_eq!(
            next_run(just_after, &tz, 150).to_string(),
            "2026-12-04T23:30:00Z"
        );
    }

    fn db_with_rows(path: &Path, rows: usize) {
        let c = Connection::open(path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x TEXT);")
            .unwrap();
        for i in 0..rows {
            c.execute("INSERT INTO t VALUES (?1)", [format!("row {i}")])
                .unwrap();
        }
    }

    #[test]
    fn a_backup_is_checked_summed_and_a_damaged_or_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        db_with_rows(&db, 3000);
        let to = dir.path().join("b.db");
        let r = backup(&db, &to).unwrap();
        assert!(r.bytes > 0);
        let line = std::fs::read_to_string(&r.checksum_path).unwrap();
        assert_eq!(line, format!("{}  b.db\n", r.sha256));
        assert_eq!(verify(&to).unwrap(), 0);
        assert!(
            backup(&db, &to).is_err(),
            "an existing file is not overwritten"
        );

        // One flipped byte: the checksum file disagrees.
        let mut bytes = std::fs::read(&to).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&to, &bytes).unwrap();
        assert!(matches!(verify(&to), Err(BackupError::Checksum { .. })));
        // Without the checksum file, integrity_check finds the damage.
        std::fs::remove_file(&r.checksum_path).unwrap();
        crate::storage::integrity::flip_middle_page(&to);
        assert!(
            matches!(verify(&to), Err(BackupError::Corrupt { .. })),
            "{:?}",
            verify(&to)
        );

        let newer = dir.path().join("newer.db");
        db_with_rows(&newer, 1);
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        assert!(matches!(verify(&newer), Err(BackupError::TooNew { .. })));
    }

    #[test]
    fn a_locked_data_dir_is_a_running_node() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::take(dir.path()).unwrap();
        assert!(matches!(
            DataDirLock::take(dir.path()),
            Err(BackupError::NodeRunning { .. })
        ));
        drop(held);
        DataDirLock::take(dir.path()).unwrap();
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for d in 1..=5 {
            let at: jiff::Timestamp = format!("2026-12-0{d}T02:30:00Z").parse().unwrap();
            let p = dir.path().join(scheduled_name(at));
            std::fs::write(&p, b"x").unwrap();
            std::fs::write(checksum_path(&p), b"x").unwrap();
        }
        let removed = prune(dir.path(), 3).unwrap();
        assert_eq!(removed.len(), 2);
        let left = scheduled_backups(dir.path()).unwrap();
        assert_eq!(left.len(), 3);
        assert!(left[0].to_string_lossy().contains("20261203"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
    }
}
