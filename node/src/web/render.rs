//! Page rendering: the center's minijinja templates built into the binary, in the shared
//! environment ([`markaz_web::render`]: `t("key", name=value)`, `num`, `minutes`,
//! `money`, autoescape). A template names catalog keys only; the tests here check that
//! no template carries user-facing text of its own and that every key it names exists.

use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::i18n::catalogs;

/// Every template, by name. Built in with `include_str!`, so the binary needs no files.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("display.html", include_str!("templates/display.html")),
    (
        "ticket_print.html",
        include_str!("templates/ticket_print.html"),
    ),
    ("macros.html", include_str!("templates/macros.html")),
    ("reception.html", include_str!("templates/reception.html")),
    ("desk.html", include_str!("templates/desk.html")),
    ("case_new.html", include_str!("templates/case_new.html")),
    ("cases.html", include_str!("templates/cases.html")),
    ("case.html", include_str!("templates/case.html")),
    ("receipt.html", include_str!("templates/receipt.html")),
    ("supervisor.html", include_str!("templates/supervisor.html")),
    ("technician.html", include_str!("templates/technician.html")),
    (
        "technician_panels.html",
        include_str!("templates/technician_panels.html"),
    ),
    ("citizen.html", include_str!("templates/citizen.html")),
    (
        "citizen_edit.html",
        include_str!("templates/citizen_edit.html"),
    ),
    ("duplicates.html", include_str!("templates/duplicates.html")),
    ("staff.html", include_str!("templates/staff.html")),
    (
        "staff_member.html",
        include_str!("templates/staff_member.html"),
    ),
    ("password.html", include_str!("templates/password.html")),
    ("cash.html", include_str!("templates/cash.html")),
    ("kiosk.html", include_str!("templates/kiosk.html")),
    (
        "ticket_status.html",
        include_str!("templates/ticket_status.html"),
    ),
    (
        "supervisor_board.html",
        include_str!("templates/supervisor_board.html"),
    ),
    (
        "supervisor_board_part.html",
        include_str!("templates/supervisor_board_part.html"),
    ),
    (
        "supervisor_figures.html",
        include_str!("templates/supervisor_figures.html"),
    ),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| markaz_web::render::environment(TEMPLATES, catalogs()))
}

/// Renders a template with its context.
pub fn render(name: &str, ctx: Value) -> Result<String, Error> {
    environment().get_template(name)?.render(ctx)
}

/// A template that is not in [`TEMPLATES`].
pub fn missing(name: &str) -> Error {
    Error::new(ErrorKind::TemplateNotFound, name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_carry_no_text_and_name_existing_keys() {
        let problems = markaz_web::render::check::templates(TEMPLATES, catalogs());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
