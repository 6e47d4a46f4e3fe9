//! Sync sessions: one row per (center, session) in `sync_sessions`, summing the
//! per-request rows of `sync_log` that belong to it.
//!
//! A node names its session in the `X-Markaz-Session` header (a UUID v4) and its uplink in
//! `X-Markaz-Uplink`. A request without a valid session header falls back to the
//! connection-less rule: a Hello opens a new session, any other request joins the center's
//! latest such session. An uplink change inside a session is kept as a path
//! (`primary→modem`).
//!
//! A session's result is derived when it is read ([`status`]): `error` when its last
//! request failed (with that error); `ok` once it ended well — its last pull caught the
//! center up (pull is the client's final phase), a newer session of the center started,
//! or it saw no request for [`SESSION_IDLE_MS`]; and `open` while it may still be running.
//! Bytes, documents, changes and refusals are the sums of its requests (a document sent
//! in two batches counts twice).

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::storage::SyncLogEntry;

/// The header in which a node names its sync session (a UUID v4).
pub const SESSION_HEADER: &str = "x-markaz-session";
/// A session without a request for this long has ended.
pub const SESSION_IDLE_MS: i64 = 5 * 60_000;
/// Most uplink changes kept in a session's uplink path.
pub const MAX_UPLINK_HOPS: usize = 8;
/// Separator of the uplink path.
pub const UPLINK_ARROW: &str = "→";

/// Create `sync_sessions` and link `sync_log` rows to it; idempotent (older hub databases
/// get the `session_id` column added).
pub fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
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
         CREATE INDEX IF NOT EXISTS sync_sessions_center ON sync_sessions(center, id);",
    )?;
    let has_col: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('sync_log') WHERE name='session_id'")?
        .exists([])?;
    if !has_col {
        conn.execute_batch(
            "ALTER TABLE sync_log ADD COLUMN session_id INTEGER;
             CREATE INDEX IF NOT EXISTS sync_log_session ON sync_log(session_id, id);",
        )?;
    }
    Ok(())
}

/// The session id of a header value: a UUID v4 in its canonical text form (lowercased);
/// anything else is no session id.
pub fn parse_session_id(v: &str) -> Option<String> {
    let v = v.trim();
    let b = v.as_bytes();
    let shape = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    (shape && b[14] == b'4' && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B'))
        .then(|| v.to_ascii_lowercase())
}

/// The uplink path after a request over `next`: unchanged when it is the last one used,
/// else `…→next` (at most [`MAX_UPLINK_HOPS`] changes are kept, then the last one is
/// replaced).
pub fn merge_uplink(path: &str, next: &str) -> String {
    let mut hops: Vec<&str> = path.split(UPLINK_ARROW).filter(|s| !s.is_empty()).collect();
    if hops.last() == Some(&next) {
        return path.to_string();
    }
    if hops.len() > MAX_UPLINK_HOPS {
        hops.pop();
    }
    hops.push(next);
    hops.join(UPLINK_ARROW)
}

/// The derived result of a session: `error`, `ok` or `open` (see the module doc).
pub fn status(last_result: &str, closed: bool, last_ms: i64, now_ms: i64) -> &'static str {
    if last_result != "ok" {
        "error"
    } else if closed || now_ms - last_ms >= SESSION_IDLE_MS {
        "ok"
    } else {
        "open"
    }
}

/// Find or open the session `entry` belongs to, add the request to it, and return its
/// row id. Run inside the transaction that inserts the request row.
pub fn record(conn: &Connection, entry: &SyncLogEntry) -> Result<i64, rusqlite::Error> {
    let existing: Option<i64> = match &entry.session {
        Some(key) => conn
            .query_row(
                "SELECT id FROM sync_sessions WHERE center=?1 AND session=?2",
                params![entry.center, key],
                |r| r.get(0),
            )
            .optional()?,
        None if entry.kind == "hello" => None,
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
    let failed = entry.result != "ok";
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
            if failed { "error" } else { "ok" },
            entry.error,
            entry.skew_ms,
            i64::from(entry.ends_session && !failed),
        ],
    )?;
    Ok(id)
}

/// One sync session as the pages and the API show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncSession {
    pub id: i64,
    pub center: String,
    /// The node's session id, or `auto:…` for a session grouped by the fallback rule.
    pub session: String,
    /// The uplink, or the path of uplinks used (`primary→modem`).
    pub uplink: String,
    pub started_ms: i64,
    pub last_ms: i64,
    /// When it ended (its last request), `None` while open.
    pub ended_ms: Option<i64>,
    pub requests: i64,
    pub errors: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub docs_up: i64,
    pub docs_down: i64,
    pub changes_up: i64,
    pub changes_down: i64,
    pub refused: i64,
    /// `ok`, `error` or `open`.
    pub result: String,
    /// The error of the last request, when it failed.
    pub error: Option<String>,
    /// Hub wall clock minus the center's, from the session's Hello.
    pub skew_ms: Option<i64>,
}

/// The newest `limit` sessions, optionally of one center, with results derived at `now_ms`.
pub fn list(
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
        let last_result: String = r.get(15)?;
        let closed: bool = r.get(18)?;
        let last_ms: i64 = r.get(5)?;
        let result = status(&last_result, closed, last_ms, now_ms);
        Ok(SyncSession {
            id: r.get(0)?,
            center: r.get(1)?,
            session: r.get(2)?,
            uplink: r.get(3)?,
            started_ms: r.get(4)?,
            last_ms,
            ended_ms: (result != "open").then_some(last_ms),
            requests: r.get(6)?,
            errors: r.get(7)?,
            bytes_up: r.get(8)?,
            bytes_down: r.get(9)?,
            docs_up: r.get(10)?,
            docs_down: r.get(11)?,
            changes_up: r.get(12)?,
            changes_down: r.get(13)?,
            refused: r.get(14)?,
            result: result.into(),
            error: if result == "error" { r.get(16)? } else { None },
            skew_ms: r.get(17)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        crate::storage::migrate_own(&c).unwrap();
        c
    }

    fn req(kind: &str, session: Option<&str>, uplink: &str, t: i64, up: i64) -> SyncLogEntry {
        SyncLogEntry {
            center: "midan".into(),
            session: session.map(str::to_string),
            uplink: uplink.into(),
            kind: kind.into(),
            started_ms: t,
            ended_ms: t + 10,
            bytes_up: up,
            bytes_down: 2 * up,
            changes_up: 1,
            result: "ok".into(),
            ..SyncLogEntry::default()
        }
    }

    #[test]
    fn session_ids_are_uuid_v4() {
        let ok = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        assert_eq!(parse_session_id(ok).as_deref(), Some(ok));
        assert_eq!(
            parse_session_id("1B4E28BA-2FA1-41D2-883F-0016D3CCA427").as_deref(),
            Some(ok)
        );
        for bad in [
            "",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427", // version 1
            "1b4e28ba-2fa1-41d2-c83f-0016d3cca427", // wrong variant
            "1b4e28ba2fa141d2883f0016d3cca427",
            "1b4e28ba-2fa1-41d2-883f-0016d3cca42g",
            "' OR 1=1 --",
        ] {
            assert_eq!(parse_session_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn uplink_path_records_changes() {
        assert_eq!(merge_uplink("primary", "primary"), "primary");
        assert_eq!(merge_uplink("primary", "modem"), "primary→modem");
        assert_eq!(merge_uplink("primary→modem", "modem"), "primary→modem");
        assert_eq!(
            merge_uplink("primary→modem", "primary"),
            "primary→modem→primary"
        );
        let mut p = "primary".to_string();
        for i in 0..40 {
            p = merge_uplink(&p, if i % 2 == 0 { "modem" } else { "primary" });
        }
        assert!(p.split(UPLINK_ARROW).count() <= MAX_UPLINK_HOPS + 1, "{p}");
        assert!(p.ends_with("primary"));
    }

    #[test]
    fn status_is_open_until_idle_or_superseded_and_error_ends_it() {
        assert_eq!(status("ok", false, 0, SESSION_IDLE_MS - 1), "open");
        assert_eq!(status("ok", false, 0, SESSION_IDLE_MS), "ok");
        assert_eq!(status("ok", true, 0, 1), "ok");
        assert_eq!(status("error", false, 0, 1), "error");
    }

    #[test]
    fn requests_group_by_header_or_by_hello() {
        let c = db();
        let a = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        let b = "9f0c2a4e-7d1b-4c3e-a5f6-112233445566";
        let s1 = record(&c, &req("hello", Some(a), "primary", 0, 10)).unwrap();
        assert_eq!(
            record(&c, &req("push", Some(a), "modem", 20, 100)).unwrap(),
            s1
        );
        let s2 = record(&c, &req("hello", Some(b), "modem", 40, 10)).unwrap();
        assert_ne!(s1, s2);
        // Without the header: each Hello opens a session, the rest join the latest.
        let f1 = record(&c, &req("hello", None, "primary", 60, 5)).unwrap();
        assert_eq!(
            record(&c, &req("pull", None, "primary", 70, 5)).unwrap(),
            f1
        );
        let f2 = record(&c, &req("hello", None, "primary", 80, 5)).unwrap();
        assert_ne!(f1, f2);
        let mut failing = req("pull", None, "primary", 90, 5);
        failing.result = "error".into();
        failing.error = Some("hub_error: commit failed".into());
        assert_eq!(record(&c, &failing).unwrap(), f2);

        let rows = list(&c, Some("midan"), 100, 50).unwrap();
        assert_eq!(rows.len(), 4);
        let by_id = |id| rows.iter().find(|r| r.id == id).unwrap();
        let first = by_id(s1);
        assert_eq!(first.uplink, "primary→modem");
        assert_eq!(
            (first.requests, first.bytes_up, first.bytes_down),
            (2, 110, 220)
        );
        assert_eq!(first.changes_up, 2);
        assert_eq!((first.started_ms, first.last_ms), (0, 30));
        assert_eq!(first.result, "ok", "a newer session ended it");
        let last = by_id(f2);
        assert_eq!(last.result, "error");
        assert_eq!(last.error.as_deref(), Some("hub_error: commit failed"));
        assert_eq!(last.errors, 1);
        // A retry that succeeds inside the same session reopens it.
        record(&c, &req("pull", None, "primary", 95, 5)).unwrap();
        let rows = list(&c, Some("midan"), 200, 1).unwrap();
        assert_eq!(
            (rows[0].id, rows[0].result.as_str(), rows[0].ended_ms),
            (f2, "open", None)
        );
        assert!(list(&c, Some("qanawat"), 0, 10).unwrap().is_empty());
        // A last pull that caught the center up ends the session at once.
        let mut last_pull = req("pull", None, "primary", 96, 5);
        last_pull.ends_session = true;
        record(&c, &last_pull).unwrap();
        let rows = list(&c, Some("midan"), 200, 1).unwrap();
        assert_eq!(
            (rows[0].result.as_str(), rows[0].ended_ms),
            ("ok", Some(106))
        );
    }

    proptest::proptest! {
        #[test]
        fn session_id_parser_never_panics(s in "\\PC*") {
            let _ = parse_session_id(&s);
        }

        #[test]
        fn every_v4_uuid_is_accepted(mut b in proptest::prelude::any::<[u8; 16]>()) {
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h = hex::encode(b);
            let u = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
            proptest::prop_assert_eq!(parse_session_id(&u), Some(u.clone()));
        }
    }
}
