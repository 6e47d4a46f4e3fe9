//! SQLite storage of documents as changes plus compacted snapshots, and [`DocStore`].
//!
//! Every change a database ever holds is a row of `changes` (its `raw_bytes()`, stored
//! once, shipped as is); `snapshots` are only a cache that makes loading fast. Node and
//! hub call [`migrate`] inside their own migration transaction and every `DocStore`
//! method inside their own write transaction, so a document's new changes, its
//! projection and a sync cursor commit together.
//!
//! Guarantees: a change is stored once (unique hash); a remote batch never wedges (changes
//! are applied one by one, known hashes skipped, rejects reported); a document in the LRU is
//! checked against the last stored change before use, so a rolled-back transaction never
//! leaves a stale document in memory; each database incarnation mints a fresh actor id.
//!
//! Lanes: every local change is minted into a [`Lane`] fixed by its document's kind —
//! [`Lane::Bulk`] for a center's daily statistics and energy summaries, [`Lane::Essential`]
//! for everything else — and recorded in `changes.lane`. Each lane is pushed after its own
//! contiguous cursor (`peer_cursors.push_acked` / `bulk_acked`), so bulk changes can wait
//! for the primary link without holding back essential ones. Rows stored before lanes
//! existed (schema 1) stay in the essential lane, where they were already being pushed.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use automerge::{ActorId, AutoCommit, Change, ChangeHash, sync::SyncDoc};
use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, params};
use thiserror::Error;

use crate::docs::{DocError, DocId};

mod apply;

/// Current version of this module's schema.
pub const SCHEMA_VERSION: i64 = 2;

/// Storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("document {0} does not exist")]
    NoSuchDoc(String),
    #[error("document {0} already exists")]
    Exists(String),
    #[error("database schema version {found} is newer than this program's {ours}")]
    SchemaTooNew { found: i64, ours: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The tables of schema version 1 (before lanes).
const SCHEMA_V1: &str = "CREATE TABLE changes(
                seq INTEGER PRIMARY KEY,
                doc_id TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                actor BLOB NOT NULL,
                local INTEGER NOT NULL,
                origin TEXT,
                bytes BLOB NOT NULL);
             CREATE INDEX changes_doc ON changes(doc_id, seq);
             CREATE INDEX changes_local ON changes(local, seq);
             CREATE TABLE snapshots(
                doc_id TEXT PRIMARY KEY,
                bytes BLOB NOT NULL,
                heads BLOB NOT NULL,
                upto_seq INTEGER NOT NULL);
             CREATE TABLE doc_meta(
                doc_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                owner TEXT NOT NULL,
                heads BLOB NOT NULL,
                bucket INTEGER NOT NULL,
                last_seq INTEGER NOT NULL);
             CREATE INDEX doc_meta_bucket ON doc_meta(bucket);
             CREATE TABLE peer_cursors(
                peer TEXT PRIMARY KEY,
                epoch TEXT,
                push_acked INTEGER NOT NULL DEFAULT 0,
                pull_cursor INTEGER NOT NULL DEFAULT 0,
                last_sync_ms INTEGER,
                skew_ms INTEGER);
             CREATE TABLE incarnation(
                actor_id BLOB PRIMARY KEY,
                center TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL);
             CREATE TABLE refused_changes(
                hash BLOB PRIMARY KEY,
                doc_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                at_ms INTEGER NOT NULL);
             INSERT INTO sync_schema(version) VALUES (1);";

/// Create or upgrade this module's tables (call inside the caller's migration
/// transaction; idempotent).
pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS sync_schema(version INTEGER NOT NULL);")?;
    let found: Option<i64> = conn
        .query_row("SELECT max(version) FROM sync_schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            ours: SCHEMA_VERSION,
        });
    }
    if found < 1 {
        conn.execute_batch(SCHEMA_V1)?;
    }
    if found < 2 {
        // Lanes. Existing rows stay in the essential lane (they were pushed after the one
        // cursor already); bulk repair is as current as the repair of everything else.
        conn.execute_batch(
            "ALTER TABLE changes ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
             CREATE INDEX changes_lane ON changes(local, lane, seq);
             ALTER TABLE peer_cursors ADD COLUMN bulk_acked INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE peer_cursors ADD COLUMN bulk_epoch TEXT;
             UPDATE peer_cursors SET bulk_epoch = epoch;
             INSERT INTO sync_schema(version) VALUES (2);",
        )?;
    }
    Ok(())
}

/// The lane a local change travels in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Cases, citizens, and everything else a center writes: moves on any uplink.
    Essential,
    /// A center's daily statistics and energy summaries: wait for the primary link when
    /// the session is metered.
    Bulk,
}

impl Lane {
    /// Both lanes, in push order.
    pub const ALL: [Lane; 2] = [Lane::Essential, Lane::Bulk];

    /// The lane of a document's local changes.
    pub fn of(doc: &DocId) -> Lane {
        match doc.kind() {
            crate::docs::DocKind::Stats | crate::docs::DocKind::Energy => Lane::Bulk,
            _ => Lane::Essential,
        }
    }

    /// The value stored in `changes.lane`.
    pub fn as_i64(self) -> i64 {
        match self {
            Lane::Essential => 0,
            Lane::Bulk => 1,
        }
    }

    /// A short name for logs and panels.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Essential => "essential",
            Lane::Bulk => "bulk",
        }
    }

    /// The key under which the hub acknowledges this lane's pushes from an incarnation
    /// `actor` (the `actor` of a `push` request): the actor itself for the essential
    /// lane, the actor followed by `#bulk` for the bulk lane. The hub's per-(center,
    /// actor) acknowledgement then works per lane unchanged.
    pub fn ack_key(self, actor: &[u8]) -> Vec<u8> {
        let mut k = actor.to_vec();
        if self == Lane::Bulk {
            k.extend_from_slice(b"#bulk");
        }
        k
    }
}

/// The actor id of this database incarnation: created on first use as the center id's
/// bytes, `/`, and 16 random bytes, and recorded. A restored or replaced database that has
/// no row mints a new one, so its changes never reuse an (actor, seq) pair.
pub fn incarnation(conn: &Connection, center: &str, now_ms: i64) -> Result<ActorId> {
    let existing: Option<Vec<u8>> = conn
        .query_row(
            "SELECT actor_id FROM incarnation ORDER BY created_at_ms DESC, rowid DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(a) = existing {
        return Ok(ActorId::from(a));
    }
    new_incarnation(conn, center, now_ms)
}

/// Whether `actor` is one of this database's own incarnations.
pub fn is_own_actor(conn: &Connection, actor: &[u8]) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM incarnation WHERE actor_id=?1",
            [actor],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Record and return a fresh actor id (call when the database was restored from a copy).
pub fn new_incarnation(conn: &Connection, center: &str, now_ms: i64) -> Result<ActorId> {
    let mut bytes = center.as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(&rand::random::<[u8; 16]>());
    conn.execute(
        "INSERT INTO incarnation(actor_id, center, created_at_ms) VALUES (?1, ?2, ?3)",
        params![bytes, center, now_ms],
    )?;
    // A new incarnation knows nothing the hub acknowledged to the old one: forget the
    // hub's epoch so the next session repairs.
    conn.execute(
        "UPDATE peer_cursors SET epoch=NULL, push_acked=0, bulk_epoch=NULL, bulk_acked=0",
        [],
    )?;
    Ok(ActorId::from(bytes))
}

/// Highest change sequence in this database (0 when empty).
pub fn max_seq(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get::<_, i64>(0)
        })?
        .max(0) as u64)
}

/// Highest sequence of a local change in `lane` (0 when none).
pub fn max_lane_seq(conn: &Connection, lane: Lane) -> Result<u64> {
    Ok(conn
        .query_row(
            "SELECT coalesce(max(seq), 0) FROM changes WHERE local=1 AND lane=?1",
            [lane.as_i64()],
            |r| r.get::<_, i64>(0),
        )?
        .max(0) as u64)
}

/// A sync peer's cursors as stored (`peer` is `hub` at a center).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCursor {
    /// The peer's epoch the essential documents were last repaired against.
    pub epoch: Option<String>,
    /// Essential lane: every local change up to this sequence is acknowledged.
    pub push_acked: u64,
    pub pull_cursor: u64,
    pub last_sync_ms: Option<i64>,
    pub skew_ms: Option<i64>,
    /// Bulk lane: every local bulk change up to this sequence is acknowledged.
    pub bulk_acked: u64,
    /// The peer's epoch the bulk documents were last repaired against (lags `epoch` while
    /// sessions are metered).
    pub bulk_epoch: Option<String>,
}

impl PeerCursor {
    /// The acknowledged sequence of a lane.
    pub fn acked(&self, lane: Lane) -> u64 {
        match lane {
            Lane::Essential => self.push_acked,
            Lane::Bulk => self.bulk_acked,
        }
    }

    /// Set the acknowledged sequence of a lane.
    pub fn set_acked(&mut self, lane: Lane, acked: u64) {
        match lane {
            Lane::Essential => self.push_acked = acked,
            Lane::Bulk => self.bulk_acked = acked,
        }
    }
}

/// Read a peer's cursors (defaults when never synced).
pub fn peer_cursor(conn: &Connection, peer: &str) -> Result<PeerCursor> {
    Ok(conn
        .query_row(
            "SELECT epoch, push_acked, pull_cursor, last_sync_ms, skew_ms, bulk_acked, bulk_epoch
             FROM peer_cursors WHERE peer=?1",
            [peer],
            |r| {
                Ok(PeerCursor {
                    epoch: r.get(0)?,
                    push_acked: r.get::<_, i64>(1)?.max(0) as u64,
                    pull_cursor: r.get::<_, i64>(2)?.max(0) as u64,
                    last_sync_ms: r.get(3)?,
                    skew_ms: r.get(4)?,
                    bulk_acked: r.get::<_, i64>(5)?.max(0) as u64,
                    bulk_epoch: r.get(6)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Write a peer's cursors.
pub fn set_peer_cursor(conn: &Connection, peer: &str, c: &PeerCursor) -> Result<()> {
    conn.execute(
        "INSERT INTO peer_cursors(peer, epoch, push_acked, pull_cursor, last_sync_ms, skew_ms,
            bulk_acked, bulk_epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(peer) DO UPDATE SET epoch=?2, push_acked=?3, pull_cursor=?4,
            last_sync_ms=?5, skew_ms=?6, bulk_acked=?7, bulk_epoch=?8",
        params![
            peer,
            c.epoch,
            c.push_acked as i64,
            c.pull_cursor as i64,
            c.last_sync_ms,
            c.skew_ms,
            c.bulk_acked as i64,
            c.bulk_epoch
        ],
    )?;
    Ok(())
}

/// Number of repair buckets (document ids hash into one of them).
pub const BUCKETS: u16 = 256;

/// The repair bucket of a document id.
pub fn bucket_of(doc: &str) -> u16 {
    let h = blake3::hash(doc.as_bytes());
    u16::from(h.as_bytes()[0]) % BUCKETS
}

/// Heads as stored: sorted, concatenated 32-byte hashes.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut hs: Vec<&ChangeHash> = heads.iter().collect();
    hs.sort();
    hs.into_iter().flat_map(|h| h.0).collect()
}

/// Inverse of [`encode_heads`].
pub fn decode_heads(b: &[u8]) -> Result<Vec<ChangeHash>> {
    if !b.len().is_multiple_of(32) {
        return Err(StoreError::Corrupt("heads length".into()));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut a = [0u8; 32];
            a.copy_from_slice(c);
            ChangeHash(a)
        })
        .collect())
}

/// A change as it moves: its document and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireChange {
    pub doc_id: DocId,
    pub bytes: Vec<u8>,
}

/// A change just stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    pub seq: u64,
    pub doc_id: DocId,
    pub hash: ChangeHash,
}

/// What applying remote changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Newly stored changes, in order.
    pub stored: Vec<StoredChange>,
    /// Changes already known (same hash).
    pub duplicates: usize,
    /// Changes refused: (doc, reason). They are not stored.
    pub rejected: Vec<(String, String)>,
    /// The hex hash of each refused change, in the order of `rejected` (empty when the
    /// change could not be decoded).
    pub rejected_hashes: Vec<String>,
    /// Stored changes whose dependencies have not arrived by the end of the batch (kept;
    /// they apply when their dependencies come).
    pub pending: usize,
    /// Documents whose state changed (re-project these).
    pub touched: Vec<DocId>,
}

/// A document held for the length of one [`DocStore::apply_remote`] call: the document,
/// the hash of its newest stored row, the highest seq stored for it in the call (0: none
/// yet) and the hashes stored for it in the call.
type OpenDoc = (AutoCommit, Option<Vec<u8>>, u64, Vec<ChangeHash>);

/// Those of `hashes`, just applied to `doc`, that still wait for a dependency.
fn still_pending(doc: &mut AutoCommit, hashes: &[ChangeHash]) -> Vec<ChangeHash> {
    // Only a document with a missing dependency holds a change back.
    if doc.get_missing_deps(&[]).is_empty() {
        return Vec::new();
    }
    let heads = doc.get_heads();
    hashes
        .iter()
        .filter(|h| !heads.contains(h) && doc.get_change_meta_by_hash(h).is_none())
        .copied()
        .collect()
}

struct Cached {
    doc: AutoCommit,
    /// Hash of the newest `changes` row of the document when it was loaded/updated;
    /// `None` for a document with no rows.
    last: Option<Vec<u8>>,
}

/// Documents loaded on demand behind a small LRU, edited locally and merged remotely.
pub struct DocStore {
    actor: ActorId,
    origin: Option<String>,
    cache: LruCache<DocId, Cached>,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("actor", &self.actor)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// A document's stored rows, read by the thread that owns the connection: its snapshot
/// (if any) and the changes stored after it, in order.
struct StoredDoc {
    snapshot: Option<Vec<u8>>,
    changes: Vec<Vec<u8>>,
}

/// A document's rows; without its snapshot, every change.
fn read_stored(conn: &Connection, id: &DocId, with_snapshot: bool) -> Result<StoredDoc> {
    let snap: Option<(Vec<u8>, i64)> = if with_snapshot {
        conn.prepare_cached("SELECT bytes, upto_seq FROM snapshots WHERE doc_id=?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
    } else {
        None
    };
    let (snapshot, after) = match snap {
        Some((bytes, upto)) => (Some(bytes), upto),
        None => (None, 0),
    };
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM changes WHERE doc_id=?1 AND seq>?2 ORDER BY seq")?;
    let changes = stmt
        .query_map(params![id.as_str(), after], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<Result<_, _>>()?;
    Ok(StoredDoc { snapshot, changes })
}

/// Build a document from its stored rows (no database needed: any thread may do it).
/// `None` when the snapshot does not load: a snapshot is only a cache, so the caller
/// builds again from every change (`read_stored(.., false)`).
fn build_doc(id: &DocId, stored: StoredDoc) -> Result<Option<AutoCommit>> {
    let mut doc = match stored.snapshot.map(|b| AutoCommit::load(&b)) {
        Some(Ok(d)) => d,
        Some(Err(_)) => return Ok(None),
        None => AutoCommit::new(),
    };
    let mut changes = Vec::with_capacity(stored.changes.len());
    for b in &stored.changes {
        let c = Change::try_from(b.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("stored change of {id}: {e}")))?;
        changes.push(c);
    }
    if doc.apply_changes(changes.clone()).is_err() {
        for c in changes {
            // One bad change must not hide the others.
            let _ = doc.apply_changes([c]);
        }
    }
    Ok(Some(doc))
}

impl DocStore {
    /// A store minting changes as `actor` (see [`incarnation`]), keeping up to `capacity`
    /// documents in memory.
    pub fn new(actor: ActorId, capacity: usize) -> DocStore {
        DocStore {
            actor,
            origin: None,
            cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// This store's actor id.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Forget every cached document (e.g. after restoring the database file).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    fn last_hash(conn: &Connection, id: &DocId) -> Result<Option<Vec<u8>>> {
        Ok(conn
            .prepare_cached("SELECT hash FROM changes WHERE doc_id=?1 ORDER BY seq DESC LIMIT 1")?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()?)
    }

    /// Take a document out of the cache (loading it if needed) to mutate it; the caller
    /// puts it back on success. On error it is simply dropped and reloaded next time.
    fn take(&mut self, conn: &Connection, id: &DocId) -> Result<AutoCommit> {
        Ok(self.take_with_last(conn, id)?.0)
    }

    /// [`Self::take`], with the hash of the document's newest stored change.
    fn take_with_last(
        &mut self,
        conn: &Connection,
        id: &DocId,
    ) -> Result<(AutoCommit, Option<Vec<u8>>)> {
        self.load(conn, id)?;
        Ok(match self.cache.pop(id) {
            Some(c) => (c.doc, c.last),
            None => (AutoCommit::new().with_actor(self.actor.clone()), None),
        })
    }

    /// Load (or take from the cache, after checking it is current) a document; `None`
    /// if it has no changes.
    fn load(&mut self, conn: &Connection, id: &DocId) -> Result<Option<&mut Cached>> {
        let last = Self::last_hash(conn, id)?;
        let fresh = matches!(self.cache.peek(id), Some(c) if c.last == last);
        if !fresh {
            self.cache.pop(id);
            if last.is_none() {
                return Ok(None);
            }
            let doc = self.load_from_db(conn, id)?;
            self.cache.put(id.clone(), Cached { doc, last });
        }
        Ok(self.cache.get_mut(id))
    }

    fn load_from_db(&self, conn: &Connection, id: &DocId) -> Result<AutoCommit> {
        let mut doc = match build_doc(id, read_stored(conn, id, true)?)? {
            Some(d) => d,
            None => build_doc(id, read_stored(conn, id, false)?)?.unwrap_or_default(),
        };
        doc.set_actor(self.actor.clone());
        Ok(doc)
    }

    fn insert_change(
        &self,
        conn: &Connection,
        id: &DocId,
        c: &Change,
        local: bool,
    ) -> Result<Option<StoredChange>> {
        let hash = c.hash();
        Ok(self
            .insert_row(
                conn,
                id,
                &hash,
                c.actor_id().to_bytes(),
                local,
                c.raw_bytes(),
            )?
            .map(|seq| StoredChange {
                seq,
                doc_id: id.clone(),
                hash,
            }))
    }

    /// Store one change row; its seq, or `None` when the hash is already stored.
    fn insert_row(
        &self,
        conn: &Connection,
        id: &DocId,
        hash: &ChangeHash,
        actor: &[u8],
        local: bool,
        bytes: &[u8],
    ) -> Result<Option<u64>> {
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO changes(doc_id, hash, actor, local, origin, bytes, lane)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id.as_str(),
                &hash.0[..],
                actor,
                local,
                self.origin,
                bytes,
                Lane::of(id).as_i64()
            ])?;
        Ok((n > 0).then(|| conn.last_insert_rowid() as u64))
    }

    fn update_meta(conn: &Connection, id: &DocId, doc: &mut AutoCommit, seq: u64) -> Result<()> {
        Self::update_meta_heads(conn, id, &doc.get_heads(), seq)
    }

    fn update_meta_heads(
        conn: &Connection,
        id: &DocId,
        heads: &[ChangeHash],
        seq: u64,
    ) -> Result<()> {
        let owner = match id.owner() {
            crate::docs::Owner::Hub => "hub".to_string(),
            crate::docs::Owner::Shared => String::new(),
            crate::docs::Owner::Center(c) => c.as_str().to_string(),
        };
        conn.prepare_cached(
            "INSERT INTO doc_meta(doc_id, kind, owner, heads, bucket, last_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(doc_id) DO UPDATE SET heads=?4, last_seq=max(last_seq, ?6)",
        )?
        .execute(params![
            id.as_str(),
            id.kind().as_str(),
            owner,
            encode_heads(heads),
            bucket_of(id.as_str()),
            seq as i64
        ])?;
        Ok(())
    }

    /// Create a document with `init` and store its first change. Fails if it exists.
    pub fn create<R>(
        &mut self,
        conn: &Connection,
        id: &DocId,
        init: impl FnOnce(&mut AutoCommit) -> Result<R, DocError>,
    ) -> Result<(R, StoredChange)> {
        if self.load(conn, id)?.is_some() {
            return Err(StoreError::Exists(id.to_string()));
        }
        let mut doc = AutoCommit::new().with_actor(self.actor.clone());
        let r = init(&mut doc)?;
        let stored = self
            .commit_local(conn, id, &mut doc)?
            .ok_or_else(|| StoreError::Corrupt("create made no change".into()))?;
        Ok((r, stored))
    }

    /// Edit a document (creating it if absent) with `f`; stores and returns the new change
    /// (`None` if `f` changed nothing).
    pub fn edit<R>(
        &mut self,
        conn: &Connection,
        id: &DocId,
        f: impl FnOnce(&mut AutoCommit) -> Result<R, DocError>,
    ) -> Result<(R, Option<StoredChange>)> {
        let mut doc = self.take(conn, id)?;
        doc.set_actor(self.actor.clone());
        let r = f(&mut doc)?;
        let stored = self.commit_local(conn, id, &mut doc)?;
        Ok((r, stored))
    }

    fn commit_local(
        &mut self,
        conn: &Connection,
        id: &DocId,
        doc: &mut AutoCommit,
    ) -> Result<Option<StoredChange>> {
        let change = match doc.commit() {
            Some(_) => doc.get_last_local_change(),
            None => None,
        };
        let Some(change) = change else {
            let last = Self::last_hash(conn, id)?;
            let doc = std::mem::take(doc);
            self.cache.put(id.clone(), Cached { doc, last });
            return Ok(None);
        };
        let stored = self.insert_change(conn, id, &change, true)?;
        if let Some(s) = &stored {
            Self::update_meta(conn, id, doc, s.seq)?;
        }
        let doc = std::mem::take(doc);
        self.cache.put(
            id.clone(),
            Cached {
                doc,
                last: Some(change.hash().0.to_vec()),
            },
        );
        Ok(stored)
    }

    /// Run `f` on a document, if it exists.
    pub fn read<R>(
        &mut self,
        conn: &Connection,
        id: &DocId,
        f: impl FnOnce(&AutoCommit) -> R,
    ) -> Result<Option<R>> {
        Ok(self.load(conn, id)?.map(|c| f(&c.doc)))
    }

    /// A document's heads (empty if it does not exist).
    pub fn heads(&mut self, conn: &Connection, id: &DocId) -> Result<Vec<ChangeHash>> {
        Ok(self
            .load(conn, id)?
            .map(|c| c.doc.get_heads())
            .unwrap_or_default())
    }

    /// Set the `origin` recorded with changes stored from now on (the hub records the
    /// pushing center).
    pub fn set_origin(&mut self, origin: Option<&str>) {
        self.origin = origin.map(str::to_string);
    }

    /// Apply remote changes in order: known hashes are skipped, undecodable or rejected
    /// changes are reported (never stored).
    ///
    /// The documents a call touches are loaded once and held for the whole call (a push
    /// interleaves many documents, more than the LRU keeps), and each document's
    /// `doc_meta` row is written once, after its last change. A batch of
    /// [`apply::PARALLEL_MIN`] changes or more is applied to its documents on a second
    /// thread while this one stores the rows (see [`apply`]).
    pub fn apply_remote(
        &mut self,
        conn: &Connection,
        changes: &[WireChange],
    ) -> Result<ApplyReport> {
        Ok(self.apply_remote_with(conn, changes, |_, _| None::<()>)?.0)
    }

    /// [`Self::apply_remote`], also reading each document that stored a change with
    /// `inspect` after its last one (on the thread that applied it). A document missing
    /// from the map was not inspected: read it yourself.
    pub fn apply_remote_with<R: Send>(
        &mut self,
        conn: &Connection,
        changes: &[WireChange],
        inspect: fn(&DocId, &AutoCommit) -> Option<R>,
    ) -> Result<(ApplyReport, HashMap<DocId, R>)> {
        if changes.len() >= apply::PARALLEL_MIN
            && let Some(done) = self.apply_parallel(conn, changes, inspect)?
        {
            return Ok(done);
        }
        let report = self.apply_serial(conn, changes)?;
        let mut seen = HashMap::new();
        for id in &report.touched {
            if let Some(c) = self.cache.get_mut(id)
                && let Some(r) = inspect(id, &c.doc)
            {
                seen.insert(id.clone(), r);
            }
        }
        Ok((report, seen))
    }

    /// [`Self::apply_remote`] change by change on this thread: known hashes are skipped
    /// before the document is touched, and a change automerge refuses leaves its
    /// document as it was before it.
    fn apply_serial(&mut self, conn: &Connection, changes: &[WireChange]) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        // Documents being worked on, with the hash of their newest stored row and the
        // highest seq stored for them in this call (0: none).
        let mut open: HashMap<DocId, Box<OpenDoc>> =
            HashMap::with_capacity(changes.len().min(4096));
        let mut touched: HashSet<DocId> = HashSet::with_capacity(changes.len().min(4096));
        report.stored.reserve(changes.len());
        for wc in changes {
            let change = match Change::try_from(wc.bytes.as_slice()) {
                Ok(c) => c,
                Err(e) => {
                    report
                        .rejected
                        .push((wc.doc_id.to_string(), format!("undecodable change: {e}")));
                    report.rejected_hashes.push(String::new());
                    continue;
                }
            };
            let hash = change.hash();
            let known: bool = conn
                .prepare_cached("SELECT 1 FROM changes WHERE hash=?1")?
                .query_row([&hash.0[..]], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if known {
                report.duplicates += 1;
                continue;
            }
            if !open.contains_key(&wc.doc_id) {
                let (doc, last) = self.take_with_last(conn, &wc.doc_id)?;
                open.insert(wc.doc_id.clone(), Box::new((doc, last, 0, Vec::new())));
            }
            let Some((doc, last, top, hashes)) = open.get_mut(&wc.doc_id).map(|b| &mut **b) else {
                continue;
            };
            if let Err(e) = doc.apply_changes([change.clone()]) {
                report
                    .rejected
                    .push((wc.doc_id.to_string(), format!("automerge refused: {e}")));
                report.rejected_hashes.push(hex::encode(hash.0));
                // The document may be half-changed: finish what it stored so far and
                // reload it from the database if it comes again.
                if let Some((mut doc, _, top, hashes)) = open.remove(&wc.doc_id).map(|b| *b)
                    && top > 0
                {
                    report.pending += still_pending(&mut doc, &hashes).len();
                    Self::update_meta(conn, &wc.doc_id, &mut doc, top)?;
                }
                continue;
            }
            let Some(stored) = self.insert_change(conn, &wc.doc_id, &change, false)? else {
                report.duplicates += 1;
                continue;
            };
            *last = Some(hash.0.to_vec());
            *top = stored.seq;
            hashes.push(hash);
            if touched.insert(wc.doc_id.clone()) {
                report.touched.push(wc.doc_id.clone());
            }
            report.stored.push(stored);
        }
        for (id, open_doc) in open {
            let (mut doc, last, top, hashes) = *open_doc;
            if top > 0 {
                report.pending += still_pending(&mut doc, &hashes).len();
                Self::update_meta(conn, &id, &mut doc, top)?;
            }
            doc.set_actor(self.actor.clone());
            self.cache.put(id, Cached { doc, last });
        }
        Ok(report)
    }

    /// A compacted `save()` of a document, if it exists (sent when a document newly
    /// enters a center's scope: smaller than its history).
    pub fn save(&mut self, conn: &Connection, id: &DocId) -> Result<Option<Vec<u8>>> {
        Ok(self.load(conn, id)?.map(|c| c.doc.save()))
    }

    /// Take a document snapshot from a peer: it is loaded (which verifies its heads) and
    /// its changes are stored one by one like remote changes, so every change still has
    /// its row.
    pub fn apply_snapshot(&mut self, conn: &Connection, wc: &WireChange) -> Result<ApplyReport> {
        let mut doc = match AutoCommit::load(&wc.bytes) {
            Ok(d) => d,
            Err(e) => {
                return Ok(ApplyReport {
                    rejected: vec![(wc.doc_id.to_string(), format!("bad snapshot: {e}"))],
                    rejected_hashes: vec![String::new()],
                    ..ApplyReport::default()
                });
            }
        };
        let changes: Vec<WireChange> = doc
            .get_changes(&[])
            .into_iter()
            .map(|c| WireChange {
                doc_id: wc.doc_id.clone(),
                bytes: c.raw_bytes().to_vec(),
            })
            .collect();
        self.apply_remote(conn, &changes)
    }

    /// Generate an automerge sync message for a document (an empty document when absent).
    pub fn sync_message(
        &mut self,
        conn: &Connection,
        id: &DocId,
        state: &mut automerge::sync::State,
    ) -> Result<Option<Vec<u8>>> {
        let msg = match self.load(conn, id)? {
            Some(c) => c.doc.sync().generate_sync_message(state),
            None => AutoCommit::new().sync().generate_sync_message(state),
        };
        Ok(msg.map(|m| m.encode()))
    }

    /// Receive an automerge sync message for a document; every change it brings is
    /// stored as a row (so it ships and survives like any other). When `allow` returns
    /// false for the new changes, they are all dropped and reported instead.
    pub fn receive_sync(
        &mut self,
        conn: &Connection,
        id: &DocId,
        state: &mut automerge::sync::State,
        msg: &[u8],
        allow: &dyn Fn(&[Change]) -> bool,
    ) -> Result<SyncReceive> {
        let msg = automerge::sync::Message::decode(msg)
            .map_err(|e| StoreError::Corrupt(format!("sync message for {id}: {e}")))?;
        let mut doc = self.take(conn, id)?;
        let before = doc.get_heads();
        doc.sync().receive_sync_message(state, msg)?;
        let new: Vec<Change> = doc.get_changes(&before).into_iter().collect();
        let mut out = SyncReceive::default();
        if new.is_empty() {
            let last = Self::last_hash(conn, id)?;
            self.cache.put(id.clone(), Cached { doc, last });
            return Ok(out);
        }
        if !allow(&new) {
            out.refused = new.len();
            return Ok(out);
        }
        let mut last = None;
        for c in &new {
            if let Some(s) = self.insert_change(conn, id, c, false)? {
                last = Some(c.hash().0.to_vec());
                out.stored.push(s);
            }
        }
        if let Some(s) = out.stored.last() {
            Self::update_meta(conn, id, &mut doc, s.seq)?;
        }
        doc.set_actor(self.actor.clone());
        match last {
            Some(last) => {
                self.cache.put(
                    id.clone(),
                    Cached {
                        doc,
                        last: Some(last),
                    },
                );
            }
            None => {
                self.cache.pop(id);
            }
        }
        Ok(out)
    }

    /// Write a compacted snapshot (`save()`) of a document; changes are kept for shipping.
    pub fn compact(&mut self, conn: &Connection, id: &DocId) -> Result<()> {
        let upto: Option<i64> = conn.query_row(
            "SELECT max(seq) FROM changes WHERE doc_id=?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        let Some(upto) = upto else {
            return Ok(());
        };
        let Some(c) = self.load(conn, id)? else {
            return Ok(());
        };
        let bytes = c.doc.save();
        let heads = encode_heads(&c.doc.get_heads());
        conn.execute(
            "INSERT INTO snapshots(doc_id, bytes, heads, upto_seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(doc_id) DO UPDATE SET bytes=?2, heads=?3, upto_seq=?4",
            params![id.as_str(), bytes, heads, upto],
        )?;
        Ok(())
    }

    /// Compact every document with at least `min_new` changes since its snapshot; returns
    /// how many were compacted. Call periodically (e.g. nightly) from the writer.
    pub fn compact_due(&mut self, conn: &Connection, min_new: u64, limit: usize) -> Result<usize> {
        let ids: Vec<String> = {
            let mut stmt = conn.prepare(
                "SELECT c.doc_id FROM changes c LEFT JOIN snapshots s ON s.doc_id=c.doc_id
                 WHERE c.seq > coalesce(s.upto_seq, 0)
                 GROUP BY c.doc_id HAVING count(*) >= ?1 LIMIT ?2",
            )?;
            stmt.query_map(params![min_new as i64, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for id in &ids {
            let id: DocId = id.parse()?;
            self.compact(conn, &id)?;
        }
        Ok(ids.len())
    }
}

/// What receiving a sync message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReceive {
    pub stored: Vec<StoredChange>,
    /// Changes dropped because the sender may not write the document.
    pub refused: usize,
}

/// Local changes of every lane after `after_seq`, in order, until `max_bytes` of change
/// bytes (at least one change if any). Returns (seq, change) pairs.
pub fn local_changes_after(
    conn: &Connection,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    changes_after(conn, None, after_seq, max_bytes)
}

/// Local changes of `lane` after `after_seq`, in order, until `max_bytes` of change bytes
/// (at least one change if any). Returns (seq, change) pairs.
pub fn lane_changes_after(
    conn: &Connection,
    lane: Lane,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    changes_after(conn, Some(lane), after_seq, max_bytes)
}

/// Local changes of `lane` not yet acknowledged by `peer`: (documents, changes).
pub fn lane_backlog(conn: &Connection, peer: &str, lane: Lane) -> Result<(u64, u64)> {
    let after = peer_cursor(conn, peer)?.acked(lane);
    Ok(conn.query_row(
        "SELECT count(DISTINCT doc_id), count(*) FROM changes WHERE local=1 AND lane=?1 AND seq>?2",
        params![lane.as_i64(), after as i64],
        |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        },
    )?)
}

fn changes_after(
    conn: &Connection,
    lane: Option<Lane>,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    let mut stmt;
    let mut rows = match lane {
        None => {
            stmt = conn.prepare_cached(
                "SELECT seq, doc_id, bytes FROM changes WHERE local=1 AND seq>?1
                 ORDER BY seq LIMIT 10000",
            )?;
            stmt.query([after_seq as i64])?
        }
        Some(lane) => {
            stmt = conn.prepare_cached(
                "SELECT seq, doc_id, bytes FROM changes WHERE local=1 AND lane=?2 AND seq>?1
                 ORDER BY seq LIMIT 10000",
            )?;
            stmt.query(params![after_seq as i64, lane.as_i64()])?
        }
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(2)?;
        if !out.is_empty() && total + bytes.len() > max_bytes {
            break;
        }
        total += bytes.len();
        let doc: String = r.get(1)?;
        out.push((
            r.get::<_, i64>(0)? as u64,
            WireChange {
                doc_id: doc.parse()?,
                bytes,
            },
        ));
    }
    Ok(out)
}

/// Every document's id and heads in the given repair buckets.
pub fn docs_in_buckets(
    conn: &Connection,
    buckets: &[u16],
) -> Result<Vec<(DocId, Vec<ChangeHash>)>> {
    let mut out = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT doc_id, heads FROM doc_meta WHERE bucket=?1 ORDER BY doc_id")?;
    for b in buckets {
        let rows = stmt.query_map([*b as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, heads) = row?;
            out.push((id.parse()?, decode_heads(&heads)?));
        }
    }
    Ok(out)
}

/// Fold (doc id, heads) pairs, grouped by bucket, into one hash per bucket. Both sides
/// compute this over the documents they hold (the hub over a center's scope).
pub fn bucket_hashes<'a>(docs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<[u8; 32]> {
    let mut sorted: Vec<(u16, &str, &[u8])> = docs
        .into_iter()
        .map(|(id, h)| (bucket_of(id), id, h))
        .collect();
    sorted.sort();
    let mut hashers: Vec<blake3::Hasher> = (0..BUCKETS).map(|_| blake3::Hasher::new()).collect();
    for (b, id, heads) in sorted {
        let h = &mut hashers[b as usize];
        h.update(&(id.len() as u32).to_le_bytes());
        h.update(id.as_bytes());
        h.update(&(heads.len() as u32).to_le_bytes());
        h.update(heads);
    }
    hashers
        .into_iter()
        .map(|h| *h.finalize().as_bytes())
        .collect()
}

/// Bucket hashes over every document of this database.
pub fn local_bucket_hashes(conn: &Connection) -> Result<Vec<[u8; 32]>> {
    let mut stmt = conn.prepare_cached("SELECT doc_id, heads FROM doc_meta")?;
    let rows: Vec<(String, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(bucket_hashes(
        rows.iter().map(|(a, b)| (a.as_str(), b.as_slice())),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::docs;

    pub fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        let tx = c.transaction().unwrap();
        migrate(&tx).unwrap();
        migrate(&tx).unwrap();
        tx.commit().unwrap();
        c
    }

    #[test]
    fn schema_1_database_upgrades_with_its_changes_in_the_essential_lane() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE sync_schema(version INTEGER NOT NULL);")
            .unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        c.execute(
            "INSERT INTO changes(doc_id, hash, actor, local, bytes) VALUES ('stats:midan:2026-01-01', x'01', x'02', 1, x'03')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO peer_cursors(peer, epoch, push_acked) VALUES ('hub', 'e1', 1)",
            [],
        )
        .unwrap();
        migrate(&c).unwrap();
        assert_eq!(max_lane_seq(&c, Lane::Essential).unwrap(), 1);
        assert_eq!(max_lane_seq(&c, Lane::Bulk).unwrap(), 0);
        let cur = peer_cursor(&c, "hub").unwrap();
        assert_eq!((cur.push_acked, cur.bulk_acked), (1, 0));
        assert_eq!(cur.bulk_epoch.as_deref(), Some("e1"));
        assert_eq!(lane_backlog(&c, "hub", Lane::Essential).unwrap(), (0, 0));
        // A newer schema than ours is refused.
        c.execute("INSERT INTO sync_schema(version) VALUES (99)", [])
            .unwrap();
        assert!(matches!(migrate(&c), Err(StoreError::SchemaTooNew { .. })));
    }

    #[test]
    fn local_changes_are_laned_by_document_kind() {
        let c = db();
        let center: crate::model::ids::CenterId = "midan".parse().unwrap();
        let day = jiff::civil::date(2026, 1, 1);
        let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 4);
        let e = DocId::energy(&center, day);
        s.edit(&c, &e, |d| {
            docs::create_metrics(d, docs::DocKind::Energy, &center, day)
        })
        .unwrap();
        let nc = docs::tests::new_case("midan", 1);
        let id = DocId::case(nc.center.as_ref(), &nc.case_no);
        s.create(&c, &id, |d| docs::create_case(d, &nc)).unwrap();
        let bulk = lane_changes_after(&c, Lane::Bulk, 0, usize::MAX).unwrap();
        let ess = lane_changes_after(&c, Lane::Essential, 0, usize::MAX).unwrap();
        assert_eq!((bulk.len(), ess.len()), (1, 1));
        assert_eq!(bulk[0].1.doc_id, e);
        assert_eq!(ess[0].1.doc_id, id);
        assert_eq!(lane_backlog(&c, "hub", Lane::Bulk).unwrap(), (1, 1));
        assert_eq!(Lane::Bulk.ack_key(b"midan/x"), b"midan/x#bulk".to_vec());
        assert_eq!(Lane::Essential.ack_key(b"midan/x"), b"midan/x".to_vec());
    }

    #[test]
    fn incarnation_is_stable_and_fresh_per_database() {
        let a = db();
        let b = db();
        let x = incarnation(&a, "midan", 1).unwrap();
        assert_eq!(incarnation(&a, "midan", 2).unwrap(), x);
        assert_ne!(incarnation(&b, "midan", 1).unwrap(), x);
        assert!(x.to_bytes().starts_with(b"midan/"));
    }

    #[test]
    fn edit_store_reload_and_remote_apply_dedupes() {
        let a = db();
        let b = db();
        let mut sa = DocStore::new(incarnation(&a, "midan", 0).unwrap(), 4);
        let mut sb = DocStore::new(incarnation(&b, "qanawat", 0).unwrap(), 4);
        let nc = docs::tests::new_case("midan", 1);
        let id = DocId::case(nc.center.as_ref(), &nc.case_no);
        sa.create(&a, &id, |d| docs::create_case(d, &nc)).unwrap();
        assert!(matches!(
            sa.create(&a, &id, |d| docs::create_case(d, &nc)),
            Err(StoreError::Exists(_))
        ));
        let (_, ch) = sa
            .edit(&a, &id, |d| {
                docs::append_case_event(
                    d,
                    &docs::tests::event(
                        crate::model::case::CaseEventKind::Started,
                        "x",
                        "0000000000009.00000.a",
                    ),
                )
            })
            .unwrap();
        assert!(ch.is_some());
        let local = local_changes_after(&a, 0, 1 << 20).unwrap();
        assert_eq!(local.len(), 2);
        let wire: Vec<WireChange> = local.into_iter().map(|(_, w)| w).collect();
        // Reversed order: the second waits for the first, both end up applied.
        let rev: Vec<WireChange> = wire.iter().rev().cloned().collect();
        let r = sb.apply_remote(&b, &rev).unwrap();
        assert_eq!(r.stored.len(), 2);
        assert_eq!(
            r.pending, 0,
            "the first change's dependency came in the same batch"
        );
        // The second alone waits for the first.
        let c = db();
        let mut sc = DocStore::new(incarnation(&c, "c", 0).unwrap(), 4);
        assert_eq!(sc.apply_remote(&c, &rev[..1]).unwrap().pending, 1);
        assert!(sc.heads(&c, &id).unwrap().is_empty());
        assert_eq!(sc.apply_remote(&c, &rev[1..]).unwrap().pending, 0);
        assert_eq!(sc.heads(&c, &id).unwrap(), sa.heads(&a, &id).unwrap());
        let again = sb.apply_remote(&b, &wire).unwrap();
        assert_eq!(again.duplicates, 2);
        assert!(again.stored.is_empty());
        assert_eq!(sa.heads(&a, &id).unwrap(), sb.heads(&b, &id).unwrap());
        let va = sa.read(&a, &id, docs::read_case).unwrap().unwrap().unwrap();
        let vb = sb.read(&b, &id, docs::read_case).unwrap().unwrap().unwrap();
        assert_eq!(va, vb);
        // A fresh store (cold cache) over the same database, after compaction.
        sb.compact(&b, &id).unwrap();
        let mut cold = DocStore::new(incarnation(&b, "qanawat", 0).unwrap(), 1);
        assert_eq!(cold.heads(&b, &id).unwrap(), sa.heads(&a, &id).unwrap());
        // Garbage is rejected, not stored, and does not wedge the rest.
        let junk = WireChange {
            doc_id: id.clone(),
            bytes: vec![1, 2, 3],
        };
        let r = sb.apply_remote(&b, &[junk]).unwrap();
        assert_eq!(r.rejected.len(), 1);
    }

    #[test]
    fn rolled_back_edit_does_not_linger_in_the_cache() {
        let mut c = db();
        let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 4);
        let id = DocId::stats(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
        s.edit(&c, &id, |d| {
            docs::create_metrics(
                d,
                docs::DocKind::Stats,
                &"midan".parse().unwrap(),
                jiff::civil::date(2026, 1, 1),
            )?;
            docs::set_metric(d, "tickets", 1)
        })
        .unwrap();
        {
            let tx = c.transaction().unwrap();
            s.edit(&tx, &id, |d| docs::set_metric(d, "tickets", 99))
                .unwrap();
            tx.rollback().unwrap();
        }
        let v = s
            .read(&c, &id, docs::read_metrics)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(v.metrics["tickets"], 1);
    }

    #[test]
    fn compaction_snapshot_loads_the_same_document() {
        let c = db();
        let center: crate::model::ids::CenterId = "midan".parse().unwrap();
        let day = jiff::civil::date(2026, 1, 1);
        let id = DocId::stats(&center, day);
        let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 2);
        s.edit(&c, &id, |d| {
            docs::create_metrics(d, docs::DocKind::Stats, &center, day)
        })
        .unwrap();
        for i in 0..20 {
            s.edit(&c, &id, |d| docs::set_metric(d, "tickets", i))
                .unwrap();
        }
        assert_eq!(s.compact_due(&c, 10, 100).unwrap(), 1);
        assert_eq!(s.compact_due(&c, 10, 100).unwrap(), 0);
        s.edit(&c, &id, |d| docs::set_metric(d, "tickets", 100))
            .unwrap();
        let heads = s.heads(&c, &id).unwrap();
        let mut cold = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 2);
        assert_eq!(cold.heads(&c, &id).unwrap(), heads);
        let v = cold
            .read(&c, &id, docs::read_metrics)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(v.metrics["tickets"], 100);
        // Changes are kept for shipping after compaction.
        assert_eq!(local_changes_after(&c, 0, usize::MAX).unwrap().len(), 22);
    }

    #[test]
    fn an_interleaved_batch_applies_as_change_by_change_does() {
        // Two documents edited in turn, pushed as one batch with one change ahead of its
        // dependency: every change is stored in order, the early one waits, and the
        // heads (in memory, in doc_meta, and after a reload) are the source's.
        let src_actor = ActorId::from(b"midan/1".to_vec());
        let c: crate::model::ids::CenterId = "midan".parse().unwrap();
        let ids = [
            DocId::stats(&c, jiff::civil::date(2026, 1, 1)),
            DocId::stats(&c, jiff::civil::date(2026, 1, 2)),
        ];
        let mut srcs: Vec<AutoCommit> = Vec::new();
        let mut wire: Vec<WireChange> = Vec::new();
        for (k, id) in ids.iter().enumerate() {
            let mut d = AutoCommit::new().with_actor(src_actor.clone());
            docs::create_metrics(
                &mut d,
                docs::DocKind::Stats,
                &c,
                jiff::civil::date(2026, 1, 1 + k as i8),
            )
            .unwrap();
            d.commit();
            wire.push(WireChange {
                doc_id: id.clone(),
                bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
            });
            srcs.push(d);
        }
        for round in 0..3 {
            for (k, id) in ids.iter().enumerate() {
                docs::set_metric(&mut srcs[k], "tickets", round).unwrap();
                srcs[k].commit();
                wire.push(WireChange {
                    doc_id: id.clone(),
                    bytes: srcs[k]
                        .get_last_local_change()
                        .unwrap()
                        .raw_bytes()
                        .to_vec(),
                });
            }
        }
        // The second document's last change first: its dependencies come later.
        let last = wire.pop().unwrap();
        wire.insert(0, last);
        let a = db();
        let mut s = DocStore::new(incarnation(&a, "hub", 0).unwrap(), 1);
        let r = s.apply_remote(&a, &wire).unwrap();
        assert_eq!(r.stored.len(), wire.len());
        // The early change's dependencies arrive later in the same batch.
        assert_eq!(r.pending, 0);
        assert!(r.rejected.is_empty());
        let seqs: Vec<u64> = r.stored.iter().map(|x| x.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "stored in batch order"
        );
        assert_eq!(r.touched, vec![ids[1].clone(), ids[0].clone()]);
        for (k, id) in ids.iter().enumerate() {
            let want = srcs[k].get_heads();
            assert_eq!(s.heads(&a, id).unwrap(), want);
            let meta: Vec<u8> = a
                .query_row(
                    "SELECT heads FROM doc_meta WHERE doc_id=?1",
                    [id.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(decode_heads(&meta).unwrap(), want);
        }
        s.clear_cache();
        for (k, id) in ids.iter().enumerate() {
            assert_eq!(s.heads(&a, id).unwrap(), srcs[k].get_heads());
        }
        // The same batch again: all duplicates, nothing stored.
        let again = s.apply_remote(&a, &wire).unwrap();
        assert_eq!(again.duplicates, wire.len());
        assert!(again.stored.is_empty());
    }

    #[test]
    fn duplicate_actor_seq_batch_does_not_wedge() {
        // Two different changes with the same (actor, seq): an old database restored
        // with its old actor id. The second is refused alone; the rest still applies.
        let a = db();
        let actor = ActorId::from(b"midan/restored".to_vec());
        let id = DocId::stats(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
        let mk = |v: i64| {
            let mut d = AutoCommit::new().with_actor(actor.clone());
            docs::create_metrics(
                &mut d,
                docs::DocKind::Stats,
                &"midan".parse().unwrap(),
                jiff::civil::date(2026, 1, 1),
            )
            .unwrap();
            docs::set_metric(&mut d, "tickets", v).unwrap();
            d.commit();
            WireChange {
                doc_id: id.clone(),
                bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
            }
        };
        let mut other = AutoCommit::new();
        docs::create_metrics(
            &mut other,
            docs::DocKind::Energy,
            &"midan".parse().unwrap(),
            jiff::civil::date(2026, 1, 1),
        )
        .unwrap();
        other.commit();
        let eid = DocId::energy(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
        let ok = WireChange {
            doc_id: eid.clone(),
            bytes: other.get_last_local_change().unwrap().raw_bytes().to_vec(),
        };
        let mut s = DocStore::new(incarnation(&a, "hub", 0).unwrap(), 4);
        let r = s.apply_remote(&a, &[mk(1), mk(2), ok]).unwrap();
        assert_eq!(r.stored.len(), 2);
        assert_eq!(r.rejected.len(), 1);
        assert!(s.read(&a, &eid, |_| ()).unwrap().is_some());
    }
}
