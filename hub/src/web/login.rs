//! Logging in and out, the language toggle, and `/` (each role's first page).
//!
//! A login is limited per (username, client address) with a growing delay
//! (`markaz_web::login`): wrong passwords from one machine never keep the real operator
//! out from another. The password check runs on a blocking thread, and an unknown or
//! deactivated username costs the same time as a wrong password.

use axum::Extension;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use markaz_web::http::{clear_cookie, form_pairs, session_cookie};
use markaz_web::i18n::Lang;
use markaz_web::login::retry_after_secs;
use markaz_web::password::{DUMMY_HASH, new_token, token_hash, verify_password};
use minijinja::context;
use serde::Deserialize;

use super::access::{Caller, client_address, language, safe_back};
use super::pages::{base_context, home_of, html};
use super::{LANG_COOKIE, SESSION_COOKIE, WebState, now_ms};
use crate::operators::{OperatorView, SessionRecord, Who};
use crate::storage::StorageError;

#[derive(Debug, Deserialize, Default)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

fn login_page(
    lang: Lang,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Response {
    let ctx = context! {
        next => next, username => username, error => error,
        ..base_context(lang, "/login", None)
    };
    html(lang, status, "login.html", ctx)
}

/// `GET /login`
pub(super) async fn show(Query(q): Query<NextQuery>, req: Request) -> Response {
    let lang = language(&req, None);
    login_page(lang, StatusCode::OK, safe_back(&q.next), "", None)
}

/// Why a login failed.
enum Refused {
    Wrong,
    Wait(i64),
}

/// `POST /login`: on success a session cookie (HttpOnly, SameSite=Strict, Secure when
/// configured) and a redirect to `next` or the role's first page.
pub(super) async fn submit(State(s): State<WebState>, req: Request) -> Response {
    let lang = language(&req, None);
    let address = client_address(&req);
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return login_page(lang, StatusCode::BAD_REQUEST, "/", "", None),
    };
    let field = |name: &str| {
        form_pairs(&body)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    let (username, password, next) = (
        field("username").trim().to_string(),
        field("password"),
        field("next"),
    );
    let next = safe_back(&next).to_string();
    match login(&s, &username, password, &address).await {
        Ok(Ok((operator, token))) => {
            let to = if next == "/" || next.starts_with("/login") {
                home_of(&operator)
            } else {
                next.as_str()
            };
            let mut resp = Redirect::to(to).into_response();
            let cookie = session_cookie(SESSION_COOKIE, &token, s.options.secure_cookies);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Err(Refused::Wrong)) => {
            tracing::warn!(username, client = %address, "failed operator login");
            let msg = markaz_web::i18n::fill(super::i18n::catalogs().t(lang, "login.failed"), &[]);
            login_page(lang, StatusCode::UNAUTHORIZED, &next, &username, Some(msg))
        }
        Ok(Err(Refused::Wait(ms))) => {
            let secs = retry_after_secs(ms);
            let n = lang_digits(lang, secs);
            let msg = markaz_web::i18n::fill(
                super::i18n::catalogs().t(lang, "login.rate_limited"),
                &[("n", &n)],
            );
            let mut resp = login_page(
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &username,
                Some(msg),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "login failed in storage");
            super::pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error.internal")
        }
    }
}

fn lang_digits(lang: Lang, n: u64) -> String {
    match lang {
        Lang::Ar => markaz_web::i18n::Digits::ArabicIndic.apply(&n.to_string()),
        Lang::En => n.to_string(),
    }
}

/// Checks the limit, the password, and opens a session: (operator, session token).
async fn login(
    s: &WebState,
    username: &str,
    password: String,
    address: &str,
) -> Result<Result<(OperatorView, String), Refused>, StorageError> {
    let now = now_ms();
    let policy = s.options.logins;
    let (user, addr) = (username.to_string(), address.to_string());
    let (wait, found) = s
        .writer
        .run(move |e| {
            let f = e.login_failures(&user, &addr)?;
            let op = e.operator(&user)?;
            Ok::<_, StorageError>((policy.wait_ms(f, now), op))
        })
        .await??;
    if let Some(ms) = wait {
        return Ok(Err(Refused::Wait(ms)));
    }
    let (hash, op) = match found {
        Some(o) if o.active => (o.password_hash.clone(), Some(o.view())),
        _ => (DUMMY_HASH.to_string(), None),
    };
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let (user, addr) = (username.to_string(), address.to_string());
    let Some(op) = op.filter(|_| ok) else {
        s.writer
            .run(move |e| {
                let f = e.login_failures(&user, &addr)?;
                e.set_login_failures(&user, &addr, policy.after_failure(f, now))
            })
            .await??;
        return Ok(Err(Refused::Wrong));
    };
    let token = new_token();
    let hash = token_hash(&token);
    let sessions = s.options.sessions;
    let record = SessionRecord {
        username: op.username.clone(),
        created_ms: now,
        last_seen_ms: now,
    };
    let who = Who {
        operator: op.username.to_string(),
        address: address.to_string(),
        at_ms: now,
    };
    s.writer
        .run(move |e| {
            e.clear_login_failures(&user, Some(&addr))?;
            e.prune_sessions(now - sessions.ttl_ms, now - sessions.idle_ms)?;
            e.insert_session(&hash, &record)?;
            e.record_audit(&who.entry("operator.login", None, &user, None, None))?;
            Ok::<_, StorageError>(())
        })
        .await??;
    Ok(Ok((op, token)))
}

/// `POST /logout`
pub(super) async fn logout(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Some(token) = caller.session {
        let hash = token_hash(&token);
        if let Err(e) = s.writer.run(move |e| e.delete_session(&hash)).await {
            tracing::error!(error = %e, "logout: session not deleted");
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(SESSION_COOKIE)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /lang`: remembers the language for this browser (a year) and goes back.
/// No CSRF check: it changes nothing but the look of the pages.
pub(super) async fn set_lang(req: Request) -> Response {
    let body = axum::body::to_bytes(req.into_body(), 8 * 1024)
        .await
        .unwrap_or_default();
    let pairs = form_pairs(&body);
    let get = |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let lang = Lang::from_code(get("lang")).unwrap_or_default();
    let mut resp = Redirect::to(safe_back(get("back"))).into_response();
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /`: the role's first page, or the login page.
pub(super) async fn home(State(s): State<WebState>, headers: axum::http::HeaderMap) -> Response {
    match super::access::current_operator(&s, &headers).await {
        Some(op) => Redirect::to(home_of(&op)).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}
