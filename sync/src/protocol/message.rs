//! The sync messages and their encoding (see `docs/PROTOCOL.md` for byte layouts).
//!
//! A message is one [`crate::frame`] batch whose version byte is [`PROTOCOL_VERSION`]:
//! frame 0 is a JSON header (the message type and its small fields), frames 1.. are binary
//! parts, each `doc_id_len: u16 LE` · `doc_id` · `bytes` (an automerge change or sync
//! message). A refusal of the version is a batch with version byte 0, which every version
//! of the protocol can read.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::docs::DocId;
use crate::frame::{self, BatchBuilder, FrameError};
use crate::store::WireChange;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Version byte of the universal refusal batch.
pub const REFUSAL_VERSION: u8 = 0;
/// Most parts in one message.
pub const MAX_PARTS: usize = 100_000;

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
    RepairDocs {
        docs: Vec<(DocId, Vec<[u8; 32]>)>,
    },
    /// Replies per document: the hub's sync message (if any) and its heads after.
    RepairSync {
        msgs: Vec<RepairReply>,
    },
    /// The request was understood but failed.
    Error {
        code: String,
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
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        match self {
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
            } => seal(
                &Header::Welcome {
                    epoch: epoch.clone(),
                    push_acked: *push_acked,
                    bulk_acked: *bulk_acked,
                    feed_len: *feed_len,
                    hlc: hlc.clone(),
                    wall_ms: *wall_ms,
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
            Response::RepairDocs { docs } => seal(
                &Header::RepairDocs {
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
                    code: code.clone(),
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
            } => Response::Welcome {
                epoch,
                push_acked,
                bulk_acked,
                feed_len,
                hlc,
                wall_ms,
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
            Header::RepairDocs { ids, heads: hs } => {
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
                Response::RepairDocs { docs }
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
            Header::Error { code, message } => Response::Error { code, message },
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
}
