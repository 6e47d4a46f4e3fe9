//! A full disk that also holds the log (issue 17.1), and an unwritable stdout.
//!
//! - The node's data directory and its log (`node.log`, its stdout and stderr) are on one
//!   small tmpfs. Terminals write while the disk is filled, then the disk is freed: the
//!   same process (no restart) takes writes again, `/healthz` said 503 with JSON while
//!   writes could not succeed and 200 again after, the log lines it could not write were
//!   counted, and every write it acknowledged is there — before and after a SIGKILL.
//! - With stdout and stderr on `/dev/full` the node starts, serves, and stops cleanly.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN). Without it the first test is skipped with a
//! message — unless `CI=true`, where it fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use markaz_e2e::{Api, NodeProcess, citizen_json, markaz_bin};
use serde_json::Value;

const TERMINALS: usize = 6;
const CLERK_PASSWORD: &str = "clerk-full-disk-password";

/// A tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing why) when this process may not mount and CI is not set.
    fn mount(size: &str) -> Result<Option<Tmpfs>> {
        let dir = tempfile::tempdir()?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .context("running mount")?;
        if out.status.success() {
            return Ok(Some(Tmpfs { dir }));
        }
        let why = format!(
            "cannot mount a tmpfs ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("{why}; this test needs root (CAP_SYS_ADMIN) in CI");
        }
        eprintln!("SKIPPED: {why}; run as root to test a full disk");
        Ok(None)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the filesystem refuses (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => return Err(e).context("filling the disk"),
            }
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

async fn healthz(http: &reqwest::Client, node: &str) -> Result<(u16, Value)> {
    let r = http.get(format!("{node}/healthz")).send().await?;
    let status = r.status().as_u16();
    let body: Value = r
        .json()
        .await
        .context("/healthz answers JSON, healthy or not")?;
    Ok((status, body))
}

/// What the terminals saw.
#[derive(Default)]
struct Ledger {
    acknowledged: HashSet<String>,
    refused: u64,
    unexpected: Vec<String>,
}

/// One terminal saving citizens until `stop`: 201 is acknowledged, 503 is refused (and
/// must be the API's JSON error), anything else is unexpected.
async fn terminal(api: Api, first_nid: u64, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut nid = first_nid;
    while !stop.load(Ordering::Relaxed) {
        nid += 1;
        // Governorate 01 (Damascus), then nine digits.
        let id = format!("01{nid:09}");
        match api.post("/citizens", citizen_json(&id, "0944123456")).await {
            Ok((201, _)) => {
                ledger.lock().unwrap().acknowledged.insert(id);
            }
            Ok((503, b)) if b["error"]["code"].is_string() => {
                ledger.lock().unwrap().refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok((s, b)) => ledger.lock().unwrap().unexpected.push(format!("{s} {b}")),
            Err(e) => ledger.lock().unwrap().unexpected.push(format!("{e:#}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_holding_data_and_log_recovers_without_a_restart() -> Result<()> {
    let Some(fs) = Tmpfs::mount("24m")? else {
        return Ok(());
    };
    let mut node = NodeProcess::start_in("midan", fs.path(), "").await?;
    let pid = node.pid().context("the node runs")?;
    let admin = node.login_admin().await?;
    admin
        .create_staff("desk", CLERK_PASSWORD, &["clerk", "reception"], &[])
        .await?;
    let mut clerks = Vec::new();
    for _ in 0..TERMINALS {
        clerks.push(Api::login(&node.base_url, "desk", CLERK_PASSWORD).await?);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, api) in clerks.iter().enumerate() {
        tasks.push(tokio::spawn(terminal(
            api.clone(),
            (i as u64 + 1) * 10_000_000,
            ledger.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Fill the disk while the terminals write.
    let filler = fs.path().join("filler");
    let filled = fill(&filler)?;
    eprintln!("filled the tmpfs with {filled} bytes");
    let refused_before = ledger.lock().unwrap().refused;
    let mut saw_unhealthy: Option<Value> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // Top the disk up: SQLite may have freed a little (a WAL reset).
        let _ = fill(&fs.path().join(format!("filler-{}", rand_suffix())));
        let (s, b) = healthz(&http, &node.base_url).await?;
        if s == 503 {
            ensure!(b["status"] == "unhealthy", "503 names the state: {b}");
            saw_unhealthy = Some(b);
            if ledger.lock().unwrap().refused > refused_before {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unhealthy = saw_unhealthy.context("/healthz never said 503 while the disk was full")?;
    eprintln!("while full: {unhealthy}");
    ensure!(
        unhealthy["writer"]["state"] == "failing",
        "the writer is failing while the disk is full: {unhealthy}"
    );
    ensure!(
        ledger.lock().unwrap().refused > refused_before,
        "no write was refused while the disk was full"
    );
    // A while longer on a full disk, as in the attack (several failed commits in a row).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Free the disk: the same process must take writes again.
    for entry in std::fs::read_dir(fs.path())? {
        let p: PathBuf = entry?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("filler"))
        {
            std::fs::remove_file(&p)?;
        }
    }
    let freed = Instant::now();
    let acked_at_free = ledger.lock().unwrap().acknowledged.len();
    let healthy = loop {
        let (s, b) = healthz(&http, &node.base_url).await?;
        if s == 200 {
            break b;
        }
        ensure!(
            freed.elapsed() < Duration::from_secs(15),
            "/healthz still {s} 15 s after the disk was freed: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("after freeing: {healthy}");
    loop {
        if ledger.lock().unwrap().acknowledged.len() > acked_at_free + 20 {
            break;
        }
        ensure!(
            freed.elapsed() < Duration::from_secs(15),
            "the terminals' writes did not succeed again within 15 s of freeing the disk; last answers: {:?}; log: {}",
            {
                let l = ledger.lock().unwrap();
                l.unexpected
                    .iter()
                    .rev()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
            },
            node.log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    ensure!(
        node.pid() == Some(pid),
        "the node process was restarted or died"
    );
    let (s, b) = healthz(&http, &node.base_url).await?;
    ensure!(s == 200, "{b}");
    ensure!(
        b["log"]["dropped_lines"].as_u64().unwrap_or(0) > 0,
        "the log lines that could not be written on the full disk are counted: {b}"
    );

    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .context("terminals done")?
        .into_inner()
        .unwrap();
    ensure!(
        ledger.unexpected.is_empty(),
        "answers other than 201 or a JSON 503: {:?}",
        &ledger.unexpected[..ledger.unexpected.len().min(5)]
    );
    eprintln!(
        "acknowledged {} citizens, refused {} writes",
        ledger.acknowledged.len(),
        ledger.refused
    );
    let admin = admin.rebased(&node.base_url);
    check_all_there(&admin, &ledger.acknowledged).await?;
    // And durable: after a power cut.
    node.kill9().await?;
    node.spawn().await?;
    let admin = node.login_admin().await?;
    check_all_there(&admin, &ledger.acknowledged).await?;
    Ok(())
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn check_all_there(api: &Api, acknowledged: &HashSet<String>) -> Result<()> {
    let mut missing = Vec::new();
    for nid in acknowledged {
        let (s, _) = api.get(&format!("/citizens/{nid}")).await?;
        if s != 200 {
            missing.push(format!("{nid}: {s}"));
        }
    }
    ensure!(
        missing.is_empty(),
        "{} acknowledged citizens are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    Ok(())
}

/// stdout and stderr on `/dev/full`: `println!` and the log would panic there (exit 101).
/// The node starts, serves, puts the generated first password in a private file, counts
/// the log lines it could not write, and stops cleanly on SIGTERM.
#[tokio::test]
async fn the_node_starts_and_serves_with_stdout_on_dev_full() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[center]\nid = \"midan\"\nname_ar = \"مركز\"\nname_en = \"Center\"\nreceipt_prefix = \"MID\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n[logging]\nlevel = \"info\"\n",
            data.display()
        ),
    )?;
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .context("opening /dev/full")
    };
    let mut child = tokio::process::Command::new(markaz_bin()?)
        .args(["node", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(full()?)
        .stderr(full()?)
        .kill_on_drop(true)
        .spawn()?;
    let addr_file = data.join("listen.addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        if let Some(status) = child.try_wait()? {
            bail!("the node exited with {status} at start with stdout on /dev/full");
        }
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && !a.trim().is_empty()
        {
            break format!("http://{}", a.trim());
        }
        ensure!(Instant::now() < deadline, "the node did not serve in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    let (s, b) = healthz(&http, &base).await?;
    ensure!(s == 200, "{b}");
    ensure!(
        b["log"]["dropped_lines"].as_u64().unwrap_or(0) > 0,
        "the lines written to /dev/full are counted as dropped: {b}"
    );
    // The generated first password could not be shown: it is in a private file, and works.
    let file = data.join("initial-admin-password");
    let text = std::fs::read_to_string(&file).context("the first password is saved")?;
    use std::os::unix::fs::PermissionsExt;
    ensure!(
        std::fs::metadata(&file)?.permissions().mode() & 0o077 == 0,
        "only the node's user may read the password file"
    );
    let (user, password) = text.trim().split_once(' ').context("user password")?;
    Api::login(&base, user, password).await?;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().context("pid")? as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    ensure!(status.success(), "clean exit on SIGTERM, got {status}");
    Ok(())
}
