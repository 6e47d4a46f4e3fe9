//! The sync log pages: sessions (`/sync-log`) and the requests of one session or center
//! (`/sync-log/requests`), templated, times in the governorate's time zone.
//!
//! An idle center syncs every few seconds and each such session brings nothing new; a
//! run of them of one center is shown as ONE row ("12 sessions with nothing new, from …
//! to …", [`group_quiet`]), so the sessions that moved something or failed stay in
//! view. `?failures=1` lists the failed sessions only.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

use super::access::Caller;
use super::pages::{failed, local, page};
use super::{Q, WebState, now_ms};
use crate::oversight;
use crate::sessions::SyncSession;
use markaz_sync::protocol::contract::SessionResult;

/// Sessions read for the page (newest first).
const SESSIONS_SHOWN: u32 = 500;
/// Requests read for the requests page (newest first).
const REQUESTS_SHOWN: u32 = 1000;

/// Whether a session moved nothing: it ended well with no document, change or refusal
/// either way.
pub fn is_quiet(s: &SyncSession) -> bool {
    s.result == SessionResult::Ok
        && s.docs_up == 0
        && s.docs_down == 0
        && s.changes_up == 0
        && s.changes_down == 0
        && s.refused == 0
}

/// One row of the sessions page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRow {
    Session(SyncSession),
    /// Consecutive sessions of one center that moved nothing, newest first.
    Quiet {
        center: String,
        count: usize,
        first_ms: i64,
        last_ms: i64,
        uplink: String,
    },
}

/// Groups each center's runs of quiet sessions (see [`is_quiet`]) into one row, placed
/// where the run's newest session was. `sessions` is newest first (of one center or of
/// all, interleaved); a session of a center that moved something ends that center's run.
pub fn group_quiet(sessions: Vec<SyncSession>) -> Vec<LogRow> {
    let mut rows: Vec<LogRow> = Vec::with_capacity(sessions.len());
    // The row index of each center's open run.
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for s in sessions {
        if !is_quiet(&s) {
            open.remove(&s.center);
            rows.push(LogRow::Session(s));
            continue;
        }
        match open.get(&s.center).and_then(|i| rows.get_mut(*i)) {
            Some(LogRow::Quiet {
                count, first_ms, ..
            }) => {
                *count += 1;
                *first_ms = (*first_ms).min(s.started_ms);
            }
            _ => {
                open.insert(s.center.clone(), rows.len());
                rows.push(LogRow::Quiet {
                    center: s.center,
                    count: 1,
                    first_ms: s.started_ms,
                    last_ms: s.last_ms,
                    uplink: s.uplink,
                });
            }
        }
    }
    rows
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SyncLogQuery {
    center: Option<String>,
    /// `1`: failed sessions only.
    failures: Option<String>,
    session: Option<i64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GET /sync-log?center=&failures=1`
pub(super) async fn sessions(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<SyncLogQuery>,
) -> Response {
    let center = nonempty(&q.center);
    let only_failures = q.failures.as_deref() == Some("1");
    let now = now_ms();
    let want = center.clone();
    let loaded = s
        .writer
        .run(move |e| e.sessions(want.as_deref(), now, SESSIONS_SHOWN))
        .await;
    let list = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let total = list.len();
    let list: Vec<SyncSession> = if only_failures {
        list.into_iter()
            .filter(|x| x.result == SessionResult::Error)
            .collect()
    } else {
        list
    };
    let rows: Vec<Value> = group_quiet(list)
        .into_iter()
        .map(|r| match r {
            LogRow::Session(x) => context! {
                quiet => false, id => x.id, center => x.center, uplink => x.uplink,
                started => local(&s, Some(x.started_ms)),
                seconds => (x.last_ms - x.started_ms).max(0) / 1000,
                requests => x.requests, bytes_up => x.bytes_up, bytes_down => x.bytes_down,
                docs_up => x.docs_up, docs_down => x.docs_down,
                changes_up => x.changes_up, changes_down => x.changes_down,
                refused => x.refused, skew_ms => x.skew_ms, result => x.result,
                error => x.error,
            },
            LogRow::Quiet {
                center,
                count,
                first_ms,
                last_ms,
                uplink,
            } => context! {
                quiet => true, center => center, count => count, uplink => uplink,
                from => local(&s, Some(first_ms)), to => local(&s, Some(last_ms)),
            },
        })
        .collect();
    let path = match &center {
        Some(c) => format!("/sync-log?center={}", markaz_web::http::urlencode(c)),
        None => "/sync-log".to_string(),
    };
    page(
        &caller,
        &path,
        StatusCode::OK,
        "sync_log.html",
        context! { rows => rows, total => total, center => center,
        only_failures => only_failures },
    )
}

/// `GET /sync-log/requests?center=&session=`
pub(super) async fn requests(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<SyncLogQuery>,
) -> Response {
    let center = nonempty(&q.center);
    let (want, session) = (center.clone(), q.session);
    let loaded = s
        .writer
        .run(move |e| oversight::sync_log(e, want.as_deref(), session, REQUESTS_SHOWN))
        .await;
    let list = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            context! {
                center => r.center, uplink => r.uplink, kind => r.kind,
                started => local(&s, Some(r.started_ms)),
                ms => (r.ended_ms - r.started_ms).max(0),
                bytes_up => r.bytes_up, bytes_down => r.bytes_down,
                docs_up => r.docs_up, docs_down => r.docs_down,
                changes_up => r.changes_up, changes_down => r.changes_down,
                refused => r.refused, result => r.result, error => r.error,
            }
        })
        .collect();
    page(
        &caller,
        "/sync-log/requests",
        StatusCode::OK,
        "sync_requests.html",
        context! { rows => rows, center => center, session => session },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(center: &str, id: i64, changes: i64, result: SessionResult) -> SyncSession {
        SyncSession {
            id,
            center: center.into(),
            uplink: "primary".into(),
            started_ms: id * 10_000,
            last_ms: id * 10_000 + 50,
            changes_up: changes,
            result,
            ..SyncSession::default()
        }
    }

    #[test]
    fn runs_of_quiet_sessions_of_a_center_are_one_row() {
        // Newest first; midan and daraa interleave.
        let list = vec![
            session("midan", 9, 0, SessionResult::Ok),
            session("daraa", 8, 0, SessionResult::Ok),
            session("midan", 7, 0, SessionResult::Ok),
            session("midan", 6, 0, SessionResult::Ok),
            session("daraa", 5, 3, SessionResult::Ok),
            session("midan", 4, 2, SessionResult::Ok),
            session("midan", 3, 0, SessionResult::Ok),
            session("midan", 2, 0, SessionResult::Error),
            session("midan", 1, 0, SessionResult::Ok),
        ];
        let rows = group_quiet(list);
        let shape: Vec<String> = rows
            .iter()
            .map(|r| match r {
                LogRow::Session(s) => format!("{}#{}", s.center, s.id),
                LogRow::Quiet {
                    center,
                    count,
                    first_ms,
                    last_ms,
                    ..
                } => format!("{center}x{count}@{first_ms}-{last_ms}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "midanx3@60000-90050",
                "daraax1@80000-80050",
                "daraa#5",
                "midan#4",
                "midanx1@30000-30050",
                "midan#2",
                "midanx1@10000-10050",
            ]
        );
    }

    #[test]
    fn a_session_that_refused_or_moved_documents_is_not_quiet() {
        let mut s = session("midan", 1, 0, SessionResult::Ok);
        assert!(is_quiet(&s));
        s.refused = 1;
        assert!(!is_quiet(&s));
        let mut s = session("midan", 1, 0, SessionResult::Ok);
        s.docs_down = 1;
        assert!(!is_quiet(&s));
        assert!(!is_quiet(&session("midan", 1, 0, SessionResult::Open)));
    }
}
