//! The front desk: the counter's current ticket with call next, recall, no-show,
//! transfer and finish; and the intake form that creates a case from the ticket with
//! the service's required fields (checked by the app; errors shown next to each field).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::catalog::FieldError;
use markaz_sync::model::staff::Capability;

use super::Lang;
use super::session::{
    PageError, Staff, Web, cookie_value, error_message, field_errors, flash, local_hhmm, page,
    status_of,
};
use crate::app::cases::{DeliveryInput, NewCase};
use crate::app::queue::{FinishTicket, ServeLater, TransferTicket};
use crate::error::AppError;

pub const COUNTER_COOKIE: &str = "markaz_counter";

#[derive(Debug, Deserialize, Default)]
pub struct DeskQuery {
    #[serde(default)]
    counter: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn group_name(web: &Web, lang: Lang, id: &str) -> String {
    web.app
        .group(id)
        .map(|g| {
            if lang == Lang::Ar {
                g.name_ar.clone()
            } else {
                g.name_en.clone()
            }
        })
        .unwrap_or_else(|| id.to_string())
}

async fn render_desk(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    counter: Option<u32>,
    done: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let counters: Vec<u32> = app.settings.counters.iter().map(|c| c.number).collect();
    let view = match counter {
        Some(n) => Some(
            app.counter_view(n)
                .await
                .map_err(|e| PageError::app(e, lang))?,
        ),
        None => None,
    };
    let current = view.as_ref().and_then(|v| v.current.as_ref()).map(|t| {
        context! {
            id => t.id,
            number => &t.number,
            group => &t.group,
            group_name => group_name(web, lang, &t.group),
            priority => serde_json::to_value(t.priority).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            national_id => &t.national_id,
            case_no => &t.case_no,
            recalls => t.recalls,
            issued => local_hhmm(app, &t.issued_at),
            called => t.called_at.as_deref().map(|c| local_hhmm(app, c)).unwrap_or_default(),
        }
    });
    let undoable = view
        .as_ref()
        .and_then(|v| v.undoable.as_ref())
        .map(|t| context! { number => &t.number });
    let groups: Vec<Value> = app.settings.groups.iter().map(|g| context! { id => &g.id, name => if lang == Lang::Ar { &g.name_ar } else { &g.name_en } }).collect();
    page(
        web,
        staff,
        status,
        "desk.html",
        context! {
            counters => counters,
            counter => counter,
            serves => view.as_ref().map(|v| v.groups.iter().map(|g| group_name(web, lang, g)).collect::<Vec<_>>()),
            waiting => view.as_ref().map(|v| v.waiting),
            current => current,
            undoable => undoable,
            groups => groups,
            flash => flash(lang, done),
            error => error,
        },
    )
}

fn counter_choice(web: &Web, q: Option<&str>, cookie: Option<String>) -> Option<u32> {
    let n = q
        .map(str::to_string)
        .or(cookie)?
        .trim()
        .parse::<u32>()
        .ok()?;
    web.app
        .settings
        .counters
        .iter()
        .any(|c| c.number == n)
        .then_some(n)
}

/// `GET /desk?counter=N`: remembers the counter for this browser.
pub async fn show(
    State(web): State<Web>,
    staff: Staff,
    headers: axum::http::HeaderMap,
    Query(q): Query<DeskQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ServeCounter)?;
    let counter = counter_choice(
        &web,
        q.counter.as_deref(),
        cookie_value(&headers, COUNTER_COOKIE),
    );
    let mut resp = render_desk(
        &web,
        &staff,
        StatusCode::OK,
        counter,
        q.done.as_deref(),
        None,
    )
    .await?;
    if let Some(n) = counter
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COUNTER_COOKIE}={n}; Path=/; Max-Age=31536000; SameSite=Lax"
        ))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    case_no: String,
    #[serde(default)]
    position: String,
}

/// `POST /desk/{n}/{action}`: call-next, recall, no-show, undo-no-show, serve-later,
/// transfer, finish.
pub async fn action(
    State(web): State<Web>,
    staff: Staff,
    Path((n, action)): Path<(u32, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    staff.require(Capability::ServeCounter)?;
    let lang = staff.lang();
    let app = &web.app;
    let a = &staff.actor;
    let result: Result<&str, AppError> = match action.as_str() {
        "call-next" => app
            .call_next(a, n)
            .await
            .map(|t| if t.is_some() { "called" } else { "queue_empty" }),
        "recall" => app.recall(a, n).await.map(|_| "recalled"),
        "no-show" => app.no_show(a, n).await.map(|_| "no_show"),
        "undo-no-show" => app.undo_no_show(a, n).await.map(|_| "no_show_undone"),
        "serve-later" => match f.position.trim().parse::<u32>() {
            Ok(position) => app
                .serve_later(a, n, ServeLater { position })
                .await
                .map(|_| "served_later"),
            Err(_) => Err(AppError::Invalid(vec![super::session::form_error(
                "position",
                "invalid_position",
                "desk.position_hint",
            )])),
        },
        "transfer" => app
            .transfer(
                a,
                n,
                TransferTicket {
                    group: f.group.clone(),
                },
            )
            .await
            .map(|_| "transferred"),
        "finish" => {
            let case_no = Some(f.case_no.trim().to_string()).filter(|s| !s.is_empty());
            app.finish(a, n, FinishTicket { case_no })
                .await
                .map(|_| "finished")
        }
        _ => return Err(PageError::NotFound { lang }),
    };
    match result {
        Ok(done) => Ok(Redirect::to(&format!("/desk?counter={n}&done={done}")).into_response()),
        Err(e) => {
            let status = status_of(&e);
            render_desk(
                &web,
                &staff,
                status,
                Some(n),
                None,
                Some(error_message(lang, &e)),
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct IntakeQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    ticket: Option<i64>,
    #[serde(default)]
    national_id: Option<String>,
}

/// The intake form as typed, re-shown with its errors.
#[derive(Default)]
struct Intake {
    service: Option<String>,
    ticket: Option<i64>,
    national_id: String,
    values: BTreeMap<String, String>,
    delivery: String,
    address: String,
    errors: Vec<FieldError>,
}

async fn render_intake(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    intake: Intake,
    error: Option<String>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let catalog = app.catalog();
    let ticket_view = match intake.ticket {
        Some(id) => app.ticket(id).await.ok(),
        None => None,
    };
    // Offered: the services the clerk holds an unexpired permission for, and of those
    // the ticket's group's (all of them when the group has none, e.g. document pickup).
    let me = app
        .get_staff(&staff.actor.username)
        .await
        .map_err(|e| PageError::app(e, lang))?
        .member();
    let today = app.today();
    let permitted: Vec<&markaz_sync::model::catalog::Service> = catalog
        .iter()
        .filter(|s| markaz_sync::model::staff::can_process(&me, s.authority, today).is_ok())
        .collect();
    let in_group: Vec<&markaz_sync::model::catalog::Service> = match &ticket_view {
        Some(t) => permitted
            .iter()
            .copied()
            .filter(|s| s.group.queue_group() == t.group)
            .collect(),
        None => Vec::new(),
    };
    let offered = if in_group.is_empty() {
        permitted
    } else {
        in_group
    };
    let services: Vec<Value> = offered
        .iter()
        .map(|s| context! { code => &s.code, name => if lang == Lang::Ar { &s.name_ar } else { &s.name_en }, group => s.group.queue_group() })
        .collect();
    let service = intake
        .service
        .as_deref()
        .and_then(|c| catalog.iter().find(|s| s.code == c));
    let fields: Vec<Value> = service
        .map(|s| {
            s.fields
                .iter()
                .map(|f| {
                    let kind = serde_json::to_value(&f.kind).unwrap_or_default();
                    let options: Vec<Value> = kind["options"]
                        .as_array()
                        .map(|opts| opts.iter().map(|o| context! { value => o["value"].as_str(), label => if lang == Lang::Ar { o["label_ar"].as_str() } else { o["label_en"].as_str() } }).collect())
                        .unwrap_or_default();
                    context! {
                        key => &f.key,
                        label => if lang == Lang::Ar { &f.label_ar } else { &f.label_en },
                        kind => kind["type"].as_str().unwrap_or("text"),
                        required => f.required,
                        options => options,
                        value => intake.values.get(&f.key).cloned().unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let fee = service
        .and_then(|s| app.fees().fee_for(&s.code, app.today()).ok())
        .map(|f| Value::from_serialize(&f));
    let ticket = ticket_view
        .as_ref()
        .map(|t| context! { id => t.id, number => &t.number });
    page(
        web,
        staff,
        status,
        "case_new.html",
        context! {
            services => services,
            service => service.map(|s| context! { code => &s.code, name => if lang == Lang::Ar { &s.name_ar } else { &s.name_en }, authority => s.authority.as_str() }),
            fields => fields,
            fee => fee,
            ticket => ticket,
            national_id => intake.national_id,
            delivery => if intake.delivery.is_empty() { "pickup".to_string() } else { intake.delivery },
            address => intake.address,
            not_registered => intake.errors.iter().any(|e| e.code == "citizen_not_registered"),
            errors => field_errors(lang, &intake.errors),
            error => error,
        },
    )
}

/// `GET /desk/case?ticket=ID&service=CODE`: the intake form.
pub async fn intake(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<IntakeQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::CreateCase)?;
    let national_id = match (q.national_id.clone(), q.ticket) {
        (Some(n), _) => n,
        (None, Some(id)) => web
            .app
            .ticket(id)
            .await
            .ok()
            .and_then(|t| t.national_id)
            .unwrap_or_default(),
        _ => String::new(),
    };
    let intake = Intake {
        service: q.service.filter(|s| !s.is_empty()),
        ticket: q.ticket,
        national_id,
        ..Intake::default()
    };
    render_intake(&web, &staff, StatusCode::OK, intake, None).await
}

/// `POST /desk/case`: creates the case; form fields of the service are named `f.<key>`.
pub async fn create(
    State(web): State<Web>,
    staff: Staff,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    staff.check_csrf(&get("csrf"))?;
    staff.require(Capability::CreateCase)?;
    let lang = staff.lang();
    let values: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("f.").map(|k| (k.to_string(), v.clone())))
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let ticket = get("ticket").trim().parse::<i64>().ok();
    let delivery_kind = get("delivery");
    let address = get("address");
    let delivery = if delivery_kind == "post" {
        DeliveryInput::Post {
            address: address.clone(),
        }
    } else {
        DeliveryInput::Pickup
    };
    let input = NewCase {
        national_id: get("national_id"),
        service: get("service"),
        fields: values.clone(),
        delivery,
        ticket_id: ticket,
    };
    match web.app.create_case(&staff.actor, input).await {
        Ok(case) => {
            Ok(Redirect::to(&format!("/cases/{}?done=case_created", case.case_no)).into_response())
        }
        Err(AppError::Invalid(errs)) => {
            // The form's address input is `address`; the app names it `delivery.address`.
            let errs = errs
                .into_iter()
                .map(|mut e| {
                    if e.field == "delivery.address" {
                        e.field = "address".into();
                    }
                    e
                })
                .collect();
            let intake = Intake {
                service: Some(get("service")),
                ticket,
                national_id: get("national_id"),
                values,
                delivery: delivery_kind,
                address,
                errors: errs,
            };
            render_intake(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                intake,
                Some(super::i18n::t(lang, "error.invalid").to_string()),
            )
            .await
        }
        Err(e) => {
            let status = status_of(&e);
            let intake = Intake {
                service: Some(get("service")),
                ticket,
                national_id: get("national_id"),
                values,
                delivery: delivery_kind,
                address,
                errors: Vec::new(),
            };
            render_intake(&web, &staff, status, intake, Some(error_message(lang, &e))).await
        }
    }
}
