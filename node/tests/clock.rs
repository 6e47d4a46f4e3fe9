//! A wrong wall clock (issue 17.4), on a real node (SQLite file, router, HTTP) whose clock
//! the test steps as a box's clock would jump: two years ahead, back to 1970, corrected.

use crate::support;

use std::time::Duration;

use markaz_node::app::Clock;
use serde_json::{Value, json};
use support::{TestNode, citizen, morning};

const NID: &str = "01234567890";
const JUSTICE: (&str, &str) = ("justice", "2099-12-31");

fn years(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(24 * 365 * n)
}

async fn clerk(node: &TestNode) -> support::Client {
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE])
        .await;
    let (s, b) = clerk.post("/citizens", citizen(NID)).await;
    assert!(s == 201 || s == 200, "{b}");
    clerk
}

async fn new_case(clerk: &support::Client) -> (u16, Value) {
    clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "delivery": {"method": "pickup"}}),
        )
        .await
}

#[tokio::test]
async fn a_clock_two_years_ahead_numbers_no_case_in_that_year_and_says_why() {
    let node = TestNode::start_clocked(Clock::stepped(morning()), |_| {}).await;
    let clerk = clerk(&node).await;
    let (s, b) = new_case(&clerk).await;
    assert_eq!(s, 201, "{b}");
    assert!(b["case_no"].as_str().unwrap().contains("-2026-"), "{b}");

    // The box's clock jumps two years ahead; nothing but the last stamp to compare with.
    node.app.clock.set_wall(morning() + years(2));
    let (s, b) = new_case(&clerk).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "clock_unconfirmed", "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("2028") && message.contains("2026"),
        "{message}"
    );
    // The technician sees it in the status JSON.
    let admin = node.admin().await;
    let (s, status) = admin.get("/status").await;
    assert_eq!(s, 200, "{status}");
    let clock = &status["clock"];
    assert_eq!(clock["ok"], false, "{clock}");
    assert!(
        clock["problem"].as_str().unwrap().contains("days after"),
        "{clock}"
    );
    assert!(clock["numbering_refused"].is_string(), "{clock}");

    // The clock is corrected: numbers go on in 2026, and no 2028 number was handed out.
    node.app
        .clock
        .set_wall(morning() + jiff::SignedDuration::from_hours(1));
    let (s, b) = new_case(&clerk).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["case_no"], "DMO-2026-000002", "{b}");
    let (s, list) = clerk.get("/cases?limit=50").await;
    assert_eq!(s, 200);
    assert!(
        !list.to_string().contains("-2028-"),
        "no case number in the wrong year: {list}"
    );
    let (_, status) = admin.get("/status").await;
    assert_eq!(status["clock"]["ok"], true, "{status}");
}

#[tokio::test]
async fn a_technician_confirms_a_clock_the_references_disagree_with() {
    let node = TestNode::start_clocked(Clock::stepped(morning()), |_| {}).await;
    let clerk = clerk(&node).await;
    assert_eq!(new_case(&clerk).await.0, 201);
    node.app.clock.set_wall(morning() + years(1));
    assert_eq!(new_case(&clerk).await.0, 409);
    // A clerk cannot confirm; a technician (the admin) can, and it is audited.
    let (s, b) = clerk.post("/technician/clock/confirm", json!({})).await;
    assert_eq!(s, 403, "{b}");
    let admin = node.admin().await;
    let (s, b) = admin.post("/technician/clock/confirm", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["numbering_refused"], Value::Null, "{b}");
    assert_eq!(b["confirmed_year"], 2027, "{b}");
    let (s, b) = new_case(&clerk).await;
    assert_eq!(s, 201, "{b}");
    assert!(b["case_no"].as_str().unwrap().contains("-2027-"), "{b}");
    let (_, audit) = admin.get("/logs/audit").await;
    assert!(
        audit.to_string().contains("technician.clock_confirm"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_box_that_woke_up_in_1970_refuses_cases_and_says_why() {
    let node = TestNode::start_clocked(Clock::stepped(morning()), |_| {}).await;
    let clerk = clerk(&node).await;
    node.app
        .clock
        .set_wall("1970-01-01T00:00:07Z".parse().unwrap());
    let (s, b) = new_case(&clerk).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "clock_not_set", "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1970")
            && message.contains("never set")
            && message.contains("set the clock"),
        "{message}"
    );
    // A confirmation cannot make 1970 right.
    let admin = node.admin().await;
    let (s, b) = admin.post("/technician/clock/confirm", json!({})).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "clock_not_set");
}

#[tokio::test]
async fn a_session_issued_under_a_jumped_clock_does_not_outlive_its_real_lifetime() {
    // The box starts two years ahead; the admin logs in; then the clock is corrected.
    let node = TestNode::start_clocked(Clock::stepped(morning() + years(2)), |_| {}).await;
    let admin = node.admin().await;
    node.app.clock.set_wall(morning());
    let ttl = Duration::from_secs(480 * 60);
    let step = Duration::from_secs(20 * 60); // inside the 60-minute idle limit
    let mut lived = Duration::ZERO;
    loop {
        let (s, b) = admin.get("/auth/me").await;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200, "{b}");
        assert!(
            lived < ttl,
            "the session is still accepted {lived:?} after it was issued (lifetime {ttl:?})"
        );
        node.advance(step);
        lived += step;
    }
    assert!(lived >= ttl, "refused early, after {lived:?}");

    // And a session issued under a correct clock is not cut short by a jump ahead.
    let admin = node.admin().await;
    node.app.clock.set_wall(morning() + years(2));
    let (s, b) = admin.get("/auth/me").await;
    assert_eq!(s, 200, "{b}");
}
