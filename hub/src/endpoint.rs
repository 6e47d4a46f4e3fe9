//! The sync endpoint `POST /sync/v1` (served over mutual TLS by [`crate::tls::serve`]):
//! body = one encoded `Request`, answer = one encoded `Response`
//! (`application/octet-stream`). The center is taken ONLY from the verified
//! [`CenterIdentity`] in the request extensions; each request is decoded on the async
//! side, answered by `handle_decoded` on the writer thread in one transaction, and
//! appended to the sync log (center, uplink from the `X-Markaz-Uplink` header, times,
//! bytes, documents and changes each way, refusals, result, skew) and to its session (`X-Markaz-Session`, see
//! [`crate::sessions`]). A malformed body is answered with an `Error` response.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use markaz_sync::protocol::contract::{
    RequestKind, SESSION_HEADER, SYNC_PATH, SessionResult, UPLINK_HEADER, Uplink,
};
use markaz_sync::protocol::{Request, Response};

use crate::sessions::parse_session_id;
use crate::storage::{HubEngine, HubWriter, SyncLogEntry};
use crate::tls::CenterIdentity;

/// The router of the sync listener.
pub fn router(writer: HubWriter, max_body_bytes: u64) -> Router {
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route(SYNC_PATH, post(sync))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(writer)
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// The uplink a center says it used; anything else is recorded as `unknown`.
pub fn uplink_of(headers: &HeaderMap) -> &'static str {
    headers
        .get(UPLINK_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Uplink::parse)
        .map_or("unknown", Uplink::as_str)
}

/// Once per session (at its Hello): a center whose backlog cannot drain is logged at its
/// alarm's level, as the overview shows it.
fn log_alarm(e: &mut dyn HubEngine, center: &str, now_ms: i64) {
    let rows = match crate::oversight::centers(e, now_ms) {
        Ok(rows) => rows,
        Err(err) => {
            tracing::error!(%err, center, "could not read the centers' figures");
            return;
        }
    };
    let Some(row) = rows.into_iter().find(|r| r.center == center) else {
        return;
    };
    let Some(alarm) = row.alarm else { return };
    let message = alarm.message_en();
    if alarm.level() == "error" {
        tracing::error!(center, backlog = row.backlog, cursor = row.cursor,
            feed_len = row.feed_len, alarm = %message, "the backlog of a center cannot drain");
    } else {
        tracing::warn!(center, backlog = row.backlog, cursor = row.cursor,
            feed_len = row.feed_len, alarm = %message, "the backlog of a center cannot drain");
    }
}

async fn sync(
    State(writer): State<HubWriter>,
    identity: Option<Extension<CenterIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    // tls::serve always inserts it; a router mounted elsewhere must not serve anyone.
    let Some(Extension(identity)) = identity else {
        return (StatusCode::FORBIDDEN, "client certificate required").into_response();
    };
    let center = identity.center_id;
    let uplink = uplink_of(&headers);
    let session = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_session_id);
    let started = now_ms();
    let body_len = body.len();
    // Decoded here, on the async side: the writer thread only answers.
    let req = Request::decode(&body);
    drop(body);
    let (skew_wall_ms, done_at, docs_up) = match &req {
        Ok(Request::Hello {
            wall_ms,
            done_at,
            epoch_seen,
            ..
        }) => (Some(*wall_ms), done_at.zip(epoch_seen.clone()), 0),
        Ok(Request::Push { changes, .. }) => {
            let docs: BTreeSet<&str> = changes.iter().map(|(_, c)| c.doc_id.as_str()).collect();
            (None, None, docs.len() as i64)
        }
        Ok(Request::RepairSync { msgs }) => (None, None, msgs.len() as i64),
        _ => (None, None, 0),
    };
    let c = center.clone();
    let result = writer
        .run(move |e| {
            let (resp, log) = e.sync_request(&c, now_ms(), req);
            let ended = now_ms();
            let mut entry = SyncLogEntry {
                center: c.to_string(),
                session,
                uplink: uplink.into(),
                kind: log.kind,
                started_ms: started as i64,
                ended_ms: ended as i64,
                bytes_up: body_len as i64,
                changes_up: log.changes_in as i64,
                changes_down: log.changes_out as i64,
                docs_up,
                refused: log.refused as i64,
                result: if log.error.is_none() {
                    SessionResult::Ok
                } else {
                    SessionResult::Error
                },
                error: log.error.clone(),
                skew_ms: skew_wall_ms.map(|w| ended as i64 - w as i64),
                ..SyncLogEntry::default()
            };
            match &resp {
                Response::PullBatch {
                    changes,
                    snapshots,
                    next_cursor,
                    more,
                } => {
                    // Pull is the client's last phase: a batch with nothing more ends it.
                    entry.ends_session = !more || (changes.is_empty() && snapshots.is_empty());
                    let docs: BTreeSet<&str> = changes
                        .iter()
                        .chain(snapshots)
                        .map(|c| c.doc_id.as_str())
                        .collect();
                    entry.docs_down = docs.len() as i64;
                    entry.cursor = Some(*next_cursor as i64);
                }
                Response::RepairSync { msgs } => {
                    entry.docs_down = msgs.iter().filter(|m| m.1.is_some()).count() as i64;
                }
                Response::Welcome {
                    epoch, feed_len, ..
                } => {
                    // A center with nothing to push offers to stop at the Welcome
                    // (`done_at` = its pull cursor); it does when nothing is new here.
                    if let Some((cursor, seen)) = &done_at {
                        entry.ends_session = feed_len <= cursor && seen == epoch;
                    }
                }
                Response::Error { code, message } if entry.error.is_none() => {
                    entry.result = SessionResult::Error;
                    entry.error = Some(format!("{code}: {message}"));
                }
                _ => {}
            }
            let resp = resp.encode();
            entry.bytes_down = resp.len() as i64;
            if let Err(err) = e.record_sync(&entry) {
                tracing::error!(%err, center = %entry.center, "could not write the sync log");
            }
            if entry.kind == RequestKind::Hello {
                log_alarm(e, &entry.center, ended as i64);
            }
            tracing::info!(center = %entry.center, uplink, session = ?entry.session, kind = %entry.kind,
                bytes_up = entry.bytes_up, bytes_down = entry.bytes_down,
                result = %entry.result, "sync request");
            resp
        })
        .await;
    match result {
        Ok(resp) => ([(header::CONTENT_TYPE, "application/octet-stream")], resp).into_response(),
        Err(err) => {
            tracing::error!(%err, %center, "sync request not handled");
            (StatusCode::SERVICE_UNAVAILABLE, "hub storage unavailable").into_response()
        }
    }
}
