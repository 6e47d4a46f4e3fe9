//! The sync log, sessions and the centers' status in SQLite ([`SyncLog`] for [`HubDb`]).
//! The rules (session ids, uplink paths, derived results) are [`crate::sessions`].

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};

use super::HubDb;
use crate::sessions::{SyncSession, merge_uplink, nothing_new, status};
use crate::storage::{CenterFacts, StorageError, SyncLog, SyncLogEntry};
use crate::storage::{stored_kind, stored_result};
use markaz_sync::protocol::contract::{RequestKind, SessionResult};

/// Create the sync log, the centers' status and the sessions; idempotent.
pub fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sync_log(
            id INTEGER PRIMARY KEY,
            center TEXT NOT NULL, uplink TEXT NOT NULL, kind TEXT NOT NULL,
            started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL,
            bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL,
            docs_up INTEGER NOT NULL, docs_down INTEGER NOT NULL,
            changes_up INTEGER NOT NULL, changes_down INTEGER NOT NULL,
            refused INTEGER NOT NULL, result TEXT NOT NULL, error TEXT,
            skew_ms INTEGER, cursor INTEGER);
         CREATE INDEX IF NOT EXISTS sync_log_center ON sync_log(center, id);
         CREATE TABLE IF NOT EXISTS center_status(
            center TEXT PRIMARY KEY,
            last_sync_ms INTEGER NOT NULL,
            last_ok_ms INTEGER,
            uplink TEXT NOT NULL,
            cursor INTEGER NOT NULL DEFAULT 0,
            skew_ms INTEGER);
",
    )?;
    migrate_sessions(conn)
}

/// Create `sync_sessions` and link `sync_log` rows to it; idempotent (older hub databases
/// get the `session_id` column added).
fn migrate_sessions(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sync_sessions(
            id INTEGER PRIMARY KEY,
            center TEXT NOT NULL, session TEXT NOT NULL, uplink TEXT NOT NULL,
            started_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
            bytes_up INTEGER NOT NULL DEFAULT 0, bytes_down INTEGER NOT NULL DEFAULT 0,
            docs_up INTEGER NOT NULL DEFAULT 0, docs_down INTEGER NOT NULL DEFAULT 0,
            changes_up INTEGER NOT NULL DEFAULT 0, changes_down INTEGER NOT NULL DEFAULT 0,
            refused INTEGER NOT NULL DEFAULT 0,
            last_result TEXT NOT NULL DEFAULT 'ok', last_error TEXT,
            skew_ms INTEGER, closed INTEGER NOT NULL DEFAULT 0,
            UNIQUE(center, session));
         CREATE INDEX IF NOT EXISTS sync_sessions_center ON sync_sessions(center, id);
         CREATE INDEX IF NOT EXISTS sync_sessions_last ON sync_sessions(last_ms);",
    )?;
    let has_cursor_ms: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('center_status') WHERE name='cursor_ms'")?
        .exists([])?;
    if !has_cursor_ms {
        conn.execute_batch("ALTER TABLE center_status ADD COLUMN cursor_ms INTEGER;")?;
    }
    let has_col: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('sync_log') WHERE name='session_id'")?
        .exists([])?;
    if !has_col {
        conn.execute_batch(
            "ALTER TABLE sync_log ADD COLUMN session_id INTEGER;
             CREATE INDEX IF NOT EXISTS sync_log_session ON sync_log(session_id, id);",
        )?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS sync_log_ended ON sync_log(ended_ms);")?;
    Ok(())
}

/// Find or open the session `entry` belongs to, add the request to it, and return its
/// row id. Run inside the transaction that inserts the request row.
fn record(conn: &Connection, entry: &SyncLogEntry) -> Result<i64, rusqlite::Error> {
    let existing: Option<i64> = match &entry.session {
        Some(key) => conn
            .query_row(
                "SELECT id FROM sync_sessions WHERE center=?1 AND session=?2",
                params![entry.center, key],
                |r| r.get(0),
            )
            .optional()?,
        None if entry.kind == RequestKind::Hello => None,
        None => conn
            .query_row(
                "SELECT id FROM sync_sessions WHERE center=?1 AND session LIKE 'auto:%'
                 ORDER BY id DESC LIMIT 1",
                [&entry.center],
                |r| r.get(0),
            )
            .optional()?,
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
            let id: i64 = conn.query_row(
                "INSERT INTO sync_sessions(center, session, uplink, started_ms, last_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                params![entry.center, key, entry.uplink, entry.started_ms],
                |r| r.get(0),
            )?;
            // A center runs one session at a time: a new one ends the ones before it.
            conn.execute(
                "UPDATE sync_sessions SET closed=1 WHERE center=?1 AND id<>?2 AND closed=0",
                params![entry.center, id],
            )?;
            id
        }
    };
    let uplink: String =
        conn.query_row("SELECT uplink FROM sync_sessions WHERE id=?1", [id], |r| {
            r.get(0)
        })?;
    let failed = entry.result != SessionResult::Ok;
    conn.execute(
        "UPDATE sync_sessions SET uplink=?2,
            started_ms=min(started_ms, ?3), last_ms=max(last_ms, ?4),
            requests=requests+1, errors=errors+?5,
            bytes_up=bytes_up+?6, bytes_down=bytes_down+?7,
            docs_up=docs_up+?8, docs_down=docs_down+?9,
            changes_up=changes_up+?10, changes_down=changes_down+?11,
            refused=refused+?12, last_result=?13, last_error=?14,
            skew_ms=coalesce(?15, skew_ms), closed=max(closed, ?16)
         WHERE id=?1",
        params![
            id,
            merge_uplink(&uplink, &entry.uplink),
            entry.started_ms,
            entry.ended_ms,
            i64::from(failed),
            entry.bytes_up,
            entry.bytes_down,
            entry.docs_up,
            entry.docs_down,
            entry.changes_up,
            entry.changes_down,
            entry.refused,
            if failed {
                SessionResult::Error
            } else {
                SessionResult::Ok
            }
            .as_str(),
            entry.error,
            entry.skew_ms,
            i64::from(entry.ends_session && !failed),
        ],
    )?;
    Ok(id)
}

/// The newest `limit` sessions, optionally of one center, with results derived at `now_ms`.
fn list(
    conn: &Connection,
    center: Option<&str>,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<SyncSession>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT id, center, session, uplink, started_ms, last_ms, requests, errors,
                bytes_up, bytes_down, docs_up, docs_down, changes_up, changes_down, refused,
                last_result, last_error, skew_ms, closed
         FROM sync_sessions WHERE ?1 IS NULL OR center=?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![center, limit], |r| {
        let last_result = stored_result(&r.get::<_, String>(15)?);
        let closed: bool = r.get(18)?;
        let last_ms: i64 = r.get(5)?;
        let result = status(last_result, closed, last_ms, now_ms);
        Ok(SyncSession {
            id: r.get(0)?,
            center: r.get(1)?,
            session: r.get(2)?,
            uplink: r.get(3)?,
            started_ms: r.get(4)?,
            last_ms,
            ended_ms: (result != SessionResult::Open).then_some(last_ms),
            requests: r.get(6)?,
            errors: r.get(7)?,
            bytes_up: r.get(8)?,
            bytes_down: r.get(9)?,
            docs_up: r.get(10)?,
            docs_down: r.get(11)?,
            changes_up: r.get(12)?,
            changes_down: r.get(13)?,
            refused: r.get(14)?,
            result,
            error: if result == SessionResult::Error {
                r.get(16)?
            } else {
                None
            },
            skew_ms: r.get(17)?,
        })
    })?;
    rows.collect()
}

impl SyncLog for HubDb {
    fn prune_sync_log(&mut self, before_ms: i64, batch: u32) -> Result<(u64, u64), StorageError> {
        let tx = self.conn.transaction()?;
        let log = tx.execute(
            "DELETE FROM sync_log WHERE id IN
               (SELECT id FROM sync_log WHERE ended_ms < ?1 LIMIT ?2)",
            params![before_ms, batch],
        )?;
        let sessions = tx.execute(
            "DELETE FROM sync_sessions WHERE id IN
               (SELECT id FROM sync_sessions WHERE last_ms < ?1 LIMIT ?2)",
            params![before_ms, batch],
        )?;
        tx.commit()?;
        Ok((log as u64, sessions as u64))
    }

    fn record_sync(&mut self, e: &SyncLogEntry) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        let session_id = record(&tx, e)?;
        if !nothing_new(e) {
            tx.execute(
                "INSERT INTO sync_log(center, uplink, kind, started_ms, ended_ms, bytes_up,
               bytes_down, docs_up, docs_down, changes_up, changes_down, refused, result,
               error, skew_ms, cursor, session_id)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
                params![
                    e.center,
                    e.uplink,
                    e.kind.as_str(),
                    e.started_ms,
                    e.ended_ms,
                    e.bytes_up,
                    e.bytes_down,
                    e.docs_up,
                    e.docs_down,
                    e.changes_up,
                    e.changes_down,
                    e.refused,
                    e.result.as_str(),
                    e.error,
                    e.skew_ms,
                    e.cursor,
                    session_id
                ],
            )?;
        }
        let ok = (e.result == SessionResult::Ok).then_some(e.ended_ms);
        tx.execute(
            "INSERT INTO center_status(center, last_sync_ms, last_ok_ms, uplink, cursor, skew_ms,
               cursor_ms)
             VALUES (?1, ?2, ?3, ?4, coalesce(?5, 0), ?6, CASE WHEN ?5 IS NOT NULL THEN ?2 END)
             ON CONFLICT(center) DO UPDATE SET last_sync_ms=?2,
               last_ok_ms=coalesce(?3, last_ok_ms), uplink=?4,
               cursor=coalesce(?5, cursor), skew_ms=coalesce(?6, skew_ms),
               cursor_ms=CASE WHEN ?5 IS NOT NULL AND (cursor_ms IS NULL OR ?5 <> cursor)
                         THEN ?2 ELSE cursor_ms END",
            params![e.center, e.ended_ms, ok, e.uplink, e.cursor, e.skew_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn sessions(
        &mut self,
        center: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<SyncSession>, StorageError> {
        Ok(list(&self.conn, center, now_ms, limit)?)
    }

    fn sync_log(
        &mut self,
        center: Option<&str>,
        session: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SyncLogEntry>, StorageError> {
        let mut stmt = self.conn.prepare(
            "SELECT l.id, l.center, l.uplink, l.kind, l.started_ms, l.ended_ms, l.bytes_up,
                l.bytes_down, l.docs_up, l.docs_down, l.changes_up, l.changes_down,
                l.refused, l.result, l.error, l.skew_ms, l.cursor, l.session_id, s.session
         FROM sync_log l LEFT JOIN sync_sessions s ON s.id=l.session_id
         WHERE (?1 IS NULL OR l.center=?1) AND (?2 IS NULL OR l.session_id=?2)
         ORDER BY l.id DESC LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![center, session, limit], |r| {
                Ok(SyncLogEntry {
                    id: r.get(0)?,
                    center: r.get(1)?,
                    uplink: r.get(2)?,
                    kind: stored_kind(&r.get::<_, String>(3)?),
                    started_ms: r.get(4)?,
                    ended_ms: r.get(5)?,
                    bytes_up: r.get(6)?,
                    bytes_down: r.get(7)?,
                    docs_up: r.get(8)?,
                    docs_down: r.get(9)?,
                    changes_up: r.get(10)?,
                    changes_down: r.get(11)?,
                    refused: r.get(12)?,
                    result: stored_result(&r.get::<_, String>(13)?),
                    error: r.get(14)?,
                    skew_ms: r.get(15)?,
                    cursor: r.get(16)?,
                    session_id: r.get(17)?,
                    session: r.get(18)?,
                    ends_session: false,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn center_facts(&mut self) -> Result<Vec<CenterFacts>, StorageError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.center,
                (SELECT max(last_ms) FROM sync_sessions x WHERE x.center=c.center),
                (SELECT max(last_ms) FROM sync_sessions x
                   WHERE x.center=c.center AND x.last_result='ok'),
                (SELECT uplink FROM sync_sessions x WHERE x.center=c.center
                   ORDER BY id DESC LIMIT 1),
                max((SELECT coalesce(max(fseq), 0) FROM feed f WHERE f.center=c.center),
                    (SELECT coalesce(max(floor), 0) FROM feed_floors)),
                coalesce(s.cursor, 0), s.skew_ms,
                (SELECT count(*) FROM sync_sessions x WHERE x.center=c.center),
                (SELECT count(*) FROM feed f
                   WHERE f.center=c.center AND f.fseq > coalesce(s.cursor, 0)),
                s.cursor_ms
         FROM (SELECT center FROM centers UNION SELECT center FROM center_status) c
         LEFT JOIN center_status s ON s.center=c.center ORDER BY c.center",
        )?;
        let rows: Vec<CenterFacts> = stmt
            .query_map([], |r| {
                Ok(CenterFacts {
                    center: r.get(0)?,
                    last_sync_ms: r.get(1)?,
                    last_ok_ms: r.get(2)?,
                    uplink: r.get(3)?,
                    feed_len: r.get(4)?,
                    cursor: r.get(5)?,
                    skew_ms: r.get(6)?,
                    sessions: r.get(7)?,
                    backlog: r.get(8)?,
                    cursor_ms: r.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
