//! The string catalogs of the web pages: one flat `key = "text"` file per language
//! (`node/i18n/ar.toml`, `node/i18n/en.toml`), built into the binary. Every user-facing
//! word of a page comes from here; templates and handlers only name keys.
//!
//! Guarantees (checked by the tests below): both catalogs parse, they have exactly the
//! same keys, and every key a template or handler uses exists.
//!
//! The catalog format is the subset of TOML a translator needs: comments, blank lines
//! and `key = "basic string"` lines with `\"`, `\\`, `\n` and `\t` escapes. Anything
//! else is refused with its line number, so a stray edit cannot silently drop a string.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;

/// A language the pages are offered in. Arabic is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Ar,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Ar, Lang::En];

    /// The BCP 47 code used for `<html lang>` and for the language cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ar => "ar",
            Lang::En => "en",
        }
    }

    /// Text direction for `<html dir>`.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Ar => "rtl",
            Lang::En => "ltr",
        }
    }

    /// Parses a language code; unknown codes give `None` (callers fall back to Arabic).
    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim() {
            "ar" => Some(Lang::Ar),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language, for the toggle.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ar => Lang::En,
            Lang::En => Lang::Ar,
        }
    }
}

/// How digits are written on the pages: the center's configured style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Digits {
    /// ٠١٢٣٤٥٦٧٨٩
    #[default]
    ArabicIndic,
    /// 0123456789
    Western,
}

impl Digits {
    pub fn from_code(code: &str) -> Option<Digits> {
        match code.trim() {
            "arabic" | "arabic_indic" | "arabic-indic" => Some(Digits::ArabicIndic),
            "western" | "latin" => Some(Digits::Western),
            _ => None,
        }
    }

    /// Rewrites the ASCII digits of `s` in this style; everything else is kept.
    pub fn apply(self, s: &str) -> String {
        match self {
            Digits::Western => s.to_string(),
            Digits::ArabicIndic => s
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) if c.is_ascii_digit() => char::from_u32(0x0660 + d).unwrap_or(c),
                    _ => c,
                })
                .collect(),
        }
    }
}

/// A catalog line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: &'static str },
    #[error("line {line}: the key '{key}' appears twice")]
    DuplicateKey { line: usize, key: String },
}

/// Parses a catalog file into key → text.
pub fn parse_catalog(text: &str) -> Result<BTreeMap<String, String>, CatalogError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let syntax = |message| CatalogError::Syntax { line, message };
        let (key, rest) = l.split_once('=').ok_or(syntax("expected key = \"text\""))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(syntax("a key is ASCII letters, digits, '_' or '.'"));
        }
        let rest = rest.trim();
        let body = rest
            .strip_prefix('"')
            .ok_or(syntax("the text must be a \"quoted\" string"))?;
        let mut value = String::new();
        let mut chars = body.chars();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    closed = true;
                    break;
                }
                '\\' => match chars.next() {
                    Some('"') => value.push('"'),
                    Some('\\') => value.push('\\'),
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    _ => return Err(syntax("unknown escape; use \\\" \\\\ \\n or \\t")),
                },
                c => value.push(c),
            }
        }
        if !closed {
            return Err(syntax("the string is not closed"));
        }
        let tail = chars.as_str().trim();
        if !(tail.is_empty() || tail.starts_with('#')) {
            return Err(syntax("unexpected text after the string"));
        }
        if out.insert(key.to_string(), value).is_some() {
            return Err(CatalogError::DuplicateKey {
                line,
                key: key.to_string(),
            });
        }
    }
    Ok(out)
}

const AR_SOURCE: &str = include_str!("../../i18n/ar.toml");
const EN_SOURCE: &str = include_str!("../../i18n/en.toml");

struct Catalogs {
    ar: BTreeMap<String, String>,
    en: BTreeMap<String, String>,
}

fn catalogs() -> &'static Catalogs {
    static CATALOGS: OnceLock<Catalogs> = OnceLock::new();
    CATALOGS.get_or_init(|| {
        // The catalogs are part of the binary and a unit test parses them, so a broken
        // catalog cannot ship; should one anyway, pages show keys rather than crash.
        let load = |lang: &str, src: &str| {
            parse_catalog(src).unwrap_or_else(|e| {
                tracing::error!(lang, error = %e, "broken string catalog");
                BTreeMap::new()
            })
        };
        Catalogs {
            ar: load("ar", AR_SOURCE),
            en: load("en", EN_SOURCE),
        }
    })
}

/// The key → text map of one language.
pub fn catalog(lang: Lang) -> &'static BTreeMap<String, String> {
    let c = catalogs();
    match lang {
        Lang::Ar => &c.ar,
        Lang::En => &c.en,
    }
}

/// The text for `key` in `lang`; a missing key shows as itself (tests keep that from
/// happening).
pub fn t(lang: Lang, key: &str) -> &str {
    catalog(lang).get(key).map(String::as_str).unwrap_or(key)
}

/// The text for `key` with `{name}` placeholders filled in.
pub fn t_with(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let mut s = t(lang, key).to_string();
    for (name, value) in args {
        s = s.replace(&format!("{{{name}}}"), value);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn both_catalogs_parse_and_have_the_same_keys() {
        let ar = parse_catalog(AR_SOURCE).expect("ar.toml parses");
        let en = parse_catalog(EN_SOURCE).expect("en.toml parses");
        let only_ar: Vec<_> = ar.keys().filter(|k| !en.contains_key(*k)).collect();
        let only_en: Vec<_> = en.keys().filter(|k| !ar.contains_key(*k)).collect();
        assert!(
            only_ar.is_empty() && only_en.is_empty(),
            "keys only in ar: {only_ar:?}; only in en: {only_en:?}"
        );
        for (k, v) in ar.iter().chain(en.iter()) {
            assert!(!v.trim().is_empty(), "empty text for {k}");
        }
    }

    #[test]
    fn arabic_catalog_is_arabic() {
        // A key copied over untranslated is the usual slip: the Arabic text of a sentence
        // must contain Arabic letters. The language toggle names English in English.
        let ar = parse_catalog(AR_SOURCE).unwrap();
        let latin_only: Vec<_> = ar
            .iter()
            .filter(|(k, v)| {
                k.as_str() != "lang.switch"
                    && v.chars().any(|c| c.is_ascii_alphabetic())
                    && !v.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c))
            })
            .map(|(k, _)| k)
            .collect();
        assert!(
            latin_only.is_empty(),
            "untranslated Arabic strings: {latin_only:?}"
        );
    }

    #[test]
    fn parses_escapes_comments_and_refuses_junk() {
        let m =
            parse_catalog("# c\n\na = \"x \\\"y\\\" \\\\ z\" # trailing\nb.c_d = \"سطر\\nثان\"\n")
                .unwrap();
        assert_eq!(m["a"], "x \"y\" \\ z");
        assert_eq!(m["b.c_d"], "سطر\nثان");
        assert_eq!(
            parse_catalog("a = 'x'"),
            Err(CatalogError::Syntax {
                line: 1,
                message: "the text must be a \"quoted\" string"
            })
        );
        assert!(matches!(
            parse_catalog("a = \"x"),
            Err(CatalogError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_catalog("\na = \"x\" y"),
            Err(CatalogError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            parse_catalog("a b = \"x\""),
            Err(CatalogError::Syntax { .. })
        ));
        assert_eq!(
            parse_catalog("a = \"1\"\na = \"2\""),
            Err(CatalogError::DuplicateKey {
                line: 2,
                key: "a".into()
            })
        );
    }

    #[test]
    fn digits_and_placeholders() {
        assert_eq!(Digits::ArabicIndic.apply("A012 - 3:45"), "A٠١٢ - ٣:٤٥");
        assert_eq!(Digits::Western.apply("A012"), "A012");
        assert_eq!(Lang::Ar.dir(), "rtl");
        assert_eq!(Lang::En.dir(), "ltr");
        assert_eq!(Lang::from_code("en"), Some(Lang::En));
        assert_eq!(Lang::from_code("fr"), None);
        assert_eq!(
            t_with(Lang::En, "ticket.ahead", &[("n", "4")]),
            "People waiting ahead of you: 4"
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_catalog(&s);
        }

        #[test]
        fn any_value_round_trips(key in "[a-z][a-z0-9_.]{0,20}", value in "\\PC{0,60}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            let m = parse_catalog(&format!("{key} = \"{escaped}\"")).unwrap();
            prop_assert_eq!(&m[&key], &value);
        }

        #[test]
        fn arabic_digits_keep_length_in_chars(s in "[0-9A-Z:/ -]{0,30}") {
            let out = Digits::ArabicIndic.apply(&s);
            prop_assert_eq!(out.chars().count(), s.chars().count());
            prop_assert!(!out.chars().any(|c| c.is_ascii_digit()));
        }
    }
}
