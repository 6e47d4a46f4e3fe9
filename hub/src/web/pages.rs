//! The operator pages built from templates: the account page, the centers overview, one
//! center, the audit log and operator administration. Each page gets the common context
//! ([`base_context`]: language, direction, digits, the menu of the caller's roles, the
//! CSRF token); every time is shown in the governorate's time zone; forms POST with the
//! CSRF token (checked by the access layer) and redirect (PRG).

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use markaz_web::http::form_pairs;
use markaz_web::i18n::Lang;
use minijinja::{Value, context};
use serde::Deserialize;

use super::access::Caller;
use super::api::hash_new_password;
use super::i18n::{catalogs, render};
use super::{ApiError, Q, WebState, now_ms};
use crate::energy::{self, MetricsKind};
use crate::operators::{
    self, AuditFilter, MIN_PASSWORD_LEN, NewOperator, OperatorError, OperatorUpdate, OperatorView,
    Role,
};
use crate::oversight::{self, CenterState};
use crate::storage::StorageError;

/// One entry of the menu, shown to operators holding one of `roles`.
struct MenuEntry {
    href: &'static str,
    key: &'static str,
    roles: &'static [Role],
}

use Role::{Admin, Catalog, Eservices, Network, Oversight, Staff};

/// The menu, in the order of the work: watch the centers, then cases, then the catalog
/// and administration.
const MENU: &[MenuEntry] = &[
    MenuEntry {
        href: "/centers",
        key: "nav.centers",
        roles: &[Oversight, Network],
    },
    MenuEntry {
        href: "/sync-log",
        key: "nav.sync_log",
        roles: &[Oversight, Network],
    },
    MenuEntry {
        href: "/energy",
        key: "nav.energy",
        roles: &[Oversight, Network],
    },
    MenuEntry {
        href: "/oversight",
        key: "nav.oversight",
        roles: &[Oversight],
    },
    MenuEntry {
        href: "/stats",
        key: "nav.stats",
        roles: &[Oversight],
    },
    MenuEntry {
        href: "/conflicts",
        key: "nav.conflicts",
        roles: &[Oversight, Eservices],
    },
    MenuEntry {
        href: "/eservices",
        key: "nav.eservices",
        roles: &[Eservices, Oversight],
    },
    MenuEntry {
        href: "/staff",
        key: "nav.staff",
        roles: &[Staff],
    },
    MenuEntry {
        href: "/catalog",
        key: "nav.catalog",
        roles: &[Catalog, Eservices, Oversight],
    },
    MenuEntry {
        href: "/audit",
        key: "nav.audit",
        roles: &[Oversight],
    },
    MenuEntry {
        href: "/operators",
        key: "nav.operators",
        roles: &[Admin],
    },
];

/// The first page an operator may see: where `/` and a fresh login lead.
pub(super) fn home_of(op: &OperatorView) -> &'static str {
    MENU.iter()
        .find(|m| op.has_any(m.roles))
        .map(|m| m.href)
        .unwrap_or("/account")
}

fn digits(lang: Lang) -> &'static str {
    match lang {
        Lang::Ar => "arabic_indic",
        Lang::En => "western",
    }
}

/// The context every page gets.
pub(super) fn base_context(lang: Lang, path: &str, caller: Option<&Caller>) -> Value {
    let (user, menu, csrf) = match caller {
        Some(c) => {
            let here = path.split('?').next().unwrap_or(path);
            let menu: Vec<Value> = MENU
                .iter()
                .filter(|m| c.operator.has_any(m.roles))
                .map(|m| {
                    context! { href => m.href, key => m.key,
                    active => here == m.href || here.starts_with(&format!("{}/", m.href)) }
                })
                .collect();
            (Value::from_serialize(&c.operator), menu, c.csrf())
        }
        None => (Value::from(()), Vec::new(), String::new()),
    };
    context! {
        lang => lang.code(),
        dir => lang.dir(),
        other_lang => lang.other().code(),
        digits => digits(lang),
        user => user,
        menu => menu,
        csrf => csrf,
        path => path,
    }
}

/// Renders a template as a page that no cache keeps.
pub(super) fn html(lang: Lang, status: StatusCode, template: &str, ctx: Value) -> Response {
    match render(template, ctx) {
        Ok(body) => {
            let mut resp = (status, Html(body)).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::error!(template, error = %e, "page does not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                catalogs().t(lang, "error.internal").to_string(),
            )
                .into_response()
        }
    }
}

/// A short error page (not logged in, or refused).
pub(super) fn error_page(lang: Lang, status: StatusCode, message_key: &str) -> Response {
    let title_key = match status {
        StatusCode::FORBIDDEN => "error.forbidden",
        StatusCode::NOT_FOUND => "error.not_found",
        _ => "error.title",
    };
    let ctx = context! { title_key => title_key, message_key => message_key,
    ..base_context(lang, "/", None) };
    html(lang, status, "error.html", ctx)
}

/// A page of the caller.
pub(super) fn page(
    caller: &Caller,
    path: &str,
    status: StatusCode,
    template: &str,
    extra: Value,
) -> Response {
    let ctx = context! { ..extra, ..base_context(caller.lang, path, Some(caller)) };
    html(caller.lang, status, template, ctx)
}

/// A failure of a page's storage or input, as a page.
pub(super) fn failed(caller: &Caller, e: ApiError) -> Response {
    tracing::warn!(error = %e, "page failed");
    let (status, key) = match e {
        ApiError::NotFound => (StatusCode::NOT_FOUND, "error.not_found"),
        ApiError::Forbidden => (StatusCode::FORBIDDEN, "error.forbidden_text"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "error.internal"),
    };
    error_page(caller.lang, status, key)
}

/// `YYYY-MM-DD HH:MM` in the governorate's time zone.
pub(super) fn local(s: &WebState, ms: Option<i64>) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms?).ok()?;
    Some(
        t.to_zoned(s.options.timezone.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
    )
}

/// The confirmation of `?done=key`, if `done.key` is a catalog entry.
pub(super) fn flash(lang: Lang, done: Option<&str>) -> Option<String> {
    catalogs().of(lang).get(&format!("done.{}", done?)).cloned()
}

fn uplink_kind(uplink: &str) -> &'static str {
    if uplink.ends_with("modem") {
        "modem"
    } else if uplink.ends_with("primary") {
        "primary"
    } else {
        "other"
    }
}

// ---- account ----------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub(super) struct DoneQuery {
    pub(super) done: Option<String>,
}

/// `GET /account`
pub(super) async fn account(Extension(caller): Extension<Caller>, Q(q): Q<DoneQuery>) -> Response {
    account_page(
        &caller,
        StatusCode::OK,
        flash(caller.lang, q.done.as_deref()),
        None,
    )
}

fn account_page(
    caller: &Caller,
    status: StatusCode,
    flash: Option<String>,
    error: Option<String>,
) -> Response {
    page(
        caller,
        "/account",
        status,
        "account.html",
        context! { min_len => MIN_PASSWORD_LEN, flash => flash, error => error },
    )
}

/// `POST /account/password`: the current password, then the new one; the caller's other
/// sessions end, this one goes on.
pub(super) async fn change_password(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let pairs = form_pairs(&body);
    let get = |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (current, new) = (get("current"), get("new_password"));
    let user = caller.operator.username.to_string();
    let stored = {
        let user = user.clone();
        s.writer.run(move |e| e.operator(&user)).await
    };
    let hash = match stored {
        Ok(Ok(Some(op))) => op.password_hash,
        _ => return failed(&caller, ApiError::NotFound),
    };
    let ok =
        tokio::task::spawn_blocking(move || markaz_web::password::verify_password(&current, &hash))
            .await
            .unwrap_or(false);
    let t = |k: &str| catalogs().t(caller.lang, k).to_string();
    if !ok {
        return account_page(
            &caller,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some(t("account.wrong_current")),
        );
    }
    let new_hash = match hash_new_password(new).await {
        Ok(h) => h,
        Err(_) => {
            let msg = markaz_web::i18n::fill(
                &t("account.new_hint"),
                &[("n", &MIN_PASSWORD_LEN.to_string())],
            );
            return account_page(&caller, StatusCode::UNPROCESSABLE_ENTITY, None, Some(msg));
        }
    };
    let keep = caller
        .session
        .as_deref()
        .map(markaz_web::password::token_hash);
    let who = caller.who();
    match s
        .writer
        .run(move |e| operators::set_password(e, &user, new_hash, keep.as_deref(), &who))
        .await
    {
        Ok(Ok(())) => Redirect::to("/account?done=password").into_response(),
        Ok(Err(e)) => failed(&caller, e.into()),
        Err(e) => failed(&caller, e.into()),
    }
}

// ---- centers ----------------------------------------------------------------------------

/// The sort orders of the overview.
const SORTS: [&str; 4] = ["attention", "center", "last_sync", "backlog"];

#[derive(Debug, Default, Deserialize)]
pub(super) struct CentersQuery {
    sort: Option<String>,
    attention: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

fn center_row(s: &WebState, c: &CenterState, now: i64) -> Value {
    let last = c.row.last_ok_ms.or(c.row.last_sync_ms);
    context! {
        center => c.row.center,
        last_sync => local(s, last),
        ago_minutes => last.map(|t| (now - t).max(0) / 60_000),
        uplink => c.row.uplink,
        uplink_kind => c.row.uplink.as_deref().map(uplink_kind),
        modem_minutes => c.modem_since_ms.map(|t| (now - t).max(0) / 60_000),
        backlog => c.row.backlog,
        battery => c.battery_min_pct,
        battery_day => c.battery_day,
        skew_s => c.row.skew_ms.map(|m| m / 1000),
        alerts => c.alerts.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
    }
}

/// `GET /centers?sort=&attention=1`: every center, the silent, the ones on the modem for
/// hours and the ones with a critical battery standing out.
pub(super) async fn centers(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<CentersQuery>,
) -> Response {
    let now = now_ms();
    let silent = s.options.silent_after_ms;
    let mut states = match s
        .writer
        .run(move |e| oversight::center_states(e, now, silent))
        .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let sort = q
        .sort
        .as_deref()
        .filter(|s| SORTS.contains(s))
        .unwrap_or("attention");
    let last = |c: &CenterState| c.row.last_ok_ms.or(c.row.last_sync_ms).unwrap_or(i64::MIN);
    match sort {
        "center" => states.sort_by(|a, b| a.row.center.cmp(&b.row.center)),
        "last_sync" => states.sort_by_key(last),
        "backlog" => states.sort_by_key(|c| std::cmp::Reverse(c.row.backlog)),
        _ => states.sort_by(|a, b| {
            b.alerts
                .len()
                .cmp(&a.alerts.len())
                .then(last(a).cmp(&last(b)))
                .then(a.row.center.cmp(&b.row.center))
        }),
    }
    let total = states.len();
    let attention = states.iter().filter(|c| !c.alerts.is_empty()).count();
    let only_attention = q.attention.as_deref() == Some("1");
    let rows: Vec<Value> = states
        .iter()
        .filter(|c| !only_attention || !c.alerts.is_empty())
        .map(|c| center_row(&s, c, now))
        .collect();
    page(
        &caller,
        "/centers",
        StatusCode::OK,
        "centers.html",
        context! {
            rows => rows, total => total, attention => attention, sort => sort,
            sorts => SORTS, only_attention => only_attention, now => local(&s, Some(now)),
        },
    )
}

/// Sessions of one center read for its page (the uplink hours need a day of them).
const UPLINK_SESSIONS: u32 = 10_000;
/// Sessions listed on a center's page.
const SESSIONS_SHOWN: usize = 30;
const HOUR_MS: i64 = 3_600_000;

/// The link a center used in each of the last 24 hours, oldest first: (start of the
/// hour, `primary`, `modem`, `mixed` or `none`), from its sessions (any order). Pure.
pub(super) fn uplink_hours(
    sessions: &[crate::sessions::SyncSession],
    now_ms: i64,
) -> Vec<(i64, &'static str)> {
    let top = now_ms - now_ms.rem_euclid(HOUR_MS);
    let mut seen = [(false, false); 24];
    for x in sessions {
        let back = (top - (x.started_ms - x.started_ms.rem_euclid(HOUR_MS))) / HOUR_MS;
        let Ok(i) = usize::try_from(back) else {
            continue;
        };
        if i >= 24 {
            continue;
        }
        for hop in x.uplink.split(crate::sessions::UPLINK_ARROW) {
            match uplink_kind(hop) {
                "modem" => seen[i].1 = true,
                _ => seen[i].0 = true,
            }
        }
    }
    (0..24)
        .rev()
        .map(|i| {
            let kind = match seen[i] {
                (true, true) => "mixed",
                (true, false) => "primary",
                (false, true) => "modem",
                (false, false) => "none",
            };
            (top - i as i64 * HOUR_MS, kind)
        })
        .collect()
}

/// `GET /centers/{center}`: its state, sessions, uplinks over the last day, energy and
/// queue figures.
pub(super) async fn center(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(center): Path<String>,
) -> Response {
    let now = now_ms();
    let silent = s.options.silent_after_ms;
    let want = center.clone();
    let loaded = s
        .writer
        .run(move |e| {
            let state = oversight::center_states(e, now, silent)?
                .into_iter()
                .find(|c| c.row.center == want);
            let sessions = e.sessions(Some(&want), now, UPLINK_SESSIONS)?;
            let from = energy::window_start(crate::catalog::today(jiff::Timestamp::now()), Some(7));
            let energy = energy::days(e, MetricsKind::Energy, Some(&want), from)?;
            let stats = energy::days(e, MetricsKind::Stats, Some(&want), from)?;
            Ok::<_, StorageError>((state, sessions, energy, stats))
        })
        .await;
    let (state, sessions, energy, stats) = match loaded {
        Ok(Ok((Some(st), se, en, sta))) => (st, se, en, sta),
        Ok(Ok((None, ..))) => return failed(&caller, ApiError::NotFound),
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let hours: Vec<Value> = uplink_hours(&sessions, now)
        .into_iter()
        .map(|(start, kind)| {
            let hour = jiff::Timestamp::from_millisecond(start)
                .map(|t| {
                    t.to_zoned(s.options.timezone.clone())
                        .strftime("%H")
                        .to_string()
                })
                .unwrap_or_default();
            context! { hour => hour, kind => kind }
        })
        .collect();
    let sessions: Vec<Value> = sessions
        .iter()
        .take(SESSIONS_SHOWN)
        .map(|x| {
            context! {
                started => local(&s, Some(x.started_ms)), uplink => x.uplink,
                requests => x.requests, changes_up => x.changes_up,
                changes_down => x.changes_down, result => x.result, error => x.error,
            }
        })
        .collect();
    let mins = |d: &energy::MetricsDay, k: &str| d.get(k).map(|s| s / 60);
    let energy: Vec<Value> = energy
        .iter()
        .map(|d| {
            context! {
                day => d.day.to_string(), grid => mins(d, "seconds_grid"),
                solar => mins(d, "seconds_solar"), battery => mins(d, "seconds_battery"),
                generator => mins(d, "seconds_generator"), outages => d.get("outages"),
                min_soc => d.get("min_soc_pct"),
            }
        })
        .collect();
    let stats: Vec<Value> = stats
        .iter()
        .map(|d| {
            context! {
                day => d.day.to_string(), issued => d.get("tickets_issued"),
                served => d.get("tickets_served"),
                wait => d.get("wait_seconds_avg").map(|s| (s + 30) / 60),
                cases => d.get("cases_created"),
            }
        })
        .collect();
    let row = center_row(&s, &state, now);
    page(
        &caller,
        &format!("/centers/{center}"),
        StatusCode::OK,
        "center.html",
        context! { sessions => sessions, hours => hours, energy => energy, stats => stats, ..row },
    )
}

// ---- audit ------------------------------------------------------------------------------

/// `GET /audit?operator=&center=&kind=`
pub(super) async fn audit(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(mut f): Q<AuditFilter>,
) -> Response {
    f.limit = Some(f.limit.unwrap_or(300).min(1000));
    let filter = f.clone();
    let entries = match s.writer.run(move |e| e.audit(&filter)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(&caller, e.into()),
        Err(e) => return failed(&caller, e.into()),
    };
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            context! {
                at => local(&s, Some(e.at_ms)), operator => e.operator, address => e.address,
                kind => e.kind, center => e.center, target => e.target,
                before => e.before.as_ref().map(|v| v.to_string()),
                after => e.after.as_ref().map(|v| v.to_string()),
            }
        })
        .collect();
    page(
        &caller,
        "/audit",
        StatusCode::OK,
        "audit.html",
        context! { entries => rows, filter => context! {
        operator => f.operator, center => f.center, kind => f.kind } },
    )
}

// ---- operators --------------------------------------------------------------------------

/// `GET /operators`
pub(super) async fn operators(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<DoneQuery>,
) -> Response {
    let flash = flash(caller.lang, q.done.as_deref());
    operators_page(&s, &caller, StatusCode::OK, flash, None, None).await
}

async fn operators_page(
    s: &WebState,
    caller: &Caller,
    status: StatusCode,
    flash: Option<String>,
    error: Option<String>,
    new_token: Option<String>,
) -> Response {
    let loaded = s
        .writer
        .run(|e| Ok::<_, StorageError>((e.operators()?, e.api_tokens(None)?, e.login_limits()?)))
        .await;
    let (ops, tokens, limits) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed(caller, e.into()),
        Err(e) => return failed(caller, e.into()),
    };
    let ops: Vec<OperatorView> = ops.iter().map(|o| o.view()).collect();
    let tokens: Vec<Value> = tokens
        .iter()
        .map(|k| {
            context! { id => k.id, username => k.username, label => k.label,
            created => local(s, Some(k.created_ms)), last_used => local(s, k.last_used_ms) }
        })
        .collect();
    let limits: Vec<Value> = limits
        .iter()
        .map(|l| {
            context! { username => l.username, address => l.address, failures => l.failures,
            last => local(s, Some(l.last_ms)), waits_until => local(s, l.waits_until_ms(&s.options.logins, now_ms())) }
        })
        .collect();
    page(
        caller,
        "/operators",
        status,
        "operators.html",
        context! {
            operators => ops, tokens => tokens, limits => limits,
            roles => Role::ALL.map(Role::as_str), min_len => MIN_PASSWORD_LEN,
            flash => flash, error => error, new_token => new_token,
        },
    )
}

pub(super) async fn form(req: Request) -> Vec<(String, String)> {
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    form_pairs(&body)
}

pub(super) fn field(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A refused operator form: the page again with the reason on top.
async fn refused(s: &WebState, caller: &Caller, e: ApiError) -> Response {
    match e {
        ApiError::Operator(OperatorError::Storage(_)) | ApiError::Storage(_) => failed(caller, e),
        e => {
            let status = if matches!(e, ApiError::Operator(OperatorError::Exists(_))) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let msg = format!("{} {e}", catalogs().t(caller.lang, "error.invalid"));
            operators_page(s, caller, status, None, Some(msg), None).await
        }
    }
}

/// `POST /operators`: a new operator with roles (checkboxes `role`) and a first password.
pub(super) async fn add_operator(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let roles: Result<Vec<Role>, _> = pairs
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.parse::<Role>())
        .collect();
    let roles = match roles {
        Ok(r) => r,
        Err(e) => return refused(&s, &caller, e.into()).await,
    };
    let new = NewOperator {
        username: field(&pairs, "username"),
        full_name: field(&pairs, "full_name"),
        roles,
        language: "ar".into(),
    };
    let hash = match hash_new_password(field(&pairs, "password")).await {
        Ok(h) => h,
        Err(e) => return refused(&s, &caller, e).await,
    };
    let who = caller.who();
    match s
        .writer
        .run(move |e| operators::create(e, &new, hash, &who))
        .await
    {
        Ok(Ok(_)) => Redirect::to("/operators?done=operator_added").into_response(),
        Ok(Err(e)) => refused(&s, &caller, e.into()).await,
        Err(e) => failed(&caller, e.into()),
    }
}

/// `POST /operators/{username}`: roles (comma-separated) and active.
pub(super) async fn update_operator(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(username): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let roles = match operators::parse_roles(&field(&pairs, "roles")) {
        Ok(r) => r,
        Err(e) => return refused(&s, &caller, e.into()).await,
    };
    let change = OperatorUpdate {
        roles: Some(roles),
        active: Some(field(&pairs, "active") == "1"),
        ..OperatorUpdate::default()
    };
    let who = caller.who();
    match s
        .writer
        .run(move |e| operators::update(e, &username, &change, &who))
        .await
    {
        Ok(Ok(_)) => Redirect::to("/operators?done=operator_saved").into_response(),
        Ok(Err(e)) => refused(&s, &caller, e.into()).await,
        Err(e) => failed(&caller, e.into()),
    }
}

/// `POST /operators/{username}/tokens`: a new API token, shown once on the page.
pub(super) async fn add_token(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(username): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let label = field(&pairs, "label");
    let token = markaz_web::password::new_token();
    let hash = markaz_web::password::token_hash(&token);
    let who = caller.who();
    match s
        .writer
        .run(move |e| operators::add_token(e, &username, &label, &hash, &who))
        .await
    {
        Ok(Ok(_)) => {
            operators_page(&s, &caller, StatusCode::CREATED, None, None, Some(token)).await
        }
        Ok(Err(e)) => refused(&s, &caller, e.into()).await,
        Err(e) => failed(&caller, e.into()),
    }
}

/// `POST /operators/tokens/{id}/revoke`
pub(super) async fn revoke_token(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let who = caller.who();
    match s
        .writer
        .run(move |e| operators::revoke_token(e, id, &who))
        .await
    {
        Ok(Ok(())) => Redirect::to("/operators?done=token_revoked").into_response(),
        Ok(Err(e)) => refused(&s, &caller, e.into()).await,
        Err(e) => failed(&caller, e.into()),
    }
}

/// `POST /operators/limits/clear`: one (username, address) limit.
pub(super) async fn clear_limit(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let (user, addr) = (field(&pairs, "username"), field(&pairs, "address"));
    let who = caller.who();
    match s
        .writer
        .run(move |e| {
            let addr = (!addr.is_empty()).then_some(addr);
            operators::clear_limit(e, &user, addr.as_deref(), &who)
        })
        .await
    {
        Ok(Ok(_)) => Redirect::to("/operators?done=limit_cleared").into_response(),
        Ok(Err(e)) => refused(&s, &caller, e.into()).await,
        Err(e) => failed(&caller, e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oversight::AlertKind;

    /// Keys built at run time (`"role." ~ r`, `"alert." ~ a`, `done=…`) exist in both
    /// catalogs.
    #[test]
    fn dynamic_key_families_are_complete() {
        let mut keys: Vec<String> = Vec::new();
        keys.extend(Role::ALL.iter().map(|r| format!("role.{r}")));
        keys.extend(
            [
                AlertKind::Silent,
                AlertKind::OnModem,
                AlertKind::BatteryCritical,
                AlertKind::SyncFailing,
                AlertKind::BacklogStuck,
            ]
            .iter()
            .map(|a| format!("alert.{}", a.as_str())),
        );
        keys.extend(["primary", "modem", "other", "mixed", "none"].map(|l| format!("link.{l}")));
        keys.extend(["ok", "error", "open"].map(|r| format!("result.{r}")));
        keys.extend(SORTS.map(|s| format!("sort.{s}")));
        keys.extend(
            [
                "password",
                "operator_added",
                "operator_saved",
                "token_revoked",
                "limit_cleared",
                "resolved",
                "permission_granted",
                "permission_revoked",
                "staff_activated",
                "staff_deactivated",
                "portal_case_entered",
                "case_updated",
            ]
            .map(|d| format!("done.{d}")),
        );
        keys.extend(
            markaz_sync::model::case::CaseStatus::ALL
                .iter()
                .map(|s| format!("status.{}", s.as_str())),
        );
        keys.extend(
            markaz_sync::model::staff::Role::ALL
                .iter()
                .map(|r| format!("staff_role.{}", r.as_str())),
        );
        keys.extend(
            markaz_sync::model::catalog::Authority::ALL
                .iter()
                .map(|a| format!("authority.{}", a.as_str())),
        );
        keys.extend(
            [
                "created",
                "paid",
                "started",
                "ready",
                "notified",
                "delivered",
                "posted",
                "cancelled",
                "rejected",
                "routed",
                "resolved",
            ]
            .map(|e| format!("event.{e}")),
        );
        keys.extend(super::super::eservices::citizen_keys());
        keys.extend(super::super::eservices::action_keys());
        keys.extend(MENU.iter().map(|m| m.key.to_string()));
        for lang in Lang::ALL {
            let missing: Vec<&String> = keys
                .iter()
                .filter(|k| !catalogs().of(lang).contains_key(*k))
                .collect();
            assert!(
                missing.is_empty(),
                "missing in {}: {missing:?}",
                lang.code()
            );
        }
    }

    #[test]
    fn the_uplink_of_each_hour_of_the_last_day() {
        let h = super::HOUR_MS;
        let now = 100 * h + 10;
        let s = |at: i64, uplink: &str| crate::sessions::SyncSession {
            started_ms: at,
            uplink: uplink.into(),
            ..Default::default()
        };
        let hours = uplink_hours(
            &[
                s(now - 5, "primary"),
                s(now - h, "modem"),
                s(now - 2 * h, "primary→modem"),
                s(now - 30 * h, "modem"),
            ],
            now,
        );
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[23], (100 * h, "primary"));
        assert_eq!(hours[22].1, "modem");
        assert_eq!(hours[21].1, "mixed");
        assert_eq!(hours[0], (77 * h, "none"));
    }

    #[test]
    fn uplinks_and_homes() {
        assert_eq!(uplink_kind("primary→modem"), "modem");
        assert_eq!(uplink_kind("primary"), "primary");
        let op = |roles| OperatorView {
            username: "x1".parse().expect("valid"),
            full_name: String::new(),
            roles,
            active: true,
            language: "ar".into(),
        };
        assert_eq!(home_of(&op(vec![Role::Network])), "/centers");
        assert_eq!(home_of(&op(vec![Role::Catalog])), "/catalog");
        assert_eq!(home_of(&op(vec![Role::Staff])), "/staff");
    }
}
