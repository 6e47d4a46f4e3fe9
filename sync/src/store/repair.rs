//! Heads as stored, and the repair buckets: every document id hashes into one of
//! [`BUCKETS`], and a bucket's hash folds the heads of its documents, so two sides compare
//! their holdings in ranges.

use automerge::ChangeHash;
use rusqlite::Connection;

use super::{Result, StoreError};
use crate::docs::DocId;

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
