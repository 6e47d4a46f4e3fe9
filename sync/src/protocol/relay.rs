//! The hub's relay, engine-neutral: [`Relay`] is the [`HubStore`] the hub answers sync
//! requests with — the authority check, storing pushed changes, routing them to the
//! feeds of the centers that receive their documents, reading a feed, and repair — over
//! any engine's [`HubTables`] (SQLite in [`super::sqlite_hub`], PostgreSQL in the hub
//! crate) and the hub's [`DocStore`].
//!
//! Guarantees, whatever the engine:
//! - a change is appended to the feed of every center its document is routed to (except
//!   the center that sent it); a new route appends the document's whole history first
//!   (one snapshot entry when it is [`SNAPSHOT_MIN_CHANGES`] or more), so routing from
//!   a document's final state after a batch reaches the same feeds as routing after every
//!   change;
//! - feed entries are handed to the engine once per operation, grouped by center in
//!   center order with each center's entries in the order they were made
//!   ([`HubTables::append_feed`]); an engine with concurrent writers numbers a center's
//!   entries under a lock on that center, so a feed position is never visible before a
//!   lower one;
//! - every document a request writes, or gives a new route, is locked first
//!   ([`HubTables::lock_docs`]), so two writers of one document (a portal case edited at
//!   the hub while its center pushes) take turns and each loads the other's changes.

use std::collections::HashMap;

use automerge::sync::State;
use tracing::{error, warn};

use super::message::Refusal;
use super::restore::{self, RestoreSign};
use super::server::{HubStore, SyncAnswer};
use super::{FeedBatch, HubError, PushOutcome, may_write};
use crate::docs::{self, DocId, DocKind};
use crate::model::ids::CenterId;
use crate::store::{self, DocRows, DocStore, StoredChange, WireChange};

/// A document entering a center's scope with at least this many changes to send goes as
/// one snapshot instead.
pub const SNAPSHOT_MIN_CHANGES: usize = 8;

/// Most feed entries one pull reads.
const MAX_PULL_ENTRIES: usize = 10_000;

/// One entry to append to a center's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub center: String,
    /// The change (`changes.seq`); for a snapshot entry, the document's newest change.
    pub change_seq: u64,
    /// A snapshot entry: the whole document, built when it is pulled.
    pub snapshot_doc: Option<String>,
}

/// One stored feed entry as a pull reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    pub fseq: u64,
    pub doc_id: String,
    /// Set for a snapshot entry.
    pub snapshot_doc: Option<String>,
    /// The change's bytes (`None` for a snapshot entry).
    pub bytes: Option<Vec<u8>>,
}

/// The hub's relay tables — centers, routes, feeds, acknowledgements, the epoch — inside
/// the caller's transaction, on top of the document rows. No method hands out a type of
/// its engine.
pub trait HubTables: DocRows {
    /// This hub database's epoch.
    fn epoch(&self) -> Result<String, HubError>;
    /// Replace the epoch (after a restore: every center repairs).
    fn set_epoch(&self, epoch: &str) -> Result<(), HubError>;
    /// Whether this database ever had `epoch` (now, or before a restore it recovered from).
    fn knows_epoch(&self, epoch: &str) -> Result<bool, HubError>;
    /// Remember `epoch` as one this database has had.
    fn remember_epoch(&self, epoch: &str) -> Result<(), HubError>;
    /// Record and return a fresh actor id for the hub's own edits (a new incarnation; it
    /// stays one of the hub's own actors, see `DocRows::is_own_actor`).
    fn new_actor(&self, now_ms: u64) -> Result<Vec<u8>, HubError>;
    /// The highest feed floor: every center's feed continues after it (0 before the first
    /// start). [`Self::feed_len`] is never below it and [`Self::append_feed`] numbers
    /// above it.
    fn feed_floor(&self) -> Result<u64, HubError>;
    /// Record a new feed floor (ignored unless it is above the highest).
    fn raise_feed_floor(&self, floor: u64) -> Result<(), HubError>;
    /// Whether `position` is one a pull of `center` can have ended at: a position of its
    /// feed or a recorded feed floor.
    fn handed_out(&self, center: &CenterId, position: u64) -> Result<bool, HubError>;
    /// Record a center; `true` when it is new.
    fn add_center(&self, center: &CenterId) -> Result<bool, HubError>;
    /// Every center that ever synced.
    fn centers(&self) -> Result<Vec<CenterId>, HubError>;
    /// Ids of every document of a kind (`case`, `energy`, …), in id order.
    fn doc_ids(&self, kind: &str) -> Result<Vec<DocId>, HubError>;
    /// The documents a center receives from its first contact: the catalog and its staff.
    fn first_contact_docs(&self, center: &CenterId) -> Result<Vec<DocId>, HubError>;
    /// The centers a document is routed to.
    fn routes_of(&self, doc: &DocId) -> Result<Vec<String>, HubError>;
    /// Add a route; `true` when it is new.
    fn insert_route(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError>;
    /// The `seq` of every change of `doc` not sent by `center`, in order.
    fn history(&self, doc: &DocId, not_from: &CenterId) -> Result<Vec<u64>, HubError>;
    /// Append entries to the feeds (see the module docs for the order).
    fn append_feed(&self, entries: &[FeedEntry]) -> Result<(), HubError>;
    /// Length of a center's feed (its highest position, or the feed floor if higher).
    fn feed_len(&self, center: &CenterId) -> Result<u64, HubError>;
    /// Up to `limit` feed entries after `cursor`, in order.
    fn feed_after(
        &self,
        center: &CenterId,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<FeedRow>, HubError>;
    /// The highest local sequence of a center's ack key the hub stored.
    fn push_acked(&self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError>;
    /// Raise (never lower) the acknowledged sequence.
    fn set_push_acked(&self, center: &CenterId, actor: &[u8], acked: u64) -> Result<(), HubError>;
    /// (doc id, stored heads) of the documents routed to a center, in the given repair
    /// buckets (all of them for `None`), ordered by doc id.
    fn scope_heads(
        &self,
        center: &CenterId,
        buckets: Option<&[u16]>,
    ) -> Result<Vec<(String, Vec<u8>)>, HubError>;
    /// Make other writers of these documents wait until this transaction ends (a single
    /// writer needs nothing). Called before a document is loaded for writing.
    fn lock_docs(&self, docs: &[&DocId]) -> Result<(), HubError>;
}

/// The [`HubStore`] over an engine's tables (inside the caller's transaction) and the
/// hub's document store. Call the hub's own edits' routing through
/// [`Relay::route_stored`] too, so they reach the centers.
pub struct Relay<'a> {
    pub tables: &'a dyn HubTables,
    pub docs: &'a mut DocStore,
    /// Feed entries made by the current operation, appended at its end.
    feed: Vec<FeedEntry>,
}

impl<'a> Relay<'a> {
    pub fn new(tables: &'a dyn HubTables, docs: &'a mut DocStore) -> Relay<'a> {
        Relay {
            tables,
            docs,
            feed: Vec::new(),
        }
    }

    /// Hand the entries made so far to the engine, grouped by center (a stable sort keeps
    /// each center's order).
    fn flush_feed(&mut self) -> Result<(), HubError> {
        if self.feed.is_empty() {
            return Ok(());
        }
        let mut entries = std::mem::take(&mut self.feed);
        entries.sort_by(|a, b| a.center.cmp(&b.center));
        self.tables.append_feed(&entries)
    }

    fn is_routed(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError> {
        Ok(self
            .tables
            .routes_of(doc)?
            .iter()
            .any(|c| c == center.as_str()))
    }

    /// Route a document to a center: a new route sends its history (what that center did
    /// not send itself) first. Idempotent.
    pub fn add_route(&mut self, doc: &DocId, center: &CenterId) -> Result<(), HubError> {
        self.add_route_buffered(doc, center)?;
        self.flush_feed()
    }

    fn add_route_buffered(&mut self, doc: &DocId, center: &CenterId) -> Result<(), HubError> {
        // A change stored for the document meanwhile must see the route, or the route
        // must see the change: both hold the document's lock.
        self.tables.lock_docs(&[doc])?;
        if !self.tables.insert_route(doc, center)? {
            return Ok(());
        }
        let history = self.tables.history(doc, center)?;
        match history.last() {
            Some(&top) if history.len() >= SNAPSHOT_MIN_CHANGES => {
                // A long history travels as one `save()` snapshot, built when it is pulled.
                self.feed.push(FeedEntry {
                    center: center.to_string(),
                    change_seq: top,
                    snapshot_doc: Some(doc.to_string()),
                });
            }
            _ => self.feed.extend(history.into_iter().map(|seq| FeedEntry {
                center: center.to_string(),
                change_seq: seq,
                snapshot_doc: None,
            })),
        }
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
        self.route_stored_read(stored, origin, HashMap::new())?;
        self.flush_feed()
    }

    /// [`Self::route_stored`] with the routing fields of some cases already read (by
    /// [`case_routes_of`], where the push applied them); the feed is not flushed.
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
                routes.insert(&s.doc_id, self.tables.routes_of(&s.doc_id)?);
                docs.push(&s.doc_id);
            }
            for c in &routes[&s.doc_id] {
                if Some(c.as_str()) != origin.map(CenterId::as_str) {
                    self.feed.push(FeedEntry {
                        center: c.clone(),
                        change_seq: s.seq,
                        snapshot_doc: None,
                    });
                }
            }
        }
        for doc in docs {
            let case = match doc.kind() {
                DocKind::Case => match read.remove(doc) {
                    Some(r) => Some(r),
                    None => self.docs.read(self.tables, doc, docs::read_case_routes)?,
                },
                _ => None,
            };
            let case = match case {
                Some(Ok(v)) => Some(v),
                _ => None,
            };
            let tables = self.tables;
            for c in implied_routes(doc, origin, case.as_ref(), || tables.centers())? {
                self.add_route_buffered(doc, &c)?;
            }
            if let Some(v) = case {
                // A case's citizen goes wherever the case goes.
                let citizen = DocId::citizen(&v.citizen);
                for c in self.tables.routes_of(doc)? {
                    if let Ok(c) = c.parse() {
                        self.add_route_buffered(&citizen, &c)?;
                    }
                }
            }
        }
        Ok(())
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

impl HubStore for Relay<'_> {
    fn epoch(&mut self) -> Result<String, HubError> {
        self.tables.epoch()
    }

    fn knows_epoch(&mut self, epoch: &str) -> Result<bool, HubError> {
        self.tables.knows_epoch(epoch)
    }

    fn handed_out(&mut self, center: &CenterId, position: u64) -> Result<bool, HubError> {
        self.tables.handed_out(center, position)
    }

    fn recover(
        &mut self,
        center: &CenterId,
        sign: &RestoreSign,
        now_ms: u64,
    ) -> Result<(), HubError> {
        let r = restore::after_restore(self.tables, now_ms)?;
        if let RestoreSign::UnknownEpoch { seen } = sign {
            // Handled now: another center with the same epoch is no new sign.
            self.tables.remember_epoch(seen)?;
        }
        self.docs.set_actor(automerge::ActorId::from(r.actor));
        error!(
            center = %center, %sign, epoch = %r.epoch, feed_floor = r.feed_floor,
            "this hub database is older than what a center has seen (restored from a backup \
             without `markaz hub restore`?): ran the after-restore step — new epoch and actor, \
             feeds moved on; every center repairs at its next session"
        );
        Ok(())
    }

    fn register(&mut self, center: &CenterId) -> Result<(), HubError> {
        if !self.tables.add_center(center)? {
            return Ok(());
        }
        for d in self.tables.first_contact_docs(center)? {
            self.add_route_buffered(&d, center)?;
        }
        self.flush_feed()
    }

    fn push_acked(&mut self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError> {
        self.tables.push_acked(center, actor)
    }

    fn store_push(
        &mut self,
        center: &CenterId,
        actor: &[u8],
        changes: &[(u64, WireChange)],
    ) -> Result<PushOutcome, HubError> {
        let mut acked = self.tables.push_acked(center, actor)?;
        let mut refused = Vec::new();
        let mut to_lock: Vec<&DocId> = changes
            .iter()
            .filter(|(seq, _)| *seq > acked)
            .map(|(_, wc)| &wc.doc_id)
            .collect();
        // In one order for every writer, so two of them never wait for each other.
        to_lock.sort();
        to_lock.dedup();
        self.tables.lock_docs(&to_lock)?;
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
                    let v = may_write(center, &wc.doc_id, self.is_routed(&wc.doc_id, center)?);
                    allowed.insert(&wc.doc_id, v.clone());
                    v
                }
            };
            // A center writes only the fields of its staff it owns (not the hub's
            // deactivation), checked change by change.
            let verdict = match verdict {
                Ok(()) if wc.doc_id.kind() == DocKind::Staff => {
                    docs::check_center_staff_change(&wc.bytes)
                }
                v => v,
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
                .apply_remote_with(self.tables, &accepted, case_routes_of)?;
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
        self.flush_feed()?;
        self.tables.set_push_acked(center, actor, acked)?;
        Ok(PushOutcome { acked, refused })
    }

    fn feed_len(&mut self, center: &CenterId) -> Result<u64, HubError> {
        self.tables.feed_len(center)
    }

    fn read_feed(
        &mut self,
        center: &CenterId,
        cursor: u64,
        max_bytes: usize,
    ) -> Result<FeedBatch, HubError> {
        let rows = self
            .tables
            .feed_after(center, cursor, MAX_PULL_ENTRIES + 1)?;
        let mut out = FeedBatch {
            changes: Vec::new(),
            snapshots: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        let mut total = 0usize;
        for (count, r) in rows.into_iter().enumerate() {
            let (doc_id, bytes): (DocId, Vec<u8>) = match (&r.snapshot_doc, r.bytes) {
                (Some(doc), _) => {
                    let id: DocId = doc.parse()?;
                    let bytes = self.docs.save(self.tables, &id)?.unwrap_or_default();
                    (id, bytes)
                }
                (None, bytes) => (r.doc_id.parse()?, bytes.unwrap_or_default()),
            };
            if count > 0 && (total + bytes.len() > max_bytes || count >= MAX_PULL_ENTRIES) {
                out.more = true;
                break;
            }
            total += bytes.len();
            let wc = WireChange { doc_id, bytes };
            if r.snapshot_doc.is_some() {
                out.snapshots.push(wc);
            } else {
                out.changes.push(wc);
            }
            out.next_cursor = r.fseq;
        }
        if !out.more {
            // At the end of the feed: past the gap a restore left, so the center's cursor
            // reaches the feed's length (and its next Hello can end the session at once).
            out.next_cursor = out.next_cursor.max(self.tables.feed_floor()?);
        }
        Ok(out)
    }

    fn scope_bucket_hashes(&mut self, center: &CenterId) -> Result<Vec<[u8; 32]>, HubError> {
        let rows = self.tables.scope_heads(center, None)?;
        Ok(store::bucket_hashes(
            rows.iter().map(|(a, b)| (a.as_str(), b.as_slice())),
        ))
    }

    fn scope_docs(
        &mut self,
        center: &CenterId,
        buckets: &[u16],
    ) -> Result<Vec<(DocId, Vec<automerge::ChangeHash>)>, HubError> {
        let mut out = Vec::new();
        for b in buckets {
            for (id, h) in self.tables.scope_heads(center, Some(&[*b]))? {
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
        self.tables.lock_docs(&[doc])?;
        let routed = self.is_routed(doc, center)?;
        let may = may_write(center, doc, routed).is_ok();
        let tables = self.tables;
        // A center may also hand back the hub's own changes that a restored hub lost.
        // Of its own staff, a center hands over only the fields it owns.
        let staff = doc.kind() == DocKind::Staff;
        let allow = |changes: &[automerge::Change]| {
            changes.iter().all(|c| {
                (may && (!staff || docs::check_center_staff_ops(c).is_ok()))
                    || tables
                        .is_own_actor(c.actor_id().to_bytes())
                        .unwrap_or(false)
            })
        };
        // The hub keeps no sync state between requests: each reply is computed from the
        // center's message alone (the client carries the conversation).
        let mut state = State::new();
        self.docs.set_origin(Some(center.as_str()));
        let got = self
            .docs
            .receive_sync(self.tables, doc, &mut state, msg, &allow);
        self.docs.set_origin(None);
        let got = got?;
        self.route_stored(&got.stored, Some(center))?;
        let in_scope = self.is_routed(doc, center)?;
        // A document the hub does not hold at all (a restore lost it) is answered as an
        // empty one, which tells nothing and lets the center send what it has — the
        // authority check above decides what is kept.
        let reply = if in_scope || self.docs.heads(self.tables, doc)?.is_empty() {
            self.docs.sync_message(self.tables, doc, &mut state)?
        } else {
            None
        };
        let heads = if in_scope {
            self.docs.heads(self.tables, doc)?
        } else {
            Vec::new()
        };
        Ok(SyncAnswer {
            reply,
            heads,
            refused: got.refused,
        })
    }
}
