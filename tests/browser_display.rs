//! The waiting-room display in a real browser: open it, call a ticket through the API,
//! and see the number appear live (SSE), with the chime played and the call spoken in
//! Arabic from the node's built-in clips (`?sound=1`; without it the display is silent).

use std::time::Duration;

use anyhow::{Result, ensure};
use browser::Browser;
use markaz_e2e::NodeProcess;
use markaz_e2e::browser;
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

    // The display needs no login; `?sound=1` turns the chime and the voice on.
    b.goto(&node.url("/display?sound=1")).await?;
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
    // The call is spoken: "ticket", B, one, "to counter", three — clips the page
    // fetched from the node and decoded (so they are real audio), then played.
    b.wait_until(
        "the spoken call",
        "return Number(document.body.dataset.speechPlayed || '0') >= 1;",
        Duration::from_secs(15),
    )
    .await?;
    let spoken = b
        .js(r"return JSON.parse(document.body.dataset.spoken).map(u => u.replace(/^\/display\/clips\/([a-z_0-9]+)\.opus\?v=[0-9a-f]+$/, '$1'));")
        .await?;
    ensure!(
        spoken == json!(["ticket", "letter_b", "n1", "to_counter", "n3"]),
        "the clips of B001 at counter 3: {spoken}"
    );
    ensure!(
        b.js("return document.body.dataset.speechError === undefined && document.getElementById('sound-blocked').hidden").await? == json!(true),
        "no error and no blocked-sound notice"
    );
    ensure!(
        b.js("return document.getElementById('sound') === null && document.querySelectorAll('button').length === 0").await? == json!(true),
        "no button to press on a screen without a mouse"
    );
    b.screenshot("ar-display").await?;

    // A recall plays again and keeps the board.
    let (s, _) = api.post("/counters/3/recall", json!({})).await?;
    ensure!(s == 200, "recall: {s}");
    b.wait_until(
        "the recall chime and voice",
        "return Number(document.body.dataset.chimes || '0') >= 2 && Number(document.body.dataset.speechPlayed || '0') >= 2;",
        Duration::from_secs(15),
    )
    .await?;

    // A bigger number and counter: B012 at counter 4 reads "two-ten" the Arabic way.
    for _ in 0..11 {
        let (s, t) = api.post("/tickets", json!({"group": "civil"})).await?;
        ensure!(s == 201 || s == 200, "issue: {s} {t}");
    }
    for _ in 0..10 {
        let (s, c) = api.post("/counters/2/call-next", json!({})).await?;
        ensure!(s == 200, "call-next: {s} {c}");
        let (s, c) = api.post("/counters/2/finish", json!({})).await?;
        ensure!(s == 200, "finish: {s} {c}");
    }
    // A fresh board, so the ten calls above are not all spoken first.
    b.goto(&node.url("/display?sound=1")).await?;
    b.wait_until(
        "the live stream to open again",
        "return document.body.dataset.live === '1';",
        Duration::from_secs(10),
    )
    .await?;
    let (s, c) = api.post("/counters/4/call-next", json!({})).await?;
    ensure!(s == 200 && c["number"] == "B012", "call-next: {s} {c}");
    b.wait_until(
        "B012 spoken",
        "return (window.markazSpoken || []).some(l => l.some(u => u.indexOf('/display/clips/n12.') === 0));",
        Duration::from_secs(30),
    )
    .await?;
    let last = b
        .js("const l = window.markazSpoken.filter(l => l.some(u => u.indexOf('/display/clips/n12.') === 0))[0]; return l.map(u => u.split('/')[3].split('.')[0]);")
        .await?;
    ensure!(
        last == json!(["ticket", "letter_b", "n12", "to_counter", "n4"]),
        "B012 at counter 4: {last}"
    );

    // The board fits a full-HD screen and a 1366×768 one, with nothing off screen.
    for (w, h) in [(1920, 1080), (1366, 768)] {
        b.set_size(w, h).await?;
        let out = b
            .js("const W = document.documentElement.clientWidth, H = document.documentElement.clientHeight; return [document.documentElement.scrollWidth > W, document.documentElement.scrollHeight > H, [...document.querySelectorAll('body *')].filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > W + 1 || r.left < -1 || r.bottom > H + 1); }).map(e => e.className || e.tagName)];")
            .await?;
        ensure!(
            out == json!([false, false, []]),
            "{w}x{h}: the display overflows: {out}"
        );
        b.screenshot(&format!("ar-display-{w}x{h}")).await?;
    }
    b.set_size(1366, 768).await?;

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

    // Without `sound=1` the display stays silent: no chime, no voice.
    let (s, t) = api.post("/tickets", json!({"group": "civil"})).await?;
    ensure!(s == 201 || s == 200, "issue: {s} {t}");
    let (s, c) = api.post("/counters/1/call-next", json!({})).await?;
    ensure!(s == 200, "call-next: {s} {c}");
    let number = c["number"].as_str().unwrap_or_default().to_string();
    b.wait_until(
        "the silent call on the board",
        &format!("return document.body.dataset.lastCall === '{number}@1';"),
        Duration::from_secs(10),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        b.js("return [document.body.dataset.chimes || '0', window.markazSpoken === undefined, document.body.dataset.sound]").await?
            == json!(["0", true, "0"]),
        "silent without sound=1"
    );
    Ok(())
}
