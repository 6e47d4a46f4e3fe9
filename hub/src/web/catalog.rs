//! The catalog and fees pages: every service with the fee in effect today and the fee
//! history (`/catalog`); one service's page (`/catalog/services/{code}`) where an operator
//! with the catalog role edits the service and adds a dated fee with its decision; and a
//! new service (`/catalog/new`).
//!
//! A form is turned into the JSON body the API takes and checked by the API's own
//! parsers (`crate::catalog::parse_service`, `parse_fee`), then written by the same
//! storage job as the API (`api::save_service`, `api::save_fee`: the change and its audit
//! entry together). A refused form comes back with what was typed, the field at fault
//! marked, and the reason in the operator's language (`catalog.err.<code>`, one key per
//! `catalog::ERROR_CODES`).

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use markaz_sync::model::catalog::{Authority, ServiceGroup};
use markaz_web::i18n::Lang;
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::access::Caller;
use super::api::{load_catalog, save_fee, save_service};
use super::i18n::catalogs;
use super::pages::{failed, field, flash, form, page};
use super::{ApiError, Q, WebState};
use crate::catalog::{self, CatalogEntry, CatalogError};
use crate::operators::Role;

/// The fields of the service form, in the API's names.
const SERVICE_FIELDS: [&str; 6] = [
    "name_ar",
    "name_en",
    "group",
    "authority",
    "target_hours",
    "fields",
];
/// The fields of the fee form, in the API's names.
const FEE_FIELDS: [&str; 5] = [
    "effective_from",
    "authority_fee",
    "authority_decision",
    "center_surcharge",
    "council_decision",
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct CatalogQuery {
    done: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

fn can_edit(caller: &Caller) -> bool {
    caller.operator.has_any(&[Role::Catalog])
}

/// Arabic-Indic and Eastern Arabic-Indic digits as ASCII (the parsers take ASCII numbers).
fn ascii_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            c => c,
        })
        .collect()
}

/// The body of `PUT /api/v1/catalog/services/{code}` from the service form: texts as
/// typed, the target hours a number when they are one (else the text, which the parser
/// refuses with the field's name), the field specs from their JSON text.
pub(super) fn service_body(pairs: &[(String, String)]) -> Result<Json, CatalogError> {
    let mut m = Map::new();
    for k in ["name_ar", "name_en", "group", "authority"] {
        m.insert(k.into(), Json::String(field(pairs, k)));
    }
    let hours = ascii_digits(field(pairs, "target_hours").trim());
    let hours = match hours.parse::<u64>() {
        Ok(n) => Json::from(n),
        Err(_) if hours.is_empty() => Json::Null,
        Err(_) => Json::String(hours),
    };
    m.insert("target_hours".into(), hours);
    let specs = field(pairs, "fields");
    if !specs.trim().is_empty() {
        let v = serde_json::from_str(&specs).map_err(|e| CatalogError::Invalid {
            field: "fields".into(),
            code: "invalid_field",
            message: e.to_string(),
        })?;
        m.insert("fields".into(), v);
    }
    Ok(Json::Object(m))
}

/// The body of `POST /api/v1/catalog/services/{code}/fees` from the fee form: the fields
/// that were filled in.
pub(super) fn fee_body(pairs: &[(String, String)]) -> Json {
    let mut m = Map::new();
    for k in FEE_FIELDS {
        let v = field(pairs, k);
        if !v.trim().is_empty() {
            m.insert(k.into(), Json::String(v));
        }
    }
    Json::Object(m)
}

/// The form field a refusal points at: `fields[2].kind` is the `fields` box.
fn form_field(path: &str) -> &str {
    path.split(['[', '.']).next().unwrap_or(path)
}

/// A refusal in the operator's language: `catalog.err.<code>` with the field's label.
pub(super) fn refusal_text(lang: Lang, e: &CatalogError) -> String {
    let c = catalogs();
    match e {
        CatalogError::Invalid { field, code, .. } | CatalogError::Conflict { field, code, .. } => {
            let at = form_field(field);
            let label_key = format!("catalog.f.{at}");
            let mut label = c
                .of(lang)
                .get(&label_key)
                .cloned()
                .unwrap_or_else(|| field.clone());
            if at != field {
                label = format!("{label} ({field})");
            }
            let text = c
                .of(lang)
                .get(&format!("catalog.err.{code}"))
                .cloned()
                .unwrap_or_else(|| e.to_string());
            markaz_web::i18n::fill(&text, &[("field", &label)])
        }
        CatalogError::UnknownService(_) => c.t(lang, "catalog.err.unknown_service").to_string(),
        CatalogError::NoCatalog | CatalogError::Storage(_) => {
            c.t(lang, "error.internal").to_string()
        }
    }
}

/// One line of a fee history: which part, from when, how much, the decision, and whether
/// it is past, in effect or upcoming on `today`.
fn history(e: &CatalogEntry, today: jiff::civil::Date) -> Vec<Value> {
    let mut out = Vec::new();
    for (part, list) in [
        ("authority", &e.fee_history.authority),
        ("surcharge", &e.fee_history.surcharge),
    ] {
        for (i, c) in list.iter().enumerate() {
            let next = list.get(i + 1).map(|n| n.effective_from);
            let state = if c.effective_from > today {
                "upcoming"
            } else if next.is_some_and(|n| n <= today) {
                "past"
            } else {
                "current"
            };
            out.push(context! {
                code => e.service.code, name_ar => e.service.name_ar, name_en => e.service.name_en,
                part => part, from => c.effective_from.to_string(), amount => c.amount,
                decision => c.decision, state => state,
            });
        }
    }
    out
}

fn choices(lang: Lang) -> (Vec<Value>, Vec<Value>) {
    let spelled = |v: Json| v.as_str().unwrap_or_default().to_string();
    let groups = ServiceGroup::ALL
        .iter()
        .map(|g| {
            let name = if lang == Lang::En {
                g.name_en()
            } else {
                g.name_ar()
            };
            context! { value => spelled(serde_json::to_value(g).unwrap_or_default()), name => name }
        })
        .collect();
    let authorities = Authority::ALL
        .iter()
        .map(|a| {
            let name = if lang == Lang::En {
                a.name_en()
            } else {
                a.name_ar()
            };
            context! { value => a.as_str(), name => name }
        })
        .collect();
    (groups, authorities)
}

/// `GET /catalog`: every service, its fee today and its fee history.
pub(super) async fn list(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<CatalogQuery>,
) -> Response {
    let cat = match load_catalog(&s).await {
        Ok(c) => c,
        Err(e) => return failed(&caller, e),
    };
    let history: Vec<Value> = cat
        .services
        .iter()
        .flat_map(|e| history(e, cat.today))
        .collect();
    page(
        &caller,
        "/catalog",
        StatusCode::OK,
        "catalog.html",
        context! {
            today => cat.today.to_string(), services => cat.services, history => history,
            can_edit => can_edit(&caller), flash => flash(caller.lang, q.done.as_deref()),
        },
    )
}

/// What a service page shows besides the entry: the form's values, the refusal.
#[derive(Default)]
struct Shown {
    service_form: Option<Map<String, Json>>,
    fee_form: Option<Map<String, Json>>,
    error: Option<String>,
    error_field: Option<String>,
    flash: Option<String>,
}

fn values(pairs: &[(String, String)], names: &[&str]) -> Map<String, Json> {
    names
        .iter()
        .map(|n| (n.to_string(), Json::String(field(pairs, n))))
        .collect()
}

/// The form values of a stored service.
fn stored_values(e: &CatalogEntry) -> Map<String, Json> {
    let sv = &e.service;
    let mut m = Map::new();
    m.insert("name_ar".into(), sv.name_ar.clone().into());
    m.insert("name_en".into(), sv.name_en.clone().into());
    m.insert(
        "group".into(),
        serde_json::to_value(sv.group).unwrap_or_default(),
    );
    m.insert("authority".into(), sv.authority.as_str().into());
    m.insert("target_hours".into(), sv.target_hours.to_string().into());
    let specs = if sv.fields.is_empty() {
        String::new()
    } else {
        serde_json::to_string_pretty(&sv.fields).unwrap_or_default()
    };
    m.insert("fields".into(), specs.into());
    m
}

/// Renders a service's page (`code` `None`: the new service form).
async fn service_page(
    s: &WebState,
    caller: &Caller,
    code: Option<&str>,
    status: StatusCode,
    shown: Shown,
) -> Response {
    let cat = match load_catalog(s).await {
        Ok(c) => c,
        Err(e) => return failed(caller, e),
    };
    let entry = match code {
        Some(c) => match cat.services.iter().find(|e| e.service.code == c) {
            Some(e) => Some(e.clone()),
            None => return failed(caller, ApiError::NotFound),
        },
        None => None,
    };
    let service_form = shown
        .service_form
        .or_else(|| entry.as_ref().map(stored_values))
        .unwrap_or_default();
    let mut fee_form = shown.fee_form.unwrap_or_default();
    fee_form
        .entry("effective_from")
        .or_insert_with(|| cat.today.to_string().into());
    let (groups, authorities) = choices(caller.lang);
    let path = match code {
        Some(c) => format!("/catalog/services/{c}"),
        None => "/catalog/new".to_string(),
    };
    page(
        caller,
        &path,
        status,
        "catalog_service.html",
        context! {
            today => cat.today.to_string(),
            history => entry.as_ref().map(|e| history(e, cat.today)).unwrap_or_default(),
            entry => entry, is_new => code.is_none(), can_edit => can_edit(caller),
            form => Value::from_serialize(&service_form),
            fee => Value::from_serialize(&fee_form),
            groups => groups, authorities => authorities,
            error => shown.error, error_field => shown.error_field, flash => shown.flash,
        },
    )
}

/// `GET /catalog/services/{code}`
pub(super) async fn service(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    Q(q): Q<CatalogQuery>,
) -> Response {
    let shown = Shown {
        flash: flash(caller.lang, q.done.as_deref()),
        ..Shown::default()
    };
    service_page(&s, &caller, Some(&code), StatusCode::OK, shown).await
}

/// `GET /catalog/new`
pub(super) async fn new_service(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    service_page(&s, &caller, None, StatusCode::OK, Shown::default()).await
}

/// The status of a refused form.
fn refusal_status(e: &CatalogError) -> StatusCode {
    match e {
        CatalogError::Conflict { .. } => StatusCode::CONFLICT,
        CatalogError::UnknownService(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The page again after a refusal: what was typed, the field marked, the reason.
async fn refused(
    s: &WebState,
    caller: &Caller,
    code: Option<&str>,
    e: ApiError,
    mut shown: Shown,
) -> Response {
    let e = match e {
        ApiError::Catalog(e) => e,
        other => return failed(caller, other),
    };
    if matches!(e, CatalogError::Storage(_) | CatalogError::NoCatalog) {
        return failed(caller, ApiError::Catalog(e));
    }
    tracing::info!(operator = %caller.operator.username, error = %e, "catalog form refused");
    shown.error = Some(refusal_text(caller.lang, &e));
    shown.error_field = match &e {
        CatalogError::Invalid { field, .. } | CatalogError::Conflict { field, .. } => {
            Some(form_field(field).to_string())
        }
        _ => None,
    };
    service_page(s, caller, code, refusal_status(&e), shown).await
}

/// Parses the service form for `code` and writes it; the page's answer.
async fn write_service(
    s: &WebState,
    caller: &Caller,
    code: &str,
    is_new: bool,
    pairs: &[(String, String)],
) -> Response {
    let mut typed = values(pairs, &SERVICE_FIELDS);
    typed.insert("code".into(), code.into());
    let shown = || Shown {
        service_form: Some(typed.clone()),
        ..Shown::default()
    };
    let back = if is_new { None } else { Some(code) };
    let parsed = service_body(pairs).and_then(|body| catalog::parse_service(code, &body));
    let service = match parsed {
        Ok(sv) => sv,
        Err(e) => return refused(s, caller, back, e.into(), shown()).await,
    };
    if is_new {
        // A new service's code must be free: the form would otherwise replace one.
        let taken = match load_catalog(s).await {
            Ok(c) => c.services.iter().any(|e| e.service.code == code),
            Err(e) => return failed(caller, e),
        };
        if taken {
            let e = CatalogError::Conflict {
                field: "code".into(),
                code: "duplicate",
                message: format!("service {code} exists"),
            };
            return refused(s, caller, None, e.into(), shown()).await;
        }
    }
    match save_service(s, caller.who(), service).await {
        Ok(_) => {
            Redirect::to(&format!("/catalog/services/{code}?done=service_saved")).into_response()
        }
        Err(e) => refused(s, caller, back, e, shown()).await,
    }
}

/// `POST /catalog/services/{code}`: the service form.
pub(super) async fn save(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    write_service(&s, &caller, &code, false, &pairs).await
}

/// `POST /catalog/services`: a new service (its code in the form).
pub(super) async fn create(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let code = field(&pairs, "code").trim().to_string();
    write_service(&s, &caller, &code, true, &pairs).await
}

/// `POST /catalog/services/{code}/fees`: a dated fee with its decisions.
pub(super) async fn add_fee(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let shown = || Shown {
        fee_form: Some(values(&pairs, &FEE_FIELDS)),
        ..Shown::default()
    };
    let fee = match catalog::parse_fee(&fee_body(&pairs)) {
        Ok(f) => f,
        Err(e) => return refused(&s, &caller, Some(&code), e.into(), shown()).await,
    };
    match save_fee(&s, caller.who(), code.clone(), fee).await {
        Ok((true, _)) => {
            Redirect::to(&format!("/catalog/services/{code}?done=fee_added")).into_response()
        }
        Ok((false, _)) => {
            Redirect::to(&format!("/catalog/services/{code}?done=fee_unchanged")).into_response()
        }
        Err(e) => refused(&s, &caller, Some(&code), e, shown()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_refusal_code_reads_in_both_languages() {
        for lang in Lang::ALL {
            for code in catalog::ERROR_CODES
                .iter()
                .chain(std::iter::once(&"unknown_service"))
            {
                let key = format!("catalog.err.{code}");
                assert!(
                    catalogs().of(lang).contains_key(&key),
                    "{key} missing in {}",
                    lang.code()
                );
            }
            for f in SERVICE_FIELDS
                .iter()
                .chain(FEE_FIELDS.iter())
                .chain(&["code"])
            {
                let key = format!("catalog.f.{f}");
                assert!(catalogs().of(lang).contains_key(&key), "{key}");
            }
            for d in ["service_saved", "fee_added", "fee_unchanged"] {
                assert!(catalogs().of(lang).contains_key(&format!("done.{d}")));
            }
            for p in ["upcoming", "past", "current"] {
                assert!(
                    catalogs()
                        .of(lang)
                        .contains_key(&format!("catalog.state.{p}"))
                );
            }
            for g in ServiceGroup::ALL {
                let v = serde_json::to_value(g).unwrap_or_default();
                let key = format!("group.{}", v.as_str().unwrap_or_default());
                assert!(catalogs().of(lang).contains_key(&key), "{key}");
            }
            for a in Authority::ALL {
                let key = format!("authority.{}", a.as_str());
                assert!(catalogs().of(lang).contains_key(&key), "{key}");
            }
            for p in ["authority", "surcharge"] {
                assert!(
                    catalogs()
                        .of(lang)
                        .contains_key(&format!("catalog.part.{p}"))
                );
            }
        }
    }

    /// The form goes through the API's parser: the same refusals, field by field.
    #[test]
    fn the_forms_are_checked_by_the_apis_parsers() {
        let good = pairs(&[
            ("name_ar", "بيان قيد"),
            ("name_en", "Record"),
            ("group", "civil_registry"),
            ("authority", "civil_affairs"),
            ("target_hours", "٤٨"),
            ("fields", ""),
        ]);
        let body = service_body(&good).expect("body");
        let sv = catalog::parse_service("record", &body).expect("valid");
        assert_eq!(sv.target_hours, 48);
        let refused = |p: &[(&str, &str)]| {
            let mut v = good.clone();
            for (k, val) in p {
                v.retain(|(n, _)| n != k);
                v.push((k.to_string(), val.to_string()));
            }
            match service_body(&v).and_then(|b| catalog::parse_service("record", &b)) {
                Err(CatalogError::Invalid { field, code, .. }) => (field, code),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            refused(&[("target_hours", "abc")]),
            ("target_hours".into(), "invalid_field")
        );
        assert_eq!(
            refused(&[("target_hours", "")]),
            ("target_hours".into(), "required")
        );
        assert_eq!(
            refused(&[("target_hours", "0")]),
            ("target_hours".into(), "out_of_range")
        );
        assert_eq!(refused(&[("name_ar", " ")]), ("name_ar".into(), "required"));
        assert_eq!(
            refused(&[("fields", "[{")]),
            ("fields".into(), "invalid_field")
        );
        assert_eq!(
            refused(&[(
                "fields",
                r#"[{"key":"Bad","label_ar":"x","label_en":"x","kind":{"type":"text"}}]"#
            )]),
            ("fields[0].key".into(), "bad_key")
        );

        let fee = fee_body(&pairs(&[
            ("effective_from", "2030-01-01"),
            ("authority_fee", ""),
            ("authority_decision", ""),
            ("center_surcharge", "١٥٠٠"),
            ("council_decision", "قرار ٧"),
        ]));
        let f = catalog::parse_fee(&fee).expect("fee");
        assert!(f.authority.is_none());
        assert_eq!(f.surcharge.expect("surcharge").0.piastres(), 150_000);
        let e = catalog::parse_fee(&fee_body(&pairs(&[
            ("effective_from", "2030-01-01"),
            ("center_surcharge", "10"),
        ])))
        .expect_err("no decision");
        let text = refusal_text(Lang::Ar, &e);
        assert!(text.contains("قرار مجلس المحافظة"), "{text}");
        let text = refusal_text(Lang::En, &e);
        assert!(text.contains("Council decision"), "{text}");
        let nested = CatalogError::Invalid {
            field: "fields[2].kind".into(),
            code: "bad_range",
            message: String::new(),
        };
        assert!(refusal_text(Lang::En, &nested).contains("fields[2].kind"));
    }
}
