//! Who may call which route: the one table [`ACCESS`] (method, route pattern, what it
//! needs) and the [`authorize`] layer that enforces it before any handler runs.
//!
//! The caller is resolved from, in order: the session cookie of the login page; a
//! bearer token that is an operator's API token; the old shared token, only when
//! `hub.legacy_operator_token` is set (it acts as the administrator `operator-token`).
//! A cookie session must send its CSRF token with every change (`X-CSRF-Token`, or the
//! `csrf` field of a form); an API token need not, a browser never sends one by itself.
//! A route missing from the table is refused (and a test fails).

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use markaz_web::http::{cookie, urlencode};
use markaz_web::i18n::Lang;
use markaz_web::password::{csrf_ok, csrf_token, token_hash};
use std::net::SocketAddr;

use super::{ApiError, LANG_COOKIE, SESSION_COOKIE, WebState, now_ms};
use crate::operators::{OperatorView, Role, Who};
use crate::storage::StorageError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone (login page, assets, health).
    Public,
    /// Any logged-in operator.
    Operator,
    /// An operator holding one of these roles (an admin holds every role).
    Any(&'static [Role]),
}

use Role::{Admin, Catalog, Eservices, Network, Oversight, Staff};

const WATCH: &[Role] = &[Oversight, Network];
const CASES: &[Role] = &[Oversight, Eservices];
const OVERSIGHT: &[Role] = &[Oversight];
const CATALOG_READ: &[Role] = &[Catalog, Eservices, Oversight];
const CATALOG: &[Role] = &[Catalog];
const STAFF: &[Role] = &[Staff];
const PORTAL: &[Role] = &[Eservices];
const ADMIN: &[Role] = &[Admin];

/// Every route of the operator listener: (method, route pattern, need).
pub const ACCESS: &[(&str, &str, Need)] = &[
    ("GET", "/", Need::Public),
    ("GET", "/login", Need::Public),
    ("POST", "/login", Need::Public),
    ("POST", "/lang", Need::Public),
    ("GET", "/assets/markaz.css", Need::Public),
    ("GET", "/healthz", Need::Public),
    ("POST", "/logout", Need::Operator),
    ("GET", "/account", Need::Operator),
    ("POST", "/account/password", Need::Operator),
    ("GET", "/api/v1/me", Need::Operator),
    ("GET", "/centers", Need::Any(WATCH)),
    ("GET", "/centers/{center}", Need::Any(WATCH)),
    ("GET", "/api/v1/centers", Need::Any(WATCH)),
    ("GET", "/api/v1/alerts", Need::Any(WATCH)),
    ("GET", "/sync-log", Need::Any(WATCH)),
    ("GET", "/sync-log/requests", Need::Any(WATCH)),
    ("GET", "/api/v1/sync-log", Need::Any(WATCH)),
    ("GET", "/api/v1/sync-log/requests", Need::Any(WATCH)),
    ("GET", "/energy", Need::Any(WATCH)),
    ("GET", "/api/v1/energy", Need::Any(WATCH)),
    ("GET", "/api/v1/energy/compare", Need::Any(WATCH)),
    ("GET", "/stats", Need::Any(OVERSIGHT)),
    ("GET", "/api/v1/stats", Need::Any(OVERSIGHT)),
    ("GET", "/oversight", Need::Any(OVERSIGHT)),
    ("GET", "/oversight.csv", Need::Any(OVERSIGHT)),
    ("GET", "/api/v1/oversight", Need::Any(OVERSIGHT)),
    ("GET", "/conflicts", Need::Any(CASES)),
    ("POST", "/conflicts/{case_no}/resolve", Need::Any(CASES)),
    ("GET", "/staff", Need::Any(STAFF)),
    ("POST", "/staff/{center}/{username}/grant", Need::Any(STAFF)),
    (
        "POST",
        "/staff/{center}/{username}/revoke",
        Need::Any(STAFF),
    ),
    (
        "POST",
        "/staff/{center}/{username}/active",
        Need::Any(STAFF),
    ),
    ("GET", "/eservices", Need::Any(CASES)),
    ("POST", "/eservices", Need::Any(PORTAL)),
    ("GET", "/eservices/{case_no}", Need::Any(CASES)),
    // A stage needs the electronic services role (checked in the handler); oversight
    // follows the cases.
    ("POST", "/eservices/{case_no}/action", Need::Any(PORTAL)),
    ("GET", "/api/v1/conflicts", Need::Any(CASES)),
    ("GET", "/catalog", Need::Any(CATALOG_READ)),
    ("GET", "/api/v1/catalog", Need::Any(CATALOG_READ)),
    ("GET", "/catalog/services/{code}", Need::Any(CATALOG_READ)),
    ("GET", "/catalog/new", Need::Any(CATALOG)),
    ("POST", "/catalog/services", Need::Any(CATALOG)),
    ("POST", "/catalog/services/{code}", Need::Any(CATALOG)),
    ("POST", "/catalog/services/{code}/fees", Need::Any(CATALOG)),
    ("PUT", "/api/v1/catalog/services/{code}", Need::Any(CATALOG)),
    (
        "POST",
        "/api/v1/catalog/services/{code}/fees",
        Need::Any(CATALOG),
    ),
    ("POST", "/api/v1/portal/cases", Need::Any(PORTAL)),
    ("PUT", "/api/v1/staff/{center}/{username}", Need::Any(STAFF)),
    ("GET", "/api/v1/portal/cases", Need::Any(CASES)),
    ("GET", "/api/v1/portal/cases/{case_no}", Need::Any(CASES)),
    // A portal stage or a cancellation needs the electronic services role (checked in
    // the handler); a conflict's resolution any of these.
    ("POST", "/api/v1/cases/{case_no}/actions", Need::Any(CASES)),
    ("GET", "/api/v1/staff", Need::Any(STAFF)),
    ("GET", "/api/v1/staff/{center}/{username}", Need::Any(STAFF)),
    (
        "POST",
        "/api/v1/staff/{center}/{username}/deactivate",
        Need::Any(STAFF),
    ),
    (
        "POST",
        "/api/v1/staff/{center}/{username}/activate",
        Need::Any(STAFF),
    ),
    (
        "POST",
        "/api/v1/staff/{center}/{username}/permissions",
        Need::Any(STAFF),
    ),
    (
        "DELETE",
        "/api/v1/staff/{center}/{username}/permissions/{authority}",
        Need::Any(STAFF),
    ),
    ("GET", "/audit", Need::Any(OVERSIGHT)),
    ("GET", "/api/v1/audit", Need::Any(OVERSIGHT)),
    ("GET", "/operators", Need::Any(ADMIN)),
    ("POST", "/operators", Need::Any(ADMIN)),
    ("POST", "/operators/{username}", Need::Any(ADMIN)),
    ("POST", "/operators/{username}/tokens", Need::Any(ADMIN)),
    ("POST", "/operators/tokens/{id}/revoke", Need::Any(ADMIN)),
    ("POST", "/operators/limits/clear", Need::Any(ADMIN)),
    ("GET", "/api/v1/operators", Need::Any(ADMIN)),
    ("POST", "/api/v1/operators", Need::Any(ADMIN)),
    ("PUT", "/api/v1/operators/{username}", Need::Any(ADMIN)),
    (
        "GET",
        "/api/v1/operators/{username}/tokens",
        Need::Any(ADMIN),
    ),
    (
        "POST",
        "/api/v1/operators/{username}/tokens",
        Need::Any(ADMIN),
    ),
    ("DELETE", "/api/v1/tokens/{id}", Need::Any(ADMIN)),
    ("GET", "/api/v1/login-limits", Need::Any(ADMIN)),
    ("DELETE", "/api/v1/login-limits", Need::Any(ADMIN)),
];

/// First path segments that are no page to come back to (the login flow, assets, JSON).
const NOT_PAGES: &[&str] = &["", "login", "logout", "lang", "assets", "healthz", "api"];

/// The first path segments of the hub's pages: every `GET` route of [`ACCESS`] but the
/// login flow, assets and the API. Only these (and `/`) are places a `next=` or a "back"
/// field may lead to.
pub fn own_pages() -> &'static [&'static str] {
    static PAGES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    PAGES.get_or_init(|| {
        let mut v: Vec<&'static str> = ACCESS
            .iter()
            .filter(|(m, _, _)| *m == "GET")
            .filter_map(|(_, p, _)| p.trim_start_matches('/').split('/').next())
            .filter(|first| !NOT_PAGES.contains(first))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// A path a form or `next=` may send the browser to: `/` or a page of this hub
/// ([`own_pages`]), by the shared rules of [`markaz_web::http::safe_back`].
pub fn safe_back(back: &str) -> &str {
    markaz_web::http::safe_back(back, own_pages())
}

/// What a route needs; `None` for a route without a row (refused).
pub fn need_of(method: &Method, pattern: &str) -> Option<Need> {
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ACCESS
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, n)| *n)
}

/// The caller of a route that needs an operator, as handlers see it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub operator: OperatorView,
    /// The client address.
    pub address: String,
    /// The session token, when the caller came with the session cookie (for CSRF and
    /// logout).
    pub session: Option<String>,
    /// The pages' language for this request.
    pub lang: Lang,
}

impl Caller {
    /// The CSRF token forms of this session carry ("" for an API token).
    pub fn csrf(&self) -> String {
        self.session.as_deref().map(csrf_token).unwrap_or_default()
    }

    /// Who makes a change now, for the audit log.
    pub fn who(&self) -> Who {
        Who {
            operator: self.operator.username.to_string(),
            address: self.address.clone(),
            at_ms: now_ms(),
        }
    }
}

/// The client's address (`local` when the listener did not record it).
pub fn client_address(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into())
}

/// The language of a page: `?lang=` (links and the old pages), then the browser's
/// cookie, then the operator's own setting, then Arabic.
pub fn language(req: &Request, operator: Option<&OperatorView>) -> Lang {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .and_then(Lang::from_code)
    });
    from_query
        .or_else(|| cookie(req.headers(), LANG_COOKIE).and_then(|c| Lang::from_code(&c)))
        .or_else(|| operator.and_then(|o| Lang::from_code(&o.language)))
        .unwrap_or_default()
}

enum Credential {
    Session(String),
    Bearer(String),
}

fn credential(headers: &HeaderMap) -> Option<Credential> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(Credential::Bearer(t.trim().to_string()));
    }
    cookie(headers, SESSION_COOKIE)
        .filter(|t| !t.is_empty())
        .map(Credential::Session)
}

/// The legacy shared token's operator: an administrator, in the audit log as
/// `operator-token`.
fn legacy_operator() -> OperatorView {
    OperatorView {
        username: "operator-token".parse().expect("a valid built-in username"),
        full_name: String::new(),
        roles: vec![Role::Admin],
        active: true,
        language: "ar".into(),
    }
}

/// Resolves a session or API token to its active operator; refreshes a session's idle
/// timer at most every `touch_every_ms`.
async fn resolve(
    state: &WebState,
    cred: &Credential,
) -> Result<Option<OperatorView>, StorageError> {
    let now = now_ms();
    let policy = state.options.sessions;
    match cred {
        Credential::Bearer(t) => {
            if let Some(legacy) = &state.options.legacy_token
                && markaz_web::password::constant_time_eq(t.as_bytes(), legacy.as_bytes())
            {
                return Ok(Some(legacy_operator()));
            }
            let hash = token_hash(t);
            state
                .writer
                .run(move |e| {
                    let user = match e.use_api_token(&hash, now)? {
                        Some(u) => Some(u),
                        // A session token works as a bearer token too (scripts that log in).
                        None => session_user(e, &hash, now, &policy)?,
                    };
                    active_operator(e, user)
                })
                .await?
        }
        Credential::Session(t) => {
            let hash = token_hash(t);
            state
                .writer
                .run(move |e| {
                    let user = session_user(e, &hash, now, &policy)?;
                    active_operator(e, user)
                })
                .await?
        }
    }
}

fn session_user(
    e: &mut dyn crate::storage::HubEngine,
    hash: &str,
    now: i64,
    policy: &markaz_web::session::SessionPolicy,
) -> Result<Option<String>, StorageError> {
    let Some(s) = e.session(hash)? else {
        return Ok(None);
    };
    if !policy.alive(s.created_ms, s.last_seen_ms, now) {
        e.delete_session(hash)?;
        return Ok(None);
    }
    if now - s.last_seen_ms >= policy.touch_every_ms() {
        e.touch_session(hash, now)?;
    }
    Ok(Some(s.username.to_string()))
}

fn active_operator(
    e: &mut dyn crate::storage::HubEngine,
    user: Option<String>,
) -> Result<Option<OperatorView>, StorageError> {
    let Some(user) = user else { return Ok(None) };
    Ok(e.operator(&user)?.filter(|o| o.active).map(|o| o.view()))
}

/// The operator of a request's session or token, if any (for public routes that adapt,
/// like `/`).
pub async fn current_operator(state: &WebState, headers: &HeaderMap) -> Option<OperatorView> {
    let cred = credential(headers)?;
    resolve(state, &cred).await.ok().flatten()
}

fn is_page(path: &str) -> bool {
    !path.starts_with("/api/")
}

/// The largest form body read for its CSRF field.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The `csrf` field of a urlencoded form.
fn form_csrf(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let v = kv.strip_prefix("csrf=")?;
        // Hex: nothing to decode.
        Some(v.to_string())
    })
}

/// The layer: finds the route's row, resolves the caller, checks roles and CSRF, and
/// hands the [`Caller`] to the handler.
pub async fn authorize(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let Some(pattern) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return ApiError::NotFound.into_response();
    };
    let Some(need) = need_of(req.method(), &pattern) else {
        tracing::error!(route = %pattern, method = %req.method(), "route without an access row: refused");
        return refuse(&req, Lang::default(), ApiError::Forbidden);
    };
    if need == Need::Public {
        return next.run(req).await;
    }
    let Some(cred) = credential(req.headers()) else {
        return refuse(&req, language(&req, None), ApiError::Unauthorized);
    };
    let operator = match resolve(&state, &cred).await {
        Ok(Some(o)) => o,
        Ok(None) => return refuse(&req, language(&req, None), ApiError::Unauthorized),
        Err(e) => return ApiError::Storage(e).into_response(),
    };
    let lang = language(&req, Some(&operator));
    if let Need::Any(roles) = need
        && !operator.has_any(roles)
    {
        tracing::info!(operator = %operator.username, route = %pattern, "refused: role");
        return refuse(&req, lang, ApiError::Forbidden);
    }
    let session = match cred {
        Credential::Session(t) => Some(t),
        Credential::Bearer(_) => None,
    };
    let mut req = req;
    if let Some(token) = &session
        && !matches!(*req.method(), Method::GET | Method::HEAD)
    {
        let header_ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| csrf_ok(token, v));
        if !header_ok {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
                return ApiError::Csrf.into_response();
            };
            let form_ok = form_csrf(&bytes).is_some_and(|v| csrf_ok(token, &v));
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
            if !form_ok {
                tracing::warn!(operator = %operator.username, route = %pattern, "refused: CSRF");
                return refuse(&req, lang, ApiError::Csrf);
            }
        }
    }
    let address = client_address(&req);
    req.extensions_mut().insert(Caller {
        operator,
        address,
        session,
        lang,
    });
    next.run(req).await
}

/// A refusal: JSON on the API; on a page, the login page (not logged in) or the error
/// page.
fn refuse(req: &Request, lang: Lang, err: ApiError) -> Response {
    let path = req.uri().path();
    if !is_page(path) {
        return err.into_response();
    }
    match err {
        ApiError::Unauthorized => {
            let here = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            Redirect::to(&format!("/login?next={}", urlencode(safe_back(here)))).into_response()
        }
        ApiError::Csrf => super::pages::error_page(lang, StatusCode::FORBIDDEN, "error.csrf"),
        _ => super::pages::error_page(lang, StatusCode::FORBIDDEN, "error.forbidden"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_route() {
        let mut seen = std::collections::BTreeSet::new();
        for (m, p, _) in ACCESS {
            assert!(seen.insert((m, p)), "{m} {p} twice");
        }
        assert_eq!(need_of(&Method::HEAD, "/centers"), Some(Need::Any(WATCH)));
        assert_eq!(need_of(&Method::DELETE, "/centers"), None);
    }

    /// Every `.route(path, method(…).method(…))` of the router has its row: a route added
    /// without deciding who may call it fails here (and is refused at run time).
    #[test]
    fn every_route_of_the_router_has_a_row() {
        let src = include_str!("mod.rs");
        let router = &src[src.find("pub fn router(").expect("router")..];
        let mut routes = Vec::new();
        for chunk in router.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).expect("a path");
            let call = &chunk[..chunk.find("\n        .").unwrap_or(chunk.len())];
            for m in ["get", "post", "put", "delete"] {
                if call.contains(&format!("{m}(")) || call.contains(&format!(".{m}(")) {
                    routes.push((m.to_uppercase(), path.to_string()));
                }
            }
        }
        assert!(routes.len() >= ACCESS.len(), "{routes:?}");
        for (m, p) in &routes {
            let method: Method = m.parse().expect("method");
            assert!(
                need_of(&method, p).is_some(),
                "{m} {p} has no row in ACCESS"
            );
        }
        for (m, p, _) in ACCESS {
            assert!(
                routes.iter().any(|(rm, rp)| rm == m && rp == p),
                "the row {m} {p} names no route"
            );
        }
    }

    /// Every page of the hub is one a `next=` may return to (a page missing would send the
    /// operator home after logging in); nothing else is.
    #[test]
    fn next_leads_to_the_hubs_own_pages_only() {
        for page in [
            "/centers",
            "/centers/midan?sort=backlog",
            "/audit?kind=operator.",
            "/",
        ] {
            assert_eq!(safe_back(page), page);
        }
        for (m, p, _) in ACCESS {
            let first = p
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            if *m == "GET" && !NOT_PAGES.contains(&first) {
                assert!(own_pages().contains(&first), "{p}");
            }
        }
        for evil in [
            "//evil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/api/v1/operators",
            "/login?next=/centers",
            "/centers/../../evil",
            "https://evil.example/",
        ] {
            assert_eq!(safe_back(evil), "/", "{evil:?}");
        }
    }

    #[test]
    fn a_form_carries_its_csrf_field() {
        assert_eq!(form_csrf(b"a=1&csrf=ab12&b=2").as_deref(), Some("ab12"));
        assert_eq!(form_csrf(b"a=1"), None);
    }
}
