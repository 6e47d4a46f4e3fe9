//! The hub side, sans-IO: [`handle_request`] answers one request against a [`HubStore`];
//! the hub's HTTPS handler calls it inside one write transaction with the center named by
//! the client certificate. The store the hub uses is [`super::relay::Relay`] (routing,
//! feeds and the authority check over any engine's [`super::relay::HubTables`]); the
//! SQLite tables are in [`super::sqlite_hub`].
//!
//! Guarantees: a center only ever receives documents routed to it (its own documents, the
//! catalog, its staff, cases routed to it and their citizens); a pushed change for a
//! document the center may not write is refused and reported, never stored; every request
//! is idempotent, so a cut request or reply is simply sent again.

use automerge::ChangeHash;

use super::contract::{ErrorCode, RequestKind};
use super::message::{Request, Response};
use super::restore::{self, RestoreSign};
use super::{FeedBatch, HubError, PushOutcome};
use crate::docs::DocId;
use crate::hlc::{HlcClock, HlcStamp};
use crate::model::ids::CenterId;
use crate::store::{self, Lane, WireChange};

/// Largest pull batch the hub builds, whatever the client asks.
pub const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;
/// Most documents in one repair list reply.
pub const MAX_REPAIR_DOCS: usize = 5_000;

#[cfg(not(test))]
fn max_repair_docs() -> usize {
    MAX_REPAIR_DOCS
}

#[cfg(test)]
thread_local! {
    /// The repair list's cap in this thread's tests (small, so a test of a cut list
    /// needs dozens of documents rather than thousands).
    pub(crate) static TEST_MAX_REPAIR_DOCS: std::cell::Cell<usize> =
        const { std::cell::Cell::new(MAX_REPAIR_DOCS) };
}

#[cfg(test)]
fn max_repair_docs() -> usize {
    TEST_MAX_REPAIR_DOCS.with(std::cell::Cell::get)
}

/// What a hub from before [`Response::RepairDocs`] said how many buckets it answered
/// sent at most: an answer of this many documents from such a hub may have been cut.
pub const OLD_HUB_REPAIR_DOCS: usize = 5_000;

/// The hub's answer to one document's sync message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncAnswer {
    /// The hub's own sync message, if it has something to say.
    pub reply: Option<Vec<u8>>,
    /// The document's heads at the hub after receiving the center's message (empty when
    /// the document is not in the center's scope).
    pub heads: Vec<ChangeHash>,
    /// How many of the center's changes were refused (it may not write the document).
    pub refused: usize,
}

/// Storage the sync endpoint needs; SQLite by default, replaceable by a larger engine.
pub trait HubStore {
    /// This hub database's epoch (new when the database was restored).
    fn epoch(&mut self) -> Result<String, HubError>;
    /// Whether this database ever had `epoch`.
    fn knows_epoch(&mut self, epoch: &str) -> Result<bool, HubError>;
    /// Whether a pull of `center` can have ended at `position` (a position of its feed or
    /// a feed floor).
    fn handed_out(&mut self, center: &CenterId, position: u64) -> Result<bool, HubError>;
    /// A center showed that this database is older than what it has seen: run the
    /// after-restore step ([`super::restore::after_restore`]) now.
    fn recover(
        &mut self,
        center: &CenterId,
        sign: &RestoreSign,
        now_ms: u64,
    ) -> Result<(), HubError>;
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
    pub kind: RequestKind,
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
    clock: &mut HlcClock,
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
    clock: &mut HlcClock,
    now_ms: u64,
    req: Result<Request, super::message::MessageError>,
) -> (Response, RequestLog) {
    let mut log = RequestLog::default();
    let req = match req {
        Ok(r) => r,
        Err(super::message::MessageError::VersionRefused { ours, theirs }) => {
            log.kind = RequestKind::Refused;
            log.error = Some(format!("protocol version {theirs}, ours {ours}"));
            return (Response::VersionRefused { ours, theirs }, log);
        }
        Err(e) => {
            log.kind = RequestKind::Bad;
            log.error = Some(e.to_string());
            return (
                Response::Error {
                    code: ErrorCode::BadRequest,
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
                    code: ErrorCode::HubError,
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
    clock: &mut HlcClock,
    now_ms: u64,
    req: Request,
    log: &mut RequestLog,
) -> Result<Response, HubError> {
    Ok(match req {
        Request::Hello {
            center: claimed,
            actor,
            hlc,
            epoch_seen,
            done_at,
            ..
        } => {
            log.kind = RequestKind::Hello;
            if claimed != center.as_str() {
                return Ok(Response::Error {
                    code: ErrorCode::WrongCenter,
                    message: format!("certificate is for {center}, hello says {claimed}"),
                });
            }
            let actor = hex::decode(&actor).map_err(|e| format!("bad actor: {e}"))?;
            hub.register(center)?;
            let stamp = match HlcStamp::parse(&hlc) {
                Ok(remote) => clock
                    .observe(&remote, now_ms)
                    .unwrap_or_else(|_| clock.tick(now_ms)),
                Err(_) => clock.tick(now_ms),
            };
            let mut epoch = hub.epoch()?;
            let known = match epoch_seen.as_deref() {
                Some(seen) if seen != epoch => hub.knows_epoch(seen)?,
                _ => true,
            };
            let sign = restore::at_hello(&epoch, epoch_seen.as_deref(), known, done_at, |p| {
                hub.handed_out(center, p)
            })?;
            if let Some(sign) = sign {
                // The Welcome then brings the new epoch: this center repairs right away.
                hub.recover(center, &sign, now_ms)?;
                epoch = hub.epoch()?;
            }
            Response::Welcome {
                epoch,
                push_acked: hub.push_acked(center, &Lane::Essential.ack_key(&actor))?,
                bulk_acked: Some(hub.push_acked(center, &Lane::Bulk.ack_key(&actor))?),
                feed_len: hub.feed_len(center)?,
                hlc: stamp.encode(),
                wall_ms: now_ms,
                compact_push: true,
                // Offered when the center may push: a Hello with `done_at` has nothing
                // to push, and its one-round-trip Welcome stays as small as before.
                packed_push: done_at.is_none(),
            }
        }
        Request::Push { actor, changes } => {
            log.kind = RequestKind::Push;
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
            log.kind = RequestKind::Pull;
            if let Some(sign) = restore::at_pull(cursor, |p| hub.handed_out(center, p))? {
                // Nothing here is after this cursor in the center's sense: the new epoch
                // makes its next session repair, which re-offers every document.
                hub.recover(center, &sign, now_ms)?;
                return Ok(Response::PullBatch {
                    changes: Vec::new(),
                    snapshots: Vec::new(),
                    next_cursor: cursor,
                    more: false,
                });
            }
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
            log.kind = RequestKind::RepairRanges;
            let ours = hub.scope_bucket_hashes(center)?;
            let differing = (0..store::BUCKETS)
                .filter(|&i| buckets.get(i as usize) != ours.get(i as usize))
                .collect();
            Response::RepairDiff { differing }
        }
        Request::RepairList { buckets } => {
            log.kind = RequestKind::RepairList;
            // Whole buckets only, as many as fit in MAX_REPAIR_DOCS (at least one, however
            // large), and the answer says how many: the center asks again for the rest.
            let mut docs = Vec::new();
            let mut answered: u16 = 0;
            for b in &buckets {
                let these = hub.scope_docs(center, std::slice::from_ref(b))?;
                if answered > 0 && docs.len() + these.len() > max_repair_docs() {
                    break;
                }
                docs.extend(these);
                answered += 1;
            }
            log.docs = docs.len();
            Response::RepairDocs {
                docs: docs
                    .into_iter()
                    .map(|(d, h)| (d, h.into_iter().map(|h| h.0).collect()))
                    .collect(),
                buckets: Some(answered),
            }
        }
        Request::RepairSync { msgs } => {
            log.kind = RequestKind::RepairSync;
            log.docs = msgs.len();
            let mut out = Vec::with_capacity(msgs.len());
            for (doc, msg) in msgs {
                let a = hub.repair_sync(center, &doc, &msg)?;
                log.refused += a.refused;
                out.push((doc, a.reply, a.heads.into_iter().map(|h| h.0).collect()));
            }
            Response::RepairSync { msgs: out }
        }
    })
}
