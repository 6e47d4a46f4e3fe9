//! The waiting-room display in a real browser: open it, call a ticket through the API,
//! and see the number appear live (SSE), with the chime played.

#[path = "../src/browser.rs"]
mod browser;

use std::time::Duration;

use anyhow::{Result, ensure};
use browser::Browser;
use markaz_e2e::NodeProcess;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_updates_live_when_a_ticket_is_called() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let result = scenario(&b).await;
    b.close().await?;
    result
}

async fn scenario(b: &Browser) -> Result<()> {
    let node = NodeProcess::start("qanawat").await?;
    let api = node.login_admin().await?;

    // The display needs no login.
    b.goto(&node.url("/display")).await?;
    let html = b
        .js("return [document.documentElement.lang, document.documentElement.dir]")
        .await?;
    ensure!(
        html == json!(["ar", "rtl"]),
        "Arabic, right-to-left: {html}"
    );
    b.wait_until(
        "the live stream to open",
        "return document.body.dataset.live === '1';",
        Duration::from_secs(10),
    )
    .await?;
    b.screenshot("ar-display-empty").await?;

    let (s, t) = api.post("/tickets", json!({"group": "civil"})).await?;
    ensure!(s == 201 || s == 200, "issue: {s} {t}");
    let (s, called) = api.post("/counters/3/call-next", json!({})).await?;
    ensure!(s == 200, "call-next: {s} {called}");

    // B001 in Arabic-Indic digits, at counter ٣, without reloading the page.
    b.wait_until(
        "the call on the board",
        "return document.getElementById('now-ticket').textContent === 'B٠٠١';",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(b.text("#now-counter").await? == "٣", "counter shown");
    ensure!(
        b.text("#counter-3 .ticket").await? == "B٠٠١",
        "counter 3's card shows the ticket"
    );
    let chimes = b
        .js("return Number(document.body.dataset.chimes || '0')")
        .await?;
    ensure!(
        chimes.as_f64().unwrap_or(0.0) >= 1.0,
        "a chime was played on the call (chimes = {chimes})"
    );
    b.screenshot("ar-display").await?;

    // A recall plays again and keeps the board.
    let (s, _) = api.post("/counters/3/recall", json!({})).await?;
    ensure!(s == 200, "recall: {s}");
    b.wait_until(
        "the recall chime",
        "return Number(document.body.dataset.chimes || '0') >= 2;",
        Duration::from_secs(10),
    )
    .await?;

    // The same board in English writes Latin digits (issue #15.3).
    b.goto(&node.url("/display?lang=en")).await?;
    let html = b
        .js("return [document.documentElement.lang, document.documentElement.dir]")
        .await?;
    ensure!(
        html == json!(["en", "ltr"]),
        "English, left-to-right: {html}"
    );
    ensure!(
        b.text("#counter-3 .ticket").await? == "B001",
        "rendered from the latest calls after reload"
    );
    b.screenshot("en-display").await?;
    Ok(())
}
