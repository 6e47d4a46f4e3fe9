//! From TOML text to a checked configuration, collecting every problem with its position.
//!
//! The text is parsed once into a span-carrying tree (`toml::de::DeTable`). Deserializing
//! stops at the first error, so to report them all the loader repeats: deserialize, and
//! on error record it, remove the offending key from the tree and try again. Spans point
//! into the original text, so positions stay right after removals. Then the rules of
//! [`crate::rules`] check values against each other; their problems are placed by
//! looking their key path up in the same tree.
//!
//! Guarantees: never panics on any input; the first syntax error is reported alone
//! (later ones are often echoes of it). The rules also run on a file with schema
//! problems, but a rule that reads a key taken out (now at its default) stays silent,
//! so a misspelt key never produces a misleading rule error; if a whole list entry had
//! to be dropped, the rules wait until the schema problems are fixed.

use std::ops::Range;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::error::{ConfigError, Problem, ProblemKind, line_column};
use crate::suggest::closest;

/// Most deserialization problems reported for one file; a file worse than that is
/// probably not a Markaz configuration at all.
const MAX_PROBLEMS: usize = 64;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path of keys and array indices from the document root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    /// A path of plain keys from a dotted string: `kp("power.thresholds")`.
    pub(crate) fn dotted(s: &str) -> Self {
        Self(s.split('.').map(|k| Seg::Key(k.to_owned())).collect())
    }

    pub(crate) fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    fn parent(&self) -> Self {
        let mut p = self.clone();
        p.0.pop();
        p
    }

    fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The `[section]` a key lives in, for messages: `[queue]`, `[counters[2]]`, or
/// `the top level`.
fn section_name(path: &KeyPath) -> String {
    let parent = path.parent();
    if parent.0.is_empty() {
        "the top level".to_owned()
    } else {
        format!("[{parent}]")
    }
}

/// `in [queue]` or `at the top level`.
fn where_in(path: &KeyPath) -> String {
    if path.0.len() <= 1 {
        "at the top level".to_owned()
    } else {
        format!("in {}", section_name(path))
    }
}

/// Calls `f(path, key_span, value_span)` for every node, parents before children.
fn walk(
    value: &DeValue<'_>,
    path: &mut KeyPath,
    f: &mut impl FnMut(&KeyPath, Option<Range<usize>>, Range<usize>),
) {
    match value {
        DeValue::Table(table) => {
            for (k, v) in table.iter() {
                path.0.push(Seg::Key(k.get_ref().to_string()));
                f(path, Some(k.span()), v.span());
                walk(v.get_ref(), path, f);
                path.0.pop();
            }
        }
        DeValue::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                path.0.push(Seg::Index(i));
                f(path, None, v.span());
                walk(v.get_ref(), path, f);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// The node an error span belongs to: the deepest node whose key or value span is
/// exactly the error span, else the smallest value span containing its start.
fn locate(root: &Spanned<DeTable<'_>>, span: &Range<usize>) -> KeyPath {
    let mut exact: Option<KeyPath> = None;
    let mut containing: Option<(usize, KeyPath)> = None;
    let doc = DeValue::Table(root.get_ref().clone());
    walk(&doc, &mut KeyPath::default(), &mut |path, key, value| {
        if key.as_ref() == Some(span) || &value == span {
            if exact.as_ref().is_none_or(|e| path.0.len() >= e.0.len()) {
                exact = Some(path.clone());
            }
        } else if value.contains(&span.start) || key.is_some_and(|k| k.contains(&span.start)) {
            let size = value.len();
            if containing.as_ref().is_none_or(|(s, _)| size <= *s) {
                containing = Some((size, path.clone()));
            }
        }
    });
    exact.or(containing.map(|(_, p)| p)).unwrap_or_default()
}

/// A node of the tree: where its key and value are, and the value's TOML type.
struct Node {
    key: Option<Range<usize>>,
    value: Range<usize>,
    type_name: &'static str,
}

/// The node at `path`, or `None` if the tree has nothing there.
fn find(root: &Spanned<DeTable<'_>>, path: &KeyPath) -> Option<Node> {
    let Some((Seg::Key(first), rest)) = path.0.split_first() else {
        return path.0.is_empty().then(|| Node {
            key: None,
            value: root.span(),
            type_name: "table",
        });
    };
    let (k, mut value) = root.get_ref().get_key_value(first.as_str())?;
    let mut key = Some(k.span());
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let (k, v) = t.get_key_value(k.as_str())?;
                key = Some(k.span());
                v
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                key = None;
                a.get(*i)?
            }
            _ => return None,
        };
    }
    Some(Node {
        key,
        value: value.span(),
        type_name: value.get_ref().type_str(),
    })
}

/// Removes the node at `path` (a key from its table, or an element from its array).
/// Returns the span of the container it was removed from, or `None` if nothing was
/// removed (the root cannot be removed).
fn remove(root: &mut Spanned<DeTable<'_>>, path: &KeyPath) -> Option<Range<usize>> {
    let span = root.span();
    remove_from_table(root.get_mut(), span, &path.0)
}

fn remove_from_table(
    table: &mut DeTable<'_>,
    span: Range<usize>,
    segs: &[Seg],
) -> Option<Range<usize>> {
    match segs {
        [Seg::Key(k)] => table.remove(k.as_str()).map(|_| span),
        [Seg::Key(k), rest @ ..] => remove_from_value(table.get_mut(k.as_str())?, rest),
        _ => None,
    }
}

fn remove_from_value(value: &mut Spanned<DeValue<'_>>, segs: &[Seg]) -> Option<Range<usize>> {
    let span = value.span();
    match value.get_mut() {
        DeValue::Table(table) => remove_from_table(table, span, segs),
        DeValue::Array(array) => match segs {
            [Seg::Index(i)] if *i < array.len() => {
                let mut kept = DeArray::new();
                for (j, item) in array.iter().enumerate() {
                    if j != *i {
                        kept.push(item.clone());
                    }
                }
                *array = kept;
                Some(span)
            }
            [Seg::Index(i), rest @ ..] => remove_from_value(array.get_mut(*i)?, rest),
            _ => None,
        },
        _ => None,
    }
}

/// Collects problems for one file and places them by key path.
pub(crate) struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    root: Spanned<DeTable<'a>>,
    problems: Vec<Problem>,
    /// Keys taken out of the tree because of schema problems; the configuration the
    /// rules see has defaults there, so a rule touching them would judge a value the
    /// file did not ask for, and stays silent.
    removed: Vec<KeyPath>,
    /// Whether files the configuration names are checked on this machine's disk: when a
    /// file is checked (`check-config`, a process starting), not for text in memory.
    files: bool,
}

impl<'a> Checker<'a> {
    fn problem_at(
        &mut self,
        offset: usize,
        path: &KeyPath,
        kind: ProblemKind,
        message: String,
        hint: Option<String>,
    ) {
        let (line, column) = line_column(self.text, offset);
        self.problems.push(Problem {
            file: self.origin.to_owned(),
            line,
            column,
            key_path: path.to_string(),
            kind,
            message,
            hint,
        });
    }

    /// Whether the file itself sets this key (rather than leaving it to a default).
    pub(crate) fn is_set(&self, path: &KeyPath) -> bool {
        !path.0.is_empty() && find(&self.root, path).is_some()
    }

    /// A bad value at `path`: placed on the value if the file sets it, else on the
    /// nearest enclosing key that the file has (e.g. the `[sync]` header).
    pub(crate) fn bad(&mut self, path: &KeyPath, message: impl Into<String>, hint: Option<String>) {
        self.bad_given(path, &[], message, hint);
    }

    /// Like [`Checker::bad`], for a rule that also reads the keys in `given`.
    pub(crate) fn bad_given(
        &mut self,
        path: &KeyPath,
        given: &[&KeyPath],
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        if self.touches_removed(path, given) {
            return;
        }
        let message = format!("bad value for `{path}`: {}", message.into());
        self.place(path, ProblemKind::BadValue, message, hint);
    }

    /// A key that another setting (`cause`, described by `because`) makes required,
    /// placed like [`Checker::bad`].
    pub(crate) fn missing(&mut self, path: &KeyPath, cause: &KeyPath, because: &str) {
        if self.touches_removed(path, &[cause]) {
            return;
        }
        let message = format!("missing key `{path}`: it is required when {because}");
        self.place(path, ProblemKind::MissingKey, message, None);
    }

    fn touches_removed(&self, path: &KeyPath, given: &[&KeyPath]) -> bool {
        let overlaps = |a: &KeyPath, b: &KeyPath| {
            let n = a.0.len().min(b.0.len());
            a.0[..n] == b.0[..n]
        };
        self.removed
            .iter()
            .any(|r| overlaps(r, path) || given.iter().any(|g| overlaps(r, g)))
    }

    fn place(&mut self, path: &KeyPath, kind: ProblemKind, message: String, hint: Option<String>) {
        let mut at = path.clone();
        let offset = loop {
            match find(&self.root, &at) {
                Some(node) if !at.0.is_empty() => {
                    break if at == *path {
                        node.value.start
                    } else {
                        node.key.map_or(node.value.start, |k| k.start)
                    };
                }
                _ if at.0.is_empty() => break 0,
                _ => at = at.parent(),
            }
        };
        self.problem_at(offset, path, kind, message, hint);
    }

    /// Like [`Checker::bad`], blaming the first of `paths` that the file sets (the
    /// first one if none is set): for rules that tie two keys together.
    pub(crate) fn bad_either(
        &mut self,
        paths: &[&KeyPath],
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let Some(first) = paths.first() else { return };
        let blame = paths.iter().find(|p| self.is_set(p)).unwrap_or(first);
        self.bad_given(blame, paths, message, hint);
    }

    /// Checks `lo <= value <= hi`.
    pub(crate) fn range<T>(&mut self, path: &KeyPath, value: T, lo: T, hi: T)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if value < lo || value > hi {
            self.bad(
                path,
                format!("{value} is out of range, use {lo} to {hi}"),
                None,
            );
        }
    }

    /// Checks, when files are checked, that `file` can be read and holds `marker` (a PEM
    /// label, say): a missing or unreadable file, or the wrong one, is a problem at `path`.
    /// Relative paths are from the working directory, as the process opening them sees.
    pub(crate) fn readable_file(&mut self, path: &KeyPath, file: &Path, marker: &str, what: &str) {
        if !self.files || file.as_os_str().is_empty() {
            return;
        }
        match std::fs::read(file) {
            Err(e) => self.bad(
                path,
                format!("cannot read {}: {e}", file.display()),
                Some(format!("give the path of {what}")),
            ),
            Ok(bytes) if !String::from_utf8_lossy(&bytes).contains(marker) => self.bad(
                path,
                format!("{} holds no `{marker}`", file.display()),
                Some(format!("give the path of {what}")),
            ),
            Ok(_) => {}
        }
    }

    /// Checks that a string is not empty (or only spaces).
    pub(crate) fn non_empty(&mut self, path: &KeyPath, value: &str) {
        if value.trim().is_empty() {
            self.bad(path, "must not be empty", None);
        }
    }
}

/// The serde message split into our problem kinds.
fn classify(message: &str) -> ProblemKind {
    if message.starts_with("unknown field") {
        ProblemKind::UnknownKey
    } else if message.starts_with("missing field") {
        ProblemKind::MissingKey
    } else if message.starts_with("invalid type") {
        ProblemKind::WrongType
    } else {
        ProblemKind::BadValue
    }
}

/// The words between backticks, in order.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Plain-words names for serde's type descriptions ("u32", "a boolean",
/// "string \"x\"", "sequence", "struct Foo", …).
fn describe_type(serde_name: &str) -> String {
    let name = serde_name
        .trim_start_matches("a ")
        .trim_start_matches("an ");
    let word = name.split([' ', '`']).next().unwrap_or("");
    let plain = match word {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "integer" => "an integer",
        "f32" | "f64" | "floating" | "float" => "a number",
        "bool" | "boolean" => "true or false",
        "string" | "str" | "char" | "path" | "borrowed" => "a string",
        "sequence" | "seq" | "array" => "an array",
        "map" | "struct" | "table" => "a table",
        "datetime" | "local" | "offset" | "date" | "time" => "a date or time",
        "socket" => "an address string like \"0.0.0.0:8080\"",
        _ if name.contains("string") => "a string",
        _ => return serde_name.to_owned(),
    };
    plain.to_owned()
}

/// A hint showing the default value of a key, as TOML, when it is short.
fn default_hint(defaults: &toml::Table, path: &KeyPath) -> Option<String> {
    let mut value: &toml::Value = defaults.get(match path.0.first()? {
        Seg::Key(k) => k.as_str(),
        Seg::Index(_) => return None,
    })?;
    for seg in &path.0[1..] {
        value = match (seg, value) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get(k.as_str())?,
            // Entries of a list default: show the first entry's field as the example.
            (Seg::Index(_), toml::Value::Array(a)) => a.first()?,
            _ => return None,
        };
    }
    let key = path.last_key()?;
    let shown = value.to_string();
    (shown.len() <= 60 && !matches!(value, toml::Value::Table(_)))
        .then(|| format!("for example `{key} = {shown}` (the default)"))
}

/// Where else in the schema a key of this name lives, for a key put in the wrong table.
fn other_home(defaults: &toml::Table, name: &str) -> Option<String> {
    fn search(table: &toml::Table, prefix: &str, name: &str) -> Option<String> {
        for (k, v) in table {
            let here = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if k == name {
                return Some(if prefix.is_empty() {
                    "the top level".into()
                } else {
                    format!("[{prefix}]")
                });
            }
            let found = match v {
                toml::Value::Table(t) => search(t, &here, name),
                toml::Value::Array(a) => match a.first() {
                    Some(toml::Value::Table(t)) => search(t, &format!("[{here}]"), name),
                    _ => None,
                },
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
    search(defaults, "", name)
}

/// Turns one deserialization error into a problem's message and hint.
fn explain(
    kind: ProblemKind,
    serde_message: &str,
    found_type: Option<&str>,
    path: &KeyPath,
    defaults: &toml::Table,
) -> (String, Option<String>) {
    let ticks = backticked(serde_message);
    match kind {
        ProblemKind::UnknownKey => {
            let name = ticks.first().copied().unwrap_or("?");
            let expected = ticks.get(1..).unwrap_or(&[]);
            let message = format!("unknown key `{name}` {}", where_in(path));
            let hint = if let Some(near) = closest(name, expected.iter().copied()) {
                Some(format!("did you mean `{near}`?"))
            } else if let Some(home) = other_home(defaults, name) {
                Some(format!("`{name}` belongs in {home}"))
            } else if expected.is_empty() {
                Some(format!("{} takes no keys", section_name(path)))
            } else {
                Some(format!(
                    "{} accepts: {}",
                    section_name(path),
                    expected.join(", ")
                ))
            };
            (message, hint)
        }
        ProblemKind::MissingKey => {
            let name = ticks.first().copied().unwrap_or("?");
            let shown = if path.0.is_empty() {
                "the top level".to_owned()
            } else {
                format!("[{path}]")
            };
            (format!("missing key `{name}` in {shown}"), None)
        }
        ProblemKind::WrongType => {
            // "invalid type: string \"x\", expected u32"
            let rest = serde_message.trim_start_matches("invalid type: ");
            let (found, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, "?"));
            let expected = describe_type(expected);
            let found = describe_type(found_type.unwrap_or(found));
            let message = format!("wrong type for `{path}`: expected {expected}, found {found}");
            let hint = if expected == "an array" && found == "a table" {
                Some(format!("write one `[[{path}]]` table per entry"))
            } else {
                default_hint(defaults, path)
            };
            (message, hint)
        }
        ProblemKind::BadValue | ProblemKind::Syntax | ProblemKind::Encoding => {
            if let Some(variant) = serde_message.strip_prefix("unknown variant `") {
                let given = variant.split('`').next().unwrap_or("");
                let options = ticks.get(1..).unwrap_or(&[]);
                let message = format!(
                    "bad value for `{path}`: `{given}` is not one of {}",
                    options
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let hint =
                    closest(given, options.iter().copied()).map(|n| format!("did you mean `{n}`?"));
                return (message, hint);
            }
            if let Some(rest) = serde_message.strip_prefix("invalid value: ") {
                let (found, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, "?"));
                let found = backticked(found)
                    .first()
                    .map_or(found.to_owned(), |v| v.to_string());
                let message = format!(
                    "bad value for `{path}`: {found} is out of range, expected {}",
                    describe_type(expected)
                );
                return (message, default_hint(defaults, path));
            }
            let hint = serde_message
                .starts_with("invalid socket address")
                .then(|| default_hint(defaults, path))
                .flatten();
            (format!("bad value for `{path}`: {serde_message}"), hint)
        }
    }
}

/// Parses `bytes` as a configuration of type `T`: UTF-8, TOML syntax, schema, then
/// `finish` (defaults that depend on other values) and `rules` (cross-checks).
pub(crate) fn load<T>(
    bytes: &[u8],
    origin: &str,
    files: bool,
    finish: fn(&mut T),
    rules: fn(&T, &mut Checker<'_>),
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            let (line, column) = line_column(valid, valid.len());
            return Err(ConfigError::Invalid {
                problems: vec![Problem {
                    file: origin.to_owned(),
                    line,
                    column,
                    key_path: String::new(),
                    kind: ProblemKind::Encoding,
                    message: "the file is not valid UTF-8".to_owned(),
                    hint: Some("save it as UTF-8 (Arabic names need it)".to_owned()),
                }],
            });
        }
    };
    let original = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_column(text, offset);
            let message = e.message().trim_end();
            return Err(ConfigError::Invalid {
                problems: vec![Problem {
                    file: origin.to_owned(),
                    line,
                    column,
                    key_path: String::new(),
                    kind: ProblemKind::Syntax,
                    message: format!(
                        "syntax error: {}",
                        message.lines().next().unwrap_or(message)
                    ),
                    hint: syntax_hint(message),
                }],
            });
        }
    };
    let defaults = toml::Table::try_from(T::default()).unwrap_or_default();
    let mut checker = Checker {
        text,
        origin,
        root: original.clone(),
        problems: Vec::new(),
        removed: Vec::new(),
        files,
    };
    let mut work = original;
    // Whether a whole list entry was dropped: then indices in the checked
    // configuration no longer match the file, and the rules wait for the next run.
    let mut entry_dropped = false;
    let mut emptied: Vec<Range<usize>> = Vec::new();
    let mut config = None;
    for _ in 0..MAX_PROBLEMS {
        match T::deserialize(toml::de::Deserializer::from(work.clone())) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let Some(span) = e.span() else {
                    // Not tied to a place in the file: report it once, and stop, since
                    // there is no key to take out and try again without.
                    let message = format!("invalid configuration: {}", e.message());
                    let kind = classify(e.message());
                    checker.problem_at(0, &KeyPath::default(), kind, message, None);
                    break;
                };
                let kind = classify(e.message());
                let here = locate(&work, &span);
                // The path as the user sees it: indices of the unmodified file.
                let shown = locate(&checker.root, &span);
                let node = find(&work, &here);
                let echo = kind == ProblemKind::MissingKey
                    && node.as_ref().is_some_and(|n| emptied.contains(&n.value));
                if !echo {
                    // The tree knows the type found better than serde does (a TOML
                    // datetime reaches serde as a map).
                    let found = node.filter(|n| n.value == span).map(|n| n.type_name);
                    let (message, hint) = explain(kind, e.message(), found, &shown, &defaults);
                    checker.problem_at(span.start, &shown, kind, message, hint);
                }
                // A missing key cannot be removed: drop the entry that lacks it instead.
                match remove(&mut work, &here) {
                    Some(container) => emptied.push(container),
                    None => break,
                }
                entry_dropped |= matches!(here.0.last(), Some(Seg::Index(_)));
                checker.removed.push(here);
            }
        }
    }
    if let Some(mut config) = config
        && !entry_dropped
    {
        finish(&mut config);
        rules(&config, &mut checker);
        if checker.problems.is_empty() {
            return Ok(config);
        }
    }
    let mut problems = checker.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    Err(ConfigError::Invalid { problems })
}

fn syntax_hint(message: &str) -> Option<String> {
    if message.contains("duplicate key") {
        Some("each key may be set once per table".to_owned())
    } else if message.contains("invalid string")
        || message.contains("string") && message.contains("expected")
    {
        Some("text values need double quotes, like `name_en = \"Midan\"`".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_display_like_toml() {
        let p = KeyPath::dotted("power.generator")
            .key("registers")
            .key("fuel_percent");
        assert_eq!(p.to_string(), "power.generator.registers.fuel_percent");
        assert_eq!(
            KeyPath::dotted("counters")
                .index(2)
                .key("number")
                .to_string(),
            "counters[2].number"
        );
        assert_eq!(KeyPath::dotted("a b").to_string(), "\"a b\"");
    }

    #[test]
    fn remove_takes_out_keys_and_entries() {
        let text = "[a]\nx = 1\ny = 2\n[[b]]\nn = 1\n[[b]]\nn = 2\n";
        let mut root = DeTable::parse(text).unwrap();
        assert!(remove(&mut root, &KeyPath::dotted("a.x")).is_some());
        assert!(find(&root, &KeyPath::dotted("a.x")).is_none());
        assert!(find(&root, &KeyPath::dotted("a.y")).is_some());
        assert!(remove(&mut root, &KeyPath::dotted("b").index(0)).is_some());
        let node = find(&root, &KeyPath::dotted("b").index(0).key("n")).unwrap();
        assert_eq!(&text[node.value], "2");
        assert_eq!(node.type_name, "integer");
        assert!(remove(&mut root, &KeyPath::default()).is_none());
    }
}
