//! Energy summaries and queue statistics written at the centers reach the hub at their
//! next sync; the hub shows them per center and compares the centers with solar against
//! those without (issue 6), in JSON and on the `/energy` and `/stats` pages.

use crate::support;

use markaz_sync::docs::{self, DocId, DocKind};
use serde_json::Value;
use support::{Center, Hub};

fn write_day(
    c: &mut Center,
    kind: DocKind,
    day: jiff::civil::Date,
    metrics: &[(&str, i64)],
) -> anyhow::Result<()> {
    let id = match kind {
        DocKind::Energy => DocId::energy(&c.id, day),
        _ => DocId::stats(&c.id, day),
    };
    let center = c.id.clone();
    c.docs.create(&c.conn, &id, |d| {
        docs::create_metrics(d, kind, &center, day)?;
        for (k, v) in metrics {
            docs::set_metric(d, k, *v)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// 2025-11-29 07:06:40 UTC.
const AS_OF_MS: i64 = 1_764_400_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solar_and_non_solar_centers_are_compared_per_center_day() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let mut midan = Center::new(&hub, "midan")?;
    let mut qanawat = Center::new(&hub, "qanawat")?;
    let today = markaz_hub::catalog::today(jiff::Timestamp::now());
    let yesterday = today.yesterday()?;
    let long_ago = today.checked_sub(jiff::Span::new().days(90))?;

    // midan has solar: little generator, PV, battery hours.
    for (day, gen_s, starts, pv, soc, fuel) in [
        (yesterday, 3600, 1, 12_000, 40, 5),
        (today, 0, 0, 14_000, 60, 0),
    ] {
        write_day(
            &mut midan,
            DocKind::Energy,
            day,
            &[
                // When midan computed the figures: shown with them, not one of them.
                ("as_of_ms", AS_OF_MS),
                ("has_solar", 1),
                ("seconds_grid", 12 * 3600),
                ("seconds_solar", 6 * 3600),
                ("seconds_battery", 5 * 3600),
                ("seconds_generator", gen_s),
                ("generator_starts", starts),
                ("pv_wh", pv),
                ("min_soc_pct", soc),
                ("outages", 2),
                ("outage_seconds", 2 * 3600),
                ("longest_outage_seconds", 3600),
                ("fuel_used_pct", fuel),
            ],
        )?;
    }
    // qanawat runs on grid and generator; an old day outside the window is left out.
    for (day, gen_s, starts) in [
        (yesterday, 5 * 3600, 3),
        (today, 4 * 3600, 2),
        (long_ago, 24 * 3600, 9),
    ] {
        write_day(
            &mut qanawat,
            DocKind::Energy,
            day,
            &[
                ("has_solar", 0),
                ("seconds_grid", 19 * 3600),
                ("seconds_generator", gen_s),
                ("generator_starts", starts),
                ("outages", 3),
                ("outage_seconds", gen_s),
                ("fuel_used_pct", 20),
            ],
        )?;
    }
    write_day(
        &mut midan,
        DocKind::Stats,
        today,
        &[
            ("tickets_issued", 120),
            ("tickets_served", 110),
            ("no_shows", 10),
            ("wait_seconds_avg", 754),
            ("wait_seconds_max", 2400),
            ("service_seconds_avg", 300),
            ("cases_created", 80),
            ("cases_delivered", 64),
        ],
    )?;
    let r = midan.sync().await?;
    assert!(r.pushed >= 3, "{r:?}");
    qanawat.sync().await?;

    let (status, body) = hub.http("GET", "/api/v1/energy/compare", None).await?;
    assert!(status.contains("200"), "{status} {body}");
    let cmp: Value = serde_json::from_str(&body)?;
    let solar = &cmp["solar"];
    let non = &cmp["non_solar"];
    assert_eq!(
        (solar["centers"].as_u64(), solar["center_days"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        (non["centers"].as_u64(), non["center_days"].as_u64()),
        (Some(1), Some(2)),
        "{cmp}"
    );
    assert_eq!(solar["generator_hours"]["value"], 0.5);
    assert_eq!(non["generator_hours"]["value"], 4.5);
    assert_eq!(solar["generator_starts"]["value"], 0.5);
    assert_eq!(non["generator_starts"]["value"], 2.5);
    assert_eq!(solar["pv_kwh"]["value"], 13.0);
    assert_eq!(non["pv_kwh"]["value"], Value::Null);
    assert_eq!(solar["min_soc_pct"]["value"], 50.0);
    assert_eq!(solar["battery_hours"]["value"], 5.0);
    assert_eq!(solar["outage_hours"]["value"], 2.0);
    assert_eq!(non["outage_hours"]["value"], 4.5);
    assert_eq!(solar["fuel_used_pct"]["value"], 2.5);
    assert_eq!(non["fuel_used_pct"]["value"], 20.0);
    // A wider window takes the old day in.
    let (_, body) = hub
        .http("GET", "/api/v1/energy/compare?days=120", None)
        .await?;
    let wide: Value = serde_json::from_str(&body)?;
    assert_eq!(wide["non_solar"]["center_days"], 3);

    // Each day says when its center computed the figures; it is no figure.
    let (_, body) = hub.http("GET", "/api/v1/energy?center=midan", None).await?;
    let days: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(days[0]["as_of_ms"], AS_OF_MS, "{}", days[0]);
    assert!(days[0]["metrics"].get("as_of_ms").is_none(), "{}", days[0]);
    let (_, html) = hub.http("GET", "/energy?lang=en", None).await?;
    assert!(html.contains("Figures as of"));

    // Per center: the days of that center only.
    let (_, body) = hub
        .http("GET", "/api/v1/energy?center=qanawat", None)
        .await?;
    let days: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(days.len(), 2);
    assert!(days.iter().all(|d| d["center"] == "qanawat"));
    assert_eq!(days[0]["day"], today.to_string(), "newest first");

    let (status, html) = hub.http("GET", "/energy?center=midan", None).await?;
    assert!(status.contains("200"));
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""));
    assert!(html.contains("مراكز بطاقة شمسية") && html.contains("مراكز بلا طاقة شمسية"));
    // Charts are inline SVG drawn by the hub, without inline style (the CSP forbids it).
    assert!(html.contains("<svg") && html.contains("id=\"chart-sources-midan\""));
    assert!(!html.contains("style="), "no inline style");
    assert!(!html.contains("<script"), "no script");
    let cards = |html: &str, center: &str| html.matches(&format!("id=\"energy-{center}\"")).count();
    assert_eq!(cards(&html, "midan"), 1);
    assert_eq!(cards(&html, "qanawat"), 0, "only the chosen center");
    // Each center's figures say how old they are.
    assert!(html.contains("الأرقام حتى آخر تزامن ناجح"), "as of");
    let (_, html) = hub.http("GET", "/energy?lang=en", None).await?;
    assert!(html.contains("Centers with solar") && html.contains("Hours on generator"));
    assert!(html.contains("14.00"), "midan's PV of today");
    assert!(html.contains("partial, as of"), "today is not final yet");
    assert!(
        html.contains(">final<"),
        "yesterday ended before the last sync"
    );
    assert_eq!(cards(&html, "qanawat"), 1);
    assert_eq!(cards(&html, "midan"), 1);

    // Queue statistics per center and day.
    let (_, body) = hub.http("GET", "/api/v1/stats?center=midan", None).await?;
    let stats: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0]["metrics"]["tickets_issued"], 120);
    let rows_of = |html: &str, center: &str| {
        html.matches(&format!("<td><bdi dir=\"ltr\">{center}</bdi>"))
            .count()
    };
    let (status, html) = hub.http("GET", "/stats?lang=en", None).await?;
    assert!(status.contains("200"));
    assert!(
        html.contains("Tickets issued") && html.contains("12:34"),
        "754 s = 12:34"
    );
    assert_eq!(rows_of(&html, "midan"), 1);
    Ok(())
}
