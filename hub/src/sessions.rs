//! Sync sessions: one row per (center, session) in `sync_sessions`, summing the
//! per-request rows of `sync_log` that belong to it.
//!
//! A node names its session in the `X-Markaz-Session` header (a UUID v4) and its uplink in
//! `X-Markaz-Uplink` (both in `markaz_sync::protocol::contract`). A request without a valid session header falls back to the
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
//!
//! A session with nothing new on either side — one Hello whose Welcome ends it
//! ([`nothing_new`]), every `interval_secs` of every idle center — is ONE row: its
//! session row, with no per-request row in `sync_log` (it would say nothing the session
//! row does not). Rows older than `[hub] sync_log_days` are deleted hourly
//! ([`crate::prune_sync_log`]).

use markaz_sync::protocol::contract::{RequestKind, SessionResult};
use serde::Serialize;

/// A session without a request for this long has ended.
pub const SESSION_IDLE_MS: i64 = 5 * 60_000;
/// Most uplink changes kept in a session's uplink path.
pub const MAX_UPLINK_HOPS: usize = 8;
/// Separator of the uplink path.
pub const UPLINK_ARROW: &str = "→";

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

/// Whether a request is a whole session with nothing new: a Hello answered by a Welcome
/// that ended the session, successfully. Such a request adds to its session row only.
pub fn nothing_new(e: &crate::storage::SyncLogEntry) -> bool {
    e.kind == RequestKind::Hello
        && e.ends_session
        && e.result == SessionResult::Ok
        && e.changes_up == 0
}

/// The derived result of a session: `error`, `ok` or `open` (see the module doc).
pub fn status(
    last_result: SessionResult,
    closed: bool,
    last_ms: i64,
    now_ms: i64,
) -> SessionResult {
    if last_result != SessionResult::Ok {
        SessionResult::Error
    } else if closed || now_ms - last_ms >= SESSION_IDLE_MS {
        SessionResult::Ok
    } else {
        SessionResult::Open
    }
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
    pub result: SessionResult,
    /// The error of the last request, when it failed.
    pub error: Option<String>,
    /// Hub wall clock minus the center's, from the session's Hello.
    pub skew_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use SessionResult::{Error, Ok, Open};
        assert_eq!(status(Ok, false, 0, SESSION_IDLE_MS - 1), Open);
        assert_eq!(status(Ok, false, 0, SESSION_IDLE_MS), Ok);
        assert_eq!(status(Ok, true, 0, 1), Ok);
        assert_eq!(status(Error, false, 0, 1), Error);
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
