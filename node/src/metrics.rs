//! The node's Prometheus metrics, served at `/metrics` (see `[metrics]` in CONFIG.md and
//! the list of families in OPERATIONS.md, "Metrics").
//!
//! Counters move where things happen — HTTP requests (`markaz_web::metrics::track`), the
//! writer's batches (`storage::WriterMetrics`), sync sessions ([`Metrics::sync_session`]).
//! Gauges are read when scraped ([`render`]) from the state the node already keeps: the
//! link monitor's and the modem's watch channels, the technician's power panel, the sync
//! backlog and the SMS outbox in SQLite, and the data disk — so a scrape never waits on
//! a device, and what it shows is what the technician page shows.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use markaz_hardware::link::{LinkHealth, ProbeResult, Uplink};
use markaz_hardware::modem::ModemStatus;
use markaz_web::metrics::{HttpMetrics, MetricsAccess};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::app::App;
use crate::error::AppError;
use crate::sync::SessionRecord;

/// The route the endpoint is served on.
pub const PATH: &str = "/metrics";

/// States of an outbox row (`outbox.state`); each is shown, with 0 when none.
const OUTBOX_STATES: [&str; 4] = ["pending", "sending", "sent", "failed"];
/// Power sources the power panel names.
const SOURCES: [&str; 5] = ["grid", "solar", "battery", "generator", "unknown"];
const UPLINKS: [Uplink; 4] = [
    Uplink::Primary,
    Uplink::Modem,
    Uplink::Offline,
    Uplink::Unknown,
];

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UplinkLabel {
    uplink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabel {
    domain: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The node's metric families. Cheap to clone; every clone feeds the same registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// HTTP requests by matched route (the server's middleware feeds it).
    pub http: HttpMetrics,
    writer_queue: Gauge,
    sync_sessions: Family<ResultLabel, Counter>,
    sync_bytes: Family<DirectionLabel, Counter>,
    sync_changes: Family<DirectionLabel, Counter>,
    sync_backlog: Family<LaneLabel, Gauge>,
    sync_last_success: FGauge,
    uplink: Family<UplinkLabel, Gauge>,
    primary_up: Gauge,
    probe_ok: Gauge,
    modem_state: Family<StateLabel, Gauge>,
    modem_signal_dbm: Gauge,
    modem_registered: Family<DomainLabel, Gauge>,
    modem_registration: Family<DomainLabel, Gauge>,
    power_soc: FGauge,
    power_pv_w: FGauge,
    power_load_w: FGauge,
    power_source: Family<SourceLabel, Gauge>,
    generator_running: Gauge,
    outbox: Family<StateLabel, Gauge>,
    disk_free: Gauge,
    disk_total: Gauge,
    disk_low: Gauge,
}

impl Metrics {
    /// Registers every family; the writer's histograms are `writer`'s own.
    pub fn new(writer: &crate::storage::Writer) -> Self {
        let mut r = Registry::default();
        let http = HttpMetrics::register(&mut r);
        let wm = writer.metrics();
        r.register(
            "markaz_writer_batch_size",
            "Write jobs per group-commit transaction",
            wm.batch_size.clone(),
        );
        r.register(
            "markaz_writer_commit_seconds",
            "Time of one group-commit transaction, BEGIN to the end of COMMIT (fsync included)",
            wm.commit_seconds.clone(),
        );
        r.register(
            "markaz_writer_job_seconds",
            "Time one write job ran inside its transaction (what the jobs queued behind it wait for)",
            wm.job_seconds.clone(),
        );
        let m = Self {
            http,
            writer_queue: Gauge::default(),
            sync_sessions: Family::default(),
            sync_bytes: Family::default(),
            sync_changes: Family::default(),
            sync_backlog: Family::default(),
            sync_last_success: FGauge::default(),
            uplink: Family::default(),
            primary_up: Gauge::default(),
            probe_ok: Gauge::default(),
            modem_state: Family::default(),
            modem_signal_dbm: Gauge::default(),
            modem_registered: Family::default(),
            modem_registration: Family::default(),
            power_soc: FGauge::default(),
            power_pv_w: FGauge::default(),
            power_load_w: FGauge::default(),
            power_source: Family::default(),
            generator_running: Gauge::default(),
            outbox: Family::default(),
            disk_free: Gauge::default(),
            disk_total: Gauge::default(),
            disk_low: Gauge::default(),
            registry: Arc::new(Registry::default()),
        };
        r.register(
            "markaz_writer_queue_depth",
            "Write jobs waiting for the writer thread",
            m.writer_queue.clone(),
        );
        r.register(
            "markaz_sync_sessions",
            "Sync sessions with the hub since start, by result (ok or the error)",
            m.sync_sessions.clone(),
        );
        r.register(
            "markaz_sync_bytes",
            "Bytes of sync sessions since start (TLS included), by direction",
            m.sync_bytes.clone(),
        );
        r.register(
            "markaz_sync_changes",
            "Document changes sent (up) and received (down) since start",
            m.sync_changes.clone(),
        );
        r.register(
            "markaz_sync_backlog_changes",
            "Local changes the hub has not acknowledged, by lane",
            m.sync_backlog.clone(),
        );
        r.register(
            "markaz_sync_last_success_timestamp_seconds",
            "End of the last sync session that succeeded (0: none recorded)",
            m.sync_last_success.clone(),
        );
        r.register(
            "markaz_uplink",
            "The uplink in use (1) and the others (0)",
            m.uplink.clone(),
        );
        r.register(
            "markaz_link_primary_up",
            "The primary link's health from its probes: 1 up, 0 down, -1 not known yet",
            m.primary_up.clone(),
        );
        r.register(
            "markaz_link_last_probe_success",
            "The last probe round of the primary link: 1 success, 0 failure, -1 none yet",
            m.probe_ok.clone(),
        );
        r.register(
            "markaz_modem_state",
            "The modem's state (1 for the current one); absent without a modem",
            m.modem_state.clone(),
        );
        r.register(
            "markaz_modem_signal_dbm",
            "The modem's last signal reading (dBm); absent when unknown",
            m.modem_signal_dbm.clone(),
        );
        r.register(
            "markaz_modem_registered",
            "Whether the modem is registered (home or roaming), circuit (cs) or packet (ps) service",
            m.modem_registered.clone(),
        );
        r.register(
            "markaz_modem_registration_status",
            "The 3GPP registration code of CREG (cs) and CGREG (ps): 0 not registered, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming",
            m.modem_registration.clone(),
        );
        r.register(
            "markaz_power_soc_percent",
            "Battery state of charge (%); absent without a reading",
            m.power_soc.clone(),
        );
        r.register(
            "markaz_power_pv_watts",
            "Solar (PV) power (W); absent without a reading",
            m.power_pv_w.clone(),
        );
        r.register(
            "markaz_power_load_watts",
            "Load (W); absent without a reading",
            m.power_load_w.clone(),
        );
        r.register(
            "markaz_power_source",
            "The power source in use (1) and the others (0)",
            m.power_source.clone(),
        );
        r.register(
            "markaz_generator_running",
            "Whether the generator runs (1) or not (0); absent without a generator",
            m.generator_running.clone(),
        );
        r.register(
            "markaz_outbox_messages",
            "SMS outbox rows by state",
            m.outbox.clone(),
        );
        r.register(
            "markaz_disk_free_bytes",
            "Free space on the data disk (what the node may still write)",
            m.disk_free.clone(),
        );
        r.register(
            "markaz_disk_size_bytes",
            "Size of the data disk",
            m.disk_total.clone(),
        );
        r.register(
            "markaz_disk_guard_active",
            "1 while free space is below storage.min_free_mb and low-value writes are refused",
            m.disk_low.clone(),
        );
        let up = Gauge::<i64>::default();
        up.set(1);
        r.register("markaz_up", "Always 1: the node answered", up);
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Counts one finished sync session (the sync client calls it).
    pub fn sync_session(&self, r: &SessionRecord) {
        let result = if r.ok() {
            "ok".to_owned()
        } else {
            // The error's kind, not its text: the label must not grow without bound.
            session_error_kind(&r.result).to_owned()
        };
        self.sync_sessions
            .get_or_create(&ResultLabel { result })
            .inc();
        let dir = |d| DirectionLabel { direction: d };
        self.sync_bytes.get_or_create(&dir("up")).inc_by(r.bytes_up);
        self.sync_bytes
            .get_or_create(&dir("down"))
            .inc_by(r.bytes_down);
        self.sync_changes
            .get_or_create(&dir("up"))
            .inc_by(r.changes_up);
        self.sync_changes
            .get_or_create(&dir("down"))
            .inc_by(r.changes_down);
    }

    /// Sets the gauges from the node's state now.
    async fn refresh(&self, app: &App) {
        self.writer_queue
            .set(i64::try_from(app.db.writer.queue_depth()).unwrap_or(i64::MAX));
        match crate::sync::backlog_lanes(app).await {
            Ok(b) => {
                let lane = |l| LaneLabel { lane: l };
                self.sync_backlog
                    .get_or_create(&lane("essential"))
                    .set(as_i64(b.essential));
                self.sync_backlog
                    .get_or_create(&lane("bulk"))
                    .set(as_i64(b.bulk));
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the sync backlog"),
        }
        match read_tables(app).await {
            Ok((last_ok, outbox)) => {
                self.sync_last_success.set(last_ok.unwrap_or(0.0));
                for state in OUTBOX_STATES {
                    let n = outbox
                        .iter()
                        .find(|(s, _)| s == state)
                        .map_or(0, |(_, n)| *n);
                    self.outbox.get_or_create(&StateLabel { state }).set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the outbox"),
        }
        self.link(app);
        self.modem(app);
        self.power(app);
        if let Some(dir) = app.db.path().parent()
            && let Ok(d) = markaz_web::metrics::disk_space(dir)
        {
            self.disk_free.set(as_i64(d.free));
            self.disk_total.set(as_i64(d.total));
        }
        self.disk_low
            .set(i64::from(app.db.writer.low_value_refused().is_some()));
    }

    fn link(&self, app: &App) {
        let status = app.devices.link_status().borrow().clone();
        let in_use = status.as_ref().map_or(Uplink::Primary, |s| s.uplink);
        for u in UPLINKS {
            self.uplink
                .get_or_create(&UplinkLabel {
                    uplink: crate::devices::link::uplink_name(u),
                })
                .set(i64::from(u == in_use));
        }
        let (primary, probe) = match &status {
            None => (-1, -1),
            Some(s) => (
                match s.primary {
                    LinkHealth::Up { .. } => 1,
                    LinkHealth::Down { .. } => 0,
                    LinkHealth::Unknown => -1,
                },
                match s.last_probe {
                    Some(ProbeResult::Success) => 1,
                    Some(ProbeResult::Failure) => 0,
                    None => -1,
                },
            ),
        };
        self.primary_up.set(primary);
        self.probe_ok.set(probe);
    }

    fn modem(&self, app: &App) {
        if !app.devices.modem_configured() {
            return;
        }
        let s: ModemStatus = app.devices.modem_status().borrow().clone();
        let current = crate::devices::modem::state_name(s.state);
        for state in [
            "starting",
            "ready",
            "no_sim",
            "not_registered",
            "resetting",
            "dead",
        ] {
            self.modem_state
                .get_or_create(&StateLabel { state })
                .set(i64::from(state == current));
        }
        if let Some(dbm) = s.signal.and_then(|sig| sig.dbm()) {
            self.modem_signal_dbm.set(i64::from(dbm));
        }
        for (domain, reg) in [("cs", s.registration_cs), ("ps", s.registration_ps)] {
            let label = DomainLabel { domain };
            self.modem_registered
                .get_or_create(&label)
                .set(i64::from(reg.is_some_and(|r| r.status.is_registered())));
            if let Some(r) = reg {
                self.modem_registration
                    .get_or_create(&label)
                    .set(i64::from(r.status.code()));
            }
        }
    }

    fn power(&self, app: &App) {
        // The typed panel, read by the names the status API gives its fields.
        let panel = app.status.power.borrow().clone();
        let Some(p) = panel.as_ref().map(crate::api::status::power) else {
            return;
        };
        let num = |k: &str| p.get(k).and_then(Value::as_f64);
        if let Some(v) = num("soc_percent") {
            self.power_soc.set(v);
        }
        if let Some(v) = num("pv_w") {
            self.power_pv_w.set(v);
        }
        if let Some(v) = num("load_w") {
            self.power_load_w.set(v);
        }
        if let Some(source) = p.get("source").and_then(Value::as_str) {
            for s in SOURCES {
                self.power_source
                    .get_or_create(&SourceLabel { source: s })
                    .set(i64::from(s == source));
            }
        }
        if let Some(running) = p
            .get("generator")
            .and_then(|g| g.get("running"))
            .and_then(Value::as_bool)
        {
            self.generator_running.set(i64::from(running));
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The kind of a failed session's result, for a label: the words before the first `:`.
fn session_error_kind(result: &str) -> &str {
    if result == crate::sync::BUDGET_SPENT {
        return "budget_spent";
    }
    match result.split(':').next().map(str::trim) {
        Some("uplink") => "uplink",
        Some("protocol") => "protocol",
        Some("projection") => "projection",
        Some("storage") | Some("sqlite") => "storage",
        _ if result.starts_with("timed out") => "timeout",
        _ => "error",
    }
}

/// The end of the last successful session (seconds since the epoch) and the outbox's
/// rows per state.
async fn read_tables(app: &App) -> Result<(Option<f64>, Vec<(String, i64)>), AppError> {
    app.db
        .readers
        .read(|c| -> Result<_, AppError> {
            let last: Option<String> = c.query_row(
                "SELECT max(ended_at) FROM sync_sessions WHERE result = 'ok'",
                [],
                |r| r.get(0),
            )?;
            let last = last
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond() as f64 / 1000.0);
            let mut st = c.prepare("SELECT state, count(*) FROM outbox GROUP BY state")?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((last, rows))
        })
        .await
}

/// The metrics now: the gauges are read, then everything is written as OpenMetrics text.
pub async fn render(app: &App) -> Response {
    app.metrics.refresh(app).await;
    markaz_web::metrics::text(&app.metrics.registry)
}

/// A router serving only `/metrics` for `app`, to whom `access` allows (merged into the
/// main router, or on a listener of its own).
pub fn router(app: App, access: MetricsAccess) -> axum::Router {
    let access = Arc::new(access);
    axum::Router::new()
        .route(
            PATH,
            axum::routing::get(move |State(app): State<App>, req: Request| {
                let allowed = access.check_request(&req);
                drop(req);
                async move {
                    match allowed {
                        Ok(()) => render(&app).await,
                        Err(refused) => refused,
                    }
                    .into_response()
                }
            }),
        )
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_errors_are_labelled_by_kind() {
        assert_eq!(session_error_kind("uplink: connection refused"), "uplink");
        assert_eq!(session_error_kind("timed out while pushing"), "timeout");
        assert_eq!(
            session_error_kind(crate::sync::BUDGET_SPENT),
            "budget_spent"
        );
        assert_eq!(session_error_kind("something new"), "error");
    }
}
