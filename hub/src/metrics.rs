//! The hub's Prometheus metrics at `/metrics` (on `web_listen`, or on `[metrics] listen`):
//! HTTP requests by matched route on both listeners, and per center what the overview
//! shows — when it last synced, when it last synced well, its feed backlog, its
//! sessions — plus the free space of the data disk.
//!
//! The per-center gauges are read from the store's center facts when scraped, so they
//! are those of every hub process on a shared PostgreSQL database alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use markaz_web::metrics::{HttpMetrics, MetricsAccess};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::storage::HubWriter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CenterLabel {
    center: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// The hub's metric families. Cheap to clone.
#[derive(Clone)]
pub struct HubMetrics {
    registry: Arc<Registry>,
    /// HTTP requests by matched route (both listeners' middleware feeds it).
    pub http: HttpMetrics,
    last_sync: Family<CenterLabel, FGauge>,
    last_ok: Family<CenterLabel, FGauge>,
    backlog: Family<CenterLabel, Gauge>,
    sessions: Family<CenterLabel, Gauge>,
    centers: Gauge,
    disk_free: Gauge,
    disk_total: Gauge,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HubMetrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let http = HttpMetrics::register(&mut r);
        let m = Self {
            registry: Arc::new(Registry::default()),
            http,
            last_sync: Family::default(),
            last_ok: Family::default(),
            backlog: Family::default(),
            sessions: Family::default(),
            centers: Gauge::default(),
            disk_free: Gauge::default(),
            disk_total: Gauge::default(),
        };
        r.register(
            "markaz_hub_center_last_sync_timestamp_seconds",
            "Last request of the center's latest sync session (seconds since the epoch)",
            m.last_sync.clone(),
        );
        r.register(
            "markaz_hub_center_last_success_timestamp_seconds",
            "Last request of the center's latest session that succeeded",
            m.last_ok.clone(),
        );
        r.register(
            "markaz_hub_center_backlog_changes",
            "Changes in the center's feed after its pull cursor (waiting for it)",
            m.backlog.clone(),
        );
        r.register(
            "markaz_hub_center_sessions",
            "Sync sessions of the center in the hub's log",
            m.sessions.clone(),
        );
        r.register(
            "markaz_hub_centers",
            "Centers that registered or synced",
            m.centers.clone(),
        );
        r.register(
            "markaz_disk_free_bytes",
            "Free space on the hub's data disk",
            m.disk_free.clone(),
        );
        r.register(
            "markaz_disk_size_bytes",
            "Size of the hub's data disk",
            m.disk_total.clone(),
        );
        let up = Gauge::<i64>::default();
        up.set(1);
        r.register("markaz_up", "Always 1: the hub answered", up);
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    async fn refresh(&self, writer: &HubWriter, data_dir: &std::path::Path) {
        match writer.run(|e| e.center_facts()).await {
            Ok(Ok(facts)) => {
                self.centers
                    .set(i64::try_from(facts.len()).unwrap_or(i64::MAX));
                for f in facts {
                    let label = CenterLabel { center: f.center };
                    let secs = |ms: Option<i64>| ms.map_or(0.0, |ms| ms as f64 / 1000.0);
                    self.last_sync
                        .get_or_create(&label)
                        .set(secs(f.last_sync_ms));
                    self.last_ok.get_or_create(&label).set(secs(f.last_ok_ms));
                    self.backlog.get_or_create(&label).set(f.backlog);
                    self.sessions.get_or_create(&label).set(f.sessions);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the centers"),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the centers"),
        }
        if let Ok(d) = markaz_web::metrics::disk_space(data_dir) {
            self.disk_free
                .set(i64::try_from(d.free).unwrap_or(i64::MAX));
            self.disk_total
                .set(i64::try_from(d.total).unwrap_or(i64::MAX));
        }
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: HubMetrics,
    writer: HubWriter,
    data_dir: Arc<PathBuf>,
    access: Arc<MetricsAccess>,
}

async fn render(State(s): State<MetricsState>, req: Request) -> Response {
    let allowed = s.access.check_request(&req);
    drop(req);
    if let Err(refused) = allowed {
        return refused;
    }
    s.metrics.refresh(&s.writer, &s.data_dir).await;
    markaz_web::metrics::text(&s.metrics.registry).into_response()
}

/// A router serving only `/metrics`.
pub fn router(
    metrics: HubMetrics,
    writer: HubWriter,
    data_dir: PathBuf,
    access: MetricsAccess,
) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(render))
        .with_state(MetricsState {
            metrics,
            writer,
            data_dir: Arc::new(data_dir),
            access: Arc::new(access),
        })
}
