//! The cash pages: the daily close (per clerk and per authority, printable, and as CSV),
//! the supervisors' list of void requests to approve, and the case page's "void this
//! receipt" request. The rules are in [`crate::app::cash`].

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::staff::Capability;

use super::Lang;
use super::session::{
    PageError, Staff, Web, error_message, flash, local_datetime, local_hhmm, no_store, page,
    urlencode,
};
use crate::app::cash::{DailyClose, Totals, VoidRequest, close_csv};
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct CloseQuery {
    #[serde(default)]
    day: Option<String>,
    #[serde(default)]
    clerk: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn may_see_cash(staff: &Staff) -> Result<(), PageError> {
    if staff.actor.can(Capability::TakePayment) || staff.actor.can(Capability::ViewReports) {
        Ok(())
    } else {
        Err(PageError::Forbidden { lang: staff.lang() })
    }
}

/// `?day=` as a date; anything else is refused with the app's message.
fn parse_day(lang: Lang, day: Option<&str>) -> Result<Option<jiff::civil::Date>, PageError> {
    match day.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d) => d.parse().map(Some).map_err(|_| {
            PageError::app(
                AppError::Invalid(vec![super::session::form_error(
                    "day",
                    "invalid_date",
                    "form.date_format",
                )]),
                lang,
            )
        }),
    }
}

fn totals_value(t: &Totals) -> Value {
    context! {
        receipts => t.receipts, voided => t.voided,
        authority_fee => t.authority_fee, surcharge => t.surcharge, total => t.total,
    }
}

fn close_value(web: &Web, lang: Lang, close: &DailyClose) -> Value {
    let app = &web.app;
    let authority_rows = |rows: &[crate::app::cash::AuthorityTotals]| -> Vec<Value> {
        rows.iter()
            .map(|a| context! { authority => if lang == Lang::Ar { a.authority.name_ar() } else { a.authority.name_en() }, totals => totals_value(&a.totals) })
            .collect()
    };
    let clerks: Vec<Value> = close
        .clerks
        .iter()
        .map(|k| {
            let receipts: Vec<Value> = k
                .receipts
                .iter()
                .map(|r| {
                    let service = app
                        .service(&r.service)
                        .map(|s| if lang == Lang::Ar { s.name_ar } else { s.name_en })
                        .unwrap_or_else(|_| r.service.clone());
                    context! {
                        receipt_no => &r.receipt_no, case_no => &r.case_no, time => local_hhmm(app, &r.at),
                        service => service,
                        authority => if lang == Lang::Ar { r.authority.name_ar() } else { r.authority.name_en() },
                        authority_fee => r.authority_fee, surcharge => r.surcharge, total => r.total,
                        voided => !r.counts(),
                        void_pending => r.void.as_ref().is_some_and(|v| !v.approved()),
                        void_reason => r.void.as_ref().map(|v| v.reason.clone()),
                    }
                })
                .collect();
            context! {
                clerk => &k.clerk, clerk_name => &k.clerk_name, receipts => receipts,
                by_authority => authority_rows(&k.by_authority), totals => totals_value(&k.totals),
            }
        })
        .collect();
    context! {
        day => close.day.to_string(),
        clerks => clerks,
        by_authority => authority_rows(&close.by_authority),
        totals => totals_value(&close.totals),
    }
}

/// `GET /cash?day=&clerk=`: the daily close, printable.
pub async fn close(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<CloseQuery>,
) -> Result<Response, PageError> {
    may_see_cash(&staff)?;
    let lang = staff.lang();
    let app = &web.app;
    let day = parse_day(lang, q.day.as_deref())?;
    let close = app
        .daily_close(&staff.actor, day, q.clerk.as_deref())
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let supervisor = staff.actor.can(Capability::ViewReports);
    let pending: Vec<Value> = if supervisor {
        app.pending_voids(&staff.actor)
            .await
            .map_err(|e| PageError::app(e, lang))?
            .iter()
            .map(|v| context! {
                receipt_no => &v.receipt_no, case_no => &v.case_no, reason => &v.reason,
                requested_name => &v.requested_name, requested_at => local_datetime(app, &v.requested_at),
                own => v.requested_by == staff.actor.username,
            })
            .collect()
    } else {
        Vec::new()
    };
    let clerk = q.clerk.clone().filter(|c| !c.is_empty());
    let csv = format!(
        "/cash/close.csv?day={}{}",
        close.day,
        clerk
            .as_deref()
            .map(|c| format!("&clerk={}", urlencode(c)))
            .unwrap_or_default()
    );
    page(
        &web,
        &staff,
        StatusCode::OK,
        "cash.html",
        context! {
            close => close_value(&web, lang, &close),
            clerk => clerk,
            csv => csv,
            supervisor => supervisor,
            pending => pending,
            flash => flash(lang, q.done.as_deref()),
        },
    )
}

/// `GET /cash/close.csv?day=&clerk=`
pub async fn close_csv_file(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<CloseQuery>,
) -> Result<Response, PageError> {
    may_see_cash(&staff)?;
    let lang = staff.lang();
    let day = parse_day(lang, q.day.as_deref())?;
    let close = web
        .app
        .daily_close(&staff.actor, day, q.clerk.as_deref())
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let mut resp = no_store(close_csv(&close).into_response());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"close-{}-{}.csv\"",
        web.app.settings.center_id, close.day
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, Default)]
pub struct VoidForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /cash/receipts/{receipt}/void`: asks for a void (from the case page).
pub async fn request_void(
    State(web): State<Web>,
    staff: Staff,
    Path(receipt): Path<String>,
    Form(f): Form<VoidForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    match web
        .app
        .request_void(&staff.actor, &receipt, VoidRequest { reason: f.reason })
        .await
    {
        Ok(v) => {
            Ok(Redirect::to(&format!("/cases/{}?done=void_requested", v.case_no)).into_response())
        }
        Err(AppError::Invalid(errs)) => {
            // Back to the case page, which shows the reason's error next to the field.
            let case_no = web
                .app
                .receipt_case(&receipt)
                .await
                .map_err(|e| PageError::app(e, lang))?
                .ok_or(PageError::NotFound { lang })?;
            super::cases::show_with_void_error(&web, &staff, &case_no, errs).await
        }
        Err(e) => Err(PageError::app(e, lang)),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /cash/receipts/{receipt}/approve`: a supervisor approves a void.
pub async fn approve_void(
    State(web): State<Web>,
    staff: Staff,
    Path(receipt): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    staff.require(Capability::ViewReports)?;
    let lang = staff.lang();
    match web.app.approve_void(&staff.actor, &receipt).await {
        Ok(_) => Ok(Redirect::to("/cash?done=void_approved").into_response()),
        Err(e @ (AppError::Conflict { .. } | AppError::NotFound { .. })) => {
            let close = web
                .app
                .daily_close(&staff.actor, None, None)
                .await
                .map_err(|e| PageError::app(e, lang))?;
            page(
                &web,
                &staff,
                super::session::status_of(&e),
                "cash.html",
                context! {
                    close => close_value(&web, lang, &close),
                    csv => format!("/cash/close.csv?day={}", close.day),
                    supervisor => true,
                    pending => Vec::<Value>::new(),
                    error => error_message(lang, &e),
                },
            )
        }
        Err(e) => Err(PageError::app(e, lang)),
    }
}
