//! [`DocRows`]: the rows a [`DocStore`](super::DocStore) keeps — changes, snapshots and
//! document metadata — behind a trait, so one document store runs over the node's and
//! the hub's SQLite file (the implementation here, for `rusqlite` connections and
//! transactions) and over the hub's PostgreSQL database (in the hub crate).
//!
//! Every method runs inside the caller's transaction: a document's new changes, its
//! metadata, the caller's projection and a sync cursor commit together. No method hands
//! out a type of its engine.
//!
//! Invariants an implementation keeps: a change hash is stored once (`insert_change`
//! answers `None` for a known hash); `seq` grows in the order rows are stored, so the
//! newest row of a document is the one with the highest `seq`.

use automerge::ChangeHash;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Lane, Result, encode_heads};
use crate::docs::{DocId, Owner};

/// A change row to store.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRow<'a> {
    pub doc_id: &'a DocId,
    pub hash: &'a ChangeHash,
    /// The change's actor (bytes).
    pub actor: &'a [u8],
    /// Minted here (pushed later) rather than received.
    pub local: bool,
    /// Who sent it (the hub records the pushing center).
    pub origin: Option<&'a str>,
    /// The change's `raw_bytes()`.
    pub bytes: &'a [u8],
}

/// A document's stored rows: its snapshot (if any was asked for and exists) and the
/// changes stored after it, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDoc {
    pub snapshot: Option<Vec<u8>>,
    pub changes: Vec<Vec<u8>>,
}

/// A document's new metadata after a write: its heads and the highest `seq` stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMeta<'a> {
    pub doc_id: &'a DocId,
    pub heads: &'a [ChangeHash],
    pub seq: u64,
}

/// The `owner` column of `doc_meta`: `hub`, empty for shared documents, or the center.
pub fn owner_column(id: &DocId) -> String {
    match id.owner() {
        Owner::Hub => "hub".to_string(),
        Owner::Shared => String::new(),
        Owner::Center(c) => c.as_str().to_string(),
    }
}

/// The storage of documents, inside the caller's transaction (see the module docs).
pub trait DocRows {
    /// Hash of the newest stored change of a document (`None`: no rows).
    fn last_hash(&self, id: &DocId) -> Result<Option<Vec<u8>>>;
    /// A document's snapshot (when `with_snapshot`) and every change stored after it.
    fn stored_doc(&self, id: &DocId, with_snapshot: bool) -> Result<StoredDoc>;
    /// The document a change hash is stored for, if it is stored.
    fn change_doc(&self, hash: &ChangeHash) -> Result<Option<String>>;
    /// Store a change row; its `seq`, or `None` when the hash is already stored.
    fn insert_change(&self, row: &ChangeRow<'_>) -> Result<Option<u64>>;
    /// Store change rows in order (one answer per row, as [`Self::insert_change`]). An
    /// engine with costly round trips stores them in one statement.
    fn insert_changes(&self, rows: &[ChangeRow<'_>]) -> Result<Vec<Option<u64>>> {
        rows.iter().map(|r| self.insert_change(r)).collect()
    }
    /// Delete rows just stored by this transaction.
    fn delete_changes(&self, seqs: &[u64]) -> Result<()>;
    /// Write documents' metadata (`last_seq` never goes down).
    fn put_meta(&self, metas: &[DocMeta<'_>]) -> Result<()>;
    /// Highest `seq` stored for a document.
    fn top_seq(&self, id: &DocId) -> Result<Option<u64>>;
    /// Store a compacted snapshot of a document covering its changes up to `upto`.
    fn put_snapshot(&self, id: &DocId, bytes: &[u8], heads: &[ChangeHash], upto: u64)
    -> Result<()>;
    /// Documents with at least `min_new` changes after their snapshot (at most `limit`).
    fn compaction_due(&self, min_new: u64, limit: usize) -> Result<Vec<String>>;
    /// Whether `actor` is one of this database's own incarnations.
    fn is_own_actor(&self, actor: &[u8]) -> Result<bool>;
}

impl DocRows for Connection {
    fn last_hash(&self, id: &DocId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .prepare_cached("SELECT hash FROM changes WHERE doc_id=?1 ORDER BY seq DESC LIMIT 1")?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()?)
    }

    fn stored_doc(&self, id: &DocId, with_snapshot: bool) -> Result<StoredDoc> {
        let snap: Option<(Vec<u8>, i64)> = if with_snapshot {
            self.prepare_cached("SELECT bytes, upto_seq FROM snapshots WHERE doc_id=?1")?
                .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
        } else {
            None
        };
        let (snapshot, after) = match snap {
            Some((bytes, upto)) => (Some(bytes), upto),
            None => (None, 0),
        };
        let mut stmt = self
            .prepare_cached("SELECT bytes FROM changes WHERE doc_id=?1 AND seq>?2 ORDER BY seq")?;
        let changes = stmt
            .query_map(params![id.as_str(), after], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<_, _>>()?;
        Ok(StoredDoc { snapshot, changes })
    }

    fn change_doc(&self, hash: &ChangeHash) -> Result<Option<String>> {
        Ok(self
            .prepare_cached("SELECT doc_id FROM changes WHERE hash=?1")?
            .query_row([&hash.0[..]], |r| r.get(0))
            .optional()?)
    }

    fn insert_change(&self, row: &ChangeRow<'_>) -> Result<Option<u64>> {
        let n = self
            .prepare_cached(
                "INSERT OR IGNORE INTO changes(doc_id, hash, actor, local, origin, bytes, lane)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                row.doc_id.as_str(),
                &row.hash.0[..],
                row.actor,
                row.local,
                row.origin,
                row.bytes,
                Lane::of(row.doc_id).as_i64()
            ])?;
        Ok((n > 0).then(|| self.last_insert_rowid() as u64))
    }

    fn delete_changes(&self, seqs: &[u64]) -> Result<()> {
        let mut del = self.prepare_cached("DELETE FROM changes WHERE seq=?1")?;
        for s in seqs {
            del.execute([*s as i64])?;
        }
        Ok(())
    }

    fn put_meta(&self, metas: &[DocMeta<'_>]) -> Result<()> {
        let mut stmt = self.prepare_cached(
            "INSERT INTO doc_meta(doc_id, kind, owner, heads, bucket, last_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(doc_id) DO UPDATE SET heads=?4, last_seq=max(last_seq, ?6)",
        )?;
        for m in metas {
            stmt.execute(params![
                m.doc_id.as_str(),
                m.doc_id.kind().as_str(),
                owner_column(m.doc_id),
                encode_heads(m.heads),
                super::bucket_of(m.doc_id.as_str()),
                m.seq as i64
            ])?;
        }
        Ok(())
    }

    fn top_seq(&self, id: &DocId) -> Result<Option<u64>> {
        let top: Option<i64> = self.query_row(
            "SELECT max(seq) FROM changes WHERE doc_id=?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        Ok(top.map(|t| t.max(0) as u64))
    }

    fn put_snapshot(
        &self,
        id: &DocId,
        bytes: &[u8],
        heads: &[ChangeHash],
        upto: u64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO snapshots(doc_id, bytes, heads, upto_seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(doc_id) DO UPDATE SET bytes=?2, heads=?3, upto_seq=?4",
            params![id.as_str(), bytes, encode_heads(heads), upto as i64],
        )?;
        Ok(())
    }

    fn compaction_due(&self, min_new: u64, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self.prepare(
            "SELECT c.doc_id FROM changes c LEFT JOIN snapshots s ON s.doc_id=c.doc_id
             WHERE c.seq > coalesce(s.upto_seq, 0)
             GROUP BY c.doc_id HAVING count(*) >= ?1 LIMIT ?2",
        )?;
        let ids = stmt
            .query_map(params![min_new as i64, limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    fn is_own_actor(&self, actor: &[u8]) -> Result<bool> {
        super::is_own_actor(self, actor)
    }
}

/// A SQLite transaction or savepoint is its connection (`rusqlite` derefs them to it).
macro_rules! rows_through_deref {
    ($t:ty) => {
        impl DocRows for $t {
            fn last_hash(&self, id: &DocId) -> Result<Option<Vec<u8>>> {
                (**self).last_hash(id)
            }
            fn stored_doc(&self, id: &DocId, with_snapshot: bool) -> Result<StoredDoc> {
                (**self).stored_doc(id, with_snapshot)
            }
            fn change_doc(&self, hash: &ChangeHash) -> Result<Option<String>> {
                (**self).change_doc(hash)
            }
            fn insert_change(&self, row: &ChangeRow<'_>) -> Result<Option<u64>> {
                (**self).insert_change(row)
            }
            fn delete_changes(&self, seqs: &[u64]) -> Result<()> {
                (**self).delete_changes(seqs)
            }
            fn put_meta(&self, metas: &[DocMeta<'_>]) -> Result<()> {
                (**self).put_meta(metas)
            }
            fn top_seq(&self, id: &DocId) -> Result<Option<u64>> {
                (**self).top_seq(id)
            }
            fn put_snapshot(
                &self,
                id: &DocId,
                bytes: &[u8],
                heads: &[ChangeHash],
                upto: u64,
            ) -> Result<()> {
                (**self).put_snapshot(id, bytes, heads, upto)
            }
            fn compaction_due(&self, min_new: u64, limit: usize) -> Result<Vec<String>> {
                (**self).compaction_due(min_new, limit)
            }
            fn is_own_actor(&self, actor: &[u8]) -> Result<bool> {
                (**self).is_own_actor(actor)
            }
        }
    };
}

rows_through_deref!(rusqlite::Transaction<'_>);
rows_through_deref!(rusqlite::Savepoint<'_>);
