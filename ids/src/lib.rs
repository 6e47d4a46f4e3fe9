//! Identifiers that cross the center/hub boundary: national ids, center ids, case and
//! receipt numbers, phone numbers.
//!
//! One type per identity, used everywhere: this crate sits below `markaz-config` and
//! `markaz-sync` (which re-exports it as `model::ids`), so the center id a config file
//! is checked against is the one the node syncs under, parsed once and kept parsed.
//!
//! Each type can only be built valid (through `FromStr`/`TryFrom<&str>` or a checked
//! constructor) and prints in one canonical form, so two spellings of the same id (Arabic-
//! Indic digits, `+963…` vs `09…`) are one value. Serde goes through the same parser, so a
//! document or a JSON body cannot smuggle in an invalid id.

use std::fmt;
use std::str::FromStr;

mod lang;
pub use lang::Lang;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier. The `what` names the identifier kind in English
/// (e.g. "national id") so a message can say which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} must have {expected} digits, got {got}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} may contain digits only")]
    NotDigits { what: &'static str },
    #[error("national id starts with governorate code {code:02}, which is not 01-14")]
    BadGovernorate { code: u8 },
    #[error("national id cannot be one digit repeated")]
    AllSameDigits,
    #[error("{what} is not in the form {expected}")]
    BadFormat {
        what: &'static str,
        expected: &'static str,
    },
    #[error("{what} sequence {seq} is out of range")]
    SequenceOutOfRange { what: &'static str, seq: u64 },
    #[error("not a Syrian mobile number (expected 09XXXXXXXX or +9639XXXXXXXX)")]
    NotSyrianMobile,
}

impl IdError {
    /// A short message in Arabic for the same fault, for forms and receipts.
    pub fn message_ar(&self) -> String {
        match self {
            IdError::Empty { .. } => "الحقل فارغ".to_string(),
            IdError::WrongLength { expected, got, .. } => {
                format!("يجب أن يتكون من {expected} رقماً، وقد أُدخل {got}")
            }
            IdError::NotDigits { .. } => "يجب أن يحتوي على أرقام فقط".to_string(),
            IdError::BadGovernorate { code } => {
                format!("رمز المحافظة {code:02} غير صحيح (يجب أن يكون من 01 إلى 14)")
            }
            IdError::AllSameDigits => "الرقم الوطني لا يمكن أن يكون رقماً واحداً مكرراً".to_string(),
            IdError::BadFormat { expected, .. } => format!("الصيغة غير صحيحة، المتوقع {expected}"),
            IdError::SequenceOutOfRange { seq, .. } => format!("الرقم التسلسلي {seq} خارج المجال"),
            IdError::NotSyrianMobile => {
                "ليس رقم جوال سورياً (المتوقع 09XXXXXXXX أو +9639XXXXXXXX)".to_string()
            }
        }
    }

    /// A stable machine code for the API (`"wrong_length"`, `"bad_governorate"`, …).
    pub fn code(&self) -> &'static str {
        match self {
            IdError::Empty { .. } => "empty",
            IdError::WrongLength { .. } => "wrong_length",
            IdError::NotDigits { .. } => "not_digits",
            IdError::BadGovernorate { .. } => "bad_governorate",
            IdError::AllSameDigits => "all_same_digits",
            IdError::BadFormat { .. } => "bad_format",
            IdError::SequenceOutOfRange { .. } => "sequence_out_of_range",
            IdError::NotSyrianMobile => "not_syrian_mobile",
        }
    }
}

/// Maps Arabic-Indic (U+0660..) and Extended Arabic-Indic (U+06F0..) digits to ASCII.
pub fn normalize_digit(c: char) -> char {
    match c {
        '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
        '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
        _ => c,
    }
}

/// `s` trimmed, with every Arabic-Indic digit replaced by its ASCII digit.
pub fn normalize_digits(s: &str) -> String {
    s.trim().chars().map(normalize_digit).collect()
}

macro_rules! string_id_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                s.parse()
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl $t {
            /// The canonical text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A Syrian national id: 11 ASCII digits, the first two a governorate code 01–14, not a
/// single digit repeated. Arabic-Indic digits are accepted on input and normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NationalId(String);
string_id_impls!(NationalId);

impl NationalId {
    /// The governorate code (1–14) the id starts with.
    pub fn governorate(&self) -> u8 {
        let b = self.0.as_bytes();
        (b[0] - b'0') * 10 + (b[1] - b'0')
    }
}

impl FromStr for NationalId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "national id";
        let s = normalize_digits(s);
        if s.is_empty() {
            return Err(IdError::Empty { what: WHAT });
        }
        if !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(IdError::NotDigits { what: WHAT });
        }
        if s.len() != 11 {
            return Err(IdError::WrongLength {
                what: WHAT,
                expected: 11,
                got: s.len(),
            });
        }
        let b = s.as_bytes();
        if b.iter().all(|&c| c == b[0]) {
            return Err(IdError::AllSameDigits);
        }
        let code = (b[0] - b'0') * 10 + (b[1] - b'0');
        if !(1..=14).contains(&code) {
            return Err(IdError::BadGovernorate { code });
        }
        Ok(NationalId(s))
    }
}

/// A center's id: a lowercase slug (`midan`, `mazzeh-2`): ASCII letters, digits and single
/// hyphens, starting with a letter, 2–32 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CenterId(String);
string_id_impls!(CenterId);

impl FromStr for CenterId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "center id";
        const FORM: &str = "a lowercase slug like midan or mazzeh-2";
        let s = s.trim();
        if s.is_empty() {
            return Err(IdError::Empty { what: WHAT });
        }
        let ok = (2..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && !s.contains("--")
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(IdError::BadFormat {
                what: WHAT,
                expected: FORM,
            });
        }
        Ok(CenterId(s.to_string()))
    }
}

/// Case-number prefix used by the web portal (the electronic services center).
pub const PORTAL_PREFIX: &str = "WEB";

/// Checks a center's number prefix: 2–6 ASCII letters, returned uppercase.
pub fn parse_prefix(prefix: &str) -> Result<String, IdError> {
    let p = prefix.trim();
    if (2..=6).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(p.to_ascii_uppercase())
    } else {
        Err(IdError::BadFormat {
            what: "number prefix",
            expected: "2-6 letters, e.g. MID",
        })
    }
}

/// A numbering series: one uppercase ASCII letter written before the sequence digits of
/// a case or receipt number (`MID-2026-B000001`, `MID-R-B000001`). A center's main series
/// has no letter (`MID-2026-000001`). A node whose database cannot yet know where the
/// main series stands (a replacement box started while the hub is unreachable) numbers
/// in a series of its own, so what it hands out cannot collide with what the lost
/// database handed out (see `docs/PROTOCOL.md`, "Numbers a citizen holds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series(u8);

impl Series {
    /// The letters a node picks a series from: A (read as the main series by people),
    /// I and O (read as digits) and R (the receipt marker) are left out.
    pub const LETTERS: &'static [u8] = b"BCDEFGHJKLMNPQSTUVWXYZ";

    /// The series of `letter` (any ASCII letter, read uppercase).
    pub fn new(letter: char) -> Result<Series, IdError> {
        if letter.is_ascii_alphabetic() {
            Ok(Series(letter.to_ascii_uppercase() as u8))
        } else {
            Err(IdError::BadFormat {
                what: "number series",
                expected: "one letter A-Z",
            })
        }
    }

    /// The series' letter.
    pub fn letter(self) -> char {
        char::from(self.0)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Splits the sequence part of a number into its series letter and its digits.
fn split_series(part: &str) -> (Option<Series>, &str) {
    match part.as_bytes().first() {
        Some(b) if b.is_ascii_uppercase() => (Series::new(char::from(*b)).ok(), &part[1..]),
        _ => (None, part),
    }
}

fn series_text(series: Option<Series>) -> String {
    series.map(|s| s.letter().to_string()).unwrap_or_default()
}

/// A case number, unique without coordination: `<PREFIX>-<YYYY>-<seq 6 digits>`, e.g.
/// `MID-2026-000123`, or `<PREFIX>-<YYYY>-<series letter><seq 6 digits>` in a [`Series`]
/// other than the main one (`MID-2026-B000001`). Each center numbers its own cases under
/// its prefix; the portal uses [`PORTAL_PREFIX`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseNo(String);
string_id_impls!(CaseNo);

impl CaseNo {
    /// Highest sequence a center can use in one year.
    pub const MAX_SEQ: u32 = 999_999;

    /// Builds `PREFIX-YEAR-SEQ` in the main series; `seq` must be 1..=999999, `year`
    /// 2000..=9999.
    pub fn new(prefix: &str, year: i16, seq: u32) -> Result<CaseNo, IdError> {
        CaseNo::in_series(prefix, year, None, seq)
    }

    /// Builds `PREFIX-YEAR-[S]SEQ` in `series` (`None`: the main series).
    pub fn in_series(
        prefix: &str,
        year: i16,
        series: Option<Series>,
        seq: u32,
    ) -> Result<CaseNo, IdError> {
        const WHAT: &str = "case number";
        let prefix = parse_prefix(prefix)?;
        if !(2000..=9999).contains(&year) {
            return Err(IdError::BadFormat {
                what: WHAT,
                expected: "a year 2000-9999",
            });
        }
        if !(1..=Self::MAX_SEQ).contains(&seq) {
            return Err(IdError::SequenceOutOfRange {
                what: WHAT,
                seq: u64::from(seq),
            });
        }
        let s = series_text(series);
        Ok(CaseNo(format!("{prefix}-{year:04}-{s}{seq:06}")))
    }

    /// The issuing prefix (`MID`, `WEB`, …).
    pub fn prefix(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }

    /// The year part.
    pub fn year(&self) -> i16 {
        self.0
            .split('-')
            .nth(1)
            .and_then(|y| y.parse().ok())
            .unwrap_or_default()
    }

    /// The series (`None`: the main series).
    pub fn series(&self) -> Option<Series> {
        split_series(self.0.rsplit('-').next().unwrap_or_default()).0
    }

    /// The sequence part (without the series letter).
    pub fn seq(&self) -> u32 {
        split_series(self.0.rsplit('-').next().unwrap_or_default())
            .1
            .parse()
            .unwrap_or_default()
    }

    /// Whether the citizen opened this case on the web portal.
    pub fn is_portal(&self) -> bool {
        self.prefix() == PORTAL_PREFIX
    }
}

impl FromStr for CaseNo {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadFormat {
            what: "case number",
            expected: "PREFIX-YYYY-NNNNNN, e.g. MID-2026-000123",
        };
        let s = normalize_digits(s).to_ascii_uppercase();
        let parts: Vec<&str> = s.split('-').collect();
        let [prefix, year, seq] = parts.as_slice() else {
            return Err(bad());
        };
        let (series, seq) = split_series(seq);
        if year.len() != 4
            || seq.len() != 6
            || !year.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i16 = year.parse().map_err(|_| bad())?;
        let seq: u32 = seq.parse().map_err(|_| bad())?;
        CaseNo::in_series(prefix, year, series, seq)
    }
}

/// A receipt number, unique without coordination: `<PREFIX>-R-<seq>` with the sequence at
/// least 6 digits wide, e.g. `MID-R-000042`, or `<PREFIX>-R-<series letter><seq>` in a
/// [`Series`] other than the main one (`MID-R-B000001`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReceiptNo(String);
string_id_impls!(ReceiptNo);

impl ReceiptNo {
    /// Builds `PREFIX-R-SEQ` in the main series; `seq` must be at least 1.
    pub fn new(prefix: &str, seq: u64) -> Result<ReceiptNo, IdError> {
        ReceiptNo::in_series(prefix, None, seq)
    }

    /// Builds `PREFIX-R-[S]SEQ` in `series` (`None`: the main series).
    pub fn in_series(prefix: &str, series: Option<Series>, seq: u64) -> Result<ReceiptNo, IdError> {
        let prefix = parse_prefix(prefix)?;
        if seq == 0 || seq > 999_999_999_999 {
            return Err(IdError::SequenceOutOfRange {
                what: "receipt number",
                seq,
            });
        }
        let s = series_text(series);
        Ok(ReceiptNo(format!("{prefix}-R-{s}{seq:06}")))
    }

    /// The issuing center's prefix.
    pub fn prefix(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }

    /// The series (`None`: the main series).
    pub fn series(&self) -> Option<Series> {
        split_series(self.0.rsplit('-').next().unwrap_or_default()).0
    }

    /// The sequence part (without the series letter).
    pub fn seq(&self) -> u64 {
        split_series(self.0.rsplit('-').next().unwrap_or_default())
            .1
            .parse()
            .unwrap_or_default()
    }
}

impl FromStr for ReceiptNo {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadFormat {
            what: "receipt number",
            expected: "PREFIX-R-NNNNNN, e.g. MID-R-000042",
        };
        let s = normalize_digits(s).to_ascii_uppercase();
        let parts: Vec<&str> = s.split('-').collect();
        let [prefix, "R", seq] = parts.as_slice() else {
            return Err(bad());
        };
        let (series, seq) = split_series(seq);
        if seq.len() < 6 || seq.len() > 12 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = seq.parse().map_err(|_| bad())?;
        let r = ReceiptNo::in_series(prefix, series, n)?;
        // One canonical spelling per number: no extra leading zeros beyond the width.
        if r.0 != s {
            return Err(bad());
        }
        Ok(r)
    }
}

/// A Syrian mobile number, kept in E.164 (`+9639XXXXXXXX`). Accepts `09XXXXXXXX`,
/// `+9639XXXXXXXX`, `009639XXXXXXXX` and `9639XXXXXXXX`, with spaces or dashes, in
/// ASCII or Arabic-Indic digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);
string_id_impls!(PhoneNumber);

impl PhoneNumber {
    /// The national form, `09XXXXXXXX`, as printed on slips.
    pub fn local(&self) -> String {
        format!("0{}", &self.0[4..])
    }
}

impl FromStr for PhoneNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let s: String = normalize_digits(s)
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        if s.is_empty() {
            return Err(IdError::Empty {
                what: "phone number",
            });
        }
        let subscriber = if let Some(r) = s.strip_prefix("+963") {
            r
        } else if let Some(r) = s.strip_prefix("00963") {
            r
        } else if let Some(r) = s.strip_prefix("963") {
            r
        } else if let Some(r) = s.strip_prefix('0') {
            r
        } else {
            return Err(IdError::NotSyrianMobile);
        };
        // Mobile numbers are 9 digits after the country code and start with 9.
        if subscriber.len() != 9
            || !subscriber.starts_with('9')
            || !subscriber.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(IdError::NotSyrianMobile);
        }
        Ok(PhoneNumber(format!("+963{subscriber}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn national_id_accepts_valid_and_arabic_digits() {
        let a: NationalId = "01234567891".parse().unwrap();
        let b: NationalId = "٠١٢٣٤٥٦٧٨٩١".parse().unwrap();
        let c: NationalId = " ۰۱۲۳۴۵۶۷۸۹۱ ".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "01234567891");
        assert_eq!(a.governorate(), 1);
    }

    #[test]
    fn national_id_rejects_bad_input() {
        assert_eq!(
            "".parse::<NationalId>(),
            Err(IdError::Empty {
                what: "national id"
            })
        );
        assert!(matches!(
            "0123456789".parse::<NationalId>(),
            Err(IdError::WrongLength { got: 10, .. })
        ));
        assert!(matches!(
            "012345678912".parse::<NationalId>(),
            Err(IdError::WrongLength { got: 12, .. })
        ));
        assert!(matches!(
            "0123456789a".parse::<NationalId>(),
            Err(IdError::NotDigits { .. })
        ));
        assert_eq!(
            "15234567891".parse::<NationalId>(),
            Err(IdError::BadGovernorate { code: 15 })
        );
        assert_eq!(
            "00234567891".parse::<NationalId>(),
            Err(IdError::BadGovernorate { code: 0 })
        );
        assert_eq!(
            "11111111111".parse::<NationalId>(),
            Err(IdError::AllSameDigits)
        );
        assert!(NationalId::try_from("14000000001").is_ok());
    }

    #[test]
    fn national_id_serde_goes_through_the_parser() {
        let id: NationalId = serde_json::from_str("\"٠٢١١١١١١١١٢\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"02111111112\"");
        assert!(serde_json::from_str::<NationalId>("\"99999999999\"").is_err());
    }

    #[test]
    fn center_id_is_a_slug() {
        assert_eq!("midan".parse::<CenterId>().unwrap().as_str(), "midan");
        assert!("mazzeh-2".parse::<CenterId>().is_ok());
        for bad in [
            "",
            "M",
            "Midan",
            "2midan",
            "mid an",
            "mid--an",
            "midan-",
            "ميدان",
        ] {
            assert!(bad.parse::<CenterId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn case_no_round_trips_and_rejects() {
        let n = CaseNo::new("mid", 2026, 123).unwrap();
        assert_eq!(n.to_string(), "MID-2026-000123");
        assert_eq!(n.prefix(), "MID");
        assert_eq!(n.year(), 2026);
        assert_eq!(n.seq(), 123);
        assert!(!n.is_portal());
        assert_eq!("MID-2026-000123".parse::<CaseNo>().unwrap(), n);
        assert!("WEB-2026-000001".parse::<CaseNo>().unwrap().is_portal());
        for bad in [
            "MID-2026-123",
            "MID-26-000123",
            "MID2026000123",
            "M-2026-000001",
            "MID-2026-000000",
            "MID-2026-0001234",
            "MID-R-000001",
            "1ID-2026-000001",
        ] {
            assert!(bad.parse::<CaseNo>().is_err(), "{bad}");
        }
        assert!(CaseNo::new("MID", 2026, 1_000_000).is_err());
        let b: CaseNo = "mid-2026-b000123".parse().unwrap();
        assert_eq!(b.as_str(), "MID-2026-B000123");
        assert_eq!((b.series().map(Series::letter), b.seq()), (Some('B'), 123));
        assert_eq!(n.series(), None);
        for bad in [
            "MID-2026-BB00123",
            "MID-2026-B00123",
            "MID-2026-1000123",
            "MID-2026-B0001234",
        ] {
            assert!(bad.parse::<CaseNo>().is_err(), "{bad}");
        }
        let r: ReceiptNo = "MID-R-K000042".parse().unwrap();
        assert_eq!((r.series().map(Series::letter), r.seq()), (Some('K'), 42));
        assert!("MID-R-KK000042".parse::<ReceiptNo>().is_err());
    }

    #[test]
    fn receipt_no_round_trips_and_rejects() {
        let r = ReceiptNo::new("QAN", 42).unwrap();
        assert_eq!(r.to_string(), "QAN-R-000042");
        assert_eq!(r.seq(), 42);
        assert_eq!(r.prefix(), "QAN");
        assert_eq!("qan-r-000042".parse::<ReceiptNo>().unwrap(), r);
        assert_eq!(
            ReceiptNo::new("QAN", 1_234_567).unwrap().to_string(),
            "QAN-R-1234567"
        );
        for bad in [
            "QAN-R-42",
            "QAN-R-0001234567",
            "QAN-000042",
            "QAN-X-000042",
            "QAN-R-000000",
        ] {
            assert!(bad.parse::<ReceiptNo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_forms_normalise_to_e164() {
        for ok in [
            "0944123456",
            "+963944123456",
            "00963944123456",
            "963944123456",
            "0944 123 456",
            "٠٩٤٤١٢٣٤٥٦",
        ] {
            let p: PhoneNumber = ok.parse().unwrap();
            assert_eq!(p.as_str(), "+963944123456", "{ok}");
            assert_eq!(p.local(), "0944123456");
        }
        for bad in [
            "",
            "0114123456",
            "094412345",
            "09441234567",
            "+961944123456",
            "09441234a6",
        ] {
            assert!(bad.parse::<PhoneNumber>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn national_id_parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<NationalId>();
            let _ = s.parse::<PhoneNumber>();
            let _ = s.parse::<CaseNo>();
            let _ = s.parse::<ReceiptNo>();
            let _ = s.parse::<CenterId>();
        }

        #[test]
        fn valid_national_ids_round_trip(gov in 1u8..=14, rest in "[0-9]{9}") {
            let s = format!("{gov:02}{rest}");
            let id: NationalId = s.parse().unwrap();
            prop_assert_eq!(id.to_string().parse::<NationalId>().unwrap(), id.clone());
            prop_assert_eq!(id.governorate(), gov);
        }

        #[test]
        fn case_numbers_round_trip(prefix in "[A-Z]{2,6}", year in 2000i16..=9999, seq in 1u32..=999_999) {
            let n = CaseNo::new(&prefix, year, seq).unwrap();
            let back: CaseNo = n.to_string().parse().unwrap();
            prop_assert_eq!((back.prefix(), back.year(), back.seq()), (prefix.as_str(), year, seq));
        }

        #[test]
        fn series_numbers_round_trip(prefix in "[A-Z]{2,6}", year in 2000i16..=9999, seq in 1u32..=999_999, l in 0usize..22) {
            let series = Series::new(char::from(Series::LETTERS[l])).unwrap();
            let n = CaseNo::in_series(&prefix, year, Some(series), seq).unwrap();
            let back: CaseNo = n.to_string().parse().unwrap();
            prop_assert_eq!((back.prefix(), back.year(), back.series(), back.seq()), (prefix.as_str(), year, Some(series), seq));
            prop_assert_ne!(back, CaseNo::new(&prefix, year, seq).unwrap());
            let r = ReceiptNo::in_series(&prefix, Some(series), u64::from(seq)).unwrap();
            let back: ReceiptNo = r.to_string().parse().unwrap();
            prop_assert_eq!((back.series(), back.seq()), (Some(series), u64::from(seq)));
            prop_assert_ne!(back, ReceiptNo::new(&prefix, u64::from(seq)).unwrap());
        }

        #[test]
        fn receipt_numbers_round_trip(prefix in "[A-Z]{2,6}", seq in 1u64..=999_999_999_999) {
            let r = ReceiptNo::new(&prefix, seq).unwrap();
            let back: ReceiptNo = r.to_string().parse().unwrap();
            prop_assert_eq!(back.seq(), seq);
        }

        #[test]
        fn phone_numbers_round_trip(sub in "9[0-9]{8}") {
            let p: PhoneNumber = format!("0{sub}").parse().unwrap();
            prop_assert_eq!(p.to_string().parse::<PhoneNumber>().unwrap(), p);
        }
    }
}
