//! Amounts of Syrian pounds, as whole piastres (1 SYP = 100 piastres) in an `i64`.
//!
//! No floats anywhere: parsing reads the decimal text digit by digit, arithmetic is
//! checked, and an amount is never negative (fees and payments only). Serde writes the
//! integer number of piastres.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::normalize_digits;

/// Why an amount is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount must be a number like 1500 or 1500.50")]
    BadFormat,
    #[error("amount may have at most two decimals (piastres)")]
    TooManyDecimals,
    #[error("amount cannot be negative")]
    Negative,
    #[error("amount is too large")]
    Overflow,
}

/// A non-negative amount in piastres.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount of `piastres`; refuses negatives.
    pub fn from_piastres(piastres: i64) -> Result<Money, MoneyError> {
        if piastres < 0 {
            Err(MoneyError::Negative)
        } else {
            Ok(Money(piastres))
        }
    }

    /// An amount of whole pounds.
    pub fn from_syp(pounds: i64) -> Result<Money, MoneyError> {
        let p = pounds.checked_mul(100).ok_or(MoneyError::Overflow)?;
        Money::from_piastres(p)
    }

    pub fn piastres(self) -> i64 {
        self.0
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Difference, or `None` if it would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Money)
    }

    /// Sum of many amounts, or `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Money>) -> Option<Money> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }
}

impl TryFrom<i64> for Money {
    type Error = MoneyError;
    fn try_from(v: i64) -> Result<Self, MoneyError> {
        Money::from_piastres(v)
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> i64 {
        m.0
    }
}

/// `1500` for whole pounds, `1500.50` otherwise (no currency sign: callers add
/// "SYP" / "ل.س" as the page's language wants).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            write!(f, "{whole}.{frac:02}")
        }
    }
}

/// Parses `1500`, `1500.5`, `1500.50`, `1,500.50`, optionally followed by `SYP` or
/// `ل.س`, in ASCII or Arabic-Indic digits (the Arabic decimal separator `٫` and thousands
/// separator `٬` are accepted too).
impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        let mut s = normalize_digits(s)
            .replace(['\u{066B}'], ".")
            .replace([',', '\u{066C}'], "");
        for suffix in ["SYP", "syp", "ل.س"] {
            if let Some(r) = s.trim_end().strip_suffix(suffix) {
                s = r.trim_end().to_string();
            }
        }
        let s = s.trim();
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        if s.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MoneyError::BadFormat);
        }
        if s.ends_with('.') {
            return Err(MoneyError::BadFormat);
        }
        if frac.len() > 2 {
            return Err(MoneyError::TooManyDecimals);
        }
        let mut p: i64 = 0;
        for b in whole.bytes() {
            p = p
                .checked_mul(10)
                .and_then(|p| p.checked_add(i64::from(b - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        p = p.checked_mul(100).ok_or(MoneyError::Overflow)?;
        let frac_p: i64 = match frac.len() {
            0 => 0,
            1 => i64::from(frac.as_bytes()[0] - b'0') * 10,
            _ => i64::from(frac.as_bytes()[0] - b'0') * 10 + i64::from(frac.as_bytes()[1] - b'0'),
        };
        p.checked_add(frac_p).map(Money).ok_or(MoneyError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_pounds_and_piastres() {
        assert_eq!("1500".parse::<Money>().unwrap().piastres(), 150_000);
        assert_eq!("1500.50".parse::<Money>().unwrap().piastres(), 150_050);
        assert_eq!("1500.5".parse::<Money>().unwrap().piastres(), 150_050);
        assert_eq!("1,500.05 SYP".parse::<Money>().unwrap().piastres(), 150_005);
        assert_eq!("١٥٠٠٫٥٠ ل.س".parse::<Money>().unwrap().piastres(), 150_050);
        assert_eq!("0".parse::<Money>().unwrap(), Money::ZERO);
    }

    #[test]
    fn rejects_bad_amounts() {
        assert_eq!("".parse::<Money>(), Err(MoneyError::Empty));
        assert_eq!("-5".parse::<Money>(), Err(MoneyError::Negative));
        assert_eq!("1.505".parse::<Money>(), Err(MoneyError::TooManyDecimals));
        assert_eq!("1e3".parse::<Money>(), Err(MoneyError::BadFormat));
        assert_eq!(".5".parse::<Money>(), Err(MoneyError::BadFormat));
        assert_eq!("5.".parse::<Money>(), Err(MoneyError::BadFormat));
        assert_eq!("1.2.3".parse::<Money>(), Err(MoneyError::BadFormat));
        assert_eq!(
            "99999999999999999999".parse::<Money>(),
            Err(MoneyError::Overflow)
        );
        assert!(Money::from_piastres(-1).is_err());
        assert!(serde_json::from_str::<Money>("-1").is_err());
    }

    #[test]
    fn displays_and_adds() {
        assert_eq!(Money::from_syp(1500).unwrap().to_string(), "1500");
        assert_eq!(
            Money::from_piastres(150_005).unwrap().to_string(),
            "1500.05"
        );
        let a = Money::from_syp(2).unwrap();
        assert_eq!(
            a.checked_add(Money::from_piastres(50).unwrap())
                .unwrap()
                .piastres(),
            250
        );
        assert_eq!(Money::from_piastres(i64::MAX).unwrap().checked_add(a), None);
        assert_eq!(Money::ZERO.checked_sub(a), None);
        assert_eq!(serde_json::to_string(&a).unwrap(), "200");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(p in 0i64..=i64::MAX) {
            let m = Money::from_piastres(p).unwrap();
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<Money>();
        }
    }
}
