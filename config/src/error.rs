//! Configuration errors that read like compiler errors.
//!
//! A [`ConfigError`] either says the file could not be read, or lists every problem
//! found in it, each with its file, 1-based line and column, key path, message and an
//! optional hint:
//!
//! ```text
//! midan.toml:12:1: unknown key `prority_weight` in [queue]
//!   hint: did you mean `priority_weight`?
//! ```

use std::fmt;
use std::path::PathBuf;

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The file is not valid UTF-8.
    Encoding,
    /// The file is not valid TOML.
    Syntax,
    /// A key that the schema does not know (usually a typo).
    UnknownKey,
    /// A required key is absent (only inside list entries like `[[counters]]`).
    MissingKey,
    /// A value of the wrong TOML type (a string where a number belongs, …).
    WrongType,
    /// A value of the right type that is out of range, malformed, or inconsistent
    /// with another setting.
    BadValue,
}

/// One problem in a configuration file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name as given to the loader (`origin_name`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted key path, e.g. `power.generator.registers.fuel_percent` or
    /// `counters[2].number` (0-based index). Empty for file-level problems.
    pub key_path: String,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// What is wrong, one line.
    pub message: String,
    /// How to fix it, if there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read and has problems; at least one, in file order.
    #[error("{}", ProblemList(problems))]
    Invalid {
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found in the file (empty for an I/O error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Io { .. } => &[],
            Self::Invalid { problems } => problems,
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} problems found", self.0.len())?;
        }
        Ok(())
    }
}

/// Byte offset to 1-based (line, column), the column counted in chars. Offsets past
/// the end or inside a char are clamped, so any span from the parser maps somewhere.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let text = "a = 1\nname_ar = \"ميدان\" x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        let x = text.find(" x").unwrap() + 1;
        assert_eq!(line_column(text, x), (2, 19));
        assert_eq!(line_column(text, 10_000), (3, 1));
        // Inside the 2-byte last letter of the name: clamped to its start.
        assert_eq!(line_column(text, x - 3), (2, 16));
        assert_eq!(line_column(text, x - 4), (2, 16));
    }

    #[test]
    fn display_reads_like_a_compiler_error() {
        let p = Problem {
            file: "midan.toml".into(),
            line: 12,
            column: 1,
            key_path: "queue.prority_weight".into(),
            kind: ProblemKind::UnknownKey,
            message: "unknown key `prority_weight` in [queue]".into(),
            hint: Some("did you mean `priority_weight`?".into()),
        };
        let e = ConfigError::Invalid {
            problems: vec![p.clone(), p],
        };
        assert_eq!(
            e.to_string(),
            "midan.toml:12:1: unknown key `prority_weight` in [queue]\n  \
             hint: did you mean `priority_weight`?\n\
             midan.toml:12:1: unknown key `prority_weight` in [queue]\n  \
             hint: did you mean `priority_weight`?\n2 problems found"
        );
    }
}
