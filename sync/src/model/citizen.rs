//! A citizen's profile, typed once at a center (or on the portal) and reused for every
//! document.
//!
//! [`CitizenInput`] is what a form or JSON body sends (raw strings); [`CitizenInput::parse`]
//! turns it into a [`CitizenProfile`] or reports every bad field at once. The profile's
//! fields are flat scalars, so two centers editing different fields concurrently both win.
//!
//! A profile is registered once; a change is an explicit edit, recorded as a
//! [`CitizenEdit`] (who, when, each field's old and new value, from
//! [`CitizenInput::changes_to`]). [`CitizenProfile::likely_same_person`] is the rule that
//! flags likely duplicates: the same name (compared by [`name_key`]) and birth date under
//! different national ids.

use jiff::Timestamp;
use jiff::civil::{Date, date};
use serde::{Deserialize, Serialize};

use super::catalog::FieldError;
use super::ids::{NationalId, PhoneNumber, normalize_digits};

/// A validated citizen profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenProfile {
    pub national_id: NationalId,
    pub full_name: String,
    pub father_name: String,
    pub mother_name: String,
    pub birth_date: Date,
    pub birth_place: String,
    pub phone: Option<PhoneNumber>,
    pub address: String,
}

/// A profile as typed: every field a raw string; `phone` may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CitizenInput {
    pub national_id: String,
    pub full_name: String,
    pub father_name: String,
    pub mother_name: String,
    pub birth_date: String,
    pub birth_place: String,
    pub phone: String,
    pub address: String,
}

const NAME_MAX: usize = 100;
const TEXT_MAX: usize = 200;

/// Earliest birth date accepted.
pub const EARLIEST_BIRTH: Date = date(1900, 1, 1);

fn is_arabic_letter(c: char) -> bool {
    // Arabic block letters (hamza..yeh, with alef variants), Farsi/Urdu additions and
    // the Arabic Presentation Forms, excluding digits and punctuation.
    matches!(c, '\u{0621}'..='\u{064A}' | '\u{0671}'..='\u{06D3}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFC}')
}

/// Collapses runs of whitespace to one space and trims.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An Arabic name: Arabic letters, spaces, and the harakat/tatweel/hyphen that names may
/// carry; at least two letters.
fn arabic_name(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> String {
    let v = squash(raw);
    if v.is_empty() {
        errors.push(FieldError::required(field));
    } else if v.chars().count() > NAME_MAX {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("at most {NAME_MAX} characters"),
            format!("الحد الأقصى {NAME_MAX} حرفاً"),
        ));
    } else if !v.chars().all(|c| {
        is_arabic_letter(c) || matches!(c, ' ' | '-' | '\u{0640}' | '\u{064B}'..='\u{0652}')
    }) || v.chars().filter(|c| is_arabic_letter(*c)).count() < 2
    {
        errors.push(FieldError::new(
            field,
            "not_arabic",
            "must be written in Arabic letters",
            "يجب أن يكتب بالأحرف العربية",
        ));
    }
    v
}

fn text(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> String {
    let v = squash(raw);
    if v.is_empty() {
        errors.push(FieldError::required(field));
    } else if v.chars().count() > TEXT_MAX {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("at most {TEXT_MAX} characters"),
            format!("الحد الأقصى {TEXT_MAX} حرفاً"),
        ));
    } else if v.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "bad_text",
            "contains control characters",
            "يحتوي على محارف غير مسموحة",
        ));
    }
    v
}

impl CitizenInput {
    /// Parses without a "today": birth dates are only checked against [`EARLIEST_BIRTH`].
    /// Prefer [`CitizenInput::parse_as_of`] where the clock is known.
    pub fn parse(&self) -> Result<CitizenProfile, Vec<FieldError>> {
        self.parse_as_of(Date::MAX)
    }

    /// Parses the input, reporting every bad field; a birth date after `today` is refused.
    pub fn parse_as_of(&self, today: Date) -> Result<CitizenProfile, Vec<FieldError>> {
        let mut errors = Vec::new();
        let national_id = match self.national_id.trim() {
            "" => {
                errors.push(FieldError::required("national_id"));
                None
            }
            raw => raw
                .parse::<NationalId>()
                .map_err(|e| {
                    errors.push(FieldError::new(
                        "national_id",
                        e.code(),
                        e.to_string(),
                        e.message_ar(),
                    ))
                })
                .ok(),
        };
        let full_name = arabic_name("full_name", &self.full_name, &mut errors);
        let father_name = arabic_name("father_name", &self.father_name, &mut errors);
        let mother_name = arabic_name("mother_name", &self.mother_name, &mut errors);
        let birth_date = match normalize_digits(&self.birth_date).as_str() {
            "" => {
                errors.push(FieldError::required("birth_date"));
                None
            }
            raw => match parse_iso_date(raw) {
                Err(e) => {
                    errors.push(e);
                    None
                }
                Ok(d) if d < EARLIEST_BIRTH => {
                    errors.push(FieldError::new(
                        "birth_date",
                        "out_of_range",
                        "before 1900",
                        "قبل عام 1900",
                    ));
                    None
                }
                Ok(d) if d > today => {
                    errors.push(FieldError::new(
                        "birth_date",
                        "in_future",
                        "is in the future",
                        "تاريخ في المستقبل",
                    ));
                    None
                }
                Ok(d) => Some(d),
            },
        };
        let birth_place = text("birth_place", &self.birth_place, &mut errors);
        let address = text("address", &self.address, &mut errors);
        let phone = match self.phone.trim() {
            "" => None,
            raw => raw
                .parse::<PhoneNumber>()
                .map_err(|e| {
                    errors.push(FieldError::new(
                        "phone",
                        e.code(),
                        e.to_string(),
                        e.message_ar(),
                    ))
                })
                .ok(),
        };
        match (national_id, birth_date) {
            (Some(national_id), Some(birth_date)) if errors.is_empty() => Ok(CitizenProfile {
                national_id,
                full_name,
                father_name,
                mother_name,
                birth_date,
                birth_place,
                phone,
                address,
            }),
            _ => Err(errors),
        }
    }
}

/// A date in the one documented text form, `YYYY-MM-DD` (ISO 8601). `15/03/1985` or
/// `03/15/1985` is refused as ambiguous rather than guessed: day-first and month-first
/// readings differ, and a guess is how 15/03/1985 once became 1985-12-03.
fn parse_iso_date(raw: &str) -> Result<Date, FieldError> {
    let is_iso = raw.len() == 10
        && raw.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_iso && let Ok(d) = raw.parse::<Date>() {
        return Ok(d);
    }
    if is_iso {
        return Err(FieldError::new(
            "birth_date",
            "no_such_date",
            "there is no such day in that month",
            "لا يوجد هذا اليوم في ذلك الشهر",
        ));
    }
    let parts: Vec<&str> = raw.split(['/', '-', '.', ' ']).collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(FieldError::new(
            "birth_date",
            "ambiguous_date",
            "write the date as year-month-day, e.g. 1985-03-15 (a date like 15/03/1985 can be read two ways)",
            "اكتب التاريخ بالشكل سنة-شهر-يوم، مثل 1985-03-15 (التاريخ مثل 15/03/1985 يُقرأ بطريقتين)",
        ));
    }
    Err(FieldError::new(
        "birth_date",
        "bad_date",
        "a date like 1980-03-21 (year-month-day)",
        "تاريخ بالشكل 1980-03-21 (سنة-شهر-يوم)",
    ))
}

/// A birth date typed in three fields — day, month, year — as the pages ask for it, as
/// the `YYYY-MM-DD` text [`CitizenInput::birth_date`] holds. Digits may be
/// Arabic-Indic. All three empty gives an empty text (the profile's parse then reports
/// the date as required); a part out of range is refused naming that part, so a day
/// typed as the month is caught, never swapped.
pub fn birth_date_from_parts(day: &str, month: &str, year: &str) -> Result<String, FieldError> {
    let (day, month, year) = (
        normalize_digits(day),
        normalize_digits(month),
        normalize_digits(year),
    );
    if day.is_empty() && month.is_empty() && year.is_empty() {
        return Ok(String::new());
    }
    let err = |code: &str, en: &str, ar: &str| Err(FieldError::new("birth_date", code, en, ar));
    if day.is_empty() || month.is_empty() || year.is_empty() {
        return err(
            "incomplete_date",
            "give the day, the month and the year",
            "أدخل اليوم والشهر والسنة",
        );
    }
    let number = |s: &str| -> Option<u32> {
        (s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(d), Some(m), Some(y)) = (number(&day), number(&month), number(&year)) else {
        return err(
            "bad_date",
            "the day, month and year are numbers",
            "اليوم والشهر والسنة أرقام",
        );
    };
    if !(1..=12).contains(&m) {
        return err("bad_month", "the month is 1 to 12", "الشهر من 1 إلى 12");
    }
    if !(1..=31).contains(&d) {
        return err("bad_day", "the day is 1 to 31", "اليوم من 1 إلى 31");
    }
    if year.len() != 4 {
        return err(
            "bad_year",
            "the year has four digits, e.g. 1985",
            "السنة أربعة أرقام، مثل 1985",
        );
    }
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// The profile's fields, in the order forms and documents list them.
pub const FIELDS: [&str; 8] = [
    "national_id",
    "full_name",
    "father_name",
    "mother_name",
    "birth_date",
    "birth_place",
    "phone",
    "address",
];

/// One field of a profile edit: its value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

/// An explicit change of a profile: who made it, when, where, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenEdit {
    pub at: Timestamp,
    /// Hybrid logical clock stamp: orders edits and keys them in the document.
    pub hlc: String,
    /// Username of who made the edit.
    pub actor: String,
    /// Their full name at the time (pages show people, not usernames).
    pub actor_name: String,
    /// The desk / terminal it was made at.
    pub desk: Option<String>,
    pub changes: Vec<FieldChange>,
}

impl CitizenInput {
    /// The values in [`FIELDS`] order.
    pub fn values(&self) -> [&str; 8] {
        [
            &self.national_id,
            &self.full_name,
            &self.father_name,
            &self.mother_name,
            &self.birth_date,
            &self.birth_place,
            &self.phone,
            &self.address,
        ]
    }

    /// The fields whose value differs in `new`, with both values; empty when nothing
    /// changed.
    pub fn changes_to(&self, new: &CitizenInput) -> Vec<FieldChange> {
        FIELDS
            .iter()
            .zip(self.values().into_iter().zip(new.values()))
            .filter(|(_, (old, new))| old != new)
            .map(|(field, (old, new))| FieldChange {
                field: field.to_string(),
                old: old.to_string(),
                new: new.to_string(),
            })
            .collect()
    }
}

/// A name as compared when looking for duplicates: the spelling variants clerks type
/// for the same name (hamza forms of alef, alef maqsura, teh marbuta, harakat, tatweel,
/// hyphens and spacing) folded to one form.
pub fn name_key(name: &str) -> String {
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, '\u{0640}' | '\u{064B}'..='\u{0652}'))
        .map(|c| match c {
            'أ' | 'إ' | 'آ' | 'ٱ' => 'ا',
            'ى' => 'ي',
            'ة' => 'ه',
            '-' => ' ',
            c => c,
        })
        .collect();
    squash(&folded)
}

impl CitizenProfile {
    /// Likely the same person registered twice: another national id with the same
    /// birth date and the same name (by [`name_key`]).
    pub fn likely_same_person(&self, other: &CitizenProfile) -> bool {
        self.national_id != other.national_id
            && self.birth_date == other.birth_date
            && name_key(&self.full_name) == name_key(&other.full_name)
    }
}

impl From<&CitizenProfile> for CitizenInput {
    fn from(p: &CitizenProfile) -> Self {
        CitizenInput {
            national_id: p.national_id.to_string(),
            full_name: p.full_name.clone(),
            father_name: p.father_name.clone(),
            mother_name: p.mother_name.clone(),
            birth_date: p.birth_date.to_string(),
            birth_place: p.birth_place.clone(),
            phone: p.phone.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            address: p.address.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> CitizenInput {
        CitizenInput {
            national_id: "٠١٠٢٠٣٠٤٠٥٠".into(),
            full_name: "  سامر   محمد الحلبي ".into(),
            father_name: "محمد".into(),
            mother_name: "فاطمة".into(),
            birth_date: "1985-04-12".into(),
            birth_place: "دمشق".into(),
            phone: "0944 123 456".into(),
            address: "دمشق - الميدان - شارع الجزماتية".into(),
        }
    }

    #[test]
    fn parses_and_normalises_a_profile() {
        let p = good().parse_as_of(date(2026, 1, 1)).unwrap();
        assert_eq!(p.national_id.as_str(), "01020304050");
        assert_eq!(p.full_name, "سامر محمد الحلبي");
        assert_eq!(p.birth_date, date(1985, 4, 12));
        assert_eq!(p.phone.as_ref().unwrap().as_str(), "+963944123456");
        let again = CitizenInput::from(&p).parse().unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn phone_is_optional() {
        let p = CitizenInput {
            phone: "  ".into(),
            ..good()
        }
        .parse()
        .unwrap();
        assert_eq!(p.phone, None);
    }

    #[test]
    fn reports_every_bad_field() {
        let input = CitizenInput {
            national_id: "123".into(),
            full_name: "Samer".into(),
            father_name: "".into(),
            mother_name: "فاطمة".into(),
            birth_date: "2030-01-01".into(),
            birth_place: "".into(),
            phone: "12345".into(),
            address: "دمشق".into(),
        };
        let errs = input.parse_as_of(date(2026, 1, 1)).unwrap_err();
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("national_id", "wrong_length"),
                ("full_name", "not_arabic"),
                ("father_name", "required"),
                ("birth_date", "in_future"),
                ("birth_place", "required"),
                ("phone", "not_syrian_mobile"),
            ]
        );
        let errs = CitizenInput::default().parse().unwrap_err();
        assert_eq!(errs.len(), 7, "all required fields but phone: {errs:?}");
        let errs = CitizenInput {
            birth_date: "1850-01-01".into(),
            ..good()
        }
        .parse()
        .unwrap_err();
        assert_eq!(errs[0].code, "out_of_range");
        let errs = CitizenInput {
            birth_date: "12/04/1985".into(),
            ..good()
        }
        .parse()
        .unwrap_err();
        assert_eq!(errs[0].code, "ambiguous_date");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Parsing never panics, and a parsed profile re-parses to itself.
            #[test]
            fn parse_is_total_and_stable(
                national_id in prop_oneof!["\\PC{0,14}", "(0[1-9]|1[0-4])[0-9]{9}"],
                name in prop_oneof!["\\PC{0,10}", "[ء-ي]{2,8}( [ء-ي]{2,8}){0,2}"],
                birth_date in prop_oneof!["\\PC{0,10}", "(19[0-9]{2}|20[0-2][0-9])-0[1-9]-[0-2][1-9]"],
                phone in prop_oneof!["\\PC{0,14}", "09[0-9]{8}", Just(String::new())],
                place in "\\PC{0,20}",
            ) {
                let input = CitizenInput {
                    national_id,
                    full_name: name.clone(),
                    father_name: name.clone(),
                    mother_name: name,
                    birth_date,
                    birth_place: place.clone(),
                    phone,
                    address: place,
                };
                if let Ok(p) = input.parse_as_of(date(2026, 1, 1)) {
                    prop_assert_eq!(CitizenInput::from(&p).parse_as_of(date(2026, 1, 1)), Ok(p));
                }
            }
        }
    }

    #[test]
    fn changes_name_each_field_with_old_and_new_value() {
        let old = CitizenInput::from(&good().parse().unwrap());
        assert!(old.changes_to(&old).is_empty());
        let new = CitizenInput {
            full_name: "سامر محمد الحلبي الجديد".into(),
            phone: String::new(),
            ..old.clone()
        };
        let changes = old.changes_to(&new);
        assert_eq!(
            changes,
            [
                FieldChange {
                    field: "full_name".into(),
                    old: "سامر محمد الحلبي".into(),
                    new: "سامر محمد الحلبي الجديد".into(),
                },
                FieldChange {
                    field: "phone".into(),
                    old: "+963944123456".into(),
                    new: String::new(),
                },
            ]
        );
    }

    #[test]
    fn likely_duplicates_fold_spelling_variants() {
        let a = good().parse().unwrap();
        let b = CitizenInput {
            national_id: "02020304050".into(),
            full_name: "سامر  محمّد الحلبى".into(),
            ..good()
        }
        .parse()
        .unwrap();
        assert!(
            a.likely_same_person(&b),
            "{} / {}",
            a.full_name,
            b.full_name
        );
        assert!(!a.likely_same_person(&a), "the same id is not a duplicate");
        let other_day = CitizenProfile {
            birth_date: date(1985, 4, 13),
            ..b.clone()
        };
        assert!(!a.likely_same_person(&other_day));
        let other_name = CitizenProfile {
            full_name: "سامر أحمد الحلبي".into(),
            ..b
        };
        assert!(!a.likely_same_person(&other_name));
        assert_eq!(name_key("أحمد إبراهيم"), name_key("احمد ابراهيم"));
        assert_eq!(name_key("فاطمة"), name_key("فاطمه"));
    }

    #[test]
    fn dates_are_iso_or_refused_never_guessed() {
        let with = |birth_date: &str| CitizenInput {
            birth_date: birth_date.into(),
            ..good()
        };
        let code = |birth_date: &str| with(birth_date).parse().unwrap_err()[0].code.clone();
        assert_eq!(
            with("١٩٨٥-٠٣-١٥").parse().unwrap().birth_date,
            date(1985, 3, 15)
        );
        assert_eq!(code("15/03/1985"), "ambiguous_date");
        assert_eq!(code("03/15/1985"), "ambiguous_date");
        assert_eq!(code("15-03-1985"), "ambiguous_date");
        assert_eq!(code("1985-02-30"), "no_such_date");
        assert_eq!(code("1985-3-15"), "ambiguous_date");
        assert_eq!(code("yesterday"), "bad_date");
    }

    #[test]
    fn birth_date_from_three_fields() {
        assert_eq!(
            birth_date_from_parts("15", "3", "1985").unwrap(),
            "1985-03-15"
        );
        assert_eq!(
            birth_date_from_parts("١٥", "٠٣", "١٩٨٥").unwrap(),
            "1985-03-15"
        );
        assert_eq!(birth_date_from_parts(" ", "", "").unwrap(), "");
        let code = |d: &str, m: &str, y: &str| birth_date_from_parts(d, m, y).unwrap_err().code;
        // The day typed where the month goes is refused, not swapped.
        assert_eq!(code("03", "15", "1985"), "bad_month");
        assert_eq!(code("32", "1", "1985"), "bad_day");
        assert_eq!(code("1", "1", "85"), "bad_year");
        assert_eq!(code("1", "", "1985"), "incomplete_date");
        assert_eq!(code("1a", "1", "1985"), "bad_date");
        // A day the month does not have is refused by the profile's parse.
        let input = CitizenInput {
            birth_date: birth_date_from_parts("31", "2", "1985").unwrap(),
            ..good()
        };
        assert_eq!(input.parse().unwrap_err()[0].code, "no_such_date");
    }

    #[test]
    fn json_input_may_omit_fields() {
        let input: CitizenInput = serde_json::from_str(r#"{"national_id":"01020304050"}"#).unwrap();
        assert_eq!(input.national_id, "01020304050");
        assert!(input.parse().is_err());
    }
}
