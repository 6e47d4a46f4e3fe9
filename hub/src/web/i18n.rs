//! The hub's string catalogs (`hub/i18n/ar.toml`, `hub/i18n/en.toml`) and templates
//! (`hub/src/web/templates`), built into the binary and rendered in the shared
//! environment of `markaz_web::render` (autoescape, `t`, `num`). The tests check the
//! catalogs' parity and that no template carries literal text.

use std::sync::OnceLock;

use markaz_web::i18n::Catalogs;
use minijinja::{Environment, Error, Value};

const AR_SOURCE: &str = include_str!("../../i18n/ar.toml");
const EN_SOURCE: &str = include_str!("../../i18n/en.toml");

/// Every template of the hub's pages, by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("account.html", include_str!("templates/account.html")),
    ("centers.html", include_str!("templates/centers.html")),
    ("center.html", include_str!("templates/center.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("operators.html", include_str!("templates/operators.html")),
    ("sync_log.html", include_str!("templates/sync_log.html")),
    (
        "sync_requests.html",
        include_str!("templates/sync_requests.html"),
    ),
    ("conflicts.html", include_str!("templates/conflicts.html")),
    ("staff.html", include_str!("templates/staff.html")),
    ("eservices.html", include_str!("templates/eservices.html")),
    ("eservice.html", include_str!("templates/eservice.html")),
    ("catalog.html", include_str!("templates/catalog.html")),
    (
        "catalog_history.html",
        include_str!("templates/catalog_history.html"),
    ),
    (
        "catalog_service.html",
        include_str!("templates/catalog_service.html"),
    ),
    ("oversight.html", include_str!("templates/oversight.html")),
    ("energy.html", include_str!("templates/energy.html")),
];

/// Both catalogs of the hub's pages.
pub fn catalogs() -> &'static Catalogs {
    static CATALOGS: OnceLock<Catalogs> = OnceLock::new();
    CATALOGS.get_or_init(|| Catalogs::load(AR_SOURCE, EN_SOURCE))
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| markaz_web::render::environment(TEMPLATES, catalogs()))
}

/// Renders a template with its context.
pub fn render(name: &str, ctx: Value) -> Result<String, Error> {
    environment().get_template(name)?.render(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_have_the_same_keys_and_are_translated() {
        if let Err(problems) = Catalogs::check(AR_SOURCE, EN_SOURCE) {
            panic!("hub catalogs: {problems:#?}");
        }
    }

    #[test]
    fn templates_compile_carry_no_text_and_name_existing_keys() {
        let problems = markaz_web::render::check::templates(TEMPLATES, catalogs());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
