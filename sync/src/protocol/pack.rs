//! The packed push form (`push_packed`, docs/PROTOCOL.md): the compact push with the
//! bytes of each automerge change that the hub can rebuild left out.
//!
//! An automerge change chunk is `magic · checksum · type · len · data`, and its data
//! starts with the hashes of the changes it depends on (32 bytes each), its actor id, its
//! sequence number, start op and timestamp. The hashes and the checksum are SHA-256
//! output, so zstd cannot shrink them: on a center-day they are close to half of the
//! compressed push. In this form:
//! - a dependency on a change earlier in the same push is a back-reference (how many
//!   changes back), which the decoder resolves by hashing the change it already rebuilt;
//!   only a dependency outside the push travels as its 32 bytes;
//! - the checksum is recomputed, the magic bytes and chunk type are implied;
//! - the actor id is an index into a table built as the push goes;
//! - the timestamp is the difference from the previous packed change's.
//!
//! **Exact by construction.** The decoder rebuilds the chunk byte for byte from those
//! fields and the rest of the data, copied verbatim. The encoder runs that same rebuild on
//! every change it packs and compares it with the original: a change that does not come
//! back identical (a compressed chunk, a non-minimal LEB128, anything this code does not
//! understand) travels verbatim. So the hub stores exactly the bytes the center sent —
//! the same changes, the same hashes, the same heads.
//!
//! Body, every number an unsigned LEB128 varint unless said otherwise:
//!
//! `count` · `runs` · (`start` · `len`)×runs · `docs` · (`id_len` · id)×docs ·
//! (`doc` · record)×count, where a record is either `0` · `len` · change bytes
//! (verbatim), or `1` · `ndeps` · dep×ndeps · `actor` · `seq` · `start_op` · `dtime` ·
//! `rest_len` · rest (packed). A dep is `0` · 32 hash bytes, or `k` ≥ 1: the hash of the
//! change `k` records back. `actor` is `0` · `len` · bytes (a new actor, appended to the
//! table) or `i` ≥ 1 (table entry `i − 1`). `dtime` is the zigzag-encoded difference from
//! the previous packed record's timestamp (0 before the first).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::message::{MAX_PARTS, MessageError};
use crate::docs::DocId;
use crate::frame::{MAX_BATCH_RAW, MAX_FRAME};
use crate::store::WireChange;

/// The first bytes of every automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of an uncompressed change.
const CHANGE_CHUNK: u8 = 1;
/// Most bytes a packed push may rebuild: a back-reference is one byte on the wire and 32
/// in the change, so the output is capped apart from the body's own cap.
pub(crate) const MAX_REBUILT: usize = 2 * MAX_BATCH_RAW;

const VERBATIM: u64 = 0;
const PACKED: u64 = 1;

fn err(what: &str) -> MessageError {
    MessageError::Part(format!("packed push: {what}"))
}

fn put(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A reader that never reads past the end of its bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, MessageError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first().ok_or_else(|| err("cut varint"))?;
            self.rest = rest;
            if i == 9 && b > 1 {
                return Err(err("varint overflows u64"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint too long"))
    }

    /// A signed LEB128 (only for parsing a change on the encoder's side).
    fn signed(&mut self) -> Result<i64, MessageError> {
        let mut v: i64 = 0;
        let mut shift = 0;
        loop {
            let (&b, rest) = self.rest.split_first().ok_or_else(|| err("cut varint"))?;
            self.rest = rest;
            if shift >= 63 && b & 0x7f > 1 && b & 0x7f != 0x7f {
                return Err(err("varint overflows i64"));
            }
            v |= i64::from(b & 0x7f).wrapping_shl(shift);
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Ok(v);
            }
            if shift >= 70 {
                return Err(err("varint too long"));
            }
        }
    }

    /// A count or length, at most `max` and at most what is left (`unit` bytes per
    /// item at least), so nothing is allocated for data that is not there.
    fn len(&mut self, max: usize, unit: usize, what: &str) -> Result<usize, MessageError> {
        let v = usize::try_from(self.varint()?).map_err(|_| err(what))?;
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

/// The fields of a change chunk this form rebuilds; `rest` is copied verbatim.
#[derive(Debug, PartialEq, Eq)]
struct Fields<'a> {
    deps: Vec<[u8; 32]>,
    actor: &'a [u8],
    seq: u64,
    start_op: u64,
    time: i64,
    rest: &'a [u8],
}

/// The hash a back-reference stands for: SHA-256 over the chunk after its magic and
/// checksum (automerge's change hash), for an uncompressed change chunk; `None` for
/// anything else, which is then never referred to.
fn ref_hash(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() < 10 || bytes[..4] != MAGIC || bytes[8] != CHANGE_CHUNK {
        return None;
    }
    Some(Sha256::digest(&bytes[8..]).into())
}

/// Splits an uncompressed change chunk into its fields; `None` if it is not one.
fn split(bytes: &[u8]) -> Option<Fields<'_>> {
    if bytes.len() < 10 || bytes[..4] != MAGIC || bytes[8] != CHANGE_CHUNK {
        return None;
    }
    let mut r = Reader { rest: &bytes[9..] };
    let len = usize::try_from(r.varint().ok()?).ok()?;
    if len != r.rest.len() {
        return None;
    }
    let ndeps = r.len(usize::MAX, 32, "deps").ok()?;
    let mut deps = Vec::with_capacity(ndeps);
    for _ in 0..ndeps {
        deps.push(r.bytes(32).ok()?.try_into().ok()?);
    }
    let n = r.len(usize::MAX, 1, "actor").ok()?;
    let actor = r.bytes(n).ok()?;
    let seq = r.varint().ok()?;
    let start_op = r.varint().ok()?;
    let time = r.signed().ok()?;
    Some(Fields {
        deps,
        actor,
        seq,
        start_op,
        time,
        rest: r.rest,
    })
}

/// The change chunk of `f`, byte for byte as automerge writes it.
fn rebuild(f: &Fields<'_>) -> Vec<u8> {
    let mut data = Vec::with_capacity(32 * f.deps.len() + f.actor.len() + f.rest.len() + 32);
    put(f.deps.len() as u64, &mut data);
    for d in &f.deps {
        data.extend_from_slice(d);
    }
    put(f.actor.len() as u64, &mut data);
    data.extend_from_slice(f.actor);
    put(f.seq, &mut data);
    put(f.start_op, &mut data);
    put_signed(f.time, &mut data);
    data.extend_from_slice(f.rest);
    let mut head = vec![CHANGE_CHUNK];
    put(data.len() as u64, &mut head);
    let hash: [u8; 32] = Sha256::new()
        .chain_update(&head)
        .chain_update(&data)
        .finalize()
        .into();
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&hash[..4]);
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    out
}

/// Encode `changes` (any order, any sequence numbers, any bytes).
pub(crate) fn encode(changes: &[(u64, WireChange)]) -> Vec<u8> {
    let mut out = Vec::new();
    put(changes.len() as u64, &mut out);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (s, _) in changes {
        match runs.last_mut() {
            Some((start, len)) if start.checked_add(*len) == Some(*s) => *len += 1,
            _ => runs.push((*s, 1)),
        }
    }
    put(runs.len() as u64, &mut out);
    for (start, len) in runs {
        put(start, &mut out);
        put(len, &mut out);
    }
    let mut ids: Vec<&DocId> = Vec::new();
    let mut doc_index: HashMap<&DocId, usize> = HashMap::new();
    for (_, c) in changes {
        doc_index.entry(&c.doc_id).or_insert_with(|| {
            ids.push(&c.doc_id);
            ids.len() - 1
        });
    }
    put(ids.len() as u64, &mut out);
    for id in &ids {
        put(id.as_str().len() as u64, &mut out);
        out.extend_from_slice(id.as_str().as_bytes());
    }
    // Position in the push of each change a later one may refer to, by hash.
    let mut by_hash: HashMap<[u8; 32], usize> = HashMap::new();
    let mut actors: HashMap<&[u8], usize> = HashMap::new();
    let mut last_time = 0i64;
    for (i, (_, c)) in changes.iter().enumerate() {
        put(doc_index[&c.doc_id] as u64, &mut out);
        match split(&c.bytes).filter(|f| rebuild(f) == c.bytes) {
            Some(f) => {
                put(PACKED, &mut out);
                put(f.deps.len() as u64, &mut out);
                for d in &f.deps {
                    match by_hash.get(d) {
                        Some(&j) => put((i - j) as u64, &mut out),
                        None => {
                            put(0, &mut out);
                            out.extend_from_slice(d);
                        }
                    }
                }
                match actors.get(f.actor) {
                    Some(&k) => put(k as u64 + 1, &mut out),
                    None => {
                        put(0, &mut out);
                        put(f.actor.len() as u64, &mut out);
                        out.extend_from_slice(f.actor);
                        let k = actors.len();
                        actors.insert(f.actor, k);
                    }
                }
                put(f.seq, &mut out);
                put(f.start_op, &mut out);
                put(zigzag(f.time.wrapping_sub(last_time)), &mut out);
                last_time = f.time;
                put(f.rest.len() as u64, &mut out);
                out.extend_from_slice(f.rest);
            }
            None => {
                put(VERBATIM, &mut out);
                put(c.bytes.len() as u64, &mut out);
                out.extend_from_slice(&c.bytes);
            }
        }
        if let Some(h) = ref_hash(&c.bytes) {
            by_hash.insert(h, i);
        }
    }
    out
}

/// Decode a body; anything that does not add up is an error, never a shorter push.
pub(crate) fn decode(body: &[u8]) -> Result<Vec<(u64, WireChange)>, MessageError> {
    let mut r = Reader { rest: body };
    // Each change takes at least three bytes (document index, form, length or fields).
    let count = r.len(MAX_PARTS, 3, "change count")?;
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
    let mut hashes: Vec<Option<[u8; 32]>> = Vec::with_capacity(count);
    let mut actors: Vec<&[u8]> = Vec::new();
    let mut last_time = 0i64;
    let mut rebuilt = 0usize;
    let mut changes = Vec::with_capacity(count);
    for (i, seq) in seqs.into_iter().enumerate() {
        let k = r.len(ndocs.saturating_sub(1), 0, "document index")?;
        let doc_id = ids.get(k).ok_or_else(|| err("document index"))?.clone();
        let bytes = match r.varint()? {
            VERBATIM => {
                let n = r.len(MAX_FRAME, 1, "change length")?;
                r.bytes(n)?.to_vec()
            }
            PACKED => {
                let ndeps = r.len(MAX_FRAME / 32, 1, "dependency count")?;
                let mut deps = Vec::with_capacity(ndeps);
                for _ in 0..ndeps {
                    let back = r.len(i, 0, "back-reference past the start of the push")?;
                    deps.push(if back == 0 {
                        r.bytes(32)?.try_into().map_err(|_| err("cut hash"))?
                    } else {
                        hashes[i - back]
                            .ok_or_else(|| err("back-reference to a change with no hash"))?
                    });
                }
                let actor = match r.varint()? {
                    0 => {
                        let n = r.len(u16::MAX as usize, 1, "actor length")?;
                        let a = r.bytes(n)?;
                        actors.push(a);
                        a
                    }
                    a => *usize::try_from(a - 1)
                        .ok()
                        .and_then(|a| actors.get(a))
                        .ok_or_else(|| err("actor index"))?,
                };
                let seq = r.varint()?;
                let start_op = r.varint()?;
                let time = last_time.wrapping_add(unzigzag(r.varint()?));
                last_time = time;
                let n = r.len(MAX_FRAME, 1, "change length")?;
                let rest = r.bytes(n)?;
                rebuild(&Fields {
                    deps,
                    actor,
                    seq,
                    start_op,
                    time,
                    rest,
                })
            }
            _ => return Err(err("unknown record form")),
        };
        rebuilt = rebuilt.saturating_add(bytes.len());
        if bytes.len() > MAX_FRAME || rebuilt > MAX_REBUILT {
            return Err(err("rebuilt changes too large"));
        }
        hashes.push(ref_hash(&bytes));
        changes.push((seq, WireChange { doc_id, bytes }));
    }
    if !r.rest.is_empty() {
        return Err(err("trailing bytes"));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ROOT};
    use proptest::prelude::*;

    #[test]
    fn signed_leb128_round_trips() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            1_795_928_400_000,
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = Vec::new();
            put_signed(v, &mut b);
            let mut want = Vec::new();
            leb_reference(v, &mut want);
            assert_eq!(b, want, "{v}");
            assert_eq!(Reader { rest: &b }.signed().unwrap(), v);
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    /// Signed LEB128 as the textbook writes it (and automerge's `leb128` crate).
    fn leb_reference(mut v: i64, out: &mut Vec<u8>) {
        loop {
            let byte = (v as u8) & 0x7f;
            v >>= 7;
            if (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0) {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }

    /// Random histories: `docs` documents, each edited by one or two actors, with forks
    /// and merges, every change committed with automerge's own clock or a given time.
    fn history(seed: u64, docs: usize, edits: usize) -> Vec<(u64, WireChange)> {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n.max(1)
        };
        let mut out = Vec::new();
        let mut seq = 1 + next(1000);
        for d in 0..docs {
            let id: DocId = format!("case:midan:MID-2026-{:06}", d + 1).parse().unwrap();
            let mut a = AutoCommit::new().with_actor(ActorId::from(vec![1, 2, 3, d as u8]));
            let mut b: Option<AutoCommit> = None;
            let mut all: Vec<automerge::Change> = Vec::new();
            for e in 0..edits {
                let key = format!("k{}", next(4));
                match next(5) {
                    0 if b.is_none() => {
                        b = Some(a.fork().with_actor(ActorId::from(vec![9, d as u8])));
                    }
                    1 if b.is_some() => {
                        let mut bb = b.take().unwrap();
                        a.merge(&mut bb).unwrap();
                    }
                    2 if b.is_some() => {
                        let bb = b.as_mut().unwrap();
                        bb.put(&ROOT, key, e as i64).unwrap();
                        bb.commit_with(
                            automerge::transaction::CommitOptions::default()
                                .with_time(next(1 << 40) as i64 - (1 << 39)),
                        );
                    }
                    _ => {
                        a.put(&ROOT, key, "قيمة".repeat(next(200) as usize))
                            .unwrap();
                        a.commit();
                    }
                }
            }
            if let Some(mut bb) = b {
                a.merge(&mut bb).unwrap();
            }
            all.extend(a.get_changes(&[]));
            for c in all {
                out.push((
                    seq,
                    WireChange {
                        doc_id: id.clone(),
                        bytes: c.raw_bytes().to_vec(),
                    },
                ));
                seq += 1 + next(3) / 2;
            }
        }
        // Interleave the documents the way a center's day does, keeping each document's
        // order (a change after its dependencies).
        let mut by_doc: Vec<Vec<(u64, WireChange)>> = Vec::new();
        for c in out {
            match by_doc.iter_mut().find(|v| v[0].1.doc_id == c.1.doc_id) {
                Some(v) => v.push(c),
                None => by_doc.push(vec![c]),
            }
        }
        let mut mixed = Vec::new();
        while by_doc.iter().any(|v| !v.is_empty()) {
            let k = next(by_doc.len() as u64) as usize;
            if !by_doc[k].is_empty() {
                mixed.push(by_doc[k].remove(0));
            }
        }
        for (s, (seq, _)) in (1..).zip(mixed.iter_mut()) {
            *seq = s;
        }
        mixed
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The receiver gets every change byte for byte, in order, with its sequence
        /// number: so the same hashes and, loaded, the same heads as the sender.
        #[test]
        fn packed_pushes_round_trip_exactly(seed in any::<u64>(), docs in 1usize..6, edits in 1usize..14, cut in 0usize..40) {
            let mut changes = history(seed, docs, edits);
            // Any slice of the history: dependencies before the push travel as hashes.
            let cut = cut.min(changes.len().saturating_sub(1));
            changes.drain(..cut);
            let body = encode(&changes);
            let back = decode(&body).unwrap();
            prop_assert_eq!(&back, &changes);
            // Same changes (hashes) and heads on a receiver that loads them as on the
            // sender.
            let load = |cs: &[(u64, WireChange)]| {
                let mut docs: HashMap<DocId, automerge::Automerge> = HashMap::new();
                let mut hashes = Vec::new();
                for (_, c) in cs {
                    let ch = automerge::Change::from_bytes(c.bytes.clone()).unwrap();
                    hashes.push(ch.hash());
                    docs.entry(c.doc_id.clone()).or_default().apply_changes([ch]).unwrap();
                }
                let mut heads: Vec<_> = docs.into_iter().map(|(d, a)| (d, a.get_heads())).collect();
                heads.sort();
                (hashes, heads)
            };
            prop_assert_eq!(load(&back), load(&changes));
        }
    }

    #[test]
    fn the_packed_form_leaves_the_hashes_out() {
        let changes = history(7, 8, 12);
        let raw: usize = changes.iter().map(|(_, c)| c.bytes.len()).sum();
        let body = encode(&changes);
        let deps: usize = changes
            .iter()
            .map(|(_, c)| 32 * split(&c.bytes).unwrap().deps.len())
            .sum();
        assert!(deps > 0);
        assert!(
            body.len() + deps <= raw + 64 * changes.len(),
            "packed {} raw {raw} deps {deps}",
            body.len()
        );
        assert!(
            body.len() < raw - deps / 2,
            "packed {} raw {raw}",
            body.len()
        );
    }

    #[test]
    fn changes_it_does_not_understand_travel_verbatim() {
        let mut changes = history(3, 2, 6);
        let id = changes[0].1.doc_id.clone();
        // A compressed chunk, garbage, an empty change and a non-minimal length.
        let big = changes.iter().map(|(_, c)| c.bytes.len()).max().unwrap();
        assert!(big > 0);
        let first = &changes[0].1.bytes;
        let mut odd = first.clone();
        odd[8] = 2;
        let mut r = Reader { rest: &first[9..] };
        let n = r.varint().unwrap();
        let mut long_len = first[..9].to_vec();
        put(n, &mut long_len);
        *long_len.last_mut().unwrap() |= 0x80;
        long_len.push(0);
        long_len.extend_from_slice(r.rest);
        for bytes in [odd, b"not a change".to_vec(), Vec::new(), long_len] {
            changes.push((
                changes.len() as u64 + 100,
                WireChange {
                    doc_id: id.clone(),
                    bytes,
                },
            ));
        }
        assert_eq!(decode(&encode(&changes)).unwrap(), changes);
    }

    #[test]
    fn a_cut_or_garbled_body_is_an_error_never_a_shorter_push() {
        let changes = history(11, 3, 8);
        let body = encode(&changes);
        for n in 0..body.len() {
            assert!(decode(&body[..n]).is_err(), "cut at {n}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // Flipped bytes either fail or decode to a push of the same length (a flip in
        // change data is the batch CRC's job, not this layer's); never a panic.
        for n in 0..body.len() {
            let mut b = body.clone();
            b[n] ^= 0x55;
            if let Ok(back) = decode(&b) {
                assert_eq!(back.len(), changes.len());
            }
        }
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        // A million changes claimed in a few bytes; a back-reference before the start; a
        // dependency count far past the body.
        let mut b = Vec::new();
        put(1_000_000, &mut b);
        assert!(decode(&b).is_err());
        let mut b = Vec::new();
        for v in [1u64, 1, 1, 1, 7] {
            put(v, &mut b);
        }
        b.extend_from_slice(b"catalog");
        for v in [0u64, PACKED, 1, 5] {
            put(v, &mut b);
        }
        let e = decode(&b).unwrap_err().to_string();
        assert!(e.contains("packed push"), "{e}");
        let mut c = Vec::new();
        for v in [1u64, 1, 1, 1, 7] {
            put(v, &mut c);
        }
        c.extend_from_slice(b"catalog");
        for v in [0u64, PACKED, u32::MAX as u64] {
            put(v, &mut c);
        }
        assert!(decode(&c).is_err());
    }
}
