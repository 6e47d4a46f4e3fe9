//! Page rendering: the minijinja templates built into the binary, with the catalog
//! lookup `t("key", name=value)` and the `num` filter (digits in the center's style)
//! available to every template. A template names catalog keys only; the tests here
//! check that no template carries user-facing text of its own.

use std::sync::OnceLock;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::i18n::{self, Digits, Lang};

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
];

fn lang_of(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_code))
        .unwrap_or_default()
}

/// The page's digits: Latin in the English interface, the center's style in Arabic.
fn digits_of(state: &State) -> Digits {
    if lang_of(state) == Lang::En {
        return Digits::Western;
    }
    state
        .lookup("digits")
        .and_then(|v| v.as_str().and_then(Digits::from_code))
        .unwrap_or_default()
}

/// `t("key", n=3)`: the catalog text in the page's language with `{n}` filled in;
/// numbers passed as arguments are written in the center's digit style.
fn t(state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let lang = lang_of(state);
    let digits = digits_of(state);
    let mut text = i18n::t(lang, key).to_string();
    for name in kwargs.args() {
        let v: Value = kwargs.get(name)?;
        let shown = if v.is_number() {
            digits.apply(&v.to_string())
        } else {
            v.to_string()
        };
        text = text.replace(&format!("{{{name}}}"), &shown);
    }
    Ok(text)
}

/// `{{ x|num }}`: the value with its digits in the center's style.
fn num(state: &State, v: Value) -> String {
    if v.is_undefined() || v.is_none() {
        return String::new();
    }
    let shown = digits_of(state).apply(&v.to_string());
    // A date or time (`2026-11-29 08:05`) inside Arabic text would be reordered by the
    // bidi algorithm; isolate it left-to-right so it reads in its own order.
    if shown.contains(['-', ':', '/']) {
        format!("\u{2066}{shown}\u{2069}")
    } else {
        shown
    }
}

/// `{{ secs|minutes }}`: a duration in seconds as whole minutes (rounded), digits styled.
fn minutes(state: &State, v: Value) -> String {
    match i64::try_from(v) {
        Ok(secs) => digits_of(state).apply(&((secs + 30) / 60).to_string()),
        Err(_) => "–".to_string(),
    }
}

/// `{{ piastres|money }}`: an amount of piastres as pounds (`1500`, `1500.50`), digits
/// styled; the currency word comes from the catalog (`money.currency`).
fn money(state: &State, v: Value) -> String {
    match i64::try_from(v) {
        Ok(p) => {
            let (whole, frac) = (p / 100, (p % 100).abs());
            let s = if frac == 0 {
                whole.to_string()
            } else {
                format!("{whole}.{frac:02}")
            };
            digits_of(state).apply(&s)
        }
        Err(_) => String::new(),
    }
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            // A template that does not compile is caught by the tests; at run time its
            // page answers with an error instead of taking the node down.
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env.add_function("t", t);
        env.add_filter("num", num);
        env.add_filter("minutes", minutes);
        env.add_filter("money", money);
        env
    })
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
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Removes `{# … #}`, `{% … %}` and `{{ … }}` from a template, keeping the rest.
    fn strip_template_syntax(src: &str) -> String {
        let mut out = String::new();
        let mut rest = src;
        while let Some(pos) = rest.find('{') {
            let after = &rest[pos + 1..];
            let close = match after.chars().next() {
                Some('#') => Some("#}"),
                Some('%') => Some("%}"),
                Some('{') => Some("}}"),
                _ => None,
            };
            match close {
                Some(close) => {
                    out.push_str(&rest[..pos]);
                    match after.find(close) {
                        Some(end) => rest = &after[end + close.len()..],
                        None => return out,
                    }
                }
                None => {
                    out.push_str(&rest[..=pos]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// User-facing literal text found in a template: words between tags, and words in
    /// the attributes people read (placeholder, title, aria-label, alt, value of a
    /// button). Returns what it found, empty when clean.
    pub(crate) fn literal_text(src: &str) -> Vec<String> {
        let plain = strip_template_syntax(src);
        let mut found = Vec::new();
        let mut rest = plain.as_str();
        while !rest.is_empty() {
            match rest.find('<') {
                Some(open) => {
                    check_text(&rest[..open], &mut found);
                    let tag_end = rest[open..]
                        .find('>')
                        .map(|e| open + e + 1)
                        .unwrap_or(rest.len());
                    let tag = &rest[open..tag_end];
                    check_attributes(tag, &mut found);
                    rest = &rest[tag_end..];
                    // Script bodies are code, not text (and ours carry no words).
                    if tag.starts_with("<script") {
                        let end = rest.find("</script>").unwrap_or(rest.len());
                        rest = &rest[end..];
                    }
                    if tag.starts_with("<style") {
                        let end = rest.find("</style>").unwrap_or(rest.len());
                        rest = &rest[end..];
                    }
                }
                None => {
                    check_text(rest, &mut found);
                    break;
                }
            }
        }
        found
    }

    fn check_text(text: &str, found: &mut Vec<String>) {
        let t = text.trim();
        if t.starts_with("<!doctype") {
            return;
        }
        if t.chars().any(char::is_alphabetic) {
            found.push(t.to_string());
        }
    }

    fn check_attributes(tag: &str, found: &mut Vec<String>) {
        if tag.starts_with("<!") {
            return;
        }
        for attr in ["placeholder=", "title=", "aria-label=", "alt="] {
            let mut s = tag;
            while let Some(p) = s.find(attr) {
                let v = &s[p + attr.len()..];
                let value = v
                    .strip_prefix('"')
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("");
                if value.chars().any(char::is_alphabetic) {
                    found.push(format!("{attr}{value}"));
                }
                s = &s[p + attr.len()..];
            }
        }
    }

    /// Every catalog key a template names: quoted literals shaped like `area.name`
    /// (in `t("…")` calls and passed to macros), minus file names and the dynamic
    /// prefixes (`"status." ~ s`), which are checked by the tests of their families.
    pub(crate) fn keys_used(src: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for quote in ['"', '\''] {
            for (i, lit) in src.split(quote).enumerate() {
                if i % 2 == 0 {
                    continue;
                }
                let shaped = lit.contains('.')
                    && !lit.ends_with('.')
                    && lit
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                    && !lit.starts_with('.');
                let file = [".html", ".css", ".js"].iter().any(|e| lit.ends_with(e));
                if shaped && !file {
                    keys.insert(lit.to_string());
                }
            }
        }
        keys
    }

    #[test]
    fn every_template_compiles() {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn no_template_has_literal_user_text() {
        for (name, src) in TEMPLATES {
            let found = literal_text(src);
            assert!(
                found.is_empty(),
                "{name} has text outside the catalog: {found:?}"
            );
        }
    }

    #[test]
    fn the_literal_text_check_catches_text() {
        assert_eq!(literal_text("<p>Hello</p>"), vec!["Hello"]);
        assert_eq!(literal_text("<p>مرحبا {{ x }}</p>"), vec!["مرحبا"]);
        assert_eq!(
            literal_text("<input placeholder=\"Name\">"),
            vec!["placeholder=Name"]
        );
        assert!(
            literal_text("<p>{{ t(\"a\") }} · {{ n|num }}</p>{# note #}{% if x %}–{% endif %}")
                .is_empty()
        );
        assert!(literal_text("<script>var words = 1;</script>").is_empty());
    }

    #[test]
    fn every_key_a_template_uses_exists_in_both_catalogs() {
        for (name, src) in TEMPLATES {
            for key in keys_used(src) {
                for lang in Lang::ALL {
                    assert!(
                        i18n::catalog(lang).contains_key(&key),
                        "{name} uses '{key}', missing in {}",
                        lang.code()
                    );
                }
            }
        }
    }

    #[test]
    fn t_and_num_follow_the_page_language_and_digits() {
        let mut env = Environment::new();
        env.add_function("t", t);
        env.add_filter("num", num);
        env.add_template("x", "{{ t('ticket.ahead', n=12) }}|{{ 'A042'|num }}")
            .unwrap();
        let tpl = env.get_template("x").unwrap();
        let en = tpl
            .render(minijinja::context! { lang => "en", digits => "western" })
            .unwrap();
        assert_eq!(en, "People waiting ahead of you: 12|A042");
        let ar = tpl
            .render(minijinja::context! { lang => "ar", digits => "arabic_indic" })
            .unwrap();
        assert!(ar.contains("١٢") && ar.ends_with("|A٠٤٢"), "{ar}");
        // The English interface writes Latin digits whatever the center's style.
        let en = tpl
            .render(minijinja::context! { lang => "en", digits => "arabic_indic" })
            .unwrap();
        assert_eq!(en, "People waiting ahead of you: 12|A042");
    }
}
