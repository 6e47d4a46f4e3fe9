//! The sync messages and their encoding (see `docs/PROTOCOL.md` for byte layouts).
//!
//! A message is one [`crate::frame`] batch whose version byte is [`PROTOCOL_VERSION`]:
//! frame 0 is a JSON header (the message type and its small fields), frames 1.. are binary
//! parts, each `doc_id_len: u16 LE` · `doc_id` · `bytes` (an automerge change or sync
//! message). A refusal of the version is a batch with version byte 0, which every version
//! of the protocol can read.
//!
//! A push has two forms. The framed form ([`PushForm::Framed`], every hub reads it) puts
//! each change in its own part and the sequence numbers in the header. The compact form
//! ([`PushForm::Compact`]) carries the whole push as one binary body: the sequence numbers
//! as runs, each document id once, and each change as a document index and a
//! length-prefixed byte string, with no per-change frame (the batch's own CRC covers it).
//! A hub that reads it says so in its `Welcome` (`compact_push`); a client sends it only
//! then. Both forms decode to the same [`Request::Push`], in the same order.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::contract::ErrorCode;
use crate::docs::DocId;
use crate::frame::{self, BatchBuilder, FrameError};
use crate::store::WireChange;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Version byte of the universal refusal batch.
pub const REFUSAL_VERSION: u8 = 0;
/// Most parts in one message, and most changes in one push (either form).
pub const MAX_PARTS: usize = 100_000;

/// How a push travels (see the module docs); every other message has one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushForm {
    /// One part per change, sequence numbers in the JSON header: what every hub reads.
    #[default]
    Framed,
    /// One binary body: runs of sequence numbers, a document table, varint-prefixed
    /// changes. Only to a hub whose `Welcome` offered it.
    Compact,
    /// The compact body with what the hub can rebuild left out of each change
    /// ([`super::pack`]). Only to a hub whose `Welcome` offered it (`packed_push`).
    Packed,
}

/// Message decoding errors.
#[derive(Debug, Error)]
pub enum MessageError {
    #[error("peer speaks protocol version {theirs}, we speak {ours}")]
    VersionRefused { ours: u8, theirs: u8 },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("bad header: {0}")]
    Header(String),
    #[error("bad part: {0}")]
    Part(String),
    #[error("empty message")]
    Empty,
}

/// A refused change, reported back to the center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub doc_id: String,
    pub hash: String,
    pub reason: String,
}

/// Center → hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Opens a session. The center's identity comes from its certificate; `center` here
    /// is only checked against it.
    Hello {
        center: String,
        actor: String,
        epoch_seen: Option<String>,
        hlc: String,
        wall_ms: u64,
        /// Set when the center has nothing to push and expects no repair: its pull
        /// cursor. If the Welcome shows nothing past it (and `epoch_seen` is current),
        /// the session ends with the Welcome — one round trip when nothing is new.
        done_at: Option<u64>,
    },
    /// Changes minted at the center, with their local sequence numbers.
    Push {
        actor: String,
        changes: Vec<(u64, WireChange)>,
    },
    /// Changes of the center's feed after `cursor`.
    Pull { cursor: u64, max_bytes: u32 },
    /// One hash per repair bucket of the center's documents.
    RepairRanges { buckets: Vec<[u8; 32]> },
    /// The hub's documents (ids and heads) in these buckets.
    RepairList { buckets: Vec<u16> },
    /// automerge sync messages, one per document.
    RepairSync { msgs: Vec<(DocId, Vec<u8>)> },
}

/// The hub's answer for one document under repair: its sync message (if any) and its
/// heads after taking the center's message.
pub type RepairReply = (DocId, Option<Vec<u8>>, Vec<[u8; 32]>);

/// Hub → center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Welcome {
        epoch: String,
        /// Essential lane: the highest center sequence the hub holds for the actor.
        push_acked: u64,
        /// Bulk lane: the same for the actor's bulk ack key (`Lane::Bulk.ack_key`);
        /// `None` from a hub that predates lanes.
        bulk_acked: Option<u64>,
        feed_len: u64,
        hlc: String,
        wall_ms: u64,
        /// The hub reads [`PushForm::Compact`]; `false` from a hub that predates it.
        compact_push: bool,
        /// The hub reads [`PushForm::Packed`]; `false` from a hub that predates it.
        packed_push: bool,
    },
    PushAck {
        acked: u64,
        refused: Vec<Refusal>,
    },
    PullBatch {
        changes: Vec<WireChange>,
        /// Document snapshots (`save()`), applied before the changes.
        snapshots: Vec<WireChange>,
        next_cursor: u64,
        more: bool,
    },
    RepairDiff {
        differing: Vec<u16>,
    },
    /// The documents (and their heads) of the first `buckets` of the buckets asked for,
    /// whole buckets only; `None` from a hub before this field existed, which answered
    /// every bucket asked for but at most 5,000 documents in all.
    RepairDocs {
        docs: Vec<(DocId, Vec<[u8; 32]>)>,
        buckets: Option<u16>,
    },
    /// Replies per document: the hub's sync message (if any) and its heads after.
    RepairSync {
        msgs: Vec<RepairReply>,
    },
    /// The request was understood but failed.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The peer's protocol version is not ours.
    VersionRefused {
        ours: u8,
        theirs: u8,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Header {
    Hello {
        center: String,
        actor: String,
        epoch_seen: Option<String>,
        hlc: String,
        wall_ms: u64,
        /// Added without a version bump: older hubs ignore it, its absence reads `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        done_at: Option<u64>,
    },
    Push {
        actor: String,
        seqs: Vec<u64>,
    },
    /// A push in the compact form: the body is in the parts (see [`compact`]).
    PushCompact {
        actor: String,
    },
    /// A push in the packed form: the body is in the parts (see [`super::pack`]).
    PushPacked {
        actor: String,
    },
    Pull {
        cursor: u64,
        max_bytes: u32,
    },
    RepairRanges {
        buckets: Vec<String>,
    },
    RepairList {
        buckets: Vec<u16>,
    },
    RepairSync {
        /// For responses: which parts carry a message, and each document's heads.
        #[serde(default)]
        has_msg: Vec<bool>,
        #[serde(default)]
        heads: Vec<Vec<String>>,
        #[serde(default)]
        ids: Vec<String>,
    },
    Welcome {
        epoch: String,
        push_acked: u64,
        /// Added without a version bump: older peers ignore it, and its absence reads
        /// as `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bulk_acked: Option<u64>,
        feed_len: u64,
        hlc: String,
        wall_ms: u64,
        /// Added without a version bump: older clients ignore it, and its absence (an
        /// older hub) reads as `false`.
        #[serde(default)]
        compact_push: bool,
        /// Added without a version bump, like `compact_push`; sent only when true.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        packed_push: bool,
    },
    PushAck {
        acked: u64,
        refused: Vec<Refusal>,
    },
    PullBatch {
        next_cursor: u64,
        more: bool,
        /// How many of the parts (the last ones) are document snapshots.
        #[serde(default)]
        snapshots: usize,
    },
    RepairDiff {
        differing: Vec<u16>,
    },
    RepairDocs {
        ids: Vec<String>,
        heads: Vec<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buckets: Option<u16>,
    },
    Error {
        code: String,
        message: String,
    },
    Refused {
        ours: u8,
        theirs: u8,
    },
}

fn part(doc: &str, bytes: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + doc.len() + bytes.len());
    p.extend_from_slice(&(doc.len() as u16).to_le_bytes());
    p.extend_from_slice(doc.as_bytes());
    p.extend_from_slice(bytes);
    p
}

fn read_part(p: &[u8]) -> Result<(DocId, Vec<u8>), MessageError> {
    if p.len() < 2 {
        return Err(MessageError::Part("too short".into()));
    }
    let n = u16::from_le_bytes([p[0], p[1]]) as usize;
    let id = p
        .get(2..2 + n)
        .ok_or_else(|| MessageError::Part("doc id past end".into()))?;
    let id = std::str::from_utf8(id)
        .map_err(|_| MessageError::Part("doc id not UTF-8".into()))?
        .parse::<DocId>()
        .map_err(|e| MessageError::Part(e.to_string()))?;
    Ok((id, p[2 + n..].to_vec()))
}

/// The body of a compact push: `count` · `runs` · (`start` · `len`)×runs · `docs` ·
/// (`id_len` · id)×docs · (`doc` · `len` · change)×count, every number an unsigned LEB128
/// varint. The runs, expanded in order (`start`, `start + 1`, …, `len` of them), are the
/// changes' sequence numbers in push order; `doc` indexes the document table.
pub(crate) mod compact {
    use super::{MAX_PARTS, MessageError};
    use crate::docs::DocId;
    use crate::frame::MAX_FRAME;
    use crate::store::WireChange;

    fn err(what: &str) -> MessageError {
        MessageError::Part(format!("compact push: {what}"))
    }

    fn put(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A reader over the body that never reads past its end.
    struct Reader<'a> {
        rest: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn varint(&mut self) -> Result<u64, MessageError> {
            let mut v: u64 = 0;
            for i in 0..10 {
                let (&b, rest) = self.rest.split_first().ok_or_else(|| err("cut varint"))?;
                self.rest = rest;
                let bits = u64::from(b & 0x7f);
                if i == 9 && b > 1 {
                    return Err(err("varint overflows u64"));
                }
                v |= bits << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(err("varint too long"))
        }

        /// A count or length, at most `max` and at most what the body still holds
        /// (`unit` bytes per item at least), so nothing is allocated for data that is not
        /// there.
        fn len(&mut self, max: usize, unit: usize, what: &str) -> Result<usize, MessageError> {
            let v = self.varint()?;
            let v = usize::try_from(v).map_err(|_| err(what))?;
            if v > max || v.saturating_mul(unit) > self.rest.len() {
                return Err(err(what));
            }
            Ok(v)
        }

        fn bytes(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
            if n > self.rest.len() {
                return Err(err("bytes past the end"));
            }
            let (b, rest) = self.rest.split_at(n);
            self.rest = rest;
            Ok(b)
        }
    }

    /// Encode `changes` (any order, any sequence numbers).
    pub(crate) fn encode(changes: &[(u64, WireChange)]) -> Vec<u8> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (s, _) in changes {
            match runs.last_mut() {
                Some((start, len)) if start.checked_add(*len) == Some(*s) => *len += 1,
                _ => runs.push((*s, 1)),
            }
        }
        let mut ids: Vec<&DocId> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut body = Vec::new();
        for (_, c) in changes {
            let k = *index.entry(&c.doc_id).or_insert_with(|| {
                ids.push(&c.doc_id);
                ids.len() - 1
            });
            put(k as u64, &mut body);
            put(c.bytes.len() as u64, &mut body);
            body.extend_from_slice(&c.bytes);
        }
        let mut out = Vec::with_capacity(body.len() + 16 * ids.len() + 16);
        put(changes.len() as u64, &mut out);
        put(runs.len() as u64, &mut out);
        for (start, len) in runs {
            put(start, &mut out);
            put(len, &mut out);
        }
        put(ids.len() as u64, &mut out);
        for id in ids {
            put(id.as_str().len() as u64, &mut out);
            out.extend_from_slice(id.as_str().as_bytes());
        }
        out.extend_from_slice(&body);
        out
    }

    /// Decode a body; a count, run, index or length that does not add up is an error,
    /// never a shorter push.
    pub(crate) fn decode(body: &[u8]) -> Result<Vec<(u64, WireChange)>, MessageError> {
        let mut r = Reader { rest: body };
        // Each change takes at least two bytes (its index and its length).
        let count = r.len(MAX_PARTS, 2, "change count")?;
        let nruns = r.len(count, 2, "run count")?;
        let mut seqs = Vec::with_capacity(count);
        for _ in 0..nruns {
            let start = r.varint()?;
            let len = r.len(count - seqs.len(), 0, "run longer than the push")?;
            if len == 0 {
                return Err(err("empty run"));
            }
            let last = start
                .checked_add(len as u64 - 1)
                .ok_or_else(|| err("run past u64"))?;
            seqs.extend(start..=last);
        }
        if seqs.len() != count {
            return Err(err("runs do not cover the push"));
        }
        let ndocs = r.len(count, 2, "document count")?;
        let mut ids = Vec::with_capacity(ndocs);
        for _ in 0..ndocs {
            let n = r.len(u16::MAX as usize, 1, "document id length")?;
            let id = std::str::from_utf8(r.bytes(n)?)
                .map_err(|_| err("document id not UTF-8"))?
                .parse::<DocId>()
                .map_err(|e| err(&e.to_string()))?;
            ids.push(id);
        }
        let mut changes = Vec::with_capacity(count);
        for seq in seqs {
            let k = r.len(ndocs.saturating_sub(1), 0, "document index")?;
            let doc_id = ids.get(k).ok_or_else(|| err("document index"))?.clone();
            let n = r.len(MAX_FRAME, 1, "change length")?;
            let bytes = r.bytes(n)?.to_vec();
            changes.push((seq, WireChange { doc_id, bytes }));
        }
        if !r.rest.is_empty() {
            return Err(err("trailing bytes"));
        }
        Ok(changes)
    }
}

fn hex32(h: &[u8; 32]) -> String {
    hex::encode(h)
}

fn unhex32(s: &str) -> Result<[u8; 32], MessageError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| MessageError::Header(e.to_string()))?;
    Ok(out)
}

fn seal(header: &Header, parts: &[Vec<u8>], version: u8) -> Vec<u8> {
    // Serialising our own plain header cannot fail.
    let h = serde_json::to_vec(header).unwrap_or_default();
    let mut b = BatchBuilder::new(frame::MAX_BATCH_RAW);
    b.push(&h);
    for p in parts {
        b.push(p);
    }
    b.finish(version)
}

fn open(bytes: &[u8]) -> Result<(Header, Vec<Vec<u8>>), MessageError> {
    let v = frame::batch_version(bytes)?;
    if v == REFUSAL_VERSION {
        let frames = frame::decode_batch(bytes, REFUSAL_VERSION)?;
        let h = frames.first().ok_or(MessageError::Empty)?;
        let h: Header =
            serde_json::from_slice(h).map_err(|e| MessageError::Header(e.to_string()))?;
        return Ok((h, Vec::new()));
    }
    if v != PROTOCOL_VERSION {
        return Err(MessageError::VersionRefused {
            ours: PROTOCOL_VERSION,
            theirs: v,
        });
    }
    let mut frames = frame::decode_batch(bytes, PROTOCOL_VERSION)?;
    if frames.is_empty() {
        return Err(MessageError::Empty);
    }
    if frames.len() > MAX_PARTS + 1 {
        return Err(MessageError::Part("too many parts".into()));
    }
    let parts = frames.split_off(1);
    let h: Header =
        serde_json::from_slice(&frames[0]).map_err(|e| MessageError::Header(e.to_string()))?;
    Ok((h, parts))
}

impl Request {
    /// Encode for the wire; a push in the framed form, which every hub reads.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(PushForm::Framed)
    }

    /// Encode for the wire, a push in `form` (other requests have one form).
    pub fn encode_with(&self, form: PushForm) -> Vec<u8> {
        match self {
            Request::Push { actor, changes } if form == PushForm::Compact => {
                let body = compact::encode(changes);
                seal(
                    &Header::PushCompact {
                        actor: actor.clone(),
                    },
                    &body
                        .chunks(frame::MAX_FRAME)
                        .map(<[u8]>::to_vec)
                        .collect::<Vec<_>>(),
                    PROTOCOL_VERSION,
                )
            }
            Request::Push { actor, changes } if form == PushForm::Packed => seal(
                &Header::PushPacked {
                    actor: actor.clone(),
                },
                &super::pack::encode(changes)
                    .chunks(frame::MAX_FRAME)
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>(),
                PROTOCOL_VERSION,
            ),
            Request::Hello {
                center,
                actor,
                epoch_seen,
                hlc,
                wall_ms,
                done_at,
            } => seal(
                &Header::Hello {
                    center: center.clone(),
                    actor: actor.clone(),
                    epoch_seen: epoch_seen.clone(),
                    hlc: hlc.clone(),
                    wall_ms: *wall_ms,
                    done_at: *done_at,
                },
                &[],
                PROTOCOL_VERSION,
            ),
            Request::Push { actor, changes } => seal(
                &Header::Push {
                    actor: actor.clone(),
                    seqs: changes.iter().map(|(s, _)| *s).collect(),
                },
                &changes
                    .iter()
                    .map(|(_, c)| part(c.doc_id.as_str(), &c.bytes))
                    .collect::<Vec<_>>(),
                PROTOCOL_VERSION,
            ),
            Request::Pull { cursor, max_bytes } => seal(
                &Header::Pull {
                    cursor: *cursor,
                    max_bytes: *max_bytes,
                },
                &[],
                PROTOCOL_VERSION,
            ),
            Request::RepairRanges { buckets } => seal(
                &Header::RepairRanges {
                    buckets: buckets.iter().map(hex32).collect(),
                },
                &[],
                PROTOCOL_VERSION,
            ),
            Request::RepairList { buckets } => seal(
                &Header::RepairList {
                    buckets: buckets.clone(),
                },
                &[],
                PROTOCOL_VERSION,
            ),
            Request::RepairSync { msgs } => seal(
                &Header::RepairSync {
                    has_msg: Vec::new(),
                    heads: Vec::new(),
                    ids: Vec::new(),
                },
                &msgs
                    .iter()
                    .map(|(d, m)| part(d.as_str(), m))
                    .collect::<Vec<_>>(),
                PROTOCOL_VERSION,
            ),
        }
    }

    /// Decode from the wire; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Request, MessageError> {
        let (h, parts) = open(bytes)?;
        Ok(match h {
            Header::Hello {
                center,
                actor,
                epoch_seen,
                hlc,
                wall_ms,
                done_at,
            } => Request::Hello {
                center,
                actor,
                epoch_seen,
                hlc,
                wall_ms,
                done_at,
            },
            Header::Push { actor, seqs } => {
                if seqs.len() != parts.len() {
                    return Err(MessageError::Part("seq count differs from parts".into()));
                }
                let mut changes = Vec::with_capacity(parts.len());
                for (s, p) in seqs.into_iter().zip(parts) {
                    let (doc_id, bytes) = read_part(&p)?;
                    changes.push((s, WireChange { doc_id, bytes }));
                }
                Request::Push { actor, changes }
            }
            Header::PushCompact { actor } => Request::Push {
                actor,
                changes: compact::decode(&parts.concat())?,
            },
            Header::PushPacked { actor } => Request::Push {
                actor,
                changes: super::pack::decode(&parts.concat())?,
            },
            Header::Pull { cursor, max_bytes } => Request::Pull { cursor, max_bytes },
            Header::RepairRanges { buckets } => Request::RepairRanges {
                buckets: buckets
                    .iter()
                    .map(|s| unhex32(s))
                    .collect::<Result<_, _>>()?,
            },
            Header::RepairList { buckets } => Request::RepairList { buckets },
            Header::RepairSync { .. } => Request::RepairSync {
                msgs: parts
                    .iter()
                    .map(|p| read_part(p))
                    .collect::<Result<_, _>>()?,
            },
            _ => return Err(MessageError::Header("not a request".into())),
        })
    }
}

impl Response {
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let v = PROTOCOL_VERSION;
        match self {
            Response::Welcome {
                epoch,
                push_acked,
                bulk_acked,
                feed_len,
                hlc,
                wall_ms,
                compact_push,
                packed_push,
            } => seal(
                &Header::Welcome {
                    epoch: epoch.clone(),
                    push_acked: *push_acked,
                    bulk_acked: *bulk_acked,
                    feed_len: *feed_len,
                    hlc: hlc.clone(),
                    wall_ms: *wall_ms,
                    compact_push: *compact_push,
                    packed_push: *packed_push,
                },
                &[],
                v,
            ),
            Response::PushAck { acked, refused } => seal(
                &Header::PushAck {
                    acked: *acked,
                    refused: refused.clone(),
                },
                &[],
                v,
            ),
            Response::PullBatch {
                changes,
                snapshots,
                next_cursor,
                more,
            } => seal(
                &Header::PullBatch {
                    next_cursor: *next_cursor,
                    more: *more,
                    snapshots: snapshots.len(),
                },
                &changes
                    .iter()
                    .chain(snapshots)
                    .map(|c| part(c.doc_id.as_str(), &c.bytes))
                    .collect::<Vec<_>>(),
                v,
            ),
            Response::RepairDiff { differing } => seal(
                &Header::RepairDiff {
                    differing: differing.clone(),
                },
                &[],
                v,
            ),
            Response::RepairDocs { docs, buckets } => seal(
                &Header::RepairDocs {
                    buckets: *buckets,
                    ids: docs.iter().map(|(d, _)| d.to_string()).collect(),
                    heads: docs
                        .iter()
                        .map(|(_, h)| h.iter().map(hex32).collect())
                        .collect(),
                },
                &[],
                v,
            ),
            Response::RepairSync { msgs } => seal(
                &Header::RepairSync {
                    has_msg: msgs.iter().map(|(_, m, _)| m.is_some()).collect(),
                    heads: msgs
                        .iter()
                        .map(|(_, _, h)| h.iter().map(hex32).collect())
                        .collect(),
                    ids: msgs.iter().map(|(d, _, _)| d.to_string()).collect(),
                },
                &msgs
                    .iter()
                    .filter_map(|(d, m, _)| m.as_ref().map(|m| part(d.as_str(), m)))
                    .collect::<Vec<_>>(),
                v,
            ),
            Response::Error { code, message } => seal(
                &Header::Error {
                    code: code.as_str().to_string(),
                    message: message.clone(),
                },
                &[],
                v,
            ),
            Response::VersionRefused { ours, theirs } => seal(
                &Header::Refused {
                    ours: *ours,
                    theirs: *theirs,
                },
                &[],
                REFUSAL_VERSION,
            ),
        }
    }

    /// Decode from the wire; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Response, MessageError> {
        let (h, parts) = open(bytes)?;
        let heads = |hs: Vec<String>| -> Result<Vec<[u8; 32]>, MessageError> {
            hs.iter().map(|s| unhex32(s)).collect()
        };
        Ok(match h {
            Header::Welcome {
                epoch,
                push_acked,
                bulk_acked,
                feed_len,
                hlc,
                wall_ms,
                compact_push,
                packed_push,
            } => Response::Welcome {
                epoch,
                push_acked,
                bulk_acked,
                feed_len,
                hlc,
                wall_ms,
                compact_push,
                packed_push,
            },
            Header::PushAck { acked, refused } => Response::PushAck { acked, refused },
            Header::PullBatch {
                next_cursor,
                more,
                snapshots,
            } => {
                let mut all: Vec<WireChange> = parts
                    .iter()
                    .map(|p| read_part(p).map(|(doc_id, bytes)| WireChange { doc_id, bytes }))
                    .collect::<Result<_, _>>()?;
                if snapshots > all.len() {
                    return Err(MessageError::Header("more snapshots than parts".into()));
                }
                let snapshots = all.split_off(all.len() - snapshots);
                Response::PullBatch {
                    changes: all,
                    snapshots,
                    next_cursor,
                    more,
                }
            }
            Header::RepairDiff { differing } => Response::RepairDiff { differing },
            Header::RepairDocs {
                ids,
                heads: hs,
                buckets,
            } => {
                if ids.len() != hs.len() {
                    return Err(MessageError::Header("ids and heads differ".into()));
                }
                let mut docs = Vec::with_capacity(ids.len());
                for (id, h) in ids.into_iter().zip(hs) {
                    docs.push((
                        id.parse().map_err(|e: crate::docs::DocError| {
                            MessageError::Header(e.to_string())
                        })?,
                        heads(h)?,
                    ));
                }
                Response::RepairDocs { docs, buckets }
            }
            Header::RepairSync {
                has_msg,
                heads: hs,
                ids,
            } => {
                if ids.len() != hs.len() || ids.len() != has_msg.len() {
                    return Err(MessageError::Header("repair lists differ in length".into()));
                }
                let mut parts = parts.into_iter();
                let mut msgs = Vec::with_capacity(ids.len());
                for ((id, h), has) in ids.into_iter().zip(hs).zip(has_msg) {
                    let id: DocId = id
                        .parse()
                        .map_err(|e: crate::docs::DocError| MessageError::Header(e.to_string()))?;
                    let msg = if has {
                        let p = parts
                            .next()
                            .ok_or_else(|| MessageError::Part("missing part".into()))?;
                        let (pid, m) = read_part(&p)?;
                        if pid != id {
                            return Err(MessageError::Part("part for another document".into()));
                        }
                        Some(m)
                    } else {
                        None
                    };
                    msgs.push((id, msg, heads(h)?));
                }
                Response::RepairSync { msgs }
            }
            Header::Error { code, message } => Response::Error {
                code: ErrorCode::parse(&code),
                message,
            },
            Header::Refused { ours, theirs } => Response::VersionRefused { ours, theirs },
            _ => return Err(MessageError::Header("not a response".into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_push() -> Request {
        Request::Push {
            actor: "abcd".into(),
            changes: vec![(
                7,
                WireChange {
                    doc_id: DocId::catalog(),
                    bytes: vec![1, 2, 3],
                },
            )],
        }
    }

    #[test]
    fn roundtrips() {
        let reqs = [
            sample_push(),
            Request::Pull {
                cursor: 3,
                max_bytes: 1000,
            },
            Request::RepairRanges {
                buckets: vec![[7; 32]; 3],
            },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let resps = [
            Response::RepairSync {
                msgs: vec![
                    (DocId::catalog(), Some(vec![9, 9]), vec![[1; 32]]),
                    (DocId::catalog(), None, vec![]),
                ],
            },
            Response::VersionRefused { ours: 1, theirs: 2 },
            Response::PushAck {
                acked: 4,
                refused: vec![],
            },
        ];
        for r in resps {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn other_version_is_refused_clearly() {
        let mut b = sample_push().encode();
        b[4] = 2;
        assert!(matches!(
            Request::decode(&b),
            Err(MessageError::VersionRefused { ours: 1, theirs: 2 })
        ));
    }

    #[test]
    fn cut_message_is_an_error() {
        let b = sample_push().encode();
        for cut in 0..b.len() {
            assert!(Request::decode(&b[..cut]).is_err());
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Request::decode(&data);
            let _ = Response::decode(&data);
        }
    }

    fn doc(k: u8) -> DocId {
        use crate::model::ids::{CaseNo, CenterId};
        let center: CenterId = "midan".parse().unwrap();
        match k % 4 {
            0 => DocId::catalog(),
            3 => DocId::citizen(&"01020304050".parse().unwrap()),
            n => DocId::case(
                Some(&center),
                &CaseNo::new("MID", 2026, u32::from(n)).unwrap(),
            ),
        }
    }

    fn arb_push() -> impl Strategy<Value = Request> {
        let change = (
            any::<u64>(),
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..40),
        );
        (
            proptest::collection::vec(change, 0..30),
            any::<bool>(),
            0u64..u64::MAX - 100,
        )
            .prop_map(|(cs, runs, base)| Request::Push {
                actor: "ab".into(),
                changes: cs
                    .into_iter()
                    .enumerate()
                    // Either consecutive sequence numbers (runs) or arbitrary ones.
                    .map(|(i, (s, d, bytes))| {
                        let seq = if runs { base + i as u64 } else { s };
                        let doc_id = doc(d);
                        (seq, WireChange { doc_id, bytes })
                    })
                    .collect(),
            })
    }

    fn changes(n: u64) -> Vec<(u64, WireChange)> {
        (0..n)
            .map(|i| {
                (
                    100 + i,
                    WireChange {
                        doc_id: doc(i as u8),
                        bytes: vec![i as u8; 3 + i as usize],
                    },
                )
            })
            .collect()
    }

    #[test]
    fn both_push_forms_decode_to_the_same_request() {
        let mut cs = changes(9);
        cs.push((7, cs[0].1.clone()));
        let r = Request::Push {
            actor: "abcd".into(),
            changes: cs,
        };
        let framed = r.encode_with(PushForm::Framed);
        let compact = r.encode_with(PushForm::Compact);
        assert_ne!(framed, compact);
        assert_eq!(Request::decode(&framed).unwrap(), r);
        assert_eq!(Request::decode(&compact).unwrap(), r);
        let empty = Request::Push {
            actor: "abcd".into(),
            changes: vec![],
        };
        assert_eq!(
            Request::decode(&empty.encode_with(PushForm::Compact)).unwrap(),
            empty
        );
    }

    #[test]
    fn compact_body_layout() {
        let body = compact::encode(&changes(2));
        // count 2 · 1 run (100, 2) · 2 docs · ids · (0, 3, bytes) · (1, 4, bytes)
        let cat = DocId::catalog();
        let case = doc(1);
        let mut want = vec![2, 1, 100, 2, 2, cat.as_str().len() as u8];
        want.extend_from_slice(cat.as_str().as_bytes());
        want.push(case.as_str().len() as u8);
        want.extend_from_slice(case.as_str().as_bytes());
        want.extend_from_slice(&[0, 3, 0, 0, 0, 1, 4, 1, 1, 1, 1]);
        assert_eq!(body, want);
        assert_eq!(compact::decode(&body).unwrap(), changes(2));
    }

    #[test]
    fn compact_body_that_does_not_add_up_is_an_error() {
        let good = compact::encode(&changes(3));
        assert!(compact::decode(&good).is_ok());
        // Every cut, and one trailing byte.
        for cut in 0..good.len() {
            assert!(compact::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(compact::decode(&long).is_err());
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            compact::decode(&b).is_err()
        };
        // More changes announced than the runs give, fewer, a longer run, an empty run.
        assert!(bad(&|b| b[0] = 4));
        assert!(bad(&|b| b[0] = 2));
        assert!(bad(&|b| b[3] = 4));
        assert!(bad(&|b| b[3] = 0));
        // A document index past the table (the first change's index byte).
        let first = good.len() - (1 + 1 + 3) - (1 + 1 + 4) - (1 + 1 + 5);
        assert_eq!(good[first], 0);
        assert!(bad(&|b| b[first] = 3));
        // A change length past the end, or short of it (bytes left over).
        assert!(bad(&|b| b[first + 1] = 100));
        assert!(bad(&|b| b[first + 1] = 2));
        // A count far beyond the cap, and an overlong varint.
        assert!(compact::decode(&[0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(compact::decode(&[0x80; 11]).is_err());
        // A run past u64.
        assert!(
            compact::decode(&[
                2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2
            ])
            .is_err()
        );
    }

    #[test]
    fn cut_compact_push_is_an_error() {
        let r = Request::Push {
            actor: "abcd".into(),
            changes: changes(5),
        };
        let b = r.encode_with(PushForm::Compact);
        for cut in 0..b.len() {
            assert!(Request::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn welcome_without_compact_push_reads_false() {
        let old = serde_json::json!({
            "type": "welcome", "epoch": "e", "push_acked": 1, "feed_len": 2,
            "hlc": "h", "wall_ms": 3
        });
        let b = frame::encode_batch([serde_json::to_vec(&old).unwrap().as_slice()], 1);
        assert!(matches!(
            Response::decode(&b).unwrap(),
            Response::Welcome {
                compact_push: false,
                packed_push: false,
                ..
            }
        ));
    }

    #[test]
    fn cut_packed_push_is_an_error() {
        let r = Request::Push {
            actor: "abcd".into(),
            changes: changes(5),
        };
        let b = r.encode_with(PushForm::Packed);
        assert!(matches!(message_type(&b).as_deref(), Some("push_packed")));
        for cut in 0..b.len() {
            assert!(Request::decode(&b[..cut]).is_err());
        }
    }

    fn message_type(b: &[u8]) -> Option<String> {
        let frames = frame::decode_batch(b, PROTOCOL_VERSION).ok()?;
        let h: serde_json::Value = serde_json::from_slice(frames.first()?).ok()?;
        Some(h.get("type")?.as_str()?.to_string())
    }

    proptest! {
        #[test]
        fn push_roundtrips_in_both_forms(r in arb_push()) {
            prop_assert_eq!(&Request::decode(&r.encode_with(PushForm::Framed)).unwrap(), &r);
            prop_assert_eq!(&Request::decode(&r.encode_with(PushForm::Compact)).unwrap(), &r);
            prop_assert_eq!(&Request::decode(&r.encode_with(PushForm::Packed)).unwrap(), &r);
        }

        #[test]
        fn compact_decode_of_random_bytes_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let _ = compact::decode(&data);
            // The same bytes as the body of a well-formed message.
            let b = seal(&Header::PushCompact { actor: "ab".into() }, &[data], PROTOCOL_VERSION);
            let _ = Request::decode(&b);
        }

        #[test]
        fn compact_decode_of_a_mutated_body_never_panics(
            r in arb_push(), at in any::<usize>(), byte in any::<u8>()
        ) {
            let Request::Push { changes, .. } = r else { unreachable!() };
            let mut body = compact::encode(&changes);
            let i = at % body.len();
            body[i] = byte;
            if let Ok(got) = compact::decode(&body) {
                prop_assert!(got.len() <= MAX_PARTS);
            }
        }
    }
}
