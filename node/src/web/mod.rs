//! The center's web pages: server-rendered, Arabic first (right-to-left) with an English
//! toggle per user, digits in the center's style, built into the binary (templates,
//! CSS, scripts, string catalogs), working without JavaScript except the live parts
//! (the waiting-room display and its chime).
//!
//! Handlers call the use cases of [`crate::app`] — the same ones the JSON API calls — so
//! the rules live once. Each role sees only its own pages (menu and handlers both check
//! the role). Forms POST with the session's CSRF token and redirect (PRG); a refused
//! form is shown again with each error next to its field (`aria-describedby`).

pub mod assets;
mod cases;
mod citizens;
mod desk;
mod display;
pub mod i18n;
mod login;
mod oversight;
mod reception;
pub mod render;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::app::App;
pub use i18n::{Digits, Lang};
use session::Web;

/// Page settings that come from the center's config.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebOptions {
    /// Digits on pages and tickets (`[center] digits`).
    pub digits: Digits,
    /// Language before a user picks one (`[center] default_language`).
    pub default_language: Lang,
}

/// The pages and assets, with the default options (Arabic, Arabic-Indic digits).
pub fn router(app: App) -> Router {
    router_with(app, WebOptions::default())
}

/// The pages and assets.
pub fn router_with(app: App, options: WebOptions) -> Router {
    let web = Web {
        app,
        options: Arc::new(options),
    };
    Router::new()
        .route("/", get(login::home))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/lang", post(login::set_lang))
        .route("/assets/{name}", get(assets::serve))
        .route("/display", get(display::display))
        .route("/reception", get(reception::show))
        .route("/reception/citizens", post(reception::register))
        .route("/reception/tickets", post(reception::issue))
        .route("/citizens/duplicates", get(citizens::duplicates))
        .route("/citizens/{nid}", get(citizens::show))
        .route(
            "/citizens/{nid}/edit",
            get(citizens::edit_form).post(citizens::edit),
        )
        .route("/tickets/{id}/print", get(display::ticket_print))
        .route("/desk", get(desk::show))
        .route("/desk/case", get(desk::intake).post(desk::create))
        .route("/desk/{n}/{action}", post(desk::action))
        .route("/cases", get(cases::list))
        .route("/cases/{case_no}", get(cases::show))
        .route("/cases/{case_no}/pay", post(cases::pay))
        .route("/cases/{case_no}/advance", post(cases::advance))
        .route("/cases/{case_no}/receipt", get(cases::receipt))
        .route("/supervisor", get(oversight::supervisor))
        .route("/supervisor/staff/{username}/grant", post(oversight::grant))
        .route("/technician", get(oversight::technician))
        .route("/technician/clock/confirm", post(oversight::clock_confirm))
        .with_state(web)
}

#[cfg(test)]
mod tests {
    use super::i18n::{Lang, catalog};
    use markaz_sync::model::staff::Role;

    /// Keys built at run time (`"priority." ~ p`, `done=…`) exist in both catalogs.
    #[test]
    fn dynamic_key_families_are_complete() {
        let mut keys: Vec<String> = Vec::new();
        keys.extend(
            super::reception::PRIORITIES
                .iter()
                .map(|p| format!("priority.{p}")),
        );
        keys.extend(Role::ALL.iter().map(|r| format!("role.{}", r.as_str())));
        keys.extend(
            ["link", "modem", "power", "sync"]
                .iter()
                .map(|p| format!("panel.{p}")),
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
            ]
            .iter()
            .map(|e| format!("event.{e}")),
        );
        keys.extend(
            [
                "citizen_saved",
                "citizen_exists",
                "citizen_updated",
                "citizen_unchanged",
                "called",
                "queue_empty",
                "recalled",
                "no_show",
                "transferred",
                "finished",
                "case_created",
                "paid",
                "start",
                "ready",
                "notify",
                "deliver",
                "post",
                "cancel",
                "reject",
                "granted",
            ]
            .iter()
            .map(|d| format!("done.{d}")),
        );
        keys.extend(super::session::MENU.iter().map(|m| m.key.to_string()));
        keys.extend(
            [
                "form.choose_bank",
                "form.choose_priority",
                "form.date_format",
            ]
            .map(String::from),
        );
        for lang in Lang::ALL {
            let missing: Vec<&String> = keys
                .iter()
                .filter(|k| !catalog(lang).contains_key(*k))
                .collect();
            assert!(
                missing.is_empty(),
                "missing in {}: {missing:?}",
                lang.code()
            );
        }
    }
}
