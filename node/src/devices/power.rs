//! The power supervisor: starts the configured power drivers (VE.Direct ports, the
//! inverter, the generator controller), takes a [`PowerSample`] every
//! `power.sample_interval_secs` from their latest fresh states, stores it in
//! `power_samples`, folds the local day into `power_daily` and its `energy:<center>:<day>`
//! document (same writer job; today's document at most hourly, a finished day's at once,
//! missing days back-filled at start, see [`crate::app::daily_docs`]), runs the power
//! [`Policy`] on it and carries out what the policy asks:
//! - alert the technician (node log, SMS with a per-kind cooldown, the `power` panel);
//! - defer bulk sync (a `watch` the sync client reads);
//! - start or stop the generator;
//! - shut down: log, checkpoint the WAL (`PRAGMA wal_checkpoint(TRUNCATE)`), run
//!   `power.shutdown_command` with `sh -c` (bounded), then cancel the node's shutdown
//!   token so every task stops cleanly.
//!
//! A sample is only taken when at least one device is fresh: a node whose devices are
//! all silent stores nothing rather than a made-up "on battery". Samples older than
//! `power.retention_days` are pruned once a day; daily summaries are kept.
//!
//! The checkpoint runs on its own short-lived read-write connection, not inside the
//! writer's group-commit transaction: SQLite refuses to checkpoint on a connection with
//! an open transaction. Every write before it was committed by the writer (an `Ok` means
//! on disk), so the checkpoint copies all of them into the main file.

use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use markaz_config::VeDirectRole;
use markaz_hardware::power::driver::{
    self, GeneratorDriver, GeneratorHandle, GeneratorState, InverterDriver, InverterState,
    VeDirectDriver, VeDirectState,
};
use markaz_hardware::power::generator::{EngineState, GeneratorCommand};
use markaz_hardware::power::model::{DailySummary, PowerSample, Source, summarize};
use markaz_hardware::power::policy::{
    Action, Alert, Extra, Level, Policy, PolicySettings, StartReason,
};
use markaz_hardware::power::start::{StartFailure, StartPhase};
use markaz_hardware::power::voltronic::Mode;
use markaz_sync::model::ids::CenterId;
use rusqlite::{Connection, params};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, warn};

use super::outbox::{AlertKind, Alerter};
use super::settings;
use crate::app::{App, daily_docs};
use crate::error::AppError;
use crate::storage::WriteTx;

/// The power devices a node runs, each with the receiver of its latest state.
#[derive(Default)]
pub struct PowerDevices {
    /// VE.Direct ports: role, port, state.
    pub vedirect: Vec<(VeDirectRole, String, watch::Receiver<VeDirectState>)>,
    /// The inverter: port, state.
    pub inverter: Option<(String, watch::Receiver<InverterState>)>,
    /// The generator controller: port, handle (state and commands).
    pub generator: Option<(String, GeneratorHandle)>,
}

impl PowerDevices {
    /// Starts a driver task for each configured device on `tracker`.
    pub fn spawn(
        cfg: &markaz_config::NodeConfig,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Self {
        let mut d = PowerDevices::default();
        for (role, s) in settings::vedirect(cfg) {
            let port = s.port.display().to_string();
            let (drv, rx) = VeDirectDriver::new(s);
            tracker.spawn(drv.run(cancel.clone()));
            d.vedirect.push((role, port, rx));
        }
        if let Some(s) = settings::inverter(cfg) {
            let port = s.port.display().to_string();
            let (drv, rx) = InverterDriver::new(s);
            tracker.spawn(drv.run(cancel.clone()));
            d.inverter = Some((port, rx));
        }
        if let Some(s) = settings::generator(cfg) {
            let port = s.port.display().to_string();
            let (drv, handle) = GeneratorDriver::new(s);
            tracker.spawn(drv.run(cancel.clone()));
            d.generator = Some((port, handle));
        }
        d
    }

    /// Whether no device is configured.
    pub fn is_empty(&self) -> bool {
        self.vedirect.is_empty() && self.inverter.is_none() && self.generator.is_none()
    }

    fn states(&self) -> States {
        States {
            vedirect: self
                .vedirect
                .iter()
                .map(|(_, _, rx)| rx.borrow().clone())
                .collect(),
            inverter: self.inverter.as_ref().map(|(_, rx)| rx.borrow().clone()),
            generator: self
                .generator
                .as_ref()
                .map(|(_, h)| h.state.borrow().clone()),
        }
    }
}

struct States {
    vedirect: Vec<VeDirectState>,
    inverter: Option<InverterState>,
    generator: Option<GeneratorState>,
}

impl States {
    fn any_fresh(&self) -> bool {
        self.vedirect.iter().any(|s| !s.stale)
            || self.inverter.as_ref().is_some_and(|s| !s.stale)
            || self.generator.as_ref().is_some_and(|s| !s.stale)
    }

    /// The battery current for the policy: the battery monitor's, else the inverter's.
    fn extra(&self) -> Extra {
        let bmv = self
            .vedirect
            .iter()
            .filter(|s| !s.stale)
            .find_map(|s| s.bmv.as_ref().map(|b| b.battery_ma));
        let inverter = self
            .inverter
            .as_ref()
            .filter(|s| !s.stale)
            .and_then(|s| s.status.as_ref())
            .map(|q| {
                let ma = i64::from(q.charge_ma) - i64::from(q.discharge_ma);
                i32::try_from(ma).unwrap_or(if ma < 0 { i32::MIN } else { i32::MAX })
            });
        Extra {
            battery_ma: bmv.or(inverter),
        }
    }

    fn sample(&self, at: Timestamp) -> PowerSample {
        driver::sample(
            at,
            &self.vedirect,
            self.inverter.as_ref(),
            self.generator.as_ref(),
        )
    }
}

/// How the sampler runs (from config, see [`SamplerSettings::from_config`]).
#[derive(Debug, Clone)]
pub struct SamplerSettings {
    /// Time between stored samples.
    pub interval: Duration,
    /// Samples older than this are pruned.
    pub retention: Duration,
    /// The policy.
    pub policy: PolicySettings,
    /// The center's zone: days are local days.
    pub tz: TimeZone,
    /// Run with `sh -c` at critical battery.
    pub shutdown_command: String,
    /// Longest wait for the shutdown command.
    pub shutdown_timeout: Duration,
    /// Whether a VE.Direct MPPT is configured (the energy documents' `has_solar`).
    pub mppt_configured: bool,
    /// Today's energy document is rewritten at most this often (finished days at once).
    pub energy_refresh: SignedDuration,
}

impl SamplerSettings {
    /// The settings from `[power]` and `[center].timezone`.
    pub fn from_config(cfg: &markaz_config::NodeConfig) -> Self {
        Self {
            interval: settings::sample_interval(cfg),
            retention: Duration::from_secs(u64::from(cfg.power.retention_days) * 86_400),
            policy: settings::policy(cfg),
            tz: cfg.center.timezone.time_zone(),
            shutdown_command: cfg.power.shutdown_command.clone(),
            shutdown_timeout: Duration::from_secs(60),
            mppt_configured: cfg
                .power
                .vedirect
                .iter()
                .any(|v| v.role == VeDirectRole::Mppt),
            energy_refresh: SignedDuration::from_hours(1),
        }
    }

    /// A sample holds for at most three intervals; a longer silence is unknown time.
    fn max_gap(&self) -> SignedDuration {
        SignedDuration::try_from(self.interval * 3).unwrap_or(SignedDuration::from_mins(3))
    }
}

pub fn source_name(s: Source) -> &'static str {
    match s {
        Source::Grid => "grid",
        Source::Solar => "solar",
        Source::Battery => "battery",
        Source::Generator => "generator",
    }
}

fn parse_source(s: &str) -> Source {
    match s {
        "grid" => Source::Grid,
        "solar" => Source::Solar,
        "generator" => Source::Generator,
        _ => Source::Battery,
    }
}

/// `meta` key: the local day of the last generator test run the policy started.
pub const LAST_TEST_RUN: &str = "power.last_test_run";

/// The snake_case name of a generator start reason, as logs and the panel show it.
pub fn reason_name(r: StartReason) -> &'static str {
    match r {
        StartReason::StateOfCharge => "state_of_charge",
        StartReason::BatteryVoltage => "battery_voltage",
        StartReason::DischargeCurrent => "discharge_current",
        StartReason::Load => "load",
        StartReason::TestRun => "test_run",
        StartReason::MonitorLost => "monitor_lost",
        StartReason::Critical => "critical",
    }
}

pub fn level_name(l: Level) -> &'static str {
    match l {
        Level::Normal => "normal",
        Level::OnBattery => "on_battery",
        Level::Low => "low",
        Level::Critical => "critical",
    }
}

pub fn engine_name(e: EngineState) -> String {
    match e {
        EngineState::Stopped => "stopped".into(),
        EngineState::PreStart => "pre_start".into(),
        EngineState::Warming => "warming".into(),
        EngineState::Running => "running".into(),
        EngineState::Cooling => "cooling".into(),
        EngineState::Other(n) => format!("state {n}"),
    }
}

/// Stores one sample with the policy's level.
pub fn insert_sample(conn: &Connection, s: &PowerSample, level: Level) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO power_samples(at_ms, at, source, soc_percent, battery_mv, pv_w, load_w,
           generator_running, fuel_percent, grid_available, level)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            s.at.as_millisecond(),
            s.at.to_string(),
            source_name(s.source),
            s.soc_percent,
            s.battery_mv,
            s.pv_w,
            s.load_w,
            s.generator_running,
            s.fuel_percent,
            s.grid_available,
            level_name(level),
        ],
    )?;
    Ok(())
}

/// Samples with `from_ms <= at_ms < to_ms`, oldest first.
pub fn samples_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<PowerSample>> {
    let mut st = conn.prepare(
        "SELECT at_ms, source, soc_percent, battery_mv, pv_w, load_w, generator_running,
                fuel_percent, grid_available
         FROM power_samples WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY at_ms",
    )?;
    let rows = st.query_map(params![from_ms, to_ms], |r| {
        let source: String = r.get(1)?;
        Ok(PowerSample {
            at: Timestamp::from_millisecond(r.get(0)?).unwrap_or(Timestamp::UNIX_EPOCH),
            source: parse_source(&source),
            soc_percent: r.get(2)?,
            battery_mv: r.get(3)?,
            pv_w: r.get(4)?,
            load_w: r.get(5)?,
            generator_running: r.get(6)?,
            fuel_percent: r.get(7)?,
            grid_available: r.get(8)?,
        })
    })?;
    rows.collect()
}

fn day_bounds(date: Date, tz: &TimeZone) -> Option<(Timestamp, Timestamp)> {
    let start = tz.to_timestamp(date.to_datetime(Time::midnight())).ok()?;
    let end = tz
        .to_timestamp(date.tomorrow().ok()?.to_datetime(Time::midnight()))
        .ok()?;
    Some((start, end))
}

/// Folds the stored samples of the local `date` into its summary and upserts it in
/// `power_daily`, inside the caller's transaction.
pub fn recompute_day(
    conn: &Connection,
    date: Date,
    tz: &TimeZone,
    max_gap: SignedDuration,
    now: Timestamp,
) -> rusqlite::Result<DailySummary> {
    Ok(recompute_day_with_samples(conn, date, tz, max_gap, now)?.0)
}

/// The samples that decide the local `date`: the day's own and those up to `max_gap`
/// before midnight (the last of which says what held at the day's start).
pub fn day_samples(
    conn: &Connection,
    date: Date,
    tz: &TimeZone,
    max_gap: SignedDuration,
) -> rusqlite::Result<Vec<PowerSample>> {
    let Some((start, end)) = day_bounds(date, tz) else {
        return Ok(Vec::new());
    };
    let from = start.as_millisecond() - max_gap.as_millis() as i64;
    samples_between(conn, from, end.as_millisecond())
}

/// [`recompute_day`], also returning the samples the summary was folded from.
pub fn recompute_day_with_samples(
    conn: &Connection,
    date: Date,
    tz: &TimeZone,
    max_gap: SignedDuration,
    now: Timestamp,
) -> rusqlite::Result<(DailySummary, Vec<PowerSample>)> {
    let samples = day_samples(conn, date, tz, max_gap)?;
    let d = summarize(date, tz, &samples, max_gap);
    let outage_seconds: u64 = d.outages.iter().map(|o| o.duration_seconds).sum();
    let summary = serde_json::to_string(&d).unwrap_or_else(|_| "{}".into());
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO power_daily(date, grid_seconds, solar_seconds, battery_seconds,
           generator_seconds, unknown_seconds, generator_run_seconds, generator_starts, pv_wh,
           min_soc, outages, outage_seconds, summary, computed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(date) DO UPDATE SET
           grid_seconds = excluded.grid_seconds, solar_seconds = excluded.solar_seconds,
           battery_seconds = excluded.battery_seconds,
           generator_seconds = excluded.generator_seconds,
           unknown_seconds = excluded.unknown_seconds,
           generator_run_seconds = excluded.generator_run_seconds,
           generator_starts = excluded.generator_starts, pv_wh = excluded.pv_wh,
           min_soc = excluded.min_soc, outages = excluded.outages,
           outage_seconds = excluded.outage_seconds, summary = excluded.summary,
           computed_at = excluded.computed_at",
        params![
            date.to_string(),
            clamp(d.seconds_per_source.grid),
            clamp(d.seconds_per_source.solar),
            clamp(d.seconds_per_source.battery),
            clamp(d.seconds_per_source.generator),
            clamp(d.unknown_seconds),
            clamp(d.generator_run_seconds),
            d.generator_starts,
            clamp(d.pv_wh),
            d.min_soc,
            d.outages.len() as i64,
            clamp(outage_seconds),
            summary,
            now.to_string(),
        ],
    )?;
    Ok((d, samples))
}

/// Recomputes the local `date` (its `power_daily` row) and writes its energy document
/// from the same samples, inside the caller's writer job; `final_day` also marks the day
/// final. A failing document write is rolled back on its own (logged) so that the sample
/// and the summary are still stored.
#[allow(clippy::too_many_arguments)]
pub fn energy_day(
    tx: &mut WriteTx<'_>,
    date: Date,
    tz: &TimeZone,
    max_gap: SignedDuration,
    now: Timestamp,
    center: &CenterId,
    mppt_configured: bool,
    final_day: bool,
) -> Result<DailySummary, AppError> {
    let conn = tx.conn;
    let (d, samples) = recompute_day_with_samples(conn, date, tz, max_gap, now)?;
    conn.execute_batch("SAVEPOINT energy_doc")?;
    let written = daily_docs::write_energy(tx, center, &d, &samples, tz, mppt_configured, now)
        .and_then(|_| {
            if final_day {
                daily_docs::advance_date_mark(conn, daily_docs::ENERGY_FINAL_THROUGH, date)?;
            }
            Ok(())
        });
    match written {
        Ok(()) => conn.execute_batch("RELEASE energy_doc")?,
        Err(e) => {
            warn!(error = %e, %date, "cannot write the energy document");
            conn.execute_batch("ROLLBACK TO energy_doc; RELEASE energy_doc")?;
        }
    }
    Ok(d)
}

/// Whether any sample was taken within the local `date`.
fn day_has_samples(conn: &Connection, date: Date, tz: &TimeZone) -> rusqlite::Result<bool> {
    let Some((start, end)) = day_bounds(date, tz) else {
        return Ok(false);
    };
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM power_samples WHERE at_ms >= ?1 AND at_ms < ?2)",
        params![start.as_millisecond(), end.as_millisecond()],
        |r| r.get(0),
    )
}

/// Back-fills the energy documents of the finished days since the last final one (on a
/// first run, of every day whose samples are all still kept), one writer job per day,
/// and marks yesterday final. Days without samples get no document. Returns the days
/// written.
pub async fn backfill_energy(
    app: &App,
    settings: &SamplerSettings,
    center: &CenterId,
) -> Result<Vec<Date>, AppError> {
    let (tz, gap) = (settings.tz.clone(), settings.max_gap());
    let now = app.now();
    let today = now.to_zoned(tz.clone()).date();
    let Ok(yesterday) = today.yesterday() else {
        return Ok(Vec::new());
    };
    let keep = SignedDuration::try_from(settings.retention).unwrap_or(SignedDuration::MAX);
    let kept_from = now.checked_sub(keep).unwrap_or(Timestamp::MIN);
    let after = app
        .db
        .readers
        .read(|c| -> Result<_, AppError> {
            Ok(daily_docs::date_mark(c, daily_docs::ENERGY_FINAL_THROUGH)?)
        })
        .await?;
    // The oldest day whose samples (and the one before its midnight) are all kept.
    let mut day = kept_from
        .checked_add(gap)
        .unwrap_or(kept_from)
        .to_zoned(tz.clone())
        .date();
    if day_bounds(day, &tz)
        .is_none_or(|(start, _)| start.checked_sub(gap).is_ok_and(|t| t < kept_from))
    {
        day = day.tomorrow().unwrap_or(day);
    }
    if let Some(a) = after {
        day = day.max(a.tomorrow().unwrap_or(a));
    }
    let mut written = Vec::new();
    while day <= yesterday {
        let (tz, center, mppt) = (tz.clone(), center.clone(), settings.mppt_configured);
        let wrote = app
            .db
            .writer
            .write(move |tx| -> Result<bool, AppError> {
                let c = tx.conn;
                if !day_has_samples(c, day, &tz)? {
                    return Ok(false);
                }
                energy_day(tx, day, &tz, gap, now, &center, mppt, true)?;
                Ok(true)
            })
            .await?;
        if wrote {
            written.push(day);
        }
        day = match day.tomorrow() {
            Ok(d) => d,
            Err(_) => break,
        };
    }
    if after < Some(yesterday) {
        app.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                Ok(daily_docs::advance_date_mark(
                    c,
                    daily_docs::ENERGY_FINAL_THROUGH,
                    yesterday,
                )?)
            })
            .await?;
    }
    Ok(written)
}

/// The stored daily summaries of `from..=to` (local dates), as their JSON.
pub async fn daily(app: &App, from: Date, to: Date) -> Result<Vec<Value>, AppError> {
    let (from, to) = (from.to_string(), to.to_string());
    app.db
        .readers
        .read(move |c| -> Result<Vec<Value>, AppError> {
            let mut st = c.prepare(
                "SELECT summary FROM power_daily WHERE date >= ?1 AND date <= ?2 ORDER BY date",
            )?;
            let rows = st
                .query_map(params![from, to], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .iter()
                .filter_map(|s| serde_json::from_str(s).ok())
                .collect())
        })
        .await
}

/// What the shutdown did.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// `PRAGMA wal_checkpoint(TRUNCATE)`: (busy, wal frames, checkpointed frames).
    pub checkpoint: Result<(i64, i64, i64), String>,
    /// The command's exit status, or why it did not finish.
    pub command: Result<i32, String>,
}

/// Checkpoints the WAL into the database file and truncates it (on its own connection,
/// see the module docs).
pub async fn checkpoint(app: &App) -> Result<(i64, i64, i64), String> {
    let path = app.db.path().to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(i64, i64, i64), String> {
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The clean shutdown at critical battery: log, checkpoint, run the command (bounded).
/// The caller then cancels the node's shutdown token.
pub async fn shutdown(app: &App, command: &str, limit: Duration) -> ShutdownReport {
    error!(command, "battery critical: checkpointing and shutting down");
    let _ = super::log(
        app,
        "error",
        "power",
        &format!("battery critical: checkpointing the database and running `{command}`"),
    )
    .await;
    let checkpoint = checkpoint(app).await;
    match &checkpoint {
        Ok((0, log, done)) => info!(wal_frames = log, checkpointed = done, "WAL checkpointed"),
        Ok((busy, ..)) => warn!(busy, "WAL checkpoint incomplete (readers busy)"),
        Err(e) => error!(error = %e, "WAL checkpoint failed"),
    }
    let run = async {
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .kill_on_drop(true)
            .status()
            .await
    };
    let command = match tokio::time::timeout(limit, run).await {
        Ok(Ok(st)) => Ok(st.code().unwrap_or(-1)),
        Ok(Err(e)) => Err(format!("cannot run: {e}")),
        Err(_) => Err(format!("did not finish within {} s", limit.as_secs())),
    };
    match &command {
        Ok(0) => info!("shutdown command done"),
        Ok(code) => error!(code, "shutdown command failed"),
        Err(e) => error!(error = %e, "shutdown command failed"),
    }
    ShutdownReport {
        checkpoint,
        command,
    }
}

fn alert_kind(a: Alert) -> AlertKind {
    match a {
        Alert::Low => AlertKind::PowerLow,
        Alert::Critical => AlertKind::PowerCritical,
        Alert::GeneratorDidNotStart => AlertKind::GeneratorDidNotStart,
        Alert::MonitorLost => AlertKind::MonitorLost,
    }
}

fn alert_text(a: Alert, s: &PowerSample) -> String {
    let soc = s
        .soc_percent
        .map(|v| format!("{v}%"))
        .unwrap_or_else(|| "?".into());
    let volts = s
        .battery_mv
        .map(|v| format!("{:.1} V", f64::from(v) / 1000.0))
        .unwrap_or_else(|| "?".into());
    match a {
        Alert::Low => format!("البطارية منخفضة ({soc}، {volts})؛ تأجيل المزامنة الكبيرة."),
        Alert::Critical => format!("البطارية حرجة ({soc}، {volts})؛ إيقاف الخادم بأمان الآن."),
        Alert::GeneratorDidNotStart => "طُلب تشغيل المولدة ولم تعمل بعد.".into(),
        Alert::MonitorLost => "توقفت قراءات مراقب البطارية.".into(),
    }
}

fn start_failed_text(f: &StartFailure) -> String {
    match f {
        StartFailure::Refused {
            attempts,
            last_error,
        } => {
            format!("لم تعمل المولدة: رفضت وحدة التحكم أمر التشغيل {attempts} مرات ({last_error}).")
        }
        StartFailure::NeverRan { waited } => format!(
            "لم تعمل المولدة: قُبل أمر التشغيل لكنها لم تدر خلال {} ثانية.",
            waited.as_secs()
        ),
    }
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::PowerOn => "power_on",
        Mode::Standby => "standby",
        Mode::Line => "line",
        Mode::Battery => "battery",
        Mode::Fault => "fault",
        Mode::PowerSaving => "power_saving",
    }
}

/// A power device, as the panel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// VE.Direct solar charger.
    Mppt,
    /// VE.Direct battery monitor.
    Bmv,
    /// Voltronic inverter.
    Inverter,
    /// Modbus generator controller.
    Generator,
}

impl DeviceKind {
    /// The snake_case name (API, catalog keys).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Mppt => "mppt",
            DeviceKind::Bmv => "bmv",
            DeviceKind::Inverter => "inverter",
            DeviceKind::Generator => "generator",
        }
    }
}

/// One configured power device: its port and how its reading goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePanel {
    pub kind: DeviceKind,
    pub port: String,
    /// Nothing valid for its `stale_after`: its figures are old news.
    pub stale: bool,
    /// Its last valid reading.
    pub updated_at: Option<Timestamp>,
    /// Frames with a bad checksum (VE.Direct) or CRC (inverter).
    pub bad_frames: Option<u64>,
    /// Requests that got no answer (inverter).
    pub timeouts: Option<u64>,
    /// Failed requests (generator controller).
    pub errors: Option<u64>,
    /// Why the port cannot be used now.
    pub port_error: Option<String>,
    /// The inverter's mode.
    pub mode: Option<Mode>,
}

/// The generator on the `power` panel.
#[derive(Debug, Clone)]
pub struct GeneratorPanel {
    /// The controller's last reading (kept while stale).
    pub reading: Option<markaz_hardware::power::generator::GeneratorReading>,
    pub stale: bool,
    pub requested_by_policy: bool,
    pub start_reason: Option<StartReason>,
    pub last_test_run: Option<Date>,
    /// Where the last start stands.
    pub start: Option<StartPhase>,
}

/// A figure of the `power` panel that can go stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerField {
    Source,
    Soc,
    BatteryV,
    Pv,
    Load,
    Grid,
    Fuel,
    InverterMode,
    Generator,
}

impl PowerField {
    pub const ALL: [PowerField; 9] = [
        PowerField::Source,
        PowerField::Soc,
        PowerField::BatteryV,
        PowerField::Pv,
        PowerField::Load,
        PowerField::Grid,
        PowerField::Fuel,
        PowerField::InverterMode,
        PowerField::Generator,
    ];

    /// The field's name in the API (`soc_percent`, …).
    pub fn name(self) -> &'static str {
        match self {
            PowerField::Source => "source",
            PowerField::Soc => "soc_percent",
            PowerField::BatteryV => "battery_v",
            PowerField::Pv => "pv_w",
            PowerField::Load => "load_w",
            PowerField::Grid => "grid_available",
            PowerField::Fuel => "fuel_percent",
            PowerField::InverterMode => "inverter_mode",
            PowerField::Generator => "generator",
        }
    }

    /// The devices that can supply it (the sample's preference order, model.rs).
    fn providers(self) -> &'static [DeviceKind] {
        use DeviceKind::*;
        match self {
            PowerField::Source => &[Mppt, Bmv, Inverter, Generator],
            PowerField::Soc => &[Bmv, Inverter],
            PowerField::BatteryV => &[Bmv, Mppt, Inverter],
            PowerField::Pv => &[Mppt, Inverter],
            PowerField::Load => &[Inverter, Mppt, Bmv],
            PowerField::Grid => &[Generator, Inverter],
            PowerField::Fuel | PowerField::Generator => &[Generator],
            PowerField::InverterMode => &[Inverter],
        }
    }
}

/// The `power` panel: the live sample of the fresh devices (or the last stored one when
/// none is fresh), the policy's state, the generator, today's summary and each device.
#[derive(Debug, Clone)]
pub struct PowerPanel {
    pub level: Level,
    /// The figures now; with `no_fresh_device`, the last stored sample.
    pub sample: Option<PowerSample>,
    pub pv: markaz_hardware::power::model::PvFigures,
    /// The inverter's mode while it is fresh.
    pub inverter_mode: Option<Mode>,
    pub generator: Option<GeneratorPanel>,
    pub bulk_sync_deferred: bool,
    pub monitor_lost: bool,
    pub last_alert: Option<(Alert, Timestamp)>,
    pub today: Option<DailySummary>,
    /// Every configured device is silent: `sample` is old.
    pub no_fresh_device: bool,
    pub devices: Vec<DevicePanel>,
}

impl PowerPanel {
    fn has_value(&self, f: PowerField) -> bool {
        let s = self.sample.as_ref();
        match f {
            PowerField::Source => s.is_some(),
            PowerField::Soc => s.is_some_and(|s| s.soc_percent.is_some()),
            PowerField::BatteryV => s.is_some_and(|s| s.battery_mv.is_some()),
            PowerField::Pv => s.is_some_and(|s| s.pv_w.is_some()),
            PowerField::Load => s.is_some_and(|s| s.load_w.is_some()),
            PowerField::Grid => s.is_some_and(|s| s.grid_available.is_some()),
            PowerField::Fuel => s.is_some_and(|s| s.fuel_percent.is_some()),
            PowerField::InverterMode => self.inverter_mode.is_some(),
            PowerField::Generator => self.generator.as_ref().is_some_and(|g| !g.stale),
        }
    }

    /// The figures that are not true now: a device that could supply one is configured
    /// and silent, and no fresh device supplies it (or no device at all is fresh, and
    /// the figures shown are the last stored sample's).
    pub fn stale_fields(&self) -> Vec<PowerField> {
        PowerField::ALL
            .into_iter()
            .filter(|f| {
                let mut providers = self
                    .devices
                    .iter()
                    .filter(|d| f.providers().contains(&d.kind))
                    .peekable();
                if providers.peek().is_none() {
                    return false;
                }
                let any_stale = providers.any(|d| d.stale);
                (self.no_fresh_device || !self.has_value(*f)) && any_stale
            })
            .collect()
    }

    /// The configured device of a kind, if any.
    pub fn device(&self, kind: DeviceKind) -> Option<&DevicePanel> {
        self.devices.iter().find(|d| d.kind == kind)
    }
}

/// The `power` panel.
fn panel(
    d: &PowerDevices,
    st: &States,
    s: Option<&PowerSample>,
    policy: &Policy,
    deferring: bool,
    last_alert: &Option<(Alert, Timestamp)>,
    today: &Option<DailySummary>,
) -> PowerPanel {
    let mut devices = Vec::new();
    for ((role, port, _), v) in d.vedirect.iter().zip(&st.vedirect) {
        devices.push(DevicePanel {
            kind: match role {
                VeDirectRole::Mppt => DeviceKind::Mppt,
                VeDirectRole::Bmv => DeviceKind::Bmv,
            },
            port: port.clone(),
            stale: v.stale,
            updated_at: v.updated_at,
            bad_frames: Some(v.stats.bad_checksum),
            timeouts: None,
            errors: None,
            port_error: v.port_error.clone(),
            mode: None,
        });
    }
    if let (Some((port, _)), Some(v)) = (&d.inverter, &st.inverter) {
        devices.push(DevicePanel {
            kind: DeviceKind::Inverter,
            port: port.clone(),
            stale: v.stale,
            updated_at: v.updated_at,
            bad_frames: Some(v.stats.bad_crc),
            timeouts: Some(v.stats.timeouts),
            errors: None,
            port_error: v.port_error.clone(),
            mode: v.mode,
        });
    }
    let generator = match (&d.generator, &st.generator) {
        (Some((port, _)), Some(g)) => {
            devices.push(DevicePanel {
                kind: DeviceKind::Generator,
                port: port.clone(),
                stale: g.stale,
                updated_at: g.updated_at,
                bad_frames: None,
                timeouts: None,
                errors: Some(g.errors),
                port_error: g.last_error.clone(),
                mode: None,
            });
            Some(GeneratorPanel {
                reading: g.reading.clone(),
                stale: g.stale,
                requested_by_policy: policy.generator_requested(),
                start_reason: policy.start_reason(),
                last_test_run: policy.last_test_run(),
                start: g.start.clone(),
            })
        }
        _ => None,
    };
    PowerPanel {
        level: policy.level(),
        sample: s.cloned(),
        pv: driver::pv_figures(&st.vedirect, st.inverter.as_ref()),
        inverter_mode: st
            .inverter
            .as_ref()
            .filter(|i| !i.stale)
            .and_then(|i| i.mode),
        generator,
        bulk_sync_deferred: deferring,
        monitor_lost: policy.monitor_lost(),
        last_alert: *last_alert,
        today: today.clone(),
        no_fresh_device: !st.any_fresh(),
        devices,
    }
}

/// Runs the sampler and policy until `cancel` (or until it shuts the node down).
pub async fn supervise(
    app: App,
    devices: PowerDevices,
    settings: SamplerSettings,
    alerter: Alerter,
    defer: watch::Sender<bool>,
    node_shutdown: CancellationToken,
    cancel: CancellationToken,
) {
    let center = app.settings.center_id.clone();
    let mut policy = Policy::new(settings.policy.clone());
    match app
        .db
        .readers
        .read(|c| -> Result<_, AppError> { Ok(daily_docs::date_mark(c, LAST_TEST_RUN)?) })
        .await
    {
        Ok(Some(day)) => policy.restore_last_test_run(day),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot read the last generator test run"),
    }
    Sampler {
        center,
        energy_written_at: None,
        energy_events: None,
        app,
        devices,
        policy,
        settings,
        alerter,
        defer,
        node_shutdown,
        last_alert: None,
        today: None,
        last_date: None,
        last_prune: None,
        last_sample: None,
        start_failure_seen: None,
    }
    .run(cancel)
    .instrument(tracing::info_span!("power"))
    .await
}

/// The discrete events of a day's summary (power cuts, generator starts): when they
/// differ from what today's energy document holds, it is rewritten at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnergyEvents {
    date: Date,
    outages: usize,
    generator_starts: u32,
}

impl EnergyEvents {
    pub(crate) fn of(d: &DailySummary) -> EnergyEvents {
        EnergyEvents {
            date: d.date,
            outages: d.outages.len(),
            generator_starts: d.generator_starts,
        }
    }
}

struct Sampler {
    /// The center whose energy documents are written.
    center: CenterId,
    /// When today's energy document was last written (node clock).
    energy_written_at: Option<Timestamp>,
    /// The day's power cuts and generator starts as today's document last had them.
    energy_events: Option<EnergyEvents>,
    app: App,
    devices: PowerDevices,
    settings: SamplerSettings,
    policy: Policy,
    alerter: Alerter,
    defer: watch::Sender<bool>,
    node_shutdown: CancellationToken,
    last_alert: Option<(Alert, Timestamp)>,
    today: Option<DailySummary>,
    last_date: Option<Date>,
    last_prune: Option<Instant>,
    last_sample: Option<PowerSample>,
    /// The generator start failure already alerted (one alert per failure).
    start_failure_seen: Option<StartFailure>,
}

impl Sampler {
    /// Raises "generator did not start" once per failed start the driver reports.
    async fn check_start(&mut self) {
        let Some((_, handle)) = &self.devices.generator else {
            return;
        };
        let failure = match &handle.state.borrow().start {
            Some(StartPhase::Failed(f)) => Some(f.clone()),
            _ => None,
        };
        if failure == self.start_failure_seen {
            return;
        }
        self.start_failure_seen = failure.clone();
        let Some(f) = failure else { return };
        let at = self.app.now();
        self.last_alert = Some((Alert::GeneratorDidNotStart, at));
        let _ = super::log(
            &self.app,
            "error",
            "power",
            &format!("generator start failed: {f}"),
        )
        .await;
        self.publish();
        if let Err(e) = self
            .alerter
            .raise(AlertKind::GeneratorDidNotStart, start_failed_text(&f))
            .await
        {
            warn!(error = %e, "cannot raise the generator alert");
        }
    }

    fn publish(&self) {
        let st = self.devices.states();
        // Live values between stored samples: the panel never waits for the interval.
        let live = st
            .any_fresh()
            .then(|| st.sample(self.app.now()))
            .or_else(|| self.last_sample.clone());
        let v = panel(
            &self.devices,
            &st,
            live.as_ref(),
            &self.policy,
            *self.defer.borrow(),
            &self.last_alert,
            &self.today,
        );
        self.app.status.power.send_replace(Some(v));
    }

    async fn run(mut self, cancel: CancellationToken) {
        match backfill_energy(&self.app, &self.settings, &self.center).await {
            Ok(days) if !days.is_empty() => {
                info!(days = days.len(), "energy documents back-filled")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot back-fill the energy documents"),
        }
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first sample after one interval: the drivers need a moment to read.
        tick.reset();
        let mut panel_tick =
            tokio::time::interval(self.settings.interval.min(Duration::from_secs(2)));
        panel_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = panel_tick.tick() => {
                    self.check_start().await;
                    self.publish();
                }
                _ = tick.tick() => {
                    if self.sample_once().await {
                        break;
                    }
                    self.publish();
                }
            }
        }
    }

    /// One sample; true when the node is shutting down.
    async fn sample_once(&mut self) -> bool {
        let st = self.devices.states();
        if !st.any_fresh() {
            return false;
        }
        let now = self.app.now();
        let s = st.sample(now);
        let actions = self.policy.on_sample_with(&s, &st.extra());
        let level = self.policy.level();
        let date = now.to_zoned(self.settings.tz.clone()).date();
        let previous = self.last_date.filter(|d| *d != date);
        self.last_date = Some(date);
        let prune_before = match self.last_prune {
            Some(t) if t.elapsed() < Duration::from_secs(86_400) => None,
            _ => {
                self.last_prune = Some(Instant::now());
                let keep = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
                Some(now.as_millisecond().saturating_sub(keep))
            }
        };
        let (tz, gap) = (self.settings.tz.clone(), self.settings.max_gap());
        let sample = s.clone();
        // Today's document at most every `energy_refresh`; a finished day's at once.
        let energy_due = previous.is_some()
            || self
                .energy_written_at
                .is_none_or(|at| now.duration_since(at) >= self.settings.energy_refresh);
        let (center, mppt) = (self.center.clone(), self.settings.mppt_configured);
        let written_events = self.energy_events.filter(|e| e.date == date);
        let stored = self
            .app
            .db
            .writer
            .write_low_value(move |tx| -> Result<(DailySummary, bool), AppError> {
                let c = tx.conn;
                insert_sample(c, &sample, level)?;
                if let Some(p) = previous {
                    energy_day(tx, p, &tz, gap, now, &center, mppt, true)?;
                }
                let today = if energy_due {
                    (
                        energy_day(tx, date, &tz, gap, now, &center, mppt, false)?,
                        true,
                    )
                } else {
                    let d = recompute_day(c, date, &tz, gap, now)?;
                    // A power cut or a generator start is written at once, not at the next
                    // hourly refresh: the hub must not read the day without it
                    // (docs/OPERATIONS.md, "Energy figures").
                    if written_events != Some(EnergyEvents::of(&d)) {
                        (
                            energy_day(tx, date, &tz, gap, now, &center, mppt, false)?,
                            true,
                        )
                    } else {
                        (d, false)
                    }
                };
                if let Some(before) = prune_before {
                    c.execute("DELETE FROM power_samples WHERE at_ms < ?1", [before])?;
                }
                Ok(today)
            })
            .await;
        match stored {
            Ok((today, written)) => {
                if energy_due {
                    self.energy_written_at = Some(now);
                }
                if written {
                    self.energy_events = Some(EnergyEvents::of(&today));
                }
                self.today = Some(today);
            }
            Err(e) => warn!(error = %e, "cannot store the power sample"),
        }
        self.last_sample = Some(s.clone());
        for action in actions {
            if self.act(action, &s).await {
                return true;
            }
        }
        false
    }

    /// Carries out one action; true when the node is shutting down.
    async fn act(&mut self, action: Action, s: &PowerSample) -> bool {
        match action {
            Action::AlertTechnician(a) => {
                self.last_alert = Some((a, s.at));
                self.publish();
                if let Err(e) = self.alerter.raise(alert_kind(a), alert_text(a, s)).await {
                    warn!(error = %e, "cannot raise a power alert");
                }
            }
            Action::DeferBulkSync(on) => {
                self.defer.send_replace(on);
                let text = if on {
                    "battery low: bulk sync deferred"
                } else {
                    "battery recovered: bulk sync resumed"
                };
                let _ = super::log(&self.app, "info", "power", text).await;
            }
            Action::StartGenerator(_) | Action::StopGenerator => {
                let (cmd, why) = match action {
                    Action::StartGenerator(why) => {
                        (GeneratorCommand::Start, format!(" ({})", reason_name(why)))
                    }
                    _ => (GeneratorCommand::Stop, String::new()),
                };
                let Some((_, handle)) = &self.devices.generator else {
                    return false;
                };
                info!(command = ?cmd, reason = %why, "generator command");
                if let (Action::StartGenerator(StartReason::TestRun), Some(day)) =
                    (action, self.policy.last_test_run())
                {
                    // Kept across restarts: the week's test runs once.
                    let r = self
                        .app
                        .db
                        .writer
                        .write(move |tx| daily_docs::advance_date_mark(tx.conn, LAST_TEST_RUN, day))
                        .await;
                    if let Err(e) = r {
                        warn!(error = %e, "cannot record the generator test run");
                    }
                }
                let (handle, app) = (handle.clone(), self.app.clone());
                // Bounded by the handle; the sampler does not wait for the controller.
                tokio::spawn(async move {
                    let r = handle.command(cmd).await;
                    let (level, text) = match &r {
                        Ok(()) => ("info", format!("generator {cmd:?} sent{why}")),
                        Err(e) => ("error", format!("generator {cmd:?} failed{why}: {e}")),
                    };
                    let _ = super::log(&app, level, "power", &text).await;
                });
            }
            Action::Shutdown => {
                self.publish();
                let report = shutdown(
                    &self.app,
                    &self.settings.shutdown_command,
                    self.settings.shutdown_timeout,
                )
                .await;
                info!(?report, "power shutdown");
                self.node_shutdown.cancel();
                return true;
            }
        }
        false
    }
}
