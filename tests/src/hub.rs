//! A real `markaz hub` process for end-to-end tests, with its certificates made by
//! `markaz pki` (CA, hub certificate for 127.0.0.1, one bundle per center), its sync port
//! fixed for its whole life (so centers configured with it reach it again after a
//! restart), and readers of what it holds: the operator JSON API and, read-only, its
//! database (the documents as the hub has them).
//!
//! ```text
//! let hub = HubProcess::start(&["midan", "qanawat"]).await?;
//! let midan = NodeProcess::start_synced("midan", &hub).await?;
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use markaz_sync::docs::{self, CaseView, CitizenView, DocId};
use markaz_sync::store::DocStore;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::markaz_bin;

// The hub's files in its data directory (markaz_hub::{WEB_ADDR_FILE, SYNC_ADDR_FILE,
// storage::DB_FILE}); spelled here so these tests need only the binary.
const WEB_ADDR_FILE: &str = "web.addr";
const SYNC_ADDR_FILE: &str = "sync.addr";
/// Beside the data directory: the API token of the test operator.
const TOKEN_FILE: &str = "operator-api.token";
const HUB_DB_FILE: &str = "markaz-hub.db";

/// Runs `markaz <args>` and fails with its output if it fails.
pub fn markaz_cli(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(markaz_bin()?)
        .args(args)
        .output()
        .with_context(|| format!("while running markaz {args:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "markaz {args:?} failed: {text}");
    Ok(text)
}

/// A free loopback port (bound, read, released: another process may take it, which is
/// rare enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A TCP listener that accepts and drops every connection, for as long as it lives: a
/// primary-link probe target that is always up.
pub struct AlwaysUp {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AlwaysUp {
    pub async fn start() -> Result<Self> {
        Self::start_on(0).await
    }

    /// On a given loopback port (0: any): a link that comes back on the same address.
    pub async fn start_on(port: u16) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for AlwaysUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running (or stopped) `markaz hub` process.
pub struct HubProcess {
    pub dir: tempfile::TempDir,
    /// The sync endpoint's port (mutual TLS), the same across restarts.
    pub sync_port: u16,
    /// `http://127.0.0.1:<port>` of the operator pages and API (changes on restart).
    pub web_url: String,
    /// The `markaz pki` directory.
    pub pki: PathBuf,
    /// The administrator made for the test (`tester`; a sibling's has its own name).
    pub operator: String,
    /// Its password (for the login page).
    pub operator_password: String,
    /// `None` while the hub is down: nothing listens on the sync port then, which is
    /// what a center sees when the hub is unreachable.
    child: Option<Child>,
    config_path: PathBuf,
    /// Appended to the generated config (kept for [`HubProcess::sibling`]).
    extra_toml: String,
    http: reqwest::Client,
}

impl HubProcess {
    /// Creates the PKI (CA, hub certificate for 127.0.0.1, a bundle for each of
    /// `centers`), writes the hub config and starts the hub.
    pub async fn start(centers: &[&str]) -> Result<Self> {
        let mut hub = Self::prepare(centers)?;
        hub.spawn().await?;
        Ok(hub)
    }

    /// Like [`HubProcess::start`] without starting the process (the hub is down until
    /// [`HubProcess::spawn`]).
    pub fn prepare(centers: &[&str]) -> Result<Self> {
        Self::prepare_with(centers, "")
    }

    /// Like [`HubProcess::prepare`], with `extra_toml` appended to the hub's config (its
    /// `[storage]`, say).
    pub fn prepare_with(centers: &[&str], extra_toml: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        let p = pki.to_str().context("pki path")?;
        markaz_cli(&["pki", "init", p])?;
        markaz_cli(&["pki", "hub", p, "--san", "127.0.0.1"])?;
        for c in centers {
            markaz_cli(&["pki", "center", p, c])?;
        }
        Self::configure(dir, pki, extra_toml, "tester")
    }

    /// Another hub process with the same PKI (CA, hub certificate, CRL) and the same
    /// `extra_toml` (on PostgreSQL: the same database), its own data directory and sync
    /// port; not started. The PKI stays in this hub's directory.
    pub fn sibling(&self) -> Result<Self> {
        let operator = format!("tester-{}", free_port()?);
        Self::configure(
            tempfile::tempdir()?,
            self.pki.clone(),
            &self.extra_toml,
            &operator,
        )
    }

    /// Writes the config and adds the administrator `operator` (on a shared PostgreSQL
    /// database a sibling adds its own).
    fn configure(
        dir: tempfile::TempDir,
        pki: PathBuf,
        extra_toml: &str,
        operator: &str,
    ) -> Result<Self> {
        let sync_port = free_port()?;
        let data = dir.path().join("data");
        let config_path = dir.path().join("hub.toml");
        std::fs::write(
            &config_path,
            format!(
                r#"[hub]
listen = "127.0.0.1:{sync_port}"
web_listen = "127.0.0.1:0"
data_dir = "{data}"
ca_cert = "{pki}/ca.pem"
server_cert = "{pki}/hub/cert.pem"
server_key = "{pki}/hub/key.pem"
crl = "{pki}/crl.pem"

[logging]
level = "info"
{extra_toml}
"#,
                data = data.display(),
                pki = pki.display(),
            ),
        )?;
        // An administrator with an API token for the operator API (the hub has no shared
        // token any more).
        let out = markaz_cli(&[
            "operator",
            "add",
            "--config",
            config_path.to_str().context("config path")?,
            "--username",
            operator,
            "--role",
            "admin",
            "--token",
            "tests",
        ])?;
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .context("markaz operator add printed no token")?
            .to_string();
        std::fs::write(dir.path().join(TOKEN_FILE), &token)?;
        let operator_password = out
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .context("markaz operator add printed no password")?
            .to_string();
        Ok(Self {
            operator: operator.to_string(),
            operator_password,
            dir,
            sync_port,
            web_url: String::new(),
            pki,
            child: None,
            config_path,
            extra_toml: extra_toml.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The bundle directory (`ca.pem`, `cert.pem`, `key.pem`) of `center`.
    pub fn bundle(&self, center: &str) -> PathBuf {
        self.pki.join("centers").join(center)
    }

    /// Issues a bundle for one more center.
    pub fn add_center(&self, center: &str) -> Result<()> {
        markaz_cli(&["pki", "center", self.pki.to_str().context("pki")?, center])?;
        Ok(())
    }

    /// `markaz pki revoke <pki> <center>` (the hub takes it at its next TLS reload).
    pub fn revoke(&self, center: &str) -> Result<String> {
        markaz_cli(&["pki", "revoke", self.pki.to_str().context("pki")?, center])
    }

    /// `https://127.0.0.1:<sync port>`, what a center's `sync.hub_url` says.
    pub fn sync_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.sync_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// (Re)starts the process on the same data directory and port and waits until both
    /// listeners serve.
    pub async fn spawn(&mut self) -> Result<()> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data)?;
        let _ = std::fs::remove_file(data.join(WEB_ADDR_FILE));
        let _ = std::fs::remove_file(data.join(SYNC_ADDR_FILE));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hub.log"))?;
        let child = Command::new(markaz_bin()?)
            .args(["hub", "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawning markaz hub")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(data.join(WEB_ADDR_FILE)) {
                let addr = addr.trim();
                if !addr.is_empty() {
                    self.web_url = format!("http://{addr}");
                    let web_ok = self
                        .http
                        .get(format!("{}/healthz", self.web_url))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    let sync_ok = tokio::net::TcpStream::connect(("127.0.0.1", self.sync_port))
                        .await
                        .is_ok();
                    if web_ok && sync_ok {
                        return Ok(());
                    }
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "markaz hub exited with {status} during start; log:\n{}",
                    self.log()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("markaz hub did not serve within 30 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    /// SIGKILL.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("hub not running")?;
        let pid = c.id().context("no pid")? as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(tokio::time::timeout(Duration::from_secs(20), c.wait()).await??)
    }

    /// The API token of the administrator `tester` (made by `markaz operator add` when the
    /// hub was prepared).
    pub fn operator_token(&self) -> Result<String> {
        let t = std::fs::read_to_string(self.dir.path().join(TOKEN_FILE))
            .context("while reading the test operator's token")?;
        Ok(t.trim().to_string())
    }

    /// An operator API call with the token: (status, JSON body).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.web_url))
            .bearer_auth(self.operator_token()?);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, json))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let (s, b) = self.api("GET", path, None).await?;
        ensure!(s == 200, "GET {path}: {s} {b}");
        Ok(b)
    }

    /// `/api/v1/sync-log` rows of `center`, newest first.
    pub async fn sync_log(&self, center: &str) -> Result<Vec<Value>> {
        let v = self.get(&format!("/sync-log?center={center}")).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The `/api/v1/centers` row of `center`, if any.
    pub async fn center_row(&self, center: &str) -> Result<Option<Value>> {
        let v = self.get("/centers").await?;
        Ok(v.as_array()
            .and_then(|a| a.iter().find(|r| r["center"] == center).cloned()))
    }

    /// The hub's database, read-only (works while the hub runs: WAL).
    pub fn db(&self) -> Result<DocsDb> {
        DocsDb::open(&self.data_dir().join(HUB_DB_FILE))
    }

    /// An online backup of the hub's database into `to` (`VACUUM INTO`, as an operator
    /// would take it while the hub runs).
    pub fn backup_to(&self, to: &Path) -> Result<()> {
        let db = self.db()?;
        db.conn
            .execute("VACUUM INTO ?1", [to.to_str().context("backup path")?])
            .context("while backing up the hub database")?;
        Ok(())
    }

    /// `markaz hub restore --config <hub.toml> --from <backup>` (the hub stopped).
    pub fn restore_from(&self, backup: &Path) -> Result<String> {
        markaz_cli(&[
            "hub",
            "restore",
            "--config",
            self.config_path.to_str().context("config path")?,
            "--from",
            backup.to_str().context("backup path")?,
        ])
    }

    /// `markaz hub restore --config <hub.toml>` without `--from` (PostgreSQL: the
    /// database was put back with PostgreSQL's tools; this is the after-restore step).
    pub fn restore_in_place(&self) -> Result<String> {
        markaz_cli(&[
            "hub",
            "restore",
            "--config",
            self.config_path.to_str().context("config path")?,
        ])
    }

    /// Puts a backup in place of the hub's database by hand, without `markaz hub
    /// restore` (the hub stopped): what the hub must notice by itself.
    pub fn put_back(&self, backup: &Path) -> Result<()> {
        let db = self.data_dir().join(HUB_DB_FILE);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(backup, &db).context("while copying the backup into place")?;
        Ok(())
    }

    /// doc id of every document the hub routes to `center`.
    pub fn routed_to(&self, center: &str) -> Result<Vec<String>> {
        let db = self.db()?;
        let mut st = db
            .conn
            .prepare("SELECT doc_id FROM routes WHERE center=?1 ORDER BY doc_id")?;
        let rows = st
            .query_map([center], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// A read-only view of the documents in a node's or the hub's database (both keep them
/// in `markaz_sync::store`'s tables).
pub struct DocsDb {
    pub conn: Connection,
    docs: DocStore,
}

impl DocsDb {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("while opening {} read-only", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(Self {
            conn,
            docs: DocStore::new(automerge::ActorId::random(), 64),
        })
    }

    /// doc id → heads (the bytes as stored) of every document held.
    pub fn heads(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut st = self.conn.prepare("SELECT doc_id, heads FROM doc_meta")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// (doc id, owner) of every document of `kind` (`case`, `citizen`, `staff`, …).
    pub fn docs_of_kind(&self, kind: &str) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT doc_id, owner FROM doc_meta WHERE kind = ?1 ORDER BY doc_id")?;
        let rows = st
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Every case document, read.
    pub fn cases(&mut self) -> Result<Vec<CaseView>> {
        let ids = self.docs_of_kind("case")?;
        let mut out = Vec::new();
        for (id, _) in ids {
            let id: DocId = id
                .parse()
                .map_err(|e| anyhow::anyhow!("doc id {id}: {e:?}"))?;
            let view = self
                .docs
                .read(&self.conn, &id, docs::read_case)?
                .with_context(|| format!("{id} listed but missing"))??;
            out.push(view);
        }
        Ok(out)
    }

    /// The citizen document of `nid`, read.
    pub fn citizen(&mut self, nid: &str) -> Result<Option<CitizenView>> {
        let id = DocId::citizen(&nid.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?);
        Ok(self
            .docs
            .read(&self.conn, &id, docs::read_citizen)?
            .transpose()?)
    }
}

/// What a user compares between the hub's copy of a case and a center's: status, number
/// of events, fee total (piastres), and the conflict flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseSummary {
    pub case_no: String,
    pub status: String,
    pub events: usize,
    pub fee_total: Option<i64>,
}

impl CaseSummary {
    /// From a document as read at the hub.
    pub fn of_doc(v: &CaseView) -> Self {
        Self {
            case_no: v.case_no.to_string(),
            status: serde_json::to_value(v.derived.status)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default(),
            events: v.events.len(),
            fee_total: v
                .fee
                .as_ref()
                .and_then(|f| serde_json::to_value(f.total).ok())
                .and_then(|t| money_piastres(&t)),
        }
    }

    /// From a node's `GET /api/v1/cases/{case_no}`.
    pub fn of_api(v: &Value) -> Self {
        Self {
            case_no: v["case_no"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            events: v["events"].as_array().map_or(0, Vec::len),
            fee_total: money_piastres(&v["fee"]["total"]),
        }
    }
}

/// Money as serialized (an integer, or an object with an integer inside).
fn money_piastres(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(m) => m.values().find_map(money_piastres),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
