//! What the node and the hub share of their Prometheus endpoints: the HTTP request
//! metrics (a counter and a latency histogram per matched route), who may read
//! `/metrics` ([`MetricsAccess`]), and the OpenMetrics text answer ([`text`]).
//!
//! Guarantees: a route is labelled by the route template it matched (`/api/v1/cases/{no}`),
//! never by the raw path, and a request that matched no route counts under
//! [`UNMATCHED`] — so no client can grow the number of series. The text is written by
//! `prometheus-client`, not by hand.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// The `route` label of a request that matched no route.
pub const UNMATCHED: &str = "(unmatched)";

/// The content type of the answer (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// HTTP requests and their latency by route. Cheap to clone (shared counters).
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "markaz_http_requests",
            "HTTP requests answered, by method, matched route and status",
            m.requests.clone(),
        );
        registry.register(
            "markaz_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head), by method and matched route",
            m.duration.clone(),
        );
        m
    }

    fn observe(&self, method: &Method, route: &str, status: StatusCode, seconds: f64) {
        // Only the standard methods get their own label: a client cannot add series.
        let method = match *method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS => method.as_str().to_owned(),
            _ => "other".to_owned(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.to_owned(),
                status: status.as_u16().to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(seconds);
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) that counts every request under
/// the route template it matched.
pub async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        &method,
        &route,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Who may read `/metrics`: with a token, whoever sends it; without, clients on this
/// machine only (unless the endpoint has a listener of its own, which the operator chose).
#[derive(Clone, Debug)]
pub struct MetricsAccess {
    token: Option<Arc<str>>,
    loopback_only: bool,
}

impl MetricsAccess {
    /// Anyone who reaches the listener may read (a separate metrics listener).
    pub fn open() -> Self {
        Self {
            token: None,
            loopback_only: false,
        }
    }

    /// Clients on this machine only.
    pub fn loopback() -> Self {
        Self {
            token: None,
            loopback_only: true,
        }
    }

    /// A bearer token from the first line of `path` is required (from any address).
    pub fn token_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds no token", path.display()),
            ));
        }
        Ok(Self {
            token: Some(token.into()),
            loopback_only: false,
        })
    }

    /// The access `[metrics]` asks for: a token when `token_file` is set, else anyone on
    /// a separate listener, else loopback clients.
    pub fn from_settings(
        token_file: Option<&Path>,
        separate_listener: bool,
    ) -> std::io::Result<Self> {
        match token_file {
            Some(p) => Self::token_file(p),
            None if separate_listener => Ok(Self::open()),
            None => Ok(Self::loopback()),
        }
    }

    /// `Ok` when the request may read; otherwise the answer to send (401 or 403, JSON).
    // The refusal is the response itself, built once per refused scrape.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), Response> {
        if let Some(token) = &self.token {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or("");
            return if constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err(refusal(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send the metrics token as Authorization: Bearer <token>",
                ))
            };
        }
        if self.loopback_only && !peer.is_some_and(|ip| ip.is_loopback()) {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                "metrics are served to this machine only; set [metrics] token_file or listen",
            ));
        }
        Ok(())
    }

    /// [`MetricsAccess::check`] on a whole request.
    // The refusal is the response itself, built once per refused scrape.
    #[allow(clippy::result_large_err)]
    pub fn check_request(&self, req: &Request) -> Result<(), Response> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        self.check(peer, req.headers())
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The registry as OpenMetrics text, or a 500 if it cannot be written.
pub fn text(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics",
                "the metrics could not be written",
            )
        }
    }
}

/// Free and total bytes of the filesystem holding `path` (`statvfs`).
// The field types of `statvfs` differ between targets: the casts are needed on some.
#[allow(clippy::unnecessary_cast)]
#[allow(unsafe_code)] // each `unsafe` block here says why it is sound
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` is written by statvfs before it is read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    Ok(DiskSpace {
        // What an unprivileged process may still use.
        free: st.f_bavail as u64 * frsize,
        total: st.f_blocks as u64 * frsize,
    })
}

/// A filesystem's size and room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged process may still write.
    pub free: u64,
    /// Bytes of the filesystem.
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_access_refuses_other_addresses_and_a_token_is_needed_when_set() {
        let h = HeaderMap::new();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        assert!(MetricsAccess::loopback().check(Some(local), &h).is_ok());
        let r = MetricsAccess::loopback().check(Some(lan), &h).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(MetricsAccess::open().check(Some(lan), &h).is_ok());

        let dir = std::env::temp_dir().join(format!("markaz-metrics-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let t = MetricsAccess::token_file(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        let r = t.check(Some(local), &h).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let mut good = HeaderMap::new();
        good.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(t.check(Some(lan), &good).is_ok());
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let d = disk_space(Path::new("/")).unwrap();
        assert!(d.total > 0 && d.free <= d.total, "{d:?}");
    }
}
