//! A citizen's profile, typed once at a center (or on the portal) and reused for every
//! document.
//!
//! [`CitizenInput`] is what a form or JSON body sends (raw strings); [`CitizenInput::parse`]
//! turns it into a [`CitizenProfile`] or reports every bad field at once. The profile's
//! fields are flat scalars, so two centers editing different fields concurrently both win.

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
            raw => match raw.parse::<Date>() {
                Err(_) => {
                    errors.push(FieldError::new(
                        "birth_date",
                        "bad_date",
                        "a date like 1980-03-21",
                        "تاريخ بالشكل 1980-03-21",
                    ));
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
        assert_eq!(errs[0].code, "bad_date");
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
    fn json_input_may_omit_fields() {
        let input: CitizenInput = serde_json::from_str(r#"{"national_id":"01020304050"}"#).unwrap();
        assert_eq!(input.national_id, "01020304050");
        assert!(input.parse().is_err());
    }
}
