//! Logging in and out, the language toggle, and `/` (each role's first page).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::i18n::Lang;
use super::render;
use super::session::{
    LANG_COOKIE, PageError, SESSION_COOKIE, Staff, Visit, Web, base_context, error_message,
    home_of, no_store, safe_back, status_of,
};
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    terminal: String,
    #[serde(default)]
    next: String,
}

fn login_page(
    web: &Web,
    visit: &Visit,
    status: StatusCode,
    next: &str,
    username: &str,
    terminal: &str,
    error: Option<String>,
) -> Response {
    // A damaged database refuses writes, logins included: say so to whoever tries.
    let storage_damaged = matches!(
        web.app.db.integrity.get(),
        crate::storage::integrity::Integrity::Corrupt { .. }
    );
    let ctx = context! {
        next => next, username => username, terminal => terminal, error => error,
        storage_damaged => storage_damaged,
        ..base_context(web, visit.lang, &visit.path, None)
    };
    match render::render("login.html", ctx) {
        Ok(html) => (status, no_store(Html(html).into_response())).into_response(),
        Err(e) => PageError::Render {
            err: e.to_string(),
            lang: visit.lang,
        }
        .into_response(),
    }
}

/// `GET /login`
pub async fn show(State(web): State<Web>, visit: Visit, Query(q): Query<LoginQuery>) -> Response {
    login_page(
        &web,
        &visit,
        StatusCode::OK,
        safe_back(&q.next),
        "",
        "",
        None,
    )
}

/// `POST /login`: on success a session cookie (HttpOnly, SameSite=Strict) and a redirect
/// to `next` or the role's first page.
pub async fn submit(State(web): State<Web>, visit: Visit, Form(f): Form<LoginForm>) -> Response {
    let terminal = f.terminal.trim();
    let terminal_opt = (!terminal.is_empty()).then_some(terminal);
    match web
        .app
        .login(f.username.trim(), &f.password, terminal_opt, &visit.client)
        .await
    {
        Ok(out) => {
            let actor = crate::app::Actor {
                username: out.user.username.clone(),
                full_name: out.user.full_name.clone(),
                roles: out.user.roles.clone(),
                terminal: terminal_opt.map(str::to_string),
                language: out.user.language.clone(),
            };
            let next = safe_back(&f.next);
            let to = if next == "/" || next.starts_with("/login") {
                home_of(&actor)
            } else {
                next
            };
            let mut resp = Redirect::to(to).into_response();
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                out.token
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e @ (AppError::Unauthenticated | AppError::RateLimited { .. })) => login_page(
            &web,
            &visit,
            status_of(&e),
            safe_back(&f.next),
            f.username.trim(),
            terminal,
            Some(error_message(visit.lang, &e)),
        ),
        Err(err) => PageError::app(err, visit.lang).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`
pub async fn logout(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    web.app
        .logout(&staff.token)
        .await
        .map_err(|e| PageError::app(e, staff.lang()))?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("markaz_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct LangForm {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    back: String,
}

/// `POST /lang`: remembers the language for this browser (a year) and goes back.
/// No CSRF check: it changes nothing but the look of the pages.
pub async fn set_lang(Form(f): Form<LangForm>) -> Response {
    let lang = Lang::from_code(&f.lang).unwrap_or_default();
    let mut resp = Redirect::to(safe_back(&f.back)).into_response();
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
pub async fn home(staff: Result<Staff, PageError>) -> Response {
    match staff {
        Ok(s) => Redirect::to(home_of(&s.actor)).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}
