//! Benchmarks measured against the machine's own limits (issue 8), run from
//! `cargo xtask bench …`, never from timed tests.
//!
//! [`group_commit`] (target 1, local writes): in one run on one machine, durable
//! writes/s and latency of 64 concurrent terminals issuing tickets through the real use
//! case ([`App::issue_ticket`], group commit by the [`markaz_node::storage::Writer`]), against a
//! baseline that does the same SQL with one transaction and one fsync per write on one
//! plain rusqlite connection (WAL, `synchronous=FULL`) shared by 64 threads. Both sides
//! run several times, interleaved, on fresh database files; the report gives medians and
//! their ratio, and [`update_benchmarks_md`] writes it into `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

use markaz_node::app::queue::{IssueTicket, NewTicket, issue_in};
use markaz_node::app::{Actor, App, Clock};
use markaz_node::domain::queue::PriorityClass;
use markaz_node::storage::{Db, StorageOptions};

use crate::{machine, median};
use markaz_sync::model::staff::Role;

/// What to measure.
#[derive(Debug, Clone)]
pub struct GroupCommitArgs {
    /// Concurrent writers (terminals). Issue 8 asks for 64.
    pub writers: usize,
    /// Length of each measured run.
    pub run_secs: f64,
    /// Runs per side; the report gives medians.
    pub runs: usize,
    /// Where the database files go (a fresh file per run, removed after).
    pub dir: PathBuf,
}

impl Default for GroupCommitArgs {
    fn default() -> Self {
        Self {
            writers: 64,
            run_secs: 5.0,
            runs: 5,
            dir: std::env::temp_dir(),
        }
    }
}

/// One measured run of one side.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    pub writes: u64,
    pub secs: f64,
    pub writes_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The outcome: every run of both sides, their medians, and the ratio.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub writers: usize,
    pub run_secs: f64,
    pub group_commit: Vec<RunStats>,
    pub baseline: Vec<RunStats>,
    pub median_group_commit_wps: f64,
    pub median_baseline_wps: f64,
    pub median_group_commit_p50_ms: f64,
    pub median_group_commit_p99_ms: f64,
    pub median_baseline_p50_ms: f64,
    pub median_baseline_p99_ms: f64,
    /// median group-commit writes/s ÷ median baseline writes/s (target ≥ 3).
    pub ratio: f64,
    /// What the machine is (CPU count, kernel), for the table.
    pub machine: String,
}

impl Report {
    /// Whether issue 8's target 1 is met: ratio ≥ 3 and p99 < 50 ms.
    pub fn meets_target(&self) -> bool {
        self.ratio >= 3.0 && self.median_group_commit_p99_ms < 50.0
    }

    /// The Markdown section for docs/BENCHMARKS.md (between its markers).
    pub fn markdown(&self, command: &str) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Command: `{command}` — {} writers, {} runs of {:.0} s per side, interleaved; \
             machine: {}.\n\n",
            self.writers,
            self.group_commit.len(),
            self.run_secs,
            self.machine
        ));
        s.push_str("| side | writes/s (median) | p50 ms | p99 ms | runs (writes/s) |\n");
        s.push_str("| --- | ---: | ---: | ---: | --- |\n");
        let runs = |v: &[RunStats]| {
            v.iter()
                .map(|r| format!("{:.0}", r.writes_per_sec))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!(
            "| group commit (`App::issue_ticket` through `storage::Writer`) | {:.0} | {:.1} | {:.1} | {} |\n",
            self.median_group_commit_wps,
            self.median_group_commit_p50_ms,
            self.median_group_commit_p99_ms,
            runs(&self.group_commit)
        ));
        s.push_str(&format!(
            "| baseline (same SQL, one transaction + fsync per write, one connection, 64 threads) | {:.0} | {:.1} | {:.1} | {} |\n",
            self.median_baseline_wps,
            self.median_baseline_p50_ms,
            self.median_baseline_p99_ms,
            runs(&self.baseline)
        ));
        s.push_str(&format!(
            "\nRatio: **{:.1}×** (target ≥ 3×); group-commit p99 **{:.1} ms** (target < 50 ms): \
             target {}.\n",
            self.ratio,
            self.median_group_commit_p99_ms,
            if self.meets_target() {
                "met"
            } else {
                "NOT met"
            }
        ));
        s
    }
}

/// Measures group commit against one-fsync-per-write SQLite; see the module docs.
pub async fn group_commit(args: GroupCommitArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.writers > 0 && args.runs > 0 && args.run_secs > 0.0);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("while creating {}", args.dir.display()))?;
    let run_for = Duration::from_secs_f64(args.run_secs);
    let mut group = Vec::new();
    let mut baseline = Vec::new();
    for run in 0..args.runs {
        let path = fresh_path(&args.dir, "group", run);
        let stats = run_group_commit(&path, args.writers, run_for).await;
        remove_db(&path);
        group.push(stats?);
        let path = fresh_path(&args.dir, "baseline", run);
        let (p, writers) = (path.clone(), args.writers);
        let stats = tokio::task::spawn_blocking(move || run_baseline(&p, writers, run_for))
            .await
            .context("while joining the baseline run")?;
        remove_db(&path);
        baseline.push(stats?);
    }
    let med = |v: &[RunStats], f: fn(&RunStats) -> f64| median(v.iter().map(f).collect());
    let median_group_commit_wps = med(&group, |r| r.writes_per_sec);
    let median_baseline_wps = med(&baseline, |r| r.writes_per_sec);
    Ok(Report {
        writers: args.writers,
        run_secs: args.run_secs,
        median_group_commit_p50_ms: med(&group, |r| r.p50_ms),
        median_group_commit_p99_ms: med(&group, |r| r.p99_ms),
        median_baseline_p50_ms: med(&baseline, |r| r.p50_ms),
        median_baseline_p99_ms: med(&baseline, |r| r.p99_ms),
        ratio: median_group_commit_wps / median_baseline_wps.max(f64::MIN_POSITIVE),
        median_group_commit_wps,
        median_baseline_wps,
        group_commit: group,
        baseline,
        machine: machine(),
    })
}

/// Replaces (or appends) the group-commit section of a BENCHMARKS.md file: the text
/// between `<!-- bench:group-commit:start -->` and `<!-- bench:group-commit:end -->`.
pub fn update_benchmarks_md(path: &Path, report: &Report, command: &str) -> anyhow::Result<()> {
    const START: &str = "<!-- bench:group-commit:start -->";
    const END: &str = "<!-- bench:group-commit:end -->";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{START}\n{}{END}", report.markdown(command));
    let new = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{old}\n## Local writes: group commit\n\n{section}\n"),
    };
    std::fs::write(path, new).with_context(|| format!("while writing {}", path.display()))
}

fn fresh_path(dir: &Path, side: &str, run: usize) -> PathBuf {
    dir.join(format!(
        "markaz-bench-{side}-{}-{run}-{}.db",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    ))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn stats(mut lat: Vec<Duration>, secs: f64) -> RunStats {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |q: f64| {
        lat.get(((lat.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .map(ms)
            .unwrap_or(0.0)
    };
    RunStats {
        writes: lat.len() as u64,
        secs,
        writes_per_sec: lat.len() as f64 / secs,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: lat.last().copied().map(ms).unwrap_or(0.0),
    }
}

fn bench_settings() -> anyhow::Result<markaz_node::app::AppSettings> {
    markaz_node::center::settings_from(&markaz_config::NodeConfig::default())
}

fn reception() -> Actor {
    Actor {
        username: "bench".into(),
        full_name: "Bench".into(),
        roles: vec![Role::Reception],
        terminal: Some("bench".into()),
        language: "en".into(),
    }
}

/// Group commit: `writers` tasks issue tickets through the real use case until the time
/// is up; each latency is from the call to its durable `Ok`.
async fn run_group_commit(
    path: &Path,
    writers: usize,
    run_for: Duration,
) -> anyhow::Result<RunStats> {
    let db = Db::open(path, &StorageOptions::default())
        .with_context(|| format!("while opening {}", path.display()))?;
    let app = App::new(db, bench_settings()?, Clock::System);
    let actor = reception();
    let groups: Vec<String> = app.settings.groups.iter().map(|g| g.id.clone()).collect();
    anyhow::ensure!(!groups.is_empty(), "the default config has queue groups");
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (app, actor) = (app.clone(), actor.clone());
        let group = groups[w % groups.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                app.issue_ticket(
                    &actor,
                    IssueTicket {
                        group: group.clone(),
                        priority: None,
                        national_id: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("issue_ticket: {e}"))?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("while joining a writer")??);
    }
    Ok(stats(lat, start.elapsed().as_secs_f64()))
}

/// The baseline: the same statements as `issue_ticket`, each write its own
/// `BEGIN IMMEDIATE … COMMIT` (one fsync), on one plain connection shared by `writers`
/// threads.
fn run_baseline(path: &Path, writers: usize, run_for: Duration) -> anyhow::Result<RunStats> {
    // The real schema, then the store's own writer is closed again.
    drop(
        Db::open(path, &StorageOptions::default())
            .with_context(|| format!("while creating {}", path.display()))?,
    );
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal mode {mode}");
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    let conn = Arc::new(Mutex::new(conn));
    let settings = bench_settings()?;
    let groups: Vec<(String, char)> = settings
        .groups
        .iter()
        .map(|g| (g.id.clone(), g.letter))
        .collect();
    let day = jiff::Zoned::now()
        .with_time_zone(settings.timezone.clone())
        .date()
        .to_string();
    let actor = reception();
    let start = Instant::now();
    let deadline = start + run_for;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let conn = conn.clone();
            let (group, letter) = groups[w % groups.len()].clone();
            let (day, actor) = (day.clone(), actor.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut c = conn
                        .lock()
                        .map_err(|_| anyhow::anyhow!("baseline connection poisoned"))?;
                    let txn = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    issue_ticket_sql(&txn, &day, &group, letter, &actor)?;
                    txn.commit()?;
                    drop(c);
                    lat.push(t.elapsed());
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a baseline thread panicked"))??,
        );
    }
    Ok(stats(lat, start.elapsed().as_secs_f64()))
}

/// The statements `App::issue_ticket` runs in its savepoint: the same function.
fn issue_ticket_sql(
    c: &Connection,
    day: &str,
    group: &str,
    letter: char,
    actor: &Actor,
) -> anyhow::Result<()> {
    let new = NewTicket {
        day,
        group,
        letter,
        priority: PriorityClass::Normal,
        national_id: None,
        at: jiff::Timestamp::now(),
    };
    issue_in(c, &new, actor).map_err(|e| anyhow::anyhow!("issue_in: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run of both sides: every write succeeds, the numbers are sane, and the
    /// Markdown section replaces itself in place.
    ///
    /// With `MARKAZ_BENCH=full` (and `--release`) this runs the real benchmark and writes
    /// docs/BENCHMARKS.md — the way the numbers there were produced until `cargo xtask bench
    /// group-commit` exists.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_bench_runs_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::env::var("MARKAZ_BENCH").is_ok_and(|v| v == "full");
        let args = if full {
            GroupCommitArgs {
                dir: dir.path().to_path_buf(),
                ..GroupCommitArgs::default()
            }
        } else {
            GroupCommitArgs {
                writers: 8,
                run_secs: 0.3,
                runs: 1,
                dir: dir.path().to_path_buf(),
            }
        };
        let report = group_commit(args).await.unwrap();
        for r in report.group_commit.iter().chain(&report.baseline) {
            assert!(r.writes > 0 && r.writes_per_sec > 0.0, "{r:?}");
            assert!(r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms, "{r:?}");
        }
        eprintln!("{}", report.markdown("test"));
        let md = if full {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS.md")
        } else {
            dir.path().join("BENCHMARKS.md")
        };
        if !full {
            std::fs::write(&md, "# Benchmarks\n\nintro\n").unwrap();
        }
        let command = if cfg!(debug_assertions) {
            "MARKAZ_BENCH=full cargo test -p markaz-node --lib bench:: (dev profile: dependencies and SQLite at opt-level 2, node code unoptimised)"
        } else {
            "MARKAZ_BENCH=full cargo test --release -p markaz-node --lib bench::"
        };
        update_benchmarks_md(&md, &report, command).unwrap();
        update_benchmarks_md(&md, &report, command).unwrap();
        let text = std::fs::read_to_string(&md).unwrap();
        assert_eq!(text.matches("<!-- bench:group-commit:start -->").count(), 1);
        if !full {
            assert!(text.starts_with("# Benchmarks\n\nintro\n"));
        }
        // The files of every run were removed.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("markaz-bench-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
