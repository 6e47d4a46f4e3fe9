//! The hub's storage, behind one interface and two engines: SQLite
//! (`<data_dir>/markaz-hub.db`, WAL, `synchronous=FULL`, [`sqlite::HubDb`]), the embedded
//! default, and PostgreSQL (several hub processes on one database, [`pg::PgHub`]).
//!
//! Jobs see the store through [`HubEngine`], which hands out no type of either engine. It
//! is made of one trait per concern, so a new concern (operators, audit, …) adds its own
//! trait with one implementation per engine, in a file per engine
//! (`storage/sqlite/<concern>.rs`, `storage/pg/<concern>.rs`):
//! - [`HubDocs`] — documents and the sync relay: answer a sync request, edit and route a
//!   hub document, read documents. Implemented once for every engine that offers a
//!   transaction over its [`HubTables`] ([`Transactional`]), so the relay's rules live
//!   in one place (`markaz_sync::protocol::relay`).
//! - [`SyncLog`] — the per-request sync log, sessions ([`crate::sessions`]), the
//!   centers' status, retention.
//! - [`Counters`] — named counters (portal case numbers).
//! - [`Operators`] — operator accounts, their sessions and API tokens, login limits and
//!   the audit log ([`crate::operators`]).
//!
//! An engine is owned by one worker thread (SQLite: one writer; PostgreSQL: one per pooled
//! connection); everything else talks to the workers through [`HubWriter`], which sends
//! jobs over a channel (the node's writer shape): no connection is ever shared between
//! threads.
//!
//! Guarantees: a sync request and the hub edits (portal cases, staff) each run in one
//! transaction, committed only when they succeed; the document cache is dropped after a
//! rollback so it never shows what was not committed.

use std::sync::{Arc, Mutex};

use automerge::AutoCommit;
use markaz_sync::docs::{DocError, DocId};
use markaz_sync::hlc::HlcClock;
use markaz_sync::model::CenterId;
use markaz_sync::protocol::{
    HubTables, MessageError, Relay, Request, RequestLog, Response, Restored, handle_decoded,
};
use markaz_sync::store::{self, DocStore, StoredChange};
use tokio::sync::{mpsc, oneshot};

use crate::operators::{
    ApiTokenInfo, AuditEntry, AuditFilter, LoginLimit, OperatorRecord, SessionRecord,
};
use crate::sessions::SyncSession;
use markaz_sync::protocol::contract::{ErrorCode, RequestKind, SessionResult};
use markaz_web::login::Failures;

pub mod pg;
pub mod sqlite;
#[cfg(test)]
mod tests;

pub use pg::{PgHub, PgSettings, PgTls};
pub use sqlite::{DB_FILE, HubDb};

/// Errors of the hub storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database engine failed (connection lost, constraint, I/O…).
    #[error("database: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync + 'static>),
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
    #[error("database schema version {found} is newer than this program's {ours}")]
    SchemaTooNew { found: i64, ours: i64 },
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Db(Box::new(e))
    }
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
    pub kind: RequestKind,
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
    pub result: SessionResult,
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

/// A request kind as the sync log stored it; a value this version does not know reads
/// as `bad`.
pub(crate) fn stored_kind(s: &str) -> RequestKind {
    RequestKind::parse(s).unwrap_or_default()
}

/// A result as the sync log stored it; anything but a known result reads as `error`.
pub(crate) fn stored_result(s: &str) -> SessionResult {
    SessionResult::parse(s).unwrap_or(SessionResult::Error)
}

/// The raw figures of one center for the overview (see `oversight::centers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CenterFacts {
    pub center: String,
    /// Last request of its latest session.
    pub last_sync_ms: Option<i64>,
    /// Last request of its latest session whose last request succeeded.
    pub last_ok_ms: Option<i64>,
    /// Uplink (path) of its latest session.
    pub uplink: Option<String>,
    /// The highest position of its feed (at least the feed floor a restore left).
    pub feed_len: i64,
    /// Its pull cursor as last reported.
    pub cursor: i64,
    /// Feed entries after its cursor (positions may leave a gap after a restore).
    pub backlog: i64,
    /// When its reported cursor last moved (`None`: never reported).
    pub cursor_ms: Option<i64>,
    pub skew_ms: Option<i64>,
    /// Sessions recorded.
    pub sessions: i64,
}

/// Documents and the sync relay (see the module docs).
pub trait HubDocs {
    /// Answer one sync request from `center` (as its certificate names it) in one
    /// transaction; commits only when the request succeeded.
    fn sync_request(
        &mut self,
        center: &CenterId,
        now_ms: u64,
        req: Result<Request, MessageError>,
    ) -> (Response, RequestLog);
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
    /// A fresh stamp of the hub's hybrid logical clock.
    fn tick_hlc(&mut self, now_ms: u64) -> String;
    /// The after-restore step (`markaz hub restore`, see
    /// `markaz_sync::protocol::restore`): a new epoch, a new actor for the hub's edits
    /// (taken by this engine's document store), the feeds moved beyond anything handed
    /// out; in one transaction.
    fn after_restore(&mut self, now_ms: u64) -> Result<Restored, StorageError>;
}

/// The sync log, sessions and the centers' status (see the module docs).
pub trait SyncLog {
    /// Append a row to the sync log, add it to its session (see [`crate::sessions`]) and
    /// update the center's status, in one transaction.
    fn record_sync(&mut self, entry: &SyncLogEntry) -> Result<(), StorageError>;
    /// The newest `limit` sessions, optionally of one center, with results derived at
    /// `now_ms`.
    fn sessions(
        &mut self,
        center: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<SyncSession>, StorageError>;
    /// The newest `limit` sync log rows, optionally of one center and of one session
    /// (`sync_sessions.id`).
    fn sync_log(
        &mut self,
        center: Option<&str>,
        session: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SyncLogEntry>, StorageError>;
    /// Every center that registered or synced, with its raw figures, by center id.
    fn center_facts(&mut self) -> Result<Vec<CenterFacts>, StorageError>;
    /// Retention (`[hub] sync_log_days`): delete up to `batch` sync log rows that ended
    /// before `before_ms`, then up to `batch` sessions whose last request came before it,
    /// in one short transaction. The numbers of (log rows, sessions) deleted; call again
    /// while either equals `batch`.
    fn prune_sync_log(&mut self, before_ms: i64, batch: u32) -> Result<(u64, u64), StorageError>;
}

/// Named counters.
pub trait Counters {
    /// Next free value of a counter (e.g. portal case numbers per year), from 1.
    fn next_counter(&mut self, name: &str) -> Result<u32, StorageError>;
}

/// Operator accounts, sessions, API tokens, login limits and the audit log (see
/// [`crate::operators`]). Tokens are handed over as their hashes only.
pub trait Operators {
    /// How many operators exist (0 on a new hub: the first start creates `admin`).
    fn operator_count(&mut self) -> Result<u64, StorageError>;
    /// Adds an operator; `false` when the username is taken.
    fn insert_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError>;
    /// Replaces an operator's row (by username); `false` when there is none.
    fn update_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError>;
    fn operator(&mut self, username: &str) -> Result<Option<OperatorRecord>, StorageError>;
    /// Every operator, by username.
    fn operators(&mut self) -> Result<Vec<OperatorRecord>, StorageError>;
    fn insert_session(&mut self, token_hash: &str, s: &SessionRecord) -> Result<(), StorageError>;
    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StorageError>;
    fn touch_session(&mut self, token_hash: &str, now_ms: i64) -> Result<(), StorageError>;
    fn delete_session(&mut self, token_hash: &str) -> Result<(), StorageError>;
    /// Ends every session of an operator (password changed, account deactivated).
    fn delete_sessions_of(&mut self, username: &str) -> Result<(), StorageError>;
    /// Deletes sessions begun before `created_before_ms` or unused since
    /// `seen_before_ms`.
    fn prune_sessions(
        &mut self,
        created_before_ms: i64,
        seen_before_ms: i64,
    ) -> Result<(), StorageError>;
    /// Stores a new API token of `username`; returns its id.
    fn insert_api_token(
        &mut self,
        token_hash: &str,
        username: &str,
        label: &str,
        now_ms: i64,
    ) -> Result<i64, StorageError>;
    /// The operator owning the token, marking it used at `now_ms`.
    fn use_api_token(
        &mut self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StorageError>;
    /// The API tokens of one operator, or of all.
    fn api_tokens(&mut self, username: Option<&str>) -> Result<Vec<ApiTokenInfo>, StorageError>;
    /// Revokes a token; `false` when there was none with that id.
    fn delete_api_token(&mut self, id: i64) -> Result<bool, StorageError>;
    /// Failed logins of one (username, address) pair.
    fn login_failures(&mut self, username: &str, address: &str) -> Result<Failures, StorageError>;
    fn set_login_failures(
        &mut self,
        username: &str,
        address: &str,
        f: Failures,
    ) -> Result<(), StorageError>;
    /// Clears the failures of a username (from one address, or from all); returns how
    /// many pairs were cleared.
    fn clear_login_failures(
        &mut self,
        username: &str,
        address: Option<&str>,
    ) -> Result<u64, StorageError>;
    /// Every (username, address) pair with failures, newest first.
    fn login_limits(&mut self) -> Result<Vec<LoginLimit>, StorageError>;
    /// Appends to the audit log; returns the entry's id.
    fn record_audit(&mut self, e: &AuditEntry) -> Result<i64, StorageError>;
    /// Audit entries, newest first.
    fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StorageError>;
}

/// Everything the hub's web and sync layers need from the store.
pub trait HubEngine: HubDocs + SyncLog + Counters + Operators {}

impl<T: HubDocs + SyncLog + Counters + Operators> HubEngine for T {}

/// Work for [`Transactional::in_tx`]: over the engine's tables, the document store and the
/// clock, it answers its result and whether to commit.
pub type TxWork<'a, R> = dyn FnMut(&dyn HubTables, &mut DocStore, &mut HlcClock) -> (R, bool) + 'a;

/// An engine that runs work in one transaction over its [`HubTables`], with the hub's
/// document store and clock. [`HubDocs`] is implemented for every such engine.
pub trait Transactional {
    /// Run `work` in one transaction: commit when it answers `true`, otherwise roll back.
    /// After a rollback or a failed commit the document cache is cleared (it may hold
    /// what was not committed). An engine may run `work` again after a transient failure
    /// (another writer's lock), so `work` starts from scratch each time.
    fn in_tx<R>(&mut self, work: &mut TxWork<'_, R>) -> Result<R, StorageError>;
    /// The hub's clock.
    fn clock(&mut self) -> &mut HlcClock;
}

/// A new hub starts with the default catalog and fee schedule (edited later by the
/// administration), so portal intake and the centers have services from day one.
pub(crate) fn seed_catalog(e: &mut impl HubDocs) -> Result<(), StorageError> {
    let id = DocId::catalog();
    if e.read_doc(&id, &mut |_| Ok(serde_json::Value::Null))?
        .is_some()
    {
        return Ok(());
    }
    let fees = markaz_sync::model::default_fee_schedule();
    e.hub_edit(&id, &mut |d| {
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

fn route_err(e: markaz_sync::protocol::HubError) -> StorageError {
    StorageError::Route(e.to_string())
}

impl<T: Transactional> HubDocs for T {
    fn sync_request(
        &mut self,
        center: &CenterId,
        now_ms: u64,
        req: Result<Request, MessageError>,
    ) -> (Response, RequestLog) {
        let (good, mut bad) = match req {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        let done = self.in_tx(&mut |tables, docs, clock| {
            // A retried transaction answers the same request again (a request that did not
            // decode touches nothing, so it is never retried).
            let r = match (&good, bad.take()) {
                (Some(g), _) => Ok(g.clone()),
                (None, Some(e)) => Err(e),
                (None, None) => {
                    let log = RequestLog {
                        kind: RequestKind::Bad,
                        error: Some("retried an undecodable request".into()),
                        ..RequestLog::default()
                    };
                    let resp = Response::Error {
                        code: ErrorCode::HubError,
                        message: "hub storage unavailable".into(),
                    };
                    return ((resp, log), false);
                }
            };
            let mut relay = Relay::new(tables, docs);
            let (resp, log) = handle_decoded(&mut relay, center, clock, now_ms, r);
            let ok = log.error.is_none();
            ((resp, log), ok)
        });
        match done {
            Ok(answer) => answer,
            Err(e) => {
                let log = RequestLog {
                    kind: RequestKind::Bad,
                    error: Some(format!("hub storage: {e}")),
                    ..RequestLog::default()
                };
                let resp = Response::Error {
                    code: ErrorCode::HubError,
                    message: "hub storage unavailable".into(),
                };
                (resp, log)
            }
        }
    }

    fn hub_edit(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&mut AutoCommit) -> Result<(), DocError>,
    ) -> Result<Option<StoredChange>, StorageError> {
        self.in_tx(&mut |tables, docs, _| {
            let result = (|| {
                tables.lock_docs(&[id]).map_err(route_err)?;
                let (_, stored) = docs.edit(tables, id, |d| f(d))?;
                let list: Vec<StoredChange> = stored.iter().cloned().collect();
                Relay::new(tables, docs)
                    .route_stored(&list, None)
                    .map_err(route_err)?;
                Ok::<_, StorageError>(stored)
            })();
            let ok = result.is_ok();
            (result, ok)
        })?
    }

    fn route(&mut self, doc: &DocId, center: &CenterId) -> Result<(), StorageError> {
        self.in_tx(&mut |tables, docs, _| {
            let r = Relay::new(tables, docs)
                .add_route(doc, center)
                .map_err(route_err);
            let ok = r.is_ok();
            (r, ok)
        })?
    }

    fn read_doc(
        &mut self,
        id: &DocId,
        f: &mut dyn FnMut(&AutoCommit) -> Result<serde_json::Value, DocError>,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        self.in_tx(&mut |tables, docs, _| {
            let r = match docs.read(tables, id, |d| f(d)) {
                Ok(None) => Ok(None),
                Ok(Some(r)) => r.map(Some).map_err(StorageError::from),
                Err(e) => Err(StorageError::from(e)),
            };
            (r, true)
        })?
    }

    fn doc_ids(&mut self, kind: &str) -> Result<Vec<DocId>, StorageError> {
        self.in_tx(&mut |tables, _, _| {
            let r = tables.doc_ids(kind).map_err(route_err);
            (r, true)
        })?
    }

    fn tick_hlc(&mut self, now_ms: u64) -> String {
        self.clock().tick(now_ms).encode()
    }

    fn after_restore(&mut self, now_ms: u64) -> Result<Restored, StorageError> {
        self.in_tx(&mut |tables, docs, _| {
            let r = markaz_sync::protocol::after_restore(tables, now_ms).map_err(route_err);
            if let Ok(r) = &r {
                docs.set_actor(automerge::ActorId::from(r.actor.clone()));
            }
            let ok = r.is_ok();
            (r, ok)
        })?
    }
}

type Job = Box<dyn FnOnce(&mut dyn HubEngine) + Send>;

/// Handle to the worker threads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HubWriter {
    tx: mpsc::Sender<Job>,
}

impl HubWriter {
    /// Start the writer thread owning `engine`. It stops when every handle is dropped.
    pub fn spawn<E: HubEngine + Send + 'static>(engine: E) -> std::io::Result<HubWriter> {
        Self::spawn_pool(vec![engine])
    }

    /// Start one worker thread per engine (each owning its own connection); a job runs on
    /// whichever is free. They stop when every handle is dropped.
    pub fn spawn_pool<E: HubEngine + Send + 'static>(
        engines: Vec<E>,
    ) -> std::io::Result<HubWriter> {
        let (tx, rx) = mpsc::channel::<Job>(256);
        let rx = Arc::new(Mutex::new(rx));
        for (i, mut engine) in engines.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hub-writer-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(mut rx) => rx.blocking_recv(),
                            Err(_) => None,
                        };
                        let Some(job) = job else { break };
                        job(&mut engine);
                    }
                })?;
        }
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
