//! The documents' rows ([`DocRows`]) and the relay's tables ([`HubTables`]) in
//! PostgreSQL, for one transaction of a worker's connection ([`PgTx`]). See the module
//! docs of [`super`] for the locks that let several processes write at once.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use automerge::ChangeHash;
use markaz_sync::docs::DocId;
use markaz_sync::model::CenterId;
use markaz_sync::protocol::{FeedEntry, FeedRow, HubError, HubTables};
use markaz_sync::store::{
    self, ChangeRow, DocMeta, DocRows, Lane, StoreError, StoredDoc, encode_heads, owner_column,
};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};

/// A result of the document rows.
type SResult<T> = Result<T, StoreError>;

/// Parameters of a statement.
type Params<'p> = [&'p (dyn ToSql + Sync)];

/// The first statement of a transaction that failed: PostgreSQL aborts the transaction
/// there, so it can only be rolled back (or run again, for a lost lock race).
#[derive(Debug, Clone)]
pub struct Failed {
    pub code: Option<SqlState>,
    pub text: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Failed {}

/// One transaction of a worker's connection, with the connection's prepared statements.
pub struct PgTx<'a> {
    tx: RefCell<Transaction<'a>>,
    stmts: &'a RefCell<HashMap<&'static str, Statement>>,
    failed: RefCell<Option<Failed>>,
    /// Documents this transaction holds the advisory lock of.
    locked: RefCell<HashSet<String>>,
}

impl<'a> PgTx<'a> {
    pub(crate) fn new(
        tx: Transaction<'a>,
        stmts: &'a RefCell<HashMap<&'static str, Statement>>,
    ) -> PgTx<'a> {
        PgTx {
            tx: RefCell::new(tx),
            stmts,
            failed: RefCell::new(None),
            locked: RefCell::new(HashSet::new()),
        }
    }

    /// Commit (a transaction with a failed statement is only rolled back by PostgreSQL:
    /// that is reported as an error).
    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.into_inner().commit()
    }

    /// The first failed statement, if any.
    pub(crate) fn take_error(&self) -> Option<Failed> {
        self.failed.borrow_mut().take()
    }

    fn note<T>(&self, r: Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        if let Err(e) = &r {
            let mut f = self.failed.borrow_mut();
            if f.is_none() {
                *f = Some(Failed {
                    code: e.code().cloned(),
                    text: e.to_string(),
                });
            }
        }
        r
    }

    fn stmt(&self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.note(self.tx.borrow_mut().prepare(sql))?;
        self.stmts.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.stmt(sql)?;
        let r = self.tx.borrow_mut().query(&st, params);
        self.note(r)
    }

    pub(crate) fn query_one(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let st = self.stmt(sql)?;
        let r = self.tx.borrow_mut().query_one(&st, params);
        self.note(r)
    }

    pub(crate) fn query_opt(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let st = self.stmt(sql)?;
        let r = self.tx.borrow_mut().query_opt(&st, params);
        self.note(r)
    }

    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let st = self.stmt(sql)?;
        let r = self.tx.borrow_mut().execute(&st, params);
        self.note(r)
    }

    /// Wait for the transaction-scoped advisory lock of `key` in `space` (`doc`,
    /// `sessions`, …). The lock id is a 64-bit hash of both: two keys sharing one only
    /// wait for each other needlessly.
    pub(crate) fn lock(&self, space: &str, key: &str) -> Result<(), postgres::Error> {
        let k = format!("{space}:{key}");
        self.query(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&k],
        )
        .map(|_| ())
    }
}

fn db(e: postgres::Error) -> StoreError {
    StoreError::Db(Box::new(e))
}

fn hub(e: postgres::Error) -> HubError {
    Box::new(e)
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

impl DocRows for PgTx<'_> {
    fn last_hash(&self, id: &DocId) -> SResult<Option<Vec<u8>>> {
        Ok(self
            .query_opt(
                "SELECT hash FROM changes WHERE doc_id=$1 ORDER BY seq DESC LIMIT 1",
                &[&id.as_str()],
            )
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    fn stored_doc(&self, id: &DocId, with_snapshot: bool) -> SResult<StoredDoc> {
        let snap: Option<(Vec<u8>, i64)> = if with_snapshot {
            self.query_opt(
                "SELECT bytes, upto_seq FROM snapshots WHERE doc_id=$1",
                &[&id.as_str()],
            )
            .map_err(db)?
            .map(|r| (r.get(0), r.get(1)))
        } else {
            None
        };
        let (snapshot, after) = match snap {
            Some((bytes, upto)) => (Some(bytes), upto),
            None => (None, 0),
        };
        let changes = self
            .query(
                "SELECT bytes FROM changes WHERE doc_id=$1 AND seq>$2 ORDER BY seq",
                &[&id.as_str(), &after],
            )
            .map_err(db)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(StoredDoc { snapshot, changes })
    }

    fn change_doc(&self, hash: &ChangeHash) -> SResult<Option<String>> {
        Ok(self
            .query_opt("SELECT doc_id FROM changes WHERE hash=$1", &[&&hash.0[..]])
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    fn insert_change(&self, row: &ChangeRow<'_>) -> SResult<Option<u64>> {
        Ok(self.insert_changes(std::slice::from_ref(row))?[0])
    }

    fn insert_changes(&self, rows: &[ChangeRow<'_>]) -> SResult<Vec<Option<u64>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<&str> = rows.iter().map(|r| r.doc_id.as_str()).collect();
        let hashes: Vec<&[u8]> = rows.iter().map(|r| &r.hash.0[..]).collect();
        let actors: Vec<&[u8]> = rows.iter().map(|r| r.actor).collect();
        let local: Vec<bool> = rows.iter().map(|r| r.local).collect();
        let origin: Vec<Option<&str>> = rows.iter().map(|r| r.origin).collect();
        let bytes: Vec<&[u8]> = rows.iter().map(|r| r.bytes).collect();
        let lanes: Vec<i16> = rows
            .iter()
            .map(|r| Lane::of(r.doc_id).as_i64() as i16)
            .collect();
        // One statement for the batch, rows numbered in batch order.
        let stored = self
            .query(
                "INSERT INTO changes(doc_id, hash, actor, local, origin, bytes, lane)
                 SELECT d, h, a, l, o, b, n
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bool[], $5::text[],
                             $6::bytea[], $7::smallint[])
                      WITH ORDINALITY AS t(d, h, a, l, o, b, n, ord)
                 ORDER BY ord
                 ON CONFLICT (hash) DO NOTHING RETURNING seq, hash",
                &[&docs, &hashes, &actors, &local, &origin, &bytes, &lanes],
            )
            .map_err(db)?;
        let mut seqs: HashMap<Vec<u8>, i64> = stored
            .into_iter()
            .map(|r| (r.get::<_, Vec<u8>>(1), r.get::<_, i64>(0)))
            .collect();
        // A hash twice in the batch: its first row is the one stored.
        Ok(rows
            .iter()
            .map(|r| seqs.remove(&r.hash.0[..]).map(u))
            .collect())
    }

    fn delete_changes(&self, seqs: &[u64]) -> SResult<()> {
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        self.execute("DELETE FROM changes WHERE seq = ANY($1)", &[&seqs])
            .map_err(db)?;
        Ok(())
    }

    fn put_meta(&self, metas: &[DocMeta<'_>]) -> SResult<()> {
        for m in metas {
            let heads = encode_heads(m.heads);
            let bucket = i32::from(store::bucket_of(m.doc_id.as_str()));
            self.execute(
                "INSERT INTO doc_meta(doc_id, kind, owner, heads, bucket, last_seq)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT(doc_id) DO UPDATE SET heads=EXCLUDED.heads,
                    last_seq=GREATEST(doc_meta.last_seq, EXCLUDED.last_seq)",
                &[
                    &m.doc_id.as_str(),
                    &m.doc_id.kind().as_str(),
                    &owner_column(m.doc_id),
                    &heads,
                    &bucket,
                    &(m.seq as i64),
                ],
            )
            .map_err(db)?;
        }
        Ok(())
    }

    fn top_seq(&self, id: &DocId) -> SResult<Option<u64>> {
        let top: Option<i64> = self
            .query_one(
                "SELECT max(seq) FROM changes WHERE doc_id=$1",
                &[&id.as_str()],
            )
            .map_err(db)?
            .get(0);
        Ok(top.map(u))
    }

    fn put_snapshot(
        &self,
        id: &DocId,
        bytes: &[u8],
        heads: &[ChangeHash],
        upto: u64,
    ) -> SResult<()> {
        self.execute(
            "INSERT INTO snapshots(doc_id, bytes, heads, upto_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT(doc_id) DO UPDATE SET bytes=EXCLUDED.bytes, heads=EXCLUDED.heads,
                upto_seq=EXCLUDED.upto_seq",
            &[&id.as_str(), &bytes, &encode_heads(heads), &(upto as i64)],
        )
        .map_err(db)?;
        Ok(())
    }

    fn compaction_due(&self, min_new: u64, limit: usize) -> SResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT c.doc_id FROM changes c LEFT JOIN snapshots s ON s.doc_id=c.doc_id
                 WHERE c.seq > coalesce(s.upto_seq, 0)
                 GROUP BY c.doc_id HAVING count(*) >= $1 LIMIT $2",
                &[&(min_new as i64), &(limit as i64)],
            )
            .map_err(db)?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn is_own_actor(&self, actor: &[u8]) -> SResult<bool> {
        Ok(self
            .query_opt("SELECT 1 FROM incarnation WHERE actor_id=$1", &[&actor])
            .map_err(db)?
            .is_some())
    }
}

fn parse_all<T: std::str::FromStr>(rows: Vec<Row>) -> Vec<T> {
    rows.into_iter()
        .filter_map(|r| r.get::<_, String>(0).parse().ok())
        .collect()
}

impl HubTables for PgTx<'_> {
    fn epoch(&self) -> Result<String, HubError> {
        Ok(self
            .query_one("SELECT value FROM hub_meta WHERE key='epoch'", &[])
            .map_err(hub)?
            .get(0))
    }

    fn set_epoch(&self, epoch: &str) -> Result<(), HubError> {
        self.execute(
            "INSERT INTO hub_meta(key, value) VALUES ('epoch', $1)
             ON CONFLICT(key) DO UPDATE SET value=EXCLUDED.value",
            &[&epoch],
        )
        .map_err(hub)?;
        Ok(())
    }

    fn knows_epoch(&self, epoch: &str) -> Result<bool, HubError> {
        Ok(self
            .query_opt("SELECT 1 FROM hub_epochs WHERE epoch=$1", &[&epoch])
            .map_err(hub)?
            .is_some())
    }

    fn remember_epoch(&self, epoch: &str) -> Result<(), HubError> {
        self.execute(
            "INSERT INTO hub_epochs(epoch) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&epoch],
        )
        .map_err(hub)?;
        Ok(())
    }

    fn new_actor(&self, now_ms: u64) -> Result<Vec<u8>, HubError> {
        // The same form as a new database's first incarnation (`schema::incarnation`).
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut bytes = b"hub/".to_vec();
        bytes.extend_from_slice(&rand::random::<[u8; 16]>());
        self.execute(
            "INSERT INTO incarnation(actor_id, center, created_at_ms) VALUES ($1, 'hub', $2)",
            &[&bytes, &now],
        )
        .map_err(hub)?;
        Ok(bytes)
    }

    fn feed_floor(&self) -> Result<u64, HubError> {
        let v: i64 = self
            .query_one("SELECT coalesce(max(floor), 0) FROM feed_floors", &[])
            .map_err(hub)?
            .get(0);
        Ok(u(v))
    }

    fn raise_feed_floor(&self, floor: u64) -> Result<(), HubError> {
        let floor = i64::try_from(floor).map_err(|_| format!("feed floor {floor} too large"))?;
        self.execute(
            "INSERT INTO feed_floors(floor) SELECT $1::bigint
             WHERE $1::bigint > (SELECT coalesce(max(floor), 0) FROM feed_floors)
             ON CONFLICT DO NOTHING",
            &[&floor],
        )
        .map_err(hub)?;
        Ok(())
    }

    fn handed_out(&self, center: &CenterId, position: u64) -> Result<bool, HubError> {
        let Ok(p) = i64::try_from(position) else {
            return Ok(false);
        };
        Ok(self
            .query_opt(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM feed WHERE center=$1 AND fseq=$2)
                    OR EXISTS (SELECT 1 FROM feed_floors WHERE floor=$2)",
                &[&center.as_str(), &p],
            )
            .map_err(hub)?
            .is_some())
    }

    fn add_center(&self, center: &CenterId) -> Result<bool, HubError> {
        // A second process registering the same center waits for the first to commit,
        // then finds it: the first contact happens once.
        let n = self
            .execute(
                "INSERT INTO centers(center) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&center.as_str()],
            )
            .map_err(hub)?;
        Ok(n > 0)
    }

    fn centers(&self) -> Result<Vec<CenterId>, HubError> {
        let rows = self
            .query("SELECT center FROM centers ORDER BY center", &[])
            .map_err(hub)?;
        Ok(parse_all(rows))
    }

    fn doc_ids(&self, kind: &str) -> Result<Vec<DocId>, HubError> {
        let rows = self
            .query(
                "SELECT doc_id FROM doc_meta WHERE kind=$1 ORDER BY doc_id",
                &[&kind],
            )
            .map_err(hub)?;
        Ok(parse_all(rows))
    }

    fn first_contact_docs(&self, center: &CenterId) -> Result<Vec<DocId>, HubError> {
        let rows = self
            .query(
                "SELECT doc_id FROM doc_meta WHERE kind='catalog' OR (kind='staff' AND owner=$1)
                 ORDER BY doc_id",
                &[&center.as_str()],
            )
            .map_err(hub)?;
        Ok(parse_all(rows))
    }

    fn routes_of(&self, doc: &DocId) -> Result<Vec<String>, HubError> {
        Ok(self
            .query(
                "SELECT center FROM routes WHERE doc_id=$1 ORDER BY center",
                &[&doc.as_str()],
            )
            .map_err(hub)?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn insert_route(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError> {
        let n = self
            .execute(
                "INSERT INTO routes(doc_id, center) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&doc.as_str(), &center.as_str()],
            )
            .map_err(hub)?;
        Ok(n > 0)
    }

    fn history(&self, doc: &DocId, not_from: &CenterId) -> Result<Vec<u64>, HubError> {
        Ok(self
            .query(
                "SELECT seq FROM changes WHERE doc_id=$1 AND coalesce(origin, '') <> $2
                 ORDER BY seq",
                &[&doc.as_str(), &not_from.as_str()],
            )
            .map_err(hub)?
            .into_iter()
            .map(|r| u(r.get(0)))
            .collect())
    }

    fn append_feed(&self, entries: &[FeedEntry]) -> Result<(), HubError> {
        // Entries come grouped by center, centers in order (so two writers take the
        // centers' locks in one order).
        let mut start = 0;
        while start < entries.len() {
            let center = &entries[start].center;
            let end = entries[start..]
                .iter()
                .position(|e| &e.center != center)
                .map_or(entries.len(), |n| start + n);
            let group = &entries[start..end];
            let n = group.len() as i64;
            // Locks the center's head row until this transaction ends: the next writer
            // of this feed numbers after us, once we committed.
            // A feed continues above the highest floor a start or a restore recorded.
            let floor = self.feed_floor()? as i64;
            let len: i64 = self
                .query_one(
                    "INSERT INTO feed_heads(center, len) VALUES ($1, $3::bigint + $2::bigint)
                     ON CONFLICT(center) DO UPDATE
                       SET len = greatest(feed_heads.len, $3::bigint) + $2::bigint
                     RETURNING len",
                    &[center, &n, &floor],
                )
                .map_err(hub)?
                .get(0);
            let seqs: Vec<i64> = group.iter().map(|e| e.change_seq as i64).collect();
            let snaps: Vec<Option<&str>> =
                group.iter().map(|e| e.snapshot_doc.as_deref()).collect();
            let first = len - n;
            self.execute(
                "INSERT INTO feed(center, fseq, change_seq, snapshot_doc)
                 SELECT $1, $2 + ord, c, s
                 FROM unnest($3::bigint[], $4::text[]) WITH ORDINALITY AS t(c, s, ord)",
                &[center, &first, &seqs, &snaps],
            )
            .map_err(hub)?;
            start = end;
        }
        Ok(())
    }

    fn feed_len(&self, center: &CenterId) -> Result<u64, HubError> {
        let len: Option<i64> = self
            .query_opt(
                "SELECT len FROM feed_heads WHERE center=$1",
                &[&center.as_str()],
            )
            .map_err(hub)?
            .map(|r| r.get(0));
        Ok(u(len.unwrap_or(0)).max(self.feed_floor()?))
    }

    fn feed_after(
        &self,
        center: &CenterId,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<FeedRow>, HubError> {
        Ok(self
            .query(
                "SELECT f.fseq, f.snapshot_doc, c.doc_id,
                        CASE WHEN f.snapshot_doc IS NULL THEN c.bytes END
                 FROM feed f JOIN changes c ON c.seq=f.change_seq
                 WHERE f.center=$1 AND f.fseq>$2 ORDER BY f.fseq LIMIT $3",
                &[&center.as_str(), &(cursor as i64), &(limit as i64)],
            )
            .map_err(hub)?
            .into_iter()
            .map(|r| FeedRow {
                fseq: u(r.get(0)),
                snapshot_doc: r.get(1),
                doc_id: r.get(2),
                bytes: r.get(3),
            })
            .collect())
    }

    fn push_acked(&self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError> {
        let v: Option<i64> = self
            .query_opt(
                "SELECT acked FROM push_acks WHERE center=$1 AND actor=$2",
                &[&center.as_str(), &actor],
            )
            .map_err(hub)?
            .map(|r| r.get(0));
        Ok(u(v.unwrap_or(0)))
    }

    fn set_push_acked(&self, center: &CenterId, actor: &[u8], acked: u64) -> Result<(), HubError> {
        self.execute(
            "INSERT INTO push_acks(center, actor, acked) VALUES ($1, $2, $3)
             ON CONFLICT(center, actor) DO UPDATE
                SET acked=GREATEST(push_acks.acked, EXCLUDED.acked)",
            &[&center.as_str(), &actor, &(acked as i64)],
        )
        .map_err(hub)?;
        Ok(())
    }

    fn scope_heads(
        &self,
        center: &CenterId,
        buckets: Option<&[u16]>,
    ) -> Result<Vec<(String, Vec<u8>)>, HubError> {
        let pair = |r: Row| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1));
        let Some(buckets) = buckets else {
            return Ok(self
                .query(
                    "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
                     WHERE r.center=$1 ORDER BY m.doc_id",
                    &[&center.as_str()],
                )
                .map_err(hub)?
                .into_iter()
                .map(pair)
                .collect());
        };
        let mut out = Vec::new();
        for b in buckets {
            let rows = self
                .query(
                    "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
                     WHERE r.center=$1 AND m.bucket=$2 ORDER BY m.doc_id",
                    &[&center.as_str(), &i32::from(*b)],
                )
                .map_err(hub)?;
            out.extend(rows.into_iter().map(pair));
        }
        Ok(out)
    }

    fn lock_docs(&self, docs: &[&DocId]) -> Result<(), HubError> {
        for d in docs {
            if self.locked.borrow().contains(d.as_str()) {
                continue;
            }
            self.lock("doc", d.as_str()).map_err(hub)?;
            self.locked.borrow_mut().insert(d.as_str().to_string());
        }
        Ok(())
    }
}
