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
    /// Where `/metrics` is served.
    pub metrics: MetricsServe,
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
    tracing::info!(%addr, center = %app.settings.center_id, limits = ?opts.limits, "node serving");
    let mut router = router_with(
        app.clone(),
        opts.max_body_bytes,
        opts.request_timeout,
        opts.web,
    );
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
    let served = markaz_web::listen::serve(listener, router, opts.limits, shutdown.clone())
        .await
        .context("while serving HTTP");
    shutdown.cancel();
    if let Some(t) = metrics_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
    served?;
    Ok(())
}
