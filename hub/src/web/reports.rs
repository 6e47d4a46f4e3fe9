//! The report pages still built by hand (oversight, energy, queue
//! statistics, catalog): Arabic first, English with `?lang=en`, every value escaped with
//! [`esc`]. They are reached through the same access table as every route; the pages
//! built from templates are in `pages`.

use axum::extract::State;
use axum::response::Html;

use super::api::{LangQuery, MetricsQuery, load_catalog, load_days, load_oversight};
use super::{ApiError, Q, WebState};
use crate::catalog::CatalogEntry;
use crate::energy::{self, Avg, Comparison, GroupFigures, MetricsKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ar,
    En,
}

impl Lang {
    fn of(q: Option<&str>) -> Lang {
        if q == Some("en") { Lang::En } else { Lang::Ar }
    }

    fn t(self, ar: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ar => ar,
            Lang::En => en,
        }
    }
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn ltr(s: &str) -> String {
    format!("<bdi dir=\"ltr\">{}</bdi>", esc(s))
}

fn page(lang: Lang, path: &str, title: &str, body: &str) -> Html<String> {
    let (code, dir, other, other_label) = match lang {
        Lang::Ar => ("ar", "rtl", "en", "English"),
        Lang::En => ("en", "ltr", "ar", "العربية"),
    };
    let q = if lang == Lang::En { "?lang=en" } else { "" };
    let nav = [
        ("/centers", lang.t("المراكز", "Centers")),
        ("/sync-log", lang.t("سجل التزامن", "Sync log")),
        ("/conflicts", lang.t("التعارضات", "Conflicts")),
        ("/oversight", lang.t("المتابعة", "Oversight")),
        ("/energy", lang.t("الطاقة", "Energy")),
        ("/stats", lang.t("إحصاءات الدور", "Queue statistics")),
        ("/catalog", lang.t("الخدمات والرسوم", "Services and fees")),
    ]
    .iter()
    .map(|(href, label)| format!("<a href=\"{href}{q}\">{label}</a>"))
    .collect::<Vec<_>>()
    .join(" ");
    Html(format!(
        "<!doctype html><html lang=\"{code}\" dir=\"{dir}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} — {hub}</title><link rel=\"stylesheet\" href=\"/assets/markaz.css\"></head>\
<body><header class=\"topbar\"><strong>{hub}</strong> <nav>{nav}</nav> \
<a lang=\"{other}\" href=\"{path}{sep}lang={other}\">{other_label}</a></header>\
<main><h1>{title}</h1>{body}</main></body></html>",
        hub = lang.t("مركز المحافظة", "Governorate hub"),
        sep = if path.contains('?') { "&" } else { "?" },
    ))
}

fn table(head: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p>{empty}</p>");
    }
    let mut h = String::from("<table><thead><tr>");
    for c in head {
        h.push_str(&format!("<th>{c}</th>"));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            h.push_str(&format!("<td>{c}</td>"));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

pub(super) async fn page_oversight(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let rows = load_oversight(&s)
        .await?
        .into_iter()
        .map(|r| {
            vec![
                ltr(&r.center),
                esc(&r.service),
                ltr(&r.received.to_string()),
                ltr(&r.finished.to_string()),
                ltr(&r.pending_within_target.to_string()),
                ltr(&r.pending_beyond_target.to_string()),
                r.avg_processing_minutes
                    .map_or("—".into(), |m| ltr(&format!("{m} min"))),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("الخدمة", "Service"),
        l.t("المستلمة", "Received"),
        l.t("المنجزة", "Finished"),
        l.t("قيد المعالجة ضمن المدة", "Pending within target"),
        l.t("قيد المعالجة بعد المدة", "Pending beyond target"),
        l.t("متوسط زمن المعالجة", "Average processing time"),
    ];
    let body = table(&head, rows, l.t("لا توجد معاملات.", "No cases."));
    Ok(page(
        l,
        "/oversight",
        l.t(
            "المتابعة حسب المركز والخدمة",
            "Oversight by center and service",
        ),
        &body,
    ))
}

/// `seconds` as hours with one decimal.
fn hours(v: Option<i64>) -> String {
    v.map_or("—".into(), |s| {
        ltr(&format!("{}.{} h", s / 3600, (s % 3600) / 360))
    })
}

/// When a center computed a day's figures, in the governorate's time zone.
fn as_of(ms: Option<i64>, tz: &jiff::tz::TimeZone) -> String {
    match ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()) {
        Some(t) => ltr(&t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()),
        None => "—".into(),
    }
}

fn num(v: Option<i64>) -> String {
    v.map_or("—".into(), |n| ltr(&n.to_string()))
}

/// The center chooser of the metrics pages: one link per center, the chosen one marked.
fn center_links(l: Lang, path: &str, centers: &[String], chosen: Option<&str>) -> String {
    let lq = if l == Lang::En { "&amp;lang=en" } else { "" };
    let all = if l == Lang::En { "?lang=en" } else { "" };
    let mut links = vec![format!(
        "<a href=\"{path}{all}\"{}>{}</a>",
        if chosen.is_none() {
            " aria-current=\"page\""
        } else {
            ""
        },
        l.t("كل المراكز", "All centers")
    )];
    for c in centers {
        links.push(format!(
            "<a href=\"{path}?center={0}{lq}\"{1}>{2}</a>",
            esc(c),
            if chosen == Some(c.as_str()) {
                " aria-current=\"page\""
            } else {
                ""
            },
            ltr(c)
        ));
    }
    format!("<nav class=\"centers\">{}</nav>", links.join(" "))
}

fn avg_cell(a: &Avg, unit: &str) -> String {
    match a.value {
        Some(v) => ltr(&format!("{v}{unit} ({} d)", a.days)),
        None => "—".into(),
    }
}

fn comparison_table(l: Lang, c: &Comparison) -> String {
    type Figure = fn(&GroupFigures) -> String;
    let rows: Vec<(&str, Figure)> = vec![
        (
            l.t("عدد المراكز", "Centers"),
            |g: &GroupFigures| ltr(&g.centers.to_string()),
        ),
        (
            l.t("أيام-مركز", "Center-days"),
            |g: &GroupFigures| ltr(&g.center_days.to_string()),
        ),
        (
            l.t("ساعات المولدة", "Hours on generator"),
            |g: &GroupFigures| avg_cell(&g.generator_hours, " h"),
        ),
        (
            l.t("مرات تشغيل المولدة", "Generator starts"),
            |g: &GroupFigures| avg_cell(&g.generator_starts, ""),
        ),
        (
            l.t("ساعات الانقطاع", "Outage hours"),
            |g: &GroupFigures| avg_cell(&g.outage_hours, " h"),
        ),
        (
            l.t("عدد الانقطاعات", "Outages"),
            |g: &GroupFigures| avg_cell(&g.outages, ""),
        ),
        (
            l.t("ساعات على البطارية", "Hours on battery"),
            |g: &GroupFigures| avg_cell(&g.battery_hours, " h"),
        ),
        (
            l.t("ساعات على الشبكة", "Hours on grid"),
            |g: &GroupFigures| avg_cell(&g.grid_hours, " h"),
        ),
        (
            l.t("طاقة شمسية", "PV energy"),
            |g: &GroupFigures| avg_cell(&g.pv_kwh, " kWh"),
        ),
        (
            l.t("أدنى شحن للبطارية", "Minimum state of charge"),
            |g: &GroupFigures| avg_cell(&g.min_soc_pct, "%"),
        ),
        (
            l.t("الوقود المستهلك", "Fuel used"),
            |g: &GroupFigures| avg_cell(&g.fuel_used_pct, "%"),
        ),
    ];
    let body = rows
        .iter()
        .map(|(label, f)| vec![label.to_string(), f(&c.solar), f(&c.non_solar)])
        .collect();
    let head = [
        l.t("المتوسط لكل مركز في اليوم", "Average per center-day"),
        l.t("مراكز بطاقة شمسية", "Centers with solar"),
        l.t("مراكز بلا طاقة شمسية", "Centers without solar"),
    ];
    table(&head, body, "")
}

pub(super) async fn page_energy(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let (from, all, centers) = load_days(&s, MetricsKind::Energy, None, q.days).await?;
    let cmp = energy::compare(&all, from);
    let chosen = q
        .center
        .as_deref()
        .filter(|c| centers.iter().any(|x| x == c));
    let rows = all
        .iter()
        .filter(|d| chosen.is_none_or(|c| d.center == c))
        .map(|d| {
            vec![
                ltr(&d.center),
                ltr(&d.day.to_string()),
                match d.has_solar() {
                    Some(true) => l.t("نعم", "yes").into(),
                    Some(false) => l.t("لا", "no").into(),
                    None => "—".into(),
                },
                hours(d.get("seconds_grid")),
                hours(d.get("seconds_solar")),
                hours(d.get("seconds_battery")),
                hours(d.get("seconds_generator")),
                num(d.get("generator_starts")),
                d.get("pv_wh").map_or("—".into(), |w| {
                    ltr(&format!("{}.{:02} kWh", w / 1000, (w % 1000) / 10))
                }),
                d.get("min_soc_pct")
                    .map_or("—".into(), |v| ltr(&format!("{v}%"))),
                num(d.get("outages")),
                hours(d.get("outage_seconds")),
                hours(d.get("longest_outage_seconds")),
                d.get("fuel_used_pct")
                    .map_or("—".into(), |v| ltr(&format!("{v}%"))),
                as_of(d.as_of_ms, &s.options.timezone),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("اليوم", "Day"),
        l.t("طاقة شمسية", "Solar"),
        l.t("الشبكة", "Grid"),
        l.t("الشمس", "Solar"),
        l.t("البطارية", "Battery"),
        l.t("المولدة", "Generator"),
        l.t("مرات التشغيل", "Starts"),
        l.t("إنتاج الألواح", "PV"),
        l.t("أدنى شحن", "Min SoC"),
        l.t("الانقطاعات", "Outages"),
        l.t("مدة الانقطاع", "Outage time"),
        l.t("أطول انقطاع", "Longest outage"),
        l.t("الوقود", "Fuel used"),
        l.t("الأرقام حتى", "Figures as of"),
    ];
    let path = match chosen {
        Some(c) => format!("/energy?center={}", esc(c)),
        None => "/energy".into(),
    };
    let body = format!(
        "<p>{} {}</p><h2>{}</h2>{}<h2>{}</h2>{}{}",
        l.t("منذ", "Since"),
        ltr(&from.to_string()),
        l.t(
            "مقارنة: بطاقة شمسية وبدونها",
            "Comparison: with and without solar"
        ),
        comparison_table(l, &cmp),
        l.t("الملخصات اليومية", "Daily summaries"),
        center_links(l, "/energy", &centers, chosen),
        table(
            &head,
            rows,
            l.t("لا توجد ملخصات طاقة.", "No energy summaries.")
        ),
    );
    Ok(page(
        l,
        &path,
        l.t("الطاقة في المراكز", "Energy at the centers"),
        &body,
    ))
}

pub(super) async fn page_stats(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let (from, all, centers) = load_days(&s, MetricsKind::Stats, None, q.days).await?;
    let chosen = q
        .center
        .as_deref()
        .filter(|c| centers.iter().any(|x| x == c));
    let mins =
        |v: Option<i64>| v.map_or("—".into(), |s| ltr(&format!("{}:{:02}", s / 60, s % 60)));
    let rows = all
        .iter()
        .filter(|d| chosen.is_none_or(|c| d.center == c))
        .map(|d| {
            vec![
                ltr(&d.center),
                ltr(&d.day.to_string()),
                num(d.get("tickets_issued")),
                num(d.get("tickets_served")),
                num(d.get("no_shows")),
                mins(d.get("wait_seconds_avg")),
                mins(d.get("wait_seconds_max")),
                mins(d.get("service_seconds_avg")),
                num(d.get("cases_created")),
                num(d.get("cases_delivered")),
                as_of(d.as_of_ms, &s.options.timezone),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("اليوم", "Day"),
        l.t("بطاقات صادرة", "Tickets issued"),
        l.t("بطاقات مخدومة", "Tickets served"),
        l.t("لم يحضروا", "No-shows"),
        l.t("متوسط الانتظار (د:ث)", "Average wait (m:s)"),
        l.t("أطول انتظار", "Longest wait"),
        l.t("متوسط زمن الخدمة", "Average service time"),
        l.t("معاملات جديدة", "Cases created"),
        l.t("معاملات مسلّمة", "Cases delivered"),
        l.t("الأرقام حتى", "Figures as of"),
    ];
    let path = match chosen {
        Some(c) => format!("/stats?center={}", esc(c)),
        None => "/stats".into(),
    };
    let body = format!(
        "<p>{} {}</p>{}{}",
        l.t("منذ", "Since"),
        ltr(&from.to_string()),
        center_links(l, "/stats", &centers, chosen),
        table(&head, rows, l.t("لا توجد إحصاءات.", "No statistics.")),
    );
    Ok(page(
        l,
        &path,
        l.t("إحصاءات الدور اليومية", "Daily queue statistics"),
        &body,
    ))
}

fn syp(m: markaz_sync::model::Money, l: Lang) -> String {
    ltr(&format!("{m} {}", l.t("ل.س", "SYP")))
}

pub(super) async fn page_catalog(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let cat = load_catalog(&s).await?;
    let name = |e: &CatalogEntry| {
        esc(if l == Lang::En {
            &e.service.name_en
        } else {
            &e.service.name_ar
        })
    };
    let services = cat
        .services
        .iter()
        .map(|e| {
            let sv = &e.service;
            let fields = sv
                .fields
                .iter()
                .map(|f| {
                    let label = if l == Lang::En {
                        &f.label_en
                    } else {
                        &f.label_ar
                    };
                    if f.required {
                        format!("{}*", esc(label))
                    } else {
                        esc(label)
                    }
                })
                .collect::<Vec<_>>()
                .join(l.t("، ", ", "));
            vec![
                ltr(&sv.code),
                name(e),
                esc(if l == Lang::En {
                    sv.group.name_en()
                } else {
                    sv.group.name_ar()
                }),
                esc(if l == Lang::En {
                    sv.authority.name_en()
                } else {
                    sv.authority.name_ar()
                }),
                ltr(&format!("{} h", sv.target_hours)),
                if fields.is_empty() {
                    "—".into()
                } else {
                    fields
                },
                match &e.fee_today {
                    Some(f) => format!(
                        "{} ({} + {})",
                        syp(f.total, l),
                        syp(f.authority, l),
                        syp(f.surcharge, l)
                    ),
                    None => l.t("غير محددة", "not set").into(),
                },
            ]
        })
        .collect();
    let head = [
        l.t("الرمز", "Code"),
        l.t("الخدمة", "Service"),
        l.t("المجموعة", "Group"),
        l.t("الجهة", "Authority"),
        l.t("المدة المستهدفة", "Target time"),
        l.t("الحقول (* مطلوب)", "Fields (* required)"),
        l.t(
            "الرسم اليوم (الجهة + المركز)",
            "Fee today (authority + center)",
        ),
    ];
    let mut history = Vec::new();
    for e in &cat.services {
        let parts = [
            (l.t("رسم الجهة", "Authority fee"), &e.fee_history.authority),
            (
                l.t("بدل المركز", "Center surcharge"),
                &e.fee_history.surcharge,
            ),
        ];
        for (part, list) in parts {
            for (i, c) in list.iter().enumerate() {
                let next = list.get(i + 1).map(|n| n.effective_from);
                let state = if c.effective_from > cat.today {
                    l.t("قادم", "upcoming")
                } else if next.is_some_and(|n| n <= cat.today) {
                    l.t("سابق", "past")
                } else {
                    l.t("نافذ", "in effect")
                };
                history.push(vec![
                    name(e),
                    part.to_string(),
                    ltr(&c.effective_from.to_string()),
                    syp(c.amount, l),
                    esc(&c.decision),
                    state.to_string(),
                ]);
            }
        }
    }
    let hhead = [
        l.t("الخدمة", "Service"),
        l.t("البند", "Part"),
        l.t("نافذ من", "Effective from"),
        l.t("المبلغ", "Amount"),
        l.t("القرار", "Decision"),
        l.t("الحالة", "State"),
    ];
    let body = format!(
        "<p>{} {}</p>{}<h2>{}</h2>{}",
        l.t("اليوم:", "Today:"),
        ltr(&cat.today.to_string()),
        table(&head, services, l.t("لا توجد خدمات.", "No services.")),
        l.t("سجل الرسوم", "Fee history"),
        table(&hhead, history, l.t("لا توجد رسوم.", "No fees.")),
    );
    Ok(page(
        l,
        "/catalog",
        l.t("الخدمات والرسوم", "Services and fees"),
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
