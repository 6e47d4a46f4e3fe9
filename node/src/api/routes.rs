//! The handlers of `/api/v1`. Each one parses, calls one use case, and answers JSON.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use markaz_sync::model::catalog::Authority;
use markaz_sync::model::citizen::CitizenInput;

use super::error::{ApiError, Body, ClientAddr, OptionalBody, P, Q};
use super::{Auth, SESSION_COOKIE, presented_token, sse};
use crate::app::App;
use crate::app::cases::{CaseAction, CaseQuery, NewCase, PaymentInput};
use crate::app::cash::VoidRequest;
use crate::app::citizens::Registered;
use crate::app::queue::{FinishTicket, IssueTicket, ServeLater, TransferTicket};
use crate::app::staff::{ChangePassword, Grant, NewStaff, ResetPassword, SetRoles};

type ApiResult = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(Json(v).into_response())
}

fn created<T: serde::Serialize>(v: T) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// One route of the API, as the OpenAPI document and the access-control table name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path as in OpenAPI (`/cases/{case_no}`), under `/api/v1`.
    pub path: &'static str,
    /// Whether a request needs a signed-in session (else the route is public).
    pub needs_session: bool,
}

impl Route {
    /// A route anyone may call.
    const fn public(method: &'static str, path: &'static str) -> Route {
        Route {
            method,
            path,
            needs_session: false,
        }
    }

    /// A route for a signed-in user (its handler checks the capability).
    const fn signed_in(method: &'static str, path: &'static str) -> Route {
        Route {
            method,
            path,
            needs_session: true,
        }
    }
}

/// Every route. Kept next to the router so the OpenAPI document and the access-control
/// tests can be checked against it.
pub const ROUTES: &[Route] = &[
    Route::public("POST", "/auth/login"),
    Route::signed_in("POST", "/auth/logout"),
    Route::signed_in("GET", "/auth/me"),
    Route::signed_in("POST", "/auth/password"),
    Route::signed_in("GET", "/catalog/services"),
    Route::signed_in("GET", "/catalog/services/{code}/fee"),
    Route::signed_in("GET", "/citizens"),
    Route::signed_in("POST", "/citizens"),
    Route::signed_in("GET", "/citizens/{national_id}"),
    Route::signed_in("PUT", "/citizens/{national_id}"),
    Route::signed_in("GET", "/citizens/{national_id}/history"),
    Route::signed_in("GET", "/citizens/{national_id}/duplicates"),
    Route::signed_in("GET", "/citizens/duplicates"),
    Route::signed_in("POST", "/tickets"),
    Route::signed_in("GET", "/tickets"),
    Route::signed_in("GET", "/tickets/{id}"),
    Route::signed_in("GET", "/counters/{n}"),
    Route::signed_in("POST", "/counters/{n}/call-next"),
    Route::signed_in("POST", "/counters/{n}/recall"),
    Route::signed_in("POST", "/counters/{n}/no-show"),
    Route::signed_in("POST", "/counters/{n}/transfer"),
    Route::signed_in("POST", "/counters/{n}/finish"),
    Route::signed_in("POST", "/counters/{n}/undo-no-show"),
    Route::signed_in("POST", "/counters/{n}/serve-later"),
    Route::public("GET", "/display/calls"),
    Route::public("GET", "/display/events"),
    Route::signed_in("GET", "/events"),
    Route::signed_in("POST", "/cases"),
    Route::signed_in("GET", "/cases"),
    Route::signed_in("GET", "/cases/{case_no}"),
    Route::signed_in("POST", "/cases/{case_no}/payment"),
    Route::signed_in("POST", "/cases/{case_no}/transitions"),
    Route::signed_in("GET", "/conflicts"),
    Route::signed_in("GET", "/staff"),
    Route::signed_in("POST", "/staff"),
    Route::signed_in("GET", "/staff/{username}"),
    Route::signed_in("POST", "/staff/{username}/permissions"),
    Route::signed_in("DELETE", "/staff/{username}/permissions/{authority}"),
    Route::signed_in("POST", "/staff/{username}/active"),
    Route::signed_in("PUT", "/staff/{username}/roles"),
    Route::signed_in("POST", "/staff/{username}/password"),
    Route::signed_in("GET", "/login-limits"),
    Route::signed_in("DELETE", "/login-limits"),
    Route::signed_in("GET", "/reports/queue"),
    Route::signed_in("GET", "/reports/cases"),
    Route::signed_in("GET", "/reports/cash"),
    Route::signed_in("POST", "/receipts/{receipt_no}/void"),
    Route::signed_in("POST", "/receipts/{receipt_no}/void/approve"),
    Route::signed_in("GET", "/receipts/voids"),
    Route::signed_in("GET", "/logs/audit"),
    Route::signed_in("GET", "/logs/events"),
    Route::signed_in("GET", "/status"),
    Route::signed_in("POST", "/technician/modem/reset"),
    Route::signed_in("POST", "/technician/sync-now"),
    Route::signed_in("POST", "/technician/clock/confirm"),
    Route::signed_in("GET", "/power/daily"),
    Route::public("GET", "/openapi.json"),
];

pub fn v1() -> Router<App> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password))
        .route("/catalog/services", get(services))
        .route("/catalog/services/{code}/fee", get(service_fee))
        .route("/citizens", get(find_citizens).post(save_citizen))
        .route("/citizens/duplicates", get(duplicate_citizens))
        .route(
            "/citizens/{national_id}",
            get(get_citizen).put(update_citizen),
        )
        .route("/citizens/{national_id}/history", get(citizen_history))
        .route(
            "/citizens/{national_id}/duplicates",
            get(citizen_duplicates),
        )
        .route("/tickets", post(issue_ticket).get(waiting_tickets))
        .route("/tickets/{id}", get(get_ticket))
        .route("/counters/{n}", get(counter))
        .route("/counters/{n}/call-next", post(call_next))
        .route("/counters/{n}/recall", post(recall))
        .route("/counters/{n}/no-show", post(no_show))
        .route("/counters/{n}/transfer", post(transfer))
        .route("/counters/{n}/finish", post(finish))
        .route("/counters/{n}/undo-no-show", post(undo_no_show))
        .route("/counters/{n}/serve-later", post(serve_later))
        .route("/display/calls", get(display_calls))
        .route("/display/events", get(display_events))
        .route("/events", get(events))
        .route("/cases", post(create_case).get(search_cases))
        .route("/cases/{case_no}", get(get_case))
        .route("/cases/{case_no}/payment", post(pay_case))
        .route("/cases/{case_no}/transitions", post(advance_case))
        .route("/conflicts", get(list_conflicts))
        .route("/staff", get(list_staff).post(create_staff))
        .route("/staff/{username}", get(get_staff))
        .route("/staff/{username}/permissions", post(grant))
        .route("/staff/{username}/permissions/{authority}", delete(revoke))
        .route("/staff/{username}/active", post(set_active))
        .route("/staff/{username}/roles", put(set_roles))
        .route("/staff/{username}/password", post(reset_password))
        .route("/login-limits", get(login_limits).delete(clear_login_limit))
        .route("/reports/queue", get(queue_report))
        .route("/reports/cases", get(case_report))
        .route("/reports/cash", get(cash_report))
        .route("/receipts/voids", get(pending_voids))
        .route("/receipts/{receipt_no}/void", post(request_void))
        .route("/receipts/{receipt_no}/void/approve", post(approve_void))
        .route("/logs/audit", get(audit_log))
        .route("/logs/events", get(node_events))
        .route("/status", get(status))
        .route("/technician/modem/reset", post(modem_reset))
        .route("/technician/sync-now", post(sync_now))
        .route("/technician/clock/confirm", post(clock_confirm))
        .route("/power/daily", get(power_daily))
        .route("/openapi.json", get(openapi))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
    #[serde(default)]
    terminal: Option<String>,
}

async fn login(
    State(app): State<App>,
    ClientAddr(client): ClientAddr,
    Body(b): Body<Login>,
) -> ApiResult {
    let out = app
        .login(&b.username, &b.password, b.terminal.as_deref(), &client)
        .await?;
    let ttl_secs = app.settings.auth.session_ttl_ms / 1000;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl_secs}",
        out.token
    );
    let mut resp =
        Json(json!({"token": out.token, "csrf": out.csrf, "user": out.user})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(State(app): State<App>, _auth: Auth, req: axum::extract::Request) -> ApiResult {
    let (parts, _) = req.into_parts();
    if let Some((token, _)) = presented_token(&parts) {
        app.logout(&token).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("markaz_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

/// The token of the request's session (after [`Auth`] accepted it).
struct SessionToken(String);

impl axum::extract::FromRequestParts<App> for SessionToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _app: &App,
    ) -> Result<Self, Self::Rejection> {
        presented_token(parts)
            .map(|(t, _)| SessionToken(t))
            .ok_or_else(|| crate::error::AppError::Unauthenticated.into())
    }
}

async fn change_password(
    State(app): State<App>,
    Auth(a): Auth,
    SessionToken(token): SessionToken,
    Body(b): Body<ChangePassword>,
) -> ApiResult {
    app.change_own_password(&a, &token, b).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(Auth(actor): Auth) -> ApiResult {
    ok(actor)
}

async fn services(State(app): State<App>, _a: Auth) -> ApiResult {
    let today = app.today();
    let catalog = app.catalog();
    let list: Vec<_> = catalog
        .iter()
        .map(|s| json!({"service": s, "fee": app.fees().fee_for(&s.code, today).ok()}))
        .collect();
    ok(list)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeQuery {
    #[serde(default)]
    date: Option<jiff::civil::Date>,
}

async fn service_fee(
    State(app): State<App>,
    _a: Auth,
    P(code): P<String>,
    Q(q): Q<FeeQuery>,
) -> ApiResult {
    let svc = app.service(&code).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("service {code} not found"),
        )
    })?;
    let date = q.date.unwrap_or_else(|| app.today());
    let fee = app.fees().fee_for(&svc.code, date).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_fee_in_force",
            e.to_string(),
        )
    })?;
    ok(fee)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CitizenQuery {
    #[serde(default)]
    national_id: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn find_citizens(State(app): State<App>, Auth(a): Auth, Q(q): Q<CitizenQuery>) -> ApiResult {
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    if let Some(name) = q.name.as_deref()
        && blank(&q.national_id)
        && blank(&q.phone)
    {
        return ok(app.find_citizens_by_name(&a, name).await?);
    }
    ok(app
        .find_citizens(&a, q.national_id.as_deref(), q.phone.as_deref())
        .await?)
}

async fn save_citizen(
    State(app): State<App>,
    Auth(a): Auth,
    Body(input): Body<CitizenInput>,
) -> ApiResult {
    match app.register_citizen(&a, input).await? {
        Registered::Created(view) => created(view),
        Registered::Existing(view) => ok(view),
    }
}

async fn get_citizen(State(app): State<App>, Auth(a): Auth, P(nid): P<String>) -> ApiResult {
    ok(app.get_citizen(&a, &nid).await?)
}

async fn update_citizen(
    State(app): State<App>,
    Auth(a): Auth,
    P(nid): P<String>,
    Body(input): Body<CitizenInput>,
) -> ApiResult {
    let (view, edit) = app.update_citizen(&a, &nid, input).await?;
    let mut body = serde_json::to_value(view).map_err(crate::error::AppError::from)?;
    body["edit"] = serde_json::to_value(edit).map_err(crate::error::AppError::from)?;
    ok(body)
}

async fn citizen_history(State(app): State<App>, Auth(a): Auth, P(nid): P<String>) -> ApiResult {
    ok(app.citizen_history(&a, &nid).await?)
}

async fn citizen_duplicates(State(app): State<App>, Auth(a): Auth, P(nid): P<String>) -> ApiResult {
    ok(app.likely_duplicates(&a, &nid).await?)
}

async fn duplicate_citizens(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.duplicate_groups(&a).await?)
}

async fn issue_ticket(
    State(app): State<App>,
    Auth(a): Auth,
    Body(b): Body<IssueTicket>,
) -> ApiResult {
    created(app.issue_ticket(&a, b).await?)
}

async fn waiting_tickets(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.waiting_tickets(&a).await?)
}

async fn get_ticket(State(app): State<App>, _a: Auth, P(id): P<i64>) -> ApiResult {
    ok(app.ticket(id).await?)
}

async fn counter(State(app): State<App>, _a: Auth, P(n): P<u32>) -> ApiResult {
    ok(app.counter_view(n).await?)
}

async fn call_next(State(app): State<App>, Auth(a): Auth, P(n): P<u32>) -> ApiResult {
    match app.call_next(&a, n).await? {
        Some(t) => ok(t),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn recall(State(app): State<App>, Auth(a): Auth, P(n): P<u32>) -> ApiResult {
    ok(app.recall(&a, n).await?)
}

async fn no_show(State(app): State<App>, Auth(a): Auth, P(n): P<u32>) -> ApiResult {
    ok(app.no_show(&a, n).await?)
}

async fn transfer(
    State(app): State<App>,
    Auth(a): Auth,
    P(n): P<u32>,
    Body(b): Body<TransferTicket>,
) -> ApiResult {
    ok(app.transfer(&a, n, b).await?)
}

async fn finish(
    State(app): State<App>,
    Auth(a): Auth,
    P(n): P<u32>,
    OptionalBody(body): OptionalBody<FinishTicket>,
) -> ApiResult {
    ok(app.finish(&a, n, body.unwrap_or_default()).await?)
}

async fn undo_no_show(State(app): State<App>, Auth(a): Auth, P(n): P<u32>) -> ApiResult {
    ok(app.undo_no_show(&a, n).await?)
}

async fn serve_later(
    State(app): State<App>,
    Auth(a): Auth,
    P(n): P<u32>,
    Body(b): Body<ServeLater>,
) -> ApiResult {
    ok(app.serve_later(&a, n, b).await?)
}

async fn display_calls(State(app): State<App>) -> ApiResult {
    let calls = app.latest_calls(20).await?;
    let public: Vec<_> = calls.iter().map(|t| json!({"ticket": t.number, "counter": t.counter, "group": t.group, "at": t.called_at})).collect();
    ok(public)
}

async fn display_events(State(app): State<App>) -> impl IntoResponse {
    sse(&app, true)
}

async fn events(State(app): State<App>, _a: Auth) -> impl IntoResponse {
    sse(&app, false)
}

async fn create_case(State(app): State<App>, Auth(a): Auth, Body(b): Body<NewCase>) -> ApiResult {
    created(app.create_case(&a, b).await?)
}

async fn search_cases(State(app): State<App>, Auth(a): Auth, Q(q): Q<CaseQuery>) -> ApiResult {
    ok(app.search_cases(&a, q).await?)
}

async fn list_conflicts(
    State(app): State<App>,
    Auth(a): Auth,
    Q(q): Q<crate::app::conflicts::ConflictQuery>,
) -> ApiResult {
    ok(app.list_conflicts(&a, q).await?)
}

async fn get_case(State(app): State<App>, Auth(a): Auth, P(no): P<String>) -> ApiResult {
    ok(app.get_case(&a, &no).await?)
}

async fn pay_case(
    State(app): State<App>,
    Auth(a): Auth,
    P(no): P<String>,
    Body(b): Body<PaymentInput>,
) -> ApiResult {
    ok(app.pay_case(&a, &no, b).await?)
}

async fn advance_case(
    State(app): State<App>,
    Auth(a): Auth,
    P(no): P<String>,
    Body(b): Body<CaseAction>,
) -> ApiResult {
    ok(app.advance_case(&a, &no, b).await?)
}

async fn list_staff(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.list_staff(&a).await?)
}

async fn create_staff(State(app): State<App>, Auth(a): Auth, Body(b): Body<NewStaff>) -> ApiResult {
    created(app.create_staff(&a, b).await?)
}

async fn get_staff(State(app): State<App>, Auth(a): Auth, P(u): P<String>) -> ApiResult {
    a.require(markaz_sync::model::staff::Capability::ManageStaff)
        .or_else(|_| a.require(markaz_sync::model::staff::Capability::ViewReports))?;
    ok(app.get_staff(&u).await?)
}

async fn grant(
    State(app): State<App>,
    Auth(a): Auth,
    P(u): P<String>,
    Body(b): Body<Grant>,
) -> ApiResult {
    ok(app.grant_permission(&a, &u, b).await?)
}

async fn revoke(
    State(app): State<App>,
    Auth(a): Auth,
    P((u, authority)): P<(String, String)>,
) -> ApiResult {
    let authority: Authority = serde_json::from_value(serde_json::Value::String(authority.clone()))
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_authority",
                format!("unknown authority '{authority}'"),
            )
        })?;
    ok(app.revoke_permission(&a, &u, authority).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Active {
    active: bool,
}

async fn set_active(
    State(app): State<App>,
    Auth(a): Auth,
    P(u): P<String>,
    Body(b): Body<Active>,
) -> ApiResult {
    ok(app.set_active(&a, &u, b.active).await?)
}

async fn set_roles(
    State(app): State<App>,
    Auth(a): Auth,
    P(u): P<String>,
    Body(b): Body<SetRoles>,
) -> ApiResult {
    ok(app.set_roles(&a, &u, b).await?)
}

async fn reset_password(
    State(app): State<App>,
    Auth(a): Auth,
    P(u): P<String>,
    Body(b): Body<ResetPassword>,
) -> ApiResult {
    ok(app.reset_password(&a, &u, b).await?)
}

async fn login_limits(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.login_limits(&a).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearLimit {
    username: String,
    #[serde(default)]
    address: Option<String>,
}

/// `DELETE /login-limits?username=&address=`: one pair, or every address of a username.
async fn clear_login_limit(
    State(app): State<App>,
    Auth(a): Auth,
    Q(q): Q<ClearLimit>,
) -> ApiResult {
    let n = app
        .clear_login_limit(&a, &q.username, q.address.as_deref())
        .await?;
    ok(json!({ "cleared": n }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayQuery {
    #[serde(default)]
    day: Option<jiff::civil::Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CashQuery {
    #[serde(default)]
    day: Option<jiff::civil::Date>,
    #[serde(default)]
    clerk: Option<String>,
}

async fn cash_report(State(app): State<App>, Auth(a): Auth, Q(q): Q<CashQuery>) -> ApiResult {
    ok(app.daily_close(&a, q.day, q.clerk.as_deref()).await?)
}

async fn pending_voids(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.pending_voids(&a).await?)
}

async fn request_void(
    State(app): State<App>,
    Auth(a): Auth,
    P(r): P<String>,
    Body(b): Body<VoidRequest>,
) -> ApiResult {
    created(app.request_void(&a, &r, b).await?)
}

async fn approve_void(State(app): State<App>, Auth(a): Auth, P(r): P<String>) -> ApiResult {
    ok(app.approve_void(&a, &r).await?)
}

async fn queue_report(State(app): State<App>, Auth(a): Auth, Q(q): Q<DayQuery>) -> ApiResult {
    ok(app.queue_report(&a, q.day).await?)
}

async fn case_report(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.case_report(&a).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    errors_only: Option<bool>,
}

async fn audit_log(State(app): State<App>, Auth(a): Auth, Q(q): Q<LogQuery>) -> ApiResult {
    ok(app.audit_log(&a, q.limit.unwrap_or(200)).await?)
}

async fn node_events(State(app): State<App>, Auth(a): Auth, Q(q): Q<LogQuery>) -> ApiResult {
    ok(app
        .node_events(&a, q.limit.unwrap_or(200), q.errors_only.unwrap_or(false))
        .await?)
}

async fn status(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    a.require(markaz_sync::model::staff::Capability::ViewTechnical)
        .or_else(|_| a.require(markaz_sync::model::staff::Capability::ViewReports))?;
    ok(json!({
        "center": app.settings.center_id,
        "time": app.now().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "panels": super::status::panels(&app.status.snapshot()),
        "storage": super::integrity_json(&app),
        "clock": app.clock_check().await?,
    }))
}

async fn clock_confirm(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    ok(app.technician_confirm_clock(&a).await?)
}

async fn modem_reset(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    Ok((
        StatusCode::ACCEPTED,
        Json(app.technician_modem_reset(&a).await?),
    )
        .into_response())
}

async fn sync_now(State(app): State<App>, Auth(a): Auth) -> ApiResult {
    Ok((
        StatusCode::ACCEPTED,
        Json(app.technician_sync_now(&a).await?),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DateRange {
    #[serde(default)]
    from: Option<jiff::civil::Date>,
    #[serde(default)]
    to: Option<jiff::civil::Date>,
}

async fn power_daily(State(app): State<App>, Auth(a): Auth, Q(q): Q<DateRange>) -> ApiResult {
    ok(app.power_daily(&a, q.from, q.to).await?)
}

async fn openapi(headers: HeaderMap) -> Response {
    let _ = headers;
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}
