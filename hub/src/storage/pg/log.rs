//! The sync log, sessions and the centers' status in PostgreSQL ([`SyncLog`] for
//! [`PgHub`]). The rules (session ids, uplink paths, derived results) are
//! [`crate::sessions`], as for SQLite.
//!
//! Several processes record requests of one center at once (a session's requests may
//! land on different processes): recording takes the center's advisory lock first, so
//! "find or open the session, then add to it" is one step, and one session is one row.

use rand::Rng;

use super::PgHub;
use super::tables::PgTx;
use crate::sessions::{SyncSession, merge_uplink, nothing_new, status};
use crate::storage::{CenterFacts, StorageError, SyncLog, SyncLogEntry};
use crate::storage::{stored_kind, stored_result};
use markaz_sync::protocol::contract::{RequestKind, SessionResult};

/// Find or open the session `entry` belongs to, add the request to it; its row id.
fn record(tx: &PgTx<'_>, entry: &SyncLogEntry) -> Result<i64, postgres::Error> {
    tx.lock("sessions", &entry.center)?;
    let existing: Option<i64> = match &entry.session {
        Some(key) => tx
            .query_opt(
                "SELECT id FROM sync_sessions WHERE center=$1 AND session=$2",
                &[&entry.center, key],
            )?
            .map(|r| r.get(0)),
        None if entry.kind == RequestKind::Hello => None,
        None => tx
            .query_opt(
                "SELECT id FROM sync_sessions WHERE center=$1 AND session LIKE 'auto:%'
                 ORDER BY id DESC LIMIT 1",
                &[&entry.center],
            )?
            .map(|r| r.get(0)),
    };
    let id = match existing {
        Some(id) => id,
        None => {
            let key = entry.session.clone().unwrap_or_else(|| {
                format!(
                    "auto:{}:{:08x}",
                    entry.started_ms,
                    rand::rng().random::<u32>()
                )
            });
            let id: i64 = tx
                .query_one(
                    "INSERT INTO sync_sessions(center, session, uplink, started_ms, last_ms)
                     VALUES ($1, $2, $3, $4, $4) RETURNING id",
                    &[&entry.center, &key, &entry.uplink, &entry.started_ms],
                )?
                .get(0);
            // A center runs one session at a time: a new one ends the ones before it.
            tx.execute(
                "UPDATE sync_sessions SET closed=true WHERE center=$1 AND id<>$2 AND NOT closed",
                &[&entry.center, &id],
            )?;
            id
        }
    };
    let uplink: String = tx
        .query_one("SELECT uplink FROM sync_sessions WHERE id=$1", &[&id])?
        .get(0);
    let failed = entry.result != SessionResult::Ok;
    tx.execute(
        "UPDATE sync_sessions SET uplink=$2,
            started_ms=LEAST(started_ms, $3), last_ms=GREATEST(last_ms, $4),
            requests=requests+1, errors=errors+$5,
            bytes_up=bytes_up+$6, bytes_down=bytes_down+$7,
            docs_up=docs_up+$8, docs_down=docs_down+$9,
            changes_up=changes_up+$10, changes_down=changes_down+$11,
            refused=refused+$12, last_result=$13, last_error=$14,
            skew_ms=coalesce($15, skew_ms), closed=(closed OR $16)
         WHERE id=$1",
        &[
            &id,
            &merge_uplink(&uplink, &entry.uplink),
            &entry.started_ms,
            &entry.ended_ms,
            &i64::from(failed),
            &entry.bytes_up,
            &entry.bytes_down,
            &entry.docs_up,
            &entry.docs_down,
            &entry.changes_up,
            &entry.changes_down,
            &entry.refused,
            &if failed {
                SessionResult::Error
            } else {
                SessionResult::Ok
            }
            .as_str(),
            &entry.error,
            &entry.skew_ms,
            &(entry.ends_session && !failed),
        ],
    )?;
    Ok(id)
}

impl SyncLog for PgHub {
    fn prune_sync_log(&mut self, before_ms: i64, batch: u32) -> Result<(u64, u64), StorageError> {
        let batch = i64::from(batch);
        self.with_tx(|tx| {
            let log = tx.execute(
                "DELETE FROM sync_log WHERE id IN
                   (SELECT id FROM sync_log WHERE ended_ms < $1 LIMIT $2)",
                &[&before_ms, &batch],
            )?;
            let sessions = tx.execute(
                "DELETE FROM sync_sessions WHERE id IN
                   (SELECT id FROM sync_sessions WHERE last_ms < $1 LIMIT $2)",
                &[&before_ms, &batch],
            )?;
            Ok((log, sessions))
        })
    }

    fn record_sync(&mut self, e: &SyncLogEntry) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            let session_id = record(tx, e)?;
            if !nothing_new(e) {
                tx.execute(
                    "INSERT INTO sync_log(center, uplink, kind, started_ms, ended_ms, bytes_up,
                   bytes_down, docs_up, docs_down, changes_up, changes_down, refused, result,
                   error, skew_ms, cursor, session_id)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)",
                    &[
                        &e.center,
                        &e.uplink,
                        &e.kind.as_str(),
                        &e.started_ms,
                        &e.ended_ms,
                        &e.bytes_up,
                        &e.bytes_down,
                        &e.docs_up,
                        &e.docs_down,
                        &e.changes_up,
                        &e.changes_down,
                        &e.refused,
                        &e.result.as_str(),
                        &e.error,
                        &e.skew_ms,
                        &e.cursor,
                        &session_id,
                    ],
                )?;
            }
            let ok = (e.result == SessionResult::Ok).then_some(e.ended_ms);
            tx.execute(
                "INSERT INTO center_status(center, last_sync_ms, last_ok_ms, uplink, cursor,
                    skew_ms, cursor_ms)
                 VALUES ($1, $2, $3, $4, coalesce($5::bigint, 0), $6,
                    CASE WHEN $5::bigint IS NOT NULL THEN $2::bigint END)
                 ON CONFLICT(center) DO UPDATE SET last_sync_ms=EXCLUDED.last_sync_ms,
                   last_ok_ms=coalesce($3, center_status.last_ok_ms), uplink=EXCLUDED.uplink,
                   cursor=coalesce($5, center_status.cursor),
                   skew_ms=coalesce($6, center_status.skew_ms),
                   cursor_ms=CASE WHEN $5::bigint IS NOT NULL
                       AND (center_status.cursor_ms IS NULL OR $5 <> center_status.cursor)
                     THEN $2::bigint ELSE center_status.cursor_ms END",
                &[
                    &e.center,
                    &e.ended_ms,
                    &ok,
                    &e.uplink,
                    &e.cursor,
                    &e.skew_ms,
                ],
            )?;
            Ok(())
        })
    }

    fn sessions(
        &mut self,
        center: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<SyncSession>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT id, center, session, uplink, started_ms, last_ms, requests, errors,
                    bytes_up, bytes_down, docs_up, docs_down, changes_up, changes_down,
                    refused, last_result, last_error, skew_ms, closed
                 FROM sync_sessions WHERE $1::text IS NULL OR center=$1
                 ORDER BY id DESC LIMIT $2",
                &[&center, &i64::from(limit)],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let last_result = stored_result(r.get::<_, &str>(15));
                let closed: bool = r.get(18);
                let last_ms: i64 = r.get(5);
                let result = status(last_result, closed, last_ms, now_ms);
                SyncSession {
                    id: r.get(0),
                    center: r.get(1),
                    session: r.get(2),
                    uplink: r.get(3),
                    started_ms: r.get(4),
                    last_ms,
                    ended_ms: (result != SessionResult::Open).then_some(last_ms),
                    requests: r.get(6),
                    errors: r.get(7),
                    bytes_up: r.get(8),
                    bytes_down: r.get(9),
                    docs_up: r.get(10),
                    docs_down: r.get(11),
                    changes_up: r.get(12),
                    changes_down: r.get(13),
                    refused: r.get(14),
                    result,
                    error: if result == SessionResult::Error {
                        r.get(16)
                    } else {
                        None
                    },
                    skew_ms: r.get(17),
                }
            })
            .collect())
    }

    fn sync_log(
        &mut self,
        center: Option<&str>,
        session: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SyncLogEntry>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT l.id, l.center, l.uplink, l.kind, l.started_ms, l.ended_ms, l.bytes_up,
                    l.bytes_down, l.docs_up, l.docs_down, l.changes_up, l.changes_down,
                    l.refused, l.result, l.error, l.skew_ms, l.cursor, l.session_id, s.session
                 FROM sync_log l LEFT JOIN sync_sessions s ON s.id=l.session_id
                 WHERE ($1::text IS NULL OR l.center=$1) AND ($2::bigint IS NULL OR l.session_id=$2)
                 ORDER BY l.id DESC LIMIT $3",
                &[&center, &session, &i64::from(limit)],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| SyncLogEntry {
                id: r.get(0),
                center: r.get(1),
                uplink: r.get(2),
                kind: stored_kind(r.get::<_, &str>(3)),
                started_ms: r.get(4),
                ended_ms: r.get(5),
                bytes_up: r.get(6),
                bytes_down: r.get(7),
                docs_up: r.get(8),
                docs_down: r.get(9),
                changes_up: r.get(10),
                changes_down: r.get(11),
                refused: r.get(12),
                result: stored_result(r.get::<_, &str>(13)),
                error: r.get(14),
                skew_ms: r.get(15),
                cursor: r.get(16),
                session_id: r.get(17),
                session: r.get(18),
                ends_session: false,
            })
            .collect())
    }

    fn center_facts(&mut self) -> Result<Vec<CenterFacts>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT c.center,
                    (SELECT max(last_ms) FROM sync_sessions x WHERE x.center=c.center),
                    (SELECT max(last_ms) FROM sync_sessions x
                       WHERE x.center=c.center AND x.last_result='ok'),
                    (SELECT uplink FROM sync_sessions x WHERE x.center=c.center
                       ORDER BY id DESC LIMIT 1),
                    greatest(coalesce((SELECT len FROM feed_heads f WHERE f.center=c.center), 0),
                        (SELECT coalesce(max(floor), 0) FROM feed_floors)),
                    coalesce(s.cursor, 0), s.skew_ms,
                    (SELECT count(*) FROM sync_sessions x WHERE x.center=c.center),
                    (SELECT count(*) FROM feed f
                       WHERE f.center=c.center AND f.fseq > coalesce(s.cursor, 0)),
                    s.cursor_ms
                 FROM (SELECT center FROM centers UNION SELECT center FROM center_status) c
                 LEFT JOIN center_status s ON s.center=c.center ORDER BY c.center",
                &[],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| CenterFacts {
                center: r.get(0),
                last_sync_ms: r.get(1),
                last_ok_ms: r.get(2),
                uplink: r.get(3),
                feed_len: r.get(4),
                cursor: r.get(5),
                skew_ms: r.get(6),
                sessions: r.get(7),
                backlog: r.get(8),
                cursor_ms: r.get(9),
            })
            .collect())
    }
}
