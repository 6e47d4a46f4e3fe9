//! Helpers that make an end-to-end test read like its scenario: real `markaz` processes on
//! loopback, each with its own temp directory and port.
//!
//! ```text
//! let node = NodeProcess::start("midan").await?;
//! let api = node.login_admin().await?;
//! let hub = HubProcess::start(&["midan"]).await?;
//! let midan = NodeProcess::start_synced("midan", &hub).await?;
//! midan.sync_now(&midan.login_admin().await?).await?;
//! ```
//!
//! [`hub`] runs the hub process and reads its documents; [`chaos`] is a fault-injecting
//! TCP proxy for the link between centers and hub.
//! [`browser`] drives Debian's chromium through chromedriver (WebDriver) for the web UI tests.
//! [`pg`] is a throwaway PostgreSQL cluster (the hub on PostgreSQL).

pub mod browser;
pub mod chaos;
pub mod hub;
pub mod pg;

pub use hub::{AlwaysUp, CaseSummary, DocsDb, HubProcess};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// Path of the `markaz` binary of this build (target/<profile>/markaz).
/// - `MARKAZ_E2E_BIN=/path/to/markaz` uses that binary and builds nothing.
/// - A test binary (in target/<profile>/deps/) takes the `markaz` beside its folder: the
///   end-to-end tests are the `markaz` package's, and cargo builds that package's binary
///   with them, in the same build and with the same features.
/// - Anything else (the bench tool) runs `cargo build -p markaz --bin markaz` for its own
///   profile on the first call: a no-op when the binary is up to date.
pub fn markaz_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("MARKAZ_E2E_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    if let Some(deps) = exe.parent()
        && deps.file_name().is_some_and(|n| n == "deps")
        && let Some(bin) = deps.parent().map(|p| p.join("markaz"))
        && bin.is_file()
    {
        return Ok(bin);
    }
    static BUILT: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_markaz().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn build_markaz() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>, or target/<profile>/<tool> (the bench)
    let mut profile_dir = exe.parent().context("the running binary has no folder")?;
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir
            .parent()
            .context("test binary has no profile dir")?;
    }
    let bin = profile_dir.join("markaz");
    let target_dir = profile_dir
        .parent()
        .context("profile dir has no target dir")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests crate has no workspace")?;
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", "markaz", "--bin", "markaz"])
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build --bin markaz")?;
    if !status.success() || !bin.exists() {
        bail!("could not build the markaz binary at {}", bin.display());
    }
    Ok(bin)
}

/// `[server]` of a test node: its terminals all come from 127.0.0.1, where a center's
/// each have their own address, so the per-client cap is raised to what a loopback load
/// test opens.
pub const TEST_SERVER_TOML: &str = "max_connections_per_client = 1024";

/// A running `markaz node` process.
pub struct NodeProcess {
    pub center: String,
    pub dir: tempfile::TempDir,
    pub base_url: String,
    child: Option<Child>,
    config_path: PathBuf,
    /// Things that must live as long as the node (its probe target).
    keep: Vec<Box<dyn std::any::Any + Send>>,
    /// The open-file limit (soft and hard) the next [`NodeProcess::spawn`] runs with;
    /// `None` inherits this process's.
    pub open_files_limit: Option<u64>,
    /// With `[server.tls]`: the CA (PEM) that the test's clients trust; the node is then
    /// reached at `https://`.
    pub https_ca: Option<Vec<u8>>,
}

/// The `[sync]` table for `center` with `hub`'s bundle, syncing every `interval_secs`.
pub fn sync_toml(hub: &HubProcess, center: &str, hub_url: &str, interval_secs: u32) -> String {
    sync_toml_keyed(
        hub,
        center,
        &format!("hub_url = \"{hub_url}\""),
        interval_secs,
    )
}

/// Like [`sync_toml`], with several hub addresses (`hub_urls`, tried in order).
pub fn sync_toml_urls(
    hub: &HubProcess,
    center: &str,
    urls: &[String],
    interval_secs: u32,
) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let line = format!("hub_urls = [{}]", list.join(", "));
    sync_toml_keyed(hub, center, &line, interval_secs)
}

fn sync_toml_keyed(hub: &HubProcess, center: &str, hub_line: &str, interval_secs: u32) -> String {
    let b = hub.bundle(center);
    format!(
        r#"
[sync]
enabled = true
{hub_line}
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
interval_secs = {interval_secs}
"#,
        ca = b.join("ca.pem").display(),
        cert = b.join("cert.pem").display(),
        key = b.join("key.pem").display(),
    )
}

impl NodeProcess {
    /// Starts a node for `center` with a fresh data directory and the test admin password.
    pub async fn start(center: &str) -> Result<Self> {
        Self::start_with(center, "").await
    }

    /// Like [`NodeProcess::start`], with extra TOML appended to the generated config.
    pub async fn start_with(center: &str, extra_toml: &str) -> Result<Self> {
        Self::start_in(center, &std::env::temp_dir(), extra_toml).await
    }

    /// Like [`NodeProcess::start_with`], with its directory (data and `node.log`) made
    /// inside `parent` — a small tmpfs, say.
    pub async fn start_in(center: &str, parent: &Path, extra_toml: &str) -> Result<Self> {
        Self::start_configured(center, parent, TEST_SERVER_TOML, extra_toml).await
    }

    /// The most general start: `server_toml` is the body of `[server]` besides `listen`
    /// (the listener's limits, say), `extra_toml` is appended.
    pub async fn start_configured(
        center: &str,
        parent: &Path,
        server_toml: &str,
        extra_toml: &str,
    ) -> Result<Self> {
        let mut node = Self::configured(center, parent, server_toml, extra_toml)?;
        node.spawn().await?;
        Ok(node)
    }

    /// A node serving HTTPS with `cert` and `key` (`markaz pki lan`), whose clients trust
    /// `ca` (PEM files); `tls_extra` is added to `[server.tls]`.
    pub async fn start_https(
        center: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
        tls_extra: &str,
    ) -> Result<Self> {
        let server = format!(
            "{TEST_SERVER_TOML}\n\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{tls_extra}\n",
            cert.display(),
            key.display()
        );
        let mut node = Self::configured(center, &std::env::temp_dir(), &server, "")?;
        node.https_ca = Some(std::fs::read(ca)?);
        node.spawn().await?;
        Ok(node)
    }

    /// A client of this node: trusting its CA when it serves HTTPS; no redirects
    /// followed, no cookie store.
    pub fn http_client(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &self.https_ca {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(ca)?);
        }
        Ok(b.build()?)
    }

    /// The node's config file, written but not started.
    fn configured(
        center: &str,
        parent: &Path,
        server_toml: &str,
        extra_toml: &str,
    ) -> Result<Self> {
        let dir = tempfile::tempdir_in(parent)?;
        let config_path = dir.path().join("node.toml");
        let prefix: String = center
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .take(3)
            .collect::<String>()
            .to_ascii_uppercase();
        let config = format!(
            r#"[center]
id = "{center}"
name_ar = "مركز {center}"
name_en = "Center {center}"
receipt_prefix = "{prefix}"

[server]
listen = "127.0.0.1:0"
{server_toml}

[storage]
data_dir = "{data}"

[auth]
initial_admin_password = "{ADMIN_PASSWORD}"

[logging]
level = "info"
{extra_toml}
"#,
            data = dir.path().join("data").display(),
        );
        std::fs::write(&config_path, config)?;
        Ok(Self {
            center: center.into(),
            dir,
            base_url: String::new(),
            child: None,
            config_path,
            keep: Vec::new(),
            open_files_limit: None,
            https_ca: None,
        })
    }

    fn addr_file(&self) -> PathBuf {
        self.dir.path().join("data").join("listen.addr")
    }

    /// (Re)starts the process on the same data directory and waits until it serves.
    #[allow(unsafe_code)] // each `unsafe` block here says why it is sound
    pub async fn spawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.addr_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))?;
        let mut cmd = Command::new(markaz_bin()?);
        cmd.args(["node", "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if let Some(n) = self.open_files_limit {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().context("spawning markaz node")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = self.http_client()?;
        let scheme = if self.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        loop {
            if let Ok(addr) = std::fs::read_to_string(self.addr_file()) {
                let addr = addr.trim().to_string();
                if !addr.is_empty() {
                    self.base_url = format!("{scheme}://{addr}");
                    if client
                        .get(format!("{}/healthz", self.base_url))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                    {
                        return Ok(());
                    }
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "markaz node exited with {status} during start; log:\n{}",
                    self.log()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "markaz node did not serve within 30 s; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// A node of `center` syncing with `hub`: `[sync]` with the center's bundle and the
    /// hub's sync URL, a short interval, and a primary-link probe that is always up (a
    /// listener in this test process), so the uplink is `primary`.
    pub async fn start_synced(center: &str, hub: &HubProcess) -> Result<Self> {
        Self::start_synced_with(center, hub, &hub.sync_url(), "").await
    }

    /// Like [`NodeProcess::start_synced`], syncing with `hub_url` (a proxy in front of
    /// the hub, say) and with `extra_toml` appended.
    pub async fn start_synced_with(
        center: &str,
        hub: &HubProcess,
        hub_url: &str,
        extra_toml: &str,
    ) -> Result<Self> {
        let probe = AlwaysUp::start().await?;
        let toml = format!(
            "{}\n[link]\nprobe_targets = [\"{}\"]\nprobe_interval_secs = 2\nprobe_timeout_secs = 1\n{extra_toml}",
            sync_toml(hub, center, hub_url, 5),
            probe.addr
        );
        let mut node = Self::start_with(center, &toml).await?;
        node.keep.push(Box::new(probe));
        Ok(node)
    }

    /// Like [`NodeProcess::start_synced`], with several hub addresses (`hub_urls`, in
    /// order; the bundle is `hub`'s) and `extra_toml` appended to `[sync]`.
    pub async fn start_synced_to(
        center: &str,
        hub: &HubProcess,
        urls: &[String],
        sync_extra: &str,
    ) -> Result<Self> {
        let probe = AlwaysUp::start().await?;
        let toml = format!(
            "{}{sync_extra}\n[link]\nprobe_targets = [\"{}\"]\nprobe_interval_secs = 2\nprobe_timeout_secs = 1\n",
            sync_toml_urls(hub, center, urls, 5),
            probe.addr
        );
        let mut node = Self::start_with(center, &toml).await?;
        node.keep.push(Box::new(probe));
        Ok(node)
    }

    /// A node of `center` with `[sync]` for `hub` (every 5 s) and `extra_toml` (its own
    /// `[link]`, `[modem]`, …) — nothing else added.
    pub async fn start_synced_raw(
        center: &str,
        hub: &HubProcess,
        extra_toml: &str,
    ) -> Result<Self> {
        let toml = format!(
            "{}\n{extra_toml}",
            sync_toml(hub, center, &hub.sync_url(), 5)
        );
        Self::start_with(center, &toml).await
    }

    /// The node's database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("markaz-node.db")
    }

    /// The node's documents, read-only.
    pub fn docs(&self) -> Result<DocsDb> {
        DocsDb::open(&self.db_path())
    }

    /// The `sync` status panel's data (`null` fields until the first session).
    pub async fn sync_panel(&self, api: &Api) -> Result<serde_json::Value> {
        let (s, b) = api.get("/status").await?;
        if s != 200 {
            bail!("GET /status: {s} {b}");
        }
        Ok(b["panels"]["sync"]["data"].clone())
    }

    /// Presses the technician's "sync now" and waits (up to `limit`) for a session that
    /// started after the press to end; returns that session's record (ok or not).
    pub async fn sync_now_within(&self, api: &Api, limit: Duration) -> Result<serde_json::Value> {
        let pressed = jiff::Timestamp::now();
        let (s, b) = api
            .post("/technician/sync-now", serde_json::json!({}))
            .await?;
        if !(200..300).contains(&s) {
            bail!("sync-now: {s} {b}");
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let panel = self.sync_panel(api).await?;
            let last = &panel["last_session"];
            let started = last["started_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if started.is_some_and(|t| t >= pressed) {
                return Ok(last.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no sync session of {} started after sync-now ended within {limit:?}; panel: {panel}",
                    self.center
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`NodeProcess::sync_now_within`] 60 s, and the session must have succeeded.
    pub async fn sync_now(&self, api: &Api) -> Result<serde_json::Value> {
        let r = self.sync_now_within(api, Duration::from_secs(60)).await?;
        if r["result"] != "ok" {
            bail!("sync session of {} failed: {r}", self.center);
        }
        Ok(r)
    }

    /// The process id while it runs (`None` once it has exited or was stopped).
    pub fn pid(&mut self) -> Option<u32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => child.id(),
            _ => None,
        }
    }

    /// SIGKILL, as a power cut would.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        let pid = c.id().context("no pid")? as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(tokio::time::timeout(Duration::from_secs(20), c.wait()).await??)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// An API client logged in as the test admin (bearer token).
    pub async fn login_admin(&self) -> Result<Api> {
        Api::login(&self.base_url, ADMIN_USER, ADMIN_PASSWORD).await
    }
}

/// A small JSON API client with a bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let resp = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": password, "terminal": "e2e"}))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("login failed: {status} {body}");
        }
        let token = body["token"]
            .as_str()
            .context("no token in login reply")?
            .to_string();
        Ok(Self {
            base: base.into(),
            token,
            http,
        })
    }

    /// Sends a request and returns (status, JSON body).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, json))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        self.call("GET", path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        self.call("POST", path, Some(body)).await
    }
}

// ---- Helpers for the crash, load and secrets tests (proof-eng) ----

impl Api {
    /// The same session against another base URL (a restarted node listens on a new port).
    pub fn rebased(&self, base: &str) -> Self {
        Self {
            base: base.into(),
            token: self.token.clone(),
            http: self.http.clone(),
        }
    }

    /// Creates a staff member with `roles` and, for each `(authority, expires_on)`, a
    /// permission; needs an admin session.
    pub async fn create_staff(
        &self,
        username: &str,
        password: &str,
        roles: &[&str],
        permissions: &[(&str, &str)],
    ) -> Result<()> {
        let (s, b) = self
            .post(
                "/staff",
                serde_json::json!({"username": username, "full_name": format!("Staff {username}"), "password": password, "roles": roles}),
            )
            .await?;
        if s != 201 {
            bail!("creating {username}: {s} {b}");
        }
        for (authority, expires_on) in permissions {
            let (s, b) = self
                .post(
                    &format!("/staff/{username}/permissions"),
                    serde_json::json!({"authority": authority, "expires_on": expires_on}),
                )
                .await?;
            if s != 200 {
                bail!("granting {authority} to {username}: {s} {b}");
            }
        }
        Ok(())
    }
}

/// A valid citizen profile for a national id (all fields the intake form asks for).
pub fn citizen_json(national_id: &str, phone: &str) -> serde_json::Value {
    serde_json::json!({
        "national_id": national_id,
        "full_name": "أحمد محمد الخطيب",
        "father_name": "محمد",
        "mother_name": "فاطمة",
        "birth_date": "1980-05-17",
        "birth_place": "دمشق",
        "phone": phone,
        "address": "دمشق - الميدان - شارع الجزماتية"
    })
}

/// A small deterministic PRNG (xorshift64*), so a failing run can be replayed from the
/// seed it prints.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `env_var` if set, else from the clock; prints the seed.
    pub fn from_env(env_var: &str) -> Self {
        let seed = std::env::var(env_var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("seed: {env_var}={seed}");
        Self::new(seed)
    }

    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---- Desk work shared by the sync tests ----

/// Opens a `criminal_record` case for a registered citizen and takes it through `steps`
/// (`"pay"` pays cash; anything else is a transition action such as `"start"` or
/// `"ready"`). Returns the case number.
pub async fn open_case(api: &Api, nid: &str, steps: &[&str]) -> Result<String> {
    let (s, c) = api
        .post(
            "/cases",
            serde_json::json!({"national_id": nid, "service": "criminal_record"}),
        )
        .await?;
    if s != 201 {
        bail!("opening a case for {nid}: {s} {c}");
    }
    let case_no = c["case_no"]
        .as_str()
        .context("case_no in the reply")?
        .to_string();
    for step in steps {
        let (s, b) = if *step == "pay" {
            api.post(
                &format!("/cases/{case_no}/payment"),
                serde_json::json!({"method": "cash"}),
            )
            .await?
        } else {
            api.post(
                &format!("/cases/{case_no}/transitions"),
                serde_json::json!({"action": step}),
            )
            .await?
        };
        if s != 200 {
            bail!("{step} on {case_no}: {s} {b}");
        }
    }
    Ok(case_no)
}

/// Every case number a node's `GET /api/v1/cases` lists (up to 500).
pub async fn listed_cases(api: &Api) -> Result<Vec<String>> {
    let (s, b) = api.get("/cases?limit=500").await?;
    if s != 200 {
        bail!("GET /cases: {s} {b}");
    }
    Ok(b.as_array()
        .context("a list of cases")?
        .iter()
        .filter_map(|r| r["case_no"].as_str().map(str::to_string))
        .collect())
}

/// The total backlog in a sync panel or a hub overview row: `backlog` as a number, or the
/// sum of its lanes when it is an object (`{"essential": n, "bulk": m}`).
pub fn backlog_total(panel: &serde_json::Value) -> Result<u64> {
    match &panel["backlog"] {
        serde_json::Value::Number(n) => n.as_u64().context("backlog is not a count"),
        serde_json::Value::Object(lanes) => lanes
            .values()
            .map(|v| v.as_u64().context("a lane backlog is not a count"))
            .sum(),
        other => bail!("no backlog in {panel} ({other})"),
    }
}

/// The essential lane's backlog (cases, citizens, staff, catalog): `backlog_essential`
/// when the panel splits it out, else `backlog` itself when it is a number, else its
/// `essential` lane.
pub fn backlog_essential(panel: &serde_json::Value) -> Result<u64> {
    if let Some(n) = panel["backlog_essential"].as_u64() {
        return Ok(n);
    }
    match &panel["backlog"] {
        serde_json::Value::Number(n) => n.as_u64().context("backlog is not a count"),
        serde_json::Value::Object(lanes) => lanes
            .get("essential")
            .and_then(serde_json::Value::as_u64)
            .context("no essential lane in the backlog"),
        other => bail!("no backlog in {panel} ({other})"),
    }
}
