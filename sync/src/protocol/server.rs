//! The hub side: [`handle_request`] answers one request against a [`HubStore`]; the hub's
//! HTTPS handler calls it inside one write transaction with the center named by the
//! client certificate. [`SqliteHub`] is the SQLite implementation of the store.
//!
//! Guarantees: a center only ever receives documents routed to it (its own documents, the
//! catalog, its staff, cases routed to it and their citizens); a pushed change for a
//! document the center may not write is refused and reported, never stored; every request
//! is idempotent, so a cut request or reply is simply sent again.

use std::collections::HashMap;

use automerge::{ChangeHash, sync::State};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::warn;

use super::message::{Refusal, Request, Response};
use super::{FeedBatch, HubError, PushOutcome, may_write};
use crate::docs::{self, DocId, DocKind};
use crate::hlc::{Clock, Hlc};
use crate::model::ids::CenterId;
use crate::store::{self, DocStore, Lane, StoredChange, WireChange};

/// Largest pull batch the hub builds, whatever the client asks.
pub const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;
/// A document entering a center's scope with at least this many changes to send goes as
/// one snapshot instead.
pub const SNAPSHOT_MIN_CHANGES: i64 = 8;
/// Most documents in one repair list reply.
pub const MAX_REPAIR_DOCS: usize = 5_000;

/// The hub's answer to one document's sync message: its reply (if any), its heads after,
/// and how many of the center's changes it refused.
pub type SyncAnswer = (Option<Vec<u8>>, Vec<ChangeHash>, usize);

/// Storage the sync endpoint needs; SQLite by default, replaceable by a larger engine.
pub trait HubStore {
    /// This hub database's epoch (new when the database was restored).
    fn epoch(&mut self) -> Result<String, HubError>;
    /// Record a center (first contact routes the catalog and its staff to it).
    fn register(&mut self, center: &CenterId) -> Result<(), HubError>;
    /// Highest local sequence of `actor` at `center` that the hub has durably stored.
    fn push_acked(&mut self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError>;
    /// Store pushed changes (authority-checked, deduplicated, routed) and advance the ack.
    fn store_push(
        &mut self,
        center: &CenterId,
        actor: &[u8],
        changes: &[(u64, WireChange)],
    ) -> Result<PushOutcome, HubError>;
    /// Length of a center's feed.
    fn feed_len(&mut self, center: &CenterId) -> Result<u64, HubError>;
    /// Feed entries after `cursor`, up to `max_bytes` of change bytes (at least one).
    fn read_feed(
        &mut self,
        center: &CenterId,
        cursor: u64,
        max_bytes: usize,
    ) -> Result<FeedBatch, HubError>;
    /// One hash per repair bucket over the documents in the center's scope.
    fn scope_bucket_hashes(&mut self, center: &CenterId) -> Result<Vec<[u8; 32]>, HubError>;
    /// The center's scope documents (id, heads) in these buckets.
    fn scope_docs(
        &mut self,
        center: &CenterId,
        buckets: &[u16],
    ) -> Result<Vec<(DocId, Vec<ChangeHash>)>, HubError>;
    /// Receive one automerge sync message from a center for a document and answer it:
    /// (reply, heads after, changes refused).
    fn repair_sync(
        &mut self,
        center: &CenterId,
        doc: &DocId,
        msg: &[u8],
    ) -> Result<SyncAnswer, HubError>;
}

/// What one request did, for the hub's sync log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    pub kind: &'static str,
    pub changes_in: usize,
    pub changes_out: usize,
    pub docs: usize,
    pub refused: usize,
    pub error: Option<String>,
}

/// Answer one request from `center` (as authenticated by its certificate). Returns the
/// response bytes and a summary for the sync log. Errors become `Error` responses.
pub fn handle_request<H: HubStore>(
    hub: &mut H,
    center: &CenterId,
    clock: &mut Clock,
    now_ms: u64,
    body: &[u8],
) -> (Vec<u8>, RequestLog) {
    let (resp, log) = handle_decoded(hub, center, clock, now_ms, Request::decode(body));
    (resp.encode(), log)
}

/// [`handle_request`] for a body already decoded (the hub decodes it before it reaches
/// its writer thread, which then only answers): the response, not yet encoded.
pub fn handle_decoded<H: HubStore>(
    hub: &mut H,
    center: &CenterId,
    clock: &mut Clock,
    now_ms: u64,
    req: Result<Request, super::message::MessageError>,
) -> (Response, RequestLog) {
    let mut log = RequestLog::default();
    let req = match req {
        Ok(r) => r,
        Err(super::message::MessageError::VersionRefused { ours, theirs }) => {
            log.kind = "refused";
            log.error = Some(format!("protocol version {theirs}, ours {ours}"));
            return (Response::VersionRefused { ours, theirs }, log);
        }
        Err(e) => {
            log.kind = "bad";
            log.error = Some(e.to_string());
            return (
                Response::Error {
                    code: "bad_request".into(),
                    message: e.to_string(),
                },
                log,
            );
        }
    };
    match answer(hub, center, clock, now_ms, req, &mut log) {
        Ok(r) => (r, log),
        Err(e) => {
            log.error = Some(e.to_string());
            (
                Response::Error {
                    code: "hub_error".into(),
                    message: e.to_string(),
                },
                log,
            )
        }
    }
}

fn answer<H: HubStore>(
    hub: &mut H,
    center: &CenterId,
    clock: &mut Clock,
    now_ms: u64,
    req: Request,
    log: &mut RequestLog,
) -> Result<Response, HubError> {
    Ok(match req {
        Request::Hello {
            center: claimed,
            actor,
            hlc,
            ..
        } => {
            log.kind = "hello";
            if claimed != center.as_str() {
                return Ok(Response::Error {
                    code: "wrong_center".into(),
                    message: format!("certificate is for {center}, hello says {claimed}"),
                });
            }
            let actor = hex::decode(&actor).map_err(|e| format!("bad actor: {e}"))?;
            hub.register(center)?;
            let stamp = match Hlc::parse(&hlc) {
                Ok(remote) => clock
                    .observe(&remote, now_ms)
                    .unwrap_or_else(|_| clock.tick(now_ms)),
                Err(_) => clock.tick(now_ms),
            };
            Response::Welcome {
                epoch: hub.epoch()?,
                push_acked: hub.push_acked(center, &Lane::Essential.ack_key(&actor))?,
                bulk_acked: Some(hub.push_acked(center, &Lane::Bulk.ack_key(&actor))?),
                feed_len: hub.feed_len(center)?,
                hlc: stamp.encode(),
                wall_ms: now_ms,
                compact_push: true,
            }
        }
        Request::Push { actor, changes } => {
            log.kind = "push";
            log.changes_in = changes.len();
            let actor = hex::decode(&actor).map_err(|e| format!("bad actor: {e}"))?;
            let out = hub.store_push(center, &actor, &changes)?;
            log.refused = out.refused.len();
            Response::PushAck {
                acked: out.acked,
                refused: out.refused,
            }
        }
        Request::Pull { cursor, max_bytes } => {
            log.kind = "pull";
            let b = hub.read_feed(center, cursor, (max_bytes as usize).min(MAX_PULL_BYTES))?;
            log.changes_out = b.changes.len();
            log.docs = b.snapshots.len();
            Response::PullBatch {
                changes: b.changes,
                snapshots: b.snapshots,
                next_cursor: b.next_cursor,
                more: b.more,
            }
        }
        Request::RepairRanges { buckets } => {
            log.kind = "repair_ranges";
            let ours = hub.scope_bucket_hashes(center)?;
            let differing = (0..store::BUCKETS)
                .filter(|&i| buckets.get(i as usize) != ours.get(i as usize))
                .collect();
            Response::RepairDiff { differing }
        }
        Request::RepairList { buckets } => {
            log.kind = "repair_list";
            let docs = hub.scope_docs(center, &buckets)?;
            log.docs = docs.len();
            Response::RepairDocs {
                docs: docs
                    .into_iter()
                    .take(MAX_REPAIR_DOCS)
                    .map(|(d, h)| (d, h.into_iter().map(|h| h.0).collect()))
                    .collect(),
            }
        }
        Request::RepairSync { msgs } => {
            log.kind = "repair_sync";
            log.docs = msgs.len();
            let mut out = Vec::with_capacity(msgs.len());
            for (doc, msg) in msgs {
                let (reply, heads, refused) = hub.repair_sync(center, &doc, &msg)?;
                log.refused += refused;
                out.push((doc, reply, heads.into_iter().map(|h| h.0).collect()));
            }
            Response::RepairSync { msgs: out }
        }
    })
}

/// Create the hub's own tables (after [`store::migrate`]); idempotent. A new database
/// gets a fresh epoch.
pub fn migrate_hub(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hub_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS centers(center TEXT PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS routes(doc_id TEXT NOT NULL, center TEXT NOT NULL,
            PRIMARY KEY(doc_id, center));
         CREATE INDEX IF NOT EXISTS routes_center ON routes(center, doc_id);
         CREATE TABLE IF NOT EXISTS feed(center TEXT NOT NULL, fseq INTEGER NOT NULL,
            change_seq INTEGER NOT NULL, snapshot_doc TEXT, PRIMARY KEY(center, fseq));
         CREATE TABLE IF NOT EXISTS push_acks(center TEXT NOT NULL, actor BLOB NOT NULL,
            acked INTEGER NOT NULL, PRIMARY KEY(center, actor));",
    )?;
    let has: Option<String> = conn
        .query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if has.is_none() {
        rotate_epoch(conn)?;
    }
    Ok(())
}

/// Give the hub database a new epoch: call after restoring it from a backup, so every
/// center repairs against it and starts its cursors again.
pub fn rotate_epoch(conn: &Connection) -> Result<String, rusqlite::Error> {
    let epoch = hex::encode(rand::random::<[u8; 12]>());
    conn.execute(
        "INSERT INTO hub_meta(key, value) VALUES ('epoch', ?1)
         ON CONFLICT(key) DO UPDATE SET value=?1",
        [&epoch],
    )?;
    Ok(epoch)
}

/// After restoring the hub database from a backup: a new epoch (so every center repairs)
/// and a new actor id (so the hub never re-mints an (actor, seq) it used after the
/// backup). Returns the actor for the hub's [`DocStore`].
pub fn after_restore(conn: &Connection, now_ms: i64) -> Result<automerge::ActorId, HubError> {
    rotate_epoch(conn)?;
    Ok(store::new_incarnation(conn, "hub", now_ms)?)
}

/// The SQLite [`HubStore`]: borrows the hub's write connection (inside its transaction)
/// and its [`DocStore`].
pub struct SqliteHub<'a> {
    pub conn: &'a Connection,
    pub docs: &'a mut DocStore,
}

impl<'a> SqliteHub<'a> {
    pub fn new(conn: &'a Connection, docs: &'a mut DocStore) -> SqliteHub<'a> {
        SqliteHub { conn, docs }
    }

    fn routed(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM routes WHERE doc_id=?1 AND center=?2")?
            .query_row(params![doc.as_str(), center.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn append_feed(&self, center: &str, change_seq: u64) -> Result<(), HubError> {
        self.conn
            .prepare_cached(
                "INSERT INTO feed(center, fseq, change_seq)
                 VALUES (?1, (SELECT coalesce(max(fseq), 0) + 1 FROM feed WHERE center=?1), ?2)",
            )?
            .execute(params![center, change_seq as i64])?;
        Ok(())
    }

    /// Route a document to a center: on a new route, the document's history (minus what
    /// the center itself sent) goes to its feed first.
    pub fn add_route(&mut self, doc: &DocId, center: &CenterId) -> Result<(), HubError> {
        let n = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO routes(doc_id, center) VALUES (?1, ?2)")?
            .execute(params![doc.as_str(), center.as_str()])?;
        if n == 0 {
            return Ok(());
        }
        let (count, top): (i64, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT count(*), max(seq) FROM changes WHERE doc_id=?1 AND coalesce(origin, '') <> ?2",
            )?
            .query_row(params![doc.as_str(), center.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if let Some(top) = top
            && count >= SNAPSHOT_MIN_CHANGES
        {
            // A long history travels as one `save()` snapshot, built when it is pulled.
            self.conn.execute(
                "INSERT INTO feed(center, fseq, change_seq, snapshot_doc)
                 VALUES (?1, (SELECT coalesce(max(fseq), 0) + 1 FROM feed WHERE center=?1), ?2, ?3)",
                params![center.as_str(), top, doc.as_str()],
            )?;
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT INTO feed(center, fseq, change_seq)
                 SELECT ?2, (SELECT coalesce(max(fseq), 0) FROM feed WHERE center=?2)
                            + row_number() OVER (ORDER BY seq), seq
                 FROM changes WHERE doc_id=?1 AND coalesce(origin, '') <> ?2",
            )?
            .execute(params![doc.as_str(), center.as_str()])?;
        Ok(())
    }

    /// Route newly stored changes: append each to the feeds of the centers its document
    /// is routed to (except the one that sent it), then add the routes its document now
    /// implies. Call this after the hub's own edits too (catalog, staff, portal cases).
    ///
    /// Each document of the batch is read once, after all its changes: routes are only
    /// ever added, and a new route sends the document's whole history (what the center
    /// did not send itself), so deciding from the final state reaches the same feeds as
    /// deciding after every change.
    pub fn route_stored(
        &mut self,
        stored: &[StoredChange],
        origin: Option<&CenterId>,
    ) -> Result<(), HubError> {
        self.route_stored_read(stored, origin, HashMap::new())
    }

    /// [`Self::route_stored`] with the routing fields of some cases already read (by
    /// [`case_routes_of`], where the push applied them).
    fn route_stored_read(
        &mut self,
        stored: &[StoredChange],
        origin: Option<&CenterId>,
        mut read: HashMap<DocId, Result<docs::CaseRoutes, docs::DocError>>,
    ) -> Result<(), HubError> {
        let mut routes: HashMap<&DocId, Vec<String>> = HashMap::new();
        let mut docs: Vec<&DocId> = Vec::new();
        for s in stored {
            if !routes.contains_key(&s.doc_id) {
                routes.insert(&s.doc_id, self.routes_of(&s.doc_id)?);
                docs.push(&s.doc_id);
            }
            for c in &routes[&s.doc_id] {
                if Some(c.as_str()) != origin.map(CenterId::as_str) {
                    self.append_feed(c, s.seq)?;
                }
            }
        }
        for doc in docs {
            let case = match doc.kind() {
                DocKind::Case => match read.remove(doc) {
                    Some(r) => Some(r),
                    None => self.docs.read(self.conn, doc, docs::read_case_routes)?,
                },
                _ => None,
            };
            let case = match case {
                Some(Ok(v)) => Some(v),
                _ => None,
            };
            for c in implied_routes(doc, origin, case.as_ref(), || self.all_centers())? {
                self.add_route(doc, &c)?;
            }
            if let Some(v) = case {
                // A case's citizen goes wherever the case goes.
                let citizen = DocId::citizen(&v.citizen);
                for c in self.routes_of(doc)? {
                    if let Ok(c) = c.parse() {
                        self.add_route(&citizen, &c)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn routes_of(&self, doc: &DocId) -> Result<Vec<String>, HubError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT center FROM routes WHERE doc_id=?1")?;
        let centers = stmt
            .query_map([doc.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(centers)
    }

    fn all_centers(&self) -> Result<Vec<CenterId>, HubError> {
        let mut stmt = self.conn.prepare_cached("SELECT center FROM centers")?;
        let all: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter_map(|c| c.parse().ok()).collect())
    }
}

/// A case's routing fields, read where a push applies it (see
/// [`DocStore::apply_remote_with`]).
fn case_routes_of(
    id: &DocId,
    doc: &automerge::AutoCommit,
) -> Option<Result<docs::CaseRoutes, docs::DocError>> {
    (id.kind() == DocKind::Case).then(|| docs::read_case_routes(doc))
}

/// The centers a document must reach, from its id, the center that sent it and (for a
/// case) its current state: its owner and processing center, a pickup center, every
/// center it was routed to. The catalog goes to every center.
fn implied_routes(
    doc: &DocId,
    origin: Option<&CenterId>,
    case: Option<&docs::CaseRoutes>,
    all_centers: impl FnOnce() -> Result<Vec<CenterId>, HubError>,
) -> Result<Vec<CenterId>, HubError> {
    let mut out: Vec<CenterId> = origin.into_iter().cloned().collect();
    match doc.kind() {
        DocKind::Catalog => out.extend(all_centers()?),
        DocKind::Case => {
            out.extend(doc.owner_center());
            if let Some(v) = case {
                out.extend(v.center.iter().cloned());
                out.extend(v.pickup.iter().cloned());
                out.extend(v.routed_to.iter().cloned());
            }
        }
        _ => out.extend(doc.owner_center()),
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl HubStore for SqliteHub<'_> {
    fn epoch(&mut self) -> Result<String, HubError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
                r.get(0)
            })?)
    }

    fn register(&mut self, center: &CenterId) -> Result<(), HubError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO centers(center) VALUES (?1)",
            [center.as_str()],
        )?;
        if n == 0 {
            return Ok(());
        }
        let docs: Vec<String> = {
            let mut stmt = self.conn.prepare(
                "SELECT doc_id FROM doc_meta WHERE kind='catalog' OR (kind='staff' AND owner=?1)",
            )?;
            stmt.query_map([center.as_str()], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for d in docs {
            self.add_route(&d.parse()?, center)?;
        }
        Ok(())
    }

    fn push_acked(&mut self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError> {
        Ok(self
            .conn
            .query_row(
                "SELECT acked FROM push_acks WHERE center=?1 AND actor=?2",
                params![center.as_str(), actor],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            .max(0) as u64)
    }

    fn store_push(
        &mut self,
        center: &CenterId,
        actor: &[u8],
        changes: &[(u64, WireChange)],
    ) -> Result<PushOutcome, HubError> {
        let mut acked = self.push_acked(center, actor)?;
        let mut refused = Vec::new();
        // Which changes may be written is decided per document: a change to a case of
        // another center needs a route, and only that case's own changes could add one.
        let mut allowed: HashMap<&DocId, Result<(), String>> = HashMap::new();
        let mut accepted: Vec<WireChange> = Vec::new();
        for (seq, wc) in changes {
            if *seq <= acked {
                continue;
            }
            let verdict = match allowed.get(&wc.doc_id) {
                Some(v) => v.clone(),
                None => {
                    let v = may_write(center, &wc.doc_id, self.routed(&wc.doc_id, center)?);
                    allowed.insert(&wc.doc_id, v.clone());
                    v
                }
            };
            match verdict {
                Ok(()) => accepted.push(wc.clone()),
                Err(reason) => {
                    warn!(center = %center, doc = %wc.doc_id, %reason, "refused pushed change");
                    let hash = automerge::Change::try_from(wc.bytes.as_slice())
                        .map(|c| hex::encode(c.hash().0))
                        .unwrap_or_default();
                    refused.push(Refusal {
                        doc_id: wc.doc_id.to_string(),
                        hash,
                        reason,
                    });
                }
            }
            acked = *seq;
        }
        self.docs.set_origin(Some(center.as_str()));
        let result = (|| -> Result<(), HubError> {
            let (r, read) = self
                .docs
                .apply_remote_with(self.conn, &accepted, case_routes_of)?;
            for (i, (doc, reason)) in r.rejected.into_iter().enumerate() {
                refused.push(Refusal {
                    doc_id: doc,
                    hash: r.rejected_hashes.get(i).cloned().unwrap_or_default(),
                    reason,
                });
            }
            self.route_stored_read(&r.stored, Some(center), read)
        })();
        self.docs.set_origin(None);
        result?;
        self.conn.execute(
            "INSERT INTO push_acks(center, actor, acked) VALUES (?1, ?2, ?3)
             ON CONFLICT(center, actor) DO UPDATE SET acked=max(acked, ?3)",
            params![center.as_str(), actor, acked as i64],
        )?;
        Ok(PushOutcome { acked, refused })
    }

    fn feed_len(&mut self, center: &CenterId) -> Result<u64, HubError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(fseq), 0) FROM feed WHERE center=?1",
            [center.as_str()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    fn read_feed(
        &mut self,
        center: &CenterId,
        cursor: u64,
        max_bytes: usize,
    ) -> Result<FeedBatch, HubError> {
        let conn = self.conn;
        let docs = &mut *self.docs;
        let mut stmt = conn.prepare_cached(
            "SELECT f.fseq, f.snapshot_doc, c.doc_id,
                    CASE WHEN f.snapshot_doc IS NULL THEN c.bytes END
             FROM feed f JOIN changes c ON c.seq=f.change_seq
             WHERE f.center=?1 AND f.fseq>?2 ORDER BY f.fseq LIMIT 10001",
        )?;
        let mut rows = stmt.query(params![center.as_str(), cursor as i64])?;
        let mut out = FeedBatch {
            changes: Vec::new(),
            snapshots: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        let mut total = 0usize;
        let mut count = 0usize;
        while let Some(r) = rows.next()? {
            let snapshot: Option<String> = r.get(1)?;
            let (doc_id, bytes): (DocId, Vec<u8>) = match &snapshot {
                Some(doc) => {
                    let id: DocId = doc.parse()?;
                    let bytes = docs.save(conn, &id)?.unwrap_or_default();
                    (id, bytes)
                }
                None => (r.get::<_, String>(2)?.parse()?, r.get(3)?),
            };
            if count > 0 && (total + bytes.len() > max_bytes || count >= 10_000) {
                out.more = true;
                break;
            }
            total += bytes.len();
            count += 1;
            let wc = WireChange { doc_id, bytes };
            if snapshot.is_some() {
                out.snapshots.push(wc);
            } else {
                out.changes.push(wc);
            }
            out.next_cursor = r.get::<_, i64>(0)? as u64;
        }
        Ok(out)
    }

    fn scope_bucket_hashes(&mut self, center: &CenterId) -> Result<Vec<[u8; 32]>, HubError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
             WHERE r.center=?1",
        )?;
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([center.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(store::bucket_hashes(
            rows.iter().map(|(a, b)| (a.as_str(), b.as_slice())),
        ))
    }

    fn scope_docs(
        &mut self,
        center: &CenterId,
        buckets: &[u16],
    ) -> Result<Vec<(DocId, Vec<ChangeHash>)>, HubError> {
        let mut out = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
             WHERE r.center=?1 AND m.bucket=?2 ORDER BY m.doc_id",
        )?;
        for b in buckets {
            let rows: Vec<(String, Vec<u8>)> = stmt
                .query_map(params![center.as_str(), *b as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            for (id, h) in rows {
                out.push((id.parse()?, store::decode_heads(&h)?));
            }
        }
        Ok(out)
    }

    fn repair_sync(
        &mut self,
        center: &CenterId,
        doc: &DocId,
        msg: &[u8],
    ) -> Result<SyncAnswer, HubError> {
        let routed = self.routed(doc, center)?;
        let may = may_write(center, doc, routed).is_ok();
        let conn = self.conn;
        // A center may also hand back the hub's own changes that a restored hub lost.
        let allow = |changes: &[automerge::Change]| {
            may || changes
                .iter()
                .all(|c| store::is_own_actor(conn, c.actor_id().to_bytes()).unwrap_or(false))
        };
        // The hub keeps no sync state between requests: each reply is computed from the
        // center's message alone (the client carries the conversation).
        let mut state = State::new();
        self.docs.set_origin(Some(center.as_str()));
        let got = self
            .docs
            .receive_sync(self.conn, doc, &mut state, msg, &allow);
        self.docs.set_origin(None);
        let got = got?;
        self.route_stored(&got.stored, Some(center))?;
        let in_scope = self.routed(doc, center)?;
        let reply = if in_scope {
            self.docs.sync_message(self.conn, doc, &mut state)?
        } else {
            None
        };
        let heads = if in_scope {
            self.docs.heads(self.conn, doc)?
        } else {
            Vec::new()
        };
        Ok((reply, heads, got.refused))
    }
}
