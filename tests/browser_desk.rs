//! In a real browser against a real node: log in, issue a ticket at reception, call it
//! at a desk, create a case from it (a wrong field first, shown inline), take payment
//! and carry the case through to handover with the receiver's id checked.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::Browser;
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, Api, NodeProcess};
use serde_json::json;

const CITIZEN: &str = "01020304050";
const CLERK: &str = "clerk1";
const CLERK_PASSWORD: &str = "clerk-password-1";

async fn login(b: &Browser, base: &str, user: &str, password: &str) -> Result<()> {
    browser::login_at(b, base, user, password, Some("desk-1")).await
}

/// A desk clerk with the real-estate permission, so the test does what a clerk does.
async fn make_clerk(admin: &Api) -> Result<()> {
    let (s, body) = admin
        .post("/staff", json!({"username": CLERK, "full_name": "موظف النافذة", "password": CLERK_PASSWORD, "roles": ["clerk", "reception"], "language": "ar"}))
        .await?;
    ensure!(s == 201 || s == 200, "create clerk: {s} {body}");
    let (s, body) = admin
        .post(
            &format!("/staff/{CLERK}/permissions"),
            json!({"authority": "real_estate_directorate", "expires_on": "2099-12-31"}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "grant: {s} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reception_desk_case_to_handover() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let result = scenario(&b).await;
    b.close().await?;
    result
}

async fn scenario(b: &Browser) -> Result<()> {
    let node = NodeProcess::start("midan").await?;
    let base = node.base_url.clone();
    let admin = Api::login(&base, ADMIN_USER, ADMIN_PASSWORD).await?;
    make_clerk(&admin).await?;

    // A wrong password stays on the login page with a message.
    b.goto(&format!("{base}/login")).await?;
    b.fill("#username", CLERK).await?;
    b.fill("#password", "wrong password").await?;
    b.click("#login").await?;
    ensure!(
        b.find("#error").await.is_ok(),
        "a failed login shows an error"
    );

    login(b, &base, CLERK, CLERK_PASSWORD).await?;
    // The clerk's menu has the desk and reception, not the supervisor or technician pages.
    let menu = b.text("nav .menu").await?;
    ensure!(
        menu.contains("النافذة") && !menu.contains("الفني") && !menu.contains("المشرف"),
        "clerk menu: {menu}"
    );
    b.goto(&format!("{base}/technician")).await?;
    ensure!(
        b.js("return document.title")
            .await?
            .as_str()
            .unwrap_or("")
            .contains("غير مسموح"),
        "technician page refused to a clerk"
    );

    // Reception: register the citizen, then issue a real-estate ticket for them.
    b.goto(&format!("{base}/reception")).await?;
    b.fill("#national_id", CITIZEN).await?;
    b.fill("#full_name", "سامر خليل").await?;
    b.fill("#father_name", "خليل").await?;
    b.fill("#mother_name", "هدى").await?;
    b.fill("#birth_day", "12").await?;
    b.fill("#birth_month", "4").await?;
    b.fill("#birth_year", "1985").await?;
    b.fill("#birth_place", "دمشق").await?;
    b.fill("#phone_new", "0944123456").await?;
    b.fill("#address", "الميدان، دمشق").await?;
    b.click("#register").await?;
    b.find("#flash").await.context("citizen saved message")?;
    ensure!(
        b.text("#citizens").await?.contains("سامر خليل"),
        "the new citizen is found"
    );

    b.select("#group", "real_estate").await?;
    b.click("#priority-elderly").await?;
    b.fill("#ticket_national_id", CITIZEN).await?;
    b.click("#issue-ticket").await?;
    b.wait_until(
        "the ticket print page",
        "return /\\/tickets\\/\\d+\\/print/.test(location.pathname);",
        Duration::from_secs(10),
    )
    .await?;
    // Large Latin digits for thermal paper, the display's Arabic-Indic form below (#15.8).
    let number = b.text("#ticket-number").await?;
    ensure!(number == "C001", "first real-estate ticket: {number}");
    let number = b.text("#ticket-number-ar").await?;
    ensure!(
        number == "C٠٠١",
        "first real-estate ticket, Arabic-Indic digits: {number}"
    );
    let ticket = b.text("#ticket").await?;
    ensure!(
        ticket.contains("عدد المنتظرين قبلك: ٠")
            && ticket.contains("People waiting ahead of you: 0"),
        "bilingual ticket: {ticket}"
    );
    b.screenshot("ar-ticket-print").await?;

    // Desk: choose counter 2 and call the next ticket.
    b.goto(&format!("{base}/desk?counter=2")).await?;
    b.click("#call-next").await?;
    b.wait_until(
        "the called ticket",
        "return !!document.getElementById('current-ticket');",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(
        b.text("#current-ticket").await? == "C٠٠١",
        "desk shows the called ticket"
    );
    b.screenshot("ar-desk").await?;

    // Create a case from the ticket: a wrong property number first.
    b.click("#new-case").await?;
    b.select("#service-choice", "re_extract").await?;
    b.click("#choose-service").await?;
    ensure!(
        b.find("#national_id")
            .await?
            .prop("value")
            .await?
            .as_deref()
            == Some(CITIZEN),
        "national id carried from the ticket"
    );
    b.fill("#f-real_estate_area", "الميدان").await?;
    b.fill("#f-property_number", "12ab").await?;
    b.click("#create-case").await?;
    let err = b
        .find("#f-property_number-error")
        .await
        .context("inline error next to the property number")?;
    ensure!(
        !err.text().await?.trim().is_empty(),
        "the inline error has a message"
    );
    let input = b.find("#f-property_number").await?;
    ensure!(
        input.attr("aria-invalid").await?.as_deref() == Some("true"),
        "aria-invalid set"
    );
    ensure!(
        input
            .attr("aria-describedby")
            .await?
            .unwrap_or_default()
            .contains("f-property_number-error"),
        "the error is tied to the field with aria-describedby"
    );
    ensure!(
        b.find("#f-real_estate_area")
            .await?
            .prop("value")
            .await?
            .as_deref()
            == Some("الميدان"),
        "typed values are kept"
    );
    b.screenshot("ar-case-new-error").await?;
    b.fill("#f-property_number", "1234").await?;
    b.click("#create-case").await?;
    b.wait_until(
        "the case page",
        "return /^\\/cases\\/[^/]+$/.test(location.pathname);",
        Duration::from_secs(10),
    )
    .await?;
    let case_no = b.text("#case-no").await?;
    ensure!(
        b.find("#case-status")
            .await?
            .attr("data-status")
            .await?
            .as_deref()
            == Some("created"),
        "new case is created"
    );

    // Pay cash, then start, ready, notify.
    b.click("#method-cash").await?;
    b.click("#pay").await?;
    b.wait_until(
        "paid",
        "return document.getElementById('case-status').dataset.status === 'paid';",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(
        b.text("#payment").await?.contains("MID-"),
        "cash receipt number shown"
    );
    // Each step reloads the page: wait for the new status, not for a flash message the
    // previous page already showed (its elements go stale under the next click).
    for (step, status) in [
        ("start", "in_progress"),
        ("ready", "ready"),
        ("notify", "notified"),
    ] {
        b.click(&format!("#step-{step}")).await?;
        b.wait_until(
            step,
            &format!(
                "const s = document.getElementById('case-status'); \
                 return !!s && s.dataset.status === '{status}' && !!document.getElementById('flash');"
            ),
            Duration::from_secs(10),
        )
        .await?;
    }

    // Handover: a malformed receiver id is refused inline, the right one delivers.
    b.fill("#receiver_national_id", "123").await?;
    b.click("#step-deliver").await?;
    b.find("#receiver-error")
        .await
        .context("receiver id error inline")?;
    b.fill("#receiver_national_id", CITIZEN).await?;
    b.click("#step-deliver").await?;
    b.wait_until(
        "delivered",
        "return document.getElementById('case-status').dataset.status === 'delivered';",
        Duration::from_secs(10),
    )
    .await?;
    let history = b.text("#history").await?;
    for ev in ["إنشاء", "دفع", "بدء المعالجة", "تسليم"] {
        ensure!(history.contains(ev), "history has {ev}: {history}");
    }
    b.screenshot("ar-case").await?;

    // The receipt prints on 80 mm paper.
    b.click("#receipt").await?;
    b.wait_until(
        "the receipt page",
        "return location.pathname.endsWith('/receipt');",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(
        b.text("#receipt").await?.contains(&case_no),
        "receipt names the case"
    );
    let page_rule = b
        .js("for (const s of document.styleSheets) for (const r of s.cssRules) if (r.type === CSSRule.PAGE_RULE) return r.cssText; return '';")
        .await?;
    ensure!(
        page_rule.as_str().unwrap_or("").contains("80mm"),
        "@page size is 80mm: {page_rule}"
    );
    b.screenshot("ar-receipt").await?;

    // Back at the desk: finish the visit with the case linked.
    b.goto(&format!("{base}/desk?counter=2")).await?;
    ensure!(
        b.find("#finish-case")
            .await?
            .prop("value")
            .await?
            .as_deref()
            == Some(case_no.as_str()),
        "the case is linked to the ticket"
    );
    b.click("#finish").await?;
    b.find("#call-next").await.context("counter free again")?;
    Ok(())
}
