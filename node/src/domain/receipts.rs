//! Per-center numbering of receipts and cases, unique across the governorate without
//! coordination: each center numbers under its own prefix from its own SQL sequences.
//!
//! The counters live in the node's `sequences` table; this module names those sequences
//! and turns a counter value into a typed [`ReceiptNo`] / [`CaseNo`], refusing values the
//! format cannot carry (so a corrupt or exhausted counter is an error, never a duplicate).

use markaz_sync::model::ids::{CaseNo, IdError, ReceiptNo};

/// The sequence receipts are numbered from (one series per center, never reset).
pub const RECEIPT_SEQUENCE: &str = "receipt";

/// The sequence case numbers of `year` are drawn from (restarts every year).
pub fn case_sequence(year: i16) -> String {
    format!("case:{year}")
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
    if seq <= 0 {
        return Err(NumberingError::NotPositive(seq));
    }
    let seq = u64::try_from(seq).map_err(|_| NumberingError::TooLarge(seq))?;
    Ok(ReceiptNo::new(prefix, seq)?)
}

/// The case number for counter value `seq` of `year`: `MID-2026-000123`. Fails once a
/// center passes 999 999 cases in a year.
pub fn case_no(prefix: &str, year: i16, seq: i64) -> Result<CaseNo, NumberingError> {
    if seq <= 0 {
        return Err(NumberingError::NotPositive(seq));
    }
    let seq = u32::try_from(seq).map_err(|_| NumberingError::TooLarge(seq))?;
    Ok(CaseNo::new(prefix, year, seq)?)
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
        assert_eq!(case_sequence(2026), "case:2026");
        assert_eq!(RECEIPT_SEQUENCE, "receipt");
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
    fn centers_never_collide() {
        let a: Vec<_> = (1..=50).map(|s| receipt_no("MID", s).unwrap()).collect();
        let b: Vec<_> = (1..=50).map(|s| receipt_no("QAN", s).unwrap()).collect();
        assert!(a.iter().all(|r| !b.contains(r)));
    }
}
