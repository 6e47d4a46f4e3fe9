//! The energy page: per center, the hours of each day on grid, solar, battery and
//! generator, the generator's run time and fuel, and the centers with solar compared
//! with the others — charts drawn on the server as inline SVG ([`super::charts`]) beside
//! tables of the same figures.
//!
//! Every figure says how old it is. A center's daily document reaches the hub only when
//! the center syncs (and bulk documents wait while it is on the metered modem), so the
//! hub's copy of a day is as of the center's last good sync: a day that ended before that
//! sync is final, a later one is partial "as of" that time, and a center on the modem is
//! marked, since its newest figures may still be held back there.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use markaz_web::i18n::{Digits, Lang};
use minijinja::{Value, context};
use serde::Deserialize;

use super::access::Caller;
use super::charts::{self, Bar, Frame, Series};
use super::i18n::catalogs;
use super::pages::{failed, local, page};
use super::{Q, WebState, now_ms};
use crate::energy::{self, Avg, Comparison, GroupFigures, MetricsDay, MetricsKind};
use crate::storage::StorageError;

const GRID: &str = "#4a6fa5";
const SOLAR: &str = "#d99a00";
const BATTERY: &str = "#2e8b57";
const GENERATOR: &str = "#b23b3b";
const OTHER: &str = "#7b8794";

/// The windows offered, in days.
const WINDOWS: [u32; 4] = [7, 14, 30, 90];

#[derive(Debug, Default, Deserialize)]
pub(super) struct EnergyQuery {
    center: Option<String>,
    days: Option<u32>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// What the hub knows of a center's freshness.
#[derive(Debug, Clone, Default)]
struct Freshness {
    last_ok_ms: Option<i64>,
    on_modem: bool,
}

/// Whether the hub's copy of `day` is final: the day had ended (in `tz`) when the
/// center last synced well.
fn is_final(day: Date, last_ok_ms: Option<i64>, tz: &jiff::tz::TimeZone) -> bool {
    let Some(last) = last_ok_ms else {
        return false;
    };
    let end = day
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp().as_millisecond());
    end.is_some_and(|end| end <= last)
}

fn hours(d: &MetricsDay, k: &str) -> Option<f64> {
    d.get(k).map(|s| s as f64 / 3600.0)
}

/// A date label isolated left to right (a date in Arabic-Indic digits would otherwise be
/// reordered by the bidi algorithm).
fn day_label(d: Date, digits: &dyn Fn(&str) -> String) -> String {
    format!("\u{2066}{}\u{2069}", digits(&d.to_string()))
}

/// One row of the comparison: a figure of both groups ([`Avg`]) with its unit.
fn avg_row(key: &str, unit: &str, solar: &Avg, other: &Avg) -> Value {
    let cell = |a: &Avg| context! { value => a.value, days => a.days };
    context! { key => key, unit => unit, solar => cell(solar), other => cell(other) }
}

/// The comparison table: the group sizes, then one [`avg_row`] per figure.
fn comparison_rows(c: &Comparison) -> Vec<Value> {
    type Pick = fn(&GroupFigures) -> &Avg;
    let figures: [(&str, &str, Pick); 9] = [
        ("energy.grid_hours", "h", |g| &g.grid_hours),
        ("energy.battery_hours", "h", |g| &g.battery_hours),
        ("energy.generator_hours", "h", |g| &g.generator_hours),
        ("energy.generator_starts", "", |g| &g.generator_starts),
        ("energy.outage_hours", "h", |g| &g.outage_hours),
        ("energy.outages", "", |g| &g.outages),
        ("energy.pv_kwh", "kwh", |g| &g.pv_kwh),
        ("energy.min_soc", "pct", |g| &g.min_soc_pct),
        ("energy.fuel_used", "pct", |g| &g.fuel_used_pct),
    ];
    figures
        .iter()
        .map(|(key, unit, pick)| avg_row(key, unit, pick(&c.solar), pick(&c.non_solar)))
        .collect()
}

/// The comparison chart: hours per center-day on each source and cut, both groups.
fn comparison_chart(lang: Lang, c: &Comparison, digits: &dyn Fn(&str) -> String) -> String {
    let t = |k: &str| catalogs().t(lang, k).to_string();
    let series = vec![
        Series {
            label: t("energy.with_solar"),
            color: SOLAR,
        },
        Series {
            label: t("energy.without_solar"),
            color: OTHER,
        },
    ];
    let bar = |key: &str, pick: fn(&GroupFigures) -> &Avg| Bar {
        label: t(key),
        values: vec![pick(&c.solar).value, pick(&c.non_solar).value],
    };
    let bars = vec![
        bar("energy.grid_hours", |g| &g.grid_hours),
        bar("energy.battery_hours", |g| &g.battery_hours),
        bar("energy.generator_hours", |g| &g.generator_hours),
        bar("energy.outage_hours", |g| &g.outage_hours),
    ];
    let title = t("energy.compare_chart");
    charts::grouped(
        Frame {
            id: "chart-compare",
            title: &title,
            unit: &t("energy.unit.h"),
            rtl: lang == Lang::Ar,
            digits,
        },
        &series,
        &bars,
    )
}

/// A center's charts: the day's hours by source (stacked, 24 h wide), and the
/// generator's run time; its fuel when reported.
fn center_charts(
    lang: Lang,
    center: &str,
    days: &[&MetricsDay],
    digits: &dyn Fn(&str) -> String,
) -> (String, String, Option<String>) {
    let t = |k: &str| catalogs().t(lang, k).to_string();
    let rtl = lang == Lang::Ar;
    let h = t("energy.unit.h");
    let sources = vec![
        Series {
            label: t("power.grid"),
            color: GRID,
        },
        Series {
            label: t("power.solar"),
            color: SOLAR,
        },
        Series {
            label: t("power.battery"),
            color: BATTERY,
        },
        Series {
            label: t("power.generator"),
            color: GENERATOR,
        },
    ];
    let bars: Vec<Bar> = days
        .iter()
        .map(|d| Bar {
            label: day_label(d.day, digits),
            values: [
                "seconds_grid",
                "seconds_solar",
                "seconds_battery",
                "seconds_generator",
            ]
            .iter()
            .map(|k| hours(d, k))
            .collect(),
        })
        .collect();
    let id = format!("chart-sources-{center}");
    let title = markaz_web::i18n::fill(&t("energy.sources_chart"), &[("center", center)]);
    let by_source = charts::stacked(
        Frame {
            id: &id,
            title: &title,
            unit: &h,
            rtl,
            digits,
        },
        &sources,
        &bars,
        Some(24.0),
    );
    let run = vec![Series {
        label: t("energy.generator_run"),
        color: GENERATOR,
    }];
    let bars: Vec<Bar> = days
        .iter()
        .map(|d| Bar {
            label: day_label(d.day, digits),
            values: vec![hours(d, "generator_run_seconds")],
        })
        .collect();
    let id = format!("chart-generator-{center}");
    let title = markaz_web::i18n::fill(&t("energy.generator_chart"), &[("center", center)]);
    let generator = charts::grouped(
        Frame {
            id: &id,
            title: &title,
            unit: &h,
            rtl,
            digits,
        },
        &run,
        &bars,
    );
    let fuel = days
        .iter()
        .any(|d| d.get("fuel_used_pct").is_some())
        .then(|| {
            let series = vec![Series {
                label: t("energy.fuel_used"),
                color: OTHER,
            }];
            let bars: Vec<Bar> = days
                .iter()
                .map(|d| Bar {
                    label: day_label(d.day, digits),
                    values: vec![d.get("fuel_used_pct").map(|v| v as f64)],
                })
                .collect();
            let id = format!("chart-fuel-{center}");
            let title = markaz_web::i18n::fill(&t("energy.fuel_chart"), &[("center", center)]);
            charts::grouped(
                Frame {
                    id: &id,
                    title: &title,
                    unit: "%",
                    rtl,
                    digits,
                },
                &series,
                &bars,
            )
        });
    (by_source, generator, fuel)
}

/// `GET /energy?center=&days=`
pub(super) async fn page_energy(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<EnergyQuery>,
) -> Response {
    let window = q
        .days
        .unwrap_or(energy::DEFAULT_DAYS)
        .clamp(1, energy::MAX_DAYS);
    let today = crate::catalog::today(jiff::Timestamp::now());
    let from = energy::window_start(today, Some(window));
    let now = now_ms();
    let loaded = s
        .writer
        .run(move |e| {
            let days = energy::days(e, MetricsKind::Energy, None, from)?;
            let centers = energy::centers(e, MetricsKind::Energy)?;
            let facts = crate::oversight::centers(e, now)?;
            Ok::<_, StorageError>((days, centers, facts))
        })
        .await;
    let (all, centers, facts) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let lang = caller.lang;
    let digit_style = if lang == Lang::En {
        Digits::Western
    } else {
        Digits::ArabicIndic
    };
    let digits = move |v: &str| digit_style.apply(v);
    let fresh = |c: &str| {
        facts
            .iter()
            .find(|f| f.center == c)
            .map(|f| Freshness {
                last_ok_ms: f.last_ok_ms,
                on_modem: f.uplink.as_deref().is_some_and(|u| u.ends_with("modem")),
            })
            .unwrap_or_default()
    };
    let chosen = q
        .center
        .as_deref()
        .filter(|c| centers.iter().any(|x| x == c));
    let tz = s.options.timezone.clone();

    let cmp = energy::compare(&all, from);
    // The comparison is as old as the stalest center in it.
    let cmp_as_of = all
        .iter()
        .filter(|d| d.has_solar().is_some())
        .map(|d| fresh(&d.center).last_ok_ms.unwrap_or(i64::MIN))
        .min()
        .filter(|t| *t != i64::MIN);

    let mut cards = Vec::new();
    for c in centers
        .iter()
        .filter(|c| chosen.is_none_or(|x| x == c.as_str()))
    {
        // Oldest day first: the charts read downwards in time.
        let mut days: Vec<&MetricsDay> = all.iter().filter(|d| &d.center == c).collect();
        days.sort_by_key(|d| d.day);
        if days.is_empty() {
            continue;
        }
        let f = fresh(c);
        let (by_source, generator, fuel) = center_charts(lang, c, &days, &digits);
        let mins = |d: &MetricsDay, k: &str| d.get(k).map(|s| (s + 30) / 60);
        let rows: Vec<Value> = days
            .iter()
            .rev()
            .map(|d| {
                // When the center computed this day's figures (the document says, since
                // it carries `as_of_ms`); older centers' documents: their last good sync.
                let as_of = d.as_of_ms.or(f.last_ok_ms);
                context! {
                    day => d.day.to_string(), grid => mins(d, "seconds_grid"),
                    solar => mins(d, "seconds_solar"), battery => mins(d, "seconds_battery"),
                    generator => mins(d, "seconds_generator"),
                    run => mins(d, "generator_run_seconds"), starts => d.get("generator_starts"),
                    fuel => d.get("fuel_used_pct"), outages => d.get("outages"),
                    outage => mins(d, "outage_seconds"), min_soc => d.get("min_soc_pct"),
                    pv => d.get("pv_wh").map(|w| format!("{}.{:02}", w / 1000, (w % 1000) / 10)),
                    is_final => is_final(d.day, as_of, &tz), as_of => local(&s, as_of),
                }
            })
            .collect();
        cards.push(context! {
            center => c, solar => days.last().and_then(|d| d.has_solar()),
            as_of => local(&s, f.last_ok_ms), on_modem => f.on_modem,
            chart_sources => Value::from_safe_string(by_source),
            chart_generator => Value::from_safe_string(generator),
            chart_fuel => fuel.map(Value::from_safe_string),
            rows => rows,
        });
    }
    let path = match chosen {
        Some(c) => format!("/energy?center={c}&days={window}"),
        None => format!("/energy?days={window}"),
    };
    page(
        &caller,
        &path,
        StatusCode::OK,
        "energy.html",
        context! {
            from => from.to_string(), to => today.to_string(), window => window,
            windows => WINDOWS, centers => centers, chosen => chosen, cards => cards,
            cmp => context! {
                rows => comparison_rows(&cmp),
                solar_centers => cmp.solar.centers, other_centers => cmp.non_solar.centers,
                solar_days => cmp.solar.center_days, other_days => cmp.non_solar.center_days,
                unclassified => cmp.unclassified_days,
                as_of => local(&s, cmp_as_of),
                chart => Value::from_safe_string(comparison_chart(lang, &cmp, &digits)),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn a_day_is_final_once_the_center_synced_after_it_ended() {
        let tz = jiff::tz::TimeZone::get("Asia/Damascus").expect("tz");
        let day = date(2026, 12, 1);
        // Midnight at the end of the day in Damascus (UTC+3) is 21:00 UTC.
        let end: jiff::Timestamp = "2026-12-01T21:00:00Z".parse().expect("ts");
        let ms = end.as_millisecond();
        assert!(is_final(day, Some(ms), &tz));
        assert!(!is_final(day, Some(ms - 1), &tz));
        assert!(!is_final(day, None, &tz));
    }

    #[test]
    fn the_comparison_has_one_row_per_figure_with_both_groups() {
        let day = |c: &str, solar: i64, gen_s: i64| MetricsDay {
            center: c.into(),
            day: date(2026, 12, 1),
            metrics: [("has_solar", solar), ("seconds_generator", gen_s)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            as_of_ms: None,
        };
        let c = energy::compare(
            &[day("midan", 1, 3600), day("qanawat", 0, 4 * 3600)],
            date(2026, 12, 1),
        );
        let rows = comparison_rows(&c);
        assert_eq!(rows.len(), 9);
        let generator = rows
            .iter()
            .find(|r| {
                r.get_attr("key")
                    .ok()
                    .and_then(|k| k.as_str().map(String::from))
                    == Some("energy.generator_hours".into())
            })
            .expect("generator row");
        let v = |side: &str| {
            generator
                .get_attr(side)
                .and_then(|s| s.get_attr("value"))
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        assert_eq!((v("solar"), v("other")), ("1.0".into(), "4.0".into()));
        for lang in Lang::ALL {
            for unit in ["h", "kwh", "pct"] {
                assert!(
                    catalogs()
                        .of(lang)
                        .contains_key(&format!("energy.unit.{unit}"))
                );
            }
            for r in &rows {
                let key = r.get_attr("key").expect("key").to_string();
                assert!(catalogs().of(lang).contains_key(&key), "{key}");
            }
        }
    }
}
