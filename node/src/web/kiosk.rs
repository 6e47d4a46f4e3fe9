//! The self-service kiosk (`/kiosk`, a touch screen at the entrance) and the public
//! status page of a ticket (`/q/{token}`), issue #15.7.
//!
//! - Who may use the kiosk: nobody logs in at a touch screen. The center's config names
//!   a key file (`[kiosk] key_file`); the kiosk browser's start address carries the key
//!   once (`/kiosk?key=…`), and the page answers with a cookie that keeps it. Without a
//!   valid key the page says the screen is not set up; without `key_file` it is off.
//!   The kiosk's only action is issuing a ticket (as [`kiosk_actor`]).
//! - The ticket prints at once: the slip page calls `window.print()` itself (Chromium
//!   started with `--kiosk-printing` sends it to the printer with no dialog) and goes
//!   back to the kiosk's start after a few seconds or a touch.
//! - The slip carries the estimated wait and a QR code (inline SVG, drawn here) of the
//!   ticket's status page on the center's LAN (the address the kiosk reached the node
//!   at). That page is public and read-only: it is found by an unguessable token,
//!   lookups are limited per client address ([`LookupLimiter`]), and it shows the
//!   ticket's number, state, place in line and wait, and later its case's state —
//!   nothing about the citizen.

use std::path::Path as FsPath;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::i18n::{self, Digits, Lang};
use super::render;
use super::session::{Visit, Web, base_context, digits_code, error_message, no_store, status_of};
use crate::app::kiosk::{PublicTicket, kiosk_actor};
use crate::app::queue::IssueTicket;
use crate::domain::queue::PriorityClass;
use crate::domain::wait::WaitEstimate;

/// The cookie that keeps a kiosk's key.
pub const KIOSK_COOKIE: &str = "markaz_kiosk";
/// The shortest kiosk key accepted (characters).
pub const MIN_KEY_LEN: usize = 32;
/// Seconds the printed ticket stays on the kiosk's screen before the start page returns
/// (time to scan the QR code with a phone instead of taking the paper).
pub const RETURN_SECS: u32 = 10;

/// Why the kiosk key file is refused.
#[derive(Debug, thiserror::Error)]
pub enum KioskKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: the key (first line) must be at least {MIN_KEY_LEN} characters of A-Z, a-z, 0-9, '-', '_' or '.'"
    )]
    Weak { path: String },
}

fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn key_shaped(key: &str) -> bool {
    key.len() >= MIN_KEY_LEN
        && key.len() <= 512
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The kiosk key of `[kiosk] key_file` (kept as its SHA-256), or `None` when no file is
/// configured. A file that cannot be read or holds a weak key stops the node at start.
pub fn key_from_config(
    cfg: &markaz_config::KioskConfig,
) -> Result<Option<[u8; 32]>, KioskKeyError> {
    let Some(path) = cfg.key_file.as_deref() else {
        return Ok(None);
    };
    key_from_file(path).map(Some)
}

fn key_from_file(path: &FsPath) -> Result<[u8; 32], KioskKeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KioskKeyError::Read {
        path: shown.clone(),
        source,
    })?;
    let key = text.lines().next().unwrap_or_default().trim();
    if !key_shaped(key) {
        return Err(KioskKeyError::Weak { path: shown });
    }
    Ok(key_hash(key))
}

/// Whether `key` is this center's kiosk key.
fn key_matches(web: &Web, key: &str) -> bool {
    match &web.options.kiosk_key {
        Some(want) => markaz_web::password::constant_time_eq(&key_hash(key.trim()), want),
        None => false,
    }
}

/// The request comes from a kiosk (its cookie holds the key).
fn is_kiosk(web: &Web, headers: &HeaderMap) -> bool {
    markaz_web::http::cookie(headers, KIOSK_COOKIE).is_some_and(|k| key_matches(web, &k))
}

/// Lookups of status links per client address, counted in fixed windows: a phone that
/// refreshes its ticket's page is far below the limits; a client guessing tokens runs
/// into the limit of misses after a few tries (and 128-bit tokens are not guessed).
#[derive(Debug, Default)]
pub struct LookupLimiter {
    clients: std::collections::HashMap<String, LookupWindow>,
}

#[derive(Debug, Clone, Copy)]
struct LookupWindow {
    start_ms: i64,
    lookups: u32,
    misses: u32,
}

impl LookupLimiter {
    /// The length of a window.
    pub const WINDOW_MS: i64 = 60_000;
    /// Lookups per client and window.
    pub const MAX_LOOKUPS: u32 = 60;
    /// Unknown tokens per client and window.
    pub const MAX_MISSES: u32 = 10;
    /// Clients remembered before expired windows are dropped.
    const MAX_CLIENTS: usize = 4096;

    /// Counts a lookup by `client`; `Err(seconds to wait)` when it is over a limit.
    pub fn admit(&mut self, client: &str, now_ms: i64) -> Result<(), u64> {
        if self.clients.len() >= Self::MAX_CLIENTS {
            self.clients
                .retain(|_, w| (0..Self::WINDOW_MS).contains(&(now_ms - w.start_ms)));
        }
        let fresh = LookupWindow {
            start_ms: now_ms,
            lookups: 0,
            misses: 0,
        };
        let w = self.clients.entry(client.to_string()).or_insert(fresh);
        // A new window, or a clock that stepped back.
        if !(0..Self::WINDOW_MS).contains(&(now_ms - w.start_ms)) {
            *w = fresh;
        }
        if w.lookups >= Self::MAX_LOOKUPS || w.misses >= Self::MAX_MISSES {
            let left_ms = w.start_ms + Self::WINDOW_MS - now_ms;
            return Err(((left_ms + 999) / 1000).max(1) as u64);
        }
        w.lookups += 1;
        Ok(())
    }

    /// Records that `client`'s last lookup named no ticket.
    pub fn miss(&mut self, client: &str) {
        if let Some(w) = self.clients.get_mut(client) {
            w.misses += 1;
        }
    }
}

/// The address a phone on the center's LAN opens for a ticket: the scheme this node
/// serves and the host the kiosk reached it at (its `Host`), or a path alone when the
/// request named no usable host.
fn status_url(web: &Web, headers: &HeaderMap, token: &str) -> String {
    let scheme = if web.options.https { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        });
    match host {
        Some(h) => format!("{scheme}://{h}/q/{token}"),
        None => format!("/q/{token}"),
    }
}

/// The QR code of `url` as an inline SVG element (no XML prolog), black on white with
/// its quiet zone, error correction M (a crease or a smudge on thermal paper).
pub fn qr_svg(url: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(160, 160)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen("<svg", "<svg aria-hidden=\"true\" focusable=\"false\"", 1))
}

/// A number in the page's digits (Arabic-Indic on Arabic pages where configured).
fn shown(digits: Digits, lang: Lang, n: u32) -> String {
    match lang {
        Lang::Ar => digits.apply(&n.to_string()),
        Lang::En => n.to_string(),
    }
}

/// The estimated wait in words.
fn wait_text(lang: Lang, digits: Digits, wait: WaitEstimate) -> String {
    match wait {
        WaitEstimate::Next => i18n::t(lang, "ticket.wait_next").to_string(),
        WaitEstimate::Minutes(n) => i18n::t_with(
            lang,
            "ticket.wait_minutes",
            &[("n", &shown(digits, lang, n))],
        ),
        WaitEstimate::Unknown => i18n::t(lang, "ticket.wait_unknown").to_string(),
    }
}

fn group_name(web: &Web, lang: Lang, id: &str) -> String {
    web.app
        .group(id)
        .map(|g| match lang {
            Lang::Ar => g.name_ar.clone(),
            Lang::En => g.name_en.clone(),
        })
        .unwrap_or_else(|| id.to_string())
}

fn html(status: StatusCode, template: &str, ctx: Value, lang: Lang) -> Response {
    match render::render(template, ctx) {
        Ok(h) => (status, no_store(Html(h).into_response())).into_response(),
        Err(e) => super::session::PageError::Render {
            err: e.to_string(),
            lang,
        }
        .into_response(),
    }
}

/// A short page with a title and a sentence (the error page's template).
fn notice(
    web: &Web,
    visit: &Visit,
    status: StatusCode,
    title_key: &str,
    message: &str,
) -> Response {
    let ctx = context! {
        title_key => title_key,
        message => message,
        ..base_context(web, visit.lang, &visit.path, None)
    };
    html(status, "error.html", ctx, visit.lang)
}

fn not_set_up(web: &Web, visit: &Visit) -> Response {
    notice(
        web,
        visit,
        StatusCode::FORBIDDEN,
        "kiosk.off_title",
        i18n::t(visit.lang, "kiosk.off_text"),
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct StartQuery {
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct KioskForm {
    #[serde(default)]
    group: String,
    #[serde(default)]
    priority: String,
}

async fn start_page(
    web: &Web,
    visit: &Visit,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let lang = visit.lang;
    let counts = match web.app.waiting_counts().await {
        Ok(c) => c,
        Err(e) => return super::session::PageError::app(e, lang).into_response(),
    };
    let groups: Vec<Value> = web
        .app
        .settings
        .groups
        .iter()
        .map(|g| {
            let waiting = counts
                .iter()
                .find(|(id, _)| *id == g.id)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            context! {
                id => &g.id, letter => g.letter.to_string(),
                name => group_name(web, lang, &g.id), waiting => waiting,
            }
        })
        .collect();
    let ctx = context! {
        groups => groups,
        priorities => super::reception::PRIORITIES.to_vec(),
        error => error,
        ..base_context(web, lang, &visit.path, None)
    };
    html(status, "kiosk.html", ctx, lang)
}

/// `GET /kiosk`: the big buttons. `?key=` (the kiosk browser's start address) checks the
/// key, keeps it in a cookie and comes back without it.
pub async fn start(
    State(web): State<Web>,
    visit: Visit,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    if web.options.kiosk_key.is_none() {
        return not_set_up(&web, &visit);
    }
    if let Some(key) = q.key {
        if !key_matches(&web, &key) {
            tracing::warn!(client = %visit.client, "kiosk key refused");
            return not_set_up(&web, &visit);
        }
        tracing::info!(client = %visit.client, "kiosk authorised");
        let mut resp = Redirect::to("/kiosk").into_response();
        let cookie = format!(
            "{KIOSK_COOKIE}={}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
            key.trim()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        return resp;
    }
    if !is_kiosk(&web, &headers) {
        return not_set_up(&web, &visit);
    }
    start_page(&web, &visit, StatusCode::OK, None).await
}

/// `POST /kiosk/tickets`: one touch issues a ticket and opens its slip, which prints.
/// (No CSRF token: the kiosk has no session; its key cookie is `SameSite=Lax`, so no
/// other site's form can send it.)
pub async fn issue(
    State(web): State<Web>,
    visit: Visit,
    headers: HeaderMap,
    Form(f): Form<KioskForm>,
) -> Response {
    if !is_kiosk(&web, &headers) {
        return not_set_up(&web, &visit);
    }
    let lang = visit.lang;
    let priority = if f.priority.is_empty() {
        Some(PriorityClass::Normal)
    } else {
        PriorityClass::ALL
            .into_iter()
            .find(|p| p.as_str() == f.priority)
    };
    let Some(priority) = priority else {
        let msg = i18n::t(lang, "form.choose_priority").to_string();
        return start_page(&web, &visit, StatusCode::BAD_REQUEST, Some(msg)).await;
    };
    let actor = kiosk_actor(Some(format!("kiosk {}", visit.client)));
    let input = IssueTicket {
        group: f.group,
        priority: Some(priority),
        national_id: None,
    };
    let issued = match web.app.issue_ticket(&actor, input).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "kiosk ticket refused");
            let msg = error_message(lang, &e);
            return start_page(&web, &visit, status_of(&e), Some(msg)).await;
        }
    };
    match web.app.ticket_link(issued.id).await {
        Ok(token) => Redirect::to(&format!("/kiosk/tickets/{token}?auto=1")).into_response(),
        Err(e) => super::session::PageError::app(e, lang).into_response(),
    }
}

/// Looks a status token up within the client's limits.
async fn lookup(web: &Web, visit: &Visit, token: &str) -> Result<PublicTicket, Response> {
    let now = web.app.now_ms();
    let admitted = web
        .lookups
        .lock()
        .map(|mut l| l.admit(&visit.client, now))
        .unwrap_or(Ok(()));
    if let Err(secs) = admitted {
        tracing::warn!(client = %visit.client, "status lookups limited");
        let mut resp = notice(
            web,
            visit,
            StatusCode::TOO_MANY_REQUESTS,
            "public.title",
            i18n::t(visit.lang, "public.rate_limited"),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(resp);
    }
    match web.app.public_ticket(token).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            if let Ok(mut l) = web.lookups.lock() {
                l.miss(&visit.client);
            }
            Err(notice(
                web,
                visit,
                StatusCode::NOT_FOUND,
                "public.title",
                i18n::t(visit.lang, "public.not_found"),
            ))
        }
        Err(e) => Err(super::session::PageError::app(e, visit.lang).into_response()),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct SlipQuery {
    #[serde(default)]
    auto: Option<String>,
}

/// `GET /kiosk/tickets/{token}`: the ticket slip of the kiosk, with the wait and the QR
/// code; with `?auto=1` it prints itself and returns to the start. Found by the same
/// unguessable token as the status page (and showing no more than it).
pub async fn slip(
    State(web): State<Web>,
    visit: Visit,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(q): Query<SlipQuery>,
) -> Response {
    let t = match lookup(&web, &visit, &token).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let app = &web.app;
    let digits = web.options.digits;
    let time = super::session::local_hhmm(app, &t.issued_at);
    let url = status_url(&web, &headers, &t.token);
    let both = |l: Lang| {
        context! {
            ticket_time => i18n::t(l, "ticket.time"),
            ticket_ahead => t.ahead.map(|n| i18n::t_with(l, "ticket.ahead", &[("n", &shown(digits, l, n))])),
            ticket_wait => t.ahead.map(|_| wait_text(l, digits, t.wait)),
            ticket_keep => i18n::t(l, "ticket.keep"),
            ticket_scan => i18n::t(l, "ticket.scan"),
        }
    };
    let priority = |l: Lang| {
        t.priority
            .is_priority()
            .then(|| i18n::t(l, &format!("priority.{}", t.priority.as_str())).to_string())
    };
    let kiosk = is_kiosk(&web, &headers);
    let auto = kiosk && q.auto.as_deref() == Some("1");
    let ctx = context! {
        ticket => Value::from_serialize(&t),
        center_name_ar => &app.settings.center_name_ar,
        center_name_en => &app.settings.center_name_en,
        group_name_ar => group_name(&web, Lang::Ar, &t.group),
        group_name_en => group_name(&web, Lang::En, &t.group),
        priority_ar => priority(Lang::Ar),
        priority_en => priority(Lang::En),
        time_ar => digits.apply(&time),
        time_en => time,
        ar => both(Lang::Ar),
        en => both(Lang::En),
        status_url => &url,
        qr_svg => qr_svg(&url).map(Value::from_safe_string),
        auto_print => auto,
        return_secs => RETURN_SECS,
        back => if kiosk { "/kiosk".to_string() } else { format!("/q/{}", t.token) },
        back_key => if kiosk { "kiosk.done" } else { "print.back" },
        digits => digits_code(&web),
        ..base_context(&web, visit.lang, &visit.path, None)
    };
    html(StatusCode::OK, "ticket_print.html", ctx, visit.lang)
}

/// `GET /q/{token}`: the public status of a ticket, for the citizen's phone.
pub async fn status(State(web): State<Web>, visit: Visit, Path(token): Path<String>) -> Response {
    let t = match lookup(&web, &visit, &token).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let lang = visit.lang;
    let ctx = context! {
        ticket => Value::from_serialize(&t),
        group_name => group_name(&web, lang, &t.group),
        wait => t.ahead.map(|_| wait_text(lang, web.options.digits, t.wait)),
        ..base_context(&web, lang, &visit.path, None)
    };
    html(StatusCode::OK, "ticket_status.html", ctx, lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_limited_per_client_and_window() {
        let mut l = LookupLimiter::default();
        for _ in 0..LookupLimiter::MAX_MISSES {
            assert!(l.admit("10.0.0.9", 1_000).is_ok());
            l.miss("10.0.0.9");
        }
        // Guessing: refused for the rest of the window, with the seconds to wait.
        assert_eq!(l.admit("10.0.0.9", 1_000), Err(60));
        assert_eq!(l.admit("10.0.0.9", 31_000), Err(30));
        // Another phone is not affected; a phone that only refreshes stays under it.
        for i in 0..LookupLimiter::MAX_LOOKUPS {
            assert!(l.admit("10.0.0.7", 1_000 + i64::from(i)).is_ok());
        }
        assert!(l.admit("10.0.0.7", 2_000).is_err());
        // A new window starts afresh.
        assert!(l.admit("10.0.0.9", 61_000).is_ok());
        assert!(l.admit("10.0.0.7", 61_000).is_ok());
    }

    #[test]
    fn keys_must_be_long_and_cookie_safe() {
        assert!(key_shaped(&"a".repeat(MIN_KEY_LEN)));
        assert!(!key_shaped(&"a".repeat(MIN_KEY_LEN - 1)));
        assert!(!key_shaped(&format!("{};x=1", "a".repeat(MIN_KEY_LEN))));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kiosk.key");
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(key_from_file(&p), Err(KioskKeyError::Weak { .. })));
        let key = "k".repeat(40);
        std::fs::write(&p, format!("{key}\nanything else\n")).unwrap();
        assert_eq!(key_from_file(&p).unwrap(), key_hash(&key));
        assert!(matches!(
            key_from_file(&dir.path().join("missing")),
            Err(KioskKeyError::Read { .. })
        ));
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg("http://192.168.1.10:8080/q/AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert!(svg.starts_with("<svg aria-hidden=\"true\""), "{svg:.80}");
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml"));
    }

    /// The state and wait keys the status page and slip build at run time exist.
    #[test]
    fn run_time_keys_exist() {
        use crate::domain::queue::TicketState;
        for lang in Lang::ALL {
            for s in [
                TicketState::Waiting,
                TicketState::Called,
                TicketState::Done,
                TicketState::NoShow,
            ] {
                let key = format!("public.state.{}", s.as_str());
                assert!(i18n::catalog(lang).contains_key(&key), "{key}");
            }
            for k in [
                "ticket.wait_next",
                "ticket.wait_minutes",
                "ticket.wait_unknown",
                "kiosk.off_title",
                "kiosk.off_text",
                "kiosk.done",
                "public.title",
                "public.rate_limited",
                "public.not_found",
            ] {
                assert!(i18n::catalog(lang).contains_key(k), "{k}");
            }
        }
    }
}
