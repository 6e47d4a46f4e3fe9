//! `bench million` (issue 8, target 5): a node whose database holds a million cases.
//!
//! Generation (once, cached in `target/bench-million/<N>-cases-seed<S>/`, reused while
//! its `complete` marker is there): `markaz node` is started once on the empty data
//! directory and stopped (so the directory is what a node makes on first start), then
//! the node's own use cases run in this process on that database — `App::create_staff`,
//! `App::grant_permission`, `App::register_citizen` (N/5 citizens) and `App::create_case`
//! (N cases, each "created", no required fields) — with 64 concurrent callers through
//! the node's group-commit writer. So the database holds exactly what the node stores
//! for them: projection rows (cases, events, citizens, audit) and automerge documents
//! with their changes. The node's clock is a manual clock walking from 2026-01-02 through
//! as many whole years as 900,000 cases a year need (a case number holds 999,999 cases a
//! year), so a million cases span two years of case numbers as a real center's would.
//!
//! Measurement (each run): `markaz node` is started as a child process on the data;
//! measured are the time from spawn to the first `200` of `/healthz`, VmRSS after that,
//! `GET /api/v1/cases/{case_no}` latencies for random existing case numbers (seeded, one
//! kept-alive connection, after a login), and VmRSS after the lookups. Each run is made
//! twice: first on a cold disk (every file of the data directory dropped from the page
//! cache with `posix_fadvise(POSIX_FADV_DONTNEED)` just before the node starts, so the
//! lookups and the first request read the disk; issue 20.4), then warm.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use markaz_node::app::cases::{DeliveryInput, NewCase};
use markaz_node::app::staff::{Grant, NewStaff};
use markaz_node::app::{Actor, App, Clock};
use markaz_node::storage::{Db, StorageOptions};
use markaz_sync::model::catalog::default_catalog;
use markaz_sync::model::staff::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::workload::{self, Rng};
use super::{machine, median, quantile, thousands};

pub(crate) const PASSWORD: &str = "bench-password-long";
const CENTER: &str = "midan";
const PREFIX: &str = "MID";

/// Arguments of `bench million`.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub cases: u32,
    pub seed: u64,
    pub lookups: usize,
}

pub(crate) fn config_toml(data: &Path) -> String {
    format!(
        r#"[center]
id = "{CENTER}"
name_ar = "مركز الميدان"
name_en = "Midan center"
receipt_prefix = "{PREFIX}"

[server]
listen = "127.0.0.1:0"

[storage]
data_dir = "{}"

[auth]
initial_admin_password = "{PASSWORD}"

[logging]
level = "warn"
"#,
        data.display()
    )
}

/// A running `markaz node` child.
struct NodeChild {
    child: tokio::process::Child,
    addr_file: PathBuf,
}

impl NodeChild {
    fn spawn(config: &Path, data: &Path, log: &Path) -> anyhow::Result<NodeChild> {
        let addr_file = data.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = tokio::process::Command::new(markaz_e2e::markaz_bin()?)
            .args(["node", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("while spawning markaz node")?;
        Ok(NodeChild { child, addr_file })
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the node has exited")
    }

    /// Waits for the first `200` of `/healthz`; returns the address.
    async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(addr) = std::fs::read_to_string(&self.addr_file) {
                let addr = addr.trim().to_string();
                if !addr.is_empty()
                    && let Ok(mut h) = Http::connect(&addr).await
                    && let Ok((200, _)) = h.request("GET", "/healthz", None, None).await
                {
                    return Ok(addr);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("markaz node exited with {status} while starting");
            }
            anyhow::ensure!(Instant::now() < deadline, "the node did not serve in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, then wait (SIGKILL after 30 s).
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// Microseconds during which some runnable task waited for a CPU, machine-wide
/// (`/proc/pressure/cpu`, "some" line); `None` where PSI is not available.
fn cpu_wait_us() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let line = s.lines().find(|l| l.starts_with("some"))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// A minimal HTTP/1.1 client on one kept-alive connection (responses with
/// Content-Length, as the node's API sends them).
struct Http {
    r: BufReader<TcpStream>,
    host: String,
}

impl Http {
    async fn connect(addr: &str) -> anyhow::Result<Http> {
        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
        s.set_nodelay(true)?;
        Ok(Http {
            r: BufReader::new(s),
            host: addr.to_string(),
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let body = json.unwrap_or("");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if json.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let exchange = async {
            self.r.get_mut().write_all(req.as_bytes()).await?;
            let mut line = String::new();
            self.r.read_line(&mut line).await?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .context("status line")?
                .parse()?;
            let mut len = 0usize;
            loop {
                line.clear();
                self.r.read_line(&mut line).await?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse()?;
                }
            }
            let mut buf = vec![0u8; len];
            self.r.read_exact(&mut buf).await?;
            anyhow::Ok((status, buf))
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .context("the node did not answer in 30 s")?
    }
}

pub(crate) fn actor(username: &str, roles: Vec<Role>) -> Actor {
    Actor {
        username: username.into(),
        full_name: username.into(),
        roles,
        terminal: Some("bench".into()),
        language: "en".into(),
    }
}

/// The clerk `bench` (clerk and reception, every authority granted until 2030) created in
/// `app` by its administrator, and the catalog's services that need no field: what the
/// benchmarks' writers act as and ask for.
pub(crate) async fn bench_clerk(app: &App) -> anyhow::Result<(Actor, Vec<String>)> {
    let admin = actor("admin", vec![Role::Admin]);
    app.create_staff(
        &admin,
        NewStaff {
            username: "bench".into(),
            full_name: "Bench Clerk".into(),
            password: PASSWORD.into(),
            roles: vec![Role::Clerk, Role::Reception],
            language: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("create_staff: {e}"))?;
    let catalog = default_catalog();
    let mut authorities: Vec<_> = catalog.iter().map(|s| s.authority).collect();
    authorities.sort();
    authorities.dedup();
    for authority in authorities {
        app.grant_permission(
            &admin,
            "bench",
            Grant {
                authority,
                expires_on: jiff::civil::date(2030, 12, 31),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("grant_permission: {e}"))?;
    }
    let services: Vec<String> = catalog
        .iter()
        .filter(|s| s.fields.iter().all(|f| !f.required))
        .map(|s| s.code.clone())
        .collect();
    anyhow::ensure!(!services.is_empty(), "a service without required fields");
    Ok((actor("bench", vec![Role::Clerk, Role::Reception]), services))
}

/// What generation recorded (kept in the `complete` marker).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Generated {
    pub cases: u32,
    pub citizens: u32,
    /// Seconds the generation took.
    pub secs: f64,
    /// The node's database (and WAL) in bytes.
    pub db_bytes: u64,
    /// (year, cases that year): the last case number of each year.
    pub years: Vec<(i16, u32)>,
}

fn db_bytes(data: &Path) -> u64 {
    ["markaz-node.db", "markaz-node.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

async fn generate(dir: &Path, args: &Args) -> anyhow::Result<Generated> {
    let data = dir.join("data");
    let config = dir.join("node.toml");
    std::fs::create_dir_all(&data)?;
    std::fs::write(&config, config_toml(&data))?;
    // First start of a node on the empty directory, as in a center.
    let mut first = NodeChild::spawn(&config, &data, &dir.join("node.log"))?;
    first.wait_healthy(Duration::from_secs(60)).await?;
    first.stop().await?;

    let started = Instant::now();
    let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = markaz_node::center::settings_from(&cfg)?;
    let db = Db::open(&data.join("markaz-node.db"), &StorageOptions::default())?;
    // Software of 2026 numbers no case before 2026 (`app::wallclock::FLOOR`). A case
    // number holds 999,999 cases a year: up to 900,000 cases fit in 2026 (up to the end of
    // November, before the hub's clock now), more spread over whole years.
    let start: jiff::Timestamp = "2026-01-02T06:00:00Z".parse()?;
    let years = i64::from(args.cases.div_ceil(900_000).max(1));
    let end = start.checked_add(jiff::SignedDuration::from_hours(24 * (365 * years - 35)))?;
    let at = Arc::new(AtomicI64::new(start.as_millisecond()));
    let app = App::new(db, settings, Clock::Manual(at.clone()));
    let (clerk, services) = bench_clerk(&app).await?;
    let citizens = (args.cases / 5).max(1);
    let step_ms = (end.as_millisecond() - start.as_millisecond()) / i64::from(args.cases.max(1));
    let writers = 64;
    // Citizens.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (app, clerk, next) = (app.clone(), clerk.clone(), next.clone());
        let seed = args.seed;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= citizens as usize {
                    return anyhow::Ok(());
                }
                let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
                let c = workload::citizen(&mut rng, workload::national_id(0, i as u32));
                app.register_citizen(&clerk, c)
                    .await
                    .map_err(|e| anyhow::anyhow!("register_citizen {i}: {e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "million: {} citizens in {:.0} s",
        thousands(u64::from(citizens)),
        started.elapsed().as_secs_f64()
    );

    // Cases.
    let next = Arc::new(AtomicUsize::new(0));
    let services = Arc::new(services);
    for _ in 0..writers {
        let (app, clerk, next, at, services) = (
            app.clone(),
            clerk.clone(),
            next.clone(),
            at.clone(),
            services.clone(),
        );
        let (seed, total) = (args.seed, args.cases as usize);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                if i % 50_000 == 0 && i > 0 {
                    eprintln!(
                        "million: cases {} / {} after {:.0} s",
                        thousands(i as u64),
                        thousands(total as u64),
                        started.elapsed().as_secs_f64()
                    );
                }
                at.fetch_add(step_ms, Ordering::Relaxed);
                let mut rng = Rng::new(seed ^ 0xCA5E ^ (i as u64).wrapping_mul(0x9E37_79B9));
                let who = rng.below(u64::from(citizens)) as u32;
                app.create_case(
                    &clerk,
                    NewCase {
                        national_id: workload::national_id(0, who),
                        service: rng.pick(&services).clone(),
                        fields: Default::default(),
                        delivery: DeliveryInput::Pickup,
                        ticket_id: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("create_case {i}: {e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    // Last case number of each year, for the lookups.
    let years: Vec<(i16, u32)> = app
        .db
        .readers
        .read(
            |c| -> Result<Vec<(String, i64)>, markaz_node::storage::StorageError> {
                let mut st = c.prepare(
                    "SELECT name, value FROM sequences WHERE name LIKE 'case:%' ORDER BY name",
                )?;
                let rows =
                    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            },
        )
        .await?
        .into_iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("case:")?.parse().ok()?, v as u32)))
        .collect();
    drop(app);
    let total: u32 = years.iter().map(|(_, n)| n).sum();
    anyhow::ensure!(
        total == args.cases,
        "{total} cases numbered, {} asked",
        args.cases
    );
    Ok(Generated {
        cases: args.cases,
        citizens,
        secs,
        db_bytes: db_bytes(&data),
        years,
    })
}

/// Drops every file under `dir` from the page cache (written back first, since dirty
/// pages cannot be dropped); the bytes of the files it dropped. Needs no privileges.
/// On a virtual machine the host may still hold the pages in its own cache: what the
/// guest reads then comes from the host's memory, not the disk.
pub fn drop_from_page_cache(dir: &Path) -> anyhow::Result<u64> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            bytes += drop_from_page_cache(&path)?;
            continue;
        }
        let f = std::fs::File::open(&path)?;
        f.sync_all()?;
        posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
            .with_context(|| format!("posix_fadvise {}", path.display()))?;
        bytes += f.metadata()?.len();
    }
    Ok(bytes)
}

#[derive(Debug, Clone)]
struct Run {
    /// Whether the data directory was dropped from the page cache before the start.
    cold: bool,
    ready: Duration,
    /// The first lookup after the start (and the login), ms.
    first_ms: f64,
    rss_start_kib: u64,
    rss_after_kib: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Share of the lookups' wall time during which some task waited for a CPU.
    cpu_wait: Option<f64>,
}

async fn measure(
    dir: &Path,
    g: &Generated,
    args: &Args,
    run: usize,
    cold: bool,
) -> anyhow::Result<Run> {
    let data = dir.join("data");
    let config = dir.join("node.toml");
    if cold {
        drop_from_page_cache(&data)?;
    }
    let t = Instant::now();
    let mut node = NodeChild::spawn(&config, &data, &dir.join("node.log"))?;
    let addr = node.wait_healthy(Duration::from_secs(120)).await?;
    let ready = t.elapsed();
    let pid = node.pid()?;
    let rss_start_kib = rss_kib(pid)?;
    let mut http = Http::connect(&addr).await?;
    let login = format!(r#"{{"username":"bench","password":"{PASSWORD}"}}"#);
    let (status, body) = http
        .request("POST", "/api/v1/auth/login", None, Some(&login))
        .await?;
    anyhow::ensure!(
        status == 200,
        "login: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let token = v["token"].as_str().context("token")?.to_string();
    let mut rng = Rng::new(args.seed ^ 0x100C ^ run as u64);
    let mut lat = Vec::with_capacity(args.lookups);
    let (wait0, t0) = (cpu_wait_us(), Instant::now());
    for _ in 0..args.lookups {
        let (year, n) = *rng.pick(&g.years);
        let seq = 1 + rng.below(u64::from(n)) as u32;
        let case_no = format!("{PREFIX}-{year}-{seq:06}");
        let t = Instant::now();
        let (status, body) = http
            .request(
                "GET",
                &format!("/api/v1/cases/{case_no}"),
                Some(&token),
                None,
            )
            .await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            status == 200,
            "lookup {case_no}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let cpu_wait = match (wait0, cpu_wait_us()) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1e6 / t0.elapsed().as_secs_f64()),
        _ => None,
    };
    let rss_after_kib = rss_kib(pid)?;
    node.stop().await?;
    lat.sort_by(f64::total_cmp);
    let first_ms = lat.first().copied().unwrap_or(0.0);
    Ok(Run {
        cold,
        ready,
        first_ms,
        rss_start_kib,
        rss_after_kib,
        p50_ms: quantile(&lat, 0.5),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        cpu_wait,
    })
}

/// The generated center of `args.cases` cases (see the module comment): its directory
/// (`data/` holds the node's data directory), what it holds, and whether it was reused
/// from an earlier run. `bench restore` restores a center from the hub with it.
pub async fn dataset(args: &Args) -> anyhow::Result<(PathBuf, Generated, bool)> {
    let dir = std::env::current_dir()?
        .join("target")
        .join("bench-million")
        .join(format!("{}-cases-seed{}", args.cases, args.seed));
    let marker = dir.join("complete");
    if let Some(g) = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| serde_json::from_str::<Generated>(&s).ok())
    {
        return Ok((dir, g, true));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let g = generate(&dir, args).await?;
    std::fs::write(&marker, serde_json::to_string(&g)?)?;
    Ok((dir, g, false))
}

/// Runs `bench million`; returns the markdown section.
pub async fn million(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let (dir, g, reused) = dataset(args).await?;
    eprintln!(
        "million: {} cases, {} citizens, database {} MB ({})",
        thousands(u64::from(g.cases)),
        thousands(u64::from(g.citizens)),
        g.db_bytes / 1_000_000,
        if reused { "reused" } else { "generated now" }
    );
    let (mut runs, mut colds) = (Vec::new(), Vec::new());
    for k in 0..args.runs {
        for cold in [true, false] {
            let r = measure(&dir, &g, args, k, cold).await?;
            eprintln!(
                "million run {} ({}): serving after {:.2} s, first lookup {:.1} ms, RSS {} MiB → {} MiB after {} lookups, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
                k + 1,
                if cold { "cold" } else { "warm" },
                r.ready.as_secs_f64(),
                r.first_ms,
                r.rss_start_kib / 1024,
                r.rss_after_kib / 1024,
                args.lookups,
                r.p50_ms,
                r.p99_ms,
                r.max_ms
            );
            if r.cold {
                colds.push(r);
            } else {
                runs.push(r);
            }
        }
    }
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let list = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let ready = med(&|r| r.ready.as_secs_f64());
    let rss = med(&|r| r.rss_after_kib.max(r.rss_start_kib) as f64) / 1024.0;
    let p99 = med(&|r| r.p99_ms);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs, each made twice (node restarted each time): first on a cold disk (the data directory dropped from the page cache), then warm; {} lookups per run; machine: {machine}.\n\n",
        args.runs, args.lookups
    ));
    md.push_str(&format!(
        "Data: {} cases and {} citizens written through the node's use cases (`App::register_citizen`, `App::create_case`, 64 concurrent callers, group commit) in {:.0} s; database {} MB; case numbers per year: {}.\n\n",
        thousands(u64::from(g.cases)),
        thousands(u64::from(g.citizens)),
        g.secs,
        g.db_bytes / 1_000_000,
        g.years
            .iter()
            .map(|(y, n)| format!("{y}: {}", thousands(u64::from(*n))))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    md.push_str("| measure | median | runs | target |\n| --- | ---: | --- | --- |\n");
    md.push_str(&format!(
        "| spawn → first 200 of `/healthz`, s | {ready:.2} | {} | < 2 s: **{}** |\n",
        list(&|r| format!("{:.2}", r.ready.as_secs_f64())),
        verdict(ready < 2.0)
    ));
    md.push_str(&format!(
        "| VmRSS after start, MiB | {:.0} | {} | |\n",
        med(&|r| r.rss_start_kib as f64) / 1024.0,
        list(&|r| format!("{}", r.rss_start_kib / 1024))
    ));
    md.push_str(&format!(
        "| VmRSS after the lookups, MiB | {:.0} | {} | < 200 MB: **{}** |\n",
        med(&|r| r.rss_after_kib as f64) / 1024.0,
        list(&|r| format!("{}", r.rss_after_kib / 1024)),
        verdict(rss * 1024.0 * 1024.0 < 200e6)
    ));
    md.push_str(&format!(
        "| `GET /api/v1/cases/{{case_no}}` p50 / p99 / max, ms | {:.2} / {p99:.2} / {:.1} | {} | p99 < 5 ms: **{}** |\n",
        med(&|r| r.p50_ms),
        med(&|r| r.max_ms),
        list(&|r| format!("{:.2} / {:.2} / {:.1}", r.p50_ms, r.p99_ms, r.max_ms)),
        verdict(p99 < 5.0)
    ));
    let cold_med = |f: &dyn Fn(&Run) -> f64| median(colds.iter().map(f).collect());
    let cold_list = |f: &dyn Fn(&Run) -> String| colds.iter().map(f).collect::<Vec<_>>().join(", ");
    let cold_p99 = cold_med(&|r| r.p99_ms);
    md.push_str(&format!(
        "| cold disk: spawn → first 200 of `/healthz`, s | {:.2} | {} | |\n",
        cold_med(&|r| r.ready.as_secs_f64()),
        cold_list(&|r| format!("{:.2}", r.ready.as_secs_f64()))
    ));
    md.push_str(&format!(
        "| cold disk: first lookup after the start, ms | {:.1} | {} | |\n",
        cold_med(&|r| r.first_ms),
        cold_list(&|r| format!("{:.1}", r.first_ms))
    ));
    md.push_str(&format!(
        "| cold disk: `GET /api/v1/cases/{{case_no}}` p50 / p99 / max, ms | {:.2} / {cold_p99:.2} / {:.1} | {} | p99 < 20 ms: **{}** |\n",
        cold_med(&|r| r.p50_ms),
        cold_med(&|r| r.max_ms),
        cold_list(&|r| format!("{:.2} / {:.2} / {:.1}", r.p50_ms, r.p99_ms, r.max_ms)),
        verdict(cold_p99 < 20.0)
    ));
    md.push_str(&format!(
        "\nCPU pressure during the lookups (`/proc/pressure/cpu`, share of the time some runnable task waited for a CPU), warm runs: {}; cold runs: {}.\n",
        list(&|r| r
            .cpu_wait
            .map_or_else(|| "n/a".to_string(), |w| format!("{:.0}%", 100.0 * w))),
        cold_list(&|r| r
            .cpu_wait
            .map_or_else(|| "n/a".to_string(), |w| format!("{:.0}%", 100.0 * w)))
    ));
    md.push_str(
        "\nThe cold runs drop the data directory from this machine's page cache; this machine is a virtual one, so its host may still cache the disk image, and a cold read may come from the host's memory rather than the disk.\n",
    );
    Ok(md)
}
