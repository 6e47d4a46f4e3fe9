//! The waiting-room display (public: a screen on the wall has no login) and the
//! printable 80 mm queue ticket.
//!
//! The display is rendered with the latest call of each counter, then kept live by
//! `assets/display.js` from the public SSE stream `/api/v1/display/events`. With
//! `?sound=1` it chimes and calls each ticket in spoken Arabic
//! ([`super::display_speech`]); a wall screen has no mouse, so nothing asks for a click
//! (the browser runs with `--autoplay-policy=no-user-gesture-required`, OPERATIONS.md).
//! It fits a 1920×1080 or 1366×768 screen without scrolling: long names are cut with an
//! ellipsis and the cards of old calls that no longer fit are dropped, never clipped.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::staff::Capability;

use super::i18n::{self, Lang};
use super::render;
use super::session::{
    PageError, Staff, Visit, Web, base_context, digits_code, local_hhmm, no_store, safe_back,
};
use crate::app::queue::TicketView;

#[derive(Debug, Deserialize, Default)]
pub struct DisplayQuery {
    #[serde(default)]
    lang: Option<String>,
    /// `1` (or `on`, `true`, `yes`): chime and spoken call. Anything else: silent.
    #[serde(default)]
    sound: Option<String>,
}

/// Whether a `sound=` parameter turns the sound on.
pub fn sound_on(param: Option<&str>) -> bool {
    matches!(
        param.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "on" | "true" | "yes")
    )
}

/// At most this many counter cards: more would not fit a 1366×768 board.
const MAX_CARDS: usize = 12;

/// The latest call of each counter, newest first: (counter, ticket, group).
pub fn latest_per_counter(calls: &[TicketView]) -> Vec<(u32, String, String)> {
    let mut sorted: Vec<&TicketView> = calls
        .iter()
        .filter(|t| t.counter.is_some() && t.called_at.is_some())
        .collect();
    sorted.sort_by(|a, b| b.called_at.cmp(&a.called_at));
    let mut out: Vec<(u32, String, String)> = Vec::new();
    for t in sorted {
        if let Some(c) = t.counter
            && !out.iter().any(|(n, _, _)| *n == c)
        {
            out.push((c, t.number.clone(), t.group.clone()));
        }
    }
    out
}

/// `GET /display`
pub async fn display(
    State(web): State<Web>,
    visit: Visit,
    Query(q): Query<DisplayQuery>,
) -> Response {
    let lang = q
        .lang
        .as_deref()
        .and_then(Lang::from_code)
        .unwrap_or(visit.lang);
    let calls = match web.app.latest_calls(50).await {
        Ok(c) => c,
        Err(err) => return PageError::app(err, lang).into_response(),
    };
    let mut latest = latest_per_counter(&calls);
    latest.truncate(MAX_CARDS);
    let app = &web.app;
    let group_name = |id: &str| {
        app.group(id)
            .map(|g| match lang {
                Lang::Ar => g.name_ar.clone(),
                Lang::En => g.name_en.clone(),
            })
            .unwrap_or_default()
    };
    let card = |(c, n, g): &(u32, String, String)| {
        context! { counter => c, number => n, group => g, group_name => group_name(g) }
    };
    let list: Vec<Value> = latest.iter().map(card).collect();
    let groups: Vec<Value> = app
        .settings
        .groups
        .iter()
        .map(|g| context! { id => &g.id, name => group_name(&g.id) })
        .collect();
    let now = web.app.local_now();
    let clock = now.strftime("%H:%M").to_string();
    let ctx = context! {
        calls => list,
        latest => latest.first().map(card),
        groups => groups,
        sound => sound_on(q.sound.as_deref()),
        clock => clock,
        // The script keeps the clock in the center's time zone, on the server's clock.
        tz => web.app.settings.timezone.iana_name().unwrap_or(""),
        utc_offset_min => now.offset().seconds() / 60,
        now_ms => now.timestamp().as_millisecond(),
        ..base_context(&web, lang, &visit.path, None)
    };
    match render::render("display.html", ctx) {
        Ok(html) => no_store(Html(html).into_response()),
        Err(e) => PageError::Render {
            err: e.to_string(),
            lang,
        }
        .into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct PrintQuery {
    #[serde(default)]
    back: Option<String>,
}

/// `GET /tickets/{id}/print`: the ticket on 80 mm paper, in Arabic and English.
pub async fn ticket_print(
    State(web): State<Web>,
    staff: Staff,
    Path(id): Path<i64>,
    Query(q): Query<PrintQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::IssueTicket)?;
    let lang = staff.lang();
    let app = &web.app;
    let ticket = app.ticket(id).await.map_err(|e| PageError::app(e, lang))?;
    let ahead = match ticket.waiting_ahead {
        Some(n) => n,
        None => {
            let waiting = app
                .waiting_tickets(&staff.actor)
                .await
                .map_err(|e| PageError::app(e, lang))?;
            waiting
                .iter()
                .filter(|t| t.group == ticket.group && (t.turn, t.id) < (ticket.turn, ticket.id))
                .count() as u32
        }
    };
    let group = app.group(&ticket.group);
    let digits = web.options.digits;
    let time = local_hhmm(app, &ticket.issued_at);
    let both = |l: Lang| {
        let n = if l == Lang::Ar {
            digits.apply(&ahead.to_string())
        } else {
            ahead.to_string()
        };
        context! {
            ticket_time => i18n::t(l, "ticket.time"),
            ticket_ahead => i18n::t_with(l, "ticket.ahead", &[("n", &n)]),
            ticket_keep => i18n::t(l, "ticket.keep"),
        }
    };
    let priority_key = serde_json::to_value(ticket.priority)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let priority = |l: Lang| {
        (priority_key != "normal" && !priority_key.is_empty())
            .then(|| i18n::t(l, &format!("priority.{priority_key}")).to_string())
    };
    let back = safe_back(q.back.as_deref().unwrap_or("/reception")).to_string();
    let ctx = context! {
        ticket => Value::from_serialize(&ticket),
        center_name_ar => &app.settings.center_name_ar,
        center_name_en => &app.settings.center_name_en,
        group_name_ar => group.map(|g| g.name_ar.clone()).unwrap_or_else(|| ticket.group.clone()),
        group_name_en => group.map(|g| g.name_en.clone()).unwrap_or_else(|| ticket.group.clone()),
        priority_ar => priority(Lang::Ar),
        priority_en => priority(Lang::En),
        time_ar => digits.apply(&time),
        time_en => time,
        ar => both(Lang::Ar),
        en => both(Lang::En),
        back => back,
        digits => digits_code(&web),
        ..base_context(&web, lang, &staff.visit.path, Some(&staff))
    };
    let html = render::render("ticket_print.html", ctx).map_err(|e| PageError::Render {
        err: e.to_string(),
        lang,
    })?;
    Ok((StatusCode::OK, no_store(Html(html).into_response())).into_response())
}
