//! The governorate hub: the sync endpoint for the centers (mutual TLS, `POST /sync/v1`),
//! relay between them, the sync logs, the operator pages and API, and the PKI.
//!
//! Layout: [`storage`] (the store behind one interface: one writer thread owning the
//! SQLite database, or a pool of workers on PostgreSQL), [`endpoint`] (the sync endpoint
//! and its per-request sync log), [`sessions`]
//! (one row per sync session), [`oversight`] (what the pages show), [`portal`] (portal
//! intake and staff administration), [`operators`] (operator accounts, roles, sessions,
//! API tokens, login limits, the audit log), [`catalog`] (the catalog and dated fees, written to
//! the catalog document every center receives), [`energy`] (energy and queue statistics
//! per center, solar vs non-solar), [`web`] (pages and JSON API), [`tls`] and [`pki`]
//! (certificates), [`demo`] (a ready-made demo PKI), [`restore`] (`markaz hub restore`).

pub mod catalog;
pub mod demo;
pub mod endpoint;
pub mod energy;
pub mod metrics;
pub mod operators;
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
use std::time::Duration;

use anyhow::Context;
use markaz_config::{HubConfig, StorageEngine};
use tokio_util::sync::CancellationToken;

use crate::storage::{HubDb, HubWriter, PgSettings};
use crate::tls::{ServeOptions, ServerTls, ServerTlsFiles};

/// File in `data_dir` holding the old shared operator token: read only with
/// `hub.legacy_operator_token` (each operator has their own API tokens now).
pub const TOKEN_FILE: &str = "operator.token";
/// File in `data_dir` where the hub writes the address of its sync listener.
pub const SYNC_ADDR_FILE: &str = "sync.addr";
/// File in `data_dir` where the hub writes the address of its web listener.
pub const WEB_ADDR_FILE: &str = "web.addr";
/// File in `data_dir` where the hub writes the address of `[metrics] listen`.
pub const METRICS_ADDR_FILE: &str = "metrics.addr";
/// How often the CRL (and the rest of the TLS material) is checked for a change; a
/// changed file is re-read at once, so a revocation takes effect within this time.
pub const TLS_POLL_EVERY: Duration = Duration::from_secs(2);
/// How often sync log rows and sessions older than `[hub] sync_log_days` are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per transaction while pruning (short transactions: centers keep syncing).
pub const PRUNE_BATCH: u32 = 5_000;
const DAY_MS: i64 = 86_400_000;

/// Delete the sync log rows and sessions older than `days` before `now_ms`, in batches
/// of [`PRUNE_BATCH`]; the numbers of (log rows, sessions) deleted. With several hub
/// processes on one database each prunes; deleting what another already deleted is a
/// no-op.
pub async fn prune_sync_log(
    writer: &HubWriter,
    days: u32,
    now_ms: i64,
) -> anyhow::Result<(u64, u64)> {
    let before = now_ms - i64::from(days) * DAY_MS;
    let mut total = (0, 0);
    loop {
        let (log, sessions) = writer
            .run(move |e| e.prune_sync_log(before, PRUNE_BATCH))
            .await??;
        total.0 += log;
        total.1 += sessions;
        if log < u64::from(PRUNE_BATCH) && sessions < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
    }
}

/// Prunes at start and every [`PRUNE_EVERY`] until `shutdown`.
async fn prune_task(writer: HubWriter, days: u32, shutdown: CancellationToken) {
    loop {
        let now = jiff::Timestamp::now().as_millisecond();
        match prune_sync_log(&writer, days, now).await {
            Ok((0, 0)) => {}
            Ok((log, sessions)) => {
                tracing::info!(log, sessions, days, "old sync log rows deleted");
            }
            Err(err) => tracing::warn!(%err, "could not prune the sync log"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// The old shared operator token: read from `<data_dir>/operator.token`, or created there
/// (random, mode 0600). Used only with `hub.legacy_operator_token`.
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
    run_with(cfg, shutdown, |_, _| {}).await
}

/// Like [`run`]; `on_serving(sync_addr, web_addr)` is called once both listeners are
/// bound (connections wait in their backlogs until the accept loops take them).
pub async fn run_with(
    cfg: HubConfig,
    shutdown: CancellationToken,
    on_serving: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
) -> anyhow::Result<()> {
    let data_dir = cfg.hub.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("while creating hub data dir {}", data_dir.display()))?;
    let metrics_access = if cfg.metrics.enabled {
        Some(
            markaz_web::metrics::MetricsAccess::from_settings(
                cfg.metrics.token_file.as_deref(),
                cfg.metrics.listen.is_some(),
            )
            .with_context(|| {
                format!(
                    "while reading metrics.token_file {:?}",
                    cfg.metrics.token_file
                )
            })?,
        )
    } else {
        None
    };
    let legacy_token = if cfg.hub.legacy_operator_token {
        tracing::warn!(
            "hub.legacy_operator_token is on: the shared token in {TOKEN_FILE} acts as an administrator; give each script its own token and turn it off"
        );
        Some(operator_token(&data_dir)?)
    } else {
        None
    };
    let writer = open_store(&cfg).await?;
    let metrics = metrics::HubMetrics::new();
    let track = |r: axum::Router| {
        r.layer(axum::middleware::from_fn_with_state(
            metrics.http.clone(),
            markaz_web::metrics::track,
        ))
    };
    if let Some(password) = bootstrap_admin(&writer).await? {
        // Shown once, like the node's first account: the operator logs in and changes it.
        eprintln!(
            "markaz hub: created the first operator 'admin' with password: {password}\nmarkaz hub: log in at the operator pages and change it."
        );
    }
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
    on_serving(sync_addr, web_addr);

    // `markaz pki revoke` rewrites the CRL; new connections see it within one poll.
    let reload = tokio::spawn(
        tls.clone()
            .reload_on_change(TLS_POLL_EVERY, shutdown.clone()),
    );

    let prune = tokio::spawn(prune_task(
        writer.clone(),
        cfg.hub.sync_log_days,
        shutdown.clone(),
    ));
    let sync_app = track(endpoint::router(writer.clone(), cfg.hub.max_body_bytes));
    let sync_task = tokio::spawn(tls::serve(
        sync_listener,
        tls,
        sync_app,
        ServeOptions::default(),
        shutdown.clone(),
    ));
    let mut web_app = track(web::router(web::WebState::new(
        writer.clone(),
        web::WebOptions::from_config(&cfg.hub, legacy_token),
    )));
    let mut metrics_task = None;
    if let Some(access) = metrics_access {
        let m = metrics::router(metrics.clone(), writer, data_dir.clone(), access);
        match cfg.metrics.listen {
            None => web_app = web_app.merge(m),
            Some(listen) => {
                let l = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("while binding metrics.listen {listen}"))?;
                std::fs::write(
                    data_dir.join(METRICS_ADDR_FILE),
                    l.local_addr()?.to_string(),
                )?;
                metrics_task = Some(tokio::spawn(markaz_web::listen::serve(
                    l,
                    m,
                    markaz_web::listen::Limits::default(),
                    shutdown.clone(),
                )));
            }
        }
    }
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
    if let Some(t) = metrics_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
    reload.abort();
    prune.abort();
    web_result.context("while serving the operator pages")?;
    sync_result
        .context("sync listener task")?
        .context("while serving the sync endpoint")?;
    Ok(())
}

/// On a hub without operators, creates the administrator `admin` with a generated
/// password and returns it (to be shown once); otherwise `None`.
pub async fn bootstrap_admin(writer: &HubWriter) -> anyhow::Result<Option<String>> {
    if writer.run(|e| e.operator_count()).await?? > 0 {
        return Ok(None);
    }
    let password = markaz_web::password::new_token()[..16].to_string();
    let p = password.clone();
    let hash =
        tokio::task::spawn_blocking(move || markaz_web::password::hash_password(&p)).await??;
    let who = operators::Who {
        operator: "system".into(),
        address: "local".into(),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    let new = operators::NewOperator {
        username: "admin".into(),
        full_name: String::new(),
        roles: vec![operators::Role::Admin],
        language: "ar".into(),
    };
    let created = writer
        .run(move |e| {
            // Another hub process on the same database may have been first.
            if e.operator_count()? > 0 {
                return Ok(false);
            }
            operators::create(e, &new, hash, &who).map(|_| true)
        })
        .await?;
    match created {
        Ok(true) => Ok(Some(password)),
        Ok(false) | Err(operators::OperatorError::Exists(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What `markaz operator add` created: the password when it was generated, and the API
/// token when one was asked for (each shown once).
#[derive(Debug)]
pub struct AddedOperator {
    pub password: Option<String>,
    pub token: Option<String>,
}

/// `markaz operator add`: creates an operator in the hub's store as `cfg` says (SQLite in
/// its data directory or PostgreSQL; the hub may be running), with `password` or a
/// generated one, and an API token labelled `token_label` if given. Recorded in the audit
/// log as `cli`.
pub fn add_operator(
    cfg: &HubConfig,
    new: &operators::NewOperator,
    password: Option<String>,
    token_label: Option<&str>,
) -> anyhow::Result<AddedOperator> {
    let generated = password.is_none();
    let password = password.unwrap_or_else(|| markaz_web::password::new_token()[..16].to_string());
    operators::check_password(&password)?;
    let hash = markaz_web::password::hash_password(&password)?;
    let mut engine = open_engine(cfg)?;
    let who = cli_who();
    operators::create(&mut *engine, new, hash, &who)?;
    let token = match token_label {
        Some(label) => Some(new_api_token(&mut *engine, &new.username, label, &who)?),
        None => None,
    };
    Ok(AddedOperator {
        password: generated.then_some(password),
        token,
    })
}

/// `markaz operator token`: a new API token for an existing operator (shown once).
pub fn add_operator_token(cfg: &HubConfig, username: &str, label: &str) -> anyhow::Result<String> {
    let mut engine = open_engine(cfg)?;
    new_api_token(&mut *engine, username, label, &cli_who())
}

fn cli_who() -> operators::Who {
    operators::Who {
        operator: "cli".into(),
        address: "local".into(),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

/// One engine over the store `cfg` names, for a command run beside the hub (no workers).
fn open_engine(cfg: &HubConfig) -> anyhow::Result<Box<dyn storage::HubEngine>> {
    Ok(match cfg.storage.engine {
        StorageEngine::Sqlite => {
            std::fs::create_dir_all(&cfg.hub.data_dir)
                .with_context(|| format!("while creating {}", cfg.hub.data_dir.display()))?;
            Box::new(HubDb::open(&cfg.hub.data_dir).context("while opening the hub database")?)
        }
        StorageEngine::Postgres => {
            let settings = PgSettings::from_config(&cfg.storage)?;
            Box::new(
                storage::PgHub::open(&settings)
                    .with_context(|| format!("while opening {}", settings.url.as_str()))?,
            )
        }
    })
}

fn new_api_token(
    db: &mut dyn storage::HubEngine,
    username: &str,
    label: &str,
    who: &operators::Who,
) -> anyhow::Result<String> {
    let token = markaz_web::password::new_token();
    let hash = markaz_web::password::token_hash(&token);
    operators::add_token(db, username, label, &hash, who)?;
    Ok(token)
}
