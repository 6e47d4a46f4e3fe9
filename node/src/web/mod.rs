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
mod cash;
mod citizens;
mod desk;
mod display;
mod display_speech;
pub mod i18n;
mod kiosk;
mod login;
mod oversight;
mod reception;
pub mod render;
pub mod session;
mod staff;
mod supervisor;
mod technician;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::app::App;
pub use i18n::{Digits, Lang};
pub use kiosk::{KioskKeyError, key_from_config as kiosk_key};
use session::Web;

/// Page settings that come from the center's config.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebOptions {
    /// Digits on pages and tickets (`[center] digits`).
    pub digits: Digits,
    /// Language before a user picks one (`[center] default_language`).
    pub default_language: Lang,
    /// The SHA-256 of the kiosk key (`[kiosk] key_file`); `None`: no kiosk.
    pub kiosk_key: Option<[u8; 32]>,
    /// The node serves HTTPS (`[server.tls]`): the scheme of the links it prints.
    pub https: bool,
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
        lookups: Arc::default(),
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
        .route("/technician", get(technician::show))
        .route("/technician/panels", get(technician::panels_fragment))
        .route("/technician/action", post(technician::act))
        .route("/cash", get(cash::close))
        .route("/cash/close.csv", get(cash::close_csv_file))
        .route("/cash/receipts/{receipt}/void", post(cash::request_void))
        .route("/cash/receipts/{receipt}/approve", post(cash::approve_void))
        .route("/staff", get(staff::list).post(staff::create))
        .route("/staff/{username}", get(staff::member))
        .route("/staff/{username}/{action}", post(staff::action))
        .route("/login-limits/clear", post(staff::clear_limit))
        .route(
            "/account/password",
            get(staff::password_form).post(staff::change_password),
        )
        .route("/technician/clock/confirm", post(oversight::clock_confirm))
        .route("/kiosk", get(kiosk::start))
        .route("/kiosk/tickets", post(kiosk::issue))
        .route("/kiosk/tickets/{token}", get(kiosk::slip))
        .route("/q/{token}", get(kiosk::status))
        .route("/display/speech", get(display_speech::call))
        .route("/display/clips/{file}", get(display_speech::serve))
        .route("/supervisor/board", get(supervisor::board))
        .route("/supervisor/figures", get(supervisor::figures))
        .route("/supervisor/figures.csv", get(supervisor::figures_csv_file))
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
                "staff_created",
                "roles_saved",
                "revoked",
                "activated",
                "deactivated",
                "password_reset",
                "password_changed",
                "no_show_undone",
                "served_later",
                "void_requested",
                "void_approved",
            ]
            .iter()
            .map(|d| format!("done.{d}")),
        );
        keys.extend(
            ["off", "ok", "info", "warn", "fault"]
                .iter()
                .map(|t| format!("tone.{t}")),
        );
        keys.extend(
            ["ok", "failing", "stalled", "refusing", "stopped"]
                .iter()
                .map(|w| format!("storage.writer.{w}")),
        );
        keys.extend(
            ["mppt", "bmv", "inverter", "generator"]
                .iter()
                .map(|d| format!("power.device.{d}")),
        );
        keys.extend(
            ["link", "modem", "power", "sync", "storage"]
                .iter()
                .map(|p| format!("panel.{p}")),
        );
        for a in ["modem_reset", "sync_now"] {
            keys.push(format!("tech.confirm.{a}.title"));
            keys.push(format!("tech.confirm.{a}.say"));
        }
        keys.extend(
            ["modem_reset", "sync_now"]
                .iter()
                .map(|d| format!("done.{d}")),
        );
        keys.extend(super::session::MENU.iter().map(|m| m.key.to_string()));
        keys.extend(
            [
                "form.choose_bank",
                "form.choose_priority",
                "form.date_format",
                "form.choose_role",
                "staff.username_taken",
                "account.mismatch",
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

    /// Every form with a field the user must fill leaves the check to the app, whose
    /// errors are worded in the page's language next to the field: the browser's own
    /// bubble would speak the browser's language and vanish (issue #15.13).
    #[test]
    fn forms_with_required_fields_leave_the_errors_to_the_app() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web/templates");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let html = std::fs::read_to_string(&path).unwrap();
            for form in html.split("<form").skip(1) {
                let (tag, rest) = form.split_once('>').unwrap();
                let body = rest.split("</form>").next().unwrap_or_default();
                let required = body.contains(" required") || body.contains("required=true");
                if required {
                    checked += 1;
                    assert!(
                        tag.contains("novalidate"),
                        "{}: a form with required fields lacks novalidate: <form{tag}>",
                        path.display()
                    );
                }
            }
        }
        assert!(checked >= 5, "{checked} forms checked");
    }
}
