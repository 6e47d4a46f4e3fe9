//! The supervisor's live board and figures (issue #15.10). The board — who serves at
//! which counter, the longest waits, the tickets waiting beyond their group's target — is
//! on `/supervisor` and on its own at `/supervisor/board`, which `live.js` fetches again
//! on every queue event (and every 20 s, as waits grow by themselves). The figures of a
//! day (`?day=`) or a range (`?from=&to=`), per day, group, service and clerk, are at
//! `/supervisor/figures`, and as CSV for a spreadsheet at `/supervisor/figures.csv`. A bad
//! date is answered 400 with the reason next to the field (the CSV: in plain text).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::staff::Capability;

use super::Lang;
use super::i18n;
use super::session::{PageError, Staff, Web, no_store, page};
use crate::app::figures::{Board, DayRange, Figures, RangeError, figures_csv};
use crate::app::reports::QueueFigures;

fn group_name(web: &Web, lang: Lang, id: &str) -> String {
    web.app
        .group(id)
        .map(|g| match lang {
            Lang::Ar => g.name_ar.clone(),
            Lang::En => g.name_en.clone(),
        })
        .unwrap_or_else(|| id.to_string())
}

fn service_name(web: &Web, lang: Lang, code: &str) -> String {
    web.app
        .service(code)
        .map(|s| match lang {
            Lang::Ar => s.name_ar,
            Lang::En => s.name_en,
        })
        .unwrap_or_else(|_| code.to_string())
}

/// The board as the template reads it.
pub fn board_value(web: &Web, lang: Lang, b: &Board) -> Value {
    let now_ms = web.app.now_ms();
    let waiting = |w: &crate::app::figures::Waiting| {
        context! {
            number => &w.number, group => group_name(web, lang, &w.group), wait => w.wait_secs,
            target => i64::from(w.target_minutes) * 60, beyond => w.beyond_target,
            priority => (w.priority != "normal").then_some(&w.priority),
        }
    };
    context! {
        counters => b.counters.iter().map(|c| context! {
            counter => c.counter, ticket => &c.ticket,
            group => c.group.as_deref().map(|g| group_name(web, lang, g)),
            since => c.called_ms.map(|ms| ((now_ms - ms) / 1000).max(0)),
            clerk => &c.clerk, clerk_name => &c.clerk_name, served => c.served_today,
        }).collect::<Vec<_>>(),
        longest => b.longest.iter().map(waiting).collect::<Vec<_>>(),
        beyond => b.beyond_target.iter().map(waiting).collect::<Vec<_>>(),
        waiting_total => b.waiting_total,
        called_late => b.called_late_today,
    }
}

/// `GET /supervisor/board`: the live board alone (what `live.js` fetches).
pub async fn board(State(web): State<Web>, staff: Staff) -> Result<Response, PageError> {
    staff.require(Capability::ViewReports)?;
    let lang = staff.lang();
    let b = web
        .app
        .supervisor_board(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    page(
        &web,
        &staff,
        StatusCode::OK,
        "supervisor_board.html",
        context! { board => board_value(&web, lang, &b) },
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct RangeQuery {
    #[serde(default)]
    day: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

impl RangeQuery {
    fn parse(&self, web: &Web) -> Result<DayRange, RangeError> {
        DayRange::parse(
            self.day.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            web.app.today(),
        )
    }
}

/// The reason a range was refused, in the page's language.
pub fn range_error(lang: Lang, e: &RangeError) -> String {
    match e {
        RangeError::BadDate { value, .. } => {
            i18n::t_with(lang, "figures.bad_date", &[("value", value)])
        }
        RangeError::Reversed { .. } => i18n::t(lang, "figures.reversed").to_string(),
        RangeError::TooLong => i18n::t_with(
            lang,
            "figures.too_long",
            &[("days", &crate::app::figures::MAX_RANGE_DAYS.to_string())],
        ),
    }
}

fn queue_rows(web: &Web, lang: Lang, rows: &[QueueFigures], groups: bool) -> Vec<Value> {
    rows.iter()
        .map(|f| {
            let name = if groups { group_name(web, lang, &f.key) } else { f.key.clone() };
            context! {
                name => name, issued => f.issued, served => f.served, no_shows => f.no_shows,
                waiting_now => f.waiting_now, avg_wait => f.avg_wait_secs, max_wait => f.max_wait_secs,
                avg_service => f.avg_service_secs,
            }
        })
        .collect()
}

fn figures_value(web: &Web, lang: Lang, f: &Figures) -> Value {
    context! {
        by_day => queue_rows(web, lang, &f.by_day, false),
        by_group => queue_rows(web, lang, &f.by_group, true),
        total => queue_rows(web, lang, std::slice::from_ref(&f.total), false).pop(),
        by_service => f.by_service.iter().map(|s| context! {
            name => service_name(web, lang, &s.service), opened => s.opened, finished => s.finished,
            dropped => s.dropped, fees => s.fees_paid,
        }).collect::<Vec<_>>(),
        by_clerk => f.by_clerk.iter().map(|k| context! {
            username => &k.username, name => &k.full_name, called => k.tickets_called,
            finished => k.tickets_finished, avg_service => k.avg_service_secs,
            cases => k.cases_opened, receipts => k.receipts, cash => k.cash,
        }).collect::<Vec<_>>(),
    }
}

/// `GET /supervisor/figures?day=` or `?from=&to=`
pub async fn figures(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<RangeQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewReports)?;
    let lang = staff.lang();
    let typed = |v: &Option<String>| v.clone().unwrap_or_default();
    let (status, range, figures, error) = match q.parse(&web) {
        Ok(range) => {
            let f = web
                .app
                .figures(&staff.actor, range)
                .await
                .map_err(|e| PageError::app(e, lang))?;
            (StatusCode::OK, Some(range), Some(f), None)
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            None,
            None,
            Some(context! { field => e.field(), message => range_error(lang, &e) }),
        ),
    };
    let from = range
        .map(|r| r.from.to_string())
        .unwrap_or_else(|| typed(&q.from).chars().take(40).collect());
    let to = range
        .map(|r| r.to.to_string())
        .unwrap_or_else(|| typed(&q.to).chars().take(40).collect());
    page(
        &web,
        &staff,
        status,
        "supervisor_figures.html",
        context! {
            from => from,
            to => to,
            one_day => range.is_some_and(|r| r.is_one_day()),
            csv => range.map(|r| format!("/supervisor/figures.csv?from={}&to={}", r.from, r.to)),
            figures => figures.as_ref().map(|f| figures_value(&web, lang, f)),
            range_error => error,
        },
    )
}

/// `GET /supervisor/figures.csv?day=` or `?from=&to=`: UTF-8 with a BOM, names in the
/// user's language.
pub async fn figures_csv_file(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<RangeQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewReports)?;
    let lang = staff.lang();
    let range = match q.parse(&web) {
        Ok(r) => r,
        Err(e) => {
            let mut resp = (StatusCode::BAD_REQUEST, range_error(lang, &e)).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(resp);
        }
    };
    let f = web
        .app
        .figures(&staff.actor, range)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let csv = figures_csv(&f, |kind, key| match kind {
        "group" => group_name(&web, lang, key),
        _ => service_name(&web, lang, key),
    });
    let mut resp = no_store(csv.into_response());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"figures-{}-{}-{}.csv\"",
        web.app.settings.center_id, range.from, range.to
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
