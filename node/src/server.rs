//! The node's HTTP server: the API and the pages on one listener, with a body size limit,
//! a request timeout, connection caps and a header-read timeout (`markaz_web::listen`),
//! tracing spans per request, and graceful shutdown.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
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
    crate::api::router(app.clone())
        .merge(crate::web::router_with(app, web))
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
    tracing::info!(%addr, center = %app.settings.center_id, limits = ?opts.limits, "node serving");
    let router = router_with(app, opts.max_body_bytes, opts.request_timeout, opts.web);
    // Connections that arrive now wait in the listen backlog until the loop below accepts
    // them, so "bound" is already "serving" for a client.
    if let Some(on_bound) = opts.on_bound {
        on_bound(addr);
    }
    markaz_web::listen::serve(listener, router, opts.limits, shutdown)
        .await
        .context("while serving HTTP")?;
    Ok(())
}
