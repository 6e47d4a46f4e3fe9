//! The operator JSON API of the data the centers and the hub share: staff of every
//! center and their permissions ([`crate::portal`]), portal cases as the electronic
//! services center follows them and actions on cases — portal stages, cancellation,
//! conflict resolution ([`crate::casework`]).
//!
//! Errors are the API's format (`{"error":{"code","message","field"}}`); an action the
//! case's state does not allow is 409 with the transition's code.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use markaz_sync::model::CenterId;
use markaz_sync::model::case::CaseStatus;
use serde::Deserialize;

use super::{ApiError, Q, WebState};
use crate::casework::{self, CaseworkError, HubAction, PortalCaseRow};
use crate::portal::{self, PortalError, StaffRow};

/// The routes of this module (merged into the operator router, behind its guard).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/staff", get(staff_list))
        .route("/api/v1/staff/{center}/{username}", get(staff_one))
        .route(
            "/api/v1/staff/{center}/{username}/deactivate",
            post(deactivate),
        )
        .route("/api/v1/staff/{center}/{username}/activate", post(activate))
        .route("/api/v1/portal/cases", get(portal_list))
        .route("/api/v1/portal/cases/{case_no}", get(portal_one))
        .route("/api/v1/cases/{case_no}/actions", post(case_action))
}

/// An error of these handlers: the API's, or an action the case's state refuses (409).
#[derive(Debug)]
pub(super) enum DataError {
    Api(ApiError),
    Refused { code: &'static str, message: String },
}

impl<E: Into<ApiError>> From<E> for DataError {
    fn from(e: E) -> DataError {
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

fn center_of(s: &str) -> Result<CenterId, ApiError> {
    s.parse()
        .map_err(|e: markaz_sync::model::IdError| ApiError::Bad(e.to_string()))
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StaffQuery {
    center: Option<String>,
}

async fn staff_list(
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

async fn staff_one(
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

async fn set_active(
    s: WebState,
    center: String,
    username: String,
    active: bool,
) -> Result<Json<StaffRow>, DataError> {
    let center = center_of(&center)?;
    let row = s
        .writer
        .run(move |e| {
            portal::set_hub_active(e, &center, &username, active)?;
            portal::staff_row_of(e, &center, &username, today())
        })
        .await??;
    row.map(Json)
        .ok_or(DataError::Api(ApiError::Portal(PortalError::NotFound(
            "staff member".into(),
        ))))
}

async fn deactivate(
    State(s): State<WebState>,
    Path((center, username)): Path<(String, String)>,
) -> Result<Json<StaffRow>, DataError> {
    set_active(s, center, username, false).await
}

async fn activate(
    State(s): State<WebState>,
    Path((center, username)): Path<(String, String)>,
) -> Result<Json<StaffRow>, DataError> {
    set_active(s, center, username, true).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortalQuery {
    status: Option<CaseStatus>,
}

async fn portal_list(
    State(s): State<WebState>,
    Q(q): Q<PortalQuery>,
) -> Result<Json<Vec<PortalCaseRow>>, DataError> {
    let rows = s
        .writer
        .run(move |e| casework::portal_cases(e, q.status))
        .await??;
    Ok(Json(rows))
}

async fn portal_one(
    State(s): State<WebState>,
    Path(case_no): Path<String>,
) -> Result<Json<PortalCaseRow>, DataError> {
    let (_, view) = s
        .writer
        .run(move |e| casework::find_case(e, &case_no))
        .await??;
    Ok(Json(PortalCaseRow::of(&view)))
}

async fn case_action(
    State(s): State<WebState>,
    Path(case_no): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PortalCaseRow>, DataError> {
    let action: HubAction = super::json_body(&body)?;
    let by = "operator".to_string();
    let view = s
        .writer
        .run(move |e| casework::act(e, &case_no, &action, &by, jiff::Timestamp::now()))
        .await??;
    Ok(Json(PortalCaseRow::of(&view)))
}
