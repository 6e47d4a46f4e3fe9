//! The hub's operator pages in a real browser: an administrator logs in on the Arabic
//! login page, lands on the centers overview (right to left, the synced center listed,
//! its own page one click away), switches to English, opens the operators page, and logs
//! out; a page asked for afterwards leads back to the login page. Screenshots of each for
//! review (tests/output/screenshots/hub-*.png).

use std::time::Duration;

use anyhow::{Result, ensure};
use browser::Browser;
use markaz_e2e::browser;
use markaz_e2e::{HubProcess, NodeProcess};

#[tokio::test]
async fn an_operator_logs_in_and_sees_the_centers_overview() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let hub = HubProcess::start(&["midan"]).await?;
    let _midan = NodeProcess::start_synced("midan", &hub).await?;
    let base = hub.web_url.clone();

    // Not logged in: the overview sends the browser to the login page, and back after.
    b.goto(&format!("{base}/centers")).await?;
    b.find("#username").await?;
    ensure!(b.path().await? == "/login", "{}", b.path().await?);
    let dir = b.js("return document.documentElement.dir").await?;
    ensure!(dir == "rtl", "the login page is Arabic first: {dir}");
    b.check_accessibility().await?;
    b.screenshot("hub-login-ar").await?;
    b.fill("#username", "tester").await?;
    b.fill("#password", &hub.operator_password).await?;
    b.click("#login").await?;
    b.wait_until(
        "the centers overview",
        "return location.pathname === '/centers' && !!document.querySelector('#centers');",
        Duration::from_secs(20),
    )
    .await?;
    let row = b.text("#center-midan").await?;
    ensure!(row.contains("midan"), "{row}");
    b.check_accessibility().await?;
    b.screenshot("hub-centers-ar").await?;

    b.click("#center-midan a").await?;
    b.wait_until(
        "the center page",
        "return location.pathname === '/centers/midan' && !!document.querySelector('#sessions');",
        Duration::from_secs(10),
    )
    .await?;

    b.click("#lang-toggle").await?;
    b.wait_until(
        "English",
        "return document.documentElement.lang === 'en' && document.documentElement.dir === 'ltr';",
        Duration::from_secs(10),
    )
    .await?;
    b.goto(&format!("{base}/centers")).await?;
    let head = b.text("h1").await?;
    ensure!(head == "Centers overview", "{head}");
    b.screenshot("hub-centers-en").await?;
    b.goto(&format!("{base}/operators")).await?;
    b.find("#add-operator").await?;
    b.check_accessibility().await?;
    b.screenshot("hub-operators-en").await?;

    b.click("#logout").await?;
    b.wait_until(
        "the login page",
        "return location.pathname === '/login';",
        Duration::from_secs(10),
    )
    .await?;
    b.goto(&format!("{base}/operators")).await?;
    b.find("#username").await?;
    ensure!(b.path().await? == "/login", "logged out");
    Ok(())
}
