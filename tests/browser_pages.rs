//! Every main page in a real browser, in Arabic and in English, at 1366×768 and on a
//! phone: a screenshot of each for review (tests/output/screenshots/), and the
//! accessibility basics — `lang` and `dir`, a label on every input, every control
//! reachable with Tab. Also: each role sees only its own pages.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::{Browser, login, set_lang};
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, Api, NodeProcess};
use serde_json::json;

const CITIZEN: &str = "01020304050";

async fn seed(api: &Api) -> Result<String> {
    let (s, b) = api
        .post(
            &format!("/staff/{ADMIN_USER}/permissions"),
            json!({"authority": "civil_affairs", "expires_on": "2099-12-31"}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "grant: {s} {b}");
    let (s, b) = api
        .post(
            "/citizens",
            json!({"national_id": CITIZEN, "full_name": "ريم حداد", "father_name": "سليم", "mother_name": "منى", "birth_date": "1990-02-03",
                   "birth_place": "دمشق", "phone": "0933111222", "address": "القنوات، دمشق"}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "citizen: {s} {b}");
    for _ in 0..3 {
        let (s, b) = api
            .post(
                "/tickets",
                json!({"group": "civil", "national_id": CITIZEN}),
            )
            .await?;
        ensure!(s == 200 || s == 201, "ticket: {s} {b}");
    }
    let (s, called) = api.post("/counters/1/call-next", json!({})).await?;
    ensure!(s == 200, "call: {s} {called}");
    let ticket_id = called["id"]
        .as_i64()
        .or_else(|| called["ticket"]["id"].as_i64());
    let (s, case) = api
        .post("/cases", json!({"national_id": CITIZEN, "service": "birth_statement", "fields": {"person_national_id": "02030405060"}, "ticket_id": ticket_id}))
        .await?;
    ensure!(s == 200 || s == 201, "case: {s} {case}");
    case["case_no"]
        .as_str()
        .map(str::to_string)
        .context("case_no in the answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_pages_in_both_languages_are_accessible() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let result = scenario(&b).await;
    b.close().await?;
    result
}

async fn scenario(b: &Browser) -> Result<()> {
    let node = NodeProcess::start("mazzeh").await?;
    let base = node.base_url.clone();
    let api = Api::login(&base, ADMIN_USER, ADMIN_PASSWORD).await?;
    let case_no = seed(&api).await?;

    // The accessibility check itself catches what it claims to: a page without lang/dir,
    // an unlabelled input, a control Tab cannot reach.
    b.goto("data:text/html,<html><body><input id=x><a href='/'>a</a></body></html>")
        .await?;
    let err = b
        .check_accessibility()
        .await
        .expect_err("an unlabelled input on a page without lang fails");
    ensure!(format!("{err:#}").contains("without a label"), "{err:#}");
    b.goto("data:text/html,<html lang=en dir=ltr><body><button tabindex=-1>x</button><span tabindex=0 style='display:inline-block;width:9px;height:9px' onfocus='this.blur()'></span></body></html>")
        .await?;
    ensure!(
        b.check_accessibility().await.is_err(),
        "a control that never keeps focus is reported"
    );

    // The login page, before anyone logs in.
    b.goto(&format!("{base}/")).await?;
    ensure!(
        b.path().await?.starts_with("/login"),
        "/ sends a visitor to the login page"
    );
    b.check_accessibility().await?;
    b.screenshot("ar-login").await?;
    set_lang(b, "en").await?;
    ensure!(
        b.js("return document.documentElement.dir").await? == json!("ltr"),
        "English is left-to-right"
    );
    b.screenshot("en-login").await?;
    set_lang(b, "ar").await?;

    login(b, &base, ADMIN_USER, ADMIN_PASSWORD).await?;
    let pages = [
        ("reception", "/reception".to_string()),
        ("desk", "/desk?counter=1".to_string()),
        ("case-new", "/desk/case?service=re_extract".to_string()),
        ("cases", "/cases".to_string()),
        ("case", format!("/cases/{case_no}")),
        ("supervisor", "/supervisor".to_string()),
        ("technician", "/technician".to_string()),
        ("display", "/display".to_string()),
        ("ticket-print", "/tickets/1/print".to_string()),
    ];
    for lang in ["ar", "en"] {
        b.set_size(1366, 768).await?;
        for (name, path) in &pages {
            b.goto(&format!("{base}{path}")).await?;
            set_lang(b, lang).await?;
            let (l, d) = (
                b.js("return document.documentElement.lang").await?,
                b.js("return document.documentElement.dir").await?,
            );
            ensure!(
                l == json!(lang) && d == json!(if lang == "ar" { "rtl" } else { "ltr" }),
                "{path}: lang {l} dir {d}"
            );
            // No catalog key may leak onto a page as raw text (the logs show action names).
            let leaked = b
                .js("const c = document.body.cloneNode(true); c.querySelectorAll('#audit, #events, #errors, script, template').forEach(e => e.remove()); return (c.textContent.match(/\\b(nav|desk|case|cases|intake|status|step|reception|report|staff|panel|priority|citizen|ticket|error)\\.[a-z_]+\\b/g) || []).join(' ')")
                .await?;
            ensure!(
                leaked == json!(""),
                "{path} ({lang}) shows raw catalog keys: {leaked}"
            );
            b.check_accessibility()
                .await
                .with_context(|| format!("{path} in {lang}"))?;
            b.screenshot(&format!("{lang}-{name}")).await?;
        }
        // A technician's phone.
        b.set_size(390, 844).await?;
        for (name, path) in [
            ("technician", "/technician"),
            ("desk", "/desk?counter=1"),
            ("reception", "/reception"),
        ] {
            b.goto(&format!("{base}{path}")).await?;
            let overflow = b
                .js("return document.documentElement.scrollWidth > window.innerWidth + 1")
                .await?;
            ensure!(
                overflow == json!(false),
                "{path} ({lang}) scrolls sideways on a phone"
            );
            b.screenshot(&format!("{lang}-phone-{name}")).await?;
        }
    }
    b.set_size(1366, 768).await?;

    // Each technician panel shows its data, or "not configured" until a task feeds it.
    b.goto(&format!("{base}/technician")).await?;
    set_lang(b, "en").await?;
    // (The uplink monitor may already feed the link panel; the others wait for devices.)
    for panel in ["link", "modem", "power", "sync"] {
        let text = b.text(&format!("#panel-{panel}")).await?;
        let live = b
            .js(&format!(
                "return !!document.querySelector('#panel-{panel} dl.facts dd');"
            ))
            .await?
            == json!(true);
        ensure!(
            live || text.contains("Not configured"),
            "{panel} panel is neither live nor 'Not configured': {text}"
        );
    }

    // The English interface writes Latin digits; Arabic follows the center's style.
    b.goto(&format!("{base}/desk?counter=1")).await?;
    let shown = b.text("#current-ticket").await?;
    ensure!(shown == "B001", "English: Latin digits: {shown}");
    set_lang(b, "ar").await?;
    let shown = b.text("#current-ticket").await?;
    ensure!(shown == "B٠٠١", "Arabic: Arabic-Indic digits: {shown}");
    set_lang(b, "en").await?;

    // A supervisor sees the oversight pages but not the desk or the technician page.
    let (s, body) = api
        .post("/staff", json!({"username": "super1", "full_name": "Supervisor One", "password": "supervisor-pass", "roles": ["supervisor"], "language": "en"}))
        .await?;
    ensure!(s == 200 || s == 201, "supervisor: {s} {body}");
    b.click("#logout").await?;
    b.wait_until(
        "logged out",
        "return location.pathname.startsWith('/login');",
        Duration::from_secs(10),
    )
    .await?;
    login(b, &base, "super1", "supervisor-pass").await?;
    ensure!(
        b.path().await? == "/cases",
        "a supervisor lands on the first page of the role"
    );
    let menu = b.text("nav .menu").await?;
    ensure!(
        menu.contains("Supervisor")
            && !menu.contains("Desk")
            && !menu.contains("Technician")
            && !menu.contains("Reception"),
        "supervisor menu: {menu}"
    );
    b.goto(&format!("{base}/desk")).await?;
    ensure!(
        b.js("return document.title")
            .await?
            .as_str()
            .unwrap_or("")
            .contains("Not allowed"),
        "desk refused to a supervisor"
    );
    Ok(())
}
