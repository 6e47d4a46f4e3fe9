//! The operator JSON API (`/api/v1/…`): the figures the pages show, the catalog, portal
//! intake and staff administration (each change recorded in the audit log with its value
//! before and after), operators, their API tokens, login limits and the audit log.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Json;
use jiff::civil::Date;
use markaz_sync::model::catalog::Authority;
use markaz_sync::model::{CenterId, StaffMember};
use serde::Deserialize;

use super::{ApiError, Caller, Q, WebState, now_ms};
use crate::catalog::{self, CatalogEntry, CatalogPage};
use crate::energy::{self, Comparison, MetricsDay, MetricsKind};
use crate::operators::{
    self, ApiTokenInfo, AuditEntry, AuditFilter, LoginLimit, NewOperator, OperatorUpdate,
    OperatorView, Who,
};
use crate::oversight::{self, Alert, CenterRow, ConflictRow, OversightRow};
use crate::portal::{self, Grant, PortalError, PortalIntake};
use crate::sessions::SyncSession;
use crate::storage::{HubEngine, StorageError, SyncLogEntry};

/// The catalog entry of `code` today, as JSON (the "before" of an audit entry).
fn service_entry(e: &mut dyn HubEngine, code: &str, today: Date) -> Option<serde_json::Value> {
    catalog::entries(e, today)
        .ok()?
        .services
        .into_iter()
        .find(|x| x.service.code == code)
        .and_then(|x| serde_json::to_value(x).ok())
}

/// A change of one staff member, recorded with the member before and after.
pub(super) fn staff_change(
    e: &mut dyn HubEngine,
    who: &Who,
    kind: &str,
    center: &CenterId,
    username: &str,
    change: &mut dyn FnMut(&mut dyn HubEngine) -> Result<StaffMember, PortalError>,
) -> Result<StaffMember, ApiError> {
    let before = portal::read_staff(e, center, username)?;
    let after = change(e)?;
    e.record_audit(&who.entry(
        kind,
        Some(center.as_str()),
        username,
        before.and_then(|b| serde_json::to_value(b).ok()),
        serde_json::to_value(&after).ok(),
    ))?;
    Ok(after)
}

pub(super) async fn load_centers(s: &WebState) -> Result<Vec<CenterRow>, ApiError> {
    let now = now_ms();
    Ok(s.writer.run(move |e| oversight::centers(e, now)).await??)
}

pub(super) async fn load_sessions(
    s: &WebState,
    center: Option<String>,
) -> Result<Vec<SyncSession>, ApiError> {
    let now = now_ms();
    Ok(s.writer
        .run(move |e| e.sessions(center.as_deref(), now, 500))
        .await??)
}

pub(super) async fn load_log(
    s: &WebState,
    center: Option<String>,
    session: Option<i64>,
) -> Result<Vec<SyncLogEntry>, ApiError> {
    Ok(s.writer
        .run(move |e| oversight::sync_log(e, center.as_deref(), session, 1000))
        .await??)
}

pub(super) async fn load_conflicts(s: &WebState) -> Result<Vec<ConflictRow>, ApiError> {
    let views = s.writer.run(oversight::case_views).await??;
    Ok(oversight::conflicts(&views))
}

/// The query of the oversight page, its CSV and its JSON: `from`, `to` (YYYY-MM-DD,
/// governorate time), `center`, `service`, `by=day`. Empty fields mean "any".
#[derive(Debug, Default, Deserialize)]
pub(super) struct OversightParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub center: Option<String>,
    pub service: Option<String>,
    pub by: Option<String>,
    #[allow(dead_code)]
    pub lang: Option<String>,
}

impl OversightParams {
    /// The typed query; a date that does not parse names its field.
    pub(super) fn query(&self) -> Result<oversight::OversightQuery, ApiError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let date = |name: &str, v: &Option<String>| -> Result<Option<Date>, ApiError> {
            given(v)
                .map(|d| {
                    d.parse::<Date>()
                        .map_err(|_| ApiError::Query(format!("{name}: a date YYYY-MM-DD")))
                })
                .transpose()
        };
        let (from, to) = (date("from", &self.from)?, date("to", &self.to)?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::Query("from: after to".into()));
        }
        Ok(oversight::OversightQuery {
            from,
            to,
            center: given(&self.center),
            service: given(&self.service),
            per_day: self.by.as_deref() == Some("day"),
        })
    }
}

pub(super) async fn load_oversight(
    s: &WebState,
    q: oversight::OversightQuery,
) -> Result<Vec<OversightRow>, ApiError> {
    let tz = s.options.timezone.clone();
    Ok(s.writer
        .run(move |e| oversight::figures(e, &q, jiff::Timestamp::now(), &tz))
        .await??)
}

#[derive(Debug, Deserialize)]
pub(super) struct MetricsQuery {
    pub center: Option<String>,
    pub days: Option<u32>,
    pub lang: Option<String>,
}

pub(super) async fn load_days(
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
pub(super) struct LogQuery {
    pub center: Option<String>,
    /// A session's row id (`sync_sessions.id`), for its requests.
    pub session: Option<i64>,
    #[allow(dead_code)]
    pub lang: Option<String>,
}

pub(super) async fn centers(State(s): State<WebState>) -> Result<Json<Vec<CenterRow>>, ApiError> {
    Ok(Json(load_centers(&s).await?))
}

pub(super) async fn sync_log(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Json<Vec<SyncSession>>, ApiError> {
    Ok(Json(load_sessions(&s, q.center).await?))
}

pub(super) async fn sync_requests(
    State(s): State<WebState>,
    Q(q): Q<LogQuery>,
) -> Result<Json<Vec<SyncLogEntry>>, ApiError> {
    Ok(Json(load_log(&s, q.center, q.session).await?))
}

pub(super) async fn conflicts(
    State(s): State<WebState>,
) -> Result<Json<Vec<ConflictRow>>, ApiError> {
    Ok(Json(load_conflicts(&s).await?))
}

pub(super) async fn oversight(
    State(s): State<WebState>,
    Q(q): Q<OversightParams>,
) -> Result<Json<Vec<OversightRow>>, ApiError> {
    Ok(Json(load_oversight(&s, q.query()?).await?))
}

pub(super) async fn energy(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Vec<MetricsDay>>, ApiError> {
    Ok(Json(
        load_days(&s, MetricsKind::Energy, q.center, q.days)
            .await?
            .1,
    ))
}

pub(super) async fn energy_compare(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let (from, days, _) = load_days(&s, MetricsKind::Energy, None, q.days).await?;
    Ok(Json(energy::compare(&days, from)))
}

pub(super) async fn stats(
    State(s): State<WebState>,
    Q(q): Q<MetricsQuery>,
) -> Result<Json<Vec<MetricsDay>>, ApiError> {
    Ok(Json(
        load_days(&s, MetricsKind::Stats, q.center, q.days).await?.1,
    ))
}

/// A JSON body: not JSON at all is 400 `malformed_json`, the wrong shape 422.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| ApiError::Bad(e.to_string()))
}

pub(super) async fn load_catalog(s: &WebState) -> Result<CatalogPage, ApiError> {
    let today = catalog::today(jiff::Timestamp::now());
    Ok(s.writer.run(move |e| catalog::entries(e, today)).await??)
}

pub(super) async fn catalog(State(s): State<WebState>) -> Result<Json<CatalogPage>, ApiError> {
    Ok(Json(load_catalog(&s).await?))
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Writes a service and its audit entry in one storage job (the API and the catalog
/// page both come here): `(created, entry)`.
pub(super) async fn save_service(
    s: &WebState,
    who: Who,
    service: markaz_sync::model::catalog::Service,
) -> Result<(bool, CatalogEntry), ApiError> {
    let today = catalog::today(jiff::Timestamp::now());
    s.writer
        .run(move |e| {
            let before = service_entry(e, &service.code, today);
            let (created, entry) = catalog::put_service(e, &service, today)?;
            e.record_audit(&who.entry(
                "catalog.service",
                None,
                &service.code,
                before,
                serde_json::to_value(&entry).ok(),
            ))?;
            Ok::<_, ApiError>((created, entry))
        })
        .await?
}

/// Adds a dated fee and its audit entry in one storage job (API and page): `(written,
/// entry)`; an exact repeat writes nothing and is not audited.
pub(super) async fn save_fee(
    s: &WebState,
    who: Who,
    code: String,
    fee: catalog::FeeInput,
) -> Result<(bool, CatalogEntry), ApiError> {
    let today = catalog::today(jiff::Timestamp::now());
    s.writer
        .run(move |e| {
            let before = service_entry(e, &code, today);
            let (written, entry) = catalog::add_fee(e, &code, &fee, today)?;
            if written {
                e.record_audit(&who.entry(
                    "catalog.fee",
                    None,
                    &code,
                    before,
                    serde_json::to_value(&entry).ok(),
                ))?;
            }
            Ok::<_, ApiError>((written, entry))
        })
        .await?
}

pub(super) async fn put_service(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CatalogEntry>), ApiError> {
    let v: serde_json::Value = json_body(&body)?;
    let service = catalog::parse_service(&code, &v)?;
    let (created, entry) = save_service(&s, caller.who(), service).await?;
    Ok((created_or_ok(created), Json(entry)))
}

pub(super) async fn add_fee(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CatalogEntry>), ApiError> {
    let v: serde_json::Value = json_body(&body)?;
    let fee = catalog::parse_fee(&v)?;
    let (written, entry) = save_fee(&s, caller.who(), code, fee).await?;
    Ok((created_or_ok(written), Json(entry)))
}

pub(super) async fn portal_case(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<portal::PortalCase>), ApiError> {
    let intake: PortalIntake = json_body(&body)?;
    let created = enter_portal_case(&s, caller.who(), intake).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A portal case entered by an operator (the API and the electronic services page), with
/// its audit entry in the same write.
pub(super) async fn enter_portal_case(
    s: &WebState,
    who: Who,
    intake: PortalIntake,
) -> Result<portal::PortalCase, ApiError> {
    let now = jiff::Timestamp::now();
    s.writer
        .run(move |e| {
            let created = portal::intake(e, &intake, now)?;
            e.record_audit(&who.entry(
                "portal.case",
                created.routed_to.as_deref(),
                &created.case_no,
                None,
                Some(serde_json::json!({
                    "case": created,
                    "service": intake.service,
                    "delivery": intake.delivery,
                })),
            ))?;
            Ok::<_, ApiError>(created)
        })
        .await?
}

fn center_of(s: &str) -> Result<CenterId, ApiError> {
    s.parse()
        .map_err(|e: markaz_sync::model::IdError| ApiError::Bad(e.to_string()))
}

pub(super) async fn put_staff(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
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
    let who = caller.who();
    s.writer
        .run(move |e| {
            let before = portal::read_staff(e, &center, &staff.username)?;
            portal::put_staff(e, &center, &staff)?;
            e.record_audit(&who.entry(
                "staff.put",
                Some(center.as_str()),
                &staff.username,
                before.and_then(|b| serde_json::to_value(b).ok()),
                serde_json::to_value(&staff).ok(),
            ))?;
            Ok::<_, ApiError>(())
        })
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn grant(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<StaffMember>, ApiError> {
    let center = center_of(&center)?;
    let g: Grant = json_body(&body)?;
    let who = caller.who();
    Ok(Json(
        s.writer
            .run(move |e| {
                staff_change(e, &who, "staff.grant", &center, &username, &mut |e| {
                    portal::grant(e, &center, &username, &g)
                })
            })
            .await??,
    ))
}

pub(super) async fn revoke(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username, authority)): Path<(String, String, String)>,
) -> Result<Json<StaffMember>, ApiError> {
    let center = center_of(&center)?;
    let authority: Authority = authority
        .parse()
        .map_err(|e: markaz_sync::model::catalog::FieldError| ApiError::Bad(e.to_string()))?;
    let who = caller.who();
    Ok(Json(
        s.writer
            .run(move |e| {
                staff_change(e, &who, "staff.revoke", &center, &username, &mut |e| {
                    portal::revoke(e, &center, &username, authority)
                })
            })
            .await??,
    ))
}

/// `GET /api/v1/me`: the caller.
pub(super) async fn me(Extension(caller): Extension<Caller>) -> Json<OperatorView> {
    Json(caller.operator)
}

/// `GET /api/v1/alerts`: the centers that need attention, and why.
pub(super) async fn alerts(State(s): State<WebState>) -> Result<Json<Vec<Alert>>, ApiError> {
    let now = now_ms();
    let silent = s.options.silent_after_ms;
    let rows = s
        .writer
        .run(move |e| oversight::center_states(e, now, silent))
        .await??;
    Ok(Json(rows.into_iter().flat_map(|r| r.alerts).collect()))
}

/// `GET /api/v1/audit?operator=&center=&kind=&limit=`
pub(super) async fn audit(
    State(s): State<WebState>,
    Q(f): Q<AuditFilter>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(s.writer.run(move |e| e.audit(&f)).await??))
}

/// `GET /api/v1/operators`
pub(super) async fn operators(
    State(s): State<WebState>,
) -> Result<Json<Vec<OperatorView>>, ApiError> {
    let ops = s.writer.run(|e| e.operators()).await??;
    Ok(Json(ops.iter().map(|o| o.view()).collect()))
}

/// `POST /api/v1/operators` body: a new operator and their first password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddOperator {
    #[serde(flatten)]
    operator: NewOperator,
    password: String,
}

/// Hashes a new password on a blocking thread (argon2 is CPU-heavy).
pub(super) async fn hash_new_password(password: String) -> Result<String, ApiError> {
    operators::check_password(&password)?;
    tokio::task::spawn_blocking(move || markaz_web::password::hash_password(&password))
        .await
        .map_err(|e| ApiError::Bad(format!("hashing: {e}")))?
        .map_err(|e| ApiError::Bad(e.to_string()))
}

/// `POST /api/v1/operators`
pub(super) async fn add_operator(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<OperatorView>), ApiError> {
    let add: AddOperator = json_body(&body)?;
    let hash = hash_new_password(add.password).await?;
    let who = caller.who();
    let view = s
        .writer
        .run(move |e| operators::create(e, &add.operator, hash, &who))
        .await??;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `PUT /api/v1/operators/{username}`: roles, name, language, active.
pub(super) async fn update_operator(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(username): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<OperatorView>, ApiError> {
    let change: OperatorUpdate = json_body(&body)?;
    let who = caller.who();
    Ok(Json(
        s.writer
            .run(move |e| operators::update(e, &username, &change, &who))
            .await??,
    ))
}

/// `GET /api/v1/operators/{username}/tokens`
pub(super) async fn tokens(
    State(s): State<WebState>,
    Path(username): Path<String>,
) -> Result<Json<Vec<ApiTokenInfo>>, ApiError> {
    Ok(Json(
        s.writer
            .run(move |e| e.api_tokens(Some(&username)))
            .await??,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    #[serde(default)]
    label: String,
}

/// A token as created: the only time the token itself is shown.
#[derive(Debug, serde::Serialize)]
pub(super) struct NewToken {
    #[serde(flatten)]
    info: ApiTokenInfo,
    token: String,
}

/// `POST /api/v1/operators/{username}/tokens`
pub(super) async fn add_token(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(username): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: TokenBody = if body.is_empty() {
        TokenBody::default()
    } else {
        json_body(&body)?
    };
    let token = markaz_web::password::new_token();
    let hash = markaz_web::password::token_hash(&token);
    let who = caller.who();
    let info = s
        .writer
        .run(move |e| operators::add_token(e, &username, &b.label, &hash, &who))
        .await??;
    let out = NewToken { info, token };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(out).map_err(|e| ApiError::Bad(e.to_string()))?),
    ))
}

/// `DELETE /api/v1/tokens/{id}`
pub(super) async fn revoke_token(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let who = caller.who();
    s.writer
        .run(move |e| operators::revoke_token(e, id, &who))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/login-limits`: each pair, with until when its next attempt waits.
pub(super) async fn login_limits(
    State(s): State<WebState>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let limits: Vec<LoginLimit> = s.writer.run(|e| e.login_limits()).await??;
    let now = now_ms();
    let policy = s.options.logins;
    let rows = limits
        .iter()
        .map(|l| {
            let mut v = serde_json::to_value(l).unwrap_or_default();
            v["waits_until_ms"] = serde_json::json!(l.waits_until_ms(&policy, now));
            v
        })
        .collect();
    Ok(Json(rows))
}

#[derive(Debug, Deserialize)]
pub(super) struct ClearQuery {
    username: String,
    address: Option<String>,
}

/// `DELETE /api/v1/login-limits?username=&address=`
pub(super) async fn clear_login_limits(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<ClearQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = caller.who();
    let n = s
        .writer
        .run(move |e| operators::clear_limit(e, &q.username, q.address.as_deref(), &who))
        .await??;
    Ok(Json(serde_json::json!({ "cleared": n })))
}
