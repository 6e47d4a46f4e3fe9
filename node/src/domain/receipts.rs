//! Per-center numbering of receipts and cases, unique across the governorate without
//! coordination: each center numbers under its own prefix from its own SQL sequences.
//!
//! The counters live in the node's `sequences` table; this module names those sequences
//! and turns a counter value into a typed [`ReceiptNo`] / [`CaseNo`], refusing values the
//! format cannot carry (so a corrupt or exhausted counter is an error, never a duplicate).
//! Each [`Series`] has its own counters: the main series (no letter) and the series a
//! node picks when it cannot know where the main one stands ([`pick_series`]).

use std::collections::BTreeSet;

use markaz_sync::model::ids::{CaseNo, IdError, ReceiptNo, Series};

/// The sequence receipts of the main series are numbered from (never reset).
pub const RECEIPT_SEQUENCE: &str = "receipt";

/// The sequence receipts of `series` are numbered from.
pub fn receipt_sequence(series: Option<Series>) -> String {
    match series {
        None => RECEIPT_SEQUENCE.to_string(),
        Some(s) => format!("{RECEIPT_SEQUENCE}:{s}"),
    }
}

/// The sequence case numbers of `year` in `series` are drawn from (restarts every year).
pub fn case_sequence(year: i16, series: Option<Series>) -> String {
    match series {
        None => format!("case:{year}"),
        Some(s) => format!("case:{year}:{s}"),
    }
}

/// A series for a node that cannot learn where the main series stands: one of
/// [`Series::LETTERS`] that `used` does not hold, drawn with `draw` (random), so two
/// replacement boxes started offline one after the other are unlikely to pick the same.
/// `None` once every letter is used.
pub fn pick_series(used: &BTreeSet<Series>, draw: u64) -> Option<Series> {
    let free: Vec<Series> = Series::LETTERS
        .iter()
        .filter_map(|&b| Series::new(char::from(b)).ok())
        .filter(|s| !used.contains(s))
        .collect();
    if free.is_empty() {
        return None;
    }
    free.get((draw % free.len() as u64) as usize).copied()
}

/// Why a counter value cannot become a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberingError {
    #[error("sequence value {0} is not positive")]
    NotPositive(i64),
    #[error("sequence value {0} is too large for the number format")]
    TooLarge(i64),
    #[error(transparent)]
    Id(#[from] IdError),
}

/// The receipt for counter value `seq` of the center with `prefix`: `MID-R-000042`.
pub fn receipt_no(prefix: &str, seq: i64) -> Result<ReceiptNo, NumberingError> {
    receipt_in_series(prefix, None, seq)
}

/// The receipt for counter value `seq` of `series`: `MID-R-B000042`.
pub fn receipt_in_series(
    prefix: &str,
    series: Option<Series>,
    seq: i64,
) -> Result<ReceiptNo, NumberingError> {
    if seq <= 0 {
        return Err(NumberingError::NotPositive(seq));
    }
    let seq = u64::try_from(seq).map_err(|_| NumberingError::TooLarge(seq))?;
    Ok(ReceiptNo::in_series(prefix, series, seq)?)
}

/// The case number for counter value `seq` of `year`: `MID-2026-000123`. Fails once a
/// center passes 999 999 cases in a year.
pub fn case_no(prefix: &str, year: i16, seq: i64) -> Result<CaseNo, NumberingError> {
    case_in_series(prefix, year, None, seq)
}

/// The case number for counter value `seq` of `year` in `series`: `MID-2026-B000123`.
pub fn case_in_series(
    prefix: &str,
    year: i16,
    series: Option<Series>,
    seq: i64,
) -> Result<CaseNo, NumberingError> {
    if seq <= 0 {
        return Err(NumberingError::NotPositive(seq));
    }
    let seq = u32::try_from(seq).map_err(|_| NumberingError::TooLarge(seq))?;
    Ok(CaseNo::in_series(prefix, year, series, seq)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_center_numbers() {
        assert_eq!(receipt_no("MID", 42).unwrap().as_str(), "MID-R-000042");
        assert_eq!(
            receipt_no("qan", 1_000_000).unwrap().as_str(),
            "QAN-R-1000000"
        );
        assert_eq!(
            case_no("MID", 2026, 123).unwrap().as_str(),
            "MID-2026-000123"
        );
        assert_eq!(case_sequence(2026, None), "case:2026");
        assert_eq!(RECEIPT_SEQUENCE, "receipt");
        let b = Series::new('b').unwrap();
        assert_eq!(case_sequence(2026, Some(b)), "case:2026:B");
        assert_eq!(receipt_sequence(Some(b)), "receipt:B");
        assert_eq!(receipt_sequence(None), "receipt");
        assert_eq!(
            case_in_series("MID", 2026, Some(b), 7).unwrap().as_str(),
            "MID-2026-B000007"
        );
        assert_eq!(
            receipt_in_series("MID", Some(b), 7).unwrap().as_str(),
            "MID-R-B000007"
        );
    }

    #[test]
    fn refuses_what_the_format_cannot_carry() {
        assert_eq!(receipt_no("MID", 0), Err(NumberingError::NotPositive(0)));
        assert_eq!(receipt_no("MID", -3), Err(NumberingError::NotPositive(-3)));
        assert!(matches!(receipt_no("M1", 1), Err(NumberingError::Id(_))));
        assert!(matches!(
            case_no("MID", 2026, 1_000_000),
            Err(NumberingError::Id(IdError::SequenceOutOfRange { .. }))
        ));
        assert_eq!(
            case_no("MID", 2026, i64::MAX),
            Err(NumberingError::TooLarge(i64::MAX))
        );
    }

    #[test]
    fn a_picked_series_is_never_one_already_used() {
        let mut used = BTreeSet::new();
        for draw in 0..Series::LETTERS.len() as u64 {
            let s = pick_series(&used, draw * 7919).expect("a free letter");
            assert!(used.insert(s), "{s} picked twice");
            assert!(!matches!(s.letter(), 'A' | 'I' | 'O' | 'R'));
        }
        assert_eq!(pick_series(&used, 3), None);
    }

    #[test]
    fn centers_never_collide() {
        let a: Vec<_> = (1..=50).map(|s| receipt_no("MID", s).unwrap()).collect();
        let b: Vec<_> = (1..=50).map(|s| receipt_no("QAN", s).unwrap()).collect();
        assert!(a.iter().all(|r| !b.contains(r)));
    }
}
