//! Issue #15 (4, 5, 11, 12) in a real browser against a real node, in Arabic and in
//! English: the administrator creates a clerk's account and grants a permission on the
//! staff page; the clerk changes their own password; the desk's waiting count follows
//! tickets issued elsewhere without a reload (live); a no-show is undone; the clerk's
//! daily cash close prints and downloads as CSV.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::{Browser, login};
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, Api, NodeProcess, citizen_json};
use serde_json::json;

const NID: &str = "01020304050";

async fn logout(b: &Browser) -> Result<()> {
    b.click("#logout").await?;
    b.wait_until(
        "the login page",
        "return location.pathname.startsWith('/login');",
        Duration::from_secs(10),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_page_live_desk_and_cash_close() -> Result<()> {
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
    b.set_size(1366, 768).await?;

    // #15.4 in Arabic: the administrator creates the clerk on the staff page.
    login(b, &base, ADMIN_USER, ADMIN_PASSWORD).await?;
    b.goto(&format!("{base}/staff")).await?;
    b.click("#create-staff").await?;
    let err = b
        .text("#full_name-error")
        .await
        .context("the app's own error")?;
    ensure!(err.contains("مطلوب"), "Arabic required-field error: {err}");
    b.fill("#username", "huda").await?;
    b.fill("#full_name", "هدى الشامي").await?;
    b.fill("#password", "first-password-1").await?;
    b.click("#new-role-clerk").await?;
    b.click("#create-staff").await?;
    b.wait_until(
        "the new account's page",
        "return location.pathname === '/staff/huda';",
        Duration::from_secs(10),
    )
    .await?;
    b.select("#authority", "justice").await?;
    b.js("document.getElementById('expires_on').value = '2099-12-31'; return true;")
        .await?;
    b.click("#grant").await?;
    b.wait_until(
        "the permission listed",
        "return !!document.getElementById('revoke-justice');",
        Duration::from_secs(10),
    )
    .await?;
    b.screenshot("ar-staff-member").await?;
    logout(b).await?;

    // The clerk changes the password she was given.
    login(b, &base, "huda", "first-password-1").await?;
    b.click("#account").await?;
    b.fill("#current_password", "first-password-1").await?;
    b.fill("#new_password", "huda-own-password").await?;
    b.fill("#new_password_again", "huda-own-password").await?;
    b.click("#change-password").await?;
    b.find("#flash").await.context("password changed")?;
    logout(b).await?;
    login(b, &base, "huda", "huda-own-password").await?;

    // #15.5: the desk's waiting count follows tickets issued at reception, no reload.
    let admin = Api::login(&base, ADMIN_USER, ADMIN_PASSWORD).await?;
    b.goto(&format!("{base}/desk?counter=1")).await?;
    let before = b.text("#waiting-count").await?;
    ensure!(before == "٠", "nobody waits yet: {before}");
    b.wait_until(
        "the live stream",
        "return document.body.dataset.liveMode === 'sse';",
        Duration::from_secs(10),
    )
    .await?;
    let (s, t) = admin.post("/tickets", json!({"group": "judicial"})).await?;
    ensure!(s == 201, "issue: {s} {t}");
    b.wait_until(
        "the waiting count to follow",
        "return document.getElementById('waiting-count').textContent.trim() === '١';",
        Duration::from_secs(10),
    )
    .await?;
    b.screenshot("ar-desk-live").await?;

    // #15.11: call, mark no-show, undo it.
    b.click("#call-next").await?;
    b.find("#current-ticket").await?;
    b.click("#no-show").await?;
    b.click("#undo-no-show").await.context("the undo button")?;
    b.find("#current-ticket")
        .await
        .context("the ticket is back")?;
    b.click("#finish").await?;

    // #15.12: a paid case, then the clerk's close in English, printable and as CSV.
    let (s, body) = admin
        .post("/citizens", citizen_json(NID, "0944123456"))
        .await?;
    ensure!(s == 201 || s == 200, "citizen: {s} {body}");
    let huda = Api::login(&base, "huda", "huda-own-password").await?;
    let (s, case) = huda
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {"purpose": "travel"}}))
        .await?;
    ensure!(s == 201, "case: {s} {case}");
    let no = case["case_no"].as_str().unwrap_or_default().to_string();
    let (s, paid) = huda
        .post(&format!("/cases/{no}/payment"), json!({"method": "cash"}))
        .await?;
    ensure!(s == 200, "pay: {s} {paid}");
    let receipt = paid["payment"]["receipt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    b.click("#lang-toggle").await?;
    b.wait_until(
        "English",
        "return document.documentElement.lang === 'en';",
        Duration::from_secs(10),
    )
    .await?;
    b.goto(&format!("{base}/cash")).await?;
    let page = b.text("main").await?;
    ensure!(
        page.contains("Daily cash close")
            && page.contains(&receipt)
            && page.contains("Ministry of Justice"),
        "the English close: {page}"
    );
    b.find("#print").await?;
    b.find("#csv").await?;
    b.screenshot("en-cash-close").await?;
    b.set_size(390, 844).await?;
    b.screenshot("en-cash-close-phone").await?;
    Ok(())
}
