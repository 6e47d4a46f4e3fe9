//! The report page still built by hand (queue statistics): Arabic first, English with
//! `?lang=en`, every value escaped with
//! [`esc`]. They are reached through the same access table as every route; the pages
//! built from templates are in `pages`.

use axum::extract::State;
use axum::response::Html;

use super::api::{MetricsQuery, load_days};
use super::{ApiError, Q, WebState};
use crate::energy::MetricsKind;
use markaz_web::i18n::Lang;

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
        ("/centers", lang.pick("المراكز", "Centers")),
        ("/sync-log", lang.pick("سجل التزامن", "Sync log")),
        ("/conflicts", lang.pick("التعارضات", "Conflicts")),
        ("/oversight", lang.pick("المتابعة", "Oversight")),
        ("/energy", lang.pick("الطاقة", "Energy")),
        ("/stats", lang.pick("إحصاءات الدور", "Queue statistics")),
        (
            "/catalog",
            lang.pick("الخدمات والرسوم", "Services and fees"),
        ),
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
        hub = lang.pick("مركز المحافظة", "Governorate hub"),
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
        l.pick("كل المراكز", "All centers")
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

pub(super) async fn page_stats(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::from_code(q.lang.as_deref().unwrap_or_default()).unwrap_or_default();
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
        l.pick("المركز", "Center"),
        l.pick("اليوم", "Day"),
        l.pick("بطاقات صادرة", "Tickets issued"),
        l.pick("بطاقات مخدومة", "Tickets served"),
        l.pick("لم يحضروا", "No-shows"),
        l.pick("متوسط الانتظار (د:ث)", "Average wait (m:s)"),
        l.pick("أطول انتظار", "Longest wait"),
        l.pick("متوسط زمن الخدمة", "Average service time"),
        l.pick("معاملات جديدة", "Cases created"),
        l.pick("معاملات مسلّمة", "Cases delivered"),
        l.pick("الأرقام حتى", "Figures as of"),
    ];
    let path = match chosen {
        Some(c) => format!("/stats?center={}", esc(c)),
        None => "/stats".into(),
    };
    let body = format!(
        "<p>{} {}</p>{}{}",
        l.pick("منذ", "Since"),
        ltr(&from.to_string()),
        center_links(l, "/stats", &centers, chosen),
        table(&head, rows, l.pick("لا توجد إحصاءات.", "No statistics.")),
    );
    Ok(page(
        l,
        &path,
        l.pick("إحصاءات الدور اليومية", "Daily queue statistics"),
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
