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

pub mod docs;
mod migrations;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

pub use migrations::{LATEST_VERSION, MIGRATIONS};
pub use writer::{WriteError, WriteTx, Writer};

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
    #[error("the storage writer has stopped")]
    WriterGone,
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
    pub center: String,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 5000,
            group_commit_max_batch: 256,
            readers: 4,
            center: "node".into(),
        }
    }
}

/// The opened database: a writer and a pool of readers on the same file.
#[derive(Clone)]
pub struct Db {
    pub writer: Writer,
    pub readers: Readers,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, refuses a too-new schema,
    /// runs migrations, and starts the writer thread.
    pub fn open(path: &Path, opts: &StorageOptions) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        refuse_too_new(path)?;
        let mut conn = Connection::open(path)?;
        configure(&conn, opts)?;
        migrations::run(&mut conn)?;
        let actor = {
            let txn = conn.transaction()?;
            markaz_sync::store::migrate(&txn)?;
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let actor = markaz_sync::store::incarnation(&txn, &opts.center, now_ms)?;
            txn.commit()?;
            actor
        };
        let writer = Writer::start(
            conn,
            opts.group_commit_max_batch.max(1),
            markaz_sync::store::DocStore::new(actor, docs::DOC_CACHE),
        )?;
        let readers = Readers::open(path, opts)?;
        Ok(Self {
            writer,
            readers,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
