//! Durable storage of a center: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Guarantees:
//! - One writer thread owns the only write connection ([`Writer`]); it batches concurrent
//!   requests into one transaction (group commit), runs each request inside its own
//!   `SAVEPOINT` so a failing request rolls back alone, commits once, and only then
//!   answers every request. An `Ok` from [`Writer::write`] means "on disk".
//! - Readers use their own connections ([`Readers`]); WAL lets them read while the writer
//!   writes, so a reader never waits for the writer.
//! - Migrations are versioned by `PRAGMA user_version` and run at start. A database whose
//!   version is newer than this binary knows is refused before anything writes to it.

pub mod backup;
pub mod docs;
pub mod identity;
pub mod integrity;
mod migrations;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use markaz_sync::model::ids::CenterId;
use rusqlite::{Connection, OpenFlags};

pub use migrations::{LATEST_VERSION, MIGRATIONS};
pub use writer::{
    STALLED_AFTER, WriteError, WriteTx, Writer, WriterHealth, WriterMetrics, WriterState,
};

/// What can go wrong opening or using the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "database {path} has schema version {found}, newer than this markaz supports ({supported}); \
         upgrade markaz or restore a backup made by this version — the file was left untouched"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database file is damaged: {0}")]
    Corrupt(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("the write was not committed (the storage writer restarted); nothing of it was saved")]
    NotCommitted,
    #[error("writes are refused: {0}")]
    Refused(String),
    #[error("no answer from the storage writer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("documents: {0}")]
    // Boxed: automerge's errors are large, and every `Result` of the node carries this.
    Docs(Box<markaz_sync::store::StoreError>),
}

impl From<markaz_sync::store::StoreError> for StorageError {
    fn from(e: markaz_sync::store::StoreError) -> Self {
        StorageError::Docs(Box::new(e))
    }
}

/// Tuning that comes from config.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub busy_timeout_ms: u64,
    pub group_commit_max_batch: usize,
    pub readers: usize,
    /// The center id, the prefix of this database incarnation's automerge actor id.
    pub center: CenterId,
    /// A file (with its WAL) up to this size is checked with `quick_check` before `open`
    /// returns; a larger one in the background.
    pub inline_check_max_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 5000,
            group_commit_max_batch: 256,
            readers: 4,
            center: "node".parse().expect("a valid center id"),
            inline_check_max_bytes: integrity::INLINE_CHECK_MAX_BYTES,
        }
    }
}

/// The opened database: a writer and a pool of readers on the same file.
#[derive(Clone)]
pub struct Db {
    pub writer: Writer,
    pub readers: Readers,
    /// What `quick_check` found (see [`integrity`]).
    pub integrity: integrity::IntegrityState,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, refuses a too-new schema,
    /// runs migrations, and starts the writer thread.
    pub fn open(path: &Path, opts: &StorageOptions) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Before anything opens the file: SQLite would rebuild the index from a short WAL.
        let state = integrity::IntegrityState::new(integrity::check_wal(path));
        refuse_too_new(path)?;
        let mut conn = Connection::open(path)?;
        configure(&conn, opts)?;
        let inline = integrity::stored_bytes(path) <= opts.inline_check_max_bytes;
        if inline {
            state.set(integrity::quick_check(&conn));
        }
        let setup = (|| -> Result<_, StorageError> {
            migrations::run(&mut conn)?;
            let txn = conn.transaction()?;
            markaz_sync::store::migrate(&txn)?;
            let now = jiff::Timestamp::now();
            let now_ms = now.as_millisecond();
            let mut actor = markaz_sync::store::incarnation(&txn, opts.center.as_str(), now_ms)?;
            let found = identity::file_identity(path)?;
            if let identity::FileCheck::Copy { recorded, found } = identity::check(&txn, &found)? {
                actor = markaz_sync::store::new_incarnation(&txn, opts.center.as_str(), now_ms)?;
                copied_database(&txn, now, &recorded, &found)?;
            }
            txn.commit()?;
            Ok(actor)
        })();
        let actor = match (setup, state.get()) {
            (Ok(actor), _) => actor,
            (Err(e), integrity::Integrity::Corrupt { problems }) => {
                return Err(StorageError::Corrupt(format!(
                    "{e}; quick_check: {}",
                    problems.join("; ")
                )));
            }
            (Err(e), _) => return Err(e),
        };
        let reopen_path = path.to_path_buf();
        let reopen_opts = opts.clone();
        let reopen: writer::Reopen = Box::new(move || {
            let conn = Connection::open(&reopen_path)?;
            configure(&conn, &reopen_opts)?;
            Ok(conn)
        });
        let writer = Writer::start(
            conn,
            reopen,
            opts.group_commit_max_batch.max(1),
            markaz_sync::store::DocStore::new(actor, docs::DOC_CACHE),
        )?;
        let readers = Readers::open(path, opts)?;
        if inline {
            refuse_if_corrupt(&state, &writer);
        } else {
            let (state, writer, path) = (state.clone(), writer.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name("quick-check".into())
                .spawn(move || {
                    tracing::info!(db = %path.display(), "checking the database in the background");
                    let found = match Connection::open(&path) {
                        Ok(conn) => integrity::quick_check(&conn),
                        Err(e) => integrity::Integrity::Corrupt {
                            problems: vec![e.to_string()],
                        },
                    };
                    state.set(found);
                    refuse_if_corrupt(&state, &writer);
                })?;
        }
        Ok(Self {
            writer,
            readers,
            integrity: state,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The database was opened from a copy of its file (a backup put back) and a new
/// incarnation started: its numbers are not confirmed, and the node log says why (see
/// [`identity`]).
fn copied_database(
    txn: &Connection,
    now: jiff::Timestamp,
    recorded: &str,
    found: &str,
) -> Result<(), StorageError> {
    // A database from before the numbering rule was confirmed as `legacy`, whatever its
    // actor; a copy of it is not.
    txn.execute(
        "DELETE FROM meta WHERE key = ?1 AND value = 'legacy'",
        [crate::app::numbering::CONFIRMED_KEY],
    )?;
    let line = "this database was opened from another file than the one it was last opened \
                from (a backup put back, or a copy): a new incarnation starts, and new cases and \
                receipts are numbered in a series of their own until a sync with the hub";
    txn.execute(
        "INSERT INTO node_log(at, level, source, message) VALUES (?1, 'warn', 'storage', ?2)",
        rusqlite::params![now.to_string(), line],
    )?;
    tracing::warn!(recorded, found, "{line}");
    Ok(())
}

/// After a check that found damage: no write touches the file again, and the log says
/// what was found and where the way back is described.
fn refuse_if_corrupt(state: &integrity::IntegrityState, writer: &Writer) {
    match state.get() {
        integrity::Integrity::Corrupt { problems } => {
            writer.refuse("the database file is damaged (quick_check); see the technician page");
            tracing::error!(
                problems = %problems.join("; "),
                "the database file is damaged: writes are refused; restore the last backup or \
                 rebuild from the hub (docs/OPERATIONS.md, \"A damaged database\")"
            );
        }
        integrity::Integrity::Ok { took } => {
            tracing::info!(
                took_ms = took.as_millis() as u64,
                "database quick_check: ok"
            );
        }
        integrity::Integrity::Checking => {}
    }
}

/// Reads `user_version` through a read-only connection, so a newer database is not
/// touched (not even switched to WAL) before it is refused.
fn refuse_too_new(path: &Path) -> Result<(), StorageError> {
    if !path.exists() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > LATEST_VERSION {
        return Err(StorageError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: LATEST_VERSION,
        });
    }
    Ok(())
}

fn configure(conn: &Connection, opts: &StorageOptions) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_millis(opts.busy_timeout_ms))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    debug_assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // Room for the statements every write runs (savepoint, sequence, audit, …) next to
    // those of the use cases, so the hot ones stay prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// A small pool of read-only connections; reads run on blocking threads.
#[derive(Clone)]
pub struct Readers {
    pool: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
    busy_timeout_ms: u64,
}

impl Readers {
    fn open(path: &Path, opts: &StorageOptions) -> Result<Self, StorageError> {
        let readers = Self {
            pool: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path.to_path_buf()),
            busy_timeout_ms: opts.busy_timeout_ms,
        };
        let mut conns = Vec::new();
        for _ in 0..opts.readers.max(1) {
            conns.push(readers.connect()?);
        }
        *readers.pool.lock().expect("reader pool poisoned") = conns;
        Ok(readers)
    }

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            &*self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_millis(self.busy_timeout_ms))?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.pool.lock().expect("reader pool poisoned").pop();
            let conn = match conn {
                Some(c) => c,
                None => this
                    .connect()
                    .map_err(|e| E::from(StorageError::Sqlite(e)))?,
            };
            let out = f(&conn);
            this.pool.lock().expect("reader pool poisoned").push(conn);
            out
        })
        .await
        .map_err(|e| E::from(StorageError::Join(e.to_string())))?
    }
}

#[cfg(test)]
mod tests;
