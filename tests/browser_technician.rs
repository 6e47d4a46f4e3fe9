//! Issue #15.2 in a real browser against a real node process: the technician page is
//! panels in words, not JSON. The node reads a modem emulator (on a pty, run by this
//! test) that has no SIM, and probes a primary-link target on loopback.
//!
//! In Arabic and in English, at 1366×768 and at phone size (screenshots of each):
//! - no raw JSON, no snake_case names and no `null` anywhere on the panels;
//! - the modem panel is a fault and says what to do about the missing SIM;
//! - the probe target's address and port are written in Latin digits, whatever the
//!   page's digits;
//! - nothing scrolls sideways;
//! - "Reset the modem" asks for confirmation first (and nothing happens on Cancel); on
//!   "Yes" the emulator sees the reset;
//! - the panels update live: the SIM put back turns the modem panel green without a
//!   reload.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::{Browser, set_lang};
use markaz_e2e::browser;
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, AlwaysUp, NodeProcess};
use markaz_hardware::modem::emulator;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NO_SIM_EN: &str = "No SIM: check the SIM card is seated, then reset the modem.";
const NO_SIM_AR: &str = "لا توجد شريحة: تأكد أن الشريحة مثبتة في مكانها، ثم أعد تشغيل المودم.";

async fn login(b: &Browser, base: &str) -> Result<()> {
    browser::login(b, base, ADMIN_USER, ADMIN_PASSWORD).await
}

/// The text of the panels (the logs below them show action names and are left out).
const PANELS_TEXT: &str = "return document.getElementById('panels').innerText;";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_technician_page_is_panels_in_words() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (modem, _task) = emulator::start(cancel.clone())?;
    modem.set_sim_present(false);
    let probe = AlwaysUp::start().await?;
    let target = probe.addr.to_string();
    let toml = format!(
        r#"
[modem]
enabled = true
port = "{port}"
poll_interval_secs = 1
command_timeout_ms = 2000

[link]
probe_targets = ["{target}"]
probe_interval_secs = 1
probe_timeout_secs = 1
"#,
        port = modem.path().display()
    );
    let mut node = NodeProcess::start_with("midan", &toml).await?;
    let base = node.base_url.clone();
    let r = run(&b, &base, &target, &modem).await;
    b.close().await?;
    node.stop().await?;
    drop(probe);
    r
}

async fn run(
    b: &Browser,
    base: &str,
    target: &str,
    modem: &emulator::EmulatorHandle,
) -> Result<()> {
    login(b, base).await?;
    b.goto(&format!("{base}/technician")).await?;
    for lang in ["ar", "en"] {
        set_lang(b, lang).await?;
        for (size, (w, h)) in [("desktop", (1366, 768)), ("phone", (390, 844))] {
            b.set_size(w, h).await?;
            b.goto(&format!("{base}/technician")).await?;
            b.wait_until(
                "the modem panel says no SIM",
                "const p = document.getElementById('panel-modem'); return !!p && p.dataset.state === 'fault';",
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("{lang} {size}"))?;
            let text = b.js(PANELS_TEXT).await?;
            let text = text.as_str().unwrap_or_default().to_owned();
            // No JSON, no API names, no null.
            for bad in ["{\"", "\":", "null", "[\"", "true", "false"] {
                ensure!(
                    !text.contains(bad),
                    "{lang} {size}: the panels show `{bad}`:\n{text}"
                );
            }
            let snake = b
                .js("return (document.getElementById('panels').innerText.match(/\\b[a-z]+_[a-z_]+\\b/g) || []).join(' ')")
                .await?;
            ensure!(
                snake == json!(""),
                "{lang} {size}: snake_case on the panels: {snake}"
            );
            // The sentence for the fault, in the page's language.
            let say = b.text("#panel-modem-say").await?;
            let want = if lang == "ar" { NO_SIM_AR } else { NO_SIM_EN };
            ensure!(say == want, "{lang} {size}: the modem says {say:?}");
            // The address and port keep their Latin digits on an Arabic page.
            let link = b.text("#panel-link").await?;
            ensure!(
                link.contains(target),
                "{lang} {size}: the probe target {target} is not written as is:\n{link}"
            );
            if lang == "ar" {
                ensure!(
                    text.chars().any(|c| ('\u{0660}'..='\u{0669}').contains(&c)),
                    "the Arabic page writes its own figures in Arabic-Indic digits:\n{text}"
                );
            }
            let overflow = b
                .js("return document.documentElement.scrollWidth > window.innerWidth + 1")
                .await?;
            ensure!(
                overflow == json!(false),
                "{lang} {size}: the page scrolls sideways"
            );
            b.check_accessibility()
                .await
                .with_context(|| format!("technician page, {lang} {size}"))?;
            b.screenshot(&format!("technician-{lang}-{size}")).await?;
        }
    }
    b.set_size(1366, 768).await?;

    // The reset asks first; Cancel does nothing.
    let resets = modem.resets();
    b.click("#modem-reset").await?;
    let ask = b.text("#confirm").await?;
    ensure!(
        ask.contains("Reset the 3G modem?"),
        "the confirmation names the action: {ask}"
    );
    b.screenshot("technician-en-confirm-reset").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(modem.resets() == resets, "nothing is reset before Yes");
    b.click("#confirm-no").await?;
    b.wait_until(
        "the confirmation gone",
        "return !document.getElementById('confirm');",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(modem.resets() == resets, "Cancel resets nothing");
    b.click("#modem-reset").await?;
    b.click("#confirm-yes").await?;
    b.find("#flash").await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while modem.resets() == resets {
        ensure!(
            std::time::Instant::now() < deadline,
            "the modem was not reset after Yes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Live: the SIM goes back in; the panel turns green without a reload.
    b.goto(&format!("{base}/technician")).await?;
    b.js("window.__same_page = true; return true;").await?;
    modem.set_sim_present(true);
    b.wait_until(
        "the modem panel turns ok on its own",
        "const p = document.getElementById('panel-modem'); return window.__same_page === true && !!p && p.dataset.state === 'ok';",
        Duration::from_secs(40),
    )
    .await?;
    b.screenshot("technician-en-live-ok").await?;
    Ok(())
}
