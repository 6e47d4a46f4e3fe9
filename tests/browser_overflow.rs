//! No page of the center scrolls sideways (issue #15, tests): every page route of the
//! node — read from the node's route table, so a new page without a row here fails — is
//! rendered in a real browser with long Arabic names (service groups, staff, citizen),
//! four-digit ticket numbers and large counts, in Arabic and in English, at 1920×1080,
//! 1366×768 and on a phone; it fails on horizontal overflow (the document wider than the
//! window, or any element reaching past its edges), naming the page and the element.
//! The waiting-room display must also fit the screen's height: nothing clipped.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use browser::{Browser, set_lang};
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, Api, NodeProcess};
use serde_json::json;

const CITIZEN: &str = "01020304050";
/// The kiosk's key (`[kiosk] key_file`), so `/kiosk` shows its buttons.
const KIOSK_KEY: &str = "overflow-test-kiosk-key-0123456789abcdef";
const LONG_NAME: &str = "عبد الرحمن محمد سعيد الحسيني القباني الدمشقي المعروف بأبي خليل";

/// Long group names: the longest words a hall display and a clerk's page must carry.
const GROUPS: &str = r#"
[[queue.groups]]
id = "judicial"
letter = "A"
name_ar = "السجل العدلي وشهادات عدم المحكومية ووثائق السفر والإقامة للمواطنين والمقيمين"
name_en = "Judicial record, certificates of no criminal record and travel documents"

[[queue.groups]]
id = "civil"
letter = "B"
name_ar = "الأحوال المدنية وقيود النفوس والبطاقات الشخصية والعائلية وتسجيل الولادات والوفيات"
name_en = "Civil registry, personal and family records, identity cards, births and deaths"

[[queue.groups]]
id = "real_estate"
letter = "C"
name_ar = "السجل العقاري والمصالح العقارية وبيانات الملكية والإفراز والتخطيط العمراني"
name_en = "Real estate registry, property statements, parcelling and urban planning"

[[queue.groups]]
id = "finance"
letter = "D"
name_ar = "المالية وبراءات الذمة والضرائب والرسوم العقارية والتكليف المالي السنوي"
name_en = "Finance, tax clearance certificates, property taxes and annual assessments"

[[queue.groups]]
id = "pickup"
letter = "E"
name_ar = "تسليم الوثائق الجاهزة والمعاملات المنجزة والبريد الوارد من الجهات"
name_en = "Pickup of finished documents, completed cases and mail from the authorities"
"#;

/// Which viewports a page is checked at.
#[derive(Clone, Copy, PartialEq)]
enum Sizes {
    /// 1920×1080, 1366×768 and a phone.
    All,
    /// The wall display: 1920×1080 and 1366×768, and it must fit their height too.
    Screen,
}

/// A GET route of the node's web router that is not a page (an asset, a file, a
/// fragment fetched by a script, an answer to a form), and why.
const NOT_PAGES: &[(&str, &str)] = &[
    ("/assets/{name}", "stylesheet and scripts"),
    ("/display/clips/{file}", "the display's audio clips"),
    ("/display/speech", "JSON: the clips of a call"),
    ("/cash/close.csv", "CSV download"),
    ("/supervisor/figures.csv", "CSV download"),
    (
        "/kiosk/tickets/{token}",
        "the kiosk's slip, printed by itself: browser_kiosk checks it prints on one page as long as its content",
    ),
    (
        "/q/{token}",
        "a kiosk ticket's public status page: browser_kiosk opens it at 1366×768 and phone size",
    ),
    (
        "/technician/panels",
        "a fragment of /technician, fetched by its script",
    ),
    ("/", "redirects to the first page of the user's role"),
];

/// The GET routes of the node's web router, read from its source.
fn page_routes() -> Vec<String> {
    let src = include_str!("../node/src/web/mod.rs");
    let body = src.split("Router::new()").nth(1).unwrap_or_default();
    let mut out = Vec::new();
    for chunk in body.split(".route(").skip(1) {
        let Some(path) = chunk.split('"').nth(1) else {
            continue;
        };
        if chunk.contains("get(") {
            out.push(path.to_string());
        }
    }
    out
}

const CHECK: &str = r#"
const W = document.documentElement.clientWidth, H = window.innerHeight;
const screen = arguments[0];
const problems = [];
const doc = document.documentElement;
if (doc.scrollWidth > W + 1) problems.push('the page is ' + doc.scrollWidth + 'px wide in a ' + W + 'px window');
if (screen && doc.scrollHeight > H + 1) problems.push('the page is ' + doc.scrollHeight + 'px tall in a ' + H + 'px window');
const describe = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
  (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '') +
  ' "' + (e.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40) + '"';
// Inside a box that scrolls sideways (a wide table in its card), the box scrolls, not the page.
const scrolls = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
  const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
for (const e of document.querySelectorAll('body *')) {
  if (e.closest('[hidden], template, script, .skip')) continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (!screen && scrolls(e)) continue;
  if (r.right > W + 1 || r.left < -1) problems.push(describe(e) + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + W);
  else if (screen && r.bottom > H + 1) problems.push(describe(e) + ' ends at ' + Math.round(r.bottom) + ' below ' + H);
  if (problems.length > 8) break;
}
return problems;
"#;

async fn check(b: &Browser, what: &str, screen: bool) -> Result<()> {
    let problems = b
        .client
        .execute(CHECK, vec![json!(screen)])
        .await
        .with_context(|| format!("while measuring {what}"))?;
    let problems: Vec<String> = serde_json::from_value(problems)?;
    if !problems.is_empty() {
        bail!("{what} overflows: {problems:#?}");
    }
    Ok(())
}

async fn seed(api: &Api) -> Result<(String, i64)> {
    let (s, b) = api
        .post(
            &format!("/staff/{ADMIN_USER}/permissions"),
            json!({"authority": "civil_affairs", "expires_on": "2099-12-31"}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "grant: {s} {b}");
    let (s, b) = api
        .post("/staff", json!({"username": "abdulrahman.alhusseini", "full_name": LONG_NAME, "password": "a-long-password-1", "roles": ["clerk", "supervisor"]}))
        .await?;
    ensure!(s == 200 || s == 201, "staff: {s} {b}");
    let (s, b) = api
        .post(
            "/citizens",
            json!({"national_id": CITIZEN, "full_name": LONG_NAME, "father_name": "محمد سعيد عبد الكريم", "mother_name": "فاطمة الزهراء عبد الغني", "birth_date": "1990-02-03",
                   "birth_place": "دمشق - ركن الدين - حي الأكراد", "phone": "0933111222", "address": "دمشق، المزة، فيلات غربية، شارع الجلاء، بناء رقم ١٢٣٤٥، الطابق الرابع عشر، مقابل الحديقة"}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "citizen: {s} {b}");
    // Four-digit ticket numbers and counts in the thousands.
    let mut first = None;
    for i in 0..1005 {
        let body = match i {
            0 => json!({"group": "civil", "national_id": CITIZEN}),
            // The last, a priority ticket, is called before the others: B1005 on the board.
            1004 => json!({"group": "civil", "priority": "elderly"}),
            _ => json!({"group": "civil"}),
        };
        let (s, b) = api.post("/tickets", body).await?;
        ensure!(s == 200 || s == 201, "ticket: {s} {b}");
        first.get_or_insert(b["id"].as_i64().context("ticket id")?);
    }
    let (s, called) = api.post("/counters/1/call-next", json!({})).await?;
    ensure!(s == 200, "call: {s} {called}");
    let (s, case) = api
        .post("/cases", json!({"national_id": CITIZEN, "service": "birth_statement", "fields": {"person_national_id": "02030405060"}, "ticket_id": called["id"]}))
        .await?;
    ensure!(s == 200 || s == 201, "case: {s} {case}");
    let case_no = case["case_no"].as_str().context("case_no")?.to_string();
    let (s, paid) = api
        .post(
            &format!("/cases/{case_no}/payment"),
            json!({"method": "cash"}),
        )
        .await?;
    ensure!(s == 200, "pay: {s} {paid}");
    let (s, b) = api.post("/counters/1/finish", json!({})).await?;
    ensure!(s == 200, "finish: {s} {b}");
    // Every counter busy, the last with a four-digit ticket; the display shows them all.
    for n in [2, 3, 4, 12, 99] {
        let (s, b) = api
            .post(&format!("/counters/{n}/call-next"), json!({}))
            .await?;
        ensure!(s == 200, "call at {n}: {s} {b}");
    }
    for _ in 0..3 {
        let (s, b) = api.post("/counters/1/call-next", json!({})).await?;
        ensure!(s == 200, "call: {s} {b}");
        let (s, b) = api.post("/counters/1/finish", json!({})).await?;
        ensure!(s == 200, "finish: {s} {b}");
    }
    Ok((case_no, first.context("a ticket")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_scrolls_sideways_with_long_names_and_large_numbers() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let result = scenario(&b).await;
    b.close().await?;
    result
}

async fn scenario(b: &Browser) -> Result<()> {
    let counters = "\n[[counters]]\nnumber = 1\n[[counters]]\nnumber = 2\n[[counters]]\nnumber = 3\n[[counters]]\nnumber = 4\n[[counters]]\nnumber = 12\n[[counters]]\nnumber = 99\n";
    let kiosk_dir = tempfile::tempdir()?;
    let key_file = kiosk_dir.path().join("kiosk.key");
    std::fs::write(&key_file, format!("{KIOSK_KEY}\n"))?;
    let kiosk = format!("\n[kiosk]\nkey_file = \"{}\"\n", key_file.display());
    let node = NodeProcess::start_with("mazzeh", &format!("{GROUPS}{counters}{kiosk}")).await?;
    let base = node.base_url.clone();
    let api = Api::login(&base, ADMIN_USER, ADMIN_PASSWORD).await?;
    let (case_no, ticket_id) = seed(&api).await?;

    // The page list: every GET route of the node is a row here or a known non-page.
    let pages: Vec<(&str, String, Sizes)> = vec![
        ("/login", "/login".into(), Sizes::All),
        ("/kiosk", format!("/kiosk?key={KIOSK_KEY}"), Sizes::All),
        ("/display", "/display".into(), Sizes::Screen),
        ("/reception", "/reception".into(), Sizes::All),
        (
            "/citizens/duplicates",
            "/citizens/duplicates".into(),
            Sizes::All,
        ),
        (
            "/citizens/{nid}",
            format!("/citizens/{CITIZEN}"),
            Sizes::All,
        ),
        (
            "/citizens/{nid}/edit",
            format!("/citizens/{CITIZEN}/edit"),
            Sizes::All,
        ),
        (
            "/tickets/{id}/print",
            format!("/tickets/{ticket_id}/print"),
            Sizes::All,
        ),
        ("/desk", "/desk?counter=99".into(), Sizes::All),
        (
            "/desk/case",
            "/desk/case?service=birth_statement".into(),
            Sizes::All,
        ),
        ("/cases", "/cases".into(), Sizes::All),
        ("/cases/{case_no}", format!("/cases/{case_no}"), Sizes::All),
        (
            "/cases/{case_no}/receipt",
            format!("/cases/{case_no}/receipt"),
            Sizes::All,
        ),
        ("/supervisor", "/supervisor".into(), Sizes::All),
        ("/supervisor/board", "/supervisor/board".into(), Sizes::All),
        (
            "/supervisor/figures",
            "/supervisor/figures".into(),
            Sizes::All,
        ),
        ("/technician", "/technician".into(), Sizes::All),
        ("/cash", "/cash".into(), Sizes::All),
        ("/staff", "/staff".into(), Sizes::All),
        (
            "/staff/{username}",
            "/staff/abdulrahman.alhusseini".into(),
            Sizes::All,
        ),
        ("/account/password", "/account/password".into(), Sizes::All),
    ];
    let routes = page_routes();
    ensure!(routes.len() >= 20, "the route table was read: {routes:?}");
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !pages.iter().any(|(p, _, _)| p == r) && !NOT_PAGES.iter().any(|(p, _)| p == r))
        .collect();
    ensure!(
        missing.is_empty(),
        "page routes this test does not render (add a row): {missing:?}"
    );

    // The check itself catches what it claims to: a page wider than the window, naming
    // the element, and (for the wall display) content below the screen's bottom.
    b.goto("data:text/html,<!doctype html><html><body><p id=wide style='width:3000px'>x</p></body></html>")
        .await?;
    let err = check(b, "a wide page", false)
        .await
        .expect_err("a 3000px paragraph overflows");
    ensure!(format!("{err:#}").contains("p#wide"), "{err:#}");
    b.goto("data:text/html,<!doctype html><html><body style='margin:0;overflow:hidden'><div id=tall style='height:3000px'>x</div></body></html>")
        .await?;
    ensure!(
        check(b, "a tall screen", true).await.is_err(),
        "content below a wall screen's bottom is reported"
    );

    // The login page and the display, before logging in.
    let sizes = |s: Sizes| -> Vec<(u32, u32)> {
        match s {
            Sizes::All => vec![(1920, 1080), (1366, 768), (390, 844)],
            Sizes::Screen => vec![(1920, 1080), (1366, 768)],
        }
    };
    let mut failures = Vec::new();
    for lang in ["ar", "en"] {
        b.set_size(1366, 768).await?;
        b.goto(&format!("{base}/login")).await?;
        set_lang(b, lang).await?;
        for (w, h) in sizes(Sizes::All) {
            b.set_size(w, h).await?;
            b.goto(&format!("{base}/login")).await?;
            if let Err(e) = check(b, &format!("/login ({lang}, {w}×{h})"), false).await {
                failures.push(format!("{e:#}"));
            }
        }
    }
    b.set_size(1366, 768).await?;
    b.goto(&format!("{base}/login")).await?;
    set_lang(b, "ar").await?;
    b.fill("#username", ADMIN_USER).await?;
    b.fill("#password", ADMIN_PASSWORD).await?;
    b.click("#login").await?;
    b.wait_until(
        "leaving the login page",
        "return !location.pathname.startsWith('/login');",
        Duration::from_secs(10),
    )
    .await?;

    for lang in ["ar", "en"] {
        b.set_size(1366, 768).await?;
        b.goto(&format!("{base}/cases")).await?;
        set_lang(b, lang).await?;
        for (route, path, s) in &pages {
            if *route == "/login" {
                continue;
            }
            let path = if *route == "/display" {
                format!("{path}?lang={lang}")
            } else {
                path.clone()
            };
            for (w, h) in sizes(*s) {
                b.set_size(w, h).await?;
                b.goto(&format!("{base}{path}")).await?;
                let what = format!("{path} ({lang}, {w}×{h})");
                ensure!(
                    b.js("return document.documentElement.lang").await? == json!(lang),
                    "{what}: not in {lang}"
                );
                if let Err(e) = check(b, &what, *s == Sizes::Screen).await {
                    failures.push(format!("{e:#}"));
                    let name = path
                        .trim_start_matches('/')
                        .replace(['/', '?', '=', '&'], "-");
                    b.screenshot(&format!("overflow-{lang}-{w}x{h}-{name}"))
                        .await?;
                }
            }
        }
    }
    b.set_size(1920, 1080).await?;
    b.goto(&format!("{base}/display")).await?;
    b.screenshot("overflow-ar-display-1920x1080").await?;
    b.set_size(1366, 768).await?;
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
