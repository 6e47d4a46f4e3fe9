//! Browser test support: drives Debian's `chromium` through `chromedriver` (WebDriver,
//! with the `fantoccini` client), headless, with a fresh profile per test and a
//! chromedriver on a free loopback port that this process starts and stops.
//!
//! When chromium or chromedriver is missing, [`Browser::start`] returns `Ok(None)` after
//! printing "skipping browser test: chromium not installed" — unless the `CI` variable is
//! set, where the test fails with an explanation instead: CI must run these tests.
//!
//! A step that takes longer than [`SLOW_STEP`] is printed with its time, so a slow CI run
//! says where the time went.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use crate::hub::free_port;

/// Where screenshots go: `tests/output/screenshots/` (gitignored).
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("output")
        .join("screenshots")
}

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The chromium binary and chromedriver, if both are installed.
pub fn find_chromium() -> Option<(PathBuf, PathBuf)> {
    // Debian's /usr/bin/chromium is a shell wrapper; the real binary is beside the libs.
    let chrome = ["/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| find_in_path(&["chromium", "chromium-browser", "google-chrome"]))?;
    let driver = find_in_path(&["chromedriver"]).or_else(|| {
        Some(PathBuf::from("/usr/lib/chromium/chromedriver")).filter(|p| p.is_file())
    })?;
    Some((chrome, driver))
}

/// A browser step slower than this is reported on stderr.
pub const SLOW_STEP: Duration = Duration::from_secs(3);

fn note_slow(what: &str, started: Instant) {
    let took = started.elapsed();
    if took > SLOW_STEP {
        // Straight to stderr, past the test harness's capture: a passing run shows it too.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "slow browser step: {what} took {:.1} s",
            took.as_secs_f64()
        );
    }
}

/// A headless chromium session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium window of 1366×768. `Ok(None)` means
    /// "not installed, test skipped" (never under CI).
    pub async fn start() -> Result<Option<Browser>> {
        let Some((chrome, driver_bin)) = find_chromium() else {
            if std::env::var_os("CI").is_some() {
                bail!(
                    "browser tests need chromium and chromedriver (Debian packages `chromium` and `chromium-driver`); CI is set, so they may not be skipped"
                );
            }
            println!("skipping browser test: chromium not installed");
            return Ok(None);
        };
        let port = free_port()?;
        let mut driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("while starting {}", driver_bin.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(2),
                reqwest::get(format!("{url}/status")),
            )
            .await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = driver.try_wait()? {
                bail!("chromedriver exited early with {status}");
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not answer on {url} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir()?;
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1366,768".into(),
            // The waiting-room display is a kiosk: its chime plays without a click.
            "--autoplay-policy=no-user-gesture-required".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chrome, "args": args }),
        );
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .context("chromium did not start within 60 s")?
        .context("while opening a WebDriver session")?;
        Ok(Some(Browser {
            client,
            driver,
            _profile: profile,
        }))
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        let started = Instant::now();
        let result = self.client.goto(url).await;
        note_slow(&format!("opening {url}"), started);
        result.with_context(|| format!("while opening {url}"))
    }

    pub async fn find(&self, css: &str) -> Result<Element> {
        let started = Instant::now();
        let result = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        note_slow(&format!("finding `{css}`"), started);
        result.with_context(|| format!("while looking for `{css}`"))
    }

    /// Runs `act` on the element `css` names. A live update may replace that element
    /// between the find and the act (the desk's counts re-render on every event); the
    /// element is then found again, as a user's next look at the page would.
    async fn on_element<T, F, Fut>(&self, css: &str, act: F) -> Result<T>
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, CmdError>>,
    {
        let mut stale = 0;
        loop {
            match act(self.find(css).await?).await {
                Err(e) if e.is_stale_element_reference() && stale < 5 => {
                    stale += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result => return Ok(result?),
            }
        }
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        self.on_element(css, |e| async move { e.text().await })
            .await
            .with_context(|| format!("while reading `{css}`"))
    }

    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        self.on_element(css, |e| async move {
            e.clear().await?;
            e.send_keys(value).await
        })
        .await
        .with_context(|| format!("while typing into `{css}`"))
    }

    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.on_element(css, |e| async move { e.select_by_value(value).await })
            .await
            .with_context(|| format!("while choosing {value} in `{css}`"))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let started = Instant::now();
        let result = self
            .on_element(css, |e| async move { e.click().await })
            .await;
        note_slow(&format!("clicking `{css}`"), started);
        result.with_context(|| format!("while clicking `{css}`"))
    }

    /// Runs a script and returns its value.
    pub async fn js(&self, script: &str) -> Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    pub async fn path(&self) -> Result<String> {
        Ok(self.client.current_url().await?.path().to_string())
    }

    /// Waits until `script` returns true.
    pub async fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.js(script).await? == serde_json::Value::Bool(true) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn set_size(&self, width: u32, height: u32) -> Result<()> {
        Ok(self.client.set_window_size(width, height).await?)
    }

    /// Saves a PNG of the viewport as `tests/output/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        // From the top of the page, so the review sees the page as it opens.
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;").await?;
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("while writing {}", path.display()))?;
        Ok(path)
    }

    /// Accessibility checks a user of a screen reader or a keyboard would notice on the
    /// current page: `lang` and `dir` on `<html>`; every visible input, select and
    /// textarea has a label (a `<label for>`, an enclosing label, `aria-label` or
    /// `aria-labelledby`); and Tab from the top reaches every visible control.
    pub async fn check_accessibility(&self) -> Result<()> {
        let started = Instant::now();
        let result = self.accessibility().await;
        note_slow("the accessibility check", started);
        result
    }

    async fn accessibility(&self) -> Result<()> {
        let page = self.path().await?;
        let report = self
            .js(
                r#"
const html = document.documentElement;
const problems = [];
if (!html.getAttribute('lang')) problems.push('no lang on <html>');
if (!['rtl','ltr'].includes(html.getAttribute('dir'))) problems.push('no dir on <html>');
const visible = e => { const s = getComputedStyle(e); const r = e.getBoundingClientRect();
  return s.display !== 'none' && s.visibility !== 'hidden' && !e.closest('[hidden]') && r.width > 0 && r.height > 0; };
for (const e of document.querySelectorAll('input, select, textarea')) {
  if (e.type === 'hidden') continue;
  const labelled = (e.id && document.querySelector('label[for="' + CSS.escape(e.id) + '"]')) || e.closest('label')
    || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
  if (!labelled) problems.push('input without a label: ' + (e.name || e.id || e.outerHTML.slice(0, 60)));
}
const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter(e => e.type !== 'hidden' && !e.disabled && e.tabIndex >= 0 && visible(e));
return { problems, controls: controls.length };
"#,
            )
            .await?;
        let problems: Vec<String> =
            serde_json::from_value(report["problems"].clone()).unwrap_or_default();
        if !problems.is_empty() {
            bail!("{page}: accessibility problems: {problems:?}");
        }
        let expected = report["controls"].as_u64().unwrap_or(0);
        // Walk the tab order from the top of the page, marking what gets focus, until
        // every control was reached (a date input takes a Tab per part, hence the slack).
        const CONTROLS: &str = r#"
const visible = e => { const s = getComputedStyle(e); const r = e.getBoundingClientRect();
  return s.display !== 'none' && s.visibility !== 'hidden' && !e.closest('[hidden]') && r.width > 0 && r.height > 0; };
// Radio buttons are one tab stop per group (arrows move inside it): expect the checked one.
const radioStop = e => e.type !== 'radio' || e.checked || !document.querySelector('input[type=radio][name="' + CSS.escape(e.name) + '"]:checked');
const unreached = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter(e => e.type !== 'hidden' && !e.disabled && e.tabIndex >= 0 && visible(e) && radioStop(e) && !e.hasAttribute('data-a11y-reached'));
"#;
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0,0); document.querySelectorAll('[data-a11y-reached]').forEach(e => e.removeAttribute('data-a11y-reached')); return true;").await?;
        let mut missed: Vec<String> = Vec::new();
        for _ in 0..(expected * 3 + 10) {
            // Keys go to the focused element (the body at first), like a keyboard's.
            let active = self.client.active_element().await?;
            active.send_keys("\u{E004}").await.ok(); // Tab
            let left = self
                .js(&format!(
                    "const a = document.activeElement; if (a) a.setAttribute('data-a11y-reached', '1');{CONTROLS} return unreached.map(e => e.outerHTML.slice(0, 80));"
                ))
                .await?;
            missed = serde_json::from_value(left).unwrap_or_default();
            if missed.is_empty() {
                break;
            }
        }
        if !missed.is_empty() {
            bail!("{page}: Tab does not reach: {missed:?}");
        }
        Ok(())
    }

    /// Ends the session and stops chromedriver.
    pub async fn close(mut self) -> Result<()> {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
        let _ = self.driver.kill().await;
        Ok(())
    }
}

/// Logs in through the node's or the hub's login form and waits to leave it.
pub async fn login(b: &Browser, base: &str, user: &str, password: &str) -> Result<()> {
    login_at(b, base, user, password, None).await
}

/// [`login`], naming the terminal (a desk's counter) when `terminal` is given.
pub async fn login_at(
    b: &Browser,
    base: &str,
    user: &str,
    password: &str,
    terminal: Option<&str>,
) -> Result<()> {
    b.goto(&format!("{base}/login")).await?;
    b.fill("#username", user).await?;
    b.fill("#password", password).await?;
    if let Some(terminal) = terminal {
        b.fill("#terminal", terminal).await?;
    }
    b.click("#login").await?;
    b.wait_until(
        "leaving the login page",
        "return !location.pathname.startsWith('/login');",
        Duration::from_secs(10),
    )
    .await
}

/// Switches the page's language with the toggle, unless it is `lang` already.
pub async fn set_lang(b: &Browser, lang: &str) -> Result<()> {
    if b.js("return document.documentElement.lang").await?.as_str() != Some(lang) {
        b.click("#lang-toggle").await?;
        b.wait_until(
            "the language switch",
            &format!("return document.documentElement.lang === '{lang}';"),
            Duration::from_secs(10),
        )
        .await?;
    }
    Ok(())
}
