//! Catalog and fee administration at the hub reaches the centers: an operator adds a
//! service and a dated fee through the operator API, a center pulls the catalog document
//! at its next sync and prices a case with the new fee from its effective date; bad
//! bodies are refused with the field that is wrong, and the `/catalog` page shows the
//! history in Arabic and English.

use crate::support;

use anyhow::Context;
use markaz_sync::docs::{self, DocId};
use markaz_sync::model::Money;
use serde_json::{Value, json};
use support::{Center, Hub};

fn error_of(status: &str, body: &str) -> anyhow::Result<(u16, String, String)> {
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .context("status code")?
        .parse()?;
    let v: Value = serde_json::from_str(body).with_context(|| format!("json: {body}"))?;
    Ok((
        code,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["field"].as_str().unwrap_or("").to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_fee_and_service_reach_a_center_at_its_next_sync() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let mut midan = Center::new(&hub, "midan")?;
    midan.sync().await?;
    let read = |c: &mut Center| -> anyhow::Result<docs::CatalogView> {
        c.docs
            .read(&c.conn, &DocId::catalog(), docs::read_catalog)?
            .context("catalog at the center")?
            .map_err(Into::into)
    };
    let before = read(&mut midan)?;
    assert_eq!(before.services.len(), 17, "the seeded catalog came down");

    let today = markaz_hub::catalog::today(jiff::Timestamp::now());
    let from = today.tomorrow()?;
    let fee = json!({
        "effective_from": from.to_string(),
        "center_surcharge": "3750.50",
        "council_decision": "قرار مجلس المحافظة رقم 7 لعام 2026"
    });
    let (status, body) = hub
        .http(
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            Some(&fee.to_string()),
        )
        .await?;
    assert!(status.contains("201"), "{status} {body}");
    let entry: Value = serde_json::from_str(&body)?;
    assert_eq!(entry["code"], "criminal_record");
    assert_eq!(
        entry["fee_history"]["surcharge"].as_array().map(Vec::len),
        Some(3)
    );
    // Posting it again changes nothing.
    let (status, _) = hub
        .http(
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            Some(&fee.to_string()),
        )
        .await?;
    assert!(status.contains("200"), "{status}");

    let service = json!({
        "name_ar": "بيان قيد عائلي", "name_en": "Family record statement",
        "group": "civil_registry", "authority": "civil_affairs", "target_hours": 48,
        "fields": [{"key": "family_no", "label_ar": "رقم القيد", "label_en": "Family record no",
                    "kind": {"type": "digits", "min": 1, "max": 10}, "required": true}]
    });
    let (status, body) = hub
        .http(
            "PUT",
            "/api/v1/catalog/services/family_record",
            Some(&service.to_string()),
        )
        .await?;
    assert!(status.contains("201"), "{status} {body}");
    let fee2 = json!({"effective_from": today.to_string(), "authority_fee": 4000,
        "authority_decision": "قرار وزير الداخلية رقم 9 لعام 2026", "center_surcharge": 1500,
        "council_decision": "قرار مجلس المحافظة رقم 8 لعام 2026"});
    let (status, body) = hub
        .http(
            "POST",
            "/api/v1/catalog/services/family_record/fees",
            Some(&fee2.to_string()),
        )
        .await?;
    assert!(status.contains("201"), "{status} {body}");
    let entry: Value = serde_json::from_str(&body)?;
    assert_eq!(entry["fee_today"]["total"], 550_000, "{entry}");

    // The center receives both at its next sync.
    midan.sync().await?;
    let after = read(&mut midan)?;
    assert_eq!(after.services.len(), 18);
    let fam = after
        .services
        .iter()
        .find(|s| s.code == "family_record")
        .context("new service at the center")?;
    assert_eq!(fam.target_hours, 48);
    let on = after.fees.fee_for("criminal_record", from)?;
    assert_eq!(on.surcharge, "3750.50".parse::<Money>()?);
    assert_eq!(on.surcharge_decision, "قرار مجلس المحافظة رقم 7 لعام 2026");
    assert_eq!(
        after.fees.fee_for("criminal_record", today)?,
        before.fees.fee_for("criminal_record", today)?,
        "the fee does not change before its date"
    );
    assert_eq!(
        after.fees.fee_for("family_record", today)?.total,
        Money::from_syp(5_500)?
    );

    // A center that joins later gets the edited catalog as well.
    let mut qanawat = Center::new(&hub, "qanawat")?;
    qanawat.sync().await?;
    assert_eq!(read(&mut qanawat)?, after);

    // Bad bodies: the status, the code and the field.
    let past = today.yesterday()?;
    // (method, path, body, (status, error code, field))
    type Case<'a> = (&'a str, &'a str, String, (u16, &'a str, &'a str));
    let bad: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            json!({"effective_from": past.to_string(), "authority_fee": 1, "authority_decision": "x"})
                .to_string(),
            (422, "in_past", "effective_from"),
        ),
        (
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            json!({"effective_from": from.to_string(), "center_surcharge": 9,
                "council_decision": "قرار آخر"})
            .to_string(),
            (409, "fee_overlap", "effective_from"),
        ),
        (
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            json!({"effective_from": from.to_string(), "authority_fee": "abc",
                "authority_decision": "d"})
            .to_string(),
            (422, "bad_amount", "authority_fee"),
        ),
        (
            "POST",
            "/api/v1/catalog/services/no_such/fees",
            json!({"effective_from": from.to_string(), "authority_fee": 1, "authority_decision": "d"})
                .to_string(),
            (404, "not_found", "code"),
        ),
        (
            "PUT",
            "/api/v1/catalog/services/family_record",
            json!({"name_ar": "x", "name_en": "x", "group": "civil_registry",
                "authority": "nowhere", "target_hours": 1})
            .to_string(),
            (422, "invalid_field", "authority"),
        ),
        (
            "PUT",
            "/api/v1/catalog/services/family_record",
            json!({"name_ar": "x", "name_en": "x", "group": "civil_registry",
                "authority": "justice", "target_hours": 1,
                "fields": [{"key": "k", "label_ar": "", "label_en": "K", "kind": {"type": "text"}}]})
            .to_string(),
            (422, "bad_key", "fields[0].key"),
        ),
        (
            "PUT",
            "/api/v1/catalog/services/family_record",
            "{not json".to_string(),
            (400, "malformed_json", ""),
        ),
    ];
    for (method, path, body, want) in bad {
        let (status, resp) = hub.http(method, path, Some(&body)).await?;
        let got = error_of(&status, &resp)?;
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            want,
            "{method} {path} {body} -> {resp}"
        );
    }
    // Nothing of the refused requests reached the catalog.
    midan.sync().await?;
    assert_eq!(read(&mut midan)?, after);

    // The catalog API and page.
    let (_, body) = hub.http("GET", "/api/v1/catalog", None).await?;
    let cat: Value = serde_json::from_str(&body)?;
    assert_eq!(cat["services"].as_array().map(Vec::len), Some(18));
    let (status, html) = hub.http("GET", "/catalog", None).await?;
    assert!(status.contains("200"));
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""));
    assert!(html.contains("بيان قيد عائلي") && html.contains("قرار مجلس المحافظة رقم 7 لعام 2026"));
    assert!(html.contains("قادم"), "the new surcharge is upcoming");
    let (_, html) = hub.http("GET", "/catalog?lang=en", None).await?;
    assert!(html.contains("Family record statement") && html.contains("Fee history"));
    Ok(())
}
