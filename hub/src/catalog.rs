//! Administration of the catalog and the fee schedule at the hub: services are created or
//! updated, dated fees are added, and both are written to the one `catalog` document,
//! which is routed to every center (see `SqliteHub::route_stored`), so each center has the
//! change after its next sync.
//!
//! Guarantees:
//! - a service is only written when every part of it is valid ([`parse_service`] reports
//!   the first bad field by name, e.g. `fields[2].kind`);
//! - a fee never starts before today (Damascus time), and a fee component never lands on a
//!   day that already has a different component of the same part (authority fee or center
//!   surcharge), nor reuses a decision reference for another date or amount: the history
//!   stays one unambiguous line per part ([`plan_fee`]);
//! - posting the same fee twice changes nothing (the second answer says so).
//!
//! Parsing and the fee rules are pure functions, tested here without a database; the
//! writer-thread functions ([`put_service`], [`add_fee`], [`entries`]) wrap them.

use std::collections::BTreeSet;

use jiff::civil::Date;
use markaz_sync::docs::{self, CatalogView, DocId};
use markaz_sync::model::Money;
use markaz_sync::model::catalog::{Authority, FieldKind, FieldSpec, Service, ServiceGroup};
use markaz_sync::model::fees::{Fee, FeeComponent, ServiceFees};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::storage::{HubEngine, StorageError};

/// Why a catalog operation was refused. The web layer maps these to status codes.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The body is wrong (422); `field` names where.
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        code: &'static str,
        message: String,
    },
    /// The body is valid but clashes with what the catalog holds (409).
    #[error("{field}: {message}")]
    Conflict {
        field: String,
        code: &'static str,
        message: String,
    },
    /// No such service (404).
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("the hub has no catalog document")]
    NoCatalog,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Every `code` an [`CatalogError::Invalid`] or [`CatalogError::Conflict`] carries: the
/// API sends it, the catalog page shows its translation (a test checks both catalogs
/// have each).
pub const ERROR_CODES: &[&str] = &[
    "required",
    "too_long",
    "bad_text",
    "invalid_field",
    "unknown_field",
    "bad_key",
    "bad_range",
    "duplicate",
    "bad_code",
    "mismatch",
    "out_of_range",
    "bad_amount",
    "bad_date",
    "in_past",
    "fee_overlap",
    "decision_reused",
];

fn invalid(
    field: impl Into<String>,
    code: &'static str,
    message: impl Into<String>,
) -> CatalogError {
    debug_assert!(ERROR_CODES.contains(&code), "{code} missing in ERROR_CODES");
    CatalogError::Invalid {
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// Today in Damascus: the day a fee may start at the earliest.
pub fn today(now: jiff::Timestamp) -> Date {
    let tz = jiff::tz::TimeZone::get("Asia/Damascus")
        .unwrap_or_else(|_| jiff::tz::TimeZone::fixed(jiff::tz::offset(3)));
    now.to_zoned(tz).date()
}

// ---- services -----------------------------------------------------------------------

/// Longest name, label or decision reference, in characters.
pub const MAX_TEXT: usize = 200;
/// Longest target time a service may have (a year of hours).
pub const MAX_TARGET_HOURS: u32 = 8_760;

/// Is `code` a service code: 2–64 of `a-z 0-9 _`, starting with a letter.
pub fn valid_code(code: &str) -> bool {
    (2..=64).contains(&code.len())
        && code.as_bytes()[0].is_ascii_lowercase()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn text(field: &str, v: &str) -> Result<String, CatalogError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(invalid(field, "required", "must not be empty"));
    }
    if t.chars().count() > MAX_TEXT {
        return Err(invalid(
            field,
            "too_long",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "bad_text", "contains control characters"));
    }
    Ok(t.to_string())
}

fn take<T: serde::de::DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<T, CatalogError> {
    let v = obj
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| invalid(field, "required", "this field is required"))?;
    serde_json::from_value(v.clone()).map_err(|e| invalid(field, "invalid_field", e.to_string()))
}

fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), CatalogError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            format!("{prefix}{k}"),
            "unknown_field",
            format!("unknown field; expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn parse_field_spec(v: &Value, at: &str) -> Result<FieldSpec, CatalogError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(at, "invalid_field", "expected an object"))?;
    let p = format!("{at}.");
    check_keys(
        obj,
        &["key", "label_ar", "label_en", "kind", "required"],
        &p,
    )?;
    let key: String = take(obj, "key", &format!("{p}key"))?;
    if !valid_code(&key) {
        return Err(invalid(
            format!("{p}key"),
            "bad_key",
            "2–64 of a-z, 0-9 and _, starting with a letter",
        ));
    }
    let label_ar = text(
        &format!("{p}label_ar"),
        &take::<String>(obj, "label_ar", &format!("{p}label_ar"))?,
    )?;
    let label_en = text(
        &format!("{p}label_en"),
        &take::<String>(obj, "label_en", &format!("{p}label_en"))?,
    )?;
    let kind: FieldKind = take(obj, "kind", &format!("{p}kind"))?;
    match &kind {
        FieldKind::Digits { min, max } if min > max || *max == 0 || *max > 64 => {
            return Err(invalid(
                format!("{p}kind"),
                "bad_range",
                "digits need 0 <= min <= max <= 64 and max >= 1",
            ));
        }
        FieldKind::Choice { options } => {
            if options.is_empty() {
                return Err(invalid(
                    format!("{p}kind"),
                    "required",
                    "a choice needs options",
                ));
            }
            let mut seen = BTreeSet::new();
            for (j, o) in options.iter().enumerate() {
                let f = format!("{p}kind.options[{j}]");
                text(&format!("{f}.value"), &o.value)?;
                text(&format!("{f}.label_ar"), &o.label_ar)?;
                text(&format!("{f}.label_en"), &o.label_en)?;
                if !seen.insert(o.value.trim()) {
                    return Err(invalid(
                        format!("{f}.value"),
                        "duplicate",
                        "option values repeat",
                    ));
                }
            }
        }
        _ => {}
    }
    let required = match obj.get("required") {
        None | Some(Value::Null) => false,
        Some(_) => take(obj, "required", &format!("{p}required"))?,
    };
    Ok(FieldSpec {
        key,
        label_ar,
        label_en,
        kind,
        required,
    })
}

/// Parse and check the body of `PUT /api/v1/catalog/services/{code}`: `name_ar`,
/// `name_en`, `group`, `authority`, `target_hours` (1–8760) and `fields` (the field specs
/// a case of the service carries; may be empty). A `code` in the body must equal the
/// path's.
pub fn parse_service(code: &str, body: &Value) -> Result<Service, CatalogError> {
    if !valid_code(code) {
        return Err(invalid(
            "code",
            "bad_code",
            "2–64 of a-z, 0-9 and _, starting with a letter",
        ));
    }
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "invalid_field", "expected a JSON object"))?;
    check_keys(
        obj,
        &[
            "code",
            "name_ar",
            "name_en",
            "group",
            "authority",
            "fields",
            "target_hours",
        ],
        "",
    )?;
    if let Some(c) = obj.get("code")
        && c.as_str() != Some(code)
    {
        return Err(invalid(
            "code",
            "mismatch",
            "the code in the body differs from the path",
        ));
    }
    let name_ar = text("name_ar", &take::<String>(obj, "name_ar", "name_ar")?)?;
    let name_en = text("name_en", &take::<String>(obj, "name_en", "name_en")?)?;
    let group: ServiceGroup = take(obj, "group", "group")?;
    let authority: Authority = take(obj, "authority", "authority")?;
    let target_hours: u32 = take(obj, "target_hours", "target_hours")?;
    if target_hours == 0 || target_hours > MAX_TARGET_HOURS {
        return Err(invalid(
            "target_hours",
            "out_of_range",
            format!("1 to {MAX_TARGET_HOURS} hours"),
        ));
    }
    let raw_fields = match obj.get("fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(invalid("fields", "invalid_field", "expected a list")),
    };
    let mut fields = Vec::with_capacity(raw_fields.len());
    let mut keys = BTreeSet::new();
    for (i, f) in raw_fields.iter().enumerate() {
        let spec = parse_field_spec(f, &format!("fields[{i}]"))?;
        if !keys.insert(spec.key.clone()) {
            return Err(invalid(
                format!("fields[{i}].key"),
                "duplicate",
                "field keys repeat",
            ));
        }
        fields.push(spec);
    }
    Ok(Service {
        code: code.to_string(),
        name_ar,
        name_en,
        group,
        authority,
        fields,
        target_hours,
    })
}

// ---- fees ---------------------------------------------------------------------------

/// A dated fee as posted to `POST /api/v1/catalog/services/{code}/fees`: either part or
/// both, each with its decision, from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeeInput {
    pub effective_from: Date,
    /// The source authority's fee and its tariff decision.
    pub authority: Option<(Money, String)>,
    /// The center surcharge and the council decision that set it.
    pub surcharge: Option<(Money, String)>,
}

fn amount(obj: &Map<String, Value>, key: &str) -> Result<Option<Money>, CatalogError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<Money>()
            .map(Some)
            .map_err(|e| invalid(key, "bad_amount", e.to_string())),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| {
                invalid(
                    key,
                    "bad_amount",
                    "whole pounds, or a string like \"1500.50\"",
                )
            })
            .and_then(|v| Money::from_syp(v).map_err(|e| invalid(key, "bad_amount", e.to_string())))
            .map(Some),
        Some(_) => Err(invalid(
            key,
            "bad_amount",
            "an amount in SYP: 1500 or \"1500.50\"",
        )),
    }
}

/// Parse the fee body: `effective_from` (YYYY-MM-DD), `authority_fee` +
/// `authority_decision` and/or `center_surcharge` + `council_decision`. Amounts are SYP:
/// a whole number, or a string with up to two decimals (Arabic-Indic digits accepted).
pub fn parse_fee(body: &Value) -> Result<FeeInput, CatalogError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "invalid_field", "expected a JSON object"))?;
    check_keys(
        obj,
        &[
            "effective_from",
            "authority_fee",
            "authority_decision",
            "center_surcharge",
            "council_decision",
        ],
        "",
    )?;
    let day: String = take(obj, "effective_from", "effective_from")?;
    let effective_from: Date = day
        .trim()
        .parse()
        .map_err(|_| invalid("effective_from", "bad_date", "a date YYYY-MM-DD"))?;
    let part = |fee_key: &str, dec_key: &str| -> Result<Option<(Money, String)>, CatalogError> {
        let fee = amount(obj, fee_key)?;
        let dec = match obj.get(dec_key) {
            None | Some(Value::Null) => None,
            Some(_) => Some(take::<String>(obj, dec_key, dec_key)?),
        };
        match (fee, dec) {
            (Some(m), Some(d)) => Ok(Some((m, text(dec_key, &d)?))),
            (Some(_), None) => Err(invalid(
                dec_key,
                "required",
                format!("{fee_key} needs its decision"),
            )),
            (None, Some(_)) => Err(invalid(
                fee_key,
                "required",
                format!("{dec_key} without {fee_key}"),
            )),
            (None, None) => Ok(None),
        }
    };
    let authority = part("authority_fee", "authority_decision")?;
    let surcharge = part("center_surcharge", "council_decision")?;
    if authority.is_none() && surcharge.is_none() {
        return Err(invalid(
            "authority_fee",
            "required",
            "give authority_fee and/or center_surcharge",
        ));
    }
    Ok(FeeInput {
        effective_from,
        authority,
        surcharge,
    })
}

/// What adding a fee does to a service's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeePlan {
    /// The new history to write.
    Write(ServiceFees),
    /// Every component is already there: nothing to write.
    Unchanged,
}

fn place(
    list: &mut Vec<FeeComponent>,
    new: FeeComponent,
    amount_field: &str,
    decision_field: &str,
) -> Result<bool, CatalogError> {
    debug_assert!(
        ["fee_overlap", "decision_reused"]
            .iter()
            .all(|c| ERROR_CODES.contains(c))
    );
    if list.contains(&new) {
        return Ok(false);
    }
    if let Some(c) = list.iter().find(|c| c.effective_from == new.effective_from) {
        return Err(CatalogError::Conflict {
            field: "effective_from".into(),
            code: "fee_overlap",
            message: format!(
                "{amount_field}: {} SYP under \"{}\" already takes effect on {}; one part has one fee per day",
                c.amount, c.decision, c.effective_from
            ),
        });
    }
    if let Some(c) = list.iter().find(|c| c.decision == new.decision) {
        return Err(CatalogError::Conflict {
            field: decision_field.into(),
            code: "decision_reused",
            message: format!(
                "decision \"{}\" already set {} SYP from {}",
                c.decision, c.amount, c.effective_from
            ),
        });
    }
    list.push(new);
    list.sort_by_key(|c| c.effective_from);
    Ok(true)
}

/// Apply the fee rules to one service's history: refuse a start before `today`, a second
/// component of the same part on one day, and a decision reference reused for another
/// date or amount; accept an exact repeat as [`FeePlan::Unchanged`].
pub fn plan_fee(
    current: &ServiceFees,
    input: &FeeInput,
    today: Date,
) -> Result<FeePlan, CatalogError> {
    if input.effective_from < today {
        return Err(invalid(
            "effective_from",
            "in_past",
            format!("a fee cannot start before today ({today})"),
        ));
    }
    let mut next = current.clone();
    let mut changed = false;
    if let Some((amount, decision)) = &input.authority {
        let c = FeeComponent {
            amount: *amount,
            decision: decision.clone(),
            effective_from: input.effective_from,
        };
        changed |= place(
            &mut next.authority,
            c,
            "authority_fee",
            "authority_decision",
        )?;
    }
    if let Some((amount, decision)) = &input.surcharge {
        let c = FeeComponent {
            amount: *amount,
            decision: decision.clone(),
            effective_from: input.effective_from,
        };
        changed |= place(
            &mut next.surcharge,
            c,
            "center_surcharge",
            "council_decision",
        )?;
    }
    Ok(if changed {
        FeePlan::Write(next)
    } else {
        FeePlan::Unchanged
    })
}

// ---- views --------------------------------------------------------------------------

/// One service as the catalog API shows it: the service, the fee in effect today, and its
/// fee history (each part sorted by date, upcoming ones included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    #[serde(flatten)]
    pub service: Service,
    /// The fee a case created today would be charged (`None`: a part is missing).
    pub fee_today: Option<Fee>,
    pub fee_history: ServiceFees,
}

/// The whole catalog as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogPage {
    pub today: Date,
    pub services: Vec<CatalogEntry>,
    /// Entries of the document that could not be read.
    pub unreadable: usize,
}

/// Build the entries from the catalog document's view.
pub fn view(cat: &CatalogView, today: Date) -> CatalogPage {
    let services = cat
        .services
        .iter()
        .map(|s| {
            let mut h = cat.fees.services.get(&s.code).cloned().unwrap_or_default();
            h.authority.sort_by_key(|c| c.effective_from);
            h.surcharge.sort_by_key(|c| c.effective_from);
            CatalogEntry {
                service: s.clone(),
                fee_today: cat.fees.fee_for(&s.code, today).ok(),
                fee_history: h,
            }
        })
        .collect();
    CatalogPage {
        today,
        services,
        unreadable: cat.unreadable,
    }
}

fn read(e: &mut dyn HubEngine) -> Result<CatalogView, CatalogError> {
    let mut cat = None;
    e.read_doc(&DocId::catalog(), &mut |d| {
        cat = Some(docs::read_catalog(d)?);
        Ok(Value::Null)
    })?;
    cat.ok_or(CatalogError::NoCatalog)
}

/// The catalog with current and dated fees (writer thread).
pub fn entries(e: &mut dyn HubEngine, today: Date) -> Result<CatalogPage, CatalogError> {
    Ok(view(&read(e)?, today))
}

fn entry(e: &mut dyn HubEngine, code: &str, today: Date) -> Result<CatalogEntry, CatalogError> {
    entries(e, today)?
        .services
        .into_iter()
        .find(|s| s.service.code == code)
        .ok_or_else(|| CatalogError::UnknownService(code.to_string()))
}

/// Create or replace a service in the catalog document; `Ok((created, entry))`.
pub fn put_service(
    e: &mut dyn HubEngine,
    service: &Service,
    today: Date,
) -> Result<(bool, CatalogEntry), CatalogError> {
    let cat = read(e)?;
    let created = !cat.services.iter().any(|s| s.code == service.code);
    e.hub_edit(&DocId::catalog(), &mut |d| docs::write_service(d, service))?;
    tracing::info!(service = %service.code, created, "catalog service written");
    Ok((created, entry(e, &service.code, today)?))
}

/// Add a dated fee to a service; `Ok((written, entry))` (`written` is false for an exact
/// repeat).
pub fn add_fee(
    e: &mut dyn HubEngine,
    code: &str,
    input: &FeeInput,
    today: Date,
) -> Result<(bool, CatalogEntry), CatalogError> {
    let cat = read(e)?;
    if !cat.services.iter().any(|s| s.code == code) {
        return Err(CatalogError::UnknownService(code.to_string()));
    }
    let current = cat.fees.services.get(code).cloned().unwrap_or_default();
    let written = match plan_fee(&current, input, today)? {
        FeePlan::Unchanged => false,
        FeePlan::Write(next) => {
            e.hub_edit(&DocId::catalog(), &mut |d| docs::write_fees(d, code, &next))?;
            tracing::info!(service = code, from = %input.effective_from, "fee added");
            true
        }
    };
    Ok((written, entry(e, code, today)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use serde_json::json;

    fn service_body() -> Value {
        json!({
            "name_ar": "بيان قيد عائلي", "name_en": "Family statement",
            "group": "civil_registry", "authority": "civil_affairs", "target_hours": 24,
            "fields": [{"key": "family_no", "label_ar": "رقم القيد", "label_en": "Family no",
                        "kind": {"type": "digits", "min": 1, "max": 10}, "required": true}]
        })
    }

    fn field_of(r: Result<impl std::fmt::Debug, CatalogError>) -> (String, &'static str) {
        match r {
            Err(CatalogError::Invalid { field, code, .. })
            | Err(CatalogError::Conflict { field, code, .. }) => (field, code),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_service_and_names_the_bad_field() {
        let s = parse_service("family_statement", &service_body()).unwrap();
        assert_eq!(s.fields.len(), 1);
        assert_eq!(s.target_hours, 24);
        assert_eq!(s.authority, Authority::CivilAffairs);

        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("Bad Code", service_body(), "code", "bad_code"),
            ("x_y", json!({"name_en": "x"}), "name_ar", "required"),
            ("x_y", json!([1]), "body", "invalid_field"),
        ];
        for (code, body, field, c) in cases {
            assert_eq!(field_of(parse_service(code, &body)), (field.into(), c));
        }
        let mutate = |f: &dyn Fn(&mut Value)| {
            let mut b = service_body();
            f(&mut b);
            field_of(parse_service("family_statement", &b))
        };
        assert_eq!(
            mutate(&|b| b["group"] = json!("space")),
            ("group".into(), "invalid_field")
        );
        assert_eq!(
            mutate(&|b| b["target_hours"] = json!(0)),
            ("target_hours".into(), "out_of_range")
        );
        assert_eq!(
            mutate(&|b| b["target_hours"] = json!("x")),
            ("target_hours".into(), "invalid_field")
        );
        assert_eq!(
            mutate(&|b| b["name_en"] = json!("  ")),
            ("name_en".into(), "required")
        );
        assert_eq!(
            mutate(&|b| b["colour"] = json!("red")),
            ("colour".into(), "unknown_field")
        );
        assert_eq!(
            mutate(&|b| b["code"] = json!("other")),
            ("code".into(), "mismatch")
        );
        assert_eq!(
            mutate(&|b| b["fields"][0]["kind"] = json!({"type": "digits", "min": 5, "max": 2})),
            ("fields[0].kind".into(), "bad_range")
        );
        assert_eq!(
            mutate(&|b| b["fields"][0]["key"] = json!("Bad key")),
            ("fields[0].key".into(), "bad_key")
        );
        assert_eq!(
            mutate(&|b| {
                let f = b["fields"][0].clone();
                b["fields"].as_array_mut().unwrap().push(f);
            }),
            ("fields[1].key".into(), "duplicate")
        );
        assert_eq!(
            mutate(&|b| b["fields"][0]["kind"] = json!({"type": "choice", "options": []})),
            ("fields[0].kind".into(), "required")
        );
    }

    #[test]
    fn every_default_service_round_trips_through_the_parser() {
        for s in markaz_sync::model::catalog::default_catalog() {
            let body = serde_json::to_value(&s).unwrap();
            assert_eq!(parse_service(&s.code, &body).unwrap(), s);
        }
    }

    #[test]
    fn parses_fees_in_pounds() {
        let f = parse_fee(&json!({"effective_from": "2027-01-01", "authority_fee": "6000.50",
            "authority_decision": "قرار 1", "center_surcharge": 3500, "council_decision": "قرار 2"}))
        .unwrap();
        assert_eq!(f.authority.as_ref().unwrap().0.piastres(), 600_050);
        assert_eq!(f.surcharge.as_ref().unwrap().0.piastres(), 350_000);
        let bad: Vec<(Value, &str, &str)> = vec![
            (
                json!({"authority_fee": 1, "authority_decision": "d"}),
                "effective_from",
                "required",
            ),
            (
                json!({"effective_from": "2027-13-01", "authority_fee": 1, "authority_decision": "d"}),
                "effective_from",
                "bad_date",
            ),
            (
                json!({"effective_from": "2027-01-01"}),
                "authority_fee",
                "required",
            ),
            (
                json!({"effective_from": "2027-01-01", "authority_fee": 1}),
                "authority_decision",
                "required",
            ),
            (
                json!({"effective_from": "2027-01-01", "council_decision": "d"}),
                "center_surcharge",
                "required",
            ),
            (
                json!({"effective_from": "2027-01-01", "authority_fee": "-1", "authority_decision": "d"}),
                "authority_fee",
                "bad_amount",
            ),
            (
                json!({"effective_from": "2027-01-01", "authority_fee": 1.5, "authority_decision": "d"}),
                "authority_fee",
                "bad_amount",
            ),
            (
                json!({"effective_from": "2027-01-01", "fee": 1}),
                "fee",
                "unknown_field",
            ),
        ];
        for (body, field, code) in bad {
            assert_eq!(field_of(parse_fee(&body)), (field.into(), code), "{body}");
        }
    }

    fn comp(syp: i64, decision: &str, from: Date) -> FeeComponent {
        FeeComponent {
            amount: Money::from_syp(syp).unwrap(),
            decision: decision.into(),
            effective_from: from,
        }
    }

    #[test]
    fn fee_rules_refuse_the_past_overlaps_and_reused_decisions() {
        let today = date(2026, 11, 29);
        let current = ServiceFees {
            authority: vec![comp(5_000, "A1", date(2024, 1, 1))],
            surcharge: vec![
                comp(2_000, "C1", date(2024, 1, 1)),
                comp(3_000, "C2", date(2027, 1, 1)),
            ],
        };
        let input = |from, sur: Option<(i64, &str)>| FeeInput {
            effective_from: from,
            authority: None,
            surcharge: sur.map(|(a, d)| (Money::from_syp(a).unwrap(), d.to_string())),
        };
        assert_eq!(
            field_of(plan_fee(
                &current,
                &input(date(2026, 11, 28), Some((1, "C9"))),
                today
            )),
            ("effective_from".into(), "in_past")
        );
        assert_eq!(
            field_of(plan_fee(
                &current,
                &input(date(2027, 1, 1), Some((4_000, "C9"))),
                today
            )),
            ("effective_from".into(), "fee_overlap")
        );
        assert_eq!(
            field_of(plan_fee(
                &current,
                &input(date(2027, 6, 1), Some((4_000, "C2"))),
                today
            )),
            ("council_decision".into(), "decision_reused")
        );
        assert_eq!(
            plan_fee(
                &current,
                &input(date(2027, 1, 1), Some((3_000, "C2"))),
                today
            )
            .unwrap(),
            FeePlan::Unchanged
        );
        // Today is allowed, and a date between two existing ones is inserted in order.
        let FeePlan::Write(next) =
            plan_fee(&current, &input(today, Some((2_500, "C3"))), today).unwrap()
        else {
            panic!("expected a write");
        };
        let days: Vec<Date> = next.surcharge.iter().map(|c| c.effective_from).collect();
        assert_eq!(days, vec![date(2024, 1, 1), today, date(2027, 1, 1)]);
        let mut s = markaz_sync::model::FeeSchedule::default();
        s.services.insert("x".into(), next);
        s.services.get_mut("x").unwrap().authority = current.authority.clone();
        assert_eq!(
            s.fee_for("x", today).unwrap().surcharge,
            Money::from_syp(2_500).unwrap()
        );
        assert_eq!(
            s.fee_for("x", date(2027, 1, 1)).unwrap().surcharge,
            Money::from_syp(3_000).unwrap()
        );
    }

    #[test]
    fn today_is_damascus_local() {
        // 22:30 UTC is already the next day in Damascus (UTC+3).
        let t: jiff::Timestamp = "2026-11-29T22:30:00Z".parse().unwrap();
        assert_eq!(today(t), date(2026, 11, 30));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
                (2020i16..2030, 1i8..=12, 1i8..=28)
                    .prop_map(|(y, m, d)| Value::from(date(y, m, d).to_string())),
            ]
        }

        fn body(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
            prop::collection::btree_map(prop::sample::select(keys), leaf(), 0..keys.len()).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            )
        }

        const FEE_KEYS: &[&str] = &[
            "effective_from",
            "authority_fee",
            "authority_decision",
            "center_surcharge",
            "council_decision",
            "other",
        ];
        const SERVICE_KEYS: &[&str] = &[
            "code",
            "name_ar",
            "name_en",
            "group",
            "authority",
            "fields",
            "target_hours",
            "other",
        ];

        proptest! {
            #[test]
            fn parsers_never_panic(f in body(FEE_KEYS), s in body(SERVICE_KEYS)) {
                let _ = parse_fee(&f);
                let _ = parse_service("svc", &s);
            }

            /// Whatever is posted in whatever order, each part keeps one component per day,
            /// sorted, and no decision twice.
            #[test]
            fn history_stays_one_line_per_part(
                posts in prop::collection::vec((0i64..40, 0i64..5, any::<bool>(), 0u8..6), 1..30)
            ) {
                let today = date(2026, 11, 29);
                let mut h = ServiceFees::default();
                for (days, amount, authority, dec) in posts {
                    let part = Some((Money::from_syp(amount * 1000).unwrap(), format!("D{dec}")));
                    let input = FeeInput {
                        effective_from: today.checked_add(jiff::Span::new().days(days)).unwrap(),
                        authority: if authority { part.clone() } else { None },
                        surcharge: if authority { None } else { part },
                    };
                    if let Ok(FeePlan::Write(next)) = plan_fee(&h, &input, today) {
                        h = next;
                    }
                }
                for list in [&h.authority, &h.surcharge] {
                    let days: Vec<Date> = list.iter().map(|c| c.effective_from).collect();
                    let mut sorted = days.clone();
                    sorted.sort();
                    sorted.dedup();
                    prop_assert_eq!(&days, &sorted);
                    let decisions: BTreeSet<&str> = list.iter().map(|c| c.decision.as_str()).collect();
                    prop_assert_eq!(decisions.len(), list.len());
                }
            }
        }
    }
}
