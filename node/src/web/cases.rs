//! Cases: search (case number, national id, status, past target), the case page with
//! its whole event history and conflict flag, payment (cash or e-payment), lifecycle
//! steps including handover with the receiver's id, and the printable receipt.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::case::{Bank, CaseStatus};
use markaz_sync::model::catalog::FieldError;
use markaz_sync::model::staff::Capability;

use super::Lang;
use super::render;
use super::session::{
    PageError, Staff, Web, base_context, digits_code, error_message, field_errors, flash,
    local_datetime, no_store, page, status_of,
};
use crate::app::cases::{CaseAction, CaseQuery, CaseView, PaymentInput};
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    overdue: Option<String>,
}

/// `GET /cases`
pub async fn list(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewCases)?;
    let lang = staff.lang();
    let query = CaseQuery {
        q: q.q.clone().filter(|s| !s.trim().is_empty()),
        status: q.status.clone().filter(|s| !s.is_empty()),
        overdue: q
            .overdue
            .as_deref()
            .map(|v| v == "1" || v == "true" || v == "on")
            .filter(|v| *v),
        limit: Some(200),
    };
    let (rows, error) = match web.app.search_cases(&staff.actor, query).await {
        Ok(r) => (r, None),
        Err(e @ AppError::Invalid(_)) => (Vec::new(), Some(error_message(lang, &e))),
        Err(e) => return Err(PageError::app(e, lang)),
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let name = web.app.service(&r.service).map(|s| if lang == Lang::Ar { s.name_ar.clone() } else { s.name_en.clone() }).unwrap_or_else(|_| r.service.clone());
            context! {
                case_no => &r.case_no, national_id => &r.national_id, service => name, status => &r.status,
                fee_total => r.fee_total, overdue => r.overdue, conflict => r.conflict, created => local_datetime(&web.app, &r.created_at),
            }
        })
        .collect();
    page(
        &web,
        &staff,
        StatusCode::OK,
        "cases.html",
        context! {
            rows => rows,
            statuses => CaseStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            q => q.q.unwrap_or_default(),
            status => q.status.unwrap_or_default(),
            overdue => q.overdue.is_some(),
            error => error,
        },
    )
}

/// Which steps the case page offers in each status (the app still checks each).
fn next_steps(status: &str, post: bool) -> Vec<&'static str> {
    let mut steps = match status {
        "created" => vec!["pay"],
        "paid" => vec!["start"],
        "in_progress" => vec!["ready"],
        "ready" if post => vec!["notify", "post"],
        "ready" => vec!["notify", "deliver"],
        "notified" if post => vec!["post"],
        "notified" => vec!["deliver"],
        _ => vec![],
    };
    if matches!(
        status,
        "created" | "paid" | "in_progress" | "ready" | "notified"
    ) {
        steps.extend(["cancel", "reject"]);
    }
    steps
}

fn status_str(s: CaseStatus) -> &'static str {
    s.as_str()
}

/// The people a page names, by username (full names; a username nobody has here is
/// shown as it is).
type Names = std::collections::HashMap<String, String>;

fn name_of<'a>(names: &'a Names, username: &'a str) -> &'a str {
    names.get(username).map(String::as_str).unwrap_or(username)
}

/// A field's value in words when the service's field offers choices (`family` →
/// "عائلي"); other values as typed.
fn field_value_in_words(
    field: Option<&markaz_sync::model::catalog::FieldSpec>,
    lang: Lang,
    value: &str,
) -> String {
    let Some(f) = field else {
        return value.to_string();
    };
    let kind = serde_json::to_value(&f.kind).unwrap_or_default();
    kind["options"]
        .as_array()
        .and_then(|opts| opts.iter().find(|o| o["value"].as_str() == Some(value)))
        .and_then(|o| {
            o[if lang == Lang::Ar {
                "label_ar"
            } else {
                "label_en"
            }]
            .as_str()
        })
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

fn case_context(web: &Web, lang: Lang, case: &CaseView, names: &Names) -> Value {
    let app = &web.app;
    let status = status_str(case.status);
    let delivery = serde_json::to_value(&case.delivery).unwrap_or_default();
    let post = delivery["method"].as_str() == Some("post") || delivery.get("address").is_some();
    let events: Vec<Value> = case
        .events
        .iter()
        .map(|e| {
            let kind = serde_json::to_value(&e.kind).unwrap_or_default();
            let k = kind["kind"].as_str().unwrap_or_default().to_string();
            // What the event carried, shown as plain facts (receipt, reference, receiver…).
            let mut details: Vec<String> = Vec::new();
            if let Some(obj) = kind.as_object() {
                for (key, v) in obj {
                    if key == "kind" || key == "method" {
                        continue;
                    }
                    let shown = match (key.as_str(), v.as_str()) {
                        ("bank", Some(b)) => serde_json::from_value::<Bank>(v.clone()).map(|b| if lang == Lang::Ar { b.name_ar() } else { b.name_en() }.to_string()).unwrap_or_else(|_| b.to_string()),
                        (_, Some(s)) => s.to_string(),
                        _ => v.to_string(),
                    };
                    details.push(shown);
                }
            }
            context! { kind => k, actor => name_of(names, &e.actor), desk => &e.desk, at => local_datetime(app, &e.at.to_string()), details => details.join(" · ") }
        })
        .collect();
    let payment = case.payment.as_ref().map(|p| {
        let v = serde_json::to_value(p).unwrap_or_default();
        let bank = v["bank"].as_str().and_then(|_| serde_json::from_value::<Bank>(v["bank"].clone()).ok()).map(|b| if lang == Lang::Ar { b.name_ar() } else { b.name_en() });
        context! { method => v["method"].as_str(), receipt => v["receipt"].as_str(), reference => v["reference"].as_str(), bank => bank }
    });
    let banks: Vec<Value> = Bank::ALL
        .iter()
        .map(|b| context! { value => serde_json::to_value(b).ok().and_then(|v| v.as_str().map(str::to_string)), name => if lang == Lang::Ar { b.name_ar() } else { b.name_en() } })
        .collect();
    let service = app.service(&case.service).ok();
    let fields: Vec<Value> = case
        .fields
        .iter()
        .map(|(k, v)| {
            let field = service.as_ref().and_then(|s| s.field(k));
            let label = field
                .map(|f| {
                    if lang == Lang::Ar {
                        f.label_ar.clone()
                    } else {
                        f.label_en.clone()
                    }
                })
                .unwrap_or_else(|| k.clone());
            context! { label => label, value => field_value_in_words(field, lang, v) }
        })
        .collect();
    context! {
        case_no => &case.case_no,
        national_id => &case.national_id,
        citizen_name => &case.citizen_name,
        citizen => case.citizen.as_ref().map(|p| context! {
            father_name => &p.father_name,
            mother_name => &p.mother_name,
            birth_date => p.birth_date.to_string(),
        }),
        service => if lang == Lang::Ar { &case.service_name_ar } else { &case.service_name_en },
        service_name_ar => &case.service_name_ar,
        service_name_en => &case.service_name_en,
        authority => case.authority.as_str(),
        authority_name => if lang == Lang::Ar { case.authority.name_ar() } else { case.authority.name_en() },
        fields => fields,
        post => post,
        address => delivery["address"].as_str(),
        fee => Value::from_serialize(&case.fee),
        status => status,
        conflict => case.conflict.as_ref().map(|c| c.to_string()),
        resolution => case.conflict.as_ref().and_then(|c| c.get("resolution")).map(|r| context! {
            outcome => r["outcome"].as_str(),
            reason => r["reason"].as_str(),
            actor => r["actor"].as_str(),
            at => r["at"].as_str().map(|at| local_datetime(app, at)),
        }),
        payment => payment,
        target => local_datetime(app, &case.target_at),
        overdue => case.overdue,
        created_by => name_of(names, &case.created_by),
        created => local_datetime(app, &case.created_at),
        events => events,
        steps => next_steps(status, post),
        banks => banks,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct CaseQueryString {
    #[serde(default)]
    done: Option<String>,
}

/// What a case page shows besides the case: a confirmation, or a refused form with its
/// errors and the values as typed.
#[derive(Default)]
struct Shown<'a> {
    done: Option<&'a str>,
    errors: Vec<FieldError>,
    error: Option<String>,
    form: Option<Value>,
}

async fn render_case(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    case_no: &str,
    shown: Shown<'_>,
) -> Result<Response, PageError> {
    let Shown {
        done,
        errors,
        error,
        form,
    } = shown;
    let form = form.unwrap_or_else(|| Value::from(()));
    let lang = staff.lang();
    let case = web
        .app
        .get_case(&staff.actor, case_no)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let names = web
        .app
        .staff_names()
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let receipt = match &case.payment {
        Some(markaz_sync::model::case::Payment::Cash { receipt }) => Some(receipt.to_string()),
        _ => None,
    };
    let void = match &receipt {
        Some(r) => web
            .app
            .receipt_void(r)
            .await
            .map_err(|e| PageError::app(e, lang))?
            .map(|v| context! {
                approved => v.approved(), reason => v.reason.clone(),
                requested_name => v.requested_name.clone(), approved_name => v.approved_name.clone(),
            }),
        None => None,
    };
    page(
        web,
        staff,
        status,
        "case.html",
        context! {
            case => case_context(web, lang, &case, &names),
            receipt => receipt,
            void => void,
            can_void => staff.actor.can(Capability::TakePayment) || staff.actor.can(Capability::ViewReports),
            can_pay => staff.actor.can(Capability::TakePayment),
            can_advance => staff.actor.can(Capability::AdvanceCase),
            errors => field_errors(lang, &errors),
            form => form,
            flash => flash(lang, done),
            error => error,
        },
    )
}

/// The case page again, with the refused void request's errors next to its reason.
pub(super) async fn show_with_void_error(
    web: &Web,
    staff: &Staff,
    case_no: &str,
    errs: Vec<FieldError>,
) -> Result<Response, PageError> {
    let errors = errs
        .into_iter()
        .map(|mut e| {
            if e.field == "reason" {
                e.field = "void_reason".into();
            }
            e
        })
        .collect();
    let lang = staff.lang();
    render_case(
        web,
        staff,
        StatusCode::BAD_REQUEST,
        case_no,
        Shown {
            errors,
            error: Some(super::i18n::t(lang, "error.invalid").to_string()),
            ..Shown::default()
        },
    )
    .await
}

/// `GET /cases/{case_no}`
pub async fn show(
    State(web): State<Web>,
    staff: Staff,
    Path(case_no): Path<String>,
    Query(q): Query<CaseQueryString>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewCases)?;
    render_case(
        &web,
        &staff,
        StatusCode::OK,
        &case_no,
        Shown {
            done: q.done.as_deref(),
            ..Shown::default()
        },
    )
    .await
}

#[derive(Debug, Deserialize, Default, serde::Serialize)]
pub struct PayForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    bank: String,
}

/// `POST /cases/{case_no}/pay`
pub async fn pay(
    State(web): State<Web>,
    staff: Staff,
    Path(case_no): Path<String>,
    Form(f): Form<PayForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let input = if f.method == "epayment" {
        serde_json::from_value::<PaymentInput>(serde_json::json!({"method": "epayment", "reference": f.reference.trim(), "bank": f.bank}))
            .map_err(|_| AppError::Invalid(vec![super::session::form_error("bank", "bad_choice", "form.choose_bank")]))
    } else {
        Ok(PaymentInput::Cash)
    };
    let result = match input {
        Ok(i) => web.app.pay_case(&staff.actor, &case_no, i).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/cases/{case_no}?done=paid")).into_response()),
        Err(AppError::Invalid(errs)) => {
            render_case(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &case_no,
                Shown {
                    errors: errs,
                    error: Some(super::i18n::t(lang, "error.invalid").into()),
                    form: Some(Value::from_serialize(&f)),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(e) => {
            render_case(
                &web,
                &staff,
                status_of(&e),
                &case_no,
                Shown {
                    error: Some(error_message(lang, &e)),
                    ..Shown::default()
                },
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize, Default, serde::Serialize)]
pub struct StepForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    receiver_national_id: String,
    #[serde(default)]
    tracking: String,
    #[serde(default)]
    reason: String,
}

/// `POST /cases/{case_no}/advance`: one lifecycle step.
pub async fn advance(
    State(web): State<Web>,
    staff: Staff,
    Path(case_no): Path<String>,
    Form(f): Form<StepForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let body = match f.action.as_str() {
        "start" | "ready" | "notify" => serde_json::json!({"action": f.action}),
        "deliver" => {
            serde_json::json!({"action": "deliver", "receiver_national_id": f.receiver_national_id.trim()})
        }
        "post" => serde_json::json!({"action": "post", "tracking": f.tracking.trim()}),
        "cancel" | "reject" => serde_json::json!({"action": f.action, "reason": f.reason.trim()}),
        _ => return Err(PageError::NotFound { lang }),
    };
    let action: CaseAction = serde_json::from_value(body)
        .map_err(|e| PageError::app(AppError::Internal(e.to_string()), lang))?;
    match web.app.advance_case(&staff.actor, &case_no, action).await {
        Ok(_) => Ok(Redirect::to(&format!("/cases/{case_no}?done={}", f.action)).into_response()),
        Err(AppError::Invalid(errs)) => {
            render_case(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &case_no,
                Shown {
                    errors: errs,
                    error: Some(super::i18n::t(lang, "error.invalid").into()),
                    form: Some(Value::from_serialize(&f)),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(e) => {
            render_case(
                &web,
                &staff,
                status_of(&e),
                &case_no,
                Shown {
                    error: Some(error_message(lang, &e)),
                    ..Shown::default()
                },
            )
            .await
        }
    }
}

/// `GET /cases/{case_no}/receipt`: the 80 mm receipt, in Arabic and English.
pub async fn receipt(
    State(web): State<Web>,
    staff: Staff,
    Path(case_no): Path<String>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewCases)?;
    let lang = staff.lang();
    let case = web
        .app
        .get_case(&staff.actor, &case_no)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let names = web
        .app
        .staff_names()
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let voided = match &case.payment {
        Some(markaz_sync::model::case::Payment::Cash { receipt }) => web
            .app
            .receipt_void(receipt.as_str())
            .await
            .map_err(|e| PageError::app(e, lang))?
            .filter(|v| v.approved())
            .map(|v| v.reason),
        _ => None,
    };
    // When it was paid (the center's time) and by whom (the cashier's name): the latest
    // payment event, the one the receipt stands for.
    let paid = case
        .events
        .iter()
        .rev()
        .find(|e| matches!(e.kind, markaz_sync::model::case::CaseEventKind::Paid(_)));
    let s = &web.app.settings;
    let ctx = context! {
        paid_at => paid.map(|e| local_datetime(&web.app, &e.at.to_string())),
        cashier => paid.map(|e| name_of(&names, &e.actor).to_string()),
        voided => voided,
        case => case_context(&web, lang, &case, &names),
        center_name_ar => &s.center_name_ar,
        center_name_en => &s.center_name_en,
        printed => web.app.local_now().strftime("%Y-%m-%d %H:%M").to_string(),
        digits => digits_code(&web),
        back => format!("/cases/{}", case.case_no),
        ..base_context(&web, lang, &staff.visit.path, Some(&staff))
    };
    let html = render::render("receipt.html", ctx).map_err(|e| PageError::Render {
        err: e.to_string(),
        lang,
    })?;
    Ok(no_store(Html(html).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_lifecycle() {
        assert_eq!(next_steps("created", false), ["pay", "cancel", "reject"]);
        assert_eq!(
            next_steps("ready", false),
            ["notify", "deliver", "cancel", "reject"]
        );
        assert_eq!(
            next_steps("ready", true),
            ["notify", "post", "cancel", "reject"]
        );
        assert!(next_steps("delivered", false).is_empty());
        // Every status has a catalog name, every step a button label.
        for s in CaseStatus::ALL {
            for l in Lang::ALL {
                assert!(
                    super::super::i18n::catalog(l).contains_key(&format!("status.{}", s.as_str())),
                    "status.{}",
                    s.as_str()
                );
                for step in next_steps(s.as_str(), false)
                    .into_iter()
                    .chain(next_steps(s.as_str(), true))
                {
                    assert!(
                        super::super::i18n::catalog(l).contains_key(&format!("step.{step}")),
                        "step.{step}"
                    );
                }
            }
        }
    }
}
