//! The center side of a sync session, as a state machine: Hello → Push* → (Repair) →
//! Pull* → done.
//!
//! Use: `while let Some(req) = s.next_request(&conn, &mut docs, now)? { send; in one
//! transaction: s.handle_response(&tx, &mut docs, &reply, now)?; commit }`. On a transport
//! error or an undecodable reply nothing changes and the same request bytes are sent
//! again (every request is idempotent at the hub). A pull batch, the documents it touches
//! and the new cursor are written by `handle_response` in the caller's transaction.
//!
//! Lanes: the essential lane is pushed first, then the bulk lane (statistics, energy)
//! unless [`Limits::push_bulk`] is false (a metered uplink): then bulk changes wait, and
//! so does the repair of bulk documents, while essential changes and pulls still move.
//! Each lane has its own cursor and its own acknowledgement key at the hub
//! ([`Lane::ack_key`]), so a bulk backlog never blocks an essential change behind it.

use std::collections::{BTreeMap, VecDeque};

use automerge::{ActorId, ChangeHash, sync::State};
use rusqlite::Connection;
use thiserror::Error;

use super::contract::ErrorCode;
use super::message::{MessageError, PROTOCOL_VERSION, PushForm, Refusal, Request, Response};
use crate::docs::DocId;
use crate::hlc::{HlcClock, HlcStamp, skew_ms};
use crate::model::ids::CenterId;
use crate::store::{self, DocStore, Lane, PeerCursor, StoreError, WireChange};

/// The peer name under which the center stores its hub cursors.
pub const HUB_PEER: &str = "hub";

/// Client errors.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("the hub speaks protocol version {theirs}, this node {ours}: upgrade the node")]
    VersionRefused { ours: u8, theirs: u8 },
    #[error("the hub refused the request: {code}: {message}")]
    Hub { code: ErrorCode, message: String },
    /// The hub acknowledged more of this actor's changes than this database holds: it is
    /// a restored copy. Call `store::new_incarnation`, rebuild the `DocStore` with the new
    /// actor, and sync again (the next session repairs).
    #[error(
        "this database is an old copy (hub acknowledged change {acked}, we hold up to {local_max}): start a new incarnation"
    )]
    RestoredDatabase { acked: u64, local_max: u64 },
    #[error("reply does not match the request")]
    Unexpected,
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> ClientError {
        ClientError::Store(Box::new(e))
    }
}

/// Per document under repair: our heads, and the hub's if it has the document.
type HeadsPair = (Vec<ChangeHash>, Option<Vec<[u8; 32]>>);

impl ClientError {
    /// Whether sending the same request again may help (a cut or garbled transfer).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Message(m) => !matches!(m, MessageError::VersionRefused { .. }),
            ClientError::Hub { code, .. } => *code == ErrorCode::BadRequest,
            _ => false,
        }
    }
}

/// Bounds of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Change bytes per push batch.
    pub push_bytes: usize,
    /// Change bytes per pull batch (asked of the hub).
    pub pull_bytes: u32,
    /// Documents per repair sync request.
    pub repair_docs: usize,
    /// Buckets per repair list request.
    pub repair_buckets: usize,
    /// Sync round trips per repair chunk before giving up on it.
    pub repair_rounds: usize,
    /// Change bytes merged per [`ClientSession::merge_more`] call: a pulled batch is
    /// merged in parts of about this size, each in a transaction of its own, so the
    /// clerks' writes between them never wait behind a whole batch. `usize::MAX` (the
    /// default) merges a batch in the call that takes the reply.
    pub merge_bytes: usize,
    /// Push the bulk lane (statistics, energy) and repair bulk documents in this session.
    /// False on a metered uplink: bulk changes wait for an unmetered session while
    /// essential changes and pulls still move.
    pub push_bulk: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            push_bytes: 1024 * 1024,
            pull_bytes: 1024 * 1024,
            repair_docs: 64,
            repair_buckets: 16,
            repair_rounds: 8,
            merge_bytes: usize::MAX,
            push_bulk: true,
        }
    }
}

/// What a session did, for the node's log and the technician's page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionReport {
    pub requests: usize,
    /// Local changes acknowledged by the hub in this session (both lanes).
    pub pushed: usize,
    /// Of `pushed`, the bulk lane's.
    pub pushed_bulk: usize,
    /// Bulk changes left unsent because the session does not push bulk (metered).
    pub bulk_waiting: usize,
    /// The hub's epoch is new but the bulk documents' repair waits for an unmetered
    /// session.
    pub bulk_repair_deferred: bool,
    pub pulled_new: usize,
    pub pulled_duplicates: usize,
    /// Whole-document snapshots received (documents that newly entered the scope).
    pub snapshots: usize,
    pub refused_by_hub: Vec<Refusal>,
    pub rejected_locally: Vec<(String, String)>,
    pub repaired: bool,
    pub repair_docs: usize,
    pub unrepaired: Vec<String>,
    pub skew_ms: Option<i64>,
    /// Documents whose state changed here (re-project these).
    pub touched: Vec<DocId>,
}

#[derive(Debug)]
enum Phase {
    Hello,
    Push {
        lane: Lane,
        acked: u64,
        sent_upto: u64,
    },
    RepairRanges,
    RepairList {
        buckets: VecDeque<u16>,
    },
    RepairSync {
        round: usize,
    },
    Pull {
        cursor: u64,
    },
    Done,
}

/// A pulled batch being merged in parts: what is left of it, and the cursor stored
/// once all of it is merged (a crash in between pulls the batch again; merging is
/// idempotent).
#[derive(Debug)]
struct PullLeft {
    snapshots: VecDeque<WireChange>,
    changes: VecDeque<WireChange>,
    next_cursor: u64,
    /// The hub has more after this batch.
    more: bool,
    /// The batch held nothing (the feed's end).
    empty: bool,
}

/// Takes changes from the front of `queue` while `taken` stays within `budget` bytes;
/// the first one of a part always (a part is never empty while changes are left).
fn take_within(
    queue: &mut VecDeque<WireChange>,
    budget: usize,
    taken: &mut usize,
) -> Vec<WireChange> {
    let mut part = Vec::new();
    while let Some(c) = queue.front() {
        if *taken > 0 && *taken + c.bytes.len() > budget {
            break;
        }
        *taken += c.bytes.len();
        part.extend(queue.pop_front());
    }
    part
}

/// A reply of the hub, decoded (outside the writer: see [`decode_reply`]).
#[derive(Debug)]
pub struct Reply(Response);

/// Decodes a reply of the hub; no database needed, so a node does it before its writer
/// job and hands the result to [`ClientSession::handle_reply`].
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, ClientError> {
    Ok(Reply(Response::decode(bytes)?))
}

#[derive(Debug, Clone)]
struct Welcome {
    epoch: String,
    feed_len: u64,
    bulk_acked: u64,
    /// How pushes travel to this hub: packed or compact only when its Welcome offered it.
    push_form: PushForm,
}

/// The center side of one sync session.
pub struct ClientSession {
    center: CenterId,
    actor: ActorId,
    clock: HlcClock,
    limits: Limits,
    phase: Phase,
    welcome: Option<Welcome>,
    welcome_cursor: Option<u64>,
    /// The essential / bulk documents are repaired in this session.
    repair_essential: bool,
    repair_bulk: bool,
    /// Documents awaiting repair (and their sync states, for the current chunk).
    repair_queue: VecDeque<DocId>,
    repair_chunk: BTreeMap<DocId, State>,
    pending: Option<Vec<u8>>,
    /// The part of a pulled batch not merged yet (see [`Limits::merge_bytes`]).
    pull_left: Option<PullLeft>,
    /// Sequence numbers of the changes in the push in flight.
    in_flight: Vec<u64>,
    sent_at_ms: u64,
    report: SessionReport,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("center", &self.center)
            .field("phase", &self.phase)
            .finish()
    }
}

impl ClientSession {
    /// A session for `center`, whose store mints changes as `actor`, stamping with
    /// `clock` (take it back with [`ClientSession::into_clock`] to persist its last stamp).
    pub fn new(center: CenterId, actor: ActorId, clock: HlcClock, limits: Limits) -> ClientSession {
        ClientSession {
            center,
            actor,
            clock,
            limits,
            phase: Phase::Hello,
            welcome: None,
            welcome_cursor: None,
            repair_essential: false,
            repair_bulk: false,
            repair_queue: VecDeque::new(),
            repair_chunk: BTreeMap::new(),
            pending: None,
            pull_left: None,
            in_flight: Vec::new(),
            sent_at_ms: 0,
            report: SessionReport::default(),
        }
    }

    /// What the session did so far.
    pub fn report(&self) -> &SessionReport {
        &self.report
    }

    /// Documents changed here since the last call (re-project them in the same
    /// transaction as the response that changed them).
    pub fn take_touched(&mut self) -> Vec<DocId> {
        std::mem::take(&mut self.report.touched)
    }

    /// Whether the session has finished.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The clock, after observing the hub's.
    pub fn into_clock(self) -> HlcClock {
        self.clock
    }

    /// The next request to send, or `None` when the session is over. After a failed
    /// exchange this returns the same bytes again.
    pub fn next_request(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        // A caller that did not merge a batch in parts merges the rest now.
        while self.merging() {
            self.merge_part(conn, docs, usize::MAX)?;
        }
        if let Some(p) = &self.pending {
            return Ok(Some(p.clone()));
        }
        let req = loop {
            match self.build(conn, docs, now_ms)? {
                Some(r) => break r,
                None if self.is_done() => return Ok(None),
                None => continue,
            }
        };
        let form = self
            .welcome
            .as_ref()
            .map_or(PushForm::Framed, |w| w.push_form);
        let bytes = req.encode_with(form);
        self.sent_at_ms = now_ms;
        self.report.requests += 1;
        self.pending = Some(bytes.clone());
        Ok(Some(bytes))
    }

    /// Build the request for the current phase; `None` after moving to another phase.
    fn build(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        now_ms: u64,
    ) -> Result<Option<Request>, ClientError> {
        Ok(match &mut self.phase {
            Phase::Hello => {
                let cur = store::peer_cursor(conn, HUB_PEER)?;
                // As far as this database knows, nothing to push and nothing to repair:
                // offer to end with the Welcome if the hub has nothing new either.
                let idle = cur.epoch.is_some()
                    && (!self.limits.push_bulk || cur.bulk_epoch == cur.epoch)
                    && self.nothing_to_push(conn, cur.push_acked, cur.bulk_acked)?;
                Some(Request::Hello {
                    center: self.center.as_str().to_string(),
                    actor: hex::encode(self.actor.to_bytes()),
                    epoch_seen: cur.epoch,
                    hlc: self.clock.tick(now_ms).encode(),
                    wall_ms: now_ms,
                    done_at: idle.then_some(cur.pull_cursor),
                })
            }
            Phase::Push {
                lane,
                acked,
                sent_upto,
            } => {
                let lane = *lane;
                let changes =
                    store::lane_changes_after(conn, lane, *acked, self.limits.push_bytes)?;
                if changes.is_empty() {
                    self.after_push(conn, lane)?;
                    None
                } else {
                    *sent_upto = changes.last().map_or(*acked, |(s, _)| *s);
                    self.in_flight = changes.iter().map(|(s, _)| *s).collect();
                    Some(Request::Push {
                        actor: hex::encode(lane.ack_key(self.actor.to_bytes())),
                        changes,
                    })
                }
            }
            Phase::RepairRanges => Some(Request::RepairRanges {
                buckets: store::local_bucket_hashes(conn)?,
            }),
            Phase::RepairList { buckets } => {
                if buckets.is_empty() {
                    self.phase = Phase::RepairSync { round: 0 };
                    None
                } else {
                    let n = self.limits.repair_buckets.min(buckets.len());
                    Some(Request::RepairList {
                        buckets: buckets.iter().take(n).copied().collect(),
                    })
                }
            }
            Phase::RepairSync { round } => {
                if self.repair_chunk.is_empty() {
                    *round = 0;
                    while self.repair_chunk.len() < self.limits.repair_docs {
                        let Some(d) = self.repair_queue.pop_front() else {
                            break;
                        };
                        self.repair_chunk.insert(d, State::new());
                    }
                    if self.repair_chunk.is_empty() {
                        self.finish_repair(conn)?;
                        return Ok(None);
                    }
                }
                let mut msgs = Vec::new();
                for (d, st) in self.repair_chunk.iter_mut() {
                    // A fresh state when the previous message got no answer is fine:
                    // automerge sync is idempotent.
                    let m = docs.sync_message(conn, d, st)?;
                    let m = match m {
                        Some(m) => m,
                        None => {
                            *st = State::new();
                            docs.sync_message(conn, d, st)?.unwrap_or_default()
                        }
                    };
                    msgs.push((d.clone(), m));
                }
                Some(Request::RepairSync { msgs })
            }
            Phase::Pull { cursor } => Some(Request::Pull {
                cursor: *cursor,
                max_bytes: self.limits.pull_bytes,
            }),
            Phase::Done => None,
        })
    }

    /// Whether no lane this session pushes holds a change past its acknowledgement.
    fn nothing_to_push(
        &self,
        conn: &Connection,
        essential_acked: u64,
        bulk_acked: u64,
    ) -> Result<bool, ClientError> {
        Ok(
            store::max_lane_seq(conn, Lane::Essential)? <= essential_acked
                && (!self.limits.push_bulk || store::max_lane_seq(conn, Lane::Bulk)? <= bulk_acked),
        )
    }

    /// The lane `lane` has nothing more to push: the next lane, or repair, or pull.
    fn after_push(&mut self, conn: &Connection, lane: Lane) -> Result<(), ClientError> {
        if lane == Lane::Essential && self.limits.push_bulk {
            let acked = self.welcome.as_ref().map_or(0, |w| w.bulk_acked);
            self.phase = Phase::Push {
                lane: Lane::Bulk,
                acked,
                sent_upto: acked,
            };
            return Ok(());
        }
        if !self.limits.push_bulk {
            self.report.bulk_waiting = store::lane_backlog(conn, HUB_PEER, Lane::Bulk)?.1 as usize;
        }
        self.phase = if self.repair_essential || self.repair_bulk {
            Phase::RepairRanges
        } else {
            let cursor = self.welcome_cursor.take().unwrap_or(0);
            Phase::Pull { cursor }
        };
        Ok(())
    }

    /// Whether documents of `lane` are repaired in this session.
    fn repairs(&self, lane: Lane) -> bool {
        match lane {
            Lane::Essential => self.repair_essential,
            Lane::Bulk => self.repair_bulk,
        }
    }

    fn finish_repair(&mut self, conn: &Connection) -> Result<(), ClientError> {
        let Some(w) = self.welcome.clone() else {
            return Err(ClientError::Unexpected);
        };
        let mut cur = store::peer_cursor(conn, HUB_PEER)?;
        let cursor = if self.repair_essential {
            // Everything in the feed before the Welcome was covered by the repair.
            cur.epoch = Some(w.epoch.clone());
            cur.pull_cursor = w.feed_len;
            w.feed_len
        } else {
            self.welcome_cursor.take().unwrap_or(cur.pull_cursor)
        };
        if self.repair_bulk {
            cur.bulk_epoch = Some(w.epoch);
        }
        store::set_peer_cursor(conn, HUB_PEER, &cur)?;
        self.report.repaired = true;
        self.repair_essential = false;
        self.repair_bulk = false;
        self.phase = Phase::Pull { cursor };
        Ok(())
    }

    /// Take the hub's reply to the last request (inside the caller's transaction).
    pub fn handle_response(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), ClientError> {
        self.handle_reply(conn, docs, decode_reply(bytes), now_ms)
    }

    /// [`ClientSession::handle_response`] for a reply decoded by [`decode_reply`] (or
    /// the error decoding it gave). A pulled batch larger than [`Limits::merge_bytes`]
    /// is merged in part: [`ClientSession::merging`] then says so, and
    /// [`ClientSession::merge_more`] merges the rest.
    pub fn handle_reply(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        reply: Result<Reply, ClientError>,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let r = reply.and_then(|Reply(resp)| self.take(conn, docs, resp, now_ms));
        if !matches!(&r, Err(e) if e.is_retryable()) {
            self.pending = None;
        }
        r
    }

    /// Part of a pulled batch is still to be merged.
    pub fn merging(&self) -> bool {
        self.pull_left.is_some()
    }

    /// Merges the next part of the pulled batch (about [`Limits::merge_bytes`]), inside
    /// the caller's transaction; the pull cursor moves when the last part is merged.
    pub fn merge_more(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
    ) -> Result<(), ClientError> {
        self.merge_part(conn, docs, self.limits.merge_bytes)
    }

    fn merge_part(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        budget: usize,
    ) -> Result<(), ClientError> {
        let Some(left) = self.pull_left.as_mut() else {
            return Ok(());
        };
        // Whole snapshots, then changes in feed order, up to the budget (at least one).
        let mut taken = 0usize;
        let snapshots = take_within(&mut left.snapshots, budget, &mut taken);
        let changes = take_within(&mut left.changes, budget, &mut taken);
        let finished = left.snapshots.is_empty() && left.changes.is_empty();
        let mut rep = store::ApplyReport::default();
        for snap in &snapshots {
            let r = docs.apply_snapshot(conn, snap)?;
            self.report.snapshots += 1;
            rep.stored.extend(r.stored);
            rep.duplicates += r.duplicates;
            rep.rejected.extend(r.rejected);
            rep.touched.extend(r.touched);
        }
        if !changes.is_empty() {
            let r = docs.apply_remote(conn, &changes)?;
            rep.stored.extend(r.stored);
            rep.duplicates += r.duplicates;
            rep.rejected.extend(r.rejected);
            rep.touched.extend(r.touched);
        }
        self.report.pulled_new += rep.stored.len();
        self.report.pulled_duplicates += rep.duplicates;
        self.report.rejected_locally.extend(rep.rejected);
        for d in rep.touched {
            if !self.report.touched.contains(&d) {
                self.report.touched.push(d);
            }
        }
        if !finished {
            return Ok(());
        }
        let Some(left) = self.pull_left.take() else {
            return Ok(());
        };
        if let Phase::Pull { cursor } = &mut self.phase {
            *cursor = left.next_cursor;
        }
        let mut cur: PeerCursor = store::peer_cursor(conn, HUB_PEER)?;
        cur.pull_cursor = left.next_cursor;
        if let Some(w) = &self.welcome {
            cur.epoch = Some(w.epoch.clone());
        }
        store::set_peer_cursor(conn, HUB_PEER, &cur)?;
        if !left.more || left.empty {
            self.phase = Phase::Done;
        }
        Ok(())
    }

    fn take(
        &mut self,
        conn: &Connection,
        docs: &mut DocStore,
        resp: Response,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        if let Response::VersionRefused { ours, theirs } = resp {
            // `ours` in the hub's words is the hub's version.
            self.phase = Phase::Done;
            return Err(ClientError::VersionRefused {
                ours: theirs.max(PROTOCOL_VERSION),
                theirs: ours,
            });
        }
        if let Response::Error { code, message } = resp {
            // A request the hub could not read (cut on the way) is sent again.
            if code != ErrorCode::BadRequest {
                self.phase = Phase::Done;
            }
            return Err(ClientError::Hub { code, message });
        }
        match (&mut self.phase, resp) {
            (
                Phase::Hello,
                Response::Welcome {
                    epoch,
                    push_acked,
                    bulk_acked,
                    feed_len,
                    hlc,
                    wall_ms,
                    compact_push,
                    packed_push,
                },
            ) => {
                // The hub acknowledges, per lane, the sequence of a change this lane sent;
                // an acknowledgement beyond what the lane holds means an old copy.
                for (lane, acked) in [
                    (Lane::Essential, Some(push_acked)),
                    (Lane::Bulk, bulk_acked),
                ] {
                    let Some(acked) = acked else { continue };
                    let local_max = store::max_lane_seq(conn, lane)?;
                    if acked > local_max {
                        // Minting more changes with this actor would reuse (actor, seq)
                        // pairs the hub already holds with other contents.
                        self.phase = Phase::Done;
                        return Err(ClientError::RestoredDatabase { acked, local_max });
                    }
                }
                let mut cur = store::peer_cursor(conn, HUB_PEER)?;
                if let Ok(h) = HlcStamp::parse(&hlc) {
                    // A hub stamp far in the future is not taken; the skew shows it.
                    let _ = self.clock.observe(&h, now_ms);
                }
                let skew = skew_ms(self.sent_at_ms, wall_ms, now_ms);
                self.report.skew_ms = Some(skew);
                cur.skew_ms = Some(skew);
                cur.last_sync_ms = Some(now_ms as i64);
                cur.push_acked = push_acked;
                // A hub that predates lanes does not say; our own cursor is a safe start
                // (the hub skips what it already holds).
                let bulk_acked = bulk_acked.unwrap_or(cur.bulk_acked);
                cur.bulk_acked = bulk_acked;
                self.repair_essential = cur.epoch.as_deref() != Some(epoch.as_str());
                let bulk_stale = cur.bulk_epoch.as_deref() != Some(epoch.as_str());
                self.repair_bulk = bulk_stale && self.limits.push_bulk;
                self.report.bulk_repair_deferred = bulk_stale && !self.limits.push_bulk;
                self.welcome_cursor = Some(cur.pull_cursor);
                store::set_peer_cursor(conn, HUB_PEER, &cur)?;
                // Nothing to push, nothing to repair, nothing in the feed past our
                // cursor: the session ends with this one round trip (the hub ends its
                // log of it the same way when the Hello offered `done_at`).
                let idle = !self.repair_essential
                    && !self.repair_bulk
                    && feed_len <= cur.pull_cursor
                    && self.nothing_to_push(conn, push_acked, bulk_acked)?;
                self.welcome = Some(Welcome {
                    epoch,
                    feed_len,
                    bulk_acked,
                    push_form: if packed_push {
                        PushForm::Packed
                    } else if compact_push {
                        PushForm::Compact
                    } else {
                        PushForm::Framed
                    },
                });
                if idle {
                    if !self.limits.push_bulk {
                        self.report.bulk_waiting =
                            store::lane_backlog(conn, HUB_PEER, Lane::Bulk)?.1 as usize;
                    }
                    self.phase = Phase::Done;
                } else {
                    self.phase = Phase::Push {
                        lane: Lane::Essential,
                        acked: push_acked,
                        sent_upto: push_acked,
                    };
                }
            }
            (
                Phase::Push {
                    lane,
                    acked,
                    sent_upto,
                },
                Response::PushAck { acked: a, refused },
            ) => {
                if a < *acked || a > *sent_upto {
                    return Err(ClientError::Unexpected);
                }
                let lane = *lane;
                let prev = *acked;
                let n = self
                    .in_flight
                    .iter()
                    .filter(|&&s| s > prev && s <= a)
                    .count();
                self.report.pushed += n;
                if lane == Lane::Bulk {
                    self.report.pushed_bulk += n;
                }
                self.report.refused_by_hub.extend(refused);
                let stalled = a == *acked;
                *acked = a;
                let mut cur = store::peer_cursor(conn, HUB_PEER)?;
                cur.set_acked(lane, a);
                store::set_peer_cursor(conn, HUB_PEER, &cur)?;
                if stalled {
                    // The hub stored nothing new: stop pushing this lane rather than loop.
                    self.after_push(conn, lane)?;
                }
            }
            (Phase::RepairRanges, Response::RepairDiff { differing }) => {
                self.phase = Phase::RepairList {
                    buckets: differing.into_iter().collect(),
                };
            }
            (
                Phase::RepairList { buckets },
                Response::RepairDocs {
                    docs: theirs,
                    buckets: answered,
                },
            ) => {
                let asked_n = self.limits.repair_buckets.min(buckets.len());
                let n = match answered {
                    // The hub answered the first `a` buckets whole; the rest are asked
                    // again (at least one is taken, so a confused hub cannot stall us).
                    Some(a) => usize::from(a).clamp(1, asked_n.max(1)),
                    // A hub from before the field cut its answer at 5,000 documents
                    // without saying so: ask one bucket at a time from now on.
                    None if theirs.len() >= super::server::OLD_HUB_REPAIR_DOCS && asked_n > 1 => {
                        tracing::warn!(
                            asked = asked_n,
                            "an older hub may have cut its repair list; asking one bucket at a time"
                        );
                        self.limits.repair_buckets = 1;
                        return Ok(());
                    }
                    None => asked_n,
                };
                let n = n.min(buckets.len());
                let asked: Vec<u16> = buckets.drain(..n).collect();
                let ours = store::docs_in_buckets(conn, &asked)?;
                let mut all: BTreeMap<DocId, HeadsPair> = BTreeMap::new();
                for (d, h) in ours {
                    all.entry(d).or_default().0 = h;
                }
                for (d, h) in theirs {
                    all.entry(d).or_default().1 = Some(h);
                }
                for (d, (mine, theirs)) in all {
                    let mut mine: Vec<[u8; 32]> = mine.into_iter().map(|h| h.0).collect();
                    mine.sort();
                    let mut theirs = theirs.unwrap_or_default();
                    theirs.sort();
                    if mine != theirs && self.repairs(Lane::of(&d)) {
                        self.repair_queue.push_back(d);
                    }
                }
            }
            (Phase::RepairSync { round }, Response::RepairSync { msgs }) => {
                *round += 1;
                let round = *round;
                for (d, msg, their_heads) in msgs {
                    let Some(st) = self.repair_chunk.get_mut(&d) else {
                        continue;
                    };
                    if let Some(m) = msg {
                        let got = docs.receive_sync(conn, &d, st, &m, &|_| true)?;
                        if !got.stored.is_empty() && !self.report.touched.contains(&d) {
                            self.report.touched.push(d.clone());
                        }
                    }
                    let mut mine: Vec<[u8; 32]> =
                        docs.heads(conn, &d)?.into_iter().map(|h| h.0).collect();
                    mine.sort();
                    let mut theirs = their_heads;
                    theirs.sort();
                    if mine == theirs {
                        self.repair_chunk.remove(&d);
                        self.report.repair_docs += 1;
                    }
                }
                if round >= self.limits.repair_rounds {
                    for d in std::mem::take(&mut self.repair_chunk).into_keys() {
                        self.report.unrepaired.push(d.to_string());
                    }
                }
                if let Phase::RepairSync { round: r } = &mut self.phase
                    && self.repair_chunk.is_empty()
                {
                    *r = 0;
                }
            }
            (
                Phase::Pull { cursor },
                Response::PullBatch {
                    changes,
                    snapshots,
                    next_cursor,
                    more,
                },
            ) => {
                if next_cursor < *cursor {
                    return Err(ClientError::Unexpected);
                }
                self.pull_left = Some(PullLeft {
                    empty: changes.is_empty() && snapshots.is_empty(),
                    snapshots: snapshots.into(),
                    changes: changes.into(),
                    next_cursor,
                    more,
                });
                self.merge_more(conn, docs)?;
            }
            _ => return Err(ClientError::Unexpected),
        }
        Ok(())
    }
}
