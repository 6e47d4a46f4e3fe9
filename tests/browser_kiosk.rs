//! Issue #15.7 and #15.8 in a real browser against a real node, in Arabic and English, at
//! 1366×768 and at phone size: the kiosk is authorised by its key (no login), one touch
//! issues a ticket whose slip prints itself and returns to the start; the slip carries
//! the estimated wait and a QR code of the ticket's public status page; that page
//! follows the ticket as a clerk calls it and opens its case, and never shows the
//! citizen; unknown tokens are refused and limited. The slips print on a page exactly as
//! long as their content (Chromium's own PDF of the page, through the DevTools protocol),
//! and the receipt shows when it was paid and the cashier's name.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use browser::{Browser, login, set_lang};
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, Api, NodeProcess};
use serde_json::json;

const KEY: &str = "kiosk-key-0123456789-abcdefghijklmnop";
const CLERK: &str = "clerk1";
const CLERK_NAME: &str = "سلمى الحسن";
const CLERK_PASSWORD: &str = "clerk-password-1";
const NID: &str = "01020304050";
const CITIZEN_NAME: &str = "ريم سليم حداد";

/// A DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (
            reqwest::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

/// The current page printed by Chromium as it would print it (CSS page size honoured):
/// the number of pages and the height of the first, in millimetres.
async fn printed_pages(b: &Browser) -> Result<(usize, f64)> {
    let out = b
        .client
        .issue_cmd(Cdp {
            cmd: "Page.printToPDF",
            params: json!({"preferCSSPageSize": true, "printBackground": true}),
        })
        .await
        .context("Page.printToPDF")?;
    let data = out["data"]
        .as_str()
        .with_context(|| format!("no PDF in {out:.200}"))?;
    let pdf = base64_decode(data)?;
    let text = String::from_utf8_lossy(&pdf);
    let pages = text.matches("/Type /Page\n").count()
        + text.matches("/Type /Page/").count()
        + text.matches("/Type /Page ").count()
        + text.matches("/Type/Page/").count()
        + text.matches("/Type/Page\n").count();
    let media = text
        .split("/MediaBox")
        .nth(1)
        .context("a MediaBox in the PDF")?;
    let nums: Vec<f64> = media
        .trim_start()
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    ensure!(nums.len() == 4, "MediaBox {nums:?}");
    Ok((pages, (nums[3] - nums[1]) * 25.4 / 72.0))
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .with_context(|| format!("not base64: {c}"))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Touches a priority and a service at the kiosk; returns the slip's status URL once the
/// slip is shown (before it goes back to the start).
async fn take_ticket(b: &Browser, priority: &str, group: &str) -> Result<String> {
    b.click(&format!("#priority-{priority}")).await?;
    b.click(&format!("#group-{group}")).await?;
    b.wait_until(
        "the kiosk's slip",
        "return location.pathname.startsWith('/kiosk/tickets/') && !!document.getElementById('qr');",
        Duration::from_secs(10),
    )
    .await?;
    let url = b
        .js("return document.getElementById('qr').dataset.url")
        .await?;
    let url = url.as_str().context("the QR's URL")?.to_string();
    Ok(url)
}

/// Whether the page scrolls sideways.
async fn overflows(b: &Browser) -> Result<bool> {
    Ok(
        b.js("return document.documentElement.scrollWidth > window.innerWidth + 1")
            .await?
            == json!(true),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_prints_tickets_whose_qr_follows_the_turn() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let result = scenario(&b).await;
    b.close().await?;
    result
}

async fn scenario(b: &Browser) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("kiosk.key");
    std::fs::write(&key_file, format!("{KEY}\n"))?;
    let node = NodeProcess::start_with(
        "qanawat",
        &format!("[kiosk]\nkey_file = \"{}\"\n", key_file.display()),
    )
    .await?;
    let base = node.base_url.clone();
    let admin = Api::login(&base, ADMIN_USER, ADMIN_PASSWORD).await?;
    let (s, body) = admin
        .post("/staff", json!({"username": CLERK, "full_name": CLERK_NAME, "password": CLERK_PASSWORD, "roles": ["clerk", "reception"], "language": "ar"}))
        .await?;
    ensure!(s == 201, "create clerk: {s} {body}");
    let (s, body) = admin
        .post(
            &format!("/staff/{CLERK}/permissions"),
            json!({"authority": "justice", "expires_on": "2099-12-31"}),
        )
        .await?;
    ensure!(s == 200, "grant: {s} {body}");
    let clerk = Api::login(&base, CLERK, CLERK_PASSWORD).await?;
    let mut citizen = markaz_e2e::citizen_json(NID, "0944123456");
    citizen["full_name"] = json!(CITIZEN_NAME);
    let (s, body) = clerk.post("/citizens", citizen).await?;
    ensure!(s == 201, "register: {s} {body}");

    // Without its key the kiosk is refused: nobody types a password at a touch screen,
    // and nobody else issues tickets from the LAN.
    b.goto(&format!("{base}/kiosk")).await?;
    ensure!(
        b.js("return !!document.getElementById('group-civil')")
            .await?
            == json!(false),
        "no buttons without the key"
    );
    let refused = b.text("main").await?;
    ensure!(
        refused.contains("غير مهيأ") || refused.contains("not set up"),
        "says the kiosk is not set up: {refused}"
    );
    b.goto(&format!(
        "{base}/kiosk?key=wrong-key-wrong-key-wrong-key-wrong"
    ))
    .await?;
    ensure!(
        b.js("return !!document.getElementById('kiosk-form')")
            .await?
            == json!(false),
        "a wrong key is refused"
    );

    // The start address with the key: kept as a cookie, and the key leaves the URL.
    b.goto(&format!("{base}/kiosk?key={KEY}")).await?;
    b.find("#kiosk-form").await?;
    ensure!(
        b.js("return location.search").await? == json!(""),
        "the key is not left in the address bar"
    );
    set_lang(b, "ar").await?;
    b.check_accessibility().await?;
    ensure!(!overflows(b).await?, "kiosk fits 1366×768");
    b.screenshot("ar-kiosk").await?;

    // One touch after the priority: the slip, bilingual, with the QR and the wait.
    let first_url = take_ticket(b, "elderly", "civil").await?;
    ensure!(
        first_url.starts_with(&format!("{base}/q/")),
        "the QR opens the status page on the node's address: {first_url}"
    );
    let token = first_url.rsplit('/').next().unwrap_or_default().to_string();
    ensure!(
        token.len() == 22,
        "an unguessable token, not the id: {token}"
    );
    let link = b
        .js("return document.getElementById('status-link').getAttribute('href')")
        .await?;
    ensure!(
        link == json!(first_url),
        "the printed link is the QR's: {link}"
    );
    let modules = b
        .js("const s = document.querySelector('#qr svg'); return s ? s.getBoundingClientRect().width : 0")
        .await?;
    ensure!(
        modules.as_f64().unwrap_or(0.0) > 100.0,
        "the QR code is drawn: {modules}"
    );
    let number = b.text("#ticket-number").await?;
    ensure!(number == "B001", "large Latin digits: {number}");
    let display_form = b.text("#ticket-number-ar").await?;
    ensure!(
        display_form == "B٠٠١",
        "the display's form below: {display_form}"
    );
    let wait_en = b.text("#wait-en").await?;
    ensure!(wait_en == "You are next", "nobody ahead: {wait_en}");
    let slip = b.text("#ticket").await?;
    ensure!(
        slip.contains("كبار السن") && slip.contains("Elderly"),
        "the priority is on the slip: {slip}"
    );
    b.screenshot("ar-kiosk-ticket").await?;
    // It printed by itself and goes back to the start.
    b.wait_until(
        "the slip to print",
        "return document.body.dataset.printed === '1';",
        Duration::from_secs(10),
    )
    .await?;
    let page_mm = b
        .js("return Number(document.body.dataset.pageMm || '0')")
        .await?
        .as_f64()
        .unwrap_or(0.0);
    ensure!(
        page_mm > 60.0 && page_mm < 200.0,
        "the page is the slip's height: {page_mm} mm"
    );
    b.wait_until(
        "the start page again",
        "return location.pathname === '/kiosk' && !!document.getElementById('kiosk-form');",
        Duration::from_secs(20),
    )
    .await?;
    ensure!(
        b.js("return sessionStorage.getItem('markazPrinted')")
            .await?
            == json!("1"),
        "window.print() was called once"
    );

    // A second ticket waits behind the first; nobody of the group was served yet, so
    // its wait is not known — and the slip says so.
    set_lang(b, "en").await?;
    b.check_accessibility().await?;
    b.screenshot("en-kiosk").await?;
    let second_url = take_ticket(b, "normal", "civil").await?;
    ensure!(second_url != first_url, "each ticket has its own link");
    let wait_en = b.text("#wait-en").await?;
    ensure!(wait_en.contains("not known"), "unknown wait: {wait_en}");
    let wait_ar = b.text("#wait-ar").await?;
    ensure!(wait_ar.contains("غير معروف"), "unknown wait: {wait_ar}");
    let ahead = b.text("#ticket").await?;
    ensure!(
        ahead.contains("People waiting ahead of you: 1"),
        "one ahead: {ahead}"
    );
    ensure!(
        b.text("#ticket-number").await? == "B002",
        "English page, Latin digits"
    );
    b.screenshot("en-kiosk-ticket").await?;

    // The height of a printed slip follows its content: one page each, exactly as long
    // as the slip measures, and the receipt gets a page of its own length. (The same
    // slip without `?auto=1`, which would leave for the start page while printing.)
    let slip_path = b.js("return location.pathname").await?;
    b.goto(&format!("{base}{}", slip_path.as_str().unwrap_or_default()))
        .await?;
    b.wait_until(
        "the slip's page size",
        "return Number(document.body.dataset.pageMm || '0') > 0;",
        Duration::from_secs(10),
    )
    .await?;
    let (pages, ticket_mm) = printed_pages(b).await?;
    let measured = b
        .js("return Number(document.body.dataset.pageMm || '0')")
        .await?
        .as_f64()
        .unwrap_or(0.0);
    ensure!(pages == 1, "the ticket prints on one page, not {pages}");
    ensure!(
        (ticket_mm - measured).abs() < 1.5 && ticket_mm < 190.0,
        "the ticket's page is {ticket_mm:.1} mm for a {measured} mm slip"
    );

    // The status page on a phone: waiting, place in line; no citizen data.
    b.set_size(390, 844).await?;
    b.goto(&first_url).await?;
    set_lang(b, "ar").await?;
    ensure!(
        b.js("return document.getElementById('status').dataset.state")
            .await?
            == json!("waiting"),
        "waiting"
    );
    let text = b.text("#status").await?;
    ensure!(text.contains("B٠٠١"), "the number: {text}");
    ensure!(
        text.contains("عدد المنتظرين قبلك: ٠"),
        "place in line: {text}"
    );
    ensure!(!overflows(b).await?, "the status page fits a phone");
    b.screenshot("ar-phone-ticket-status").await?;

    // A clerk calls it (the elderly ticket first) and opens its case.
    let (s, called) = clerk.post("/counters/3/call-next", json!({})).await?;
    ensure!(s == 200, "call-next: {s} {called}");
    ensure!(
        called["number"] == json!("B001"),
        "the elderly ticket is called first: {called}"
    );
    let ticket_id = called["id"]
        .as_i64()
        .with_context(|| format!("ticket id in {called}"))?;
    b.goto(&first_url).await?;
    ensure!(
        b.js("return document.getElementById('status').dataset.state")
            .await?
            == json!("called"),
        "the page follows the call"
    );
    let go = b.text("#status-counter").await?;
    ensure!(go.contains('٣'), "go to counter 3: {go}");
    b.screenshot("ar-phone-ticket-called").await?;

    let (s, case) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "travel"}, "ticket_id": ticket_id}),
        )
        .await?;
    ensure!(s == 201, "case: {s} {case}");
    let case_no = case["case_no"].as_str().context("case_no")?.to_string();
    let (s, paid) = clerk
        .post(
            &format!("/cases/{case_no}/payment"),
            json!({"method": "cash"}),
        )
        .await?;
    ensure!(s == 200, "pay: {s} {paid}");
    let (s, done) = clerk
        .post("/counters/3/finish", json!({"case_no": case_no}))
        .await?;
    ensure!(s == 200, "finish: {s} {done}");

    for lang in ["ar", "en"] {
        b.goto(&first_url).await?;
        set_lang(b, lang).await?;
        let state = b
            .js("return document.getElementById('status').dataset.state")
            .await?;
        ensure!(state == json!("done"), "served: {state}");
        let case_line = b.text("#status-case").await?;
        ensure!(
            case_line.contains("مدفوعة") || case_line.contains("Paid"),
            "the case's state once it exists ({lang}): {case_line}"
        );
        let page = b.js("return document.body.innerText").await?;
        let page = page.as_str().unwrap_or_default();
        for secret in [
            CITIZEN_NAME,
            NID,
            "٠١٠٢٠٣٠٤٠٥٠",
            case_no.as_str(),
            "0944123456",
        ] {
            ensure!(
                !page.contains(secret),
                "the status page shows {secret} ({lang})"
            );
        }
        let html = b.js("return document.documentElement.outerHTML").await?;
        ensure!(
            !html.as_str().unwrap_or_default().contains(CITIZEN_NAME),
            "no citizen name in the markup"
        );
        ensure!(!overflows(b).await?, "fits a phone ({lang})");
        b.screenshot(&format!("{lang}-phone-ticket-case")).await?;
    }

    // Once somebody of the group was served, a ticket with people ahead gets minutes.
    b.set_size(1366, 768).await?;
    b.goto(&format!("{base}/kiosk")).await?;
    set_lang(b, "en").await?;
    let third_url = take_ticket(b, "normal", "civil").await?;
    let wait_en = b.text("#wait-en").await?;
    ensure!(
        wait_en.starts_with("Estimated wait: about ") && wait_en.ends_with(" min"),
        "minutes from the served ticket: {wait_en}"
    );
    b.goto(&third_url).await?;
    let wait = b.text("#status-wait").await?;
    ensure!(wait == wait_en, "the status page agrees: {wait}");
    b.screenshot("en-ticket-status").await?;
    b.set_size(390, 844).await?;
    b.goto(&format!("{base}/kiosk")).await?;
    ensure!(!overflows(b).await?, "the kiosk fits a phone (en)");
    b.screenshot("en-phone-kiosk").await?;
    set_lang(b, "ar").await?;
    ensure!(!overflows(b).await?, "the kiosk fits a phone (ar)");
    b.screenshot("ar-phone-kiosk").await?;
    b.set_size(1366, 768).await?;

    // The receipt: when it was paid and by whom (the cashier's name, not username), and
    // a page of its own length.
    login(b, &base, ADMIN_USER, ADMIN_PASSWORD).await?;
    // (The slip has no language button: choose it on the case's page.)
    b.goto(&format!("{base}/cases/{case_no}")).await?;
    set_lang(b, "en").await?;
    b.goto(&format!("{base}/cases/{case_no}/receipt")).await?;
    let cashier = b.text("#cashier").await?;
    ensure!(cashier == CLERK_NAME, "the cashier's name: {cashier}");
    let paid_at = b.text("#paid-at").await?;
    ensure!(
        paid_at.len() >= 16 && paid_at.contains(':') && paid_at.contains('-'),
        "payment time: {paid_at}"
    );
    b.wait_until(
        "the receipt's page size",
        "return Number(document.body.dataset.pageMm || '0') > 0;",
        Duration::from_secs(10),
    )
    .await?;
    let measured = b
        .js("return Number(document.body.dataset.pageMm)")
        .await?
        .as_f64()
        .unwrap_or(0.0);
    let (pages, receipt_mm) = printed_pages(b).await?;
    ensure!(pages == 1, "the receipt prints on one page, not {pages}");
    ensure!(
        (receipt_mm - measured).abs() < 1.5,
        "the receipt's page is {receipt_mm:.1} mm for a {measured} mm slip"
    );
    ensure!(
        (receipt_mm - ticket_mm).abs() > 5.0,
        "pages follow content: ticket {ticket_mm:.1} mm, receipt {receipt_mm:.1} mm"
    );
    b.screenshot("en-receipt").await?;
    b.goto(&format!("{base}/cases/{case_no}")).await?;
    set_lang(b, "ar").await?;
    b.goto(&format!("{base}/cases/{case_no}/receipt")).await?;
    ensure!(b.text("#cashier").await? == CLERK_NAME, "Arabic receipt");
    b.screenshot("ar-receipt").await?;

    // Unknown links: a plain "no such ticket", and a guesser is stopped. (From an
    // address of its own: the limit counts per client address, and the browser's
    // lookups above came from 127.0.0.1.)
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = http
            .get(format!("{base}/q/{:0>22}", i))
            .send()
            .await?
            .status()
            .as_u16();
        statuses.push(r);
    }
    ensure!(
        statuses[..10].iter().all(|s| *s == 404) && statuses[10..].iter().all(|s| *s == 429),
        "unknown tokens: 404, then limited: {statuses:?}"
    );
    // The staff's own print page stays behind the login (only the token opens a slip).
    let r = http.get(format!("{base}/tickets/1/print")).send().await?;
    if r.url().path() != "/login" {
        bail!("the staff's print page is open to anyone: {}", r.url());
    }
    Ok(())
}
