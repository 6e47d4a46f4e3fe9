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
//! Every session is recorded in `sync_sessions` (its id, times, uplink, bytes from the
//! TLS stream's counters, documents and changes each way, result, clock skew against the
//! hub) and feeds the technician's `sync` status panel; a change of uplink between two
//! sessions is also written to the node log ("uplink primary→modem"). Every request of a
//! session carries the session's id and the uplink ([`HubClient::start_session`]), so the
//! hub's sync log has one row per session too. Every await on the outside world — the
//! hub, the writer — has a timeout.
//!
//! Metered mode — the uplink is the modem, or the power policy defers bulk sync
//! (`DeviceHandles::defer_bulk_sync`): the session pushes only the essential lane (cases,
//! citizens) and still pulls; bulk documents (daily statistics, energy summaries) and
//! their repair wait for an unmetered session (`Limits::push_bulk`, see
//! `markaz_sync::protocol::client`). Over the modem, `[modem] daily_byte_budget` bounds
//! the bytes up + down per local day of the center (`modem_usage`, persisted): once
//! spent, no session runs over the modem — a session under way stops at the next
//! request — until the day changes or the primary link is back; the row and the panel
//! say "modem budget spent".
//!
//! Several hub addresses (`[sync] hub_urls`, several hub processes on one database): a
//! session that finds its hub unreachable, or answering that its storage is unavailable,
//! is run again at once against the next address in the list ([`sync_any_hub`]), and the
//! client stays with the first one that answers until that one fails in turn. Every
//! session row and the panel name the address used (`hub`); a change of hub between two
//! sessions is written to the node log ("hub a→b"). Every sync message is idempotent and
//! every process of the hub serves the same database, so a session cut on one hub simply
//! continues on the next.

pub mod project;
pub mod restore;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_config::NodeConfig;
use markaz_sync::hlc::{HlcClock, HlcStamp};
use markaz_sync::model::ids::CenterId;
use markaz_sync::protocol::client::{
    ClientError, ClientSession, HUB_PEER, Limits, Reply, decode_reply,
};
use markaz_sync::protocol::contract::{ErrorCode, SessionResult};
use markaz_sync::store::{self as doc_store, Lane};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::app::{App, numbering};
use crate::devices::UplinkConnector;
use crate::events::LiveEvent;
use crate::storage::WriteTx;
use crate::storage::{StorageError, WriteError};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, UplinkError, client_config,
};

pub use project::{ProjectError, Projected, project};

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
    #[error("{BUDGET_SPENT}")]
    BudgetSpent,
    #[error("{0}")]
    App(#[from] crate::error::AppError),
}

/// The result of a session stopped or skipped by the modem's daily byte budget.
pub const BUDGET_SPENT: &str = "modem budget spent";

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
    /// The hub's addresses in the order they are tried (`[sync] hub_urls`, or `hub_url`);
    /// never empty.
    pub hubs: Vec<HubTarget>,
    pub tls: ClientTlsFiles,
    pub interval: Duration,
    pub limits: Limits,
    pub client: ClientOptions,
    /// Connect timeout of the uplink.
    pub connect_timeout: Duration,
    /// Bound on one writer job (request building, or merge + projection).
    pub writer_timeout: Duration,
    /// Bytes (up + down, TLS included) allowed over the modem per local day
    /// (`[modem] daily_byte_budget`).
    pub modem_daily_budget: u64,
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
        let mut hubs = Vec::new();
        for url in s.hubs() {
            hubs.push(HubTarget::new(url.host(), url.port())?);
        }
        anyhow::ensure!(!hubs.is_empty(), "sync.hub_urls is empty");
        let center = cfg.center.id.clone();
        let batch = usize::try_from(s.batch_max_bytes).unwrap_or(usize::MAX);
        Ok(Some(SyncOptions {
            center,
            hubs,
            tls,
            interval: Duration::from_secs(u64::from(s.interval_secs.max(1))),
            limits: Limits {
                push_bytes: batch,
                pull_bytes: u32::try_from(batch).unwrap_or(u32::MAX),
                merge_bytes: MERGE_PART_BYTES,
                ..Limits::default()
            },
            client: ClientOptions::default(),
            connect_timeout: Duration::from_secs(30),
            writer_timeout: Duration::from_secs(120),
            modem_daily_budget: cfg.modem.daily_byte_budget,
        }))
    }
}

/// The record of one session (a `sync_sessions` row).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SessionRecord {
    /// The id sent with every request of the session (`None` when none was sent).
    pub session_id: Option<String>,
    /// The hub address used (`host:port`).
    pub hub: String,
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
    /// Of `changes_up`, the bulk lane's (statistics, energy).
    pub bulk_changes_up: u64,
    /// Bulk changes left for the primary link (metered sessions).
    pub bulk_waiting: u64,
    /// `ok`, [`BUDGET_SPENT`], or the error.
    pub result: String,
    pub skew_ms: Option<i64>,
    /// Documents received but not projected, with why.
    pub skipped: Vec<(String, String)>,
    /// The hub showed this database to be an old copy; a new incarnation was started and
    /// the next session should run at once (it repairs).
    #[serde(skip)]
    pub new_incarnation: bool,
    /// The hub did not answer (unreachable, timed out, its storage unavailable): another
    /// address may serve the session.
    #[serde(skip)]
    pub hub_down: bool,
}

impl SessionRecord {
    pub fn ok(&self) -> bool {
        self.result == SessionResult::Ok.as_str()
    }
}

/// Records a session: its row, the modem bytes of `day` (the center's local date) when
/// it ran over the modem, and a node-log line when the uplink differs from the previous
/// session's.
fn insert_record(
    c: &Connection,
    r: &SessionRecord,
    day: &str,
    at: jiff::Timestamp,
) -> Result<(), crate::error::AppError> {
    let previous: Option<(String, String)> = c
        .query_row(
            "SELECT uplink, hub FROM sync_sessions ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    c.execute(
        "INSERT INTO sync_sessions(session_id, started_at, ended_at, uplink, metered, bytes_up,
           bytes_down, docs_up, changes_up, docs_down, changes_down, requests, result, skew_ms,
           skipped, bulk_changes_up, bulk_waiting, hub)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            r.session_id,
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
            serde_json::to_string(&r.skipped).unwrap_or_default(),
            r.bulk_changes_up as i64,
            r.bulk_waiting as i64,
            r.hub,
        ],
    )?;
    if r.uplink == "modem" && r.requests > 0 {
        c.execute(
            "INSERT INTO modem_usage(day, bytes_up, bytes_down, sessions) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT(day) DO UPDATE SET bytes_up = bytes_up + ?2,
                bytes_down = bytes_down + ?3, sessions = sessions + 1",
            params![day, r.bytes_up as i64, r.bytes_down as i64],
        )?;
    }
    if let Some((prev, prev_hub)) = previous {
        if prev != r.uplink {
            let line = format!("uplink {prev}→{}", r.uplink);
            crate::app::node_log(c, at, "info", "sync", &line)?;
        }
        if !prev_hub.is_empty() && prev_hub != r.hub {
            let line = format!("hub {prev_hub}→{}", r.hub);
            crate::app::node_log(c, at, "info", "sync", &line)?;
        }
    }
    Ok(())
}

/// Bytes (up + down) carried over the modem on the center's local `day`.
fn modem_bytes_on(c: &Connection, day: &str) -> rusqlite::Result<u64> {
    Ok(c.query_row(
        "SELECT bytes_up + bytes_down FROM modem_usage WHERE day = ?1",
        [day],
        |r| r.get::<_, i64>(0),
    )
    .optional()?
    .unwrap_or(0)
    .max(0) as u64)
}

/// The modem's byte budget today (the center's local day).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ModemBudget {
    pub day: String,
    pub used_bytes: u64,
    pub budget_bytes: u64,
    pub spent: bool,
}

/// Today's modem usage against `budget`.
pub async fn modem_budget(app: &App, budget: u64) -> Result<ModemBudget, StorageError> {
    let day = app.today().to_string();
    let d = day.clone();
    let used = app
        .db
        .readers
        .read(move |c| modem_bytes_on(c, &d).map_err(StorageError::from))
        .await?;
    Ok(ModemBudget {
        day,
        used_bytes: used,
        budget_bytes: budget,
        spent: used >= budget,
    })
}

/// The latest recorded sessions, newest first.
pub async fn recent_sessions(app: &App, limit: u32) -> Result<Vec<SessionRecord>, StorageError> {
    app.db
        .writer
        .write_sql(move |c| {
            let mut st = c.prepare(
                "SELECT started_at, ended_at, uplink, metered, bytes_up, bytes_down, docs_up, changes_up, docs_down,
                        changes_down, requests, result, skew_ms, skipped, session_id, bulk_changes_up,
                        bulk_waiting, hub
                 FROM sync_sessions ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
                let skipped: String = r.get(13)?;
                Ok(SessionRecord {
                    new_incarnation: false,
                    hub_down: false,
                    hub: r.get(17)?,
                    session_id: r.get(14)?,
                    bulk_changes_up: r.get::<_, i64>(15)? as u64,
                    bulk_waiting: r.get::<_, i64>(16)? as u64,
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

/// Local changes not yet acknowledged by the hub, per lane.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Backlog {
    /// Cases, citizens: move on any uplink.
    pub essential: u64,
    /// Daily statistics and energy summaries: wait for the primary link when metered.
    pub bulk: u64,
}

impl Backlog {
    pub fn total(&self) -> u64 {
        self.essential + self.bulk
    }
}

/// Local changes not yet acknowledged by the hub (both lanes).
pub async fn backlog(app: &App) -> Result<u64, StorageError> {
    Ok(backlog_lanes(app).await?.total())
}

/// Local changes not yet acknowledged by the hub, per lane.
pub async fn backlog_lanes(app: &App) -> Result<Backlog, StorageError> {
    app.db.readers.read(backlog_in).await
}

fn backlog_in(c: &Connection) -> Result<Backlog, StorageError> {
    Ok(Backlog {
        essential: doc_store::lane_backlog(c, HUB_PEER, Lane::Essential)?.1,
        bulk: doc_store::lane_backlog(c, HUB_PEER, Lane::Bulk)?.1,
    })
}

/// The hub's acknowledgements of each lane (essential, bulk).
fn acked(c: &Connection) -> Result<(u64, u64), StorageError> {
    let cur = doc_store::peer_cursor(c, HUB_PEER)?;
    Ok((cur.push_acked, cur.bulk_acked))
}

/// (documents, changes) among local changes of `lane` acknowledged in (`from`, `to`].
fn acked_between(c: &Connection, lane: Lane, from: u64, to: u64) -> rusqlite::Result<(u64, u64)> {
    c.query_row(
        "SELECT count(DISTINCT doc_id), count(*) FROM changes
         WHERE local = 1 AND lane = ?1 AND seq > ?2 AND seq <= ?3",
        params![lane.as_i64(), from as i64, to as i64],
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
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, SyncError> + Send + 'static,
{
    tokio::time::timeout(limit, app.db.writer.write(f))
        .await
        .map_err(|_| SyncError::Timeout(what))?
        .map_err(SyncError::from)
}

/// Change bytes merged (and projected) per writer job: a pulled batch of a megabyte is
/// merged in parts of this size, so a clerk's write waits behind one part at most, never
/// behind a whole batch (issue 20.2: "clerks never wait on sync").
pub const MERGE_PART_BYTES: usize = 64 * 1024;

/// What one merge job takes: the hub's reply (decoded before the job), or the next
/// part of the batch it brought.
enum MergeStep {
    Reply(Result<Reply, ClientError>, u64),
    More,
}

/// Merges a reply, or the next part of its batch, and projects the documents it
/// touched, in one writer job.
async fn merge_job(
    app: &App,
    w: Duration,
    s: ClientSession,
    step: MergeStep,
    center: &CenterId,
    catalog: &Arc<Vec<markaz_sync::model::catalog::Service>>,
    tally: &mut Tally,
) -> Result<ClientSession, SyncError> {
    let center = center.clone();
    let catalog = catalog.clone();
    let at = app.now();
    let (s, projected, touched) = writer_job(app, w, "merging a reply", move |tx| {
        let mut s = s;
        let (c, d) = (tx.conn, &mut *tx.docs);
        match step {
            MergeStep::Reply(reply, now) => s.handle_reply(c, d, reply, now)?,
            MergeStep::More => s.merge_more(c, d)?,
        }
        let touched = s.take_touched();
        let p = project(c, d, &center, &catalog, at, &touched)?;
        Ok((s, p, touched))
    })
    .await?;
    after_commit(app, &projected);
    tally
        .docs_down
        .extend(touched.iter().map(|d| d.to_string()));
    tally.skipped.extend(projected.skipped.iter().cloned());
    Ok(s)
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
    let day = app.today().to_string();
    let uplink = client.uplink().to_string();
    let hub = client.target().to_string();
    let on_modem = uplink == "modem";
    let metered = on_modem || *app.devices.defer_bulk_sync().borrow();
    let bytes0 = client.bytes();
    let acked0 = app.db.readers.read(acked).await.unwrap_or((0, 0));
    // Over the modem, what is left of today's budget (`Some(0)`: spent).
    let budget_left = if on_modem {
        let d = day.clone();
        let used = app
            .db
            .readers
            .read(move |c| modem_bytes_on(c, &d).map_err(StorageError::from))
            .await
            .unwrap_or(0);
        Some(opts.modem_daily_budget.saturating_sub(used))
    } else {
        None
    };
    let mut tally = Tally::default();
    let mut session_id = None;
    let result = if budget_left == Some(0) {
        Err((SyncError::BudgetSpent, None))
    } else {
        let id = client.start_session();
        session_id = Some(id.clone());
        let span = tracing::info_span!("sync_session", center = %opts.center, uplink = %uplink,
            metered, session = %id);
        let limits = Limits {
            push_bulk: !metered,
            ..opts.limits
        };
        let r = run_session(app, client, opts, limits, budget_left, &mut tally)
            .instrument(span)
            .await;
        client.end_session();
        r
    };
    let bytes = client.bytes().since(bytes0);
    let (essential_up, bulk_up, bulk_waiting) = app
        .db
        .readers
        .read(move |c| {
            let (e, b) = acked(c)?;
            let essential = acked_between(c, Lane::Essential, acked0.0, e)?;
            let bulk = acked_between(c, Lane::Bulk, acked0.1, b)?;
            let waiting = if metered {
                doc_store::lane_backlog(c, HUB_PEER, Lane::Bulk)?.1
            } else {
                0
            };
            Ok::<_, StorageError>((essential, bulk, waiting))
        })
        .await
        .unwrap_or_default();
    let mut new_incarnation = false;
    match &result {
        Ok(report) if report.unrepaired.is_empty() => confirm_numbers(app, opts).await,
        Err((SyncError::Client(ClientError::RestoredDatabase { acked, local_max }), _)) => {
            new_incarnation = start_new_incarnation(app, opts, *acked, *local_max).await;
        }
        _ => {}
    }
    let mut hub_down = false;
    let (result, report) = match result {
        Ok(report) => (SessionResult::Ok.as_str().to_string(), Some(report)),
        Err((e, report)) => {
            // Drop the connection: the next session starts on a fresh one.
            client.disconnect();
            hub_down = hub_unavailable(&e);
            (e.to_string(), report)
        }
    };
    let record = SessionRecord {
        session_id,
        hub,
        started_at: started.to_string(),
        ended_at: app.now().to_string(),
        uplink,
        metered,
        bytes_up: bytes.up,
        bytes_down: bytes.down,
        docs_up: essential_up.0 + bulk_up.0,
        changes_up: essential_up.1 + bulk_up.1,
        docs_down: tally.docs_down.len() as u64,
        changes_down: report.as_ref().map_or(0, |r| r.pulled_new as u64),
        requests: tally.requests,
        bulk_changes_up: bulk_up.1,
        bulk_waiting,
        result,
        skew_ms: report.as_ref().and_then(|r| r.skew_ms),
        skipped: tally.skipped,
        new_incarnation,
        hub_down,
    };
    if record.ok() {
        tracing::info!(
            bytes_up = record.bytes_up,
            bytes_down = record.bytes_down,
            changes_up = record.changes_up,
            changes_down = record.changes_down,
            bulk_waiting = record.bulk_waiting,
            skew_ms = ?record.skew_ms,
            "sync session done"
        );
    } else if record.result == BUDGET_SPENT {
        tracing::info!(day = %day, budget = opts.modem_daily_budget, "no sync over the modem: today's budget is spent");
    } else {
        tracing::warn!(error = %record.result, "sync session failed");
    }
    let r2 = record.clone();
    let saved = tokio::time::timeout(
        opts.writer_timeout,
        app.db
            .writer
            .write(move |tx| insert_record(tx.conn, &r2, &day, started)),
    )
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!("could not record the sync session");
    }
    record
}

/// Whether a session failed because its hub did not answer (so another address may):
/// the connection or the TLS handshake failed, a request timed out, the hub answered
/// with an HTTP error and no sync message, or it said its storage is unavailable.
fn hub_unavailable(e: &SyncError) -> bool {
    match e {
        SyncError::Uplink(u) => u.is_transient(),
        SyncError::Timeout(what) => *what == "waiting for the hub",
        SyncError::HttpStatus(status) => *status >= 500,
        SyncError::Client(ClientError::Hub { code, .. }) => *code == ErrorCode::HubError,
        _ => false,
    }
}

/// One session against the client's current hub; when that hub does not answer
/// ([`SessionRecord::hub_down`]), again against each other address of `opts.hubs` in
/// list order from `*current`, at most once each. The first that answers becomes
/// `*current` (the client stays with it); when none does, the client goes back to
/// `*current`. Every attempt is recorded. Returns the last attempt's record.
pub async fn sync_any_hub(
    app: &App,
    client: &mut HubClient,
    opts: &SyncOptions,
    current: &mut usize,
) -> SessionRecord {
    let n = opts.hubs.len();
    let mut record = sync_once(app, client, opts).await;
    for step in 1..n {
        if !record.hub_down {
            break;
        }
        let next = (*current + step) % n;
        tracing::warn!(from = %record.hub, to = %opts.hubs[next], error = %record.result,
            "the hub does not answer; trying the next address");
        client.set_target(opts.hubs[next].clone());
        record = sync_once(app, client, opts).await;
        if !record.hub_down {
            *current = next;
        }
    }
    if record.hub_down && n > 1 {
        client.set_target(opts.hubs[*current].clone());
    }
    record
}

/// After a session that ended well, everything the hub holds for the center is here: the
/// numbering counters are raised to what those documents carry (once per incarnation).
async fn confirm_numbers(app: &App, opts: &SyncOptions) {
    let prefix = app.settings.receipt_prefix.to_ascii_uppercase();
    let at = app.now();
    let today = app.today();
    let center = opts.center.clone();
    let letters: Vec<char> = app.settings.groups.iter().map(|g| g.letter).collect();
    let r = writer_job(
        app,
        opts.writer_timeout,
        "confirming the numbers",
        move |tx| {
            let actor = tx.docs.actor().to_bytes().to_vec();
            if numbering::confirm(tx.conn, &actor, &prefix, at)? {
                continue_tickets(tx, &center, today, &letters, at)?;
            }
            Ok(())
        },
    )
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not confirm the center's numbers after sync");
    }
}

/// A newly confirmed incarnation: today's ticket numbers go on above the count of
/// today's statistics document, as the hub had it (see `numbering::raise_tickets`).
fn continue_tickets(
    tx: &mut WriteTx<'_>,
    center: &CenterId,
    today: jiff::civil::Date,
    letters: &[char],
    at: jiff::Timestamp,
) -> Result<(), SyncError> {
    let id = markaz_sync::docs::DocId::stats(center, today);
    let read = tx
        .docs
        .read(tx.conn, &id, markaz_sync::docs::read_metrics)
        .map_err(StorageError::from)?;
    let issued = match read {
        Some(Ok(m)) => m.metrics.get("tickets_issued").copied().unwrap_or(0),
        _ => 0,
    };
    let raised = numbering::raise_tickets(tx.conn, today, letters, issued)?;
    if raised > 0 {
        let line = format!(
            "today's statistics at the hub count {raised} tickets issued: ticket numbers go on above {raised}"
        );
        crate::app::node_log(tx.conn, at, "info", "numbering", &line)?;
    }
    Ok(())
}

/// The hub acknowledged more of this database's changes than it holds: it is an old copy
/// (restored from a backup). Mint a new incarnation (new actor id, cursors and repair
/// epoch forgotten, numbers unconfirmed) so the next session repairs and nothing the old
/// copy would mint collides with what the hub holds. Returns whether it was done.
async fn start_new_incarnation(app: &App, opts: &SyncOptions, acked: u64, local_max: u64) -> bool {
    let center = opts.center.to_string();
    let at = app.now();
    let r = writer_job(app, opts.writer_timeout, "starting a new incarnation", move |tx| {
        let actor = doc_store::new_incarnation(tx.conn, &center, at.as_millisecond())
            .map_err(|e| SyncError::Client(e.into()))?;
        *tx.docs = doc_store::DocStore::new(actor, crate::storage::docs::DOC_CACHE);
        let line = format!(
            "the hub holds changes up to {acked} of this database, which holds up to {local_max}: it is an old copy; a new incarnation starts and the next sync repairs"
        );
        crate::app::node_log(tx.conn, at, "warn", "sync", &line).map_err(SyncError::from)?;
        Ok(())
    })
    .await;
    match r {
        Ok(()) => {
            tracing::warn!(
                acked,
                local_max,
                "restored database detected: new incarnation"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "could not start a new incarnation of a restored database");
            false
        }
    }
}

type SessionOutcome = Result<
    markaz_sync::protocol::client::SessionReport,
    (
        SyncError,
        Option<markaz_sync::protocol::client::SessionReport>,
    ),
>;

/// One session's request/reply loop. `budget_left`: bytes this session may carry (over
/// the modem); checked before each request, so one request and its reply may overshoot.
async fn run_session(
    app: &App,
    client: &mut HubClient,
    opts: &SyncOptions,
    limits: Limits,
    budget_left: Option<u64>,
    tally: &mut Tally,
) -> SessionOutcome {
    let bytes0 = client.bytes();
    let w = opts.writer_timeout;
    let center = opts.center.clone();
    let c2 = center.clone();
    let at = app.now();
    let setup = writer_job(app, w, "starting the session", move |tx| {
        // Staff accounts changed without a document (made before they synced, or a
        // password set) are written now, before anything from the hub is projected.
        crate::app::staff_docs::reflect_all(tx, &c2, at)?;
        let c = tx.conn;
        let actor = tx.docs.actor().clone();
        let last: Option<String> = c
            .query_row("SELECT value FROM meta WHERE key = 'hlc'", [], |r| r.get(0))
            .optional()?;
        let clock = match last.as_deref().map(HlcStamp::parse) {
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
    let mut session = Some(ClientSession::new(center.clone(), actor, clock, limits));
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
        let built = writer_job(app, w, "building a request", move |tx| {
            let mut s = s;
            let req = s.next_request(tx.conn, tx.docs, now)?;
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
        let used = client.bytes().since(bytes0);
        if budget_left.is_some_and(|left| used.up + used.down >= left) {
            persist_clock(app, w, s).await;
            return Err((SyncError::BudgetSpent, last_report));
        }
        tally.requests += 1;
        let posted = tokio::time::timeout(
            opts.client.request_timeout + opts.client.handshake_timeout,
            client.sync(Bytes::from(req)),
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
        // Decoded here, not in the writer: the clerks' writes do not wait on it.
        let step = MergeStep::Reply(decode_reply(&body), now_ms(app));
        let mut s = match merge_job(app, w, s, step, &center, &catalog, tally).await {
            Ok(s) => s,
            Err(e) => return Err((e, last_report)),
        };
        while s.merging() {
            s = match merge_job(app, w, s, MergeStep::More, &center, &catalog, tally).await {
                Ok(s) => s,
                Err(e) => return Err((e, last_report)),
            };
        }
        session = Some(s);
    }
}

/// Resolves when the link monitor picks another uplink than the one current when the
/// receiver last looked; never, when no link monitor runs.
async fn uplink_changed(
    app: &App,
    link: &mut tokio::sync::watch::Receiver<Option<markaz_hardware::link::LinkStatus>>,
) {
    let before = app.devices.uplink();
    loop {
        if link.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = link.borrow_and_update().as_ref().map(|s| s.uplink);
        if now.is_some_and(|u| u != before) {
            return;
        }
    }
}

/// Live events and the catalog (services and fees), once the merge is on disk.
fn after_commit(app: &App, p: &Projected) {
    for (case_no, status) in &p.cases {
        app.bus.publish(LiveEvent::CaseUpdated {
            case_no: case_no.clone(),
            status: status.clone(),
        });
    }
    if let Some(catalog) = &p.catalog {
        app.install_catalog(catalog.clone());
    }
    for (doc, why) in &p.skipped {
        tracing::warn!(doc = %doc, reason = %why, "document received but not shown here");
    }
}

/// Keeps the clock's last stamp (after observing the hub's) for the next local events.
async fn persist_clock(app: &App, w: Duration, s: ClientSession) {
    let stamp = s.into_clock().last().encode();
    let r = writer_job(app, w, "saving the clock", move |tx| {
        let c = tx.conn;
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
    /// The hub address of the last session (at start: the first of `hubs`).
    pub hub: String,
    /// Every configured hub address, in the order they are tried.
    pub hubs: Vec<String>,
    pub interval_secs: u64,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_session: Option<SessionRecord>,
    /// Local changes the hub has not acknowledged (both lanes).
    pub backlog: u64,
    /// Of `backlog`: cases and citizens.
    pub backlog_essential: u64,
    /// Of `backlog`: daily statistics and energy summaries.
    pub backlog_bulk: u64,
    pub uplink: Option<String>,
    pub skew_ms: Option<i64>,
    /// The last session held bulk documents back (modem uplink or the power policy).
    pub metered: bool,
    /// What happens to bulk documents now.
    pub bulk_filter: &'static str,
    /// Today's modem bytes against `[modem] daily_byte_budget`.
    pub modem_budget: Option<ModemBudget>,
}

/// `bulk_filter` of a metered session.
pub const BULK_WAITS: &str = "bulk documents wait for the primary link";
/// `bulk_filter` of an unmetered session.
pub const BULK_MOVES: &str = "none: every document moves";

async fn publish_panel(app: &App, panel: &SyncPanel, budget: u64) {
    let mut p = panel.clone();
    if let Ok(b) = backlog_lanes(app).await {
        p.backlog = b.total();
        p.backlog_essential = b.essential;
        p.backlog_bulk = b.bulk;
    }
    p.modem_budget = modem_budget(app, budget).await.ok();
    app.status.sync.send_replace(Some(p));
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
    let client = HubClient::new(tls, connector, opts.hubs[0].clone(), opts.client);
    // No number before the first session has said where the center's numbers stand.
    app.set_numbering_gate(numbering::Gate::FirstSession);
    tracker.spawn(run(app.clone(), client, opts, shutdown.clone()));
    Ok(())
}

/// The sync loop: a session now, then one per interval or per sync-now, until shutdown.
pub async fn run(app: App, mut client: HubClient, opts: SyncOptions, shutdown: CancellationToken) {
    let mut link = app.devices.link_status();
    link.mark_unchanged();
    let budget = opts.modem_daily_budget;
    let mut panel = SyncPanel {
        hub: client.target().to_string(),
        hubs: opts.hubs.iter().map(ToString::to_string).collect(),
        interval_secs: opts.interval.as_secs(),
        bulk_filter: BULK_MOVES,
        ..SyncPanel::default()
    };
    publish_panel(&app, &panel, budget).await;
    // The index in `opts.hubs` of the hub the client stays with.
    let mut current = opts
        .hubs
        .iter()
        .position(|h| h.to_string() == client.target().to_string())
        .unwrap_or(0);
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sync_any_hub(&app, &mut client, &opts, &mut current) => r,
        };
        app.metrics.sync_session(&record);
        panel.hub = record.hub.clone();
        panel.uplink = Some(record.uplink.clone());
        panel.metered = record.metered;
        panel.bulk_filter = if record.metered {
            BULK_WAITS
        } else {
            BULK_MOVES
        };
        if record.ok() {
            panel.last_success_at = Some(record.ended_at.clone());
            panel.skew_ms = record.skew_ms.or(panel.skew_ms);
        } else {
            panel.last_error = Some(record.result.clone());
            panel.last_error_at = Some(record.ended_at.clone());
        }
        let again = record.new_incarnation;
        panel.last_session = Some(record);
        publish_panel(&app, &panel, budget).await;
        if again {
            // The repair of the new incarnation runs now; numbers wait for it.
            continue;
        }
        app.set_numbering_gate(numbering::Gate::Open);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(opts.interval) => {}
            _ = app.devices.sync_now_requested() => {}
            // A failover (or failback) starts a session at once on the new uplink
            // instead of waiting out the interval.
            _ = uplink_changed(&app, &mut link) => {}
        }
    }
    tracing::info!(center = %opts.center, "sync client stopped");
}
