//! The operator pages and the operator API on `hub.web_listen`.
//!
//! Who may do what: every route has a row in [`access::ACCESS`] (a route without one is
//! refused), and the [`access::authorize`] layer resolves the caller before any handler
//! runs — a session cookie from the login page (CSRF-checked on every change), or
//! `Authorization: Bearer` with an operator's API token (or, only with
//! `hub.legacy_operator_token`, the old shared token, acting as an administrator).
//! Every change an operator makes is written to the audit log with who, when, from
//! which address, and the value before and after.
//!
//! Pages are server-rendered from templates ([`pages`], the shared environment of
//! `markaz_web::render`), Arabic first and right to left with an English toggle per
//! operator, times in the governorate's time zone: [`catalog`] (services and dated
//! fees), [`oversight`] (figures per center, service and day, and their CSV), [`energy`]
//! (charts drawn as inline SVG by [`charts`]), [`conflicts`], [`staff`], [`eservices`]
//! (casework and staff). The older report page ([`reports`]: statistics) is still
//! hand-built and takes `?lang=en`. Every page has a JSON twin under `/api/v1/…`
//! ([`api`]), whose errors are the node API's format `{"error":{"code","message","field"}}`.

pub mod access;
mod api;
mod catalog;
mod charts;
mod conflicts;
mod data;
mod energy;
mod eservices;
pub mod i18n;
mod login;
mod oversight;
mod pages;
mod reports;
mod staff;
mod synclog;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use markaz_config::HubSection;
use markaz_web::login::LoginPolicy;
use markaz_web::session::SessionPolicy;

use crate::catalog::CatalogError;
use crate::operators::OperatorError;
use crate::portal::PortalError;
use crate::storage::{HubWriter, StorageError};

pub use access::{ACCESS, Caller, Need};

/// The session cookie of the operator pages (not the node's name: a hub and a node on
/// one host would otherwise share it, cookies ignore ports).
pub const SESSION_COOKIE: &str = "markaz_hub_session";
/// The language an operator chose on this browser.
pub const LANG_COOKIE: &str = "markaz_hub_lang";

/// Page and login settings from the hub's config.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The governorate's time zone (`hub.timezone`).
    pub timezone: jiff::tz::TimeZone,
    /// A center without a successful sync for longer stands out (`hub.silent_after_minutes`).
    pub silent_after_ms: i64,
    /// The old shared token, accepted as an administrator's only when configured.
    pub legacy_token: Option<String>,
    /// Mark the session cookie `Secure`.
    pub secure_cookies: bool,
    pub sessions: SessionPolicy,
    pub logins: LoginPolicy,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            timezone: jiff::tz::db()
                .get("Asia/Damascus")
                .unwrap_or(jiff::tz::TimeZone::UTC),
            silent_after_ms: 60 * 60_000,
            legacy_token: None,
            secure_cookies: false,
            sessions: SessionPolicy::default(),
            logins: LoginPolicy::default(),
        }
    }
}

impl WebOptions {
    /// From `[hub]`; `legacy_token` is the shared token, read only when the config
    /// accepts it.
    pub fn from_config(hub: &HubSection, legacy_token: Option<String>) -> WebOptions {
        WebOptions {
            timezone: hub.timezone.time_zone(),
            silent_after_ms: i64::from(hub.silent_after_minutes) * 60_000,
            legacy_token,
            secure_cookies: hub.secure_cookies,
            ..WebOptions::default()
        }
    }
}

/// Shared state of the web handlers.
#[derive(Clone, Debug)]
pub struct WebState {
    pub writer: HubWriter,
    pub options: Arc<WebOptions>,
}

impl WebState {
    pub fn new(writer: HubWriter, options: WebOptions) -> WebState {
        WebState {
            writer,
            options: Arc::new(options),
        }
    }
}

/// Errors of the operator API, mapped to status codes here and only here. The body is
/// the node API's format: `{"error":{"code","message","field"}}` (`field` when input was
/// at fault).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("log in, or send an operator API token")]
    Unauthorized,
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the form's CSRF token is missing or wrong; reload the page")]
    Csrf,
    #[error(transparent)]
    Portal(#[from] PortalError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A body of the wrong shape (422).
    #[error("bad request: {0}")]
    Bad(String),
    /// A body that is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A query string of the wrong shape (400).
    #[error("bad query: {0}")]
    Query(String),
    #[error("not found")]
    NotFound,
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::Query(r.body_text())
    }
}

/// A query extractor whose rejections use the API's error format.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct Q<T>(T);

impl ApiError {
    /// Status, code and the field at fault.
    fn parts(&self) -> (StatusCode, &str, Option<String>) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf", None),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json", None),
            ApiError::Query(_) => (StatusCode::BAD_REQUEST, "invalid_query", None),
            ApiError::Bad(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", None),
            ApiError::Portal(PortalError::Invalid { field, .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some(field.clone()),
            ),
            ApiError::Operator(OperatorError::Invalid { field, .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some(field.to_string()),
            ),
            ApiError::Operator(OperatorError::Exists(_)) => {
                (StatusCode::CONFLICT, "exists", Some("username".into()))
            }
            ApiError::Operator(OperatorError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", None)
            }
            ApiError::Catalog(CatalogError::Invalid { field, code, .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, Some(field.clone()))
            }
            ApiError::Catalog(CatalogError::Conflict { field, code, .. }) => {
                (StatusCode::CONFLICT, code, Some(field.clone()))
            }
            ApiError::Catalog(CatalogError::UnknownService(_)) => {
                (StatusCode::NOT_FOUND, "not_found", Some("code".into()))
            }
            ApiError::Portal(PortalError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", None)
            }
            ApiError::Portal(PortalError::Storage(_))
            | ApiError::Operator(OperatorError::Storage(_))
            | ApiError::Storage(_)
            | ApiError::Catalog(CatalogError::Storage(_) | CatalogError::NoCatalog) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage", None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "operator API failed");
        }
        markaz_web::http::json_error(status, code, &self.to_string(), field.as_deref())
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The router of the operator listener: every route is listed in [`access::ACCESS`].
pub fn router(state: WebState) -> Router {
    Router::new()
        // Login, logout, language, the home redirect, the own account.
        .route("/", get(login::home))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/lang", post(login::set_lang))
        .route("/account", get(pages::account))
        .route("/account/password", post(pages::change_password))
        // Templated pages.
        .route("/centers", get(pages::centers))
        .route("/centers/{center}", get(pages::center))
        .route("/audit", get(pages::audit))
        .route(
            "/operators",
            get(pages::operators).post(pages::add_operator),
        )
        .route("/operators/{username}", post(pages::update_operator))
        .route("/operators/{username}/tokens", post(pages::add_token))
        .route("/operators/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/operators/limits/clear", post(pages::clear_limit))
        .route("/sync-log", get(synclog::sessions))
        .route("/sync-log/requests", get(synclog::requests))
        // Hand-built report pages.
        .route("/stats", get(reports::page_stats))
        // Conflicts, staff and permissions, electronic services.
        .route("/conflicts", get(conflicts::list))
        .route("/conflicts/{case_no}/resolve", post(conflicts::resolve))
        .route("/staff", get(staff::list))
        .route("/staff/{center}/{username}/grant", post(staff::grant))
        .route("/staff/{center}/{username}/revoke", post(staff::revoke))
        .route("/staff/{center}/{username}/active", post(staff::set_active))
        .route("/eservices", get(eservices::list).post(eservices::enter))
        .route("/eservices/{case_no}", get(eservices::case))
        .route("/eservices/{case_no}/action", post(eservices::action))
        // Catalog and fees, oversight, energy.
        .route("/catalog", get(catalog::list))
        .route("/catalog/new", get(catalog::new_service))
        .route("/catalog/services", post(catalog::create))
        .route(
            "/catalog/services/{code}",
            get(catalog::service).post(catalog::save),
        )
        .route("/catalog/services/{code}/fees", post(catalog::add_fee))
        .route("/oversight", get(oversight::page_oversight))
        .route("/oversight.csv", get(oversight::export_csv))
        .route("/energy", get(energy::page_energy))
        // JSON.
        .route("/api/v1/me", get(api::me))
        .route("/api/v1/centers", get(api::centers))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/sync-log", get(api::sync_log))
        .route("/api/v1/sync-log/requests", get(api::sync_requests))
        .route("/api/v1/conflicts", get(api::conflicts))
        .route("/api/v1/oversight", get(api::oversight))
        .route("/api/v1/energy", get(api::energy))
        .route("/api/v1/energy/compare", get(api::energy_compare))
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/catalog", get(api::catalog))
        .route("/api/v1/catalog/services/{code}", put(api::put_service))
        .route("/api/v1/catalog/services/{code}/fees", post(api::add_fee))
        .route(
            "/api/v1/portal/cases",
            get(data::portal_list).post(api::portal_case),
        )
        .route("/api/v1/portal/cases/{case_no}", get(data::portal_one))
        .route("/api/v1/cases/{case_no}/actions", post(data::case_action))
        .route("/api/v1/staff", get(data::staff_list))
        .route(
            "/api/v1/staff/{center}/{username}",
            get(data::staff_one).put(api::put_staff),
        )
        .route(
            "/api/v1/staff/{center}/{username}/deactivate",
            post(data::deactivate),
        )
        .route(
            "/api/v1/staff/{center}/{username}/activate",
            post(data::activate),
        )
        .route(
            "/api/v1/staff/{center}/{username}/permissions",
            post(api::grant),
        )
        .route(
            "/api/v1/staff/{center}/{username}/permissions/{authority}",
            delete(api::revoke),
        )
        .route("/api/v1/audit", get(api::audit))
        .route(
            "/api/v1/operators",
            get(api::operators).post(api::add_operator),
        )
        .route("/api/v1/operators/{username}", put(api::update_operator))
        .route(
            "/api/v1/operators/{username}/tokens",
            get(api::tokens).post(api::add_token),
        )
        .route("/api/v1/tokens/{id}", delete(api::revoke_token))
        .route(
            "/api/v1/login-limits",
            get(api::login_limits).delete(api::clear_login_limits),
        )
        .route("/assets/markaz.css", get(markaz_web::http::stylesheet))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .layer(axum::middleware::from_fn(
            markaz_web::http::security_headers,
        ))
        .with_state(state)
}
