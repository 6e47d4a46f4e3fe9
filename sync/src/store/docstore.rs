//! [`DocStore`]: documents loaded on demand behind a small LRU, edited locally and merged
//! remotely, every change stored as a row of `changes` in the caller's transaction.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use automerge::{ActorId, AutoCommit, Change, ChangeHash, sync::SyncDoc};
use lru::LruCache;

use super::rows::{ChangeRow, DocMeta, DocRows, StoredDoc};
use super::{Result, StoreError, apply};
use crate::docs::{DocError, DocId};

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
pub(super) fn still_pending(doc: &mut AutoCommit, hashes: &[ChangeHash]) -> Vec<ChangeHash> {
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

pub(super) struct Cached {
    pub(super) doc: AutoCommit,
    /// Hash of the newest `changes` row of the document when it was loaded/updated;
    /// `None` for a document with no rows.
    pub(super) last: Option<Vec<u8>>,
}

/// Documents loaded on demand behind a small LRU, edited locally and merged remotely.
pub struct DocStore {
    pub(super) actor: ActorId,
    origin: Option<String>,
    pub(super) cache: LruCache<DocId, Cached>,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("actor", &self.actor)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// Build a document from its stored rows (no database needed: any thread may do it).
/// `None` when the snapshot does not load: a snapshot is only a cache, so the caller
/// builds again from every change (`stored_doc(.., false)`).
pub(super) fn build_doc(id: &DocId, stored: StoredDoc) -> Result<Option<AutoCommit>> {
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

    /// Mint from now on as `actor` (a new incarnation, e.g. the hub's after a restore).
    /// Every edit sets the store's actor on the document it edits, so cached documents
    /// follow.
    pub fn set_actor(&mut self, actor: ActorId) {
        self.actor = actor;
    }

    /// Forget every cached document (e.g. after restoring the database file).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Take a document out of the cache (loading it if needed) to mutate it; the caller
    /// puts it back on success. On error it is simply dropped and reloaded next time.
    fn take(&mut self, conn: &dyn DocRows, id: &DocId) -> Result<AutoCommit> {
        Ok(self.take_with_last(conn, id)?.0)
    }

    /// [`Self::take`], with the hash of the document's newest stored change.
    fn take_with_last(
        &mut self,
        conn: &dyn DocRows,
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
    fn load(&mut self, conn: &dyn DocRows, id: &DocId) -> Result<Option<&mut Cached>> {
        let last = conn.last_hash(id)?;
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

    fn load_from_db(&self, conn: &dyn DocRows, id: &DocId) -> Result<AutoCommit> {
        let mut doc = match build_doc(id, conn.stored_doc(id, true)?)? {
            Some(d) => d,
            None => build_doc(id, conn.stored_doc(id, false)?)?.unwrap_or_default(),
        };
        doc.set_actor(self.actor.clone());
        Ok(doc)
    }

    fn insert_change(
        &self,
        conn: &dyn DocRows,
        id: &DocId,
        c: &Change,
        local: bool,
    ) -> Result<Option<StoredChange>> {
        let hash = c.hash();
        let row = ChangeRow {
            doc_id: id,
            hash: &hash,
            actor: c.actor_id().to_bytes(),
            local,
            origin: self.origin.as_deref(),
            bytes: c.raw_bytes(),
        };
        Ok(conn.insert_change(&row)?.map(|seq| StoredChange {
            seq,
            doc_id: id.clone(),
            hash,
        }))
    }

    /// The origin recorded with changes stored now (see [`Self::set_origin`]).
    pub(super) fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    fn update_meta(conn: &dyn DocRows, id: &DocId, doc: &mut AutoCommit, seq: u64) -> Result<()> {
        conn.put_meta(&[DocMeta {
            doc_id: id,
            heads: &doc.get_heads(),
            seq,
        }])
    }

    /// Create a document with `init` and store its first change. Fails if it exists.
    pub fn create<R>(
        &mut self,
        conn: &dyn DocRows,
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
        conn: &dyn DocRows,
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
        conn: &dyn DocRows,
        id: &DocId,
        doc: &mut AutoCommit,
    ) -> Result<Option<StoredChange>> {
        let change = match doc.commit() {
            Some(_) => doc.get_last_local_change(),
            None => None,
        };
        let Some(change) = change else {
            let last = conn.last_hash(id)?;
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
        conn: &dyn DocRows,
        id: &DocId,
        f: impl FnOnce(&AutoCommit) -> R,
    ) -> Result<Option<R>> {
        Ok(self.load(conn, id)?.map(|c| f(&c.doc)))
    }

    /// A document's heads (empty if it does not exist).
    pub fn heads(&mut self, conn: &dyn DocRows, id: &DocId) -> Result<Vec<ChangeHash>> {
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
        conn: &dyn DocRows,
        changes: &[WireChange],
    ) -> Result<ApplyReport> {
        Ok(self.apply_remote_with(conn, changes, |_, _| None::<()>)?.0)
    }

    /// [`Self::apply_remote`], also reading each document that stored a change with
    /// `inspect` after its last one (on the thread that applied it). A document missing
    /// from the map was not inspected: read it yourself.
    pub fn apply_remote_with<R: Send>(
        &mut self,
        conn: &dyn DocRows,
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
    pub(super) fn apply_serial(
        &mut self,
        conn: &dyn DocRows,
        changes: &[WireChange],
    ) -> Result<ApplyReport> {
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
            let known = conn.change_doc(&hash)?.is_some();
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
    pub fn save(&mut self, conn: &dyn DocRows, id: &DocId) -> Result<Option<Vec<u8>>> {
        Ok(self.load(conn, id)?.map(|c| c.doc.save()))
    }

    /// Take a document snapshot from a peer: it is loaded (which verifies its heads) and
    /// its changes are stored one by one like remote changes, so every change still has
    /// its row.
    pub fn apply_snapshot(&mut self, conn: &dyn DocRows, wc: &WireChange) -> Result<ApplyReport> {
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
        conn: &dyn DocRows,
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
        conn: &dyn DocRows,
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
            let last = conn.last_hash(id)?;
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
    pub fn compact(&mut self, conn: &dyn DocRows, id: &DocId) -> Result<()> {
        let Some(upto) = conn.top_seq(id)? else {
            return Ok(());
        };
        let Some(c) = self.load(conn, id)? else {
            return Ok(());
        };
        let bytes = c.doc.save();
        let heads = c.doc.get_heads();
        conn.put_snapshot(id, &bytes, &heads, upto)
    }

    /// Compact every document with at least `min_new` changes since its snapshot; returns
    /// how many were compacted. Call periodically (e.g. nightly) from the writer.
    pub fn compact_due(&mut self, conn: &dyn DocRows, min_new: u64, limit: usize) -> Result<usize> {
        let ids = conn.compaction_due(min_new, limit)?;
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
