//! The node's sync client: one task that, every `sync.interval_secs` or when a
//! technician asks, runs one session with the governorate hub.
//!
//! A session is `markaz_sync::protocol::client::ClientSession` (sans-IO) driven here:
//! each request is built on the writer thread (it reads local changes and may move the
//! cursors), POSTed to `/sync/v1` through [`HubClient`] (mutual TLS over the link monitor's
//! current uplink), and each reply is taken in ONE writer job that merges the changes,
//! moves the cursors and rewrites the SQL projection of every touched document
//! ([`project`]). So a cut at any point loses nothing: a job either committed wholly or
//! not at all, and the next session resumes from the cursors.
//!
//! Every session is recorded in `sync_sessions` (times, uplink, bytes from the TLS
//! stream's counters, documents and changes each way, result, clock skew against the
//! hub) and feeds the technician's `sync` status panel. Every await on the outside
//! world — the hub, the writer — has a timeout.
//!
//! Metered mode (modem uplink, or the power policy deferring bulk sync) is recorded on
//! the session, but `markaz_sync`'s `Limits` has no document filter yet, so bulk
//! documents (stats/energy) are not held back; see the report of this piece.

pub mod project;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_config::NodeConfig;
use markaz_sync::hlc::{Clock as HlcClock, Hlc};
use markaz_sync::model::ids::CenterId;
use markaz_sync::protocol::client::{ClientError, ClientSession, HUB_PEER, Limits};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::app::App;
use crate::devices::UplinkConnector;
use crate::events::LiveEvent;
use crate::storage::docs::with_docs;
use crate::storage::{StorageError, WriteError};
use crate::uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, UplinkError, client_config,
};

pub use project::{ProjectError, Projected, project};

/// The hub's sync endpoint path.
pub const SYNC_PATH: &str = "/sync/v1";

/// Requests per session before it stops and lets the next one continue (bounds a
/// session's length whatever the backlog; every step is resumable).
pub const MAX_REQUESTS: usize = 10_000;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("uplink: {0}")]
    Uplink(#[from] UplinkError),
    #[error("protocol: {0}")]
    Client(#[from] ClientError),
    #[error("projection: {0}")]
    Project(#[from] ProjectError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the hub answered HTTP {0} with no sync message")]
    HttpStatus(u16),
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error("the session did not finish within {0} requests")]
    TooLong(usize),
}

impl<E: Into<SyncError>> From<WriteError<E>> for SyncError {
    fn from(e: WriteError<E>) -> SyncError {
        match e {
            WriteError::Work(e) => e.into(),
            WriteError::Storage(e) => SyncError::Storage(e),
        }
    }
}

/// How the sync task runs, from `[sync]`.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub center: CenterId,
    pub target: HubTarget,
    pub tls: ClientTlsFiles,
    pub interval: Duration,
    pub limits: Limits,
    pub client: ClientOptions,
    /// Connect timeout of the uplink.
    pub connect_timeout: Duration,
    /// Bound on one writer job (request building, or merge + projection).
    pub writer_timeout: Duration,
}

impl SyncOptions {
    /// Options from a node config (`None` when `[sync] enabled = false`).
    pub fn from_config(cfg: &NodeConfig) -> anyhow::Result<Option<SyncOptions>> {
        let s = &cfg.sync;
        if !s.enabled {
            return Ok(None);
        }
        let need = |p: &Option<std::path::PathBuf>, k: &str| {
            p.clone()
                .with_context(|| format!("sync.{k} is required when sync.enabled = true"))
        };
        let tls = ClientTlsFiles {
            ca: need(&s.ca_cert, "ca_cert")?,
            cert: need(&s.client_cert, "client_cert")?,
            key: need(&s.client_key, "client_key")?,
        };
        let url = s.hub_url.to_string();
        let (host, port) =
            host_port(&url).with_context(|| format!("while reading sync.hub_url {url}"))?;
        let center: CenterId = cfg
            .center
            .id
            .to_string()
            .parse()
            .map_err(|e| anyhow::anyhow!("center.id as a sync center: {e}"))?;
        let batch = usize::try_from(s.batch_max_bytes).unwrap_or(usize::MAX);
        Ok(Some(SyncOptions {
            center,
            target: HubTarget::new(&host, port)?,
            tls,
            interval: Duration::from_secs(u64::from(s.interval_secs.max(1))),
            limits: Limits {
                push_bytes: batch,
                pull_bytes: u32::try_from(batch).unwrap_or(u32::MAX),
                ..Limits::default()
            },
            client: ClientOptions::default(),
            connect_timeout: Duration::from_secs(30),
            writer_timeout: Duration::from_secs(120),
        }))
    }
}

/// `host` and `port` of an `https://host[:port][/…]` URL (port 443 by default).
fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .context("the hub URL must start with https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').context("unclosed [ in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().context("the port is not a number")?,
        None => 443,
    };
    anyhow::ensure!(!host.is_empty(), "no host");
    Ok((host, port))
}

/// The record of one session (a `sync_sessions` row).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SessionRecord {
    pub started_at: String,
    pub ended_at: String,
    pub uplink: String,
    pub metered: bool,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub docs_up: u64,
    pub changes_up: u64,
    pub docs_down: u64,
    pub changes_down: u64,
    pub requests: u64,
    /// `ok` or the error.
    pub result: String,
    pub skew_ms: Option<i64>,
    /// Documents received but not projected, with why.
    pub skipped: Vec<(String, String)>,
}

impl SessionRecord {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

const SESSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS sync_sessions (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    ended_at     TEXT NOT NULL,
    uplink       TEXT NOT NULL,
    metered      INTEGER NOT NULL,
    bytes_up     INTEGER NOT NULL,
    bytes_down   INTEGER NOT NULL,
    docs_up      INTEGER NOT NULL,
    changes_up   INTEGER NOT NULL,
    docs_down    INTEGER NOT NULL,
    changes_down INTEGER NOT NULL,
    requests     INTEGER NOT NULL,
    result       TEXT NOT NULL,
    skew_ms      INTEGER,
    skipped      TEXT NOT NULL
);";

/// Creates `sync_sessions` if absent (idempotent).
pub async fn ensure_table(app: &App) -> Result<(), StorageError> {
    app.db
        .writer
        .write_sql(|c| c.execute_batch(SESSIONS_TABLE))
        .await
}

fn insert_record(c: &Connection, r: &SessionRecord) -> rusqlite::Result<()> {
    c.execute_batch(SESSIONS_TABLE)?;
    c.execute(
        "INSERT INTO sync_sessions(started_at, ended_at, uplink, metered, bytes_up, bytes_down, docs_up, changes_up,
           docs_down, changes_down, requests, result, skew_ms, skipped)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            r.started_at,
            r.ended_at,
            r.uplink,
            r.metered,
            r.bytes_up as i64,
            r.bytes_down as i64,
            r.docs_up as i64,
            r.changes_up as i64,
            r.docs_down as i64,
            r.changes_down as i64,
            r.requests as i64,
            r.result,
            r.skew_ms,
            serde_json::to_string(&r.skipped).unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// The latest recorded sessions, newest first.
pub async fn recent_sessions(app: &App, limit: u32) -> Result<Vec<SessionRecord>, StorageError> {
    app.db
        .writer
        .write_sql(move |c| {
            c.execute_batch(SESSIONS_TABLE)?;
            let mut st = c.prepare(
                "SELECT started_at, ended_at, uplink, metered, bytes_up, bytes_down, docs_up, changes_up, docs_down,
                        changes_down, requests, result, skew_ms, skipped
                 FROM sync_sessions ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
                let skipped: String = r.get(13)?;
                Ok(SessionRecord {
                    started_at: r.get(0)?,
                    ended_at: r.get(1)?,
                    uplink: r.get(2)?,
                    metered: r.get(3)?,
                    bytes_up: r.get::<_, i64>(4)? as u64,
                    bytes_down: r.get::<_, i64>(5)? as u64,
                    docs_up: r.get::<_, i64>(6)? as u64,
                    changes_up: r.get::<_, i64>(7)? as u64,
                    docs_down: r.get::<_, i64>(8)? as u64,
                    changes_down: r.get::<_, i64>(9)? as u64,
                    requests: r.get::<_, i64>(10)? as u64,
                    result: r.get(11)?,
                    skew_ms: r.get(12)?,
                    skipped: serde_json::from_str(&skipped).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
        .await
}

/// Local changes not yet acknowledged by the hub.
pub async fn backlog(app: &App) -> Result<u64, StorageError> {
    app.db
        .readers
        .read(|c| backlog_in(c).map_err(StorageError::from))
        .await
}

fn push_acked(c: &Connection) -> rusqlite::Result<i64> {
    Ok(c.query_row(
        "SELECT push_acked FROM peer_cursors WHERE peer = ?1",
        [HUB_PEER],
        |r| r.get::<_, i64>(0),
    )
    .optional()?
    .unwrap_or(0))
}

fn backlog_in(c: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM changes WHERE local = 1 AND seq > ?1",
        [push_acked(c)?],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// (documents, changes) among local changes acknowledged in (`from`, `to`].
fn acked_between(c: &Connection, from: i64, to: i64) -> rusqlite::Result<(u64, u64)> {
    c.query_row(
        "SELECT count(DISTINCT doc_id), count(*) FROM changes WHERE local = 1 AND seq > ?1 AND seq <= ?2",
        [from, to],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

fn now_ms(app: &App) -> u64 {
    u64::try_from(app.now().as_millisecond()).unwrap_or(0)
}

async fn writer_job<T, F>(
    app: &App,
    limit: Duration,
    what: &'static str,
    f: F,
) -> Result<T, SyncError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, SyncError> + Send + 'static,
{
    tokio::time::timeout(limit, app.db.writer.write(f))
        .await
        .map_err(|_| SyncError::Timeout(what))?
        .map_err(SyncError::from)
}

/// What the session loop collects besides the client's report.
#[derive(Default)]
struct Tally {
    docs_down: std::collections::BTreeSet<String>,
    skipped: Vec<(String, String)>,
    requests: u64,
}

/// Runs one whole session and records it (row + panel input). Never panics on the
/// network; the error, if any, is in `result`.
pub async fn sync_once(app: &App, client: &mut HubClient, opts: &SyncOptions) -> SessionRecord {
    let started = app.now();
    let uplink = client.uplink().to_string();
    let metered = uplink == "modem" || *app.devices.defer_bulk_sync().borrow();
    let bytes0 = client.bytes();
    let acked0 = app
        .db
        .readers
        .read(|c| push_acked(c).map_err(StorageError::from))
        .await
        .unwrap_or(0);
    let mut tally = Tally::default();
    let span =
        tracing::info_span!("sync_session", center = %opts.center, uplink = %uplink, metered);
    let result = run_session(app, client, opts, &mut tally)
        .instrument(span)
        .await;
    let bytes = client.bytes().since(bytes0);
    let (docs_up, changes_up) = app
        .db
        .readers
        .read(move |c| {
            let a = push_acked(c)?;
            Ok::<_, StorageError>(acked_between(c, acked0, a)?)
        })
        .await
        .unwrap_or((0, 0));
    let (result, report) = match result {
        Ok(report) => ("ok".to_string(), Some(report)),
        Err((e, report)) => {
            // Drop the connection: the next session starts on a fresh one.
            client.disconnect();
            (e.to_string(), report)
        }
    };
    let record = SessionRecord {
        started_at: started.to_string(),
        ended_at: app.now().to_string(),
        uplink,
        metered,
        bytes_up: bytes.up,
        bytes_down: bytes.down,
        docs_up,
        changes_up,
        docs_down: tally.docs_down.len() as u64,
        changes_down: report.as_ref().map_or(0, |r| r.pulled_new as u64),
        requests: tally.requests,
        result,
        skew_ms: report.as_ref().and_then(|r| r.skew_ms),
        skipped: tally.skipped,
    };
    if record.ok() {
        tracing::info!(
            bytes_up = record.bytes_up,
            bytes_down = record.bytes_down,
            changes_up = record.changes_up,
            changes_down = record.changes_down,
            skew_ms = ?record.skew_ms,
            "sync session done"
        );
    } else {
        tracing::warn!(error = %record.result, "sync session failed");
    }
    let r2 = record.clone();
    let saved = tokio::time::timeout(
        opts.writer_timeout,
        app.db.writer.write_sql(move |c| insert_record(c, &r2)),
    )
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!("could not record the sync session");
    }
    record
}

type SessionResult = Result<
    markaz_sync::protocol::client::SessionReport,
    (
        SyncError,
        Option<markaz_sync::protocol::client::SessionReport>,
    ),
>;

async fn run_session(
    app: &App,
    client: &mut HubClient,
    opts: &SyncOptions,
    tally: &mut Tally,
) -> SessionResult {
    let w = opts.writer_timeout;
    let center = opts.center.clone();
    let c2 = center.clone();
    let setup = writer_job(app, w, "starting the session", move |c| {
        let actor = with_docs(|d| d.actor().clone())?;
        let last: Option<String> = c
            .query_row("SELECT value FROM meta WHERE key = 'hlc'", [], |r| r.get(0))
            .optional()?;
        let clock = match last.as_deref().map(Hlc::parse) {
            Some(Ok(h)) => HlcClock::resume(h),
            _ => HlcClock::new(c2.as_str()),
        };
        Ok((actor, clock))
    })
    .await;
    let (actor, clock) = match setup {
        Ok(v) => v,
        Err(e) => return Err((e, None)),
    };
    let mut session = Some(ClientSession::new(
        center.clone(),
        actor,
        clock,
        opts.limits,
    ));
    let mut last_report = None;
    let catalog: Arc<Vec<markaz_sync::model::catalog::Service>> = Arc::new(app.catalog().to_vec());
    loop {
        let Some(s) = session.take() else {
            return Err((SyncError::Timeout("keeping the session"), last_report));
        };
        last_report = Some(s.report().clone());
        if tally.requests as usize >= MAX_REQUESTS {
            return Err((SyncError::TooLong(MAX_REQUESTS), last_report));
        }
        let now = now_ms(app);
        let built = writer_job(app, w, "building a request", move |c| {
            let mut s = s;
            let req = with_docs(|d| s.next_request(c, d, now))??;
            Ok((s, req))
        })
        .await;
        let (s, req) = match built {
            Ok(v) => v,
            Err(e) => return Err((e, last_report)),
        };
        let Some(req) = req else {
            let report = s.report().clone();
            persist_clock(app, w, s).await;
            return Ok(report);
        };
        tally.requests += 1;
        let posted = tokio::time::timeout(
            opts.client.request_timeout + opts.client.handshake_timeout,
            client.post(SYNC_PATH, "application/octet-stream", Bytes::from(req)),
        )
        .await;
        let body = match posted {
            Err(_) => return Err((SyncError::Timeout("waiting for the hub"), last_report)),
            Ok(Err(e)) => return Err((e.into(), last_report)),
            Ok(Ok((status, body))) => {
                if !status.is_success() && body.is_empty() {
                    return Err((SyncError::HttpStatus(status.as_u16()), last_report));
                }
                body
            }
        };
        let now = now_ms(app);
        let center = center.clone();
        let catalog = catalog.clone();
        let at = app.now();
        let taken = writer_job(app, w, "merging a reply", move |c| {
            let mut s = s;
            let projected = with_docs(
                |d| -> Result<(Projected, Vec<markaz_sync::docs::DocId>), SyncError> {
                    s.handle_response(c, d, &body, now)?;
                    let touched = s.take_touched();
                    let p = project(c, d, &center, &catalog, at, &touched)?;
                    Ok((p, touched))
                },
            )??;
            Ok((s, projected))
        })
        .await;
        let (s, (projected, touched)) = match taken {
            Ok(v) => v,
            Err(e) => return Err((e, last_report)),
        };
        after_commit(app, &projected);
        tally
            .docs_down
            .extend(touched.iter().map(|d| d.to_string()));
        tally.skipped.extend(projected.skipped.iter().cloned());
        session = Some(s);
    }
}

/// Live events and the fee schedule, once the merge is on disk.
fn after_commit(app: &App, p: &Projected) {
    for (case_no, status) in &p.cases {
        app.bus.publish(LiveEvent::CaseUpdated {
            case_no: case_no.clone(),
            status: status.clone(),
        });
    }
    if let Some(fees) = &p.fees {
        app.set_fee_schedule(fees.clone());
    }
    for (doc, why) in &p.skipped {
        tracing::warn!(doc = %doc, reason = %why, "document received but not shown here");
    }
}

/// Keeps the clock's last stamp (after observing the hub's) for the next local events.
async fn persist_clock(app: &App, w: Duration, s: ClientSession) {
    let stamp = s.into_clock().last().encode();
    let r = writer_job(app, w, "saving the clock", move |c| {
        // Fixed-width stamps: text order is clock order; never move the clock back.
        c.execute(
            "INSERT INTO meta(key, value) VALUES ('hlc', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE excluded.value > meta.value",
            [&stamp],
        )?;
        Ok(())
    })
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not save the clock after sync");
    }
}

/// The `sync` status panel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncPanel {
    pub hub: String,
    pub interval_secs: u64,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_session: Option<SessionRecord>,
    /// Local changes the hub has not acknowledged.
    pub backlog: u64,
    pub uplink: Option<String>,
    pub skew_ms: Option<i64>,
    /// Bulk documents should wait (modem uplink or the power policy); not enforced yet.
    pub metered: bool,
    pub bulk_filter: &'static str,
}

async fn publish_panel(app: &App, panel: &SyncPanel) {
    let mut p = panel.clone();
    p.backlog = backlog(app).await.unwrap_or(p.backlog);
    if let Ok(v) = serde_json::to_value(&p) {
        app.status.sync.send_replace(Some(v));
    }
}

/// Starts the sync task when `[sync] enabled`; returns at once.
pub fn start(
    app: &App,
    cfg: &NodeConfig,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(opts) = SyncOptions::from_config(cfg)? else {
        return Ok(());
    };
    let tls = client_config(&opts.tls).context("while loading the sync TLS files")?;
    let connector = Arc::new(UplinkConnector::new(
        app.devices.clone(),
        opts.connect_timeout,
    ));
    let client = HubClient::new(tls, connector, opts.target.clone(), opts.client);
    tracker.spawn(run(app.clone(), client, opts, shutdown.clone()));
    Ok(())
}

/// The sync loop: a session now, then one per interval or per sync-now, until shutdown.
pub async fn run(app: App, mut client: HubClient, opts: SyncOptions, shutdown: CancellationToken) {
    if let Err(e) = ensure_table(&app).await {
        tracing::warn!(error = %e, "could not create sync_sessions");
    }
    let mut panel = SyncPanel {
        hub: format!("{}:{}", opts.target.host(), opts.target.port()),
        interval_secs: opts.interval.as_secs(),
        bulk_filter: "not supported by the sync protocol yet",
        ..SyncPanel::default()
    };
    publish_panel(&app, &panel).await;
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sync_once(&app, &mut client, &opts) => r,
        };
        panel.uplink = Some(record.uplink.clone());
        panel.metered = record.metered;
        if record.ok() {
            panel.last_success_at = Some(record.ended_at.clone());
            panel.skew_ms = record.skew_ms.or(panel.skew_ms);
        } else {
            panel.last_error = Some(record.result.clone());
            panel.last_error_at = Some(record.ended_at.clone());
        }
        panel.last_session = Some(record);
        publish_panel(&app, &panel).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(opts.interval) => {}
            _ = app.devices.sync_now_requested() => {}
        }
    }
    tracing::info!(center = %opts.center, "sync client stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_url_host_and_port() {
        assert_eq!(
            host_port("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".to_string(), 8443)
        );
        assert_eq!(
            host_port("https://hub.damascus.example/").unwrap(),
            ("hub.damascus.example".to_string(), 443)
        );
        assert_eq!(
            host_port("https://[::1]:9/x").unwrap(),
            ("::1".to_string(), 9)
        );
        assert!(host_port("http://hub").is_err());
        assert!(host_port("https://hub:x").is_err());
    }
}
