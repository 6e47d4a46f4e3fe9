//! The service catalog a center starts with: the 17 services of the Damascus citizen
//! service centers, each with its group (which also picks its ticket queue), its source
//! authority (which picks the permission a clerk needs) and the fields a case for it must
//! carry.
//!
//! [`validate_fields`] is the one place a case's service data is checked: it reports
//! every bad field at once and returns the normalised values (ASCII digits, canonical
//! national ids, ISO dates), so what is stored is always in one spelling.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{NationalId, normalize_digits};

/// One bad input field, with a stable code for the API and a message in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's key, as in the request (`"property_number"`, `"national_id"`).
    pub field: String,
    /// Machine code: `required`, `unknown_field`, `not_digits`, `too_short`, `too_long`,
    /// `bad_date`, `bad_choice`, `bad_text`, or an id error code.
    pub code: String,
    pub message_en: String,
    pub message_ar: String,
}

impl FieldError {
    pub fn new(
        field: &str,
        code: &str,
        message_en: impl Into<String>,
        message_ar: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.to_string(),
            code: code.to_string(),
            message_en: message_en.into(),
            message_ar: message_ar.into(),
        }
    }

    pub(crate) fn required(field: &str) -> Self {
        FieldError::new(
            field,
            "required",
            "this field is required",
            "هذا الحقل مطلوب",
        )
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message_en)
    }
}

/// The four service groups of a center. Each group has its own ticket queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceGroup {
    Judicial,
    CivilRegistry,
    RealEstate,
    Finance,
}

impl ServiceGroup {
    pub const ALL: [ServiceGroup; 4] = [
        ServiceGroup::Judicial,
        ServiceGroup::CivilRegistry,
        ServiceGroup::RealEstate,
        ServiceGroup::Finance,
    ];

    /// The id of the ticket queue group that serves this service group (as in the node's
    /// config): `judicial`, `civil`, `real_estate`, `finance`.
    pub fn queue_group(self) -> &'static str {
        match self {
            ServiceGroup::Judicial => "judicial",
            ServiceGroup::CivilRegistry => "civil",
            ServiceGroup::RealEstate => "real_estate",
            ServiceGroup::Finance => "finance",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            ServiceGroup::Judicial => "الخدمات القضائية",
            ServiceGroup::CivilRegistry => "الأحوال المدنية",
            ServiceGroup::RealEstate => "السجل العقاري",
            ServiceGroup::Finance => "المالية",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            ServiceGroup::Judicial => "Judicial",
            ServiceGroup::CivilRegistry => "Civil registry",
            ServiceGroup::RealEstate => "Real estate",
            ServiceGroup::Finance => "Finance",
        }
    }
}

/// The source authority whose system issues a service's document. A clerk needs a
/// permission for the authority to process its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    Justice,
    CivilAffairs,
    RealEstateDirectorate,
    FinanceDirectorate,
}

impl Authority {
    pub const ALL: [Authority; 4] = [
        Authority::Justice,
        Authority::CivilAffairs,
        Authority::RealEstateDirectorate,
        Authority::FinanceDirectorate,
    ];

    /// The serde / SQL spelling (`justice`, `civil_affairs`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Justice => "justice",
            Authority::CivilAffairs => "civil_affairs",
            Authority::RealEstateDirectorate => "real_estate_directorate",
            Authority::FinanceDirectorate => "finance_directorate",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            Authority::Justice => "وزارة العدل",
            Authority::CivilAffairs => "مديرية الشؤون المدنية",
            Authority::RealEstateDirectorate => "مديرية المصالح العقارية",
            Authority::FinanceDirectorate => "مديرية مالية دمشق",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Authority::Justice => "Ministry of Justice",
            Authority::CivilAffairs => "Civil Affairs Directorate",
            Authority::RealEstateDirectorate => "Real-Estate Directorate",
            Authority::FinanceDirectorate => "Damascus Finance Directorate",
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Authority {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Authority::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                FieldError::new(
                    "authority",
                    "bad_choice",
                    format!("unknown authority '{s}'"),
                    format!("جهة غير معروفة '{s}'"),
                )
            })
    }
}

/// One allowed value of a [`FieldKind::Choice`] field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceOption {
    pub value: String,
    pub label_ar: String,
    pub label_en: String,
}

/// What a field holds and how it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text, 1–200 characters, no control characters.
    Text,
    /// Only digits (Arabic-Indic accepted and normalised), `min..=max` of them.
    Digits { min: u8, max: u8 },
    /// A national id (normalised to its canonical form).
    NationalId,
    /// A civil date `YYYY-MM-DD`.
    Date,
    /// One of the listed values.
    Choice { options: Vec<ChoiceOption> },
}

/// One field a service's case carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub key: String,
    pub label_ar: String,
    pub label_en: String,
    pub kind: FieldKind,
    pub required: bool,
}

/// A service of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Stable code, e.g. `criminal_record`; the key of fees and cases.
    pub code: String,
    pub name_ar: String,
    pub name_en: String,
    pub group: ServiceGroup,
    pub authority: Authority,
    pub fields: Vec<FieldSpec>,
    /// How long a case should take from intake to ready, in working hours.
    pub target_hours: u32,
}

impl Service {
    /// The field spec for `key`, if the service has it.
    pub fn field(&self, key: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.key == key)
    }
}

/// The service with `code` in `catalog`.
pub fn find_service<'a>(catalog: &'a [Service], code: &str) -> Option<&'a Service> {
    catalog.iter().find(|s| s.code == code)
}

const TEXT_MAX_CHARS: usize = 200;

fn check_field(spec: &FieldSpec, raw: &str) -> Result<String, FieldError> {
    let key = spec.key.as_str();
    match &spec.kind {
        FieldKind::Text => {
            let v = raw.trim();
            if v.chars().count() > TEXT_MAX_CHARS {
                return Err(FieldError::new(
                    key,
                    "too_long",
                    format!("at most {TEXT_MAX_CHARS} characters"),
                    format!("الحد الأقصى {TEXT_MAX_CHARS} حرفاً"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(FieldError::new(
                    key,
                    "bad_text",
                    "contains control characters",
                    "يحتوي على محارف غير مسموحة",
                ));
            }
            Ok(v.to_string())
        }
        FieldKind::Digits { min, max } => {
            let v = normalize_digits(raw);
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::new(
                    key,
                    "not_digits",
                    "digits only",
                    "أرقام فقط",
                ));
            }
            let n = v.len();
            if n < usize::from(*min) {
                return Err(FieldError::new(
                    key,
                    "too_short",
                    format!("at least {min} digits"),
                    format!("على الأقل {min} أرقام"),
                ));
            }
            if n > usize::from(*max) {
                return Err(FieldError::new(
                    key,
                    "too_long",
                    format!("at most {max} digits"),
                    format!("على الأكثر {max} أرقام"),
                ));
            }
            Ok(v)
        }
        FieldKind::NationalId => raw
            .parse::<NationalId>()
            .map(String::from)
            .map_err(|e| FieldError::new(key, e.code(), e.to_string(), e.message_ar())),
        FieldKind::Date => normalize_digits(raw)
            .parse::<jiff::civil::Date>()
            .map(|d| d.to_string())
            .map_err(|_| {
                FieldError::new(
                    key,
                    "bad_date",
                    "a date like 2026-03-21",
                    "تاريخ بالشكل 2026-03-21",
                )
            }),
        FieldKind::Choice { options } => {
            let v = raw.trim();
            if options.iter().any(|o| o.value == v) {
                Ok(v.to_string())
            } else {
                let allowed = options
                    .iter()
                    .map(|o| o.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(FieldError::new(
                    key,
                    "bad_choice",
                    format!("must be one of: {allowed}"),
                    format!("يجب أن يكون أحد: {allowed}"),
                ))
            }
        }
    }
}

/// Checks a case's service data against `service`: every required field present and
/// non-empty, every given field known and well-formed. Empty optional fields are dropped.
/// Returns the normalised values, or every fault found (sorted by field).
pub fn validate_fields(
    service: &Service,
    input: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for key in input.keys() {
        if service.field(key).is_none() {
            errors.push(FieldError::new(
                key,
                "unknown_field",
                format!("service '{}' has no field '{key}'", service.code),
                format!("الخدمة '{}' لا تحتوي الحقل '{key}'", service.name_ar),
            ));
        }
    }
    for spec in &service.fields {
        match input
            .get(&spec.key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None if spec.required => errors.push(FieldError::required(&spec.key)),
            None => {}
            Some(raw) => match check_field(spec, raw) {
                Ok(v) => {
                    out.insert(spec.key.clone(), v);
                }
                Err(e) => errors.push(e),
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        Err(errors)
    }
}

fn field(key: &str, label_ar: &str, label_en: &str, kind: FieldKind, required: bool) -> FieldSpec {
    FieldSpec {
        key: key.into(),
        label_ar: label_ar.into(),
        label_en: label_en.into(),
        kind,
        required,
    }
}

fn choice(options: &[(&str, &str, &str)]) -> FieldKind {
    FieldKind::Choice {
        options: options
            .iter()
            .map(|(v, ar, en)| ChoiceOption {
                value: (*v).into(),
                label_ar: (*ar).into(),
                label_en: (*en).into(),
            })
            .collect(),
    }
}

fn purpose() -> FieldSpec {
    field(
        "purpose",
        "الغاية من الوثيقة",
        "Purpose of the document",
        FieldKind::Text,
        false,
    )
}

fn person_id(label_ar: &str, label_en: &str) -> FieldSpec {
    field(
        "person_national_id",
        label_ar,
        label_en,
        FieldKind::NationalId,
        true,
    )
}

fn property_fields() -> Vec<FieldSpec> {
    vec![
        field(
            "real_estate_area",
            "المنطقة العقارية",
            "Real-estate area",
            FieldKind::Text,
            true,
        ),
        field(
            "property_number",
            "رقم العقار",
            "Property number",
            FieldKind::Digits { min: 1, max: 8 },
            true,
        ),
        field(
            "section",
            "رقم القسم / المقسم",
            "Section / subdivision number",
            FieldKind::Digits { min: 1, max: 6 },
            false,
        ),
    ]
}

fn tax_id() -> FieldSpec {
    field(
        "tax_id",
        "الرقم الضريبي",
        "Tax id",
        FieldKind::Digits { min: 6, max: 12 },
        true,
    )
}

#[allow(clippy::too_many_arguments)]
fn service(
    code: &str,
    name_ar: &str,
    name_en: &str,
    group: ServiceGroup,
    authority: Authority,
    target_hours: u32,
    fields: Vec<FieldSpec>,
) -> Service {
    Service {
        code: code.into(),
        name_ar: name_ar.into(),
        name_en: name_en.into(),
        group,
        authority,
        fields,
        target_hours,
    }
}

/// The 17 services of the Damascus citizen service centers, in the order of the report.
pub fn default_catalog() -> Vec<Service> {
    use Authority as A;
    use ServiceGroup as G;
    let re = |code: &str, ar: &str, en: &str, hours: u32, extra: Vec<FieldSpec>| {
        let mut fields = extra;
        fields.extend(property_fields());
        service(
            code,
            ar,
            en,
            G::RealEstate,
            A::RealEstateDirectorate,
            hours,
            fields,
        )
    };
    let real_estate = vec![
        re(
            "re_extract",
            "إخراج قيد عقاري",
            "Real-estate registry extract",
            24,
            vec![],
        ),
        re("cadastral_plan", "مخطط مساحي", "Cadastral plan", 72, vec![]),
        re(
            "owners_chain",
            "بيان تسلسل مالكين",
            "Chain-of-owners statement",
            72,
            vec![],
        ),
        re(
            "ownership_statement",
            "بيان ملكية",
            "Ownership statement",
            24,
            vec![],
        ),
        re(
            "property_description",
            "بيان أوصاف",
            "Property description statement",
            48,
            vec![],
        ),
        re(
            "certified_copy",
            "صورة مصدقة عن عقد / إشارة حجز",
            "Certified copy of a contract / of a seizure annotation",
            72,
            vec![
                field(
                    "document_type",
                    "نوع الوثيقة",
                    "Document type",
                    choice(&[
                        ("contract", "عقد", "Contract"),
                        ("seizure_annotation", "إشارة حجز", "Seizure annotation"),
                    ]),
                    true,
                ),
                field(
                    "document_reference",
                    "رقم العقد / الإشارة",
                    "Contract / annotation number",
                    FieldKind::Text,
                    false,
                ),
            ],
        ),
    ];

    let civil = |code: &str, ar: &str, en: &str, hours: u32, fields: Vec<FieldSpec>| {
        service(
            code,
            ar,
            en,
            G::CivilRegistry,
            A::CivilAffairs,
            hours,
            fields,
        )
    };
    let mut all = vec![
        service(
            "criminal_record",
            "السجل العدلي (لا حكم عليه)",
            "Criminal record certificate",
            G::Judicial,
            A::Justice,
            24,
            vec![purpose()],
        ),
        civil(
            "individual_statement",
            "بيان فردي",
            "Individual civil-status statement",
            2,
            vec![purpose()],
        ),
        civil(
            "birth_statement",
            "بيان ولادة",
            "Birth statement",
            2,
            vec![person_id(
                "الرقم الوطني لصاحب الولادة",
                "National id of the person born",
            )],
        ),
        civil(
            "death_statement",
            "بيان وفاة",
            "Death statement",
            4,
            vec![
                person_id("الرقم الوطني للمتوفى", "National id of the deceased"),
                field(
                    "death_date",
                    "تاريخ الوفاة",
                    "Date of death",
                    FieldKind::Date,
                    false,
                ),
            ],
        ),
        civil(
            "marriage_statement",
            "بيان زواج",
            "Marriage statement",
            4,
            vec![
                person_id(
                    "الرقم الوطني للزوج / الزوجة",
                    "National id of the spouse named",
                ),
                field(
                    "other_spouse_national_id",
                    "الرقم الوطني للطرف الآخر",
                    "National id of the other spouse",
                    FieldKind::NationalId,
                    false,
                ),
            ],
        ),
        civil(
            "divorce_statement",
            "بيان طلاق",
            "Divorce statement",
            4,
            vec![
                person_id(
                    "الرقم الوطني للزوج / الزوجة",
                    "National id of the spouse named",
                ),
                field(
                    "other_spouse_national_id",
                    "الرقم الوطني للطرف الآخر",
                    "National id of the other spouse",
                    FieldKind::NationalId,
                    false,
                ),
            ],
        ),
        civil(
            "not_employed_statement",
            "بيان غير موظف",
            "Not-employed statement",
            24,
            vec![purpose()],
        ),
        civil(
            "civil_extract",
            "إخراج قيد (فردي / عائلي)",
            "Civil registry extract (individual / family)",
            2,
            vec![
                field(
                    "extract_type",
                    "نوع الإخراج",
                    "Extract type",
                    choice(&[
                        ("individual", "فردي", "Individual"),
                        ("family", "عائلي", "Family"),
                    ]),
                    true,
                ),
                field(
                    "registry_place",
                    "محل ورقم القيد (الأمانة)",
                    "Registry place (civil registry office)",
                    FieldKind::Text,
                    true,
                ),
                field(
                    "registry_number",
                    "رقم القيد / الخانة",
                    "Registry (family book) number",
                    FieldKind::Digits { min: 1, max: 8 },
                    true,
                ),
            ],
        ),
        civil(
            "temporary_registry",
            "خدمات السجل المؤقت",
            "Temporary-registry services",
            48,
            vec![
                field(
                    "request_type",
                    "نوع الطلب",
                    "Request type",
                    choice(&[
                        ("statement", "بيان", "Statement"),
                        ("extract", "إخراج قيد", "Extract"),
                        ("registration", "تسجيل واقعة", "Registration of an event"),
                    ]),
                    true,
                ),
                field(
                    "temporary_registry_number",
                    "رقم السجل المؤقت",
                    "Temporary-registry number",
                    FieldKind::Digits { min: 1, max: 10 },
                    false,
                ),
            ],
        ),
    ];
    all.extend(real_estate);
    all.push(service(
        "tax_clearance_individual",
        "براءة ذمة مالية - أفراد",
        "Tax clearance, individuals",
        G::Finance,
        A::FinanceDirectorate,
        24,
        vec![tax_id()],
    ));
    all.push(service(
        "tax_clearance_company",
        "براءة ذمة مالية - شركات",
        "Tax clearance, companies",
        G::Finance,
        A::FinanceDirectorate,
        72,
        vec![
            field(
                "company_registration_no",
                "رقم السجل التجاري",
                "Commercial registration number",
                FieldKind::Digits { min: 1, max: 10 },
                true,
            ),
            tax_id(),
        ],
    ));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn catalog_has_the_seventeen_services_of_the_report() {
        let c = default_catalog();
        assert_eq!(c.len(), 17);
        let mut codes: Vec<_> = c.iter().map(|s| s.code.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 17, "codes are unique");
        let names: Vec<_> = c.iter().map(|s| s.name_ar.as_str()).collect();
        for n in [
            "السجل العدلي (لا حكم عليه)",
            "بيان فردي",
            "بيان ولادة",
            "بيان وفاة",
            "بيان زواج",
            "بيان طلاق",
            "بيان غير موظف",
            "إخراج قيد (فردي / عائلي)",
            "خدمات السجل المؤقت",
            "إخراج قيد عقاري",
            "مخطط مساحي",
            "بيان تسلسل مالكين",
            "بيان ملكية",
            "بيان أوصاف",
            "صورة مصدقة عن عقد / إشارة حجز",
            "براءة ذمة مالية - أفراد",
            "براءة ذمة مالية - شركات",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let count = |g| c.iter().filter(|s| s.group == g).count();
        assert_eq!(
            (
                count(ServiceGroup::Judicial),
                count(ServiceGroup::CivilRegistry),
                count(ServiceGroup::RealEstate),
                count(ServiceGroup::Finance)
            ),
            (1, 8, 6, 2)
        );
        for s in &c {
            let expected = match s.group {
                ServiceGroup::Judicial => Authority::Justice,
                ServiceGroup::CivilRegistry => Authority::CivilAffairs,
                ServiceGroup::RealEstate => Authority::RealEstateDirectorate,
                ServiceGroup::Finance => Authority::FinanceDirectorate,
            };
            assert_eq!(s.authority, expected, "{}", s.code);
            assert!(s.target_hours > 0);
        }
    }

    #[test]
    fn required_fields_of_key_services() {
        let c = default_catalog();
        let required = |code: &str| -> Vec<String> {
            find_service(&c, code)
                .unwrap()
                .fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.key.clone())
                .collect()
        };
        assert_eq!(
            required("re_extract"),
            ["real_estate_area", "property_number"]
        );
        assert_eq!(
            required("cadastral_plan"),
            ["real_estate_area", "property_number"]
        );
        assert_eq!(required("tax_clearance_individual"), ["tax_id"]);
        assert_eq!(
            required("tax_clearance_company"),
            ["company_registration_no", "tax_id"]
        );
        for code in [
            "birth_statement",
            "death_statement",
            "marriage_statement",
            "divorce_statement",
        ] {
            assert_eq!(required(code), ["person_national_id"], "{code}");
        }
        assert_eq!(
            required("civil_extract"),
            ["extract_type", "registry_place", "registry_number"]
        );
    }

    #[test]
    fn validate_normalises_good_input() {
        let c = default_catalog();
        let s = find_service(&c, "re_extract").unwrap();
        let out = validate_fields(
            s,
            &input(&[
                ("property_number", " ١٢٣٤ "),
                ("real_estate_area", " الميدان "),
                ("section", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            input(&[("property_number", "1234"), ("real_estate_area", "الميدان")])
        );

        let s = find_service(&c, "death_statement").unwrap();
        let out = validate_fields(
            s,
            &input(&[
                ("person_national_id", "٠١٢٣٤٥٦٧٨٩١"),
                ("death_date", "2025-01-09"),
            ]),
        )
        .unwrap();
        assert_eq!(out["person_national_id"], "01234567891");
        assert_eq!(out["death_date"], "2025-01-09");

        let s = find_service(&c, "criminal_record").unwrap();
        assert_eq!(
            validate_fields(s, &BTreeMap::new()).unwrap(),
            BTreeMap::new()
        );
    }

    #[test]
    fn validate_reports_every_bad_field() {
        let c = default_catalog();
        let s = find_service(&c, "tax_clearance_company").unwrap();
        let errs =
            validate_fields(s, &input(&[("tax_id", "12a"), ("colour", "blue")])).unwrap_err();
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("colour", "unknown_field"),
                ("company_registration_no", "required"),
                ("tax_id", "not_digits")
            ]
        );
        assert!(
            errs.iter()
                .all(|e| !e.message_ar.is_empty() && !e.message_en.is_empty())
        );

        let s = find_service(&c, "civil_extract").unwrap();
        let errs = validate_fields(
            s,
            &input(&[
                ("extract_type", "cousins"),
                ("registry_place", "الميدان"),
                ("registry_number", "123456789"),
            ]),
        )
        .unwrap_err();
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("extract_type", "bad_choice"),
                ("registry_number", "too_long")
            ]
        );

        let s = find_service(&c, "death_statement").unwrap();
        let errs = validate_fields(
            s,
            &input(&[
                ("person_national_id", "99999999999"),
                ("death_date", "2025-02-30"),
            ]),
        )
        .unwrap_err();
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("death_date", "bad_date"),
                ("person_national_id", "all_same_digits")
            ]
        );

        let s = find_service(&c, "criminal_record").unwrap();
        let long = "x".repeat(201);
        let errs = validate_fields(s, &input(&[("purpose", &long)])).unwrap_err();
        assert_eq!(errs[0].code, "too_long");
        let errs = validate_fields(s, &input(&[("purpose", "a\u{0007}b")])).unwrap_err();
        assert_eq!(errs[0].code, "bad_text");
    }

    #[test]
    fn catalog_round_trips_through_json() {
        let c = default_catalog();
        let json = serde_json::to_string(&c).unwrap();
        let back: Vec<Service> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(json.contains("\"group\":\"real_estate\""));
        assert!(json.contains("\"authority\":\"finance_directorate\""));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        proptest! {
            /// Any input either fails with named fields or yields values that validate to
            /// themselves (normalisation is idempotent), for every service.
            #[test]
            fn validation_is_total_and_idempotent(
                idx in 0usize..17,
                values in proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "property_number", "real_estate_area", "section", "tax_id", "company_registration_no",
                        "person_national_id", "death_date", "extract_type", "registry_place", "registry_number",
                        "purpose", "document_type", "request_type", "x",
                    ]).prop_map(String::from),
                    proptest::prop_oneof![
                        "\\PC{0,12}",
                        "[0-9٠-٩]{1,12}",
                        proptest::strategy::Just("01020304050".to_string()),
                        proptest::strategy::Just("2025-01-09".to_string()),
                        proptest::strategy::Just("family".to_string()),
                        proptest::strategy::Just("contract".to_string()),
                    ],
                    0..6,
                ),
            ) {
                let c = default_catalog();
                let s = &c[idx];
                match validate_fields(s, &values) {
                    Ok(out) => proptest::prop_assert_eq!(validate_fields(s, &out), Ok(out.clone())),
                    Err(errs) => {
                        proptest::prop_assert!(!errs.is_empty());
                        for e in errs {
                            proptest::prop_assert!(values.contains_key(&e.field) || s.field(&e.field).is_some());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn queue_groups_match_config_ids() {
        let ids: Vec<_> = ServiceGroup::ALL.iter().map(|g| g.queue_group()).collect();
        assert_eq!(ids, ["judicial", "civil", "real_estate", "finance"]);
        assert_eq!(
            "civil_affairs".parse::<Authority>().unwrap(),
            Authority::CivilAffairs
        );
        assert!("nope".parse::<Authority>().is_err());
    }
}
