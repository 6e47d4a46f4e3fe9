//! The center's daily documents for the hub: `energy:<center>:<day>` (the power day's
//! figures) and `stats:<center>:<day>` (the queue and case figures), automerge metrics
//! documents written only by this center.
//!
//! Guarantees:
//! - a document is written in the same writer job as the SQL it is derived from (the
//!   energy document with the `power_daily` row it mirrors), so it never disagrees with
//!   what the node shows;
//! - writing is idempotent: every field is compared before it is set, so a day whose
//!   figures did not change adds no automerge change (and nothing to sync);
//! - a metric that is unknown (`min_soc_pct` without a battery monitor, the wait times of a
//!   day where nobody was called) is absent rather than zero;
//! - a day without activity (no power sample, no ticket and no case event) gets no
//!   document; a node without power devices writes no energy document at all;
//! - finished days are written once more after they end (the `*_final_through` marks in
//!   `meta` say which days are final), and on startup every day since the last final one is
//!   back-filled, so a node that was off at midnight still sends the day's final figures.
//!
//! Both kinds are "bulk" documents for the sync (held back on the metered modem link);
//! this module only writes them.

use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use markaz_hardware::power::model::{DailySummary, PowerSample};
use markaz_sync::docs::{self as sync_docs, DocId, DocKind};
use markaz_sync::model::ids::CenterId;
use rusqlite::{Connection, OptionalExtension, params};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use super::App;
use crate::error::AppError;
use crate::storage::WriteTx;

/// `meta` key: the last local day whose energy document holds its final figures.
pub const ENERGY_FINAL_THROUGH: &str = "daily_docs.energy_final_through";
/// `meta` key: the last local day whose statistics document holds its final figures.
pub const STATS_FINAL_THROUGH: &str = "daily_docs.stats_final_through";

/// A document's metrics: fixed names (the hub reads them) and values, `None` = unknown.
pub type Metrics = Vec<(&'static str, Option<i64>)>;

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Fuel level rises at least this much (percentage points) to count as a refill, so a
/// sender that wobbles by a point or two is not read as fuel burnt and refilled.
const REFILL_POINTS: u16 = 5;

/// Fuel used during the local `date`, in percentage points of the tank: the sum of the
/// drops between refills. `None` when no sample of the day reports a fuel level.
pub fn fuel_used_percent(date: Date, tz: &TimeZone, samples: &[PowerSample]) -> Option<u32> {
    let (start, end) = day_bounds(date, tz)?;
    let mut levels = samples
        .iter()
        .filter(|s| s.at >= start && s.at < end)
        .filter_map(|s| s.fuel_percent.map(|f| (s.at, f)))
        .collect::<Vec<_>>();
    levels.sort_by_key(|(at, _)| *at);
    let mut it = levels.into_iter().map(|(_, f)| f);
    let first = it.next()?;
    let (mut high, mut low, mut used) = (first, first, 0u32);
    for f in it {
        if f >= low.saturating_add(REFILL_POINTS) {
            used += u32::from(high - low);
            (high, low) = (f, f);
        } else if f < low {
            low = f;
        }
    }
    Some(used + u32::from(high - low))
}

/// The energy document's metrics for a day's summary.
pub fn energy_metrics(d: &DailySummary, has_solar: bool, fuel_used_pct: Option<u32>) -> Metrics {
    let s = &d.seconds_per_source;
    let outage_seconds: u64 = d.outages.iter().map(|o| o.duration_seconds).sum();
    let longest = d
        .outages
        .iter()
        .map(|o| o.duration_seconds)
        .max()
        .unwrap_or(0);
    vec![
        ("has_solar", Some(i64::from(has_solar))),
        ("seconds_grid", Some(int(s.grid))),
        ("seconds_solar", Some(int(s.solar))),
        ("seconds_battery", Some(int(s.battery))),
        ("seconds_generator", Some(int(s.generator))),
        ("seconds_unknown", Some(int(d.unknown_seconds))),
        ("generator_run_seconds", Some(int(d.generator_run_seconds))),
        ("generator_starts", Some(i64::from(d.generator_starts))),
        ("pv_wh", Some(int(d.pv_wh))),
        ("min_soc_pct", d.min_soc.map(i64::from)),
        ("outages", Some(int(d.outages.len() as u64))),
        ("outage_seconds", Some(int(outage_seconds))),
        ("longest_outage_seconds", Some(int(longest))),
        ("fuel_used_pct", fuel_used_pct.map(i64::from)),
    ]
}

/// Whether the center has solar: a VE.Direct MPPT is configured, or another device (the
/// hybrid inverter) has reported PV power in a stored sample.
pub fn has_solar(conn: &Connection, mppt_configured: bool) -> rusqlite::Result<bool> {
    if mppt_configured {
        return Ok(true);
    }
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM power_samples WHERE pv_w > 0)",
        [],
        |r| r.get(0),
    )
}

/// The metric that says when the document's figures were computed (unix ms): written
/// with them whenever one of them changes, so the hub shows each day "as of" that time.
pub const AS_OF_MS: &str = "as_of_ms";

/// Writes a center-day metrics document (creating it if needed), setting only the known
/// metrics that differ from the stored ones, and then [`AS_OF_MS`] = `as_of`. Figures
/// that did not change add no change at all (nor a new as-of time). Must run inside a
/// writer job. Returns whether a new change was stored.
pub fn write_metrics(
    tx: &mut WriteTx<'_>,
    kind: DocKind,
    center: &CenterId,
    day: Date,
    metrics: &[(&'static str, Option<i64>)],
    as_of: Timestamp,
) -> Result<bool, AppError> {
    let id = match kind {
        DocKind::Energy => DocId::energy(center, day),
        _ => DocId::stats(center, day),
    };
    let (_, stored) = tx.docs.edit(tx.conn, &id, |d| {
        let before = sync_docs::read_metrics(d).ok().map(|m| m.metrics);
        sync_docs::create_metrics(d, kind, center, day)?;
        let mut changed = before.is_none();
        for (name, value) in metrics {
            if let Some(v) = value {
                changed |= before.as_ref().and_then(|b| b.get(*name)) != Some(v);
                sync_docs::set_metric(d, name, *v)?;
            }
        }
        if changed {
            sync_docs::set_metric(d, AS_OF_MS, as_of.as_millisecond())?;
        }
        Ok(())
    })?;
    Ok(stored.is_some())
}

/// The energy document of `summary.date` from its summary and the samples it came from.
pub fn write_energy(
    tx: &mut WriteTx<'_>,
    center: &CenterId,
    summary: &DailySummary,
    samples: &[PowerSample],
    tz: &TimeZone,
    mppt_configured: bool,
    as_of: Timestamp,
) -> Result<bool, AppError> {
    let fuel = fuel_used_percent(summary.date, tz, samples);
    let solar = has_solar(tx.conn, mppt_configured)?;
    write_metrics(
        tx,
        DocKind::Energy,
        center,
        summary.date,
        &energy_metrics(summary, solar, fuel),
        as_of,
    )
}

/// The queue and case figures of one local day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DayStats {
    pub tickets_issued: u32,
    pub tickets_served: u32,
    pub no_shows: u32,
    /// From issue to first call; `None` when nobody was called.
    pub wait_seconds_avg: Option<i64>,
    pub wait_seconds_max: Option<i64>,
    /// From call to finish of the served tickets; `None` when none was served.
    pub service_seconds_avg: Option<i64>,
    /// Cases opened at this center (events stamped by it).
    pub cases_created: u32,
    /// Cases handed over at this center, in person or by post.
    pub cases_delivered: u32,
}

impl DayStats {
    /// Whether anything happened that day.
    pub fn is_empty(&self) -> bool {
        self.tickets_issued == 0 && self.cases_created == 0 && self.cases_delivered == 0
    }

    /// The statistics document's metrics.
    pub fn metrics(&self) -> Metrics {
        vec![
            ("tickets_issued", Some(i64::from(self.tickets_issued))),
            ("tickets_served", Some(i64::from(self.tickets_served))),
            ("no_shows", Some(i64::from(self.no_shows))),
            ("wait_seconds_avg", self.wait_seconds_avg),
            ("wait_seconds_max", self.wait_seconds_max),
            ("service_seconds_avg", self.service_seconds_avg),
            ("cases_created", Some(i64::from(self.cases_created))),
            ("cases_delivered", Some(i64::from(self.cases_delivered))),
        ]
    }
}

fn day_bounds(date: Date, tz: &TimeZone) -> Option<(Timestamp, Timestamp)> {
    let start = tz.to_timestamp(date.to_datetime(Time::midnight())).ok()?;
    let end = tz
        .to_timestamp(date.tomorrow().ok()?.to_datetime(Time::midnight()))
        .ok()?;
    Some((start, end))
}

/// The stamps (`case_events.at`) of this center's case events of the given kinds with
/// `from <= at < to`. The stamps are RFC 3339 text whose fractional seconds do not sort
/// as text, so the range is widened by a day in SQL and checked on the parsed values.
fn case_event_times(
    conn: &Connection,
    center: &CenterId,
    kinds: &[&str],
    from: Timestamp,
    to: Timestamp,
) -> rusqlite::Result<Vec<Timestamp>> {
    let day = SignedDuration::from_hours(24);
    let lo = from.checked_sub(day).unwrap_or(from).to_string();
    let hi = to.checked_add(day).unwrap_or(to).to_string();
    let mut st = conn.prepare_cached(
        "SELECT at, kind FROM case_events
         WHERE at >= ?1 AND at < ?2 AND json_extract(json, '$.hlc') LIKE '%.' || ?3",
    )?;
    let rows = st.query_map(params![lo, hi, center.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, kind) = row?;
        if !kinds.contains(&kind.as_str()) {
            continue;
        }
        if let Ok(t) = at.parse::<Timestamp>()
            && t >= from
            && t < to
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Computes the figures of the local `date` from the node's SQL.
pub fn day_stats(
    conn: &Connection,
    center: &CenterId,
    date: Date,
    tz: &TimeZone,
) -> rusqlite::Result<DayStats> {
    let q = super::reports::day_total(conn, &date.to_string())?;
    let (created, delivered) = match day_bounds(date, tz) {
        Some((from, to)) => (
            case_event_times(conn, center, &["created"], from, to)?.len(),
            case_event_times(conn, center, &["delivered", "posted"], from, to)?.len(),
        ),
        None => (0, 0),
    };
    Ok(DayStats {
        tickets_issued: q.issued,
        tickets_served: q.served,
        no_shows: q.no_shows,
        wait_seconds_avg: q.avg_wait_secs,
        wait_seconds_max: q.max_wait_secs,
        service_seconds_avg: q.avg_service_secs,
        cases_created: u32::try_from(created).unwrap_or(u32::MAX),
        cases_delivered: u32::try_from(delivered).unwrap_or(u32::MAX),
    })
}

/// Computes and writes the statistics document of `date` (nothing for a day without
/// activity). Must run inside a writer job. Returns the figures and whether a new change
/// was stored.
pub fn write_stats(
    tx: &mut WriteTx<'_>,
    center: &CenterId,
    date: Date,
    tz: &TimeZone,
    as_of: Timestamp,
) -> Result<(DayStats, bool), AppError> {
    let stats = day_stats(tx.conn, center, date, tz)?;
    if stats.is_empty() {
        return Ok((stats, false));
    }
    let changed = write_metrics(tx, DocKind::Stats, center, date, &stats.metrics(), as_of)?;
    Ok((stats, changed))
}

/// Reads a date kept in `meta` under `key` (the `*_final_through` marks, the last
/// generator test run).
pub fn date_mark(conn: &Connection, key: &str) -> rusqlite::Result<Option<Date>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// Moves a date kept in `meta` forward (never back).
pub fn advance_date_mark(conn: &Connection, key: &str, day: Date) -> rusqlite::Result<()> {
    if date_mark(conn, key)?.is_some_and(|d| d >= day) {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, day.to_string()],
    )?;
    Ok(())
}

/// The local days with tickets or case events of this center, from `after` (exclusive,
/// or from the beginning) up to `before` (exclusive), oldest first.
fn activity_days(
    conn: &Connection,
    center: &CenterId,
    tz: &TimeZone,
    after: Option<Date>,
    before: Date,
) -> rusqlite::Result<Vec<Date>> {
    let after_s = after.map(|d| d.to_string()).unwrap_or_default();
    let mut days = std::collections::BTreeSet::new();
    let mut st = conn.prepare("SELECT DISTINCT day FROM tickets WHERE day > ?1 AND day < ?2")?;
    for d in st.query_map(params![after_s, before.to_string()], |r| {
        r.get::<_, String>(0)
    })? {
        if let Ok(d) = d?.parse::<Date>() {
            days.insert(d);
        }
    }
    let from = after
        .and_then(|a| day_bounds(a, tz))
        .map_or(Timestamp::MIN, |(_, end)| end);
    let to = day_bounds(before, tz).map_or(Timestamp::MAX, |(start, _)| start);
    let kinds = ["created", "delivered", "posted"];
    for t in case_event_times(conn, center, &kinds, from, to)? {
        days.insert(t.to_zoned(tz.clone()).date());
    }
    Ok(days.into_iter().filter(|d| *d < before).collect())
}

/// When the statistics task writes.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// How often the task looks at the clock (a finished day is written within this).
    pub check_every: Duration,
    /// Today's running figures are rewritten at most this often.
    pub refresh_every: SignedDuration,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(60),
            refresh_every: SignedDuration::from_hours(1),
        }
    }
}

impl App {
    /// Writes the statistics documents of every finished day since the last final one
    /// (all days with activity on a first run), marks them final, then today's running
    /// figures. Each day is its own writer job. Returns how many documents changed.
    pub async fn write_stats_docs(&self) -> Result<usize, AppError> {
        let center = self.settings.center_id.clone();
        let tz = self.settings.timezone.clone();
        let today = self.today();
        let (c2, tz2) = (center.clone(), tz.clone());
        let (after, days) = self
            .db
            .writer
            .write_low_value(move |tx| -> Result<_, AppError> {
                let c = tx.conn;
                let after = date_mark(c, STATS_FINAL_THROUGH)?;
                Ok((after, activity_days(c, &c2, &tz2, after, today)?))
            })
            .await?;
        let mut changed = 0;
        for day in days {
            changed += usize::from(self.write_stats_day(day).await?.1);
        }
        if let Some(yesterday) = today.yesterday().ok().filter(|y| after < Some(*y)) {
            self.db
                .writer
                .write(move |tx| -> Result<(), AppError> {
                    let c = tx.conn;
                    Ok(advance_date_mark(c, STATS_FINAL_THROUGH, yesterday)?)
                })
                .await?;
        }
        changed += usize::from(self.write_stats_day(today).await?.1);
        Ok(changed)
    }

    /// Computes and writes one day's statistics document (one writer job).
    pub async fn write_stats_day(&self, day: Date) -> Result<(DayStats, bool), AppError> {
        let center = self.settings.center_id.clone();
        let tz = self.settings.timezone.clone();
        let as_of = self.now();
        Ok(self
            .db
            .writer
            .write_low_value(move |tx| write_stats(tx, &center, day, &tz, as_of))
            .await?)
    }

    /// The figures stored in a metrics document of this center (`None` if absent).
    pub async fn read_metrics_doc(
        &self,
        kind: DocKind,
        day: Date,
    ) -> Result<Option<std::collections::BTreeMap<String, i64>>, AppError> {
        let center = self.settings.center_id.clone();
        let id = match kind {
            DocKind::Energy => DocId::energy(&center, day),
            _ => DocId::stats(&center, day),
        };
        // Documents live on the writer thread; a read-only job changes nothing.
        Ok(self
            .db
            .writer
            .write(move |tx| -> Result<_, AppError> {
                let c = tx.conn;
                let v = tx.docs.read(c, &id, sync_docs::read_metrics)?;
                Ok(match v {
                    Some(m) => Some(
                        m.map_err(|e| AppError::Internal(format!("metrics document: {e}")))?
                            .metrics,
                    ),
                    None => None,
                })
            })
            .await?)
    }
}

/// Keeps the statistics documents written until `cancel`: the back-fill at start, a
/// finished day right after it ends, today's figures at most every `refresh_every`.
pub async fn run_stats(app: App, settings: StatsSettings, cancel: CancellationToken) {
    async move {
        let mut last: Option<(Date, Timestamp)> = None;
        let mut tick = tokio::time::interval(settings.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (now, today) = (app.now(), app.today());
            let due = match last {
                None => true,
                Some((day, _)) if day != today => true,
                Some((_, at)) => now.duration_since(at) >= settings.refresh_every,
            };
            if !due {
                continue;
            }
            match app.write_stats_docs().await {
                Ok(_) => last = Some((today, now)),
                Err(e) => warn!(error = %e, "cannot write the daily statistics documents"),
            }
        }
    }
    .instrument(tracing::info_span!("daily_docs"))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use markaz_hardware::power::model::{Outage, Source, SourceSeconds};

    fn sample(at: &str, fuel: Option<u16>) -> PowerSample {
        PowerSample {
            at: at.parse().unwrap(),
            source: Source::Generator,
            soc_percent: None,
            battery_mv: None,
            pv_w: None,
            load_w: None,
            generator_running: true,
            fuel_percent: fuel,
            grid_available: None,
        }
    }

    #[test]
    fn fuel_used_counts_drops_between_refills_and_ignores_wobble() {
        let date = jiff::civil::date(2026, 6, 1);
        let tz = TimeZone::UTC;
        let s = [
            sample("2026-05-31T23:00:00Z", Some(99)), // the day before: ignored
            sample("2026-06-01T08:00:00Z", Some(80)),
            sample("2026-06-01T09:00:00Z", Some(79)),
            sample("2026-06-01T09:01:00Z", Some(80)), // sender wobble
            sample("2026-06-01T10:00:00Z", Some(70)),
            sample("2026-06-01T11:00:00Z", None),
            sample("2026-06-01T12:00:00Z", Some(95)), // refill
            sample("2026-06-01T13:00:00Z", Some(90)),
        ];
        assert_eq!(fuel_used_percent(date, &tz, &s), Some(10 + 5));
        assert_eq!(fuel_used_percent(date, &tz, &s[5..6]), None);
        assert_eq!(fuel_used_percent(date, &tz, &s[..1]), None);
    }

    #[test]
    fn energy_metrics_have_the_fixed_names_and_absent_unknowns() {
        let d = DailySummary {
            date: jiff::civil::date(2026, 6, 1),
            seconds_per_source: SourceSeconds {
                grid: 100,
                solar: 200,
                battery: 300,
                generator: 400,
            },
            unknown_seconds: 85_400,
            generator_run_seconds: 400,
            generator_starts: 2,
            pv_wh: 1234,
            min_soc: None,
            outages: vec![
                Outage {
                    start: "2026-06-01T01:00:00Z".parse().unwrap(),
                    duration_seconds: 60,
                },
                Outage {
                    start: "2026-06-01T05:00:00Z".parse().unwrap(),
                    duration_seconds: 600,
                },
            ],
        };
        let m = energy_metrics(&d, true, None);
        let get = |n: &str| m.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        assert_eq!(m.len(), 14);
        assert_eq!(get("has_solar"), Some(Some(1)));
        assert_eq!(get("seconds_unknown"), Some(Some(85_400)));
        assert_eq!(get("outages"), Some(Some(2)));
        assert_eq!(get("outage_seconds"), Some(Some(660)));
        assert_eq!(get("longest_outage_seconds"), Some(Some(600)));
        assert_eq!(get("min_soc_pct"), Some(None));
        assert_eq!(get("fuel_used_pct"), Some(None));
    }
}
