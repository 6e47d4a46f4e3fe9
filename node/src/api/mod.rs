//! The JSON API under `/api/v1`: thin handlers that parse input, call the use cases in
//! [`crate::app`], and map errors in one place ([`error::ApiError`]).
//!
//! Authentication: `Authorization: Bearer <token>` (terminals and scripts), or the
//! `markaz_session` cookie set at login (web pages). Cookie-authenticated requests that
//! change state must carry the session's CSRF token in `X-CSRF-Token`.

pub mod error;
mod routes;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde_json::json;

use crate::app::{Actor, App};
use crate::error::AppError;
use error::ApiError;

pub use routes::{ROUTES, Route};

pub const SESSION_COOKIE: &str = "markaz_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The OpenAPI document served at `/api/v1/openapi.json` (a copy lives in docs/).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The token a request presents, and whether it came from the cookie.
pub fn presented_token(parts: &Parts) -> Option<(String, bool)> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some((t.trim().to_string(), false));
    }
    cookie(parts, SESSION_COOKIE).map(|t| (t, true))
}

/// Reads one cookie by name.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The logged-in actor of a request.
pub struct Auth(pub Actor);

impl FromRequestParts<App> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let (token, from_cookie) = presented_token(parts).ok_or(AppError::Unauthenticated)?;
        let (actor, csrf) = app.authenticate(&token).await?;
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if from_cookie && unsafe_method {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return Err(AppError::forbidden(
                    "csrf",
                    "missing or wrong CSRF token for a cookie session",
                )
                .into());
            }
        }
        Ok(Auth(actor))
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client's address (for login rate limiting).
pub fn client_addr(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The `/api/v1` router plus `/healthz`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/api/v1", routes::v1())
        .fallback(not_found)
        .with_state(app)
}

/// How long `/healthz` waits for its probe write while writes are failing.
const HEALTH_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Healthy = the database answers a read and the writer can commit. While the writer's
/// last batch failed, a one-row probe write finds out whether it can now (a freed disk
/// turns healthy without waiting for a clerk's write). 503 with the same JSON otherwise.
async fn healthz(State(app): State<App>) -> Response {
    let read = app
        .db
        .readers
        .read(|c| -> Result<i64, AppError> { Ok(c.query_row("SELECT 1", [], |r| r.get(0))?) })
        .await;
    let writer = &app.db.writer;
    let mut health = writer.health();
    let mut probe_error = None;
    if health.state == crate::storage::WriterState::Failing {
        if let Err(e) = writer.probe(HEALTH_PROBE_TIMEOUT).await {
            probe_error = Some(e.to_string());
        }
        health = writer.health();
    }
    let log = crate::logging::process_stats();
    let error = match (&read, health.state) {
        (Err(e), _) => Some(format!("the database does not answer a read: {e}")),
        (Ok(_), crate::storage::WriterState::Ok) => None,
        (Ok(_), state) => Some(format!(
            "writes cannot succeed: the storage writer is {}{}",
            state.as_str(),
            health
                .refused
                .as_ref()
                .or(probe_error.as_ref())
                .or(health.last_error.as_ref())
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
    };
    let body = json!({
        "status": if error.is_none() { "ok" } else { "unhealthy" },
        "center": app.settings.center_id,
        "error": error,
        "writer": {
            "state": health.state.as_str(),
            "consecutive_failures": health.consecutive_failures,
            "last_error": health.last_error,
            "restarts": health.restarts,
            "commits": health.commits,
            "refused": health.refused,
        },
        "log": {"written_lines": log.written, "dropped_lines": log.dropped},
        "integrity": integrity_json(&app),
    });
    let status = if error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// What is known of the database file's integrity, for `/healthz` and `/status`.
pub fn integrity_json(app: &App) -> serde_json::Value {
    use crate::storage::integrity::Integrity;
    let state = app.db.integrity.get();
    let wal =
        app.db.integrity.wal_shortfall().map(
            |w| json!({"expected_frames": w.expected_frames, "present_frames": w.present_frames}),
        );
    match state {
        Integrity::Checking => json!({"state": "checking", "wal_shortfall": wal}),
        Integrity::Ok { took } => json!({
            "state": "ok",
            "took_ms": took.as_millis() as u64,
            "wal_shortfall": wal,
        }),
        Integrity::Corrupt { problems } => json!({
            "state": "corrupt",
            "problems": problems,
            "wal_shortfall": wal,
            "what_to_do": "writes are refused; restore the last backup or rebuild from the hub (docs/OPERATIONS.md, \"A damaged database\")",
        }),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

/// Server-sent events: `public_only` streams (the display) carry only events without
/// personal data.
pub fn sse(
    app: &App,
    public_only: bool,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let rx = app.bus.subscribe();
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) if public_only && !ev.is_public() => continue,
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    return Some((Ok(Event::default().event(ev.name()).data(data)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    return Some((Ok(Event::default().event("lagged").data(n.to_string())), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
