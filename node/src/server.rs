//! The node's HTTP server: the API and the pages on one listener, with a body size limit,
//! a request timeout, connection caps and a header-read timeout (`markaz_web::listen`),
//! tracing spans per request, and graceful shutdown. With `[server.tls]` the listener
//! speaks HTTPS, every cookie is `Secure`, and an optional plain-HTTP listener only
//! redirects to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::web::WebOptions;

pub struct ServeOptions {
    pub listen: String,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Where to write the bound address (useful with port 0).
    pub addr_file: Option<PathBuf>,
    /// Page language and digits before a user chooses.
    pub web: WebOptions,
    /// Connection caps and the header-read timeout of the listener.
    pub limits: markaz_web::listen::Limits,
    /// Called with the bound address once the listener accepts connections.
    pub on_bound: Option<Box<dyn FnOnce(std::net::SocketAddr) + Send>>,
    /// Where `/metrics` is served.
    pub metrics: MetricsServe,
    /// HTTPS on the LAN (`[server.tls]`); `None` serves plain HTTP.
    pub tls: Option<ServeTls>,
}

/// HTTPS on the LAN, from `[server.tls]`: the certificate and key loaded once.
#[derive(Clone)]
pub struct ServeTls {
    pub config: Arc<rustls::ServerConfig>,
    /// A plain-HTTP listener that only redirects to HTTPS (its bound address goes to
    /// `redirect.addr` beside `addr_file`).
    pub redirect_listen: Option<String>,
}

impl std::fmt::Debug for ServeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeTls")
            .field("redirect_listen", &self.redirect_listen)
            .finish_non_exhaustive()
    }
}

impl ServeTls {
    /// Loads `[server.tls]`'s certificate and key; fails (naming the file) when they
    /// cannot be read or do not go together.
    pub fn from_config(t: &markaz_config::ServerTlsConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let config = markaz_web::listen::tls_config(&t.cert, &t.key)
            .context("while loading [server.tls] cert and key")?;
        Ok(ServeTls {
            config,
            redirect_listen: t.redirect_listen.map(|a| a.to_string()),
        })
    }
}

/// The plain-HTTP listener's only answer: a redirect (307, so a form keeps its method
/// and the browser does not remember it for good) to the same path over HTTPS on
/// `https_port`, at the host the browser asked for. A request without a usable `Host`
/// gets a JSON 400.
pub fn redirect_router(https_port: u16) -> Router {
    Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        to_https(&headers, &uri, https_port)
    })
}

fn to_https(headers: &HeaderMap, uri: &Uri, https_port: u16) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_of);
    let Some(host) = host else {
        return markaz_web::http::json_error(
            StatusCode::BAD_REQUEST,
            "https_required",
            "this address is served over HTTPS: open it with https://",
            None,
        );
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/");
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("https://{host}{port}{path}"))],
    )
        .into_response()
}

/// The host part of a `Host` header (no port), when it is a plain name or address.
fn host_of(value: &str) -> Option<&str> {
    let host = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let inner = &rest[..end];
        inner
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            .then(|| &value[..end + 2])?
    } else {
        let name = value.split(':').next()?;
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            .then_some(name)?
    };
    (!host.is_empty() && host != "[]").then_some(host)
}

/// Where `/metrics` is served, from `[metrics]`.
#[derive(Debug, Clone, Default)]
pub enum MetricsServe {
    /// Not at all.
    #[default]
    Off,
    /// On the main listener, to whom the access allows.
    Main(markaz_web::metrics::MetricsAccess),
    /// On a listener of its own (its address goes to `metrics.addr` beside `addr_file`).
    Separate {
        listen: String,
        access: markaz_web::metrics::MetricsAccess,
    },
}

impl MetricsServe {
    /// From `[metrics]`; fails when `token_file` cannot be read.
    pub fn from_config(m: &markaz_config::MetricsConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        if !m.enabled {
            return Ok(MetricsServe::Off);
        }
        let access = markaz_web::metrics::MetricsAccess::from_settings(
            m.token_file.as_deref(),
            m.listen.is_some(),
        )
        .with_context(|| format!("while reading metrics.token_file {:?}", m.token_file))?;
        Ok(match m.listen {
            Some(l) => MetricsServe::Separate {
                listen: l.to_string(),
                access,
            },
            None => MetricsServe::Main(access),
        })
    }
}

/// The whole router of the node with the pages' default options.
pub fn router(app: App, max_body_bytes: usize, request_timeout: Duration) -> Router {
    router_with(app, max_body_bytes, request_timeout, WebOptions::default())
}

/// The whole router of the node: API, pages and assets.
pub fn router_with(
    app: App,
    max_body_bytes: usize,
    request_timeout: Duration,
    web: WebOptions,
) -> Router {
    let http = app.metrics.http.clone();
    crate::api::router(app.clone())
        .merge(crate::web::router_with(app, web))
        .layer(axum::middleware::from_fn(
            markaz_web::http::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http,
            markaz_web::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Binds and serves until `shutdown` is cancelled; returns the bound address through the
/// `bound` callback as soon as it is known.
pub async fn serve(
    app: App,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("while binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if let Some(f) = &opts.addr_file {
        std::fs::write(f, addr.to_string())
            .with_context(|| format!("while writing {}", f.display()))?;
    }
    tracing::info!(%addr, center = %app.settings.center_id, limits = ?opts.limits, https = opts.tls.is_some(), "node serving");
    let mut router = router_with(
        app.clone(),
        opts.max_body_bytes,
        opts.request_timeout,
        opts.web,
    );
    let mut redirect_task = None;
    if let Some(tls) = &opts.tls {
        router = router.layer(axum::middleware::from_fn(markaz_web::http::secure_cookies));
        if let Some(listen) = &tls.redirect_listen {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("while binding server.tls.redirect_listen {listen}"))?;
            let raddr = l.local_addr()?;
            if let Some(f) = &opts.addr_file {
                let f = f.with_file_name("redirect.addr");
                std::fs::write(&f, raddr.to_string())
                    .with_context(|| format!("while writing {}", f.display()))?;
            }
            tracing::info!(addr = %raddr, "plain HTTP redirected to HTTPS");
            redirect_task = Some(tokio::spawn(markaz_web::listen::serve(
                l,
                redirect_router(addr.port()),
                markaz_web::listen::Limits::default(),
                shutdown.clone(),
            )));
        }
    }
    let mut metrics_task = None;
    match opts.metrics {
        MetricsServe::Off => {}
        MetricsServe::Main(access) => {
            router = router.merge(crate::metrics::router(app, access));
        }
        MetricsServe::Separate { listen, access } => {
            let l = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("while binding metrics.listen {listen}"))?;
            let maddr = l.local_addr()?;
            if let Some(f) = &opts.addr_file {
                let f = f.with_file_name("metrics.addr");
                std::fs::write(&f, maddr.to_string())
                    .with_context(|| format!("while writing {}", f.display()))?;
            }
            tracing::info!(addr = %maddr, "metrics served on their own listener");
            metrics_task = Some(tokio::spawn(markaz_web::listen::serve(
                l,
                crate::metrics::router(app, access),
                markaz_web::listen::Limits::default(),
                shutdown.clone(),
            )));
        }
    }
    // Connections that arrive now wait in the listen backlog until the loop below accepts
    // them, so "bound" is already "serving" for a client.
    if let Some(on_bound) = opts.on_bound {
        on_bound(addr);
    }
    let served = match opts.tls {
        None => markaz_web::listen::serve(listener, router, opts.limits, shutdown.clone())
            .await
            .context("while serving HTTP"),
        Some(tls) => markaz_web::listen::serve_tls(
            listener,
            router,
            opts.limits,
            tls.config,
            shutdown.clone(),
        )
        .await
        .context("while serving HTTPS"),
    };
    shutdown.cancel();
    if let Some(t) = redirect_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "the HTTP redirect listener failed");
    }
    if let Some(t) = metrics_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(host: Option<&str>, uri: &str, port: u16) -> (StatusCode, Option<String>) {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, host.parse().unwrap());
        }
        let resp = to_https(&h, &uri.parse().unwrap(), port);
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status(), loc)
    }

    #[test]
    fn plain_http_is_sent_to_the_same_page_over_https() {
        let to = |host, uri, port| redirect(Some(host), uri, port).1.unwrap();
        assert_eq!(
            to("192.168.1.10", "/desk?counter=2", 443),
            "https://192.168.1.10/desk?counter=2"
        );
        assert_eq!(to("midan.lan:80", "/", 8443), "https://midan.lan:8443/");
        assert_eq!(to("[fe80::1]:80", "/login", 443), "https://[fe80::1]/login");
        assert_eq!(
            redirect(Some("midan.lan"), "/x", 443).0,
            StatusCode::TEMPORARY_REDIRECT
        );
        for bad in ["evil.example/x", "a b", "", "[zz]", "x@y"] {
            assert_eq!(
                redirect(Some(bad), "/", 443).0,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        assert_eq!(redirect(None, "/", 443).0, StatusCode::BAD_REQUEST);
    }
}
