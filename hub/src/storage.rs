//! The hub's storage: `<data_dir>/markaz-hub.db` (WAL, `synchronous=FULL`), owned by ONE
//! writer thread that also owns the hub's [`DocStore`] and HLC clock. Everything else
//! talks to it through [`HubWriter`], which sends jobs over a channel (the node's writer
//! shape): no connection is ever shared between threads.
//!
//! Jobs see the store through the [`HubEngine`] trait, so a larger engine can replace
//! SQLite; the sync part of that engine is `markaz_sync::protocol::HubStore`.
//!
//! Guarantees: a sync request and the hub edits (portal cases, staff) each run in one
//! transaction, committed only when they succeed; the document cache is dropped after a
//! rollback so it never shows what was not committed.

use std::path::Path;

use automerge::AutoCommit;
use markaz_sync::docs::{DocError, DocId};
use markaz_sync::hlc::Clock;
use markaz_sync::model::CenterId;
use markaz_sync::protocol::{
    MessageError, Request, RequestLog, Response, SqliteHub, handle_decoded, migrate_hub,
};
use markaz_sync::store::{self, DocStore, StoredChange};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

/// The hub database file name inside `data_dir`.
pub const DB_FILE: &str = "markaz-hub.db";

/// Errors of the hub storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("document store: {0}")]
    Store(Box<store::StoreError>),
    #[error("document: {0}")]
    Doc(Box<DocError>),
    #[error("routing: {0}")]
    Route(String),
    #[error("the hub writer thread has stopped")]
    WriterGone,
    #[error("{0}")]
    Invalid(String),
}

impl From<store::StoreError> for StorageError {
    fn from(e: store::StoreError) -> Self {
        StorageError::Store(Box::new(e))
    }
}

impl From<DocError> for StorageError {
    fn from(e: DocError) -> Self {
        StorageError::Doc(Box::new(e))
    }
}

/// One row of the sync log, as the endpoint records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncLogEntry {
    pub id: i64,
    pub center: String,
    /// The node's session id (`X-Markaz-Session`), when it sent a valid one.
    pub session: Option<String>,
    /// The row of `sync_sessions` this request belongs to (set when recorded).
    pub session_id: Option<i64>,
    pub uplink: String,
    pub kind: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub docs_up: i64,
    pub docs_down: i64,
    pub changes_up: i64,
    pub changes_down: i64,
    pub refused: i64,
    /// `ok` or `error`.
    pub result: String,
    pub error: Option<String>,
    /// Hub wall clock minus the center's (Hello only).
    pub skew_ms: Option<i64>,
    /// The center's pull cursor after this request (Pull only).
    pub cursor: Option<i64>,
    /// This answer ends the center's session: a last pull batch (the client's final
    /// phase) that caught the center up. Used when recording; not stored per request.
    #[serde(skip)]
    pub ends_session: bool,
}

/// What the hub's web and sync layers need from the store. [`HubDb`] is the SQLite one.
pub trait HubEngine {
    /// Answer one sync request from `center` (as its certificate names it) in one
    /// transaction; commits only when the request succeeded.
    fn sync_request(
        &mut self,
        center: &CenterId,
        now_ms: u64,
        req: Result<Request, MessageError>,
    ) -> (Response, RequestLog);
    /// Append a row to the sync log, add it to its session (see [`crate::sessions`]) and
    /// update the center's status.
    fn record_sync(&mut self, entry: &SyncLogEntry) -> Result<(), StorageError>;
    /// Edit (or create) a document at the hub and route the change, in one transaction.
    fn hub_edit(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&mut AutoCommit) -> Result<(), DocError>,
    ) -> Result<Option<StoredChange>, StorageError>;
    /// Route a document to a center (its history goes to the center's feed).
    fn route(&mut self, doc: &DocId, center: &CenterId) -> Result<(), StorageError>;
    /// Read a document, if it exists.
    fn read_doc(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&AutoCommit) -> Result<serde_json::Value, DocError>,
    ) -> Result<Option<serde_json::Value>, StorageError>;
    /// Ids of every document of `kind` (`case`, `energy`, …).
    fn doc_ids(&mut self, kind: &str) -> Result<Vec<DocId>, StorageError>;
    /// The raw connection, for the read-only oversight queries.
    fn conn(&self) -> &Connection;
    /// Next free sequence of a counter (e.g. portal case numbers per year).
    fn next_counter(&mut self, name: &str) -> Result<u32, StorageError>;
    /// A fresh stamp of the hub's hybrid logical clock.
    fn tick_hlc(&mut self, now_ms: u64) -> String;
}

/// The SQLite hub store: the write connection, the document store and the hub's clock.
pub struct HubDb {
    conn: Connection,
    docs: DocStore,
    clock: Clock,
}

impl std::fmt::Debug for HubDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubDb").field("docs", &self.docs).finish()
    }
}

/// Create the hub's own tables (after the sync migrations); idempotent.
pub fn migrate_own(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sync_log(
            id INTEGER PRIMARY KEY,
            center TEXT NOT NULL, uplink TEXT NOT NULL, kind TEXT NOT NULL,
            started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL,
            bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL,
            docs_up INTEGER NOT NULL, docs_down INTEGER NOT NULL,
            changes_up INTEGER NOT NULL, changes_down INTEGER NOT NULL,
            refused INTEGER NOT NULL, result TEXT NOT NULL, error TEXT,
            skew_ms INTEGER, cursor INTEGER);
         CREATE INDEX IF NOT EXISTS sync_log_center ON sync_log(center, id);
         CREATE TABLE IF NOT EXISTS center_status(
            center TEXT PRIMARY KEY,
            last_sync_ms INTEGER NOT NULL,
            last_ok_ms INTEGER,
            uplink TEXT NOT NULL,
            cursor INTEGER NOT NULL DEFAULT 0,
            skew_ms INTEGER);
         CREATE TABLE IF NOT EXISTS hub_counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    crate::sessions::migrate(conn)
}

/// Documents the hub keeps in memory between requests.
const HUB_DOC_CACHE: usize = 4096;

impl HubDb {
    /// Open (creating and migrating) the hub database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<HubDb, StorageError> {
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache (SQLite's default is 2 MB): every pushed change lands at a
        // random place in the unique index of change hashes, and dozens of centers push
        // at once.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The per-change statements of a push (store, route, feed) stay prepared.
        conn.set_prepared_statement_cache_capacity(64);
        store::migrate(&conn)?;
        migrate_hub(&conn)?;
        migrate_own(&conn)?;
        let now = jiff::Timestamp::now().as_millisecond();
        let actor = store::incarnation(&conn, "hub", now)?;
        let mut db = HubDb {
            conn,
            // Many centers push at once, each interleaving hundreds of open cases; a
            // document evicted between two of its center's requests is rebuilt from its
            // changes. A case document is a few kilobytes in memory.
            docs: DocStore::new(actor, HUB_DOC_CACHE),
            clock: Clock::new("hub"),
        };
        db.seed_catalog()?;
        Ok(db)
    }

    /// A new hub starts with the default catalog and fee schedule (edited later by the
    /// administration), so portal intake and the centers have services from day one.
    fn seed_catalog(&mut self) -> Result<(), StorageError> {
        let id = DocId::catalog();
        if self.docs.read(&self.conn, &id, |_| ())?.is_some() {
            return Ok(());
        }
        let fees = markaz_sync::model::default_fee_schedule();
        self.hub_edit(&id, &mut |d| {
            for s in markaz_sync::model::catalog::default_catalog() {
                markaz_sync::docs::write_service(d, &s)?;
            }
            for (code, f) in &fees.services {
                markaz_sync::docs::write_fees(d, code, f)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

fn route_err(e: markaz_sync::protocol::HubError) -> StorageError {
    StorageError::Route(e.to_string())
}

impl HubEngine for HubDb {
    fn sync_request(
        &mut self,
        center: &CenterId,
        now_ms: u64,
        req: Result<Request, MessageError>,
    ) -> (Response, RequestLog) {
        let tx = match self.conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let log = RequestLog {
                    kind: "bad",
                    error: Some(format!("hub storage: {e}")),
                    ..RequestLog::default()
                };
                let resp = Response::Error {
                    code: "hub_error".into(),
                    message: "hub storage unavailable".into(),
                };
                return (resp, log);
            }
        };
        let (resp, mut log) = {
            let mut h = SqliteHub::new(&tx, &mut self.docs);
            handle_decoded(&mut h, center, &mut self.clock, now_ms, req)
        };
        if log.error.is_none() {
            if let Err(e) = tx.commit() {
                log.error = Some(format!("commit: {e}"));
                self.docs.clear_cache();
                let resp = Response::Error {
                    code: "hub_error".into(),
                    message: "commit failed".into(),
                };
                return (resp, log);
            }
        } else {
            drop(tx);
            self.docs.clear_cache();
        }
        (resp, log)
    }

    fn record_sync(&mut self, e: &SyncLogEntry) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        let session_id = crate::sessions::record(&tx, e)?;
        tx.execute(
            "INSERT INTO sync_log(center, uplink, kind, started_ms, ended_ms, bytes_up,
               bytes_down, docs_up, docs_down, changes_up, changes_down, refused, result,
               error, skew_ms, cursor, session_id)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
            params![
                e.center,
                e.uplink,
                e.kind,
                e.started_ms,
                e.ended_ms,
                e.bytes_up,
                e.bytes_down,
                e.docs_up,
                e.docs_down,
                e.changes_up,
                e.changes_down,
                e.refused,
                e.result,
                e.error,
                e.skew_ms,
                e.cursor,
                session_id
            ],
        )?;
        let ok = (e.result == "ok").then_some(e.ended_ms);
        tx.execute(
            "INSERT INTO center_status(center, last_sync_ms, last_ok_ms, uplink, cursor, skew_ms)
             VALUES (?1, ?2, ?3, ?4, coalesce(?5, 0), ?6)
             ON CONFLICT(center) DO UPDATE SET last_sync_ms=?2,
               last_ok_ms=coalesce(?3, last_ok_ms), uplink=?4,
               cursor=coalesce(?5, cursor), skew_ms=coalesce(?6, skew_ms)",
            params![e.center, e.ended_ms, ok, e.uplink, e.cursor, e.skew_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn hub_edit(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&mut AutoCommit) -> Result<(), DocError>,
    ) -> Result<Option<StoredChange>, StorageError> {
        let tx = self.conn.transaction()?;
        let result = (|| {
            let (_, stored) = self.docs.edit(&tx, id, |d| f(d))?;
            let list: Vec<StoredChange> = stored.iter().cloned().collect();
            SqliteHub::new(&tx, &mut self.docs)
                .route_stored(&list, None)
                .map_err(route_err)?;
            Ok::<_, StorageError>(stored)
        })();
        match result {
            Ok(stored) => {
                tx.commit()?;
                Ok(stored)
            }
            Err(e) => {
                drop(tx);
                self.docs.clear_cache();
                Err(e)
            }
        }
    }

    fn route(&mut self, doc: &DocId, center: &CenterId) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        SqliteHub::new(&tx, &mut self.docs)
            .add_route(doc, center)
            .map_err(route_err)?;
        tx.commit()?;
        Ok(())
    }

    fn read_doc(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&AutoCommit) -> Result<serde_json::Value, DocError>,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        match self.docs.read(&self.conn, id, |d| f(d))? {
            None => Ok(None),
            Some(r) => Ok(Some(r?)),
        }
    }

    fn doc_ids(&mut self, kind: &str) -> Result<Vec<DocId>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT doc_id FROM doc_meta WHERE kind=?1 ORDER BY doc_id")?;
        let ids: Vec<String> = stmt
            .query_map([kind], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    fn conn(&self) -> &Connection {
        &self.conn
    }

    fn next_counter(&mut self, name: &str) -> Result<u32, StorageError> {
        let v: i64 = self.conn.query_row(
            "INSERT INTO hub_counters(name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value=value+1 RETURNING value",
            [name],
            |r| r.get(0),
        )?;
        u32::try_from(v).map_err(|_| StorageError::Invalid(format!("counter {name} overflow")))
    }

    fn tick_hlc(&mut self, now_ms: u64) -> String {
        self.clock.tick(now_ms).encode()
    }
}

type Job = Box<dyn FnOnce(&mut dyn HubEngine) + Send>;

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HubWriter {
    tx: mpsc::Sender<Job>,
}

impl HubWriter {
    /// Start the writer thread owning `engine`. It stops when every handle is dropped.
    pub fn spawn<E: HubEngine + Send + 'static>(mut engine: E) -> std::io::Result<HubWriter> {
        let (tx, mut rx) = mpsc::channel::<Job>(256);
        std::thread::Builder::new()
            .name("hub-writer".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut engine);
                }
            })?;
        Ok(HubWriter { tx })
    }

    /// Run `f` on the writer thread and wait for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn HubEngine) -> R + Send + 'static,
    ) -> Result<R, StorageError> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |e| {
            let _ = reply.send(f(e));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StorageError::WriterGone)?;
        rx.await.map_err(|_| StorageError::WriterGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_opens_migrates_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = HubDb::open(dir.path()).expect("open");
        let mode: String = db
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let w = HubWriter::spawn(db).expect("spawn");
        let a = w.run(|e| e.next_counter("web-2026")).await.expect("run");
        let b = w.run(|e| e.next_counter("web-2026")).await.expect("run");
        assert_eq!((a.expect("a"), b.expect("b")), (1, 2));
        let entry = SyncLogEntry {
            center: "midan".into(),
            uplink: "primary".into(),
            kind: "pull".into(),
            result: "ok".into(),
            cursor: Some(7),
            ..SyncLogEntry::default()
        };
        w.run(move |e| e.record_sync(&entry))
            .await
            .expect("run")
            .expect("record");
        let cursor: i64 = w
            .run(|e| {
                e.conn().query_row(
                    "SELECT cursor FROM center_status WHERE center='midan'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .expect("run")
            .expect("row");
        assert_eq!(cursor, 7);
    }
}
