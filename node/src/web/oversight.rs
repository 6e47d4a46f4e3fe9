//! The supervisor's page: today's queue figures per service group and per counter,
//! no-shows, cases by status and past target, staff with their permissions and expiry
//! dates, granting a permission. (The technician's page is [`super::technician`].)

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::catalog::Authority;
use markaz_sync::model::staff::Capability;

use super::Lang;
use super::session::{
    PageError, Staff, Web, error_message, field_errors, flash, local_datetime, page, status_of,
};
use crate::app::reports::QueueFigures;
use crate::app::staff::Grant;
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
    /// The day of the queue figures (`YYYY-MM-DD`); default today.
    #[serde(default)]
    day: Option<String>,
}

fn figures(web: &Web, lang: Lang, f: &QueueFigures, by_counter: bool) -> Value {
    let name = if by_counter {
        f.key.clone()
    } else {
        web.app
            .group(&f.key)
            .map(|g| {
                if lang == Lang::Ar {
                    g.name_ar.clone()
                } else {
                    g.name_en.clone()
                }
            })
            .unwrap_or_else(|| f.key.clone())
    };
    context! {
        name => name, issued => f.issued, served => f.served, no_shows => f.no_shows, waiting_now => f.waiting_now,
        avg_wait => f.avg_wait_secs, max_wait => f.max_wait_secs, avg_service => f.avg_service_secs,
    }
}

async fn render_supervisor(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    done: Option<&str>,
    grant_errors: Value,
    error: Option<String>,
    day: Option<jiff::civil::Date>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let a = &staff.actor;
    let err = |e| PageError::app(e, lang);
    let queue = app.queue_report(a, day).await.map_err(err)?;
    let board = app.supervisor_board(a).await.map_err(err)?;
    let cases = app.case_report(a).await.map_err(err)?;
    let overdue = app
        .search_cases(
            a,
            crate::app::cases::CaseQuery {
                overdue: Some(true),
                limit: Some(50),
                ..Default::default()
            },
        )
        .await
        .map_err(err)?;
    let staff_list = app.list_staff(a).await.map_err(err)?;
    let today = app.today();
    let staff_rows: Vec<Value> = staff_list
        .iter()
        .map(|s| {
            let perms: Vec<Value> = s
                .permissions
                .iter()
                .map(|p| context! {
                    authority => if lang == Lang::Ar { p.authority.name_ar() } else { p.authority.name_en() },
                    expires_on => p.expires_on.to_string(),
                    expired => p.expires_on < today,
                    soon => p.expires_on >= today && p.expires_on <= today.saturating_add(jiff::Span::new().days(14)),
                })
                .collect();
            context! {
                username => &s.username, full_name => &s.full_name, active => s.active,
                roles => s.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(), permissions => perms,
            }
        })
        .collect();
    let overdue_rows: Vec<Value> = overdue
        .iter()
        .map(|r| context! { case_no => &r.case_no, status => &r.status, target => local_datetime(app, &r.target_at), service => app.service(&r.service).map(|s| if lang == Lang::Ar { s.name_ar.clone() } else { s.name_en.clone() }).unwrap_or_else(|_| r.service.clone()) })
        .collect();
    page(
        web,
        staff,
        status,
        "supervisor.html",
        context! {
            day => &queue.day,
            board => super::supervisor::board_value(web, lang, &board),
            total => figures(web, lang, &queue.total, false),
            by_group => queue.by_group.iter().map(|f| figures(web, lang, f, false)).collect::<Vec<_>>(),
            by_counter => queue.by_counter.iter().map(|f| figures(web, lang, f, true)).collect::<Vec<_>>(),
            by_status => cases.by_status.iter().map(|(s, n)| context! { status => s, count => n }).collect::<Vec<_>>(),
            overdue_count => cases.overdue,
            conflicts => cases.conflicts,
            overdue => overdue_rows,
            staff => staff_rows,
            can_manage => a.can(Capability::ManageStaff),
            authorities => Authority::ALL.iter().map(|x| context! { value => x.as_str(), name => if lang == Lang::Ar { x.name_ar() } else { x.name_en() } }).collect::<Vec<_>>(),
            grant_errors => grant_errors,
            flash => flash(lang, done),
            error => error,
        },
    )
}

/// `GET /supervisor`
pub async fn supervisor(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewReports)?;
    let day = q
        .day
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(|d| crate::app::figures::DayRange::parse(Some(d), None, None, web.app.today()));
    let (status, day, error) = match day {
        None => (StatusCode::OK, None, None),
        Some(Ok(r)) => (StatusCode::OK, Some(r.from), None),
        Some(Err(e)) => (
            StatusCode::BAD_REQUEST,
            None,
            Some(super::supervisor::range_error(staff.lang(), &e)),
        ),
    };
    render_supervisor(
        &web,
        &staff,
        status,
        q.done.as_deref(),
        Value::from(()),
        error,
        day,
    )
    .await
}

#[derive(Debug, Deserialize, Default)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    authority: String,
    #[serde(default)]
    expires_on: String,
}

/// `POST /supervisor/staff/{username}/grant`: grants or extends a permission.
pub async fn grant(
    State(web): State<Web>,
    staff: Staff,
    Path(username): Path<String>,
    Form(f): Form<GrantForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    staff.require(Capability::ManageStaff)?;
    let lang = staff.lang();
    let authority = f.authority.parse::<Authority>();
    let expires_on = f.expires_on.trim().parse::<jiff::civil::Date>();
    let parsed = match (authority, expires_on) {
        (Ok(authority), Ok(expires_on)) => Ok(Grant {
            authority,
            expires_on,
        }),
        (Err(e), _) => Err(vec![e]),
        (_, Err(_)) => Err(vec![super::session::form_error(
            "expires_on",
            "invalid_date",
            "form.date_format",
        )]),
    };
    let result = match parsed {
        Ok(g) => web
            .app
            .grant_permission(&staff.actor, &username, g)
            .await
            .map(|_| ()),
        Err(errs) => Err(AppError::Invalid(errs)),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/supervisor?done=granted").into_response()),
        Err(AppError::Invalid(errs)) => {
            let errors = context! { user => username, fields => field_errors(lang, &errs) };
            render_supervisor(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                None,
                errors,
                Some(super::i18n::t(lang, "error.invalid").into()),
                None,
            )
            .await
        }
        Err(e) => {
            render_supervisor(
                &web,
                &staff,
                status_of(&e),
                None,
                Value::from(()),
                Some(error_message(lang, &e)),
                None,
            )
            .await
        }
    }
}

/// `POST /technician/clock/confirm`: the technician says the clock's year is right.
pub async fn clock_confirm(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    web.app
        .technician_confirm_clock(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    Ok(Redirect::to("/technician").into_response())
}

/// A form that carries nothing but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}
