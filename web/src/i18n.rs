//! Languages, digit styles and the string catalogs of the pages. Each server keeps one
//! flat `key = "text"` file per language, built into its binary; every user-facing word
//! of a page comes from there, and templates and handlers only name keys.
//!
//! The catalog format is the subset of TOML a translator needs: comments, blank lines
//! and `key = "basic string"` lines with `\"`, `\\`, `\n` and `\t` escapes. Anything
//! else is refused with its line number, so a stray edit cannot silently drop a string.
//! [`Catalogs::check`] is the test both servers run over their own files: both parse,
//! they have the same keys, no text is empty, and the Arabic one is translated.

use std::collections::BTreeMap;

use serde::Serialize;

/// A language the pages are offered in (the one enum of config, node and hub).
pub use markaz_ids::Lang;

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

/// The two catalogs of one server.
#[derive(Debug, Clone, Default)]
pub struct Catalogs {
    pub ar: BTreeMap<String, String>,
    pub en: BTreeMap<String, String>,
}

impl Catalogs {
    /// Parses both; a catalog that does not parse is logged and left empty, so pages
    /// show keys rather than crash (the servers' tests run [`Catalogs::check`], so a
    /// broken catalog cannot ship).
    pub fn load(ar: &str, en: &str) -> Catalogs {
        let load = |lang: &str, src: &str| {
            parse_catalog(src).unwrap_or_else(|e| {
                tracing::error!(lang, error = %e, "broken string catalog");
                BTreeMap::new()
            })
        };
        Catalogs {
            ar: load("ar", ar),
            en: load("en", en),
        }
    }

    /// The key → text map of one language.
    pub fn of(&self, lang: Lang) -> &BTreeMap<String, String> {
        match lang {
            Lang::Ar => &self.ar,
            Lang::En => &self.en,
        }
    }

    /// The text for `key` in `lang`; a missing key shows as itself.
    pub fn t<'a>(&'a self, lang: Lang, key: &'a str) -> &'a str {
        self.of(lang).get(key).map(String::as_str).unwrap_or(key)
    }

    /// Both sources parse, have exactly the same keys, no empty text, and every Arabic
    /// text of a sentence has Arabic letters (`lang.switch` names English in English).
    /// Returns every problem found.
    pub fn check(ar: &str, en: &str) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let ar = parse_catalog(ar).map_err(|e| vec![format!("ar: {e}")])?;
        let en = parse_catalog(en).map_err(|e| vec![format!("en: {e}")])?;
        for k in ar.keys().filter(|k| !en.contains_key(*k)) {
            problems.push(format!("only in ar: {k}"));
        }
        for k in en.keys().filter(|k| !ar.contains_key(*k)) {
            problems.push(format!("only in en: {k}"));
        }
        for (k, v) in ar.iter().chain(en.iter()) {
            if v.trim().is_empty() {
                problems.push(format!("empty text for {k}"));
            }
        }
        for (k, v) in &ar {
            if k != "lang.switch"
                && v.chars().any(|c| c.is_ascii_alphabetic())
                && !v.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c))
            {
                problems.push(format!("untranslated Arabic text: {k}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The text for `key` with `{name}` placeholders filled in.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut s = text.to_string();
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
    fn the_check_finds_missing_keys_and_untranslated_text() {
        assert!(Catalogs::check("a = \"نص\"\n", "a = \"text\"\n").is_ok());
        let e =
            Catalogs::check("a = \"نص\"\nb = \"Text\"\n", "a = \"x\"\nc = \"y\"\n").unwrap_err();
        assert!(e.contains(&"only in ar: b".to_string()), "{e:?}");
        assert!(e.contains(&"only in en: c".to_string()), "{e:?}");
        assert!(
            e.contains(&"untranslated Arabic text: b".to_string()),
            "{e:?}"
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
        assert_eq!(fill("waiting: {n}", &[("n", "4")]), "waiting: 4");
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
