//! The operator JSON API of the data the centers and the hub share: staff of every
//! center and their permissions ([`crate::portal`]), portal cases as the electronic
//! services center follows them and actions on cases — portal stages, cancellation,
//! conflict resolution ([`crate::casework`]). Every change is audited with its value
//! before and after; the pages call the same functions.
//!
//! Errors are the API's format (`{"error":{"code","message","field"}}`); an action the
//! case's state does not allow is 409 with the transition's code.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use markaz_sync::docs::CaseView;
use markaz_sync::model::CenterId;
use markaz_sync::model::case::CaseStatus;
use serde::Deserialize;

use super::{ApiError, Caller, Q, WebState};
use crate::casework::{self, CaseworkError, HubAction, PortalCaseRow};
use crate::operators::Role;
use crate::portal::{self, PortalError, StaffRow};

/// An error of these handlers: the API's, or an action the case's state refuses (409).
#[derive(Debug)]
pub(super) enum DataError {
    Api(ApiError),
    Refused { code: &'static str, message: String },
}

impl From<ApiError> for DataError {
    fn from(e: ApiError) -> DataError {
        DataError::Api(e)
    }
}

impl From<crate::storage::StorageError> for DataError {
    fn from(e: crate::storage::StorageError) -> DataError {
        DataError::Api(e.into())
    }
}

impl From<PortalError> for DataError {
    fn from(e: PortalError) -> DataError {
        DataError::Api(e.into())
    }
}

impl From<CaseworkError> for DataError {
    fn from(e: CaseworkError) -> DataError {
        match e {
            CaseworkError::Portal(p) => DataError::Api(ApiError::Portal(p)),
            CaseworkError::Refused { code, message } => DataError::Refused { code, message },
        }
    }
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        match self {
            DataError::Api(e) => e.into_response(),
            DataError::Refused { code, message } => (
                StatusCode::CONFLICT,
                Json(serde_json::json!({"error": {"code": code, "message": message}})),
            )
                .into_response(),
        }
    }
}

pub(super) fn center_of(s: &str) -> Result<CenterId, ApiError> {
    s.parse()
        .map_err(|e: markaz_sync::model::IdError| ApiError::Bad(e.to_string()))
}

pub(super) fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StaffQuery {
    center: Option<String>,
}

pub(super) async fn staff_list(
    State(s): State<WebState>,
    Q(q): Q<StaffQuery>,
) -> Result<Json<Vec<StaffRow>>, DataError> {
    let center = q.center.as_deref().map(center_of).transpose()?;
    let rows = s
        .writer
        .run(move |e| portal::list_staff(e, center.as_ref(), today()))
        .await??;
    Ok(Json(rows))
}

pub(super) async fn staff_one(
    State(s): State<WebState>,
    Path((center, username)): Path<(String, String)>,
) -> Result<Json<StaffRow>, DataError> {
    let center = center_of(&center)?;
    let row = s
        .writer
        .run(move |e| portal::staff_row_of(e, &center, &username, today()))
        .await??;
    row.map(Json)
        .ok_or(DataError::Api(ApiError::Portal(PortalError::NotFound(
            "staff member".into(),
        ))))
}

/// The hub's deactivation of a staff member (`hub_active`), audited with the row before
/// and after.
pub(super) async fn set_active(
    s: &WebState,
    caller: &Caller,
    center: &str,
    username: String,
    active: bool,
) -> Result<StaffRow, DataError> {
    let center = center_of(center)?;
    let who = caller.who();
    let row = s
        .writer
        .run(move |e| {
            let before = portal::staff_row_of(e, &center, &username, today())?;
            if before.is_none() {
                return Err(ApiError::Portal(PortalError::NotFound(
                    "staff member".into(),
                )));
            }
            portal::set_hub_active(e, &center, &username, active)?;
            let after = portal::staff_row_of(e, &center, &username, today())?;
            e.record_audit(&who.entry(
                if active {
                    "staff.hub_activate"
                } else {
                    "staff.hub_deactivate"
                },
                Some(center.as_str()),
                &username,
                before.as_ref().and_then(|b| serde_json::to_value(b).ok()),
                after.as_ref().and_then(|a| serde_json::to_value(a).ok()),
            ))?;
            Ok::<_, ApiError>(after)
        })
        .await??;
    row.ok_or(DataError::Api(ApiError::Portal(PortalError::NotFound(
        "staff member".into(),
    ))))
}

pub(super) async fn deactivate(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
) -> Result<Json<StaffRow>, DataError> {
    Ok(Json(
        set_active(&s, &caller, &center, username, false).await?,
    ))
}

pub(super) async fn activate(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
) -> Result<Json<StaffRow>, DataError> {
    Ok(Json(
        set_active(&s, &caller, &center, username, true).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortalQuery {
    status: Option<CaseStatus>,
}

pub(super) async fn portal_list(
    State(s): State<WebState>,
    Q(q): Q<PortalQuery>,
) -> Result<Json<Vec<PortalCaseRow>>, DataError> {
    let rows = s
        .writer
        .run(move |e| casework::portal_cases(e, q.status))
        .await??;
    Ok(Json(rows))
}

pub(super) async fn portal_one(
    State(s): State<WebState>,
    Path(case_no): Path<String>,
) -> Result<Json<PortalCaseRow>, DataError> {
    let (_, view) = s
        .writer
        .run(move |e| casework::find_case(e, &case_no))
        .await??;
    Ok(Json(PortalCaseRow::of(&view)))
}

/// What the audit log keeps of a case before and after an action.
fn case_summary(v: &CaseView) -> serde_json::Value {
    serde_json::json!({
        "status": v.derived.status,
        "conflict": v.derived.conflict,
    })
}

/// Carries out an action on a case as `caller`, audited with the case before and after.
/// A portal stage or a cancellation is the electronic services center's; a resolution is
/// for any role the route's row lets in.
pub(super) async fn act(
    s: &WebState,
    caller: &Caller,
    case_no: String,
    action: HubAction,
) -> Result<PortalCaseRow, DataError> {
    if !matches!(action, HubAction::Resolve { .. }) && !caller.operator.has_any(&[Role::Eservices])
    {
        return Err(DataError::Api(ApiError::Forbidden));
    }
    let who = caller.who();
    let by = who.operator.clone();
    let row = s
        .writer
        .run(move |e| {
            let (_, before) = casework::find_case(e, &case_no)?;
            let after = casework::act(e, &case_no, &action, &by, jiff::Timestamp::now())?;
            let kind = match &action {
                HubAction::Start => "case.start",
                HubAction::Ready => "case.ready",
                HubAction::Post { .. } => "case.post",
                HubAction::Cancel { .. } => "case.cancel",
                HubAction::Resolve { .. } => "case.resolve",
            };
            let center = after.center.as_ref().map(|c| c.to_string());
            e.record_audit(&who.entry(
                kind,
                center.as_deref(),
                after.case_no.as_str(),
                Some(case_summary(&before)),
                Some(serde_json::json!({"action": action, "case": case_summary(&after)})),
            ))
            .map_err(|e| DataError::Api(e.into()))?;
            Ok::<_, DataError>(PortalCaseRow::of(&after))
        })
        .await??;
    Ok(row)
}

pub(super) async fn case_action(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(case_no): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PortalCaseRow>, DataError> {
    let action: HubAction = super::api::json_body(&body)?;
    Ok(Json(act(&s, &caller, case_no, action).await?))
}
