//! The electronic services center's pages: enter a portal case (paid electronically)
//! for pickup at a chosen center or for delivery by post, follow each case to delivery,
//! and work a case sent by post — start, ready, handed to the post with its tracking
//! number — or cancel any portal case with a reason. Intake is [`crate::portal::intake`]
//! (the API's validation), the stages [`crate::casework::act`]; each write is audited
//! (`portal.case`, `case.start`, `case.ready`, `case.post`, `case.cancel`).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use markaz_sync::model::case::{Bank, CaseEventKind, CaseStatus, Delivery};
use markaz_sync::model::citizen::CitizenInput;
use markaz_web::http::urlencode;
use markaz_web::i18n::Lang;
use minijinja::{Value, context};
use serde::Deserialize;

use super::access::Caller;
use super::api::load_centers;
use super::conflicts::refusal;
use super::data::{self, DataError, center_of};
use super::pages::{failed, field, flash, form, local, page};
use super::{ApiError, Q, WebState};
use crate::casework::{self, HubAction, PortalCaseRow};
use crate::catalog;
use crate::operators::Role;
use crate::portal::{EPayment, PortalError, PortalIntake};

/// The citizen fields of the intake form, in the form's order.
const CITIZEN_FIELDS: [&str; 8] = [
    "national_id",
    "full_name",
    "father_name",
    "mother_name",
    "birth_date",
    "birth_place",
    "phone",
    "address",
];

/// The actions of a case sent by post, as its page offers them.
const ACTIONS: [&str; 4] = ["start", "ready", "post", "cancel"];

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    done: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

fn ts(s: &WebState, t: Option<jiff::Timestamp>) -> Option<String> {
    local(s, t.map(|t| t.as_millisecond()))
}

fn delivery_ctx(d: &Delivery) -> Value {
    match d {
        Delivery::Pickup { center } => context! { mode => "pickup", center => center.as_str() },
        Delivery::Post { address } => context! { mode => "post", address => address },
    }
}

fn row_ctx(s: &WebState, r: &PortalCaseRow) -> Value {
    context! {
        case_no => r.case_no, service => r.service, citizen => r.citizen,
        delivery => delivery_ctx(&r.delivery), status => r.status.as_str(),
        tracking => r.tracking, created => ts(s, r.created_at), updated => ts(s, r.updated_at),
        conflict => r.conflict, resolved => r.resolved,
    }
}

/// `GET /eservices?status=`: every portal case, newest first, and the intake form.
pub(super) async fn list(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<ListQuery>,
) -> Response {
    let flash = flash(caller.lang, q.done.as_deref());
    let status = q.status.as_deref().and_then(parse_status);
    list_page(&s, &caller, status, StatusCode::OK, flash, None, &[]).await
}

fn parse_status(v: &str) -> Option<CaseStatus> {
    serde_json::from_value(serde_json::Value::String(v.into())).ok()
}

async fn list_page(
    s: &WebState,
    caller: &Caller,
    status: Option<CaseStatus>,
    code: StatusCode,
    flash: Option<String>,
    error: Option<String>,
    entered: &[(String, String)],
) -> Response {
    let centers: Vec<String> = match load_centers(s).await {
        Ok(c) => c.into_iter().map(|c| c.center).collect(),
        Err(e) => return failed(caller, e),
    };
    let loaded = s
        .writer
        .run(move |e| {
            let rows = casework::portal_cases(e, status)?;
            let cat = catalog::entries(e, catalog::today(jiff::Timestamp::now())).ok();
            Ok::<_, PortalError>((rows, cat))
        })
        .await;
    let (rows, cat) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(caller, e.into()),
        Err(e) => return failed(caller, e.into()),
    };
    let en = caller.lang == Lang::En;
    let services: Vec<Value> = cat
        .map(|c| c.services)
        .unwrap_or_default()
        .iter()
        .map(|x| {
            let fields: Vec<Value> = x
                .service
                .fields
                .iter()
                .map(|f| {
                    context! {
                        key => f.key, required => f.required,
                        label => if en { &f.label_en } else { &f.label_ar },
                    }
                })
                .collect();
            context! {
                code => x.service.code,
                name => if en { &x.service.name_en } else { &x.service.name_ar },
                fields => fields,
            }
        })
        .collect();
    let banks: Vec<Value> = Bank::ALL
        .iter()
        .map(|b| {
            context! {
                value => serde_json::to_value(b).ok().and_then(|v| v.as_str().map(str::to_string)),
                name => if en { b.name_en() } else { b.name_ar() },
            }
        })
        .collect();
    let entered: BTreeMap<&str, &str> = entered
        .iter()
        .filter(|(k, _)| k != "csrf")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let rows: Vec<Value> = rows.iter().map(|r| row_ctx(s, r)).collect();
    let path = match status {
        Some(st) => format!("/eservices?status={}", st.as_str()),
        None => "/eservices".into(),
    };
    page(
        caller,
        &path,
        code,
        "eservices.html",
        context! {
            rows => rows, centers => centers, services => services, banks => banks,
            statuses => CaseStatus::ALL.map(CaseStatus::as_str),
            chosen => status.map(CaseStatus::as_str),
            citizen_fields => CITIZEN_FIELDS, entered => entered,
            can_write => caller.operator.has_any(&[Role::Eservices]),
            flash => flash, error => error,
        },
    )
}

/// The intake of the form's fields (citizen, service, its fields `f.<service>.<key>`,
/// payment, delivery).
fn intake_of(pairs: &[(String, String)]) -> Result<PortalIntake, DataError> {
    let f = |n: &str| field(pairs, n).trim().to_string();
    let bad = |field: &str, message: &str| {
        DataError::Api(ApiError::Portal(PortalError::Invalid {
            field: field.into(),
            message: message.into(),
        }))
    };
    let service = f("service");
    let prefix = format!("f.{service}.");
    let fields: BTreeMap<String, String> = pairs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.trim().to_string())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let bank: Bank = serde_json::from_value(serde_json::Value::String(f("bank")))
        .map_err(|_| bad("payment.bank", "choose a bank"))?;
    let delivery = match f("mode").as_str() {
        "pickup" => Delivery::Pickup {
            center: center_of(&f("center"))
                .map_err(|_| bad("delivery.center", "choose a center"))?,
        },
        "post" => Delivery::Post {
            address: f("postal_address"),
        },
        _ => return Err(bad("delivery.mode", "pickup or post")),
    };
    Ok(PortalIntake {
        citizen: CitizenInput {
            national_id: f("national_id"),
            full_name: f("full_name"),
            father_name: f("father_name"),
            mother_name: f("mother_name"),
            birth_date: f("birth_date"),
            birth_place: f("birth_place"),
            phone: f("phone"),
            address: f("address"),
        },
        service,
        fields,
        payment: EPayment {
            reference: f("reference"),
            bank,
        },
        delivery,
    })
}

/// `POST /eservices`: a new portal case from the intake form; on to its page.
pub(super) async fn enter(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let result = async {
        let intake = intake_of(&pairs)?;
        let created = super::api::enter_portal_case(&s, caller.who(), intake).await?;
        Ok::<_, DataError>(created)
    }
    .await;
    match result {
        Ok(c) => Redirect::to(&format!(
            "/eservices/{}?done=portal_case_entered",
            urlencode(&c.case_no)
        ))
        .into_response(),
        Err(e) => match refusal(&caller, e) {
            Ok((code, msg)) => list_page(&s, &caller, None, code, None, Some(msg), &pairs).await,
            Err(resp) => resp,
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CaseQuery {
    done: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// `GET /eservices/{case_no}`: one portal case, its history and what may be done next.
pub(super) async fn case(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(case_no): Path<String>,
    Q(q): Q<CaseQuery>,
) -> Response {
    let flash = flash(caller.lang, q.done.as_deref());
    case_page(&s, &caller, case_no, StatusCode::OK, flash, None).await
}

async fn case_page(
    s: &WebState,
    caller: &Caller,
    case_no: String,
    code: StatusCode,
    flash: Option<String>,
    error: Option<String>,
) -> Response {
    let found = s
        .writer
        .run(move |e| casework::find_case(e, &case_no))
        .await;
    let view = match found {
        Ok(Ok((_, v))) if v.center.is_none() => v,
        Ok(Ok(_)) | Ok(Err(PortalError::NotFound(_))) => {
            return failed(caller, ApiError::NotFound);
        }
        Ok(Err(e)) => return failed(caller, e.into()),
        Err(e) => return failed(caller, e.into()),
    };
    let row = PortalCaseRow::of(&view);
    let events: Vec<Value> = view
        .events
        .iter()
        .map(|e| {
            let detail = match &e.kind {
                CaseEventKind::Posted { tracking } => Some(tracking.clone()),
                CaseEventKind::Cancelled { reason } | CaseEventKind::Rejected { reason } => {
                    Some(reason.clone())
                }
                CaseEventKind::Resolved { reason, .. } => Some(reason.clone()),
                CaseEventKind::Routed { to } => Some(to.to_string()),
                _ => None,
            };
            context! {
                kind => e.kind.name(), actor => e.actor, at => ts(s, Some(e.at)),
                detail => detail,
            }
        })
        .collect();
    let by_post = matches!(view.delivery, Delivery::Post { .. });
    let status = view.derived.status;
    let terminal = matches!(
        status,
        CaseStatus::Delivered | CaseStatus::Posted | CaseStatus::Cancelled | CaseStatus::Rejected
    );
    // What the case's state allows next (the API checks again).
    let next: Vec<&str> = if terminal || !caller.operator.has_any(&[Role::Eservices]) {
        Vec::new()
    } else {
        let mut v = Vec::new();
        if by_post {
            match status {
                CaseStatus::Created | CaseStatus::Paid => v.push("start"),
                CaseStatus::InProgress => v.push("ready"),
                CaseStatus::Ready | CaseStatus::Notified => v.push("post"),
                _ => {}
            }
        }
        v.push("cancel");
        v
    };
    page(
        caller,
        &format!("/eservices/{}", row.case_no),
        code,
        "eservice.html",
        context! {
            case => row_ctx(s, &row), events => events, next => next,
            flash => flash, error => error,
        },
    )
}

/// `POST /eservices/{case_no}/action`: `action` (`start`, `ready`, `post` with
/// `tracking`, `cancel` with `reason`).
pub(super) async fn action(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(case_no): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let action = match field(&pairs, "action").as_str() {
        "start" => Some(HubAction::Start),
        "ready" => Some(HubAction::Ready),
        "post" => Some(HubAction::Post {
            tracking: field(&pairs, "tracking"),
        }),
        "cancel" => Some(HubAction::Cancel {
            reason: field(&pairs, "reason"),
        }),
        _ => None,
    };
    let result = match action {
        Some(a) => data::act(&s, &caller, case_no.clone(), a).await,
        None => Err(DataError::Api(ApiError::Bad(format!(
            "action: one of {ACTIONS:?}"
        )))),
    };
    match result {
        Ok(row) => Redirect::to(&format!(
            "/eservices/{}?done=case_updated",
            urlencode(&row.case_no)
        ))
        .into_response(),
        Err(DataError::Api(ApiError::Forbidden)) => failed(&caller, ApiError::Forbidden),
        Err(e) => match refusal(&caller, e) {
            Ok((code, msg)) => case_page(&s, &caller, case_no, code, None, Some(msg)).await,
            Err(resp) => resp,
        },
    }
}

/// The catalog keys the intake form builds from [`CITIZEN_FIELDS`] (checked in both
/// catalogs by the pages' tests).
#[cfg(test)]
pub(super) fn citizen_keys() -> Vec<String> {
    CITIZEN_FIELDS
        .iter()
        .map(|f| format!("citizen.{f}"))
        .collect()
}

/// The catalog keys of the actions' buttons.
#[cfg(test)]
pub(super) fn action_keys() -> Vec<String> {
    ACTIONS.iter().map(|a| format!("action.{a}")).collect()
}
