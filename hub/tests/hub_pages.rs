//! The catalog, oversight and energy pages of the hub as an operator uses them, over
//! HTTP: the catalog forms go through the API's validation (a refusal comes back in the
//! form, in the operator's language, and changes nothing), each write is audited with
//! its value before and after and reaches a center at its next sync; the oversight table
//! per center, service and day, and its CSV (parsed here); and who may open which page.

use crate::support;

use anyhow::Context;
use markaz_sync::docs::{self, DocId};
use serde_json::{Value, json};
use support::{Center, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.0 request with a bearer token and a urlencoded form: (status, headers,
/// body).
async fn request(
    hub: &Hub,
    token: &str,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    let body = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                markaz_web::http::urlencode(k),
                markaz_web::http::urlencode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut s = tokio::net::TcpStream::connect(&hub.web).await?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out)?;
    let (head, body) = text.split_once("\r\n\r\n").context("response")?;
    let status = head.split_whitespace().nth(1).context("status")?.parse()?;
    Ok((status, head.to_string(), body.to_string()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A small RFC 4180 reader: quoted fields, doubled quotes, CRLF records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// An operator with `roles` and an API token of theirs.
async fn operator(hub: &Hub, name: &str, roles: &[&str]) -> anyhow::Result<String> {
    let (status, body) = hub
        .http(
            "POST",
            "/api/v1/operators",
            Some(
                &json!({"username": name, "full_name": name, "roles": roles,
                    "password": "a long enough password"})
                .to_string(),
            ),
        )
        .await?;
    anyhow::ensure!(status.contains("201"), "{status} {body}");
    let (status, body) = hub
        .http(
            "POST",
            &format!("/api/v1/operators/{name}/tokens"),
            Some(r#"{"label":"test"}"#),
        )
        .await?;
    anyhow::ensure!(status.contains("201"), "{status} {body}");
    let v: Value = serde_json::from_str(&body)?;
    Ok(v["token"].as_str().context("token")?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_forms_are_validated_as_the_api_and_audited() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let mut midan = Center::new(&hub, "midan")?;
    midan.sync().await?;
    let fees = operator(&hub, "fees1", &["catalog"]).await?;
    let watcher = operator(&hub, "watch1", &["oversight"]).await?;
    let today = markaz_hub::catalog::today(jiff::Timestamp::now());
    let tomorrow = today.tomorrow()?.to_string();

    // The list and a service's page, Arabic first; the edit forms for the catalog role only.
    let (status, _, html) = request(&hub, &fees, "GET", "/catalog", &[]).await?;
    assert_eq!(status, 200);
    assert!(html.contains("dir=\"rtl\"") && html.contains("id=\"new-service\""));
    let (status, _, html) =
        request(&hub, &fees, "GET", "/catalog/services/criminal_record", &[]).await?;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"service-form\"") && html.contains("id=\"fee-form\""));
    let (status, _, html) = request(
        &hub,
        &watcher,
        "GET",
        "/catalog/services/criminal_record",
        &[],
    )
    .await?;
    assert_eq!(status, 200, "oversight reads the catalog");
    assert!(!html.contains("id=\"fee-form\""), "but has no forms");
    let (status, _, _) = request(
        &hub,
        &watcher,
        "POST",
        "/catalog/services/criminal_record/fees",
        &[("effective_from", &tomorrow)],
    )
    .await?;
    assert_eq!(status, 403, "and may not write");

    // A refused fee: the form again with the reason in Arabic, the field marked, what was
    // typed kept, and nothing written.
    let bad = [
        ("effective_from", tomorrow.as_str()),
        ("center_surcharge", "٣٧٥٠"),
        ("council_decision", ""),
    ];
    let (status, _, html) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record/fees",
        &bad,
    )
    .await?;
    assert_eq!(status, 422);
    assert!(
        html.contains("قرار مجلس المحافظة: هذا الحقل مطلوب."),
        "Arabic reason"
    );
    let at = html.find("id=\"council_decision\"").unwrap_or(0);
    assert!(
        html.contains(
            "id=\"council_decision\" name=\"council_decision\" value=\"\" aria-invalid=\"true\""
        ),
        "{}",
        html[at..].chars().take(120).collect::<String>()
    );
    assert!(html.contains("value=\"٣٧٥٠\""), "the amount typed is kept");
    let (status, _, html) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record/fees?lang=en",
        &bad,
    )
    .await?;
    assert_eq!(status, 422);
    assert!(html.contains("Council decision: this field is required."));
    // The same refusal as the API gives for the same body.
    let (api_status, api_body) = hub
        .http(
            "POST",
            "/api/v1/catalog/services/criminal_record/fees",
            Some(
                &json!({"effective_from": tomorrow, "center_surcharge": "٣٧٥٠",
                    "council_decision": null})
                .to_string(),
            ),
        )
        .await?;
    assert!(api_status.contains("422"), "{api_status}");
    let api: Value = serde_json::from_str(&api_body)?;
    assert_eq!(api["error"]["field"], "council_decision");
    // A fee in the past, refused by the fee rules.
    let yesterday = today.yesterday()?.to_string();
    let (status, _, html) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record/fees?lang=en",
        &[
            ("effective_from", &yesterday),
            ("authority_fee", "100"),
            ("authority_decision", "D-1"),
        ],
    )
    .await?;
    assert_eq!(status, 422);
    assert!(html.contains("Effective from: a fee cannot start before today."));

    // A good fee: redirected to the service with a confirmation, audited before/after.
    let decision = "قرار مجلس المحافظة رقم ١٢ لعام ٢٠٢٦";
    let (status, head, _) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record/fees",
        &[
            ("effective_from", &tomorrow),
            ("center_surcharge", "٣٧٥٠٫٥٠"),
            ("council_decision", decision),
        ],
    )
    .await?;
    assert_eq!(status, 303, "{head}");
    assert_eq!(
        header(&head, "location"),
        Some("/catalog/services/criminal_record?done=fee_added")
    );
    let (_, _, html) = request(
        &hub,
        &fees,
        "GET",
        "/catalog/services/criminal_record?done=fee_added",
        &[],
    )
    .await?;
    assert!(html.contains("id=\"flash\"") && html.contains(decision));

    // Editing the service: a bad target time is refused, a good edit is saved.
    let service = |hours: &str| {
        vec![
            ("name_ar", "السجل العدلي (لا حكم عليه)"),
            ("name_en", "Criminal record <certificate>"),
            ("group", "judicial"),
            ("authority", "justice"),
            ("target_hours", hours),
            ("fields", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
    let form = as_refs(&service("0"));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record",
        &pairs,
    )
    .await?;
    assert_eq!(status, 422);
    assert!(html.contains("المدة المستهدفة (ساعات): من ساعة واحدة إلى ٨٧٦٠ ساعة."));
    let form = as_refs(&service("36"));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, head, _) = request(
        &hub,
        &fees,
        "POST",
        "/catalog/services/criminal_record",
        &pairs,
    )
    .await?;
    assert_eq!(status, 303, "{head}");
    let (_, _, html) = request(&hub, &fees, "GET", "/catalog?lang=en", &[]).await?;
    assert!(
        html.contains("Criminal record &lt;certificate&gt;"),
        "escaped on the page"
    );
    // A new service with a taken code is refused; a free one is created.
    let mut form = as_refs(&service("12"));
    form.push(("code", "criminal_record".to_string()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = request(&hub, &fees, "POST", "/catalog/services", &pairs).await?;
    assert_eq!(status, 409);
    form.retain(|(k, _)| *k != "code");
    form.push(("code", "record_copy".to_string()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, head, _) = request(&hub, &fees, "POST", "/catalog/services", &pairs).await?;
    assert_eq!(status, 303, "{head}");

    // The audit log has each write once, by the operator, with before and after.
    let (_, body) = hub.http("GET", "/api/v1/audit?kind=catalog.", None).await?;
    let audit: Vec<Value> = serde_json::from_str(&body)?;
    let kinds: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or(""),
                a["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(audit.len(), 3, "{kinds:?}");
    assert!(audit.iter().all(|a| a["operator"] == "fees1"));
    let edit = audit
        .iter()
        .find(|a| a["kind"] == "catalog.service" && a["target"] == "criminal_record")
        .context("the edit")?;
    assert_eq!(edit["after"]["target_hours"], 36);
    assert_ne!(edit["before"]["target_hours"], 36);
    let fee = audit
        .iter()
        .find(|a| a["kind"] == "catalog.fee")
        .context("the fee")?;
    assert_eq!(
        fee["after"]["fee_history"]["surcharge"]
            .as_array()
            .map(Vec::len),
        fee["before"]["fee_history"]["surcharge"]
            .as_array()
            .map(|a| a.len() + 1)
    );
    let new = audit
        .iter()
        .find(|a| a["target"] == "record_copy")
        .context("the new service")?;
    assert!(new["before"].is_null());

    // The center has both at its next sync.
    midan.sync().await?;
    let cat = midan
        .docs
        .read(&midan.conn, &DocId::catalog(), docs::read_catalog)?
        .context("catalog")??;
    let cr = cat
        .services
        .iter()
        .find(|s| s.code == "criminal_record")
        .context("criminal_record")?;
    assert_eq!(cr.target_hours, 36);
    assert!(cat.services.iter().any(|s| s.code == "record_copy"));
    let on = cat.fees.fee_for("criminal_record", today.tomorrow()?)?;
    assert_eq!(on.surcharge_decision, decision);
    assert_eq!(on.surcharge.piastres(), 375_050);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversight_per_center_service_and_day_with_its_csv() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let mut midan = Center::new(&hub, "midan")?;
    for seq in 1..=3 {
        midan.new_case(seq)?;
    }
    midan.sync().await?;
    let watcher = operator(&hub, "watch2", &["oversight"]).await?;
    let network = operator(&hub, "net2", &["network"]).await?;
    let today = markaz_hub::catalog::today(jiff::Timestamp::now()).to_string();

    let (status, _, html) = request(&hub, &watcher, "GET", "/oversight", &[]).await?;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"oversight\"") && html.contains("id=\"export-csv\""));
    assert!(
        html.contains("السجل العدلي"),
        "the service by its Arabic name"
    );
    let (_, _, html) = request(
        &hub,
        &watcher,
        "GET",
        &format!("/oversight?from={today}&to={today}&by=day&center=midan&lang=en"),
        &[],
    )
    .await?;
    assert!(html.contains("Day by day") && html.contains("Within target"));
    let (status, _, _) = request(&hub, &watcher, "GET", "/oversight?from=2026-13-01", &[]).await?;
    assert_eq!(status, 400, "a bad date is refused");

    // The CSV: its type, a file name, UTF-8 with Arabic intact, the same figures.
    let (status, head, csv) = request(
        &hub,
        &watcher,
        "GET",
        &format!("/oversight.csv?from={today}&to={today}&by=day"),
        &[],
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(
        header(&head, "content-disposition"),
        Some(format!("attachment; filename=\"oversight_{today}_{today}.csv\"").as_str())
    );
    let text = csv.strip_prefix('\u{feff}').context("a byte-order mark")?;
    let rows = parse_csv(text);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].len(), 12);
    assert_eq!(rows[0][2], "المركز");
    let r = &rows[1];
    assert_eq!(
        (r[0].as_str(), r[1].as_str()),
        (today.as_str(), today.as_str())
    );
    assert_eq!((r[2].as_str(), r[3].as_str()), ("midan", "criminal_record"));
    assert_eq!(r[4], "السجل العدلي (لا حكم عليه)");
    assert_eq!(
        (r[5].as_str(), r[6].as_str()),
        ("3", "0"),
        "opened, finished"
    );
    assert_eq!((r[7].as_str(), r[8].as_str()), ("3", "0"), "within, beyond");
    // The JSON twin has the same row.
    let (_, body) = hub
        .http(
            "GET",
            &format!("/api/v1/oversight?from={today}&to={today}&by=day"),
            None,
        )
        .await?;
    let json: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["received"], 3);
    assert_eq!(json[0]["day"], today);
    // In English, English headers and names.
    let (_, _, csv) = request(&hub, &watcher, "GET", "/oversight.csv?lang=en", &[]).await?;
    let rows = parse_csv(csv.trim_start_matches('\u{feff}'));
    assert_eq!(rows[0][2], "Center");
    assert!(rows[1][4].starts_with("Criminal record"), "{:?}", rows[1]);

    // Outside the role: refused, page and file alike.
    for path in ["/oversight", "/oversight.csv", "/catalog"] {
        let (status, _, _) = request(&hub, &network, "GET", path, &[]).await?;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _, html) = request(&hub, &network, "GET", "/energy", &[]).await?;
    assert_eq!(status, 200, "the network team sees the energy page");
    assert!(html.contains("id=\"compare\""));
    Ok(())
}
