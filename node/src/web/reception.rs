//! Reception: find a citizen by national id or phone, register one, issue a queue ticket
//! for a service group with its priority class, and print it.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::staff::Capability;

use super::citizens::ProfileFields;
use super::session::{PageError, Staff, Web, field_errors, flash, local_hhmm, page};
use crate::app::citizens::Registered;
use crate::app::queue::IssueTicket;
use crate::error::AppError;

/// Priority classes offered at reception, in the order shown (`priority.<x>` keys).
pub const PRIORITIES: [&str; 4] = ["normal", "elderly", "disabled", "pregnant"];

#[derive(Debug, Deserialize, Default)]
pub struct ReceptionQuery {
    #[serde(default)]
    nid: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The registration form: the national id and the profile's fields.
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize)]
pub struct CitizenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    national_id: String,
    #[serde(flatten)]
    profile: ProfileFields,
}

#[derive(Debug, Deserialize, Default, Clone, serde::Serialize)]
pub struct TicketForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    priority: String,
    #[serde(default, rename = "ticket_national_id")]
    national_id: String,
}

/// What a re-shown reception page keeps: the forms as typed and their errors.
#[derive(Default)]
struct Shown {
    citizen: Value,
    citizen_errors: Value,
    ticket_form: Value,
    ticket_errors: Value,
    error: Option<String>,
}

async fn render_reception(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    q: &ReceptionQuery,
    shown: Shown,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let nid = q.nid.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let phone = q.phone.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let name = q.name.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let searched = nid.is_some() || phone.is_some() || name.is_some();
    let mut error = shown.error;
    let citizens = if searched {
        let found = match (nid, phone, name) {
            (None, None, Some(name)) => app.find_citizens_by_name(&staff.actor, name).await,
            _ => app.find_citizens(&staff.actor, nid, phone).await,
        };
        match found {
            Ok(c) => c,
            Err(AppError::Invalid(errs)) => {
                error = Some(super::session::error_message(
                    lang,
                    &AppError::Invalid(errs),
                ));
                Vec::new()
            }
            Err(AppError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(PageError::app(e, lang)),
        }
    } else {
        Vec::new()
    };
    let waiting = app
        .waiting_tickets(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let waiting: Vec<Value> = waiting
        .iter()
        .map(|w| {
            let group_name = app.group(&w.group).map(|g| if lang == super::Lang::Ar { g.name_ar.clone() } else { g.name_en.clone() }).unwrap_or_else(|| w.group.clone());
            context! {
                id => w.id, number => &w.number, group_name => group_name,
                priority => serde_json::to_value(w.priority).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                time => local_hhmm(app, &w.issued_at),
            }
        })
        .collect();
    let or_empty = |v: Value| if v.is_undefined() { Value::from(()) } else { v };
    // An id searched and not found: the registration form starts with it (the desk's
    // "register the citizen first" link leads here).
    let citizen = match (shown.citizen.is_undefined(), nid) {
        (true, Some(n)) if citizens.is_empty() => context! { national_id => n },
        _ => or_empty(shown.citizen),
    };
    page(
        web,
        staff,
        status,
        "reception.html",
        context! {
            groups => Value::from_serialize(&app.settings.groups),
            priorities => PRIORITIES.to_vec(),
            search => context! { nid => nid, phone => phone, name => name },
            searched => searched,
            citizens => Value::from_serialize(&citizens),
            waiting => waiting,
            citizen => citizen,
            citizen_errors => or_empty(shown.citizen_errors),
            ticket_form => or_empty(shown.ticket_form),
            ticket_errors => or_empty(shown.ticket_errors),
            error => error,
            flash => flash(lang, q.done.as_deref()),
        },
    )
}

/// `GET /reception`
pub async fn show(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<ReceptionQuery>,
) -> Result<Response, PageError> {
    if !(staff.actor.can(Capability::IssueTicket) || staff.actor.can(Capability::RegisterCitizen)) {
        return Err(PageError::Forbidden { lang: staff.lang() });
    }
    render_reception(&web, &staff, StatusCode::OK, &q, Shown::default()).await
}

/// `POST /reception/citizens`: registers a citizen. A national id already registered
/// leads to the existing profile (never overwritten; changing it is an explicit edit).
pub async fn register(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<CitizenForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let (input, birth_date) = f.profile.input(&f.national_id);
    let known = input
        .national_id
        .trim()
        .parse::<markaz_sync::model::ids::NationalId>();
    match web.app.register_citizen(&staff.actor, input).await {
        Ok(Registered::Created(c)) => {
            let nid = c.profile.national_id.to_string();
            Ok(Redirect::to(&format!("/reception?nid={nid}&done=citizen_saved")).into_response())
        }
        Ok(Registered::Existing(c)) => Ok(Redirect::to(&format!(
            "/citizens/{}?done=citizen_exists",
            c.profile.national_id
        ))
        .into_response()),
        Err(AppError::Conflict {
            code: "citizen_exists",
            ..
        }) if known.is_ok() => {
            let nid = known.map(|n| n.to_string()).unwrap_or_default();
            Ok(Redirect::to(&format!("/citizens/{nid}?done=citizen_exists")).into_response())
        }
        Err(AppError::Invalid(errs)) => {
            let errs = ProfileFields::form_errors(errs, &birth_date);
            let mut shown_form = f.clone();
            shown_form.csrf.clear();
            let shown = Shown {
                citizen: Value::from_serialize(&shown_form),
                citizen_errors: field_errors(lang, &errs),
                error: Some(super::i18n::t(lang, "error.invalid").to_string()),
                ..Shown::default()
            };
            render_reception(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &ReceptionQuery::default(),
                shown,
            )
            .await
        }
        Err(e) => Err(PageError::app(e, lang)),
    }
}

/// `POST /reception/tickets`: issues a ticket and opens its print page.
pub async fn issue(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<TicketForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let priority = if f.priority.is_empty() {
        "normal"
    } else {
        f.priority.as_str()
    };
    let nid = f.national_id.trim();
    let input: Result<IssueTicket, _> = serde_json::from_value(serde_json::json!({
        "group": f.group,
        "priority": priority,
        "national_id": (!nid.is_empty()).then_some(nid),
    }));
    let result = match input {
        Ok(input) => web.app.issue_ticket(&staff.actor, input).await,
        Err(_) => Err(AppError::Invalid(vec![super::session::form_error(
            "priority",
            "bad_choice",
            "form.choose_priority",
        )])),
    };
    match result {
        Ok(t) => Ok(Redirect::to(&format!("/tickets/{}/print", t.id)).into_response()),
        Err(AppError::Invalid(errs)) => {
            let errs: Vec<_> = errs
                .into_iter()
                .map(|mut e| {
                    if e.field == "national_id" {
                        e.field = "ticket_national_id".into();
                    }
                    e
                })
                .collect();
            let mut shown_form = f.clone();
            shown_form.csrf.clear();
            let shown = Shown {
                ticket_form: Value::from_serialize(&shown_form),
                ticket_errors: field_errors(lang, &errs),
                error: Some(super::i18n::t(lang, "error.invalid").to_string()),
                ..Shown::default()
            };
            render_reception(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &ReceptionQuery::default(),
                shown,
            )
            .await
        }
        Err(e) => {
            let shown = Shown {
                error: Some(super::session::error_message(lang, &e)),
                ..Shown::default()
            };
            render_reception(
                &web,
                &staff,
                super::session::status_of(&e),
                &ReceptionQuery::default(),
                shown,
            )
            .await
        }
    }
}
