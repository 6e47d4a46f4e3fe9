//! What every page request carries: the visitor's language (cookie, then the staff
//! member's own setting, then the center default), the logged-in staff member and the
//! session's CSRF token, and the common page context (menu by role, language toggle,
//! digits). Also the one place where a refused request becomes a page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use markaz_sync::model::catalog::FieldError;
use markaz_sync::model::staff::Capability;

use super::WebOptions;
use super::i18n::{self, Lang};
use super::render;
use crate::app::{Actor, App};
use crate::error::AppError;

pub const LANG_COOKIE: &str = "markaz_lang";
pub use crate::api::SESSION_COOKIE;

/// The state of the page routes.
#[derive(Clone)]
pub struct Web {
    pub app: App,
    pub options: Arc<WebOptions>,
    /// Lookups of the public ticket status links, per client address.
    pub lookups: Arc<std::sync::Mutex<super::kiosk::LookupLimiter>>,
}

/// One entry of the menu, shown to roles that have `cap`.
pub struct MenuEntry {
    pub href: &'static str,
    pub key: &'static str,
    pub cap: Capability,
}

/// The menu, in the order of a visit: reception → desk → cases → oversight → technique.
pub const MENU: &[MenuEntry] = &[
    MenuEntry {
        href: "/reception",
        key: "nav.reception",
        cap: Capability::IssueTicket,
    },
    MenuEntry {
        href: "/desk",
        key: "nav.desk",
        cap: Capability::ServeCounter,
    },
    MenuEntry {
        href: "/cases",
        key: "nav.cases",
        cap: Capability::ViewCases,
    },
    MenuEntry {
        href: "/cash",
        key: "nav.cash",
        cap: Capability::TakePayment,
    },
    MenuEntry {
        href: "/supervisor",
        key: "nav.supervisor",
        cap: Capability::ViewReports,
    },
    MenuEntry {
        href: "/citizens/duplicates",
        key: "nav.duplicates",
        cap: Capability::ViewReports,
    },
    MenuEntry {
        href: "/staff",
        key: "nav.staff",
        cap: Capability::ManageStaff,
    },
    MenuEntry {
        href: "/technician",
        key: "nav.technician",
        cap: Capability::ViewTechnical,
    },
    MenuEntry {
        href: "/display",
        key: "nav.display",
        cap: Capability::ViewDisplay,
    },
];

/// The first page an actor may see: where `/` and a fresh login lead.
pub fn home_of(actor: &Actor) -> &'static str {
    MENU.iter()
        .find(|m| actor.can(m.cap))
        .map(|m| m.href)
        .unwrap_or("/display")
}

/// Reads one cookie by name.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    markaz_web::http::cookie(&parts.headers, name)
}

/// Reads one cookie from request headers (for handlers that hold the headers).
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    markaz_web::http::cookie(headers, name)
}

/// Any visitor: language and where they are.
pub struct Visit {
    pub lang: Lang,
    /// Path and query, for the language toggle and the login redirect.
    pub path: String,
    pub client: String,
    lang_from_cookie: bool,
}

impl FromRequestParts<Web> for Visit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let cookie_lang = cookie(parts, LANG_COOKIE).and_then(|c| Lang::from_code(&c));
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "local".into());
        Ok(Visit {
            lang: cookie_lang.unwrap_or(web.options.default_language),
            path,
            client,
            lang_from_cookie: cookie_lang.is_some(),
        })
    }
}

/// A logged-in staff member. Pages that take this redirect to the login page otherwise.
pub struct Staff {
    pub actor: Actor,
    pub csrf: String,
    pub token: String,
    pub visit: Visit,
}

impl Staff {
    pub fn lang(&self) -> Lang {
        self.visit.lang
    }

    /// Refuses with the "not allowed" page unless the role allows `cap`.
    pub fn require(&self, cap: Capability) -> Result<(), PageError> {
        if self.actor.can(cap) {
            Ok(())
        } else {
            Err(PageError::Forbidden { lang: self.lang() })
        }
    }

    /// Checks the CSRF token a form sent.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageError> {
        if !sent.is_empty()
            && markaz_web::password::constant_time_eq(sent.as_bytes(), self.csrf.as_bytes())
        {
            Ok(())
        } else {
            Err(PageError::Csrf { lang: self.lang() })
        }
    }
}

impl FromRequestParts<Web> for Staff {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let Ok(mut visit) = Visit::from_request_parts(parts, web).await;
        let login = || PageError::Login {
            next: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
        };
        let Some(token) = cookie(parts, SESSION_COOKIE) else {
            return Err(login());
        };
        match web.app.authenticate(&token).await {
            Ok((actor, csrf)) => {
                if !visit.lang_from_cookie
                    && let Some(l) = Lang::from_code(&actor.language)
                {
                    visit.lang = l;
                }
                Ok(Staff {
                    actor,
                    csrf,
                    token,
                    visit,
                })
            }
            Err(AppError::Unauthenticated) => Err(login()),
            Err(e) => Err(PageError::app(e, visit.lang)),
        }
    }
}

/// The context every page template gets.
pub fn base_context(web: &Web, lang: Lang, path: &str, staff: Option<&Staff>) -> Value {
    let s = &web.app.settings;
    let center_name = match lang {
        Lang::Ar => &s.center_name_ar,
        Lang::En => &s.center_name_en,
    };
    let (user, menu, csrf) = match staff {
        Some(st) => {
            let here = path.split('?').next().unwrap_or(path);
            let menu: Vec<Value> = MENU
                .iter()
                .filter(|m| st.actor.can(m.cap))
                .map(|m| context! { href => m.href, key => m.key, active => here == m.href || here.starts_with(&format!("{}/", m.href)) })
                .collect();
            (Value::from_serialize(&st.actor), menu, st.csrf.clone())
        }
        None => (Value::from(()), Vec::new(), String::new()),
    };
    context! {
        lang => lang.code(),
        dir => lang.dir(),
        other_lang => lang.other().code(),
        digits => match lang {
            Lang::En => "western",
            Lang::Ar => digits_code(web),
        },
        center_name => center_name,
        user => user,
        menu => menu,
        csrf => csrf,
        path => path,
    }
}

pub fn digits_code(web: &Web) -> &'static str {
    match web.options.digits {
        i18n::Digits::ArabicIndic => "arabic_indic",
        i18n::Digits::Western => "western",
    }
}

/// Renders `template` with the base context plus `extra`, as an HTML response.
pub fn page(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    template: &str,
    extra: Value,
) -> Result<Response, PageError> {
    let ctx =
        context! { ..extra, ..base_context(web, staff.lang(), &staff.visit.path, Some(staff)) };
    let html = render::render(template, ctx).map_err(|e| PageError::Render {
        err: e.to_string(),
        lang: staff.lang(),
    })?;
    Ok((status, no_store(Html(html).into_response())).into_response())
}

/// Pages carry personal data: no caching by the browser or anything between.
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `?done=key` on a page after a successful POST: the confirmation shown on top, if
/// `done.key` is a catalog entry (anything else is ignored).
pub fn flash(lang: Lang, done: Option<&str>) -> Option<String> {
    let key = format!("done.{}", done?);
    i18n::catalog(lang).get(&key).cloned()
}

/// Field errors of a refused form, by field name, in the page's language.
pub fn field_errors(lang: Lang, errs: &[FieldError]) -> Value {
    let map: std::collections::BTreeMap<String, String> = errs
        .iter()
        .map(|e| {
            let msg = match lang {
                Lang::Ar => &e.message_ar,
                Lang::En => &e.message_en,
            };
            (e.field.clone(), msg.clone())
        })
        .collect();
    Value::from_serialize(&map)
}

/// The message of an app error for the top of a page, in the page's language where
/// the app gives one.
pub fn error_message(lang: Lang, err: &AppError) -> String {
    match err {
        AppError::Invalid(errs) => {
            let first = errs.first().map(|e| match lang {
                Lang::Ar => e.message_ar.clone(),
                Lang::En => e.message_en.clone(),
            });
            format!(
                "{} {}",
                i18n::t(lang, "error.invalid"),
                first.unwrap_or_default()
            )
        }
        AppError::NotFound { .. } => i18n::t(lang, "error.not_found").to_string(),
        AppError::Conflict { message, .. } | AppError::Unprocessable { message, .. } => {
            format!("{} — {message}", i18n::t(lang, "error.conflict"))
        }
        AppError::Forbidden { message, .. } => {
            format!("{} — {message}", i18n::t(lang, "error.forbidden"))
        }
        AppError::Unauthenticated => i18n::t(lang, "login.failed").to_string(),
        AppError::RateLimited { .. } => i18n::t(lang, "login.rate_limited").to_string(),
        AppError::Storage(_) => i18n::t(lang, "error.unavailable").to_string(),
        AppError::Internal(_) => i18n::t(lang, "error.internal").to_string(),
    }
}

pub fn status_of(err: &AppError) -> StatusCode {
    match err {
        AppError::Invalid(_) => StatusCode::BAD_REQUEST,
        AppError::NotFound { .. } => StatusCode::NOT_FOUND,
        AppError::Conflict { .. } => StatusCode::CONFLICT,
        AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not logged in (or the session expired): go to the login page, then come back.
    Login {
        next: String,
    },
    Forbidden {
        lang: Lang,
    },
    Csrf {
        lang: Lang,
    },
    NotFound {
        lang: Lang,
    },
    /// Boxed: an app error is large and travels through every handler's `Result`.
    App {
        err: Box<AppError>,
        lang: Lang,
    },
    Render {
        err: String,
        lang: Lang,
    },
}

impl PageError {
    /// An app error, shown in `lang`.
    pub fn app(err: AppError, lang: Lang) -> Self {
        PageError::App {
            err: Box::new(err),
            lang,
        }
    }
}

/// A short error page, rendered without the session (the menu is not needed to read it).
fn error_page(lang: Lang, status: StatusCode, title_key: &str, message: String) -> Response {
    let ctx = context! {
        lang => lang.code(), dir => lang.dir(), other_lang => lang.other().code(),
        center_name => "", user => (), menu => Vec::<Value>::new(), path => "/",
        title_key => title_key, message => message,
    };
    match render::render("error.html", ctx) {
        Ok(html) => (status, no_store(Html(html).into_response())).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "error page does not render");
            (status, i18n::t(lang, title_key).to_string()).into_response()
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next } => {
                Redirect::to(&format!("/login?next={}", urlencode(safe_back(&next))))
                    .into_response()
            }
            PageError::Forbidden { lang } => error_page(
                lang,
                StatusCode::FORBIDDEN,
                "error.forbidden",
                i18n::t(lang, "error.forbidden_text").into(),
            ),
            PageError::Csrf { lang } => error_page(
                lang,
                StatusCode::FORBIDDEN,
                "error.title",
                i18n::t(lang, "error.csrf").into(),
            ),
            PageError::NotFound { lang } => error_page(
                lang,
                StatusCode::NOT_FOUND,
                "error.not_found",
                String::new(),
            ),
            PageError::App { err, lang } => {
                let err = *err;
                if let AppError::Unauthenticated = err {
                    return Redirect::to("/login").into_response();
                }
                let status = status_of(&err);
                error_page(lang, status, "error.title", error_message(lang, &err))
            }
            PageError::Render { err, lang } => {
                tracing::error!(error = %err, "page does not render");
                error_page(
                    lang,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error.title",
                    i18n::t(lang, "error.internal").into(),
                )
            }
        }
    }
}

/// A field error of a form the pages check themselves, worded from the catalog.
pub fn form_error(field: &str, code: &str, key: &str) -> markaz_sync::model::catalog::FieldError {
    markaz_sync::model::catalog::FieldError::new(
        field,
        code,
        i18n::t(Lang::En, key),
        i18n::t(Lang::Ar, key),
    )
}

pub use markaz_web::http::urlencode;

/// The first path segments of this node's pages: the only places a redirect after login
/// or a "back" link may lead to.
pub const OWN_PAGES: &[&str] = &[
    "reception",
    "desk",
    "cases",
    "supervisor",
    "technician",
    "display",
    "tickets",
    "citizens",
    "staff",
    "account",
    "cash",
    "kiosk",
    "q",
];

/// A path a form may send us back to: `/` or a path of one of [`OWN_PAGES`], else `/`
/// (the rules are the shared [`markaz_web::http::safe_back`]'s).
pub fn safe_back(back: &str) -> &str {
    markaz_web::http::safe_back(back, OWN_PAGES)
}

/// `HH:MM` of a stored timestamp in the center's time zone ("" if it does not parse).
pub fn local_hhmm(app: &App, ts: &str) -> String {
    ts.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(app.settings.timezone.clone())
                .strftime("%H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM` of a stored timestamp in the center's time zone.
pub fn local_datetime(app: &App, ts: &str) -> String {
    ts.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(app.settings.timezone.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_links_stay_on_this_node() {
        assert_eq!(safe_back("/desk?counter=2"), "/desk?counter=2");
        assert_eq!(safe_back("//evil.example/"), "/");
        assert_eq!(safe_back("https://evil.example/"), "/");
        assert_eq!(safe_back("/\\evil"), "/");
        assert_eq!(
            safe_back("/cases/MID-2026-000001"),
            "/cases/MID-2026-000001"
        );
        assert_eq!(safe_back("/"), "/");
        // What a browser would turn into another site, or a path that is no page of ours.
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/%09/evil.example",
            "/%2F/evil.example",
            "/desk//evil.example",
            "/desk/../../evil",
            "/evil.example",
            "evil.example",
            "/desk\\@evil.example",
            "",
        ] {
            assert_eq!(safe_back(bad), "/", "{bad:?}");
        }
        assert_eq!(urlencode("/cases?q=a b"), "/cases%3Fq%3Da%20b");
    }
}

#[cfg(test)]
mod own_pages_tests {
    use super::{OWN_PAGES, safe_back};

    /// Every page the router serves (but the login flow and assets) is one a "back" link
    /// may return to: a page missing from [`OWN_PAGES`] sends the clerk home instead
    /// (the citizen profile did, after switching the language on it).
    #[test]
    fn every_page_route_is_an_own_page() {
        let router = include_str!("mod.rs");
        for route in router.split(".route(\"/").skip(1) {
            let first = route.split(['/', '"', '{']).next().unwrap_or_default();
            // `/login-limits/clear` is a form's target (back to `/staff`), not a page.
            if ["", "login", "logout", "lang", "assets", "login-limits"].contains(&first) {
                continue;
            }
            assert!(OWN_PAGES.contains(&first), "/{first} is not in OWN_PAGES");
            assert_eq!(safe_back(&format!("/{first}")), format!("/{first}"));
        }
    }
}
