//! The one place where errors become HTTP responses: `{"error":{"code","message"}}` with
//! the right status, plus `field`/`fields` when input was at fault.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;

/// An API error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub fields: Vec<serde_json::Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        use AppError::*;
        match e {
            Invalid(errs) => {
                let message = errs
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message_en))
                    .collect::<Vec<_>>()
                    .join("; ");
                let fields = errs
                    .iter()
                    .map(|f| json!({"field": f.field, "code": f.code, "message": f.message_en, "message_ar": f.message_ar}))
                    .collect();
                Self {
                    fields,
                    ..Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
                }
            }
            NotFound { what } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            Unprocessable { code, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in first; the session is missing or expired",
            ),
            Forbidden { code, message } => Self::new(StatusCode::FORBIDDEN, code, message),
            RateLimited { retry_after_secs } => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many failed logins; try again in {retry_after_secs} s"),
                )
            },
            Storage(crate::storage::StorageError::Refused(why)) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_refused",
                format!(
                    "the node refuses writes until a technician repairs its database ({why}); nothing was saved"
                ),
            ),
            Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the node could not store this; nothing was saved, try again",
                )
            }
            Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it was logged",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field and what was expected.
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    e.body_text(),
                )
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than this node accepts",
                )
            }
            other => Self::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            error["field"] = self.fields[0]["field"].clone();
            error["fields"] = serde_json::Value::Array(self.fields);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A JSON body extractor whose rejections use the API's error format.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// A query extractor whose rejections use the API's error format.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

/// A path extractor whose rejections use the API's error format.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct P<T>(pub T);

/// A JSON body that may be absent: an empty request body gives `None`; anything else
/// must be valid JSON of `T`.
#[derive(Debug)]
pub struct OptionalBody<T>(pub Option<T>);

impl<S, T> axum::extract::FromRequest<S> for OptionalBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = match req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
        {
            Some(len) => len.trim() == "0",
            None => !req.headers().contains_key(header::TRANSFER_ENCODING),
        };
        if empty {
            return Ok(OptionalBody(None));
        }
        let Body(v) = Body::<T>::from_request(req, state).await?;
        Ok(OptionalBody(Some(v)))
    }
}

/// The client's IP address, when the server was started with connect info.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(super::client_addr(parts)))
    }
}
