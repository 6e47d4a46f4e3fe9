//! The governorate hub: the sync endpoint for the centers (mutual TLS, `POST /sync/v1`),
//! relay between them, the sync logs, the operator pages and API, and the PKI.
//!
//! Layout: [`storage`] (the store behind one interface: one writer thread owning the
//! SQLite database, or a pool of workers on PostgreSQL), [`endpoint`] (the sync endpoint and its per-request sync log), [`sessions`]
//! (one row per sync session), [`oversight`] (what the pages show), [`portal`] (portal
//! intake and staff administration), [`catalog`] (the catalog and dated fees, written to
//! the catalog document every center receives), [`energy`] (energy and queue statistics
//! per center, solar vs non-solar), [`web`] (pages and JSON API), [`tls`] and [`pki`]
//! (certificates), [`demo`] (a ready-made demo PKI), [`restore`] (`markaz hub restore`).

pub mod casework;
pub mod catalog;
pub mod demo;
pub mod endpoint;
pub mod energy;
pub mod oversight;
pub mod pki;
pub mod portal;
pub mod restore;
pub mod sessions;
pub mod storage;
pub mod tls;
pub mod web;

pub use demo::{DemoPki, demo_pki};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use markaz_config::{HubConfig, StorageEngine};
use tokio_util::sync::CancellationToken;

use crate::storage::{HubDb, HubWriter, PgSettings};
use crate::tls::{ServeOptions, ServerTls, ServerTlsFiles};

/// File in `data_dir` holding the operator API bearer token.
pub const TOKEN_FILE: &str = "operator.token";
/// File in `data_dir` where the hub writes the address of its sync listener.
pub const SYNC_ADDR_FILE: &str = "sync.addr";
/// File in `data_dir` where the hub writes the address of its web listener.
pub const WEB_ADDR_FILE: &str = "web.addr";
/// How often the CRL (and the rest of the TLS material) is checked for a change; a
/// changed file is re-read at once, so a revocation takes effect within this time.
pub const TLS_POLL_EVERY: Duration = Duration::from_secs(2);

/// The operator token: read from `<data_dir>/operator.token`, or created there (random,
/// mode 0600) on first start.
pub fn operator_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("while reading {}", path.display())),
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("while creating {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// The TLS files of the hub from its configuration; without an explicit CRL, `crl.pem`
/// next to the CA certificate (the `markaz pki` layout).
pub fn tls_files(cfg: &HubConfig) -> ServerTlsFiles {
    let ca = cfg.hub.ca_cert_path();
    let crl = cfg
        .hub
        .crl_path()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            ca.parent()
                .map_or_else(|| PathBuf::from(pki::CRL), |d| d.join(pki::CRL))
        });
    ServerTlsFiles {
        ca,
        cert: cfg.hub.server_cert_path(),
        key: cfg.hub.server_key_path(),
        crl,
    }
}

/// Open the hub's store as `[storage]` says and start its workers: one writer over the
/// SQLite file, or `pool_size` workers each owning a PostgreSQL connection.
pub async fn open_store(cfg: &HubConfig) -> anyhow::Result<HubWriter> {
    match cfg.storage.engine {
        StorageEngine::Sqlite => {
            let dd = cfg.hub.data_dir.clone();
            let db = tokio::task::spawn_blocking(move || HubDb::open(&dd))
                .await?
                .context("while opening the hub database")?;
            HubWriter::spawn(db).context("while starting the hub writer")
        }
        StorageEngine::Postgres => {
            let settings = PgSettings::from_config(&cfg.storage)?;
            let url = settings.url.as_str().to_string();
            let pool = tokio::task::spawn_blocking(move || storage::pg::open_pool(&settings))
                .await?
                .with_context(|| format!("while opening the hub database {url}"))?;
            tracing::info!(%url, workers = pool.len(), "hub store on PostgreSQL");
            HubWriter::spawn_pool(pool).context("while starting the hub workers")
        }
    }
}

/// Runs the hub until `shutdown` is cancelled: the sync endpoint on `hub.listen` (mutual
/// TLS) and the operator pages on `hub.web_listen`.
pub async fn run(cfg: HubConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = cfg.hub.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("while creating hub data dir {}", data_dir.display()))?;
    let token = operator_token(&data_dir)?;
    let writer = open_store(&cfg).await?;
    let files = tls_files(&cfg);
    let tls = ServerTls::load(files.clone())
        .with_context(|| format!("while loading the hub TLS material {files:?}"))?;

    let sync_listener = tokio::net::TcpListener::bind(&cfg.hub.listen)
        .await
        .with_context(|| format!("while binding {}", cfg.hub.listen))?;
    let sync_addr = sync_listener.local_addr()?;
    let web_listener = tokio::net::TcpListener::bind(&cfg.hub.web_listen)
        .await
        .with_context(|| format!("while binding {}", cfg.hub.web_listen))?;
    let web_addr = web_listener.local_addr()?;
    std::fs::write(data_dir.join(SYNC_ADDR_FILE), sync_addr.to_string())?;
    std::fs::write(data_dir.join(WEB_ADDR_FILE), web_addr.to_string())?;
    tracing::info!(%sync_addr, %web_addr, "hub serving");

    // `markaz pki revoke` rewrites the CRL; new connections see it within one poll.
    let reload = tokio::spawn(
        tls.clone()
            .reload_on_change(TLS_POLL_EVERY, shutdown.clone()),
    );

    let sync_app = endpoint::router(writer.clone(), cfg.hub.max_body_bytes);
    let sync_task = tokio::spawn(tls::serve(
        sync_listener,
        tls,
        sync_app,
        ServeOptions::default(),
        shutdown.clone(),
    ));
    let web_app = web::router(web::WebState {
        writer,
        token: Arc::new(token),
    });
    // The operator pages: connection caps and a header-read timeout (markaz_web::listen).
    let web_result = markaz_web::listen::serve(
        web_listener,
        web_app,
        markaz_web::listen::Limits::default(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let sync_result = sync_task.await;
    reload.abort();
    web_result.context("while serving the operator pages")?;
    sync_result
        .context("sync listener task")?
        .context("while serving the sync endpoint")?;
    Ok(())
}
