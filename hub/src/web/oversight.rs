//! The oversight page and its CSV export: per center, per service, per day or over a
//! date range, the cases opened, those within and beyond the service's target time, those
//! still open, and the average processing time (`crate::oversight::tally_by`, read
//! through the store, so either engine).
//!
//! Days are the governorate's (`hub.timezone`). The page opens on the last 30 days; the
//! CSV (`/oversight.csv`) takes the same query and gives the same rows: UTF-8 with a
//! byte-order mark (so a spreadsheet reads the Arabic names as Arabic), headers and
//! service names in the operator's language, a file name that says the range.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use markaz_web::i18n::Lang;
use minijinja::{Value, context};

use super::access::Caller;
use super::api::{OversightParams, load_catalog, load_oversight};
use super::i18n::catalogs;
use super::pages::{failed, page};
use super::{ApiError, Q, WebState};
use crate::catalog::CatalogPage;
use crate::oversight::{OversightQuery, OversightRow};

/// Days the page shows when no range is asked for.
const DEFAULT_DAYS: u32 = 30;

/// The query of the page: the asked one, or the last [`DEFAULT_DAYS`] days.
fn with_defaults(mut q: OversightQuery, today: Date) -> OversightQuery {
    if q.from.is_none() && q.to.is_none() {
        q.from = Some(crate::energy::window_start(today, Some(DEFAULT_DAYS)));
        q.to = Some(today);
    }
    q
}

/// A service's name in the operator's language (its code when the catalog lacks it).
fn service_name(cat: &CatalogPage, code: &str, lang: Lang) -> String {
    cat.services
        .iter()
        .find(|e| e.service.code == code)
        .map(|e| match lang {
            Lang::En => e.service.name_en.clone(),
            Lang::Ar => e.service.name_ar.clone(),
        })
        .unwrap_or_else(|| code.to_string())
}

/// The totals of a table: sums, and the average processing time weighted by the
/// finished cases each row averages.
fn totals(rows: &[OversightRow]) -> OversightRow {
    let mut t = OversightRow::default();
    let (mut minutes, mut n) = (0i64, 0i64);
    for r in rows {
        t.received += r.received;
        t.finished += r.finished;
        t.within_target += r.within_target;
        t.beyond_target += r.beyond_target;
        t.pending_within_target += r.pending_within_target;
        t.pending_beyond_target += r.pending_beyond_target;
        if let Some(m) = r.avg_processing_minutes {
            minutes += m * i64::from(r.finished);
            n += i64::from(r.finished);
        }
    }
    t.avg_processing_minutes = (n > 0).then(|| minutes / n);
    t
}

async fn load(
    s: &WebState,
    params: &OversightParams,
) -> Result<(OversightQuery, Vec<OversightRow>, CatalogPage), ApiError> {
    let cat = load_catalog(s).await?;
    let q = with_defaults(params.query()?, cat.today);
    let rows = load_oversight(s, q.clone()).await?;
    Ok((q, rows, cat))
}

/// The query string of a query (for the CSV link).
fn query_string(q: &OversightQuery) -> String {
    let mut parts = Vec::new();
    if let Some(f) = q.from {
        parts.push(format!("from={f}"));
    }
    if let Some(t) = q.to {
        parts.push(format!("to={t}"));
    }
    if let Some(c) = &q.center {
        parts.push(format!("center={}", markaz_web::http::urlencode(c)));
    }
    if let Some(sv) = &q.service {
        parts.push(format!("service={}", markaz_web::http::urlencode(sv)));
    }
    if q.per_day {
        parts.push("by=day".into());
    }
    parts.join("&")
}

/// `GET /oversight?from=&to=&center=&service=&by=day`
pub(super) async fn page_oversight(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(params): Q<OversightParams>,
) -> Response {
    let (q, rows, cat) = match load(&s, &params).await {
        Ok(v) => v,
        Err(ApiError::Query(msg)) => {
            tracing::info!(%msg, "oversight query refused");
            let ctx = context! {
                error => catalogs().t(caller.lang, "oversight.bad_query").to_string(),
                rows => Vec::<Value>::new(), services => Vec::<Value>::new(),
                centers => Vec::<String>::new(), q => context! {}, csv => "",
            };
            return page(
                &caller,
                "/oversight",
                StatusCode::BAD_REQUEST,
                "oversight.html",
                ctx,
            );
        }
        Err(e) => return failed(&caller, e),
    };
    let centers = {
        let now = super::now_ms();
        match s
            .writer
            .run(move |e| crate::oversight::centers(e, now))
            .await
        {
            Ok(Ok(v)) => v.into_iter().map(|c| c.center).collect::<Vec<_>>(),
            Ok(Err(e)) => return failed(&caller, e.into()),
            Err(e) => return failed(&caller, e.into()),
        }
    };
    let shown: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                day => r.day.map(|d| d.to_string()), center => r.center, service => r.service,
                name => service_name(&cat, &r.service, caller.lang), opened => r.received,
                finished => r.finished, within => r.within_target, beyond => r.beyond_target,
                open => r.pending_within_target + r.pending_beyond_target,
                open_late => r.pending_beyond_target, avg => r.avg_processing_minutes,
            }
        })
        .collect();
    let t = totals(&rows);
    let services: Vec<Value> = cat
        .services
        .iter()
        .map(|e| context! { code => e.service.code, name => service_name(&cat, &e.service.code, caller.lang) })
        .collect();
    let qs = query_string(&q);
    page(
        &caller,
        &format!("/oversight?{qs}"),
        StatusCode::OK,
        "oversight.html",
        context! {
            rows => shown, services => services, centers => centers,
            total => context! { opened => t.received, finished => t.finished,
                within => t.within_target, beyond => t.beyond_target,
                open => t.pending_within_target + t.pending_beyond_target,
                open_late => t.pending_beyond_target, avg => t.avg_processing_minutes },
            q => context! { from => q.from.map(|d| d.to_string()), to => q.to.map(|d| d.to_string()),
                center => q.center, service => q.service, per_day => q.per_day },
            csv => format!("/oversight.csv?{qs}"),
        },
    )
}

/// One CSV field: quoted when it holds a comma, a quote or a line break; a text that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) starts with `'`.
pub(super) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV of `rows`: a byte-order mark, a header line in `lang`, one line per row
/// (`from`, `to` are the row's day, or the range), CRLF line ends (RFC 4180).
pub(super) fn csv(
    rows: &[OversightRow],
    q: &OversightQuery,
    cat: &CatalogPage,
    lang: Lang,
) -> String {
    let c = catalogs();
    let header = [
        "oversight.from",
        "oversight.to",
        "oversight.center",
        "oversight.service_code",
        "oversight.service",
        "oversight.opened",
        "oversight.finished",
        "oversight.within",
        "oversight.beyond",
        "oversight.open",
        "oversight.open_late",
        "oversight.avg_minutes",
    ]
    .map(|k| csv_field(c.t(lang, k)))
    .join(",");
    let mut out = String::from("\u{feff}");
    out.push_str(&header);
    out.push_str("\r\n");
    let day = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
    for r in rows {
        let (from, to) = match r.day {
            Some(d) => (d.to_string(), d.to_string()),
            None => (day(q.from), day(q.to)),
        };
        let line = [
            csv_field(&from),
            csv_field(&to),
            csv_field(&r.center),
            csv_field(&r.service),
            csv_field(&service_name(cat, &r.service, lang)),
            r.received.to_string(),
            r.finished.to_string(),
            r.within_target.to_string(),
            r.beyond_target.to_string(),
            (r.pending_within_target + r.pending_beyond_target).to_string(),
            r.pending_beyond_target.to_string(),
            r.avg_processing_minutes
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// `GET /oversight.csv?…`: the page's table as a file.
pub(super) async fn export_csv(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(params): Q<OversightParams>,
) -> Result<Response, ApiError> {
    let (q, rows, cat) = load(&s, &params).await?;
    let body = csv(&rows, &q, &cat, caller.lang);
    let name = format!(
        "oversight_{}_{}.csv",
        q.from
            .map(|d| d.to_string())
            .unwrap_or_else(|| "start".into()),
        q.to.map(|d| d.to_string())
            .unwrap_or_else(|| "today".into()),
    );
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("بيان ولادة"), "بيان ولادة");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-2,3"), "\"'-2,3\"");
    }

    #[test]
    fn totals_weigh_the_average_by_finished_cases() {
        let row = |finished, avg| OversightRow {
            received: finished + 1,
            finished,
            avg_processing_minutes: avg,
            ..OversightRow::default()
        };
        let t = totals(&[row(1, Some(10)), row(3, Some(30)), row(0, None)]);
        assert_eq!((t.received, t.finished), (7, 4));
        assert_eq!(t.avg_processing_minutes, Some(25));
        assert_eq!(totals(&[]).avg_processing_minutes, None);
    }

    #[test]
    fn the_page_opens_on_the_last_thirty_days() {
        let today = jiff::civil::date(2026, 12, 3);
        let q = with_defaults(OversightQuery::default(), today);
        assert_eq!(q.from, Some(jiff::civil::date(2026, 11, 4)));
        assert_eq!(q.to, Some(today));
        let asked = OversightQuery {
            from: Some(today),
            ..OversightQuery::default()
        };
        assert_eq!(with_defaults(asked.clone(), today), asked);
        assert_eq!(query_string(&asked), "from=2026-12-03");
    }
}
