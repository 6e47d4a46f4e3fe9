//! The working day at the desk (issue #15: 4, 5, 11, 12, 13): the staff page and one's
//! own password, live updates of the desk and reception, undoing a no-show and serving a
//! ticket later, voiding a receipt and the daily cash close — through the JSON API and
//! through the pages as a browser would send them.

use crate::support;

use serde_json::json;
use support::{ADMIN_PASSWORD, Pages, TestNode};

// ---- #15.4 staff page and own password -------------------------------------------------

#[tokio::test]
async fn managers_set_roles_and_reset_passwords_and_everyone_changes_their_own() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let clerk = node.staff("sara", &["clerk"], &[]).await;

    let (s, b) = admin
        .call(
            "PUT",
            "/staff/sara/roles",
            Some(json!({"roles": ["reception", "clerk", "clerk"]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["roles"], json!(["reception", "clerk"]));
    let (s, b) = admin
        .call("PUT", "/staff/sara/roles", Some(json!({"roles": []})))
        .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["field"].as_str()),
        (400, Some("roles")),
        "{b}"
    );
    // The last manager cannot lock the center out of staff management.
    let (s, b) = admin
        .call(
            "PUT",
            "/staff/admin/roles",
            Some(json!({"roles": ["clerk"]})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("self_demotion")),
        "{b}"
    );

    // Own password: the current one is checked, the new one must differ and be long.
    let second = node.login("sara", "a-long-password").await;
    let (s, b) = clerk
        .post(
            "/auth/password",
            json!({"current_password": "wrong-password", "new_password": "brand-new-password"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["code"].as_str()),
        (400, Some("wrong_password")),
        "{b}"
    );
    let (s, b) = clerk
        .post(
            "/auth/password",
            json!({"current_password": "a-long-password", "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["code"].as_str()),
        (400, Some("too_short")),
        "{b}"
    );
    let (s, b) = clerk
        .post(
            "/auth/password",
            json!({"current_password": "a-long-password", "new_password": "brand-new-password"}),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    // This session goes on; the other one ended; the old password no longer opens one.
    assert_eq!(clerk.get("/auth/me").await.0, 200);
    assert_eq!(second.get("/auth/me").await.0, 401);
    let (s, _) = node
        .raw(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "sara", "password": "a-long-password"})),
        )
        .await;
    assert_eq!(s, 401);
    let renewed = node.login("sara", "brand-new-password").await;

    // A manager resets it (she forgot it): all her sessions end.
    let (s, b) = admin
        .post("/staff/sara/password", json!({"password": "too-short"}))
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = admin
        .post(
            "/staff/sara/password",
            json!({"password": "reset-by-admin-1"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(clerk.get("/auth/me").await.0, 401);
    assert_eq!(renewed.get("/auth/me").await.0, 401);
    node.login("sara", "reset-by-admin-1").await;
    let (s, _) = admin
        .post(
            "/staff/nobody/password",
            json!({"password": "reset-by-admin-1"}),
        )
        .await;
    assert_eq!(s, 404);

    // Every change is in the audit log.
    let (_, log) = admin.get("/logs/audit?limit=50").await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["what"].as_str().or(r["action"].as_str()))
        .collect();
    for a in [
        "staff.set_roles",
        "staff.change_own_password",
        "staff.reset_password",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

#[tokio::test]
async fn the_staff_page_creates_grants_revokes_deactivates_and_resets_in_arabic_and_english() {
    let node = TestNode::start().await;
    let admin = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    let (s, html) = admin.get("/staff").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("حسابات الموظفين") && html.contains(">الموظفون</a>"),
        "menu and title"
    );

    // A refused form shows the app's own Arabic errors next to the fields.
    let (s, html) = admin
        .post(
            "/staff",
            &[("username", "x"), ("full_name", ""), ("password", "short")],
        )
        .await;
    assert_eq!(s, 400);
    for msg in [
        "الاسم الكامل مطلوب",
        "10 محارف على الأقل",
        "دور واحد على الأقل",
    ] {
        assert!(html.contains(msg), "{msg}");
    }
    assert!(
        html.contains("novalidate"),
        "the browser's own messages are off"
    );

    let (s, to) = admin
        .post(
            "/staff",
            &[
                ("username", "omar"),
                ("full_name", "عمر الحلبي"),
                ("password", "first-password-1"),
                ("role", "clerk"),
                ("role", "reception"),
            ],
        )
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=staff_created"));
    let (s, _) = admin
        .post(
            "/staff",
            &[
                ("username", "omar"),
                ("full_name", "عمر"),
                ("password", "first-password-1"),
                ("role", "clerk"),
            ],
        )
        .await;
    assert_eq!(s, 409, "a taken username is refused");

    // Grant: an empty date gets the app's error; a date grants until then.
    let (s, html) = admin
        .post(
            "/staff/omar/grant",
            &[("authority", "justice"), ("expires_on", "")],
        )
        .await;
    assert_eq!(s, 400);
    assert!(html.contains("expires_on-error"), "error next to the date");
    let (s, to) = admin
        .post(
            "/staff/omar/grant",
            &[("authority", "justice"), ("expires_on", "2027-06-30")],
        )
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=granted"));
    let (_, html) = admin.get("/staff/omar").await;
    assert!(
        html.contains("وزارة العدل") && html.contains("revoke-justice"),
        "permission listed"
    );
    let (_, html_en) = admin.get_in("/staff/omar", "en").await;
    assert!(
        html_en.contains("Ministry of Justice") && html_en.contains("Save roles"),
        "English page"
    );

    let (s, to) = admin
        .post("/staff/omar/roles", &[("role", "supervisor")])
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=roles_saved"));
    let (s, to) = admin
        .post("/staff/omar/revoke", &[("authority", "justice")])
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=revoked"));
    let (s, to) = admin
        .post("/staff/omar/password", &[("password", "second-password-2")])
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=password_reset"));
    let omar = Pages::login(&node, "omar", "second-password-2").await;
    assert_eq!(
        omar.get("/staff").await.0,
        403,
        "a supervisor does not manage staff"
    );
    let (s, to) = admin
        .post("/staff/omar/active", &[("active", "false")])
        .await;
    assert_eq!((s, to.as_str()), (303, "/staff/omar?done=deactivated"));
    assert_eq!(
        omar.get("/supervisor").await.0,
        303,
        "deactivated: back to the login page"
    );
    let (_, html) = admin.get("/staff").await;
    assert!(
        html.contains("عمر الحلبي") && html.contains("غير فعّال"),
        "the list marks the account inactive"
    );
}

#[tokio::test]
async fn every_user_changes_their_own_password_on_a_page() {
    let node = TestNode::start().await;
    node.staff("huda", &["reception"], &[]).await;
    let huda = Pages::login(&node, "huda", "a-long-password").await;
    let (s, html) = huda.get("/reception").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("href=\"/account/password\""),
        "the user's name leads to the page"
    );
    let (s, html) = huda
        .post(
            "/account/password",
            &[
                ("current_password", "a-long-password"),
                ("new_password", "new-password-77"),
                ("new_password_again", "new-password-78"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        html.contains("كلمتا المرور الجديدتان مختلفتان"),
        "mismatch in Arabic"
    );
    let (s, html) = huda
        .post_in(
            "/account/password",
            &[
                ("current_password", "nope-nope-nope"),
                ("new_password", "new-password-77"),
                ("new_password_again", "new-password-77"),
            ],
            "en",
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        html.contains("this is not your current password"),
        "wrong current, in English"
    );
    let (s, to) = huda
        .post(
            "/account/password",
            &[
                ("current_password", "a-long-password"),
                ("new_password", "new-password-77"),
                ("new_password_again", "new-password-77"),
            ],
        )
        .await;
    assert_eq!(
        (s, to.as_str()),
        (303, "/account/password?done=password_changed")
    );
    assert_eq!(huda.get("/reception").await.0, 200, "still logged in");
    Pages::login(&node, "huda", "new-password-77").await;
}

// ---- #15.11 queue: undo a no-show, serve later ------------------------------------------

async fn issue(client: &support::Client, group: &str) -> String {
    let (s, t) = client.post("/tickets", json!({"group": group})).await;
    assert_eq!(s, 201, "{t}");
    t["number"].as_str().unwrap().to_string()
}

async fn waiting_numbers(client: &support::Client) -> Vec<String> {
    let (s, list) = client.get("/tickets").await;
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn serve_later_puts_the_ticket_back_at_the_chosen_position() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    for _ in 0..4 {
        issue(&admin, "civil").await;
    }
    let (s, t) = admin.post("/counters/1/call-next", json!({})).await;
    assert_eq!((s, t["number"].as_str()), (200, Some("B001")));
    let (s, b) = admin
        .post("/counters/1/serve-later", json!({"position": 0}))
        .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["field"].as_str()),
        (400, Some("position")),
        "{b}"
    );
    let (s, t) = admin
        .post("/counters/1/serve-later", json!({"position": 2}))
        .await;
    assert_eq!((s, t["state"].as_str()), (200, Some("waiting")), "{t}");
    assert_eq!(
        waiting_numbers(&admin).await,
        ["B002", "B001", "B003", "B004"]
    );
    // The next calls follow the new order; past the end means last.
    let (_, t) = admin.post("/counters/1/call-next", json!({})).await;
    assert_eq!(t["number"], "B002");
    admin
        .post("/counters/1/serve-later", json!({"position": 99}))
        .await;
    assert_eq!(
        waiting_numbers(&admin).await,
        ["B001", "B003", "B004", "B002"]
    );
    let (_, t) = admin.post("/counters/1/call-next", json!({})).await;
    assert_eq!(t["number"], "B001");
    let (s, _) = admin
        .post("/counters/2/serve-later", json!({"position": 1}))
        .await;
    assert_eq!(s, 409, "an idle counter has nothing to serve later");
}

#[tokio::test]
async fn a_no_show_is_undone_within_five_minutes_only() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    issue(&admin, "civil").await;
    issue(&admin, "civil").await;
    let (s, b) = admin.post("/counters/1/undo-no-show", json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("nothing_to_undo"))
    );
    admin.post("/counters/1/call-next", json!({})).await;
    let (s, t) = admin.post("/counters/1/no-show", json!({})).await;
    assert_eq!((s, t["state"].as_str()), (200, Some("no_show")));
    let (_, view) = admin.get("/counters/1").await;
    assert_eq!(view["undoable"]["number"], "B001", "{view}");
    node.advance(std::time::Duration::from_secs(4 * 60));
    let (s, t) = admin.post("/counters/1/undo-no-show", json!({})).await;
    assert_eq!(
        (s, t["state"].as_str(), t["number"].as_str()),
        (200, Some("called"), Some("B001")),
        "{t}"
    );
    let (_, view) = admin.get("/counters/1").await;
    assert_eq!(view["current"]["number"], "B001");
    // Marked again and left too long: the undo is refused, the ticket stays a no-show.
    admin.post("/counters/1/no-show", json!({})).await;
    node.advance(std::time::Duration::from_secs(5 * 60 + 1));
    let (_, view) = admin.get("/counters/1").await;
    assert!(view["undoable"].is_null(), "{view}");
    let (s, b) = admin.post("/counters/1/undo-no-show", json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("undo_too_late")),
        "{b}"
    );
    // The counter moved on meanwhile: an undo may not take it from the next citizen.
    admin.post("/counters/1/call-next", json!({})).await;
    admin.post("/counters/1/no-show", json!({})).await;
    admin.post("/counters/1/undo-no-show", json!({})).await;
    let (s, b) = admin.post("/counters/1/undo-no-show", json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("counter_busy")),
        "{b}"
    );
}

#[tokio::test]
async fn the_desk_page_offers_serve_later_and_the_undo_in_both_languages() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    issue(&admin, "civil").await;
    let desk = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    let (s, to) = desk.post("/desk/1/call-next", &[]).await;
    assert_eq!((s, to.as_str()), (303, "/desk?counter=1&done=called"));
    let (_, html) = desk.get("/desk?counter=1").await;
    assert!(html.contains("id=\"serve-later\"") && html.contains("خدمته لاحقاً"));
    let (s, html) = desk.post("/desk/1/serve-later", &[("position", "x")]).await;
    assert_eq!(s, 400);
    assert!(html.contains("1 يعني التالي"), "the app's Arabic error");
    let (s, to) = desk.post("/desk/1/no-show", &[]).await;
    assert_eq!((s, to.as_str()), (303, "/desk?counter=1&done=no_show"));
    let (_, html) = desk.get_in("/desk?counter=1", "en").await;
    assert!(
        html.contains("id=\"undo-no-show\"") && html.contains("Undo no-show of B001"),
        "English undo button"
    );
    let (s, to) = desk.post("/desk/1/undo-no-show", &[]).await;
    assert_eq!(
        (s, to.as_str()),
        (303, "/desk?counter=1&done=no_show_undone")
    );
    let (_, html) = desk.get("/desk?counter=1").await;
    assert!(
        html.contains("id=\"current-ticket\""),
        "the ticket is the counter's again"
    );
}

// ---- #15.5 live updates ------------------------------------------------------------------

/// Reads the staff event stream until `name` arrives (or fails after 10 s).
async fn next_event(resp: &mut reqwest::Response, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event; got {seen}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(at) = seen.find(&format!("event: {name}\n")) {
            return seen[at..].to_string();
        }
    }
}

#[tokio::test]
async fn desk_and_reception_pages_follow_the_queue_live() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let http = reqwest::Client::new();
    let mut stream = http
        .get(format!("{}/api/v1/events", node.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    issue(&admin, "civil").await;
    let ev = next_event(&mut stream, "ticket_issued").await;
    assert!(ev.contains("\"waiting\":1"), "{ev}");
    admin.post("/counters/1/call-next", json!({})).await;
    next_event(&mut stream, "ticket_called").await;
    admin
        .post("/counters/1/serve-later", json!({"position": 1}))
        .await;
    let ev = next_event(&mut stream, "queue_changed").await;
    assert!(
        ev.contains("\"group\":\"civil\"") && ev.contains("\"waiting\":1"),
        "{ev}"
    );

    // The pages mark what the script refreshes, and the script is served.
    let desk = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    let (_, html) = desk.get("/desk?counter=1").await;
    assert!(html.contains("/assets/live.js") && html.contains("data-live-src=\"/desk?counter=1\""));
    assert!(html.contains("id=\"waiting-count\" data-live"));
    let (_, html) = desk.get("/reception").await;
    assert!(
        html.contains("data-live-src=\"/reception\"")
            && html.contains("id=\"waiting-section\" data-live")
    );
    let (s, js) = desk.get("/assets/live.js").await;
    assert_eq!(s, 200);
    assert!(
        js.contains("EventSource") && js.contains("queue_changed") && js.contains("setInterval")
    );
}

// ---- #15.12 cash: voids and the daily close ---------------------------------------------

const NID: &str = "01234567890";

/// A clerk with the justice permission, a paid criminal-record case; returns (clerk,
/// case number, receipt number).
async fn paid_case(node: &TestNode, clerk_name: &str) -> (support::Client, String, String) {
    let clerk = node
        .staff(
            clerk_name,
            &["clerk"],
            &[("justice", "2099-12-31"), ("civil_affairs", "2099-12-31")],
        )
        .await;
    let (s, b) = clerk.post("/citizens", support::citizen(NID)).await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, case) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "سفر"}}),
        )
        .await;
    assert_eq!(s, 201, "{case}");
    let case_no = case["case_no"].as_str().unwrap().to_string();
    let (s, paid) = clerk
        .post(
            &format!("/cases/{case_no}/payment"),
            json!({"method": "cash"}),
        )
        .await;
    assert_eq!(s, 200, "{paid}");
    let receipt = paid["payment"]["receipt"].as_str().unwrap().to_string();
    (clerk, case_no, receipt)
}

#[tokio::test]
async fn a_receipt_is_voided_with_a_reason_and_another_supervisors_approval_never_deleted() {
    let node = TestNode::start().await;
    let (clerk, case_no, receipt) = paid_case(&node, "rami").await;
    let supervisor = node.staff("sup1", &["supervisor"], &[]).await;
    let (s, close) = supervisor.get("/reports/cash").await;
    assert_eq!(s, 200, "{close}");
    let fee_total = close["totals"]["total"].as_i64().unwrap();
    assert!(fee_total > 0 && close["totals"]["receipts"] == 1, "{close}");
    assert_eq!(
        close["totals"]["authority_fee"].as_i64().unwrap()
            + close["totals"]["surcharge"].as_i64().unwrap(),
        fee_total
    );

    let (s, b) = clerk
        .post(
            &format!("/receipts/{receipt}/void"),
            json!({"reason": "  "}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["field"].as_str()),
        (400, Some("reason")),
        "{b}"
    );
    let (s, b) = clerk
        .post("/receipts/MID-R-999999/void", json!({"reason": "x"}))
        .await;
    assert!(s == 404 || s == 400, "{s} {b}");
    let (s, v) = clerk
        .post(
            &format!("/receipts/{receipt}/void"),
            json!({"reason": "wrong service chosen"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, b) = clerk
        .post(
            &format!("/receipts/{receipt}/void"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("void_pending"))
    );
    // Asked is not voided: the receipt still counts until a supervisor approves.
    let (_, close) = supervisor.get("/reports/cash").await;
    assert_eq!(close["totals"]["receipts"], 1);
    let (s, _) = clerk
        .post(&format!("/receipts/{receipt}/void/approve"), json!({}))
        .await;
    assert_eq!(s, 403, "a clerk does not approve");
    let (_, pending) = supervisor.get("/receipts/voids").await;
    assert_eq!(pending[0]["receipt_no"], receipt.as_str());
    let (s, v) = supervisor
        .post(&format!("/receipts/{receipt}/void/approve"), json!({}))
        .await;
    assert_eq!((s, v["approved_by"].as_str()), (200, Some("sup1")), "{v}");

    let (_, close) = supervisor.get("/reports/cash").await;
    assert_eq!(
        (
            close["totals"]["receipts"].as_i64(),
            close["totals"]["voided"].as_i64(),
            close["totals"]["total"].as_i64()
        ),
        (Some(0), Some(1), Some(0)),
        "{close}"
    );
    // Never deleted: the receipt is still listed, and the case keeps its payment.
    assert_eq!(
        close["clerks"][0]["receipts"][0]["receipt_no"],
        receipt.as_str()
    );
    assert_eq!(
        close["clerks"][0]["receipts"][0]["void"]["reason"],
        "wrong service chosen"
    );
    let (_, case) = clerk.get(&format!("/cases/{case_no}")).await;
    assert_eq!(case["payment"]["receipt"], receipt.as_str());
    // The void is in the case document, so it syncs with the case.
    let center: markaz_sync::model::ids::CenterId = node.app.settings.center_id.clone();
    let no: markaz_sync::model::ids::CaseNo = case_no.parse().unwrap();
    let voids = node
        .app
        .db
        .writer
        .write(move |tx| -> Result<_, markaz_node::error::AppError> {
            Ok(tx.docs.read(
                tx.conn,
                &markaz_sync::docs::DocId::case(Some(&center), &no),
                markaz_sync::docs::read_receipt_voids,
            )?)
        })
        .await
        .unwrap()
        .expect("the case document")
        .unwrap();
    assert_eq!(voids.len(), 1);
    assert_eq!(
        (voids[0].receipt.as_str(), voids[0].approved_by.as_str()),
        (receipt.as_str(), "sup1")
    );

    // The one who asked cannot approve their own request, even as a supervisor.
    let (_, case2, receipt2) = {
        let (s, case) = clerk
            .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "عمل"}}))
            .await;
        assert_eq!(s, 201, "{case}");
        let no = case["case_no"].as_str().unwrap().to_string();
        let (_, paid) = clerk
            .post(&format!("/cases/{no}/payment"), json!({"method": "cash"}))
            .await;
        (
            (),
            no,
            paid["payment"]["receipt"].as_str().unwrap().to_string(),
        )
    };
    let _ = case2;
    supervisor
        .post(
            &format!("/receipts/{receipt2}/void"),
            json!({"reason": "paid twice"}),
        )
        .await;
    let (s, b) = supervisor
        .post(&format!("/receipts/{receipt2}/void/approve"), json!({}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "{b}"
    );
}

#[tokio::test]
async fn the_daily_close_is_per_clerk_and_per_authority_printable_and_csv() {
    let node = TestNode::start().await;
    let (rami, _, receipt) = paid_case(&node, "rami").await;
    let (lina, _, _) = paid_case(&node, "lina").await;
    let admin = node.admin().await;
    let (_, close) = admin.get("/reports/cash?day=2026-11-29").await;
    assert_eq!(close["clerks"].as_array().unwrap().len(), 2, "{close}");
    assert_eq!(close["by_authority"][0]["authority"], "justice");
    assert_eq!(close["by_authority"][0]["totals"]["receipts"], 2);
    let (_, only) = admin.get("/reports/cash?clerk=rami").await;
    assert_eq!(only["clerks"].as_array().unwrap().len(), 1);
    // A clerk sees their own close only.
    let (_, own) = lina.get("/reports/cash").await;
    assert_eq!(
        (
            own["clerks"].as_array().unwrap().len(),
            own["clerks"][0]["clerk"].as_str()
        ),
        (1, Some("lina"))
    );
    let (s, _) = lina.get("/reports/cash?clerk=rami").await;
    assert_eq!(s, 403);
    let (_, other_day) = admin.get("/reports/cash?day=2026-11-28").await;
    assert_eq!(other_day["totals"]["receipts"], 0);
    let (s, _) = rami.get("/reports/cash?day=28/11/2026").await;
    assert_eq!(s, 400);

    let pages = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    let (s, html) = pages.get("/cash?day=2026-11-29").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("الإغلاق اليومي") && html.contains(&receipt) && html.contains("id=\"print\""),
        "printable Arabic close"
    );
    assert!(
        html.contains("Staff rami") && html.contains("وزارة العدل"),
        "clerks by name, authorities in words"
    );
    let (_, html_en) = pages.get_in("/cash?day=2026-11-29", "en").await;
    assert!(html_en.contains("Daily cash close") && html_en.contains("Center surcharge"));
    let resp = reqwest::Client::new()
        .get(format!("{}/cash/close.csv?day=2026-11-29", node.base))
        .header("cookie", &pages.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("day,clerk,clerk_name,receipt"), "{csv}");
    assert!(
        csv.contains(&receipt) && csv.contains("\"Staff lina\"") && csv.contains(",justice,"),
        "{csv}"
    );

    // The clerk asks for a void on the case page; the supervisor approves on the close.
    let rami_pages = Pages::login(&node, "rami", "a-long-password").await;
    let case_no = {
        let (_, c) = rami.get("/reports/cash").await;
        c["clerks"][0]["receipts"][0]["case_no"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, html) = rami_pages.get(&format!("/cases/{case_no}")).await;
    assert!(html.contains("id=\"void-receipt\""));
    let (s, html) = rami_pages
        .post(&format!("/cash/receipts/{receipt}/void"), &[("reason", "")])
        .await;
    assert_eq!(s, 400);
    assert!(
        html.contains("void_reason-error") && html.contains("السبب مطلوب"),
        "the app's Arabic error"
    );
    let (s, to) = rami_pages
        .post(
            &format!("/cash/receipts/{receipt}/void"),
            &[("reason", "خطأ في الخدمة")],
        )
        .await;
    assert_eq!(
        (s, to),
        (303, format!("/cases/{case_no}?done=void_requested"))
    );
    let (_, html) = pages.get("/cash").await;
    assert!(
        html.contains(&format!("id=\"approve-{receipt}\"")),
        "pending void listed for approval"
    );
    let (s, to) = pages
        .post(&format!("/cash/receipts/{receipt}/approve"), &[])
        .await;
    assert_eq!((s, to.as_str()), (303, "/cash?done=void_approved"));
    let (_, html) = pages.get(&format!("/cases/{case_no}/receipt")).await;
    assert!(
        html.contains("id=\"voided\""),
        "the printed receipt says void"
    );
}

// ---- #15.13 small fixes ------------------------------------------------------------------

#[tokio::test]
async fn case_pages_show_choices_in_words_and_people_by_name() {
    let node = TestNode::start().await;
    let (clerk, _, _) = paid_case(&node, "rami").await;
    let (s, case) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "civil_extract", "fields": {"extract_type": "family", "registry_place": "الميدان", "registry_number": "123"}}),
        )
        .await;
    assert_eq!(s, 201, "{case}");
    let no = case["case_no"].as_str().unwrap();
    let pages = Pages::login(&node, "rami", "a-long-password").await;
    let (_, html) = pages.get(&format!("/cases/{no}")).await;
    assert!(
        html.contains("عائلي") && !html.contains(">family<"),
        "the choice in words"
    );
    assert!(html.contains("Staff rami"), "the history names the clerk");
    assert!(!html.contains("<td>rami</td>"), "not the username");
    let (_, html) = pages.get_in(&format!("/cases/{no}"), "en").await;
    assert!(html.contains(">Family<"), "English words");
    // Cancelling needs a reason, told in Arabic next to the field.
    let (s, html) = pages
        .post(
            &format!("/cases/{no}/advance"),
            &[("action", "cancel"), ("reason", " ")],
        )
        .await;
    assert_eq!(s, 400);
    assert!(html.contains("reason-error") && html.contains("السبب مطلوب"));
}

// ---- #15.6 fewer clicks: the case form offers what the clerk can process ---------------

#[tokio::test]
async fn the_case_form_offers_the_tickets_group_and_the_clerks_permissions_only() {
    let node = TestNode::start().await;
    node.staff(
        "nour",
        &["clerk", "reception"],
        &[("justice", "2099-12-31"), ("civil_affairs", "2099-12-31")],
    )
    .await;
    let admin = node.admin().await;
    let (_, t) = admin.post("/tickets", json!({"group": "civil"})).await;
    let ticket = t["id"].as_i64().unwrap();
    let nour = Pages::login(&node, "nour", "a-long-password").await;
    let option = |code: &str| format!("<option value=\"{code}\"");
    let (s, html) = nour.get(&format!("/desk/case?ticket={ticket}")).await;
    assert_eq!(s, 200);
    assert!(
        html.contains(&option("civil_extract")),
        "the ticket's group"
    );
    assert!(
        !html.contains(&option("criminal_record")),
        "not another group's service"
    );
    let (_, html) = nour.get("/desk/case").await;
    assert!(html.contains(&option("civil_extract")) && html.contains(&option("criminal_record")));
    assert!(
        !html.contains(&option("re_extract")),
        "no real-estate permission, not offered"
    );
}

#[tokio::test]
async fn reception_finds_citizens_by_name_and_the_desk_leads_to_registration() {
    let node = TestNode::start().await;
    let clerk = node
        .staff(
            "nour",
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await;
    let (s, b) = clerk.post("/citizens", support::citizen(NID)).await;
    assert_eq!(s, 201, "{b}");
    let (s, found) = clerk
        .get("/citizens?name=%D8%A7%D9%84%D8%AE%D8%B7%D9%8A%D8%A8")
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(
        found[0]["national_id"], NID,
        "found by part of the name: {found}"
    );
    let (_, none) = clerk.get("/citizens?name=%25%25").await;
    assert_eq!(
        none.as_array().map(Vec::len),
        Some(0),
        "'%' is a letter, not a wildcard"
    );
    let (s, _) = clerk.get("/citizens?name=x").await;
    assert_eq!(s, 400, "one letter is too little");

    let pages = Pages::login(&node, "nour", "a-long-password").await;
    let (_, html) = pages.get("/reception?name=%D8%A3%D8%AD%D9%85%D8%AF").await;
    assert!(
        html.contains("أحمد محمد الخطيب"),
        "the reception search by name"
    );
    // A case for an unregistered id links to a registration form that starts with it.
    let (s, html) = pages
        .post(
            "/desk/case",
            &[
                ("service", "criminal_record"),
                ("national_id", "09876543210"),
                ("f.purpose", "سفر"),
            ],
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        html.contains("id=\"register-first\"") && html.contains("/reception?nid=09876543210"),
        "link to registration"
    );
    let (_, html) = pages.get("/reception?nid=09876543210").await;
    assert!(
        html.contains(
            "id=\"national_id\" name=\"national_id\" type=\"text\" value=\"09876543210\""
        ),
        "registration starts with the id"
    );
}
