//! The conflicts page: every case whose history holds two incompatible endings, and the
//! operator's resolution of each — the status that stands and why. The resolution is a
//! `Resolved` event in the case document ([`crate::casework::act`]), routed back to the
//! case's center; it is audited (`case.resolve`) with the case before and after.

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use markaz_sync::model::case::CaseStatus;
use markaz_web::i18n::Lang;
use minijinja::{Value, context};

use super::access::Caller;
use super::api::load_conflicts;
use super::data::{self, DataError};
use super::i18n::catalogs;
use super::pages::{DoneQuery, failed, field, flash, form, local, page};
use super::{ApiError, Q, WebState};
use crate::casework::HubAction;

/// `GET /conflicts`
pub(super) async fn list(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<DoneQuery>,
) -> Response {
    let flash = flash(caller.lang, q.done.as_deref());
    list_page(&s, &caller, StatusCode::OK, flash, None).await
}

async fn list_page(
    s: &WebState,
    caller: &Caller,
    status: StatusCode,
    flash: Option<String>,
    error: Option<String>,
) -> Response {
    let rows = match load_conflicts(s).await {
        Ok(r) => r,
        Err(e) => return failed(caller, e),
    };
    let open = rows.iter().filter(|c| c.resolution.is_none()).count();
    let rows: Vec<Value> = rows
        .iter()
        .map(|c| {
            let resolution = c.resolution.as_ref().map(|r| {
                context! {
                    outcome => r.outcome.as_str(), reason => r.reason, actor => r.actor,
                    at => local(s, Some(r.at.as_millisecond())),
                }
            });
            context! {
                case_no => c.case_no, center => c.center, service => c.service,
                status => c.status,
                message => if caller.lang == Lang::En { &c.message_en } else { &c.message_ar },
                outcomes => c.outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
                resolution => resolution,
            }
        })
        .collect();
    page(
        caller,
        "/conflicts",
        status,
        "conflicts.html",
        context! { rows => rows, open => open, flash => flash, error => error },
    )
}

/// A refused form: the list again with the reason on top (409 when the case's state
/// refuses, 422 for bad input). A failure of storage is the error page itself.
#[allow(clippy::result_large_err)] // the refusal is the response
pub(super) fn refusal(caller: &Caller, e: DataError) -> Result<(StatusCode, String), Response> {
    let invalid = catalogs().t(caller.lang, "error.invalid").to_string();
    match e {
        DataError::Refused { message, .. } => {
            Ok((StatusCode::CONFLICT, format!("{invalid} {message}")))
        }
        DataError::Api(e @ (ApiError::Bad(_) | ApiError::Portal(_))) if !is_storage(&e) => {
            let status = match e {
                ApiError::Portal(crate::portal::PortalError::NotFound(_)) => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Ok((status, format!("{invalid} {e}")))
        }
        DataError::Api(e) => Err(failed(caller, e)),
    }
}

fn is_storage(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Portal(crate::portal::PortalError::Storage(_)) | ApiError::Storage(_)
    )
}

/// `POST /conflicts/{case_no}/resolve`: `outcome` (one of the conflict's statuses) and
/// `reason`.
pub(super) async fn resolve(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(case_no): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let outcome: Result<CaseStatus, _> =
        serde_json::from_value(serde_json::Value::String(field(&pairs, "outcome")));
    let result = match outcome {
        Ok(outcome) => {
            let action = HubAction::Resolve {
                outcome,
                reason: field(&pairs, "reason"),
            };
            data::act(&s, &caller, case_no, action).await
        }
        Err(e) => Err(DataError::Api(ApiError::Bad(format!("outcome: {e}")))),
    };
    match result {
        Ok(_) => Redirect::to("/conflicts?done=resolved").into_response(),
        Err(e) => match refusal(&caller, e) {
            Ok((status, msg)) => list_page(&s, &caller, status, None, Some(msg)).await,
            Err(resp) => resp,
        },
    }
}
