//! The center's API end to end: real SQLite file, real router, real HTTP.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestNode, citizen};

const NID: &str = "01234567890";
const JUSTICE_UNTIL: (&str, &str) = ("justice", "2027-06-30");
const RE_UNTIL: (&str, &str) = ("real_estate_directorate", "2027-06-30");

/// A clerk with the permissions for justice and real-estate services, and one case.
async fn clerk_with_case(
    node: &TestNode,
    service: &str,
    fields: Value,
    delivery: Value,
) -> (support::Client, String) {
    let clerk = node
        .staff(
            "clerk1",
            &["clerk", "reception"],
            &[JUSTICE_UNTIL, RE_UNTIL],
        )
        .await;
    let (s, b) = clerk.post("/citizens", citizen(NID)).await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": service, "fields": fields, "delivery": delivery}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "created");
    (clerk, b["case_no"].as_str().unwrap().to_string())
}

async fn step(c: &support::Client, case: &str, body: Value) -> (u16, Value) {
    c.post(&format!("/cases/{case}/transitions"), body).await
}

#[tokio::test]
async fn pickup_case_goes_from_intake_to_handover_with_every_event_recorded() {
    let node = TestNode::start().await;
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({"purpose": "توظيف"}),
        json!({"method": "pickup"}),
    )
    .await;
    assert!(case.starts_with("DMO-2026-"), "{case}");

    let (s, b) = clerk
        .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "paid");
    let receipt = b["payment"]["cash"]["receipt"]
        .as_str()
        .or(b["payment"]["receipt"].as_str())
        .map(str::to_string);
    assert!(
        format!("{}", b["payment"]).contains("DMO-R-"),
        "cash receipt numbered with the center prefix: {}",
        b["payment"]
    );
    let _ = receipt;
    for (action, status) in [
        ("start", "in_progress"),
        ("ready", "ready"),
        ("notify", "notified"),
    ] {
        let (s, b) = step(&clerk, &case, json!({"action": action})).await;
        assert_eq!(s, 200, "{action}: {b}");
        assert_eq!(b["status"], status);
    }
    // The wrong receiver is refused; the citizen themself receives it.
    let (s, b) = step(
        &clerk,
        &case,
        json!({"action": "deliver", "receiver_national_id": "02345678901"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "receiver_national_id");
    let (s, b) = step(
        &clerk,
        &case,
        json!({"action": "deliver", "receiver_national_id": NID}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "delivered");
    let events = b["events"].as_array().unwrap();
    assert_eq!(
        events.len(),
        6,
        "created, paid, started, ready, notified, delivered: {events:?}"
    );
    for e in events {
        assert_eq!(e["actor"], "clerk1");
        assert_eq!(e["desk"], "desk-1");
        assert!(e["at"].as_str().is_some());
    }
    // The ready step queued the SMS for the citizen, once.
    let n: i64 = node
        .app
        .db
        .readers
        .read(move |c| -> Result<i64, markaz_node::error::AppError> {
            Ok(c.query_row(
                "SELECT count(*) FROM outbox WHERE kind = 'case_ready'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn ready_case_can_be_handed_over_without_notification_and_post_cases_are_posted() {
    let node = TestNode::start().await;
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    clerk.post(&format!("/cases/{case}/payment"), json!({"method": "epayment", "reference": "SEP-2026-778812", "bank": "commercial_bank"})).await;
    for a in ["start", "ready"] {
        assert_eq!(step(&clerk, &case, json!({"action": a})).await.0, 200);
    }
    let (s, b) = step(
        &clerk,
        &case,
        json!({"action": "deliver", "receiver_national_id": NID}),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("delivered")), "{b}");

    let (s, b) = clerk
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "delivery": {"method": "post", "address": "دمشق - المزة - بناء 4"}}))
        .await;
    assert_eq!(s, 201, "{b}");
    let post_case = b["case_no"].as_str().unwrap().to_string();
    let (s, b) = clerk
        .post(
            &format!("/cases/{post_case}/payment"),
            json!({"method": "epayment", "reference": "SEP-2026-778813", "bank": "al_baraka"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for a in ["start", "ready"] {
        assert_eq!(step(&clerk, &post_case, json!({"action": a})).await.0, 200);
    }
    // A post case cannot be handed over at the desk.
    let (s, b) = step(
        &clerk,
        &post_case,
        json!({"action": "deliver", "receiver_national_id": NID}),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = step(
        &clerk,
        &post_case,
        json!({"action": "post", "tracking": "SY123456789"}),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("posted")), "{b}");
}

#[tokio::test]
async fn cancel_and_reject_need_a_reason_and_end_the_case() {
    let node = TestNode::start().await;
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    let (s, b) = step(&clerk, &case, json!({"action": "cancel", "reason": "  "})).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "reason");
    // Reject is for the authority refusing a paid case: not from created.
    let (s, b) = step(
        &clerk,
        &case,
        json!({"action": "reject", "reason": "incomplete"}),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = step(
        &clerk,
        &case,
        json!({"action": "cancel", "reason": "citizen changed their mind"}),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");

    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await;
    assert_eq!(s, 201);
    let c2 = b["case_no"].as_str().unwrap().to_string();
    clerk
        .post(&format!("/cases/{c2}/payment"), json!({"method": "cash"}))
        .await;
    step(&clerk, &c2, json!({"action": "start"})).await;
    let (s, b) = step(
        &clerk,
        &c2,
        json!({"action": "reject", "reason": "record under review by the court"}),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("rejected")), "{b}");
    let (s, _) = step(&clerk, &c2, json!({"action": "ready"})).await;
    assert_eq!(s, 409, "a rejected case is finished");
}

/// Every action that is illegal in a state answers 409 and names the current state.
#[tokio::test]
async fn every_illegal_transition_is_409_naming_the_current_state() {
    let node = TestNode::start().await;
    let (clerk, _) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    let path_to = |state: &str| -> Vec<Value> {
        let all = [
            json!({"action": "pay"}),
            json!({"action": "start"}),
            json!({"action": "ready"}),
            json!({"action": "notify"}),
            json!({"action": "deliver", "receiver_national_id": NID}),
        ];
        let n = [
            "created",
            "paid",
            "in_progress",
            "ready",
            "notified",
            "delivered",
        ]
        .iter()
        .position(|s| *s == state)
        .unwrap();
        all[..n].to_vec()
    };
    let actions = [
        ("pay", json!({"method": "cash"})),
        ("start", json!({"action": "start"})),
        ("ready", json!({"action": "ready"})),
        ("notify", json!({"action": "notify"})),
        (
            "deliver",
            json!({"action": "deliver", "receiver_national_id": NID}),
        ),
        ("post", json!({"action": "post", "tracking": "SY000111"})),
        ("reject", json!({"action": "reject", "reason": "x"})),
        ("cancel", json!({"action": "cancel", "reason": "x"})),
    ];
    let legal: &[(&str, &[&str])] = &[
        ("created", &["pay", "cancel"]),
        ("paid", &["start", "reject", "cancel"]),
        ("in_progress", &["ready", "reject", "cancel"]),
        ("ready", &["notify", "deliver", "cancel"]),
        ("notified", &["deliver", "cancel"]),
        ("delivered", &[]),
    ];
    for (state, ok) in legal {
        for (name, body) in &actions {
            if ok.contains(name) {
                continue;
            }
            // A fresh case brought to `state`.
            let (s, b) = clerk
                .post(
                    "/cases",
                    json!({"national_id": NID, "service": "criminal_record"}),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let case = b["case_no"].as_str().unwrap().to_string();
            for st in path_to(state) {
                let (s, b) = if st["action"] == "pay" {
                    clerk
                        .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
                        .await
                } else {
                    step(&clerk, &case, st.clone()).await
                };
                assert_eq!(s, 200, "bringing {case} to {state}: {b}");
            }
            let (s, b) = if *name == "pay" {
                clerk
                    .post(&format!("/cases/{case}/payment"), body.clone())
                    .await
            } else {
                step(&clerk, &case, body.clone()).await
            };
            assert_eq!(s, 409, "{name} from {state} must be refused: {b}");
            assert_eq!(b["error"]["code"], "illegal_transition");
            let msg = b["error"]["message"].as_str().unwrap().to_lowercase();
            assert!(
                msg.contains(&state.replace('_', " ")) || msg.contains(state),
                "message names the state {state}: {msg}"
            );
        }
    }
}

#[tokio::test]
async fn a_clerk_needs_an_unexpired_permission_for_the_services_authority() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    // Justice only.
    let clerk = node.staff("clerk2", &["clerk"], &[JUSTICE_UNTIL]).await;
    assert_eq!(admin.post("/citizens", citizen(NID)).await.0, 201);
    let re = json!({"national_id": NID, "service": "re_extract", "fields": {"real_estate_area": "المزة", "property_number": "1234"}});
    let (s, b) = clerk.post("/cases", re.clone()).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "permission_missing");
    // Granted: allowed.
    admin
        .post(
            "/staff/clerk2/permissions",
            json!({"authority": "real_estate_directorate", "expires_on": "2026-12-31"}),
        )
        .await;
    let (s, b) = clerk.post("/cases", re.clone()).await;
    assert_eq!(s, 201, "{b}");
    let case = b["case_no"].as_str().unwrap().to_string();
    // Expired (the clock passes the expiry): neither create nor advance.
    node.advance(Duration::from_secs(40 * 86_400));
    let clerk = node.login("clerk2", "a-long-password").await;
    assert_eq!(clerk.post("/cases", re.clone()).await.0, 403);
    assert_eq!(
        clerk
            .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
            .await
            .0,
        403
    );
    // Revoked justice: refused at once.
    let admin = node.admin().await;
    let (s, b) = admin
        .call("DELETE", "/staff/clerk2/permissions/justice", None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await;
    assert_eq!(s, 403);
    // Reception cannot create cases at all.
    let rec = node.staff("rec1", &["reception"], &[JUSTICE_UNTIL]).await;
    let (s, b) = rec
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "role_forbidden");
}

#[tokio::test]
async fn the_fee_is_computed_at_intake_and_frozen_on_the_case() {
    use markaz_sync::model::fees::FeeComponent;
    use markaz_sync::model::money::Money;
    let node = TestNode::start().await;
    let today_fee = node
        .app
        .fees()
        .fee_for("criminal_record", node.app.today())
        .unwrap();
    // The council raises the surcharge from tomorrow.
    let mut schedule = (*node.app.fees()).clone();
    schedule.add_surcharge(
        "criminal_record",
        FeeComponent {
            amount: Money::from_syp(9_000).unwrap(),
            decision: "قرار مجلس المحافظة رقم 99 لعام 2026".into(),
            effective_from: "2026-11-30".parse().unwrap(),
        },
    );
    node.app.set_fee_schedule(schedule);
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    let (_, b) = clerk.get(&format!("/cases/{case}")).await;
    assert_eq!(
        b["fee"]["total"],
        serde_json::to_value(today_fee.total).unwrap(),
        "today's schedule applies"
    );

    node.advance(Duration::from_secs(86_400));
    let clerk = node.login("clerk1", "a-long-password").await;
    let (_, new_case) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await;
    assert_eq!(
        new_case["fee"]["surcharge_decision"],
        "قرار مجلس المحافظة رقم 99 لعام 2026"
    );
    assert_ne!(new_case["fee"]["total"], b["fee"]["total"]);
    // The old case keeps the fee it was charged.
    let (_, again) = clerk.get(&format!("/cases/{case}")).await;
    assert_eq!(again["fee"], b["fee"]);
}

#[tokio::test]
async fn tickets_follow_a_daily_letter_series_per_group() {
    let node = TestNode::start().await;
    let rec = node.staff("rec", &["reception"], &[]).await;
    let issue = |g: &'static str| {
        let rec = rec.clone();
        async move { rec.post("/tickets", json!({"group": g})).await }
    };
    let (s, a1) = issue("judicial").await;
    assert_eq!(s, 201, "{a1}");
    assert_eq!(a1["number"], "A001");
    assert_eq!(a1["waiting_ahead"], 0);
    let (_, a2) = issue("judicial").await;
    assert_eq!(a2["number"], "A002");
    assert_eq!(a2["waiting_ahead"], 1);
    let (_, b1) = issue("civil").await;
    assert_eq!(b1["number"], "B001");
    // Next morning the series restart.
    node.advance(Duration::from_secs(86_400));
    let rec = node.login("rec", "a-long-password").await;
    let (_, next_day) = rec.post("/tickets", json!({"group": "judicial"})).await;
    assert_eq!(next_day["number"], "A001");
    assert_ne!(next_day["day"], a1["day"]);
    let (s, b) = rec.post("/tickets", json!({"group": "astrology"})).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "group");
}

#[tokio::test]
async fn counters_serve_priority_tickets_at_the_configured_ratio() {
    let node = TestNode::start().await; // default weights: 2 priority per 1 normal
    let rec = node.staff("rec", &["reception"], &[]).await;
    let desk = node.staff("desk", &["clerk"], &[]).await;
    for i in 0..6 {
        rec.post("/tickets", json!({"group": "civil"})).await;
        let p = ["elderly", "disabled", "pregnant"][i % 3];
        rec.post("/tickets", json!({"group": "civil", "priority": p}))
            .await;
    }
    let mut order = Vec::new();
    for _ in 0..12 {
        let (s, t) = desk.post("/counters/1/call-next", json!({})).await;
        assert_eq!(s, 200, "{t}");
        order.push(if t["priority"] == "normal" { 'N' } else { 'P' });
        let (s, b) = desk.post("/counters/1/finish", json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let order: String = order.into_iter().collect();
    assert_eq!(
        order, "PPNPPNPPNNNN",
        "two priority per normal while both wait, then the rest"
    );
    let (s, _) = desk.post("/counters/1/call-next", json!({})).await;
    assert_eq!(s, 204, "nobody waits");
}

#[tokio::test]
async fn counter_actions_recall_no_show_transfer_and_timing() {
    let node = TestNode::start().await;
    let rec = node.staff("rec", &["reception"], &[]).await;
    let desk = node.staff("desk", &["clerk"], &[]).await;
    let (_, t1) = rec.post("/tickets", json!({"group": "civil"})).await;
    let (_, _t2) = rec.post("/tickets", json!({"group": "civil"})).await;
    let (s, b) = desk.post("/counters/1/recall", json!({})).await;
    assert_eq!(s, 409, "nothing called yet: {b}");
    node.advance(Duration::from_secs(300));
    let (_, called) = desk.post("/counters/1/call-next", json!({})).await;
    assert_eq!(called["number"], t1["number"]);
    let (s, b) = desk.post("/counters/1/call-next", json!({})).await;
    assert_eq!(s, 409, "must finish first: {b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("B001"));
    let (_, r) = desk.post("/counters/1/recall", json!({})).await;
    assert_eq!(r["recalls"], 1);
    let (_, ns) = desk.post("/counters/1/no-show", json!({})).await;
    assert_eq!(ns["state"], "no_show");
    let (_, second) = desk.post("/counters/1/call-next", json!({})).await;
    let (s, tr) = desk
        .post("/counters/1/transfer", json!({"group": "finance"}))
        .await;
    assert_eq!(s, 200, "{tr}");
    assert_eq!(tr["group"], "finance");
    assert_eq!(tr["state"], "waiting");
    // Counter 4 serves all groups by default and picks it up.
    let (_, again) = desk.post("/counters/4/call-next", json!({})).await;
    assert_eq!(again["id"], second["id"]);
    node.advance(Duration::from_secs(120));
    let (_, done) = desk.post("/counters/4/finish", json!({})).await;
    assert_eq!(done["state"], "done");
    let sup = node.staff("sup", &["supervisor"], &[]).await;
    let (s, rep) = sup.get("/reports/queue").await;
    assert_eq!(s, 200, "{rep}");
    assert_eq!(rep["total"]["issued"], 2);
    assert_eq!(rep["total"]["served"], 1);
    assert_eq!(rep["total"]["no_shows"], 1);
    assert_eq!(rep["total"]["avg_wait_secs"], 300);
    assert_eq!(rep["total"]["avg_service_secs"], 120);
}

#[tokio::test]
async fn citizens_are_typed_once_and_found_by_id_or_phone() {
    let node = TestNode::start().await;
    let rec = node.staff("rec", &["reception"], &[]).await;
    let (s, b) = rec.post("/citizens", citizen("٠١٢٣٤٥٦٧٨٩٠")).await;
    assert_eq!(s, 201, "Arabic-Indic digits are accepted: {b}");
    assert_eq!(b["national_id"], NID);
    let (s, _) = rec.post("/citizens", citizen(NID)).await;
    assert_eq!(s, 200, "the same profile again answers the existing one");
    let (s, found) = rec.get("/citizens?phone=%2B963944123456").await;
    assert_eq!(s, 200);
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (s, found) = rec.get(&format!("/citizens?national_id={NID}")).await;
    assert_eq!((s, found[0]["national_id"].as_str()), (200, Some(NID)));
    let mut bad = citizen("123");
    bad["birth_date"] = json!("yesterday");
    bad["full_name"] = json!("");
    let (s, b) = rec.post("/citizens", bad).await;
    assert_eq!(s, 400, "{b}");
    let fields: Vec<&str> = b["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["national_id", "birth_date", "full_name"] {
        assert!(fields.contains(&f), "{f} reported in {fields:?}");
    }
}

/// Issue #15.1: registering a known national id never overwrites the profile; a change
/// is an explicit edit with who, when and the old and new values; a case and its
/// receipt keep the citizen as at intake; likely duplicates are found.
#[tokio::test]
async fn re_registering_never_overwrites_and_edits_are_recorded() {
    let node = TestNode::start().await;
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({"purpose": "توظيف"}),
        json!({"method": "pickup"}),
    )
    .await;
    let (s, b) = clerk
        .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
        .await;
    assert_eq!(s, 200, "{b}");
    const FIRST: &str = "أحمد محمد الخطيب";
    const SECOND: &str = "خالد عمر السيد";
    let mut other = citizen(NID);
    other["full_name"] = json!(SECOND);
    other["address"] = json!("دمشق - المزة");

    // Registering the same id with other details is refused, and changes nothing.
    let (s, b) = clerk.post("/citizens", other.clone()).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "citizen_exists");
    let (_, p) = clerk.get(&format!("/citizens/{NID}")).await;
    assert_eq!(p["full_name"], FIRST);
    let (s, h) = clerk.get(&format!("/citizens/{NID}/history")).await;
    assert_eq!((s, h.as_array().map(Vec::len)), (200, Some(0)), "{h}");

    // The explicit edit changes it and is recorded.
    let (s, b) = clerk
        .call("PUT", &format!("/citizens/{NID}"), Some(other.clone()))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["full_name"], SECOND);
    let changes = &b["edit"]["changes"];
    assert_eq!(
        changes,
        &json!([
            {"field": "full_name", "old": FIRST, "new": SECOND},
            {"field": "address", "old": "دمشق - الميدان - شارع الجزماتية", "new": "دمشق - المزة"},
        ])
    );
    let (_, h) = clerk.get(&format!("/citizens/{NID}/history")).await;
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["actor"], "clerk1");
    assert_eq!(
        h[0]["actor_name"], "Staff clerk1",
        "the person, not the username"
    );
    assert_eq!(&h[0]["changes"], changes);
    assert!(h[0]["at"].as_str().is_some_and(|t| t.starts_with("2026-")));
    // The same values again: nothing to record.
    let (s, b) = clerk
        .call("PUT", &format!("/citizens/{NID}"), Some(other.clone()))
        .await;
    assert_eq!((s, &b["edit"]), (200, &Value::Null), "{b}");
    // The national id itself is not editable.
    let mut moved = other.clone();
    moved["national_id"] = json!("01234567891");
    let (s, b) = clerk
        .call("PUT", &format!("/citizens/{NID}"), Some(moved))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["fields"][0]["code"], "national_id_immutable");
    let (s, b) = clerk
        .call("PUT", "/citizens/01234567899", Some(citizen("01234567899")))
        .await;
    assert_eq!(s, 404, "{b}");

    // The case and its receipt keep the name as at intake.
    let (_, c) = clerk.get(&format!("/cases/{case}")).await;
    assert_eq!(c["citizen_name"], FIRST, "{c}");
    assert_eq!(c["citizen"]["full_name"], FIRST);
    assert_eq!(c["citizen"]["birth_date"], "1980-05-17");
    let page = reqwest::Client::new()
        .get(format!("{}/cases/{case}/receipt", node.base))
        .header("cookie", format!("markaz_session={}", clerk.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(FIRST) && !page.contains(SECOND),
        "the receipt shows the name at intake"
    );
    // A new case takes the profile as it is now.
    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "سفر"}}),
        )
        .await;
    assert_eq!((s, b["citizen_name"].as_str()), (201, Some(SECOND)), "{b}");

    // Likely duplicates: the same name (spelled with other hamza forms) and birth date
    // under another id.
    let mut twin = citizen("02234567890");
    twin["full_name"] = json!("خالد عمر السيّد");
    let (s, b) = clerk.post("/citizens", twin).await;
    assert_eq!(s, 201, "{b}");
    let mut stranger = citizen("03234567890");
    stranger["full_name"] = json!(SECOND);
    stranger["birth_date"] = json!("1981-05-17");
    assert_eq!(clerk.post("/citizens", stranger).await.0, 201);
    let (s, d) = clerk.get(&format!("/citizens/{NID}/duplicates")).await;
    assert_eq!(s, 200, "{d}");
    let ids: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["national_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["02234567890"]);
    let sup = node.staff("sup", &["supervisor"], &[]).await;
    let (s, g) = sup.get("/citizens/duplicates").await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g.as_array().unwrap().len(), 1, "{g}");
    let ids: Vec<&str> = g[0]["citizens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["national_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [NID, "02234567890"]);
    assert_eq!(clerk.get("/citizens/duplicates").await.0, 403);
}

#[tokio::test]
async fn case_intake_reports_every_bad_field() {
    let node = TestNode::start().await;
    let (clerk, _) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    let (s, b) = clerk.post("/cases", json!({"national_id": NID, "service": "re_extract", "fields": {"property_number": "12ab"}})).await;
    assert_eq!(s, 400, "{b}");
    let fields: Vec<&str> = b["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.iter().any(|f| f.contains("property_number")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.contains("real_estate_area")),
        "{fields:?}"
    );
    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": "02345678901", "service": "criminal_record"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_input");
    assert!(b["error"]["message"].as_str().unwrap().contains("register"));
    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "no_such_service"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "service");
}

/// Bad input on every endpoint that takes any: each answer is JSON with a code.
#[tokio::test]
async fn bad_input_on_every_endpoint_gets_a_json_error() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let token = admin.token.clone();
    let bodies: &[(&str, &str)] = &[
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/citizens"),
        ("POST", "/api/v1/tickets"),
        ("POST", "/api/v1/counters/1/transfer"),
        ("POST", "/api/v1/counters/1/finish"),
        ("POST", "/api/v1/cases"),
        ("POST", "/api/v1/cases/DMO-2026-000001/payment"),
        ("POST", "/api/v1/cases/DMO-2026-000001/transitions"),
        ("POST", "/api/v1/staff"),
        ("POST", "/api/v1/staff/admin/permissions"),
        ("POST", "/api/v1/staff/admin/active"),
    ];
    let http = reqwest::Client::new();
    for (method, path) in bodies {
        for (raw, want_status, want_code) in [
            ("{not json", 400, "malformed_json"),
            ("[1,2,3]", 0, ""),
            // Unknown fields are refused (422), or — where every field has a default —
            // the missing required ones are named (400).
            (r#"{"unexpected_field": 1}"#, 0, ""),
        ] {
            let resp = http
                .request(method.parse().unwrap(), format!("{}{path}", node.base))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            // /finish accepts an empty body, so its bad bodies are still rejected.
            if want_status == 0 {
                assert!(
                    status == 422 || status == 400,
                    "{method} {path} with {raw}: {status} {body}"
                );
                assert!(
                    body["error"]["code"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty()),
                    "{method} {path} with {raw}: {body}"
                );
            } else {
                assert_eq!(status, want_status, "{method} {path} with {raw}: {body}");
                assert_eq!(
                    body["error"]["code"], want_code,
                    "{method} {path} with {raw}: {body}"
                );
            }
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        // Too large.
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(64 * 1024));
        let resp = http
            .request(method.parse().unwrap(), format!("{}{path}", node.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            413,
            "{method} {path} with a large body"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large");
        // Not JSON at all.
        let resp = http
            .request(method.parse().unwrap(), format!("{}{path}", node.base))
            .bearer_auth(&token)
            .body("a=b")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415, "{method} {path} form body");
    }
    // Bad path and query parameters.
    for (path, status) in [
        ("/api/v1/counters/abc", 400),
        ("/api/v1/counters/77", 404),
        ("/api/v1/tickets/xyz", 400),
        ("/api/v1/cases/not-a-case", 400),
        ("/api/v1/cases/DMO-2026-999999", 404),
        ("/api/v1/citizens/123", 400),
        ("/api/v1/citizens?phone=12", 400),
        ("/api/v1/cases?q=%25%25", 400),
        ("/api/v1/cases?status=flying", 400),
        ("/api/v1/reports/queue?day=yesterday", 400),
        ("/api/v1/catalog/services/nothing/fee", 404),
        ("/api/v1/staff/nobody", 404),
        ("/api/v1/no/such/route", 404),
    ] {
        let (s, b) = node.raw("GET", path, Some(&token), None).await;
        assert_eq!(s, status, "GET {path}: {b}");
        assert!(b["error"]["code"].as_str().is_some(), "GET {path}: {b}");
    }
}

#[tokio::test]
async fn sessions_login_rate_limit_and_csrf() {
    let node = TestNode::start_with(|c| c.auth.login_max_attempts = 3).await;
    // No session.
    let (s, b) = node.raw("GET", "/api/v1/auth/me", None, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s, _) = node
        .raw("GET", "/api/v1/auth/me", Some("forged-token"), None)
        .await;
    assert_eq!(s, 401);
    // Wrong passwords, then the limit.
    for _ in 0..3 {
        let (s, _) = node
            .raw(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": "nope"})),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, b) = node
        .raw(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": support::ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(s, 429, "even the right password waits: {b}");
    node.advance(Duration::from_secs(301));
    let admin = node.admin().await;
    // Idle expiry (default 60 minutes).
    node.advance(Duration::from_secs(61 * 60));
    let (s, _) = admin.get("/auth/me").await;
    assert_eq!(s, 401, "idle session expired");
    // Cookie sessions need the CSRF header on writes.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/auth/login", node.base))
        .json(&json!({"username": "admin", "password": support::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let post = |csrf: Option<String>| {
        let mut r = http
            .post(format!("{}/api/v1/tickets", node.base))
            .header("cookie", cookie.clone())
            .json(&json!({"group": "civil"}));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 403);
    assert_eq!(
        post(Some("wrong".into())).await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        post(Some(body["csrf"].as_str().unwrap().into()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
}

#[tokio::test]
async fn health_status_openapi_and_the_display_stream() {
    let node = TestNode::start().await;
    let (s, b) = node.raw("GET", "/healthz", None, None).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let tech = node.staff("tech", &["technician"], &[]).await;
    let (s, b) = tech.get("/status").await;
    assert_eq!(s, 200, "{b}");
    for panel in ["link", "modem", "power", "sync"] {
        assert_eq!(b["panels"][panel]["state"], "not_configured");
    }
    // The OpenAPI document lists exactly the routes the router serves.
    let (s, doc) = node.raw("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let mut documented: Vec<String> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", m.to_uppercase()));
        }
    }
    documented.sort();
    let mut served: Vec<String> = markaz_node::api::ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, doc);

    // The display's event stream sees a call, without logging in.
    let resp = reqwest::get(format!("{}/api/v1/display/events", node.base))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    let rec = node.staff("rec", &["reception"], &[]).await;
    let desk = node.staff("desk", &["clerk"], &[]).await;
    rec.post("/tickets", json!({"group": "civil"})).await;
    desk.post("/counters/2/call-next", json!({})).await;
    use futures::StreamExt;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("ticket_called") && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_secs(5), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("event: ticket_called"), "{seen}");
    assert!(
        seen.contains(r#""ticket":"B001""#) && seen.contains(r#""counter":2"#),
        "{seen}"
    );
}

/// Every local edit is stored as an automerge change in the same transaction as the SQL
/// rows the API reads: the case and citizen documents say what the API says.
#[tokio::test]
async fn documents_and_their_projection_agree() {
    use markaz_sync::docs::{DocId, read_case, read_citizen};
    let node = TestNode::start().await;
    let (clerk, case) = clerk_with_case(
        &node,
        "criminal_record",
        json!({}),
        json!({"method": "pickup"}),
    )
    .await;
    clerk
        .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
        .await;
    step(&clerk, &case, json!({"action": "start"})).await;
    let (_, api_view) = clerk.get(&format!("/cases/{case}")).await;
    let db = node.app.db.path().to_path_buf();
    let case_no: markaz_sync::model::ids::CaseNo = case.parse().unwrap();
    let (doc_case, doc_citizen, changes) = tokio::task::spawn_blocking(move || {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut store = markaz_sync::store::DocStore::new(automerge::ActorId::random(), 8);
        let center: markaz_sync::model::ids::CenterId = "demo".parse().unwrap();
        let c = store
            .read(&conn, &DocId::case(Some(&center), &case_no), |d| {
                read_case(d).unwrap()
            })
            .unwrap()
            .expect("case document");
        let nid = NID.parse().unwrap();
        let z = store
            .read(&conn, &DocId::citizen(&nid), |d| read_citizen(d).unwrap())
            .unwrap()
            .expect("citizen document");
        // The case's and the citizen's documents (staff accounts have their own).
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM changes WHERE doc_id IN (?1, ?2)",
                [
                    DocId::case(Some(&center), &case_no).to_string(),
                    DocId::citizen(&nid).to_string(),
                ],
                |r| r.get(0),
            )
            .unwrap();
        (c, z, n)
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(doc_case.derived.status).unwrap(),
        api_view["status"]
    );
    assert_eq!(
        doc_case.events.len(),
        api_view["events"].as_array().unwrap().len()
    );
    assert_eq!(
        serde_json::to_value(&doc_case.events).unwrap(),
        api_view["events"]
    );
    assert_eq!(doc_citizen.input.national_id, NID);
    assert_eq!(doc_citizen.input.full_name, "أحمد محمد الخطيب");
    assert_eq!(
        changes, 4,
        "citizen, case created, paid, started: one change each"
    );
}
