//! The governorate hub: the sync endpoint for the centers, relay between them, the sync
//! logs, and the oversight views for operators.
//!
//! Today the hub opens its data directory and serves its operator pages; the sync
//! endpoint arrives with the sync protocol (see docs/PROTOCOL.md).

pub mod pki;
pub mod tls;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use markaz_config::HubConfig;
use tokio_util::sync::CancellationToken;

/// Runs the hub until `shutdown` is cancelled.
pub async fn run(cfg: HubConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.hub.data_dir)
        .with_context(|| format!("while creating hub data dir {}", cfg.hub.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&cfg.hub.web_listen)
        .await
        .with_context(|| format!("while binding {}", cfg.hub.web_listen))?;
    let addr = listener.local_addr()?;
    std::fs::write(cfg.hub.data_dir.join("web.addr"), addr.to_string())?;
    tracing::info!(%addr, "hub serving operator pages");
    axum::serve(
        listener,
        router().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .context("while serving the hub")?;
    Ok(())
}

fn router() -> Router {
    Router::new().route("/", get(overview)).route(
        "/healthz",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    )
}

async fn overview() -> impl IntoResponse {
    Html(
        r#"<!doctype html><html lang="ar" dir="rtl"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>مركز المحافظة — Markaz hub</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;line-height:1.6}</style></head>
<body><h1>المحافظة — نظرة عامة على المراكز</h1>
<p>لم تتزامن أي مراكز بعد. ستظهر هنا المراكز وآخر تزامن لكل منها وسجلات التزامن.</p>
<p lang="en" dir="ltr">Governorate hub — no center has synced yet. Centers, their last sync and the sync logs appear here.</p>
</body></html>"#,
    )
}
