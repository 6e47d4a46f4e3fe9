//! The string catalogs of the center's pages: one flat `key = "text"` file per language
//! (`node/i18n/ar.toml`, `node/i18n/en.toml`), built into the binary. Every user-facing
//! word of a page comes from here; templates and handlers only name keys. The language,
//! digit and catalog types and the format's parser are the shared ones
//! ([`markaz_web::i18n`]).
//!
//! Guarantees (checked by the tests below): both catalogs parse, they have exactly the
//! same keys, and every key a template or handler uses exists.

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use markaz_web::i18n::{CatalogError, Catalogs, Digits, Lang, parse_catalog};

const AR_SOURCE: &str = include_str!("../../i18n/ar.toml");
const EN_SOURCE: &str = include_str!("../../i18n/en.toml");

/// Both catalogs of the center's pages.
pub fn catalogs() -> &'static Catalogs {
    static CATALOGS: OnceLock<Catalogs> = OnceLock::new();
    CATALOGS.get_or_init(|| Catalogs::load(AR_SOURCE, EN_SOURCE))
}

/// The key → text map of one language.
pub fn catalog(lang: Lang) -> &'static BTreeMap<String, String> {
    catalogs().of(lang)
}

/// The text for `key` in `lang`; a missing key shows as itself (tests keep that from
/// happening).
pub fn t(lang: Lang, key: &str) -> &str {
    catalog(lang).get(key).map(String::as_str).unwrap_or(key)
}

/// The text for `key` with `{name}` placeholders filled in.
pub fn t_with(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    markaz_web::i18n::fill(t(lang, key), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_parse_have_the_same_keys_and_are_translated() {
        if let Err(problems) = Catalogs::check(AR_SOURCE, EN_SOURCE) {
            panic!("node catalogs: {problems:#?}");
        }
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            t_with(Lang::En, "ticket.ahead", &[("n", "4")]),
            "People waiting ahead of you: 4"
        );
    }
}
