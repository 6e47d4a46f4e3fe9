//! The node's device supervisors: the hardware of `markaz-hardware` wired into the
//! running node.
//!
//! [`start`] spawns, on the node's `TaskTracker` and under its shutdown token:
//! - the modem supervisor ([`modem`]) when `[modem] enabled`: the driver, the `modem`
//!   panel, technician resets;
//! - the link supervisor ([`link`]), always: probes of `link.probe_targets`, the uplink
//!   choice, the `link` panel, uplink changes in the node log, the link-down alert;
//! - the power supervisor ([`power`]) when any power device is configured: drivers,
//!   samples, daily summaries, the policy and its actions, the `power` panel;
//! - the SMS outbox worker ([`outbox`]) when the modem is enabled with `sms_enabled`;
//! - the disk guard ([`disk`]), always: below `storage.min_free_mb` free, an alert and
//!   no more low-value writes;
//! - the daily statistics documents ([`crate::app::daily_docs::run_stats`]), always: they
//!   are written from the node's SQL, not from a device, but run beside the energy
//!   documents the power supervisor writes.
//!
//! The rest of the node talks to devices only through [`DeviceHandles`] (in
//! `App::devices`): latest states on watch channels, requests as notifications. Nothing
//! ever waits on a device.

pub mod demo;
pub mod disk;
pub mod link;
pub mod modem;
pub mod outbox;
pub mod power;
pub mod route;
pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use markaz_config::NodeConfig;
use markaz_hardware::link::connect::{ConnectError, UplinkStream, connect};
use markaz_hardware::link::{LinkStatus, Uplink};
use markaz_hardware::modem::{ModemHandle, ModemStatus};
use markaz_sync::model::staff::Capability;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{Actor, App, audit, node_log};
use crate::error::AppError;

/// How long after an SMS alert of one kind another of the same kind may be queued.
pub const ALERT_COOLDOWN: Duration = Duration::from_secs(3600);

struct Inner {
    started: AtomicBool,
    modem_configured: AtomicBool,
    /// `[link] os_route_interface` when `modem_route = "os-route"` (set once by `start`).
    os_route: OnceLock<String>,
    modem: watch::Sender<ModemHandle>,
    modem_status: watch::Sender<ModemStatus>,
    link: watch::Sender<Option<LinkStatus>>,
    defer_bulk_sync: watch::Sender<bool>,
    sync_now: Notify,
    modem_reset: Arc<Notify>,
    outbox: Arc<Notify>,
}

/// The node's handles on its devices. Cheap to clone; the default is "not configured"
/// (no modem, no link monitor: the uplink is the primary link, bulk sync not deferred),
/// and [`start`] fills the same shared handles in place, so every clone of `App` sees
/// the running devices.
#[derive(Clone)]
pub struct DeviceHandles {
    inner: Arc<Inner>,
}

impl Default for DeviceHandles {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: AtomicBool::new(false),
                modem_configured: AtomicBool::new(false),
                os_route: OnceLock::new(),
                modem: watch::Sender::new(ModemHandle::not_configured()),
                modem_status: watch::Sender::new(ModemStatus::not_configured()),
                link: watch::Sender::new(None),
                defer_bulk_sync: watch::Sender::new(false),
                sync_now: Notify::new(),
                modem_reset: Arc::new(Notify::new()),
                outbox: Arc::new(Notify::new()),
            }),
        }
    }
}

impl DeviceHandles {
    /// The running modem driver's handle (a "not configured" one without a modem). A
    /// reset replaces it: take a fresh one per use rather than keeping it.
    pub fn modem(&self) -> ModemHandle {
        self.inner.modem.borrow().clone()
    }

    /// The modem's latest status, across driver restarts.
    pub fn modem_status(&self) -> watch::Receiver<ModemStatus> {
        self.inner.modem_status.subscribe()
    }

    /// The link monitor's latest status (`None` until it runs).
    pub fn link_status(&self) -> watch::Receiver<Option<LinkStatus>> {
        self.inner.link.subscribe()
    }

    /// The uplink to use now: the link monitor's choice, or the primary link when no
    /// monitor runs (a node started without devices, e.g. in tests).
    pub fn uplink(&self) -> Uplink {
        self.inner
            .link
            .borrow()
            .as_ref()
            .map_or(Uplink::Primary, |s| s.uplink)
    }

    /// Opens `host:port` over the current uplink, within `limit` (TLS goes on top). The
    /// sync client's `HubClient` takes an [`UplinkConnector`] instead.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<UplinkStream, ConnectError> {
        match (self.uplink(), self.os_route()) {
            (Uplink::Modem, Some(iface)) => Ok(UplinkStream::Os(
                route::connect_via(iface, host, port, limit).await?,
            )),
            (uplink, _) => connect(uplink, &self.modem(), host, port, limit).await,
        }
    }

    /// The interface the modem's data goes through when `[link] modem_route =
    /// "os-route"` (`None`: through the driver's AT sockets).
    pub fn os_route(&self) -> Option<&str> {
        self.inner.os_route.get().map(String::as_str)
    }

    /// True while the power policy defers bulk sync (battery low or critical).
    pub fn defer_bulk_sync(&self) -> watch::Receiver<bool> {
        self.inner.defer_bulk_sync.subscribe()
    }

    /// Resolves when a technician asks for a sync now (the sync client waits on it
    /// beside its interval timer). A request made while nobody waits is kept for the
    /// next wait.
    pub async fn sync_now_requested(&self) {
        self.inner.sync_now.notified().await
    }

    /// Asks the sync client to sync now.
    pub fn request_sync_now(&self) {
        self.inner.sync_now.notify_one();
    }

    /// Wakes the SMS outbox worker (rows it would otherwise find on its next poll).
    pub fn wake_outbox(&self) {
        self.inner.outbox.notify_one();
    }

    /// Whether a modem is configured and supervised.
    pub fn modem_configured(&self) -> bool {
        self.inner.modem_configured.load(Ordering::SeqCst)
    }

    /// Asks the modem supervisor to reset the modem (`AT+CFUN=1,1`, then the port is
    /// reopened and the init run again). Refused without a modem.
    pub fn request_modem_reset(&self) -> Result<(), AppError> {
        if !self.modem_configured() {
            return Err(AppError::Conflict {
                code: "modem_not_configured",
                message: "this node has no modem configured ([modem] enabled = false)".into(),
            });
        }
        self.inner.modem_reset.notify_one();
        Ok(())
    }

    /// Sets the bulk-sync deferral by hand (tests, or a sync client without a policy).
    pub fn set_defer_bulk_sync(&self, on: bool) {
        self.inner.defer_bulk_sync.send_replace(on);
    }
}

/// A [`markaz_uplink::Connector`] that follows the link monitor: the OS route while the
/// primary link is the uplink; while the modem is, a TCP socket bound to
/// `os_route_interface` with `modem_route = "os-route"` ([`route`]), else the modem's AT
/// sockets (through whichever driver runs now, so a technician's modem reset does not
/// strand it); and an immediate "offline" error otherwise. Its `name` is the uplink in use, for the sync log.
#[derive(Clone)]
pub struct UplinkConnector {
    devices: DeviceHandles,
    timeout: Duration,
}

impl UplinkConnector {
    /// A connector over `devices` that gives up after `timeout`.
    pub fn new(devices: DeviceHandles, timeout: Duration) -> Self {
        Self { devices, timeout }
    }
}

impl std::fmt::Debug for UplinkConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkConnector")
            .field("uplink", &self.devices.uplink())
            .finish_non_exhaustive()
    }
}

impl markaz_uplink::Connector for UplinkConnector {
    fn name(&self) -> &str {
        link::uplink_name(self.devices.uplink())
    }

    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<markaz_uplink::BoxedStream>> {
        Box::pin(async move {
            match self.devices.uplink() {
                Uplink::Primary => {
                    markaz_uplink::TcpConnector::new("primary", self.timeout)
                        .connect(host, port)
                        .await
                }
                Uplink::Modem => match self.devices.os_route() {
                    Some(iface) => {
                        let s = route::connect_via(iface, host, port, self.timeout).await?;
                        Ok(Box::new(s) as markaz_uplink::BoxedStream)
                    }
                    None => {
                        markaz_uplink::ModemConnector::new(self.devices.modem(), self.timeout)
                            .connect(host, port)
                            .await
                    }
                },
                Uplink::Offline => Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "offline: neither the primary link nor the modem is usable",
                )),
                Uplink::Unknown => Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "uplink not known yet: waiting for the first probe round",
                )),
            }
        })
    }
}

/// Appends a line to the node log through the writer.
pub(crate) async fn log(
    app: &App,
    level: &'static str,
    source: &'static str,
    message: &str,
) -> Result<(), AppError> {
    let at = app.now();
    let message = message.to_owned();
    app.db
        .writer
        .write(move |tx| node_log(tx.conn, at, level, source, &message))
        .await
        .map_err(AppError::from)
}

/// Starts every configured device supervisor on `tracker`, under `shutdown` (which the
/// power policy cancels itself at critical battery). Returns at once; fails only if
/// called twice for the same `App`.
pub fn start(
    app: &App,
    cfg: &NodeConfig,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    start_with(
        app,
        cfg,
        tracker,
        shutdown,
        outbox::OutboxSettings::default(),
    )
}

/// [`start`] with the outbox's retry policy given (tests use short backoffs).
pub fn start_with(
    app: &App,
    cfg: &NodeConfig,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    outbox_settings: outbox::OutboxSettings,
) -> anyhow::Result<()> {
    let h = &app.devices.inner;
    if h.started.swap(true, Ordering::SeqCst) {
        anyhow::bail!("devices already started for this node");
    }
    let phone = cfg.center.technician_phone.as_ref().map(|p| p.to_string());
    let alerter = outbox::Alerter::new(app.clone(), phone, ALERT_COOLDOWN, h.outbox.clone());

    if let Some(modem) = settings::modem(cfg) {
        h.modem_configured.store(true, Ordering::SeqCst);
        if cfg.link.modem_route == markaz_config::ModemRoute::OsRoute {
            let _ = h.os_route.set(cfg.link.os_route_interface.clone());
        }
        tracker.spawn(modem::supervise(
            app.clone(),
            modem,
            h.modem.clone(),
            h.modem_status.clone(),
            h.modem_reset.clone(),
            shutdown.clone(),
        ));
        if cfg.modem.sms_enabled {
            tracker.spawn(outbox::run(
                app.clone(),
                h.modem.subscribe(),
                h.outbox.clone(),
                outbox_settings,
                shutdown.clone(),
            ));
        }
    }

    tracker.spawn(disk::supervise(
        app.clone(),
        u64::from(cfg.storage.min_free_mb) * 1024 * 1024,
        alerter.clone(),
        shutdown.clone(),
    ));

    tracker.spawn(link::supervise(
        app.clone(),
        settings::link(cfg),
        h.modem_status.subscribe(),
        h.link.clone(),
        alerter.clone(),
        settings::link_alert_after(cfg),
        shutdown.clone(),
    ));

    let devices = power::PowerDevices::spawn(cfg, tracker, shutdown);
    if !devices.is_empty() {
        tracker.spawn(power::supervise(
            app.clone(),
            devices,
            power::SamplerSettings::from_config(cfg),
            alerter,
            h.defer_bulk_sync.clone(),
            shutdown.clone(),
            shutdown.clone(),
        ));
    }
    tracker.spawn(crate::app::daily_docs::run_stats(
        app.clone(),
        crate::app::daily_docs::StatsSettings::default(),
        shutdown.clone(),
    ));
    tracing::info!(
        modem = cfg.modem.enabled,
        power_devices = cfg.power.vedirect.len()
            + usize::from(cfg.power.inverter.enabled)
            + usize::from(cfg.power.generator.enabled),
        "device supervisors started"
    );
    Ok(())
}

/// The technician's actions, audited like every use case.
impl App {
    /// `POST /technician/modem/reset`: power-cycles the modem (`AT+CFUN=1,1`).
    pub async fn technician_modem_reset(
        &self,
        actor: &Actor,
    ) -> Result<serde_json::Value, AppError> {
        actor.require(Capability::TechnicalActions)?;
        self.devices.request_modem_reset()?;
        self.technician_audit(
            actor,
            "technician.modem_reset",
            "modem",
            "modem reset requested",
        )
        .await?;
        Ok(json!({"status": "resetting"}))
    }

    /// `POST /technician/sync-now`: wakes the sync client.
    pub async fn technician_sync_now(&self, actor: &Actor) -> Result<serde_json::Value, AppError> {
        actor.require(Capability::TechnicalActions)?;
        self.devices.request_sync_now();
        self.technician_audit(
            actor,
            "technician.sync_now",
            "sync",
            "sync requested by a technician",
        )
        .await?;
        Ok(json!({"status": "requested"}))
    }

    /// `GET /power/daily`: the stored daily energy summaries of `from..=to` (local
    /// dates; default the 30 days up to today).
    pub async fn power_daily(
        &self,
        actor: &Actor,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
    ) -> Result<serde_json::Value, AppError> {
        actor
            .require(Capability::ViewTechnical)
            .or_else(|_| actor.require(Capability::ViewReports))?;
        let to = to.unwrap_or_else(|| self.today());
        let from = from.unwrap_or_else(|| to.checked_sub(jiff::Span::new().days(29)).unwrap_or(to));
        if from > to {
            return Err(AppError::field(
                "from",
                "bad_range",
                "from is after to",
                "تاريخ البداية بعد تاريخ النهاية",
            ));
        }
        let days = power::daily(self, from, to).await?;
        Ok(json!({"from": from.to_string(), "to": to.to_string(), "days": days}))
    }

    async fn technician_audit(
        &self,
        actor: &Actor,
        action: &'static str,
        subject: &'static str,
        message: &'static str,
    ) -> Result<(), AppError> {
        let at = self.now();
        let actor = actor.clone();
        self.db
            .writer
            .write(move |tx| {
                let c = tx.conn;
                audit(c, at, &actor, action, subject, json!({}))?;
                node_log(
                    c,
                    at,
                    "info",
                    subject,
                    &format!("{message} ({})", actor.username),
                )
            })
            .await?;
        Ok(())
    }
}
