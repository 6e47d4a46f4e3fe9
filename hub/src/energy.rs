//! The centers' daily energy summaries and queue statistics at the hub, and the
//! comparison the governorate asked for: centers with solar against centers without.
//!
//! Each center writes one `energy:<center>:<day>` and one `stats:<center>:<day>` metrics
//! document per day (integer metrics, names fixed by the node; see [`ENERGY_METRICS`] and
//! [`STATS_METRICS`]); they reach the hub at the center's next sync. Days are selected by
//! the document id (center and date) before any document is read.
//!
//! [`compare`] averages per center-day: a day counts in the solar group when its
//! `has_solar` is 1, in the other when 0, and in neither when it lacks the metric. Each
//! average is over the days that report that metric (so a center without a fuel sensor
//! does not pull the fuel average to zero); the number of those days is given with it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use markaz_sync::docs::{self, DocId};
use serde::Serialize;

use crate::storage::{HubEngine, StorageError};

/// The energy metrics a node writes (all optional except `has_solar`).
pub const ENERGY_METRICS: [&str; 14] = [
    "has_solar",
    "seconds_grid",
    "seconds_solar",
    "seconds_battery",
    "seconds_generator",
    "seconds_unknown",
    "generator_run_seconds",
    "generator_starts",
    "pv_wh",
    "min_soc_pct",
    "outages",
    "outage_seconds",
    "longest_outage_seconds",
    "fuel_used_pct",
];

/// The queue statistics a node writes per day.
pub const STATS_METRICS: [&str; 8] = [
    "tickets_issued",
    "tickets_served",
    "no_shows",
    "wait_seconds_avg",
    "wait_seconds_max",
    "service_seconds_avg",
    "cases_created",
    "cases_delivered",
];

/// The metric with the time the center computed a document's figures (not a figure).
pub const AS_OF_MS: &str = "as_of_ms";

/// Days shown by default (and the most a request may ask for).
pub const DEFAULT_DAYS: u32 = 30;
pub const MAX_DAYS: u32 = 366;

/// One center-day of metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsDay {
    pub center: String,
    pub day: Date,
    pub metrics: BTreeMap<String, i64>,
    /// When the center computed these figures (unix ms, the document's `as_of_ms`;
    /// `None` from a node that did not say): today's figures grow until the day ends.
    pub as_of_ms: Option<i64>,
}

impl MetricsDay {
    pub fn get(&self, name: &str) -> Option<i64> {
        self.metrics.get(name).copied()
    }

    /// `Some(true)` for a day with solar, `Some(false)` without, `None` if not reported.
    pub fn has_solar(&self) -> Option<bool> {
        match self.get("has_solar") {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        }
    }
}

/// Which metrics documents to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsKind {
    Energy,
    Stats,
}

impl MetricsKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricsKind::Energy => "energy",
            MetricsKind::Stats => "stats",
        }
    }
}

/// `(center, day)` of a metrics document id `kind:<center>:<day>`.
fn id_parts(id: &DocId) -> Option<(&str, Date)> {
    let mut it = id.as_str().splitn(3, ':');
    let _kind = it.next()?;
    let center = it.next()?;
    let day = it.next()?.parse().ok()?;
    Some((center, day))
}

/// The metrics days of `kind` from `from` on (inclusive), optionally of one center,
/// newest first then by center. Unreadable documents are skipped and logged.
pub fn days(
    e: &mut dyn HubEngine,
    kind: MetricsKind,
    center: Option<&str>,
    from: Date,
) -> Result<Vec<MetricsDay>, StorageError> {
    let mut out = Vec::new();
    for id in e.doc_ids(kind.as_str())? {
        let Some((c, day)) = id_parts(&id) else {
            continue;
        };
        if day < from || center.is_some_and(|want| want != c) {
            continue;
        }
        let r = e.read_doc(&id, &mut |d| {
            let mut m = docs::read_metrics(d)?;
            let as_of_ms = m.metrics.remove(AS_OF_MS);
            out.push(MetricsDay {
                center: m.center.to_string(),
                day,
                metrics: m.metrics,
                as_of_ms,
            });
            Ok(serde_json::Value::Null)
        });
        if let Err(err) = r {
            tracing::warn!(doc = %id, %err, "unreadable metrics document");
        }
    }
    out.sort_by(|a, b| b.day.cmp(&a.day).then(a.center.cmp(&b.center)));
    Ok(out)
}

/// Every center that sent a metrics document of `kind` (for the center chooser).
pub fn centers(e: &mut dyn HubEngine, kind: MetricsKind) -> Result<Vec<String>, StorageError> {
    let set: BTreeSet<String> = e
        .doc_ids(kind.as_str())?
        .iter()
        .filter_map(|id| id_parts(id).map(|(c, _)| c.to_string()))
        .collect();
    Ok(set.into_iter().collect())
}

/// An average over the center-days that report a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Avg {
    /// The average, rounded to two decimals; `None` when no day reports it.
    pub value: Option<f64>,
    /// How many center-days it is over.
    pub days: u32,
}

fn avg(days: &[&MetricsDay], name: &str, scale: f64) -> Avg {
    let vals: Vec<i64> = days.iter().filter_map(|d| d.get(name)).collect();
    let n = vals.len();
    let value = (n > 0).then(|| {
        // i64 → f64 is exact for any plausible day total; the mean is a figure for
        // people to read, not an amount anything is computed from.
        let sum: i128 = vals.iter().map(|v| i128::from(*v)).sum();
        let mean = sum as f64 / n as f64 / scale;
        (mean * 100.0).round() / 100.0
    });
    Avg {
        value,
        days: u32::try_from(n).unwrap_or(u32::MAX),
    }
}

/// Averages per center-day of one group of centers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupFigures {
    /// Distinct centers in the group.
    pub centers: u32,
    /// Center-days in the group.
    pub center_days: u32,
    pub generator_hours: Avg,
    pub generator_starts: Avg,
    pub outage_hours: Avg,
    pub outages: Avg,
    pub battery_hours: Avg,
    pub grid_hours: Avg,
    pub pv_kwh: Avg,
    pub min_soc_pct: Avg,
    pub fuel_used_pct: Avg,
}

/// Solar against non-solar, over the same days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub from: Date,
    pub solar: GroupFigures,
    pub non_solar: GroupFigures,
    /// Center-days that did not say whether they have solar.
    pub unclassified_days: u32,
}

fn figures(days: &[&MetricsDay]) -> GroupFigures {
    let centers: BTreeSet<&str> = days.iter().map(|d| d.center.as_str()).collect();
    GroupFigures {
        centers: u32::try_from(centers.len()).unwrap_or(u32::MAX),
        center_days: u32::try_from(days.len()).unwrap_or(u32::MAX),
        generator_hours: avg(days, "seconds_generator", 3600.0),
        generator_starts: avg(days, "generator_starts", 1.0),
        outage_hours: avg(days, "outage_seconds", 3600.0),
        outages: avg(days, "outages", 1.0),
        battery_hours: avg(days, "seconds_battery", 3600.0),
        grid_hours: avg(days, "seconds_grid", 3600.0),
        pv_kwh: avg(days, "pv_wh", 1000.0),
        min_soc_pct: avg(days, "min_soc_pct", 1.0),
        fuel_used_pct: avg(days, "fuel_used_pct", 1.0),
    }
}

/// Compare the center-days with solar against those without (pure; see the module doc).
pub fn compare(days: &[MetricsDay], from: Date) -> Comparison {
    let solar: Vec<&MetricsDay> = days
        .iter()
        .filter(|d| d.has_solar() == Some(true))
        .collect();
    let non: Vec<&MetricsDay> = days
        .iter()
        .filter(|d| d.has_solar() == Some(false))
        .collect();
    let unclassified = days.iter().filter(|d| d.has_solar().is_none()).count();
    Comparison {
        from,
        solar: figures(&solar),
        non_solar: figures(&non),
        unclassified_days: u32::try_from(unclassified).unwrap_or(u32::MAX),
    }
}

/// The first day of a window of `days` days ending `today` (clamped to 1..=366).
pub fn window_start(today: Date, days: Option<u32>) -> Date {
    let n = days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS);
    today
        .checked_sub(jiff::Span::new().days(i64::from(n - 1)))
        .unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn day(center: &str, d: i8, m: &[(&str, i64)]) -> MetricsDay {
        MetricsDay {
            center: center.into(),
            day: date(2026, 11, d),
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            as_of_ms: None,
        }
    }

    #[test]
    fn compares_solar_with_non_solar_per_center_day() {
        let days = vec![
            day(
                "midan",
                1,
                &[
                    ("has_solar", 1),
                    ("seconds_generator", 3600),
                    ("generator_starts", 1),
                    ("pv_wh", 12_000),
                    ("min_soc_pct", 40),
                    ("outage_seconds", 7200),
                    ("outages", 2),
                    ("seconds_battery", 10_800),
                ],
            ),
            day(
                "midan",
                2,
                &[
                    ("has_solar", 1),
                    ("seconds_generator", 0),
                    ("generator_starts", 0),
                    ("pv_wh", 14_000),
                    ("min_soc_pct", 60),
                    ("outage_seconds", 3600),
                    ("outages", 1),
                    ("seconds_battery", 7200),
                ],
            ),
            day(
                "qanawat",
                1,
                &[
                    ("has_solar", 0),
                    ("seconds_generator", 5 * 3600),
                    ("generator_starts", 3),
                    ("outage_seconds", 5 * 3600),
                    ("outages", 3),
                    ("fuel_used_pct", 30),
                ],
            ),
            day(
                "qanawat",
                2,
                &[
                    ("has_solar", 0),
                    ("seconds_generator", 4 * 3600),
                    ("generator_starts", 2),
                    ("outage_seconds", 4 * 3600),
                    ("outages", 2),
                ],
            ),
            day("mezzeh", 2, &[("seconds_generator", 99_999)]),
        ];
        let c = compare(&days, date(2026, 11, 1));
        assert_eq!((c.solar.centers, c.solar.center_days), (1, 2));
        assert_eq!((c.non_solar.centers, c.non_solar.center_days), (1, 2));
        assert_eq!(c.unclassified_days, 1);
        assert_eq!(c.solar.generator_hours.value, Some(0.5));
        assert_eq!(c.non_solar.generator_hours.value, Some(4.5));
        assert_eq!(c.non_solar.generator_starts.value, Some(2.5));
        assert_eq!(c.solar.pv_kwh.value, Some(13.0));
        assert_eq!(c.solar.min_soc_pct.value, Some(50.0));
        assert_eq!(c.solar.battery_hours.value, Some(2.5));
        assert_eq!(c.solar.outage_hours.value, Some(1.5));
        assert_eq!(
            c.non_solar.pv_kwh,
            Avg {
                value: None,
                days: 0
            }
        );
        // Fuel is averaged over the one day that reports it, not over both.
        assert_eq!(
            c.non_solar.fuel_used_pct,
            Avg {
                value: Some(30.0),
                days: 1
            }
        );
    }

    #[test]
    fn averages_round_to_two_decimals_and_window_is_clamped() {
        let days = vec![
            day("a", 1, &[("has_solar", 0), ("seconds_generator", 1000)]),
            day("a", 2, &[("has_solar", 0), ("seconds_generator", 0)]),
            day("a", 3, &[("has_solar", 0), ("seconds_generator", 0)]),
        ];
        let c = compare(&days, date(2026, 11, 1));
        assert_eq!(c.non_solar.generator_hours.value, Some(0.09));
        assert_eq!(window_start(date(2026, 11, 30), None), date(2026, 11, 1));
        assert_eq!(
            window_start(date(2026, 11, 30), Some(1)),
            date(2026, 11, 30)
        );
        assert_eq!(
            window_start(date(2026, 11, 30), Some(0)),
            date(2026, 11, 30)
        );
        assert_eq!(
            window_start(date(2026, 11, 30), Some(100_000)),
            date(2025, 11, 30)
        );
    }
}
