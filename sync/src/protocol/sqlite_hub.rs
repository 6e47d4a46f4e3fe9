//! The hub's relay tables in SQLite ([`HubTables`] for a `rusqlite` connection, its
//! transactions and savepoints) and their migration. One writer thread owns the hub's
//! SQLite file, so nothing here locks: feed positions are `max(max, floor) + 1` in the
//! writer's transaction. The epoch is a row of `hub_meta`, the epochs the database has
//! had are `hub_epochs`, the feed floors `feed_floors`.

use rusqlite::{Connection, OptionalExtension, params};

use super::HubError;
use super::relay::{FeedEntry, FeedRow, HubTables, Relay};
use super::restore::new_epoch;
use crate::docs::DocId;
use crate::model::ids::CenterId;
use crate::store;

/// The relay over the hub's SQLite tables (inside the writer's transaction).
pub type SqliteHub<'a> = Relay<'a>;

/// Create the hub's own tables (after [`store::migrate`]); idempotent. A new database
/// gets a fresh epoch.
pub fn migrate_hub(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hub_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS centers(center TEXT PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS routes(doc_id TEXT NOT NULL, center TEXT NOT NULL,
            PRIMARY KEY(doc_id, center));
         CREATE INDEX IF NOT EXISTS routes_center ON routes(center, doc_id);
         CREATE TABLE IF NOT EXISTS feed(center TEXT NOT NULL, fseq INTEGER NOT NULL,
            change_seq INTEGER NOT NULL, snapshot_doc TEXT, PRIMARY KEY(center, fseq));
         CREATE TABLE IF NOT EXISTS push_acks(center TEXT NOT NULL, actor BLOB NOT NULL,
            acked INTEGER NOT NULL, PRIMARY KEY(center, actor));
         CREATE TABLE IF NOT EXISTS hub_epochs(epoch TEXT PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS feed_floors(floor INTEGER PRIMARY KEY);",
    )?;
    let has: Option<String> = conn
        .query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if has.is_none() {
        conn.execute(
            "INSERT INTO hub_meta(key, value) VALUES ('epoch', ?1)",
            [new_epoch()],
        )?;
    }
    // Databases from before `hub_epochs` know at least their current epoch.
    conn.execute(
        "INSERT OR IGNORE INTO hub_epochs(epoch) SELECT value FROM hub_meta WHERE key='epoch'",
        [],
    )?;
    Ok(())
}

impl HubTables for Connection {
    fn epoch(&self) -> Result<String, HubError> {
        Ok(
            self.query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
                r.get(0)
            })?,
        )
    }

    fn set_epoch(&self, epoch: &str) -> Result<(), HubError> {
        self.execute(
            "INSERT INTO hub_meta(key, value) VALUES ('epoch', ?1)
             ON CONFLICT(key) DO UPDATE SET value=?1",
            [epoch],
        )?;
        Ok(())
    }

    fn knows_epoch(&self, epoch: &str) -> Result<bool, HubError> {
        Ok(self
            .prepare_cached("SELECT 1 FROM hub_epochs WHERE epoch=?1")?
            .exists([epoch])?)
    }

    fn remember_epoch(&self, epoch: &str) -> Result<(), HubError> {
        self.execute(
            "INSERT OR IGNORE INTO hub_epochs(epoch) VALUES (?1)",
            [epoch],
        )?;
        Ok(())
    }

    fn new_actor(&self, now_ms: u64) -> Result<Vec<u8>, HubError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        Ok(store::new_incarnation(self, "hub", now)?
            .to_bytes()
            .to_vec())
    }

    fn feed_floor(&self) -> Result<u64, HubError> {
        let v: i64 = self
            .prepare_cached("SELECT coalesce(max(floor), 0) FROM feed_floors")?
            .query_row([], |r| r.get(0))?;
        Ok(v.max(0) as u64)
    }

    fn raise_feed_floor(&self, floor: u64) -> Result<(), HubError> {
        let floor = i64::try_from(floor).map_err(|_| format!("feed floor {floor} too large"))?;
        self.execute(
            "INSERT INTO feed_floors(floor) SELECT ?1
             WHERE ?1 > (SELECT coalesce(max(floor), 0) FROM feed_floors)",
            [floor],
        )?;
        Ok(())
    }

    fn handed_out(&self, center: &CenterId, position: u64) -> Result<bool, HubError> {
        let Ok(p) = i64::try_from(position) else {
            return Ok(false);
        };
        Ok(self
            .prepare_cached(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM feed WHERE center=?1 AND fseq=?2)
                    OR EXISTS (SELECT 1 FROM feed_floors WHERE floor=?2)",
            )?
            .exists(params![center.as_str(), p])?)
    }

    fn add_center(&self, center: &CenterId) -> Result<bool, HubError> {
        let n = self.execute(
            "INSERT OR IGNORE INTO centers(center) VALUES (?1)",
            [center.as_str()],
        )?;
        Ok(n > 0)
    }

    fn centers(&self) -> Result<Vec<CenterId>, HubError> {
        let mut stmt = self.prepare_cached("SELECT center FROM centers")?;
        let all: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter_map(|c| c.parse().ok()).collect())
    }

    fn doc_ids(&self, kind: &str) -> Result<Vec<DocId>, HubError> {
        let mut stmt =
            self.prepare_cached("SELECT doc_id FROM doc_meta WHERE kind=?1 ORDER BY doc_id")?;
        let ids: Vec<String> = stmt
            .query_map([kind], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    fn first_contact_docs(&self, center: &CenterId) -> Result<Vec<DocId>, HubError> {
        let mut stmt = self.prepare(
            "SELECT doc_id FROM doc_meta WHERE kind='catalog' OR (kind='staff' AND owner=?1)",
        )?;
        let ids: Vec<String> = stmt
            .query_map([center.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids.into_iter().filter_map(|d| d.parse().ok()).collect())
    }

    fn routes_of(&self, doc: &DocId) -> Result<Vec<String>, HubError> {
        let mut stmt = self.prepare_cached("SELECT center FROM routes WHERE doc_id=?1")?;
        let centers = stmt
            .query_map([doc.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(centers)
    }

    fn insert_route(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError> {
        let n = self
            .prepare_cached("INSERT OR IGNORE INTO routes(doc_id, center) VALUES (?1, ?2)")?
            .execute(params![doc.as_str(), center.as_str()])?;
        Ok(n > 0)
    }

    fn history(&self, doc: &DocId, not_from: &CenterId) -> Result<Vec<u64>, HubError> {
        let mut stmt = self.prepare_cached(
            "SELECT seq FROM changes WHERE doc_id=?1 AND coalesce(origin, '') <> ?2 ORDER BY seq",
        )?;
        let seqs = stmt
            .query_map(params![doc.as_str(), not_from.as_str()], |r| {
                r.get::<_, i64>(0)
            })?
            .map(|s| s.map(|s| s.max(0) as u64))
            .collect::<Result<_, _>>()?;
        Ok(seqs)
    }

    fn append_feed(&self, entries: &[FeedEntry]) -> Result<(), HubError> {
        if entries.is_empty() {
            return Ok(());
        }
        let floor = self.feed_floor()? as i64;
        let mut stmt = self.prepare_cached(
            "INSERT INTO feed(center, fseq, change_seq, snapshot_doc)
             VALUES (?1, max((SELECT coalesce(max(fseq), 0) FROM feed WHERE center=?1), ?4) + 1,
                     ?2, ?3)",
        )?;
        for e in entries {
            stmt.execute(params![
                e.center,
                e.change_seq as i64,
                e.snapshot_doc,
                floor
            ])?;
        }
        Ok(())
    }

    fn feed_len(&self, center: &CenterId) -> Result<u64, HubError> {
        let top = self.query_row(
            "SELECT coalesce(max(fseq), 0) FROM feed WHERE center=?1",
            [center.as_str()],
            |r| r.get::<_, i64>(0),
        )?;
        Ok((top.max(0) as u64).max(self.feed_floor()?))
    }

    fn feed_after(
        &self,
        center: &CenterId,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<FeedRow>, HubError> {
        let mut stmt = self.prepare_cached(
            "SELECT f.fseq, f.snapshot_doc, c.doc_id,
                    CASE WHEN f.snapshot_doc IS NULL THEN c.bytes END
             FROM feed f JOIN changes c ON c.seq=f.change_seq
             WHERE f.center=?1 AND f.fseq>?2 ORDER BY f.fseq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![center.as_str(), cursor as i64, limit as i64], |r| {
                Ok(FeedRow {
                    fseq: r.get::<_, i64>(0)? as u64,
                    snapshot_doc: r.get(1)?,
                    doc_id: r.get(2)?,
                    bytes: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn push_acked(&self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError> {
        Ok(self
            .query_row(
                "SELECT acked FROM push_acks WHERE center=?1 AND actor=?2",
                params![center.as_str(), actor],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            .max(0) as u64)
    }

    fn set_push_acked(&self, center: &CenterId, actor: &[u8], acked: u64) -> Result<(), HubError> {
        self.execute(
            "INSERT INTO push_acks(center, actor, acked) VALUES (?1, ?2, ?3)
             ON CONFLICT(center, actor) DO UPDATE SET acked=max(acked, ?3)",
            params![center.as_str(), actor, acked as i64],
        )?;
        Ok(())
    }

    fn scope_heads(
        &self,
        center: &CenterId,
        buckets: Option<&[u16]>,
    ) -> Result<Vec<(String, Vec<u8>)>, HubError> {
        let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        let Some(buckets) = buckets else {
            let mut stmt = self.prepare_cached(
                "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
                 WHERE r.center=?1 ORDER BY m.doc_id",
            )?;
            let rows = stmt
                .query_map([center.as_str()], map)?
                .collect::<Result<_, _>>()?;
            return Ok(rows);
        };
        let mut stmt = self.prepare_cached(
            "SELECT m.doc_id, m.heads FROM routes r JOIN doc_meta m ON m.doc_id=r.doc_id
             WHERE r.center=?1 AND m.bucket=?2 ORDER BY m.doc_id",
        )?;
        let mut out = Vec::new();
        for b in buckets {
            for row in stmt.query_map(params![center.as_str(), *b as i64], map)? {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn lock_docs(&self, _docs: &[&DocId]) -> Result<(), HubError> {
        // One writer thread owns the file: nobody else writes meanwhile.
        Ok(())
    }
}

/// A transaction or savepoint of the hub's connection has its tables.
macro_rules! tables_through_deref {
    ($t:ty) => {
        impl HubTables for $t {
            fn epoch(&self) -> Result<String, HubError> {
                (**self).epoch()
            }
            fn set_epoch(&self, epoch: &str) -> Result<(), HubError> {
                (**self).set_epoch(epoch)
            }
            fn knows_epoch(&self, epoch: &str) -> Result<bool, HubError> {
                (**self).knows_epoch(epoch)
            }
            fn remember_epoch(&self, epoch: &str) -> Result<(), HubError> {
                (**self).remember_epoch(epoch)
            }
            fn new_actor(&self, now_ms: u64) -> Result<Vec<u8>, HubError> {
                (**self).new_actor(now_ms)
            }
            fn feed_floor(&self) -> Result<u64, HubError> {
                (**self).feed_floor()
            }
            fn raise_feed_floor(&self, floor: u64) -> Result<(), HubError> {
                (**self).raise_feed_floor(floor)
            }
            fn handed_out(&self, center: &CenterId, position: u64) -> Result<bool, HubError> {
                (**self).handed_out(center, position)
            }
            fn add_center(&self, center: &CenterId) -> Result<bool, HubError> {
                (**self).add_center(center)
            }
            fn centers(&self) -> Result<Vec<CenterId>, HubError> {
                (**self).centers()
            }
            fn doc_ids(&self, kind: &str) -> Result<Vec<DocId>, HubError> {
                (**self).doc_ids(kind)
            }
            fn first_contact_docs(&self, center: &CenterId) -> Result<Vec<DocId>, HubError> {
                (**self).first_contact_docs(center)
            }
            fn routes_of(&self, doc: &DocId) -> Result<Vec<String>, HubError> {
                (**self).routes_of(doc)
            }
            fn insert_route(&self, doc: &DocId, center: &CenterId) -> Result<bool, HubError> {
                (**self).insert_route(doc, center)
            }
            fn history(&self, doc: &DocId, not_from: &CenterId) -> Result<Vec<u64>, HubError> {
                (**self).history(doc, not_from)
            }
            fn append_feed(&self, entries: &[FeedEntry]) -> Result<(), HubError> {
                (**self).append_feed(entries)
            }
            fn feed_len(&self, center: &CenterId) -> Result<u64, HubError> {
                (**self).feed_len(center)
            }
            fn feed_after(
                &self,
                center: &CenterId,
                cursor: u64,
                limit: usize,
            ) -> Result<Vec<FeedRow>, HubError> {
                (**self).feed_after(center, cursor, limit)
            }
            fn push_acked(&self, center: &CenterId, actor: &[u8]) -> Result<u64, HubError> {
                (**self).push_acked(center, actor)
            }
            fn set_push_acked(
                &self,
                center: &CenterId,
                actor: &[u8],
                acked: u64,
            ) -> Result<(), HubError> {
                (**self).set_push_acked(center, actor, acked)
            }
            fn scope_heads(
                &self,
                center: &CenterId,
                buckets: Option<&[u16]>,
            ) -> Result<Vec<(String, Vec<u8>)>, HubError> {
                (**self).scope_heads(center, buckets)
            }
            fn lock_docs(&self, docs: &[&DocId]) -> Result<(), HubError> {
                (**self).lock_docs(docs)
            }
        }
    };
}

tables_through_deref!(rusqlite::Transaction<'_>);
tables_through_deref!(rusqlite::Savepoint<'_>);
