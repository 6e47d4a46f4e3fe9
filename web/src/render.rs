//! What every page template gets, at the node and at the hub: the catalog lookup
//! `t("key", name=value)`, the `num` filter (digits in the configured style, dates
//! isolated left-to-right), `minutes` and `money`, with HTML autoescape on (minijinja's
//! default for `.html` names). A template names catalog keys only; [`check`] finds
//! literal text in a template and the keys it uses, for each server's tests.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, State};

use crate::i18n::{Catalogs, Digits, Lang};

fn lang_of(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_code))
        .unwrap_or_default()
}

/// The page's digits: Latin in the English interface, the configured style in Arabic.
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
fn t(catalogs: &Catalogs, state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let lang = lang_of(state);
    let digits = digits_of(state);
    let mut text = catalogs.t(lang, key).to_string();
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

/// The template environment of a server: its templates (built in with `include_str!`)
/// and its catalogs, with the shared functions and filters. A template that does not
/// compile is logged (the servers' tests catch it); its page then answers with an error
/// instead of taking the server down.
pub fn environment(
    templates: &[(&'static str, &'static str)],
    catalogs: &'static Catalogs,
) -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in templates {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "template does not compile");
        }
    }
    env.add_function("t", move |state: &State, key: &str, kwargs: Kwargs| {
        t(catalogs, state, key, kwargs)
    });
    env.add_filter("num", num);
    env.add_filter("minutes", minutes);
    env.add_filter("money", money);
    env
}

/// Checks the servers' tests run over their templates.
pub mod check {
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
    pub fn literal_text(src: &str) -> Vec<String> {
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
    pub fn keys_used(src: &str) -> BTreeSet<String> {
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

    /// Problems of a server's templates: one that does not compile, literal text, a key
    /// missing from a catalog. Empty when clean.
    pub fn templates(templates: &[(&str, &str)], catalogs: &crate::i18n::Catalogs) -> Vec<String> {
        let mut problems = Vec::new();
        let mut env = minijinja::Environment::new();
        for (name, src) in templates {
            if let Err(e) = env.add_template(name, src) {
                problems.push(format!("{name}: {e:#}"));
            }
            let found = literal_text(src);
            if !found.is_empty() {
                problems.push(format!("{name} has text outside the catalog: {found:?}"));
            }
            for key in keys_used(src) {
                for lang in crate::i18n::Lang::ALL {
                    if !catalogs.of(lang).contains_key(&key) {
                        problems.push(format!("{name} uses '{key}', missing in {}", lang.code()));
                    }
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literal_text_check_catches_text() {
        assert_eq!(check::literal_text("<p>Hello</p>"), vec!["Hello"]);
        assert_eq!(check::literal_text("<p>مرحبا {{ x }}</p>"), vec!["مرحبا"]);
        assert_eq!(
            check::literal_text("<input placeholder=\"Name\">"),
            vec!["placeholder=Name"]
        );
        assert!(
            check::literal_text(
                "<p>{{ t(\"a\") }} · {{ n|num }}</p>{# note #}{% if x %}–{% endif %}"
            )
            .is_empty()
        );
        assert!(check::literal_text("<script>var words = 1;</script>").is_empty());
    }

    #[test]
    fn t_and_num_follow_the_page_language_and_digits() {
        let catalogs: &'static Catalogs = Box::leak(Box::new(Catalogs::load(
            "ticket.ahead = \"أمامك: {n}\"",
            "ticket.ahead = \"People waiting ahead of you: {n}\"",
        )));
        let env = environment(
            &[("x", "{{ t('ticket.ahead', n=12) }}|{{ 'A042'|num }}")],
            catalogs,
        );
        let tpl = env.get_template("x").unwrap();
        let en = tpl
            .render(minijinja::context! { lang => "en", digits => "western" })
            .unwrap();
        assert_eq!(en, "People waiting ahead of you: 12|A042");
        let ar = tpl
            .render(minijinja::context! { lang => "ar", digits => "arabic_indic" })
            .unwrap();
        assert!(ar.contains("١٢") && ar.ends_with("|A٠٤٢"), "{ar}");
        // The English interface writes Latin digits whatever the configured style.
        let en = tpl
            .render(minijinja::context! { lang => "en", digits => "arabic_indic" })
            .unwrap();
        assert_eq!(en, "People waiting ahead of you: 12|A042");
    }
}
