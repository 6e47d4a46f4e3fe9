//! The supervisor's live board and figures (issue #15.10), over HTTP as a browser sends
//! it: who serves at which counter, the longest waits and the tickets beyond their
//! group's target; the figures of a day and of a range per day, group, service and clerk;
//! their CSV (UTF-8 with a BOM); `?day=`, `?from=&to=`, and clear errors for bad dates.
//! Also the display's spoken call: the clip list and the clips themselves.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::{ADMIN_PASSWORD, Pages, TestNode};

const NID: &str = "01234567890";

#[tokio::test]
async fn the_board_shows_counters_longest_waits_and_tickets_beyond_target() {
    // Civil tickets may wait 20 minutes (the default target); real estate 60.
    let node = TestNode::start_with(|cfg| {
        for g in &mut cfg.queue.groups {
            if g.id.as_str() == "real_estate" {
                g.target_wait_minutes = 60;
            }
        }
    })
    .await;
    let rami = node
        .staff("rami", &["clerk"], &[("civil_affairs", "2099-12-31")])
        .await;
    let desk = node.admin().await;
    for group in ["civil", "civil", "civil", "real_estate"] {
        let (s, b) = desk.post("/tickets", json!({"group": group})).await;
        assert_eq!(s, 201, "{b}");
    }
    node.advance(Duration::from_secs(25 * 60));
    let (s, b) = desk.post("/tickets", json!({"group": "civil"})).await;
    assert_eq!(s, 201, "{b}");
    let (s, called) = rami.post("/counters/2/call-next", json!({})).await;
    assert_eq!(s, 200, "{called}");
    assert_eq!(called["number"], "B001", "{called}");

    let pages = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    let (s, html) = pages.get_in("/supervisor/board", "en").await;
    assert_eq!(s, 200, "{html}");
    let row = html
        .split("id=\"board-counter-2\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("counter 2 on the board");
    assert!(
        row.contains("Staff rami") && row.contains("B001") && row.contains("Civil registry"),
        "who serves what at counter 2: {row}"
    );
    let free = html
        .split("id=\"board-counter-1\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap();
    assert!(free.contains("Free"), "{free}");
    // B002 and B003 waited 25 minutes: beyond the civil target. C001 too, but its
    // group's target is 60. B004 was just issued.
    let beyond = html
        .split("id=\"board-beyond\"")
        .nth(1)
        .and_then(|r| r.split("</ul>").next())
        .expect("the list of tickets beyond target");
    assert!(
        beyond.contains("B002") && beyond.contains("B003"),
        "{beyond}"
    );
    assert!(
        !beyond.contains("C001") && !beyond.contains("B004"),
        "{beyond}"
    );
    let longest = html
        .split("id=\"board-longest\"")
        .nth(1)
        .and_then(|r| r.split("</table>").next())
        .unwrap();
    let (b2, c1, b4) = (
        longest.find("B002").unwrap(),
        longest.find("C001").unwrap(),
        longest.find("B004").unwrap(),
    );
    assert!(b2 < b4 && c1 < b4, "longest first: {longest}");
    assert!(
        html.contains("id=\"board-called-late\">1<"),
        "B001 was called after 25 minutes"
    );

    // The same board in Arabic, on the supervisor's page, live.
    let (s, html) = pages.get_in("/supervisor", "ar").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("data-live-src=\"/supervisor/board\"")
            && html.contains("id=\"board\" data-live")
    );
    assert!(html.contains("الأحوال المدنية") && html.contains("تجاوز الهدف"));

    // A clerk has no board.
    let clerk = Pages::login(&node, "rami", "a-long-password").await;
    assert_eq!(clerk.get_in("/supervisor/board", "en").await.0, 403);
    assert_eq!(clerk.get_in("/supervisor/figures.csv", "en").await.0, 403);
}

#[tokio::test]
async fn figures_per_day_range_service_and_clerk_with_csv_and_clear_date_errors() {
    let node = TestNode::start().await;
    let rami = node
        .staff("rami", &["clerk"], &[("justice", "2099-12-31")])
        .await;
    let desk = node.admin().await;
    // Day one (2026-11-29): two tickets, one served with a paid case.
    for _ in 0..2 {
        let (s, b) = desk.post("/tickets", json!({"group": "judicial"})).await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = rami.post("/counters/1/call-next", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rami.post("/citizens", support::citizen(NID)).await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, case) = rami
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "سفر"}}),
        )
        .await;
    assert_eq!(s, 201, "{case}");
    let case_no = case["case_no"].as_str().unwrap().to_string();
    let (s, paid) = rami
        .post(
            &format!("/cases/{case_no}/payment"),
            json!({"method": "cash"}),
        )
        .await;
    assert_eq!(s, 200, "{paid}");
    node.advance(Duration::from_secs(6 * 60));
    let (s, b) = rami.post("/counters/1/finish", json!({})).await;
    assert_eq!(s, 200, "{b}");
    // Day two (2026-11-30): three tickets.
    node.advance(Duration::from_secs(24 * 3600));
    // Sessions do not outlive a night.
    let desk = node.admin().await;
    for _ in 0..3 {
        let (s, b) = desk.post("/tickets", json!({"group": "judicial"})).await;
        assert_eq!(s, 201, "{b}");
    }

    let pages = Pages::login(&node, "admin", ADMIN_PASSWORD).await;
    // One day.
    let (s, html) = pages
        .get_in("/supervisor/figures?day=2026-11-29", "en")
        .await;
    assert_eq!(s, 200, "{html}");
    let by_day = html
        .split("id=\"fig-by-day\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap();
    assert!(
        by_day.contains("2026-11-29\u{2069}</td><td>2</td><td>1</td>"),
        "{by_day}"
    );
    assert!(!by_day.contains("2026-11-30"), "{by_day}");
    let by_clerk = html
        .split("id=\"fig-by-clerk\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap();
    assert!(
        by_clerk.contains("<td>Staff rami</td><td>1</td><td>1</td><td>6</td><td>1</td><td>1</td>"),
        "called 1, finished 1, 6 minutes, 1 case, 1 receipt: {by_clerk}"
    );
    assert!(
        html.contains("Criminal record") || html.contains("criminal"),
        "per service"
    );

    // A range: both days, in Arabic (Arabic-Indic digits on the page).
    let (s, html) = pages
        .get_in("/supervisor/figures?from=2026-11-29&to=2026-11-30", "ar")
        .await;
    assert_eq!(s, 200);
    assert!(
        html.contains("٢٠٢٦-١١-٢٩") && html.contains("٢٠٢٦-١١-٣٠"),
        "both days"
    );

    // The CSV: a BOM, Arabic names, both days and the totals.
    let (s, ct, bytes) = pages
        .get_raw(
            "/supervisor/figures.csv?from=2026-11-29&to=2026-11-30",
            "ar",
        )
        .await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/csv; charset=utf-8"), "{ct}");
    assert!(
        bytes.starts_with(&[0xEF, 0xBB, 0xBF]),
        "UTF-8 BOM for Excel"
    );
    let csv = String::from_utf8(bytes[3..].to_vec()).unwrap();
    assert!(
        csv.starts_with("from,to\r\n2026-11-29,2026-11-30\r\n"),
        "{csv}"
    );
    assert!(csv.contains("\"2026-11-29\",\"\",2,1,0,1,"), "{csv}");
    assert!(csv.contains("\"2026-11-30\",\"\",3,0,0,3,"), "{csv}");
    assert!(csv.contains("\"total\",\"\",5,1,0,4,"), "{csv}");
    assert!(csv.contains("\"judicial\",\"السجل العدلي\",5,"), "{csv}");
    assert!(csv.contains("\"criminal_record\",\""), "{csv}");
    assert!(
        csv.contains("\"rami\",\"Staff rami\",1,1,6.0,1,1,"),
        "{csv}"
    );
    // ?day= alone.
    let (s, _, bytes) = pages
        .get_raw("/supervisor/figures.csv?day=2026-11-30", "en")
        .await;
    assert_eq!(s, 200);
    let csv = String::from_utf8(bytes[3..].to_vec()).unwrap();
    assert!(
        csv.contains("\"total\",\"\",3,0,0,3,") && !csv.contains("2026-11-29"),
        "{csv}"
    );

    // Bad dates: 400 with the reason, in the user's language.
    let (s, ct, body) = pages
        .get_raw("/supervisor/figures.csv?day=2026-13-45", "en")
        .await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(s, 400);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(body.contains("“2026-13-45” is not a date"), "{body}");
    let (s, html) = pages
        .get_in("/supervisor/figures?day=29/11/2026", "ar")
        .await;
    assert_eq!(s, 400);
    assert!(
        html.contains("id=\"from-error\"")
            && html.contains("ليس تاريخاً")
            && html.contains("aria-invalid=\"true\""),
        "the reason next to the field"
    );
    let (s, html) = pages
        .get_in("/supervisor/figures?from=2026-11-30&to=2026-11-29", "en")
        .await;
    assert_eq!(s, 400);
    assert!(html.contains("id=\"to-error\"") && html.contains("before its start"));

    // The supervisor's page shows another day's queue with ?day=.
    let (s, html) = pages.get_in("/supervisor?day=2026-11-29", "en").await;
    assert_eq!(s, 200);
    assert!(html.contains("2026-11-29"), "the day in the title");
    let today = html
        .split("id=\"today\"")
        .nth(1)
        .and_then(|t| t.split("</dl>").next())
        .unwrap();
    assert!(today.contains("<dd>2</dd>"), "two issued that day: {today}");
    let (s, html) = pages.get_in("/supervisor?day=tomorrow", "en").await;
    assert_eq!(s, 400);
    assert!(html.contains("“tomorrow” is not a date"), "clear error");
}

#[tokio::test]
async fn the_display_names_the_clips_of_a_call_and_serves_them_cached() {
    let node = TestNode::start().await;
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .get(format!(
            "{}/display/speech?ticket=B034&counter=5",
            node.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clips: Vec<String> = answer["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let names: Vec<&str> = clips
        .iter()
        .map(|u| {
            u.strip_prefix("/display/clips/")
                .and_then(|u| u.split(".opus?v=").next())
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        ["ticket", "letter_b", "n4", "and_n30", "to_counter", "n5"]
    );
    for url in &clips {
        let resp = http
            .get(format!("{}{url}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "audio/ogg");
        assert!(
            resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=31536000"),
            "cached for a year"
        );
        assert!(resp.bytes().await.unwrap().starts_with(b"OggS"));
    }
    for bad in [
        "ticket=B034&counter=0",
        "ticket=34&counter=5",
        "ticket=B034&counter=x",
    ] {
        let resp = http
            .get(format!("{}/display/speech?{bad}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["code"].as_str().unwrap().starts_with("invalid_"),
            "{body}"
        );
    }
    let resp = http
        .get(format!("{}/display/clips/nothing.opus", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
