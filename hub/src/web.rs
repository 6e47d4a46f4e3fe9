//! The operator pages and the operator API on `hub.web_listen`.
//!
//! Pages are server-rendered HTML, Arabic first (`lang="ar" dir="rtl"`), English with
//! `?lang=en`, styled by the node's stylesheet (copied to `hub/assets`, no CDN). Every
//! page has a JSON twin under `/api/v1/…`.
//!
//! Access: the operator token (file `<data_dir>/operator.token`, created on first start,
//! mode 0600) is sent as `Authorization: Bearer <token>`. Requests that change anything
//! always need it; reading pages and JSON needs it too unless the client is on loopback.

mod data;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{delete, get, post, put};
use jiff::civil::Date;
use markaz_sync::model::catalog::Authority;
use markaz_sync::model::{CenterId, StaffMember};
use serde::Deserialize;

use crate::catalog::{self, CatalogEntry, CatalogError, CatalogPage};
use crate::energy::{self, Avg, Comparison, GroupFigures, MetricsDay, MetricsKind};
use crate::oversight::{self, CenterRow, ConflictRow, OversightRow};
use crate::portal::{self, Grant, PortalError, PortalIntake};
use crate::sessions::SyncSession;
use crate::storage::{HubWriter, StorageError, SyncLogEntry};

// The operators' pages share the center pages' stylesheet (one file, one look).
const CSS: &str = include_str!("../../node/assets/markaz.css");

/// Shared state of the web handlers.
#[derive(Clone, Debug)]
pub struct WebState {
    pub writer: HubWriter,
    pub token: Arc<String>,
}

/// Errors of the operator API, mapped to status codes here and only here. The body is
/// the node API's format: `{"error":{"code","message","field"}}` (`field` when input was
/// at fault).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("operator token required")]
    Unauthorized,
    #[error(transparent)]
    Portal(#[from] PortalError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A body of the wrong shape (422).
    #[error("bad request: {0}")]
    Bad(String),
    /// A body that is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A query string of the wrong shape (400).
    #[error("bad query: {0}")]
    Query(String),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field): (StatusCode, &str, Option<String>) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json", None),
            ApiError::Query(_) => (StatusCode::BAD_REQUEST, "invalid_query", None),
            ApiError::Bad(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", None),
            ApiError::Portal(PortalError::Invalid { field, .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some(field.clone()),
            ),
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
            | ApiError::Storage(_)
            | ApiError::Catalog(CatalogError::Storage(_) | CatalogError::NoCatalog) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage", None)
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "operator API failed");
        }
        let mut error = serde_json::json!({"code": code, "message": self.to_string()});
        if let Some(f) = field {
            error["field"] = serde_json::Value::String(f);
        }
        (status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

/// The router of the operator listener.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(page_centers))
        .route("/sync-log", get(page_sync_log))
        .route("/sync-log/requests", get(page_sync_requests))
        .route("/conflicts", get(page_conflicts))
        .route("/oversight", get(page_oversight))
        .route("/energy", get(page_energy))
        .route("/api/v1/centers", get(api_centers))
        .route("/api/v1/sync-log", get(api_sync_log))
        .route("/api/v1/sync-log/requests", get(api_sync_requests))
        .route("/api/v1/conflicts", get(api_conflicts))
        .route("/api/v1/oversight", get(api_oversight))
        .route("/api/v1/energy", get(api_energy))
        .route("/api/v1/energy/compare", get(api_energy_compare))
        .route("/stats", get(page_stats))
        .route("/api/v1/stats", get(api_stats))
        .route("/catalog", get(page_catalog))
        .route("/api/v1/catalog", get(api_catalog))
        .route("/api/v1/catalog/services/{code}", put(api_put_service))
        .route("/api/v1/catalog/services/{code}/fees", post(api_add_fee))
        .route("/api/v1/portal/cases", post(api_portal_case))
        .route("/api/v1/staff/{center}/{username}", put(api_put_staff))
        .route(
            "/api/v1/staff/{center}/{username}/permissions",
            post(api_grant),
        )
        .route(
            "/api/v1/staff/{center}/{username}/permissions/{authority}",
            delete(api_revoke),
        )
        .merge(data::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .route("/assets/markaz.css", get(css))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .with_state(state)
}

fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_eq(t.trim().as_bytes(), token.as_bytes()))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn guard(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().is_loopback());
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if token_ok(req.headers(), &state.token) || (reading && loopback) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

// ---- JSON ------------------------------------------------------------------------------

async fn load_centers(s: &WebState) -> Result<Vec<CenterRow>, ApiError> {
    let now = now_ms();
    Ok(s.writer.run(move |e| oversight::centers(e, now)).await??)
}

async fn load_sessions(s: &WebState, center: Option<String>) -> Result<Vec<SyncSession>, ApiError> {
    let now = now_ms();
    Ok(s.writer
        .run(move |e| e.sessions(center.as_deref(), now, 500))
        .await??)
}

async fn load_log(
    s: &WebState,
    center: Option<String>,
    session: Option<i64>,
) -> Result<Vec<SyncLogEntry>, ApiError> {
    Ok(s.writer
        .run(move |e| oversight::sync_log(e, center.as_deref(), session, 1000))
        .await??)
}

async fn load_conflicts(s: &WebState) -> Result<Vec<ConflictRow>, ApiError> {
    let views = s.writer.run(oversight::case_views).await??;
    Ok(oversight::conflicts(&views))
}

async fn load_oversight(s: &WebState) -> Result<Vec<OversightRow>, ApiError> {
    let (views, catalog) = s
        .writer
        .run(|e| Ok::<_, StorageError>((oversight::case_views(e)?, oversight::catalog(e)?)))
        .await??;
    Ok(oversight::tally(&views, &catalog, jiff::Timestamp::now()))
}

#[derive(Debug, Deserialize)]
struct MetricsQuery {
    center: Option<String>,
    days: Option<u32>,
    lang: Option<String>,
}

async fn load_days(
    s: &WebState,
    kind: MetricsKind,
    center: Option<String>,
    days: Option<u32>,
) -> Result<(Date, Vec<MetricsDay>, Vec<String>), ApiError> {
    let from = energy::window_start(catalog::today(jiff::Timestamp::now()), days);
    Ok(s.writer
        .run(move |e| {
            Ok::<_, StorageError>((
                from,
                energy::days(e, kind, center.as_deref(), from)?,
                energy::centers(e, kind)?,
            ))
        })
        .await??)
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    center: Option<String>,
    /// A session's row id (`sync_sessions.id`), for its requests.
    session: Option<i64>,
    lang: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

async fn api_centers(State(s): State<WebState>) -> Result<Json<Vec<CenterRow>>, ApiError> {
    Ok(Json(load_centers(&s).await?))
}

async fn api_sync_log(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Json<Vec<SyncSession>>, ApiError> {
    Ok(Json(load_sessions(&s, q.center).await?))
}

async fn api_sync_requests(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Json<Vec<SyncLogEntry>>, ApiError> {
    Ok(Json(load_log(&s, q.center, q.session).await?))
}

async fn api_conflicts(State(s): State<WebState>) -> Result<Json<Vec<ConflictRow>>, ApiError> {
    Ok(Json(load_conflicts(&s).await?))
}

async fn api_oversight(State(s): State<WebState>) -> Result<Json<Vec<OversightRow>>, ApiError> {
    Ok(Json(load_oversight(&s).await?))
}

async fn api_energy(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Vec<MetricsDay>>, ApiError> {
    Ok(Json(
        load_days(&s, MetricsKind::Energy, q.center, q.days)
            .await?
            .1,
    ))
}

async fn api_energy_compare(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let (from, days, _) = load_days(&s, MetricsKind::Energy, None, q.days).await?;
    Ok(Json(energy::compare(&days, from)))
}

async fn api_stats(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Vec<MetricsDay>>, ApiError> {
    Ok(Json(
        load_days(&s, MetricsKind::Stats, q.center, q.days).await?.1,
    ))
}

/// A JSON body: not JSON at all is 400 `malformed_json`, the wrong shape 422.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| ApiError::Bad(e.to_string()))
}

async fn load_catalog(s: &WebState) -> Result<CatalogPage, ApiError> {
    let today = catalog::today(jiff::Timestamp::now());
    Ok(s.writer.run(move |e| catalog::entries(e, today)).await??)
}

async fn api_catalog(State(s): State<WebState>) -> Result<Json<CatalogPage>, ApiError> {
    Ok(Json(load_catalog(&s).await?))
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn api_put_service(
    State(s): State<WebState>,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CatalogEntry>), ApiError> {
    let v: serde_json::Value = json_body(&body)?;
    let service = catalog::parse_service(&code, &v)?;
    let today = catalog::today(jiff::Timestamp::now());
    let (created, entry) = s
        .writer
        .run(move |e| catalog::put_service(e, &service, today))
        .await??;
    Ok((created_or_ok(created), Json(entry)))
}

async fn api_add_fee(
    State(s): State<WebState>,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CatalogEntry>), ApiError> {
    let v: serde_json::Value = json_body(&body)?;
    let fee = catalog::parse_fee(&v)?;
    let today = catalog::today(jiff::Timestamp::now());
    let (written, entry) = s
        .writer
        .run(move |e| catalog::add_fee(e, &code, &fee, today))
        .await??;
    Ok((created_or_ok(written), Json(entry)))
}

async fn api_portal_case(
    State(s): State<WebState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<portal::PortalCase>), ApiError> {
    let intake: PortalIntake = json_body(&body)?;
    let now = jiff::Timestamp::now();
    let created = s
        .writer
        .run(move |e| portal::intake(e, &intake, now))
        .await??;
    Ok((StatusCode::CREATED, Json(created)))
}

fn center_of(s: &str) -> Result<CenterId, ApiError> {
    s.parse()
        .map_err(|e: markaz_sync::model::IdError| ApiError::Bad(e.to_string()))
}

async fn api_put_staff(
    State(s): State<WebState>,
    Path((center, username)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let center = center_of(&center)?;
    let staff: StaffMember = json_body(&body)?;
    if staff.username != username {
        return Err(ApiError::Bad(
            "username in the path and the body differ".into(),
        ));
    }
    s.writer
        .run(move |e| portal::put_staff(e, &center, &staff))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn api_grant(
    State(s): State<WebState>,
    Path((center, username)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<StaffMember>, ApiError> {
    let center = center_of(&center)?;
    let g: Grant = json_body(&body)?;
    Ok(Json(
        s.writer
            .run(move |e| portal::grant(e, &center, &username, &g))
            .await??,
    ))
}

async fn api_revoke(
    State(s): State<WebState>,
    Path((center, username, authority)): Path<(String, String, String)>,
) -> Result<Json<StaffMember>, ApiError> {
    let center = center_of(&center)?;
    let authority: Authority = authority
        .parse()
        .map_err(|e: markaz_sync::model::catalog::FieldError| ApiError::Bad(e.to_string()))?;
    Ok(Json(
        s.writer
            .run(move |e| portal::revoke(e, &center, &username, authority))
            .await??,
    ))
}

// ---- HTML ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ar,
    En,
}

impl Lang {
    fn of(q: Option<&str>) -> Lang {
        if q == Some("en") { Lang::En } else { Lang::Ar }
    }

    fn t(self, ar: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ar => ar,
            Lang::En => en,
        }
    }
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn ltr(s: &str) -> String {
    format!("<bdi dir=\"ltr\">{}</bdi>", esc(s))
}

fn time(ms: Option<i64>) -> String {
    match ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()) {
        Some(t) => ltr(&t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
        None => "—".into(),
    }
}

fn minutes(ms: Option<i64>) -> String {
    match ms {
        Some(m) => ltr(&format!("{} min", m / 60_000)),
        None => "—".into(),
    }
}

fn page(lang: Lang, path: &str, title: &str, body: &str) -> Html<String> {
    let (code, dir, other, other_label) = match lang {
        Lang::Ar => ("ar", "rtl", "en", "English"),
        Lang::En => ("en", "ltr", "ar", "العربية"),
    };
    let q = if lang == Lang::En { "?lang=en" } else { "" };
    let nav = [
        ("/", lang.t("المراكز", "Centers")),
        ("/sync-log", lang.t("سجل التزامن", "Sync log")),
        ("/conflicts", lang.t("التعارضات", "Conflicts")),
        ("/oversight", lang.t("المتابعة", "Oversight")),
        ("/energy", lang.t("الطاقة", "Energy")),
        ("/stats", lang.t("إحصاءات الدور", "Queue statistics")),
        ("/catalog", lang.t("الخدمات والرسوم", "Services and fees")),
    ]
    .iter()
    .map(|(href, label)| format!("<a href=\"{href}{q}\">{label}</a>"))
    .collect::<Vec<_>>()
    .join(" ");
    Html(format!(
        "<!doctype html><html lang=\"{code}\" dir=\"{dir}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} — {hub}</title><link rel=\"stylesheet\" href=\"/assets/markaz.css\"></head>\
<body><header class=\"topbar\"><strong>{hub}</strong> <nav>{nav}</nav> \
<a lang=\"{other}\" href=\"{path}{sep}lang={other}\">{other_label}</a></header>\
<main><h1>{title}</h1>{body}</main></body></html>",
        hub = lang.t("مركز المحافظة", "Governorate hub"),
        sep = if path.contains('?') { "&" } else { "?" },
    ))
}

fn table(head: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p>{empty}</p>");
    }
    let mut h = String::from("<table><thead><tr>");
    for c in head {
        h.push_str(&format!("<th>{c}</th>"));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            h.push_str(&format!("<td>{c}</td>"));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

async fn page_centers(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let lq = if l == Lang::En { "&amp;lang=en" } else { "" };
    let rows = load_centers(&s)
        .await?
        .into_iter()
        .map(|c| {
            vec![
                format!(
                    "<a href=\"/sync-log?center={0}{lq}\">{1}</a>",
                    esc(&c.center),
                    ltr(&c.center)
                ),
                time(c.last_sync_ms),
                c.uplink.as_deref().map_or("—".into(), ltr),
                c.last_result
                    .as_deref()
                    .map_or("—".into(), |r| result_cell(l, r, None)),
                ltr(&c.sessions.to_string()),
                match &c.alarm {
                    None => ltr(&c.backlog.to_string()),
                    Some(a) => format!(
                        "{} <strong class=\"alarm\" data-alarm=\"{}\">⚠ {}</strong>",
                        ltr(&c.backlog.to_string()),
                        a.level(),
                        esc(&match l {
                            Lang::Ar => a.message_ar(),
                            Lang::En => a.message_en(),
                        })
                    ),
                },
                minutes(c.freshness_ms),
                c.skew_ms.map_or("—".into(), |s| ltr(&format!("{s} ms"))),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("آخر تزامن", "Last sync"),
        l.t("الوصلة", "Uplink"),
        l.t("آخر جلسة", "Last session"),
        l.t("الجلسات", "Sessions"),
        l.t("المتراكم", "Backlog"),
        l.t("عمر البيانات", "Data age"),
        l.t("فرق الساعة", "Clock skew"),
    ];
    let body = table(
        &head,
        rows,
        l.t("لم يتزامن أي مركز بعد.", "No center has synced yet."),
    );
    Ok(page(
        l,
        "/",
        l.t("نظرة عامة على المراكز", "Centers overview"),
        &body,
    ))
}

fn filter_form(l: Lang, action: &str, center: Option<&str>) -> String {
    format!(
        "<form method=\"get\" action=\"{action}\"><label>{} <input name=\"center\" value=\"{}\"></label>{}<button>{}</button></form>",
        l.t("المركز", "Center"),
        esc(center.unwrap_or("")),
        if l == Lang::En {
            "<input type=\"hidden\" name=\"lang\" value=\"en\">"
        } else {
            ""
        },
        l.t("تصفية", "Filter"),
    )
}

fn result_cell(l: Lang, result: &str, error: Option<&str>) -> String {
    let label = match result {
        "ok" => l.t("ناجحة", "ok"),
        "open" => l.t("جارية", "open"),
        _ => l.t("خطأ", "error"),
    };
    match error {
        Some(e) => format!("{label} {}", ltr(e)),
        None => label.to_string(),
    }
}

async fn page_sync_log(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let path = match &q.center {
        Some(c) => format!("/sync-log?center={}", esc(c)),
        None => "/sync-log".into(),
    };
    let lq = if l == Lang::En { "&amp;lang=en" } else { "" };
    let rows = load_sessions(&s, q.center.clone())
        .await?
        .into_iter()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/sync-log?center={0}{lq}\">{1}</a>",
                    esc(&r.center),
                    ltr(&r.center)
                ),
                ltr(&r.uplink),
                time(Some(r.started_ms)),
                time(r.ended_ms),
                ltr(&format!("{} ms", r.last_ms - r.started_ms)),
                format!(
                    "<a href=\"/sync-log/requests?session={}{lq}\">{}</a>",
                    r.id,
                    ltr(&r.requests.to_string())
                ),
                ltr(&format!("{} / {}", r.bytes_up, r.bytes_down)),
                ltr(&format!("{} / {}", r.docs_up, r.docs_down)),
                ltr(&format!("{} / {}", r.changes_up, r.changes_down)),
                ltr(&r.refused.to_string()),
                r.skew_ms.map_or("—".into(), |s| ltr(&format!("{s} ms"))),
                result_cell(l, &r.result, r.error.as_deref()),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("الوصلة", "Uplink"),
        l.t("البداية", "Start"),
        l.t("النهاية", "End"),
        l.t("المدة", "Duration"),
        l.t("الطلبات", "Requests"),
        l.t("بايت صاعد / نازل", "Bytes up / down"),
        l.t("وثائق صاعدة / نازلة", "Docs up / down"),
        l.t("تغييرات صاعدة / نازلة", "Changes up / down"),
        l.t("مرفوضة", "Refused"),
        l.t("فرق الساعة", "Clock skew"),
        l.t("النتيجة", "Result"),
    ];
    let body = filter_form(l, "/sync-log", q.center.as_deref())
        + &table(&head, rows, l.t("لا توجد جلسات.", "No sessions."));
    Ok(page(
        l,
        &path,
        l.t("سجل التزامن: الجلسات", "Sync log: sessions"),
        &body,
    ))
}

async fn page_sync_requests(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let path = match (&q.center, q.session) {
        (_, Some(id)) => format!("/sync-log/requests?session={id}"),
        (Some(c), None) => format!("/sync-log/requests?center={}", esc(c)),
        (None, None) => "/sync-log/requests".into(),
    };
    let rows = load_log(&s, q.center.clone(), q.session)
        .await?
        .into_iter()
        .map(|r| {
            vec![
                ltr(&r.center),
                esc(&r.uplink),
                esc(&r.kind),
                time(Some(r.started_ms)),
                ltr(&format!("{} ms", r.ended_ms - r.started_ms)),
                ltr(&format!("{} / {}", r.bytes_up, r.bytes_down)),
                ltr(&format!("{} / {}", r.docs_up, r.docs_down)),
                ltr(&format!("{} / {}", r.changes_up, r.changes_down)),
                ltr(&r.refused.to_string()),
                match &r.error {
                    Some(e) => format!("{} {}", esc(&r.result), ltr(e)),
                    None => esc(&r.result),
                },
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("الوصلة", "Uplink"),
        l.t("الطلب", "Request"),
        l.t("البداية", "Start"),
        l.t("المدة", "Duration"),
        l.t("بايت صاعد / نازل", "Bytes up / down"),
        l.t("وثائق صاعدة / نازلة", "Docs up / down"),
        l.t("تغييرات صاعدة / نازلة", "Changes up / down"),
        l.t("مرفوضة", "Refused"),
        l.t("النتيجة", "Result"),
    ];
    let filter = filter_form(l, "/sync-log/requests", q.center.as_deref());
    let body = filter + &table(&head, rows, l.t("لا توجد سجلات.", "No entries."));
    Ok(page(l, &path, l.t("طلبات التزامن", "Sync requests"), &body))
}

async fn page_conflicts(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let rows = load_conflicts(&s)
        .await?
        .into_iter()
        .map(|c| {
            vec![
                ltr(&c.case_no),
                ltr(&c.center),
                esc(&c.service),
                esc(&c.status),
                esc(if l == Lang::En {
                    &c.message_en
                } else {
                    &c.message_ar
                }),
            ]
        })
        .collect();
    let head = [
        l.t("رقم المعاملة", "Case"),
        l.t("المركز", "Center"),
        l.t("الخدمة", "Service"),
        l.t("الحالة", "Status"),
        l.t("التعارض", "Conflict"),
    ];
    let body = table(&head, rows, l.t("لا توجد تعارضات.", "No conflicts."));
    Ok(page(l, "/conflicts", l.t("التعارضات", "Conflicts"), &body))
}

async fn page_oversight(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let rows = load_oversight(&s)
        .await?
        .into_iter()
        .map(|r| {
            vec![
                ltr(&r.center),
                esc(&r.service),
                ltr(&r.received.to_string()),
                ltr(&r.finished.to_string()),
                ltr(&r.pending_within_target.to_string()),
                ltr(&r.pending_beyond_target.to_string()),
                r.avg_processing_minutes
                    .map_or("—".into(), |m| ltr(&format!("{m} min"))),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("الخدمة", "Service"),
        l.t("المستلمة", "Received"),
        l.t("المنجزة", "Finished"),
        l.t("قيد المعالجة ضمن المدة", "Pending within target"),
        l.t("قيد المعالجة بعد المدة", "Pending beyond target"),
        l.t("متوسط زمن المعالجة", "Average processing time"),
    ];
    let body = table(&head, rows, l.t("لا توجد معاملات.", "No cases."));
    Ok(page(
        l,
        "/oversight",
        l.t(
            "المتابعة حسب المركز والخدمة",
            "Oversight by center and service",
        ),
        &body,
    ))
}

/// `seconds` as hours with one decimal.
fn hours(v: Option<i64>) -> String {
    v.map_or("—".into(), |s| {
        ltr(&format!("{}.{} h", s / 3600, (s % 3600) / 360))
    })
}

fn num(v: Option<i64>) -> String {
    v.map_or("—".into(), |n| ltr(&n.to_string()))
}

/// The center chooser of the metrics pages: one link per center, the chosen one marked.
fn center_links(l: Lang, path: &str, centers: &[String], chosen: Option<&str>) -> String {
    let lq = if l == Lang::En { "&amp;lang=en" } else { "" };
    let all = if l == Lang::En { "?lang=en" } else { "" };
    let mut links = vec![format!(
        "<a href=\"{path}{all}\"{}>{}</a>",
        if chosen.is_none() {
            " aria-current=\"page\""
        } else {
            ""
        },
        l.t("كل المراكز", "All centers")
    )];
    for c in centers {
        links.push(format!(
            "<a href=\"{path}?center={0}{lq}\"{1}>{2}</a>",
            esc(c),
            if chosen == Some(c.as_str()) {
                " aria-current=\"page\""
            } else {
                ""
            },
            ltr(c)
        ));
    }
    format!("<nav class=\"centers\">{}</nav>", links.join(" "))
}

fn avg_cell(a: &Avg, unit: &str) -> String {
    match a.value {
        Some(v) => ltr(&format!("{v}{unit} ({} d)", a.days)),
        None => "—".into(),
    }
}

fn comparison_table(l: Lang, c: &Comparison) -> String {
    type Figure = fn(&GroupFigures) -> String;
    let rows: Vec<(&str, Figure)> = vec![
        (
            l.t("عدد المراكز", "Centers"),
            |g: &GroupFigures| ltr(&g.centers.to_string()),
        ),
        (
            l.t("أيام-مركز", "Center-days"),
            |g: &GroupFigures| ltr(&g.center_days.to_string()),
        ),
        (
            l.t("ساعات المولدة", "Hours on generator"),
            |g: &GroupFigures| avg_cell(&g.generator_hours, " h"),
        ),
        (
            l.t("مرات تشغيل المولدة", "Generator starts"),
            |g: &GroupFigures| avg_cell(&g.generator_starts, ""),
        ),
        (
            l.t("ساعات الانقطاع", "Outage hours"),
            |g: &GroupFigures| avg_cell(&g.outage_hours, " h"),
        ),
        (
            l.t("عدد الانقطاعات", "Outages"),
            |g: &GroupFigures| avg_cell(&g.outages, ""),
        ),
        (
            l.t("ساعات على البطارية", "Hours on battery"),
            |g: &GroupFigures| avg_cell(&g.battery_hours, " h"),
        ),
        (
            l.t("ساعات على الشبكة", "Hours on grid"),
            |g: &GroupFigures| avg_cell(&g.grid_hours, " h"),
        ),
        (
            l.t("طاقة شمسية", "PV energy"),
            |g: &GroupFigures| avg_cell(&g.pv_kwh, " kWh"),
        ),
        (
            l.t("أدنى شحن للبطارية", "Minimum state of charge"),
            |g: &GroupFigures| avg_cell(&g.min_soc_pct, "%"),
        ),
        (
            l.t("الوقود المستهلك", "Fuel used"),
            |g: &GroupFigures| avg_cell(&g.fuel_used_pct, "%"),
        ),
    ];
    let body = rows
        .iter()
        .map(|(label, f)| vec![label.to_string(), f(&c.solar), f(&c.non_solar)])
        .collect();
    let head = [
        l.t("المتوسط لكل مركز في اليوم", "Average per center-day"),
        l.t("مراكز بطاقة شمسية", "Centers with solar"),
        l.t("مراكز بلا طاقة شمسية", "Centers without solar"),
    ];
    table(&head, body, "")
}

async fn page_energy(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let (from, all, centers) = load_days(&s, MetricsKind::Energy, None, q.days).await?;
    let cmp = energy::compare(&all, from);
    let chosen = q
        .center
        .as_deref()
        .filter(|c| centers.iter().any(|x| x == c));
    let rows = all
        .iter()
        .filter(|d| chosen.is_none_or(|c| d.center == c))
        .map(|d| {
            vec![
                ltr(&d.center),
                ltr(&d.day.to_string()),
                match d.has_solar() {
                    Some(true) => l.t("نعم", "yes").into(),
                    Some(false) => l.t("لا", "no").into(),
                    None => "—".into(),
                },
                hours(d.get("seconds_grid")),
                hours(d.get("seconds_solar")),
                hours(d.get("seconds_battery")),
                hours(d.get("seconds_generator")),
                num(d.get("generator_starts")),
                d.get("pv_wh").map_or("—".into(), |w| {
                    ltr(&format!("{}.{:02} kWh", w / 1000, (w % 1000) / 10))
                }),
                d.get("min_soc_pct")
                    .map_or("—".into(), |v| ltr(&format!("{v}%"))),
                num(d.get("outages")),
                hours(d.get("outage_seconds")),
                hours(d.get("longest_outage_seconds")),
                d.get("fuel_used_pct")
                    .map_or("—".into(), |v| ltr(&format!("{v}%"))),
                time(d.as_of_ms),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("اليوم", "Day"),
        l.t("طاقة شمسية", "Solar"),
        l.t("الشبكة", "Grid"),
        l.t("الشمس", "Solar"),
        l.t("البطارية", "Battery"),
        l.t("المولدة", "Generator"),
        l.t("مرات التشغيل", "Starts"),
        l.t("إنتاج الألواح", "PV"),
        l.t("أدنى شحن", "Min SoC"),
        l.t("الانقطاعات", "Outages"),
        l.t("مدة الانقطاع", "Outage time"),
        l.t("أطول انقطاع", "Longest outage"),
        l.t("الوقود", "Fuel used"),
        l.t("الأرقام حتى", "Figures as of"),
    ];
    let path = match chosen {
        Some(c) => format!("/energy?center={}", esc(c)),
        None => "/energy".into(),
    };
    let body = format!(
        "<p>{} {}</p><h2>{}</h2>{}<h2>{}</h2>{}{}",
        l.t("منذ", "Since"),
        ltr(&from.to_string()),
        l.t(
            "مقارنة: بطاقة شمسية وبدونها",
            "Comparison: with and without solar"
        ),
        comparison_table(l, &cmp),
        l.t("الملخصات اليومية", "Daily summaries"),
        center_links(l, "/energy", &centers, chosen),
        table(
            &head,
            rows,
            l.t("لا توجد ملخصات طاقة.", "No energy summaries.")
        ),
    );
    Ok(page(
        l,
        &path,
        l.t("الطاقة في المراكز", "Energy at the centers"),
        &body,
    ))
}

async fn page_stats(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let (from, all, centers) = load_days(&s, MetricsKind::Stats, None, q.days).await?;
    let chosen = q
        .center
        .as_deref()
        .filter(|c| centers.iter().any(|x| x == c));
    let mins =
        |v: Option<i64>| v.map_or("—".into(), |s| ltr(&format!("{}:{:02}", s / 60, s % 60)));
    let rows = all
        .iter()
        .filter(|d| chosen.is_none_or(|c| d.center == c))
        .map(|d| {
            vec![
                ltr(&d.center),
                ltr(&d.day.to_string()),
                num(d.get("tickets_issued")),
                num(d.get("tickets_served")),
                num(d.get("no_shows")),
                mins(d.get("wait_seconds_avg")),
                mins(d.get("wait_seconds_max")),
                mins(d.get("service_seconds_avg")),
                num(d.get("cases_created")),
                num(d.get("cases_delivered")),
                time(d.as_of_ms),
            ]
        })
        .collect();
    let head = [
        l.t("المركز", "Center"),
        l.t("اليوم", "Day"),
        l.t("بطاقات صادرة", "Tickets issued"),
        l.t("بطاقات مخدومة", "Tickets served"),
        l.t("لم يحضروا", "No-shows"),
        l.t("متوسط الانتظار (د:ث)", "Average wait (m:s)"),
        l.t("أطول انتظار", "Longest wait"),
        l.t("متوسط زمن الخدمة", "Average service time"),
        l.t("معاملات جديدة", "Cases created"),
        l.t("معاملات مسلّمة", "Cases delivered"),
        l.t("الأرقام حتى", "Figures as of"),
    ];
    let path = match chosen {
        Some(c) => format!("/stats?center={}", esc(c)),
        None => "/stats".into(),
    };
    let body = format!(
        "<p>{} {}</p>{}{}",
        l.t("منذ", "Since"),
        ltr(&from.to_string()),
        center_links(l, "/stats", &centers, chosen),
        table(&head, rows, l.t("لا توجد إحصاءات.", "No statistics.")),
    );
    Ok(page(
        l,
        &path,
        l.t("إحصاءات الدور اليومية", "Daily queue statistics"),
        &body,
    ))
}

fn syp(m: markaz_sync::model::Money, l: Lang) -> String {
    ltr(&format!("{m} {}", l.t("ل.س", "SYP")))
}

async fn page_catalog(
    State(s): State<WebState>,
    Q(q): Q<LangQuery>,
) -> Result<Html<String>, ApiError> {
    let l = Lang::of(q.lang.as_deref());
    let cat = load_catalog(&s).await?;
    let name = |e: &CatalogEntry| {
        esc(if l == Lang::En {
            &e.service.name_en
        } else {
            &e.service.name_ar
        })
    };
    let services = cat
        .services
        .iter()
        .map(|e| {
            let sv = &e.service;
            let fields = sv
                .fields
                .iter()
                .map(|f| {
                    let label = if l == Lang::En {
                        &f.label_en
                    } else {
                        &f.label_ar
                    };
                    if f.required {
                        format!("{}*", esc(label))
                    } else {
                        esc(label)
                    }
                })
                .collect::<Vec<_>>()
                .join(l.t("، ", ", "));
            vec![
                ltr(&sv.code),
                name(e),
                esc(if l == Lang::En {
                    sv.group.name_en()
                } else {
                    sv.group.name_ar()
                }),
                esc(if l == Lang::En {
                    sv.authority.name_en()
                } else {
                    sv.authority.name_ar()
                }),
                ltr(&format!("{} h", sv.target_hours)),
                if fields.is_empty() {
                    "—".into()
                } else {
                    fields
                },
                match &e.fee_today {
                    Some(f) => format!(
                        "{} ({} + {})",
                        syp(f.total, l),
                        syp(f.authority, l),
                        syp(f.surcharge, l)
                    ),
                    None => l.t("غير محددة", "not set").into(),
                },
            ]
        })
        .collect();
    let head = [
        l.t("الرمز", "Code"),
        l.t("الخدمة", "Service"),
        l.t("المجموعة", "Group"),
        l.t("الجهة", "Authority"),
        l.t("المدة المستهدفة", "Target time"),
        l.t("الحقول (* مطلوب)", "Fields (* required)"),
        l.t(
            "الرسم اليوم (الجهة + المركز)",
            "Fee today (authority + center)",
        ),
    ];
    let mut history = Vec::new();
    for e in &cat.services {
        let parts = [
            (l.t("رسم الجهة", "Authority fee"), &e.fee_history.authority),
            (
                l.t("بدل المركز", "Center surcharge"),
                &e.fee_history.surcharge,
            ),
        ];
        for (part, list) in parts {
            for (i, c) in list.iter().enumerate() {
                let next = list.get(i + 1).map(|n| n.effective_from);
                let state = if c.effective_from > cat.today {
                    l.t("قادم", "upcoming")
                } else if next.is_some_and(|n| n <= cat.today) {
                    l.t("سابق", "past")
                } else {
                    l.t("نافذ", "in effect")
                };
                history.push(vec![
                    name(e),
                    part.to_string(),
                    ltr(&c.effective_from.to_string()),
                    syp(c.amount, l),
                    esc(&c.decision),
                    state.to_string(),
                ]);
            }
        }
    }
    let hhead = [
        l.t("الخدمة", "Service"),
        l.t("البند", "Part"),
        l.t("نافذ من", "Effective from"),
        l.t("المبلغ", "Amount"),
        l.t("القرار", "Decision"),
        l.t("الحالة", "State"),
    ];
    let body = format!(
        "<p>{} {}</p>{}<h2>{}</h2>{}",
        l.t("اليوم:", "Today:"),
        ltr(&cat.today.to_string()),
        table(&head, services, l.t("لا توجد خدمات.", "No services.")),
        l.t("سجل الرسوم", "Fee history"),
        table(&hhead, history, l.t("لا توجد رسوم.", "No fees.")),
    );
    Ok(page(
        l,
        "/catalog",
        l.t("الخدمات والرسوم", "Services and fees"),
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn token_compare() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("hv"));
        assert!(token_ok(&h, "abc"));
        assert!(!token_ok(&h, "abd"));
        assert!(!token_ok(&HeaderMap::new(), "abc"));
    }
}
