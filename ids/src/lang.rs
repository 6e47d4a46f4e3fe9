//! The language of a page, a user's choice and the `[center] default_language` setting:
//! one enum for config, the web stack, the node and the hub.

use serde::{Deserialize, Serialize};

/// A language the pages are offered in. Arabic is the default. Serde and
/// [`Lang::code`] use the BCP 47 code (`ar`, `en`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Arabic, right to left.
    #[default]
    Ar,
    /// English.
    En,
}

impl Lang {
    /// Every language, Arabic first.
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

    /// `ar` or `en`, whichever is this language's.
    pub fn pick<T>(self, ar: T, en: T) -> T {
        match self {
            Lang::Ar => ar,
            Lang::En => en,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_serde_uses_them() {
        for l in Lang::ALL {
            assert_eq!(Lang::from_code(l.code()), Some(l));
            assert_eq!(
                serde_json::to_string(&l).unwrap(),
                format!("\"{}\"", l.code())
            );
            assert_eq!(
                serde_json::from_str::<Lang>(&format!("\"{}\"", l.code())).unwrap(),
                l
            );
        }
        assert_eq!(Lang::from_code("fr"), None);
        assert_eq!((Lang::Ar.other(), Lang::En.dir()), (Lang::En, "ltr"));
    }
}
