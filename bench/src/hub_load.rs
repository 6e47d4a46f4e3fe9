//! `bench hub` (issue 8 target 4, issue 13.9): the center-days of many centers arriving
//! at the hub at once, on each of the hub's engines in one run.
//!
//! Every center (`c01`…) is first in sync with the hub (catalog pulled), then works its
//! own center-day offline (its own seed, its own citizens). Then all of them open a
//! session at the same moment (one task each, real mutual TLS on loopback, no shaping)
//! and push their day. The hub's apply rate is the changes it acknowledged divided by
//! the wall time from the start of the sessions to the last one's end. Engines, one after
//! the other in each run, each with centers of its own (same seed, same days):
//! - SQLite (`synchronous=FULL`), one hub;
//! - PostgreSQL, one hub with `pool_size` connections;
//! - PostgreSQL, two hub instances on the same database (each its own pool, listener,
//!   TLS and document caches, as two processes would be; here both in this process), the
//!   centers split between them.
//!
//! PostgreSQL is a throwaway cluster (`markaz_e2e::pg`) on loopback with `fsync`,
//! `full_page_writes` and `synchronous_commit` on, as in production. The baseline, in the
//! same run: the same changes (the same bytes, read from the SQLite run's centers)
//! decoded and applied one by one, in each center's order, to in-memory automerge
//! documents on one thread, with no storage at all.
//!
//! Bytes on disk per center-day: the store's growth across the push divided by the
//! centers — SQLite's pages (`page_count × page_size`), PostgreSQL's
//! `pg_database_size` (tables, indexes, TOAST; not the WAL); for in-memory automerge, the
//! documents in automerge's compact save format (what a file per document would take).
//! CPU during the push: this process (hub and centers), the PostgreSQL server's
//! processes, and the whole machine (shared with anything else running on it).
//!
//! The centers' own work (building requests, merging replies into their SQLite files)
//! runs in this process on the same cores as the hub, so the figure is a floor for the
//! hub on its own machine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use automerge::{AutoCommit, Change};
use markaz_config::{HubStorage, StorageEngine};
use markaz_e2e::pg::{PgCluster, PgOptions};
use markaz_sync::model::ids::CenterId;

use super::rig::{Center, HubRig};
use super::workload::{self, Shape};
use super::{machine, median, thousands};

/// Arguments of `bench hub`.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub centers: usize,
    pub seed: u64,
    pub shape: Shape,
    /// `storage.pool_size` of each PostgreSQL hub.
    pub pool_size: u32,
}

/// A hub store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres { processes: usize },
}

impl Engine {
    const ALL: [Engine; 3] = [
        Engine::Sqlite,
        Engine::Postgres { processes: 1 },
        Engine::Postgres { processes: 2 },
    ];

    fn label(self, pool: u32) -> String {
        match self {
            Engine::Sqlite => "SQLite, one hub (`synchronous=FULL`)".into(),
            Engine::Postgres { processes: 1 } => {
                format!("PostgreSQL, one hub (`pool_size = {pool}`)")
            }
            Engine::Postgres { processes } => format!(
                "PostgreSQL, {processes} hub instances on one database (`pool_size = {pool}` each)"
            ),
        }
    }
}

/// CPU time, from `/proc` (clock ticks of 1/100 s).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    this_process: Duration,
    postgres: Duration,
    machine_busy: Duration,
}

#[derive(Debug, Clone)]
struct Run {
    engine: Engine,
    changes: usize,
    wall: Duration,
    /// Time the hub's sync log shows at least one push request in flight.
    push_busy: Duration,
    generate: Duration,
    /// Growth of the store across the push.
    grown: u64,
    cpu: Cpu,
}

impl Run {
    fn rate(&self) -> f64 {
        self.changes as f64 / self.wall.as_secs_f64()
    }
}

/// The in-memory baseline of one run.
#[derive(Debug, Clone)]
struct Baseline {
    changes: usize,
    wall: Duration,
    /// The documents in automerge's save format.
    saved: u64,
}

impl Baseline {
    fn rate(&self) -> f64 {
        self.changes as f64 / self.wall.as_secs_f64()
    }
}

/// Union length of `[start, end]` intervals (ms).
fn union_ms(mut iv: Vec<(i64, i64)>) -> i64 {
    iv.sort();
    let mut total = 0;
    let mut cur: Option<(i64, i64)> = None;
    for (a, b) in iv {
        cur = match cur {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((s, e)) = cur {
        total += e - s;
    }
    total
}

/// Applies every center's changes to fresh in-memory documents on this thread: the time
/// it took, then (not timed) the documents' saved size.
fn baseline(all: &[Vec<(String, Vec<u8>)>]) -> anyhow::Result<Baseline> {
    let t = Instant::now();
    let mut kept = Vec::with_capacity(all.len());
    for center in all {
        let mut docs: HashMap<&str, AutoCommit> = HashMap::new();
        for (doc, bytes) in center {
            let change = Change::from_bytes(bytes.clone()).context("a stored change")?;
            docs.entry(doc.as_str())
                .or_default()
                .apply_changes([change])
                .context("applying a change in memory")?;
        }
        kept.push(std::hint::black_box(docs));
    }
    let wall = t.elapsed();
    let saved = kept
        .iter_mut()
        .flat_map(|docs| docs.values_mut())
        .map(|d| d.save().len() as u64)
        .sum();
    Ok(Baseline {
        changes: all.iter().map(Vec::len).sum(),
        wall,
        saved,
    })
}

fn changes_of(center: &Center) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut st = center
        .conn
        .prepare("SELECT doc_id, bytes FROM changes WHERE local = 1 ORDER BY seq")?;
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// utime + stime of process `pid` in clock ticks (`None` if it is gone).
fn proc_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state ppid … utime(14) stime(15).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((ppid, ticks))
}

/// Busy clock ticks of the whole machine (all CPUs).
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().take(8).sum();
    total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// CPU ticks of the cluster's postmaster and its children (the backends), by pid.
fn postgres_ticks(cluster: &PgCluster) -> HashMap<String, u64> {
    let pm = std::fs::read_to_string(cluster.dir.join("data").join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    let Ok(pm_pid) = pm.parse::<u64>() else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some((ppid, ticks)) = proc_ticks(&name)
            && (ppid == pm_pid || name == pm)
        {
            out.insert(name, ticks);
        }
    }
    out
}

/// A CPU reading to subtract from a later one.
struct CpuMark {
    this: u64,
    machine: u64,
    postgres: HashMap<String, u64>,
}

impl CpuMark {
    fn now(pg: Option<&PgCluster>) -> CpuMark {
        CpuMark {
            this: proc_ticks("self").map_or(0, |(_, t)| t),
            machine: machine_ticks(),
            postgres: pg.map(postgres_ticks).unwrap_or_default(),
        }
    }

    fn since(&self, earlier: &CpuMark) -> Cpu {
        let ticks = |t: u64| Duration::from_millis(t * 10);
        let pg: u64 = self
            .postgres
            .iter()
            .map(|(pid, t)| t.saturating_sub(earlier.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        Cpu {
            this_process: ticks(self.this.saturating_sub(earlier.this)),
            postgres: ticks(pg),
            machine_busy: ticks(self.machine.saturating_sub(earlier.machine)),
        }
    }
}

/// Where a run's hub keeps its data.
enum Store<'a> {
    Sqlite(std::path::PathBuf),
    Postgres { cluster: &'a PgCluster, db: String },
}

impl Store<'_> {
    /// The store's size in bytes.
    fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Store::Sqlite(file) => {
                let conn = rusqlite::Connection::open_with_flags(
                    file,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                Ok(u64::try_from(pages * size)?)
            }
            Store::Postgres { cluster, db } => Ok(cluster
                .psql(db, "SELECT pg_database_size(current_database())")?
                .parse()?),
        }
    }

    /// The (start, end) of every push request in the sync log.
    fn push_intervals(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        const SQL: &str = "SELECT started_ms, ended_ms FROM sync_log WHERE kind = 'push'";
        match self {
            Store::Sqlite(file) => {
                let conn = rusqlite::Connection::open(file)?;
                let mut st = conn.prepare(SQL)?;
                let iv = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(iv)
            }
            Store::Postgres { cluster, db } => cluster
                .psql(db, SQL)?
                .lines()
                .map(|l| {
                    let (a, b) = l.split_once('|').context("two columns")?;
                    Ok((a.parse()?, b.parse()?))
                })
                .collect(),
        }
    }
}

/// One engine's run: the centers' days pushed to fresh hubs. Returns the run and the
/// changes pushed (per center).
async fn once(
    dir: &Path,
    args: &Args,
    engine: Engine,
    cluster: Option<&PgCluster>,
) -> anyhow::Result<(Run, Vec<Vec<(String, Vec<u8>)>>)> {
    let (storage, store, processes) = match engine {
        Engine::Sqlite => (
            HubStorage::default(),
            Store::Sqlite(dir.join("hub").join("markaz-hub.db")),
            1,
        ),
        Engine::Postgres { processes } => {
            let cluster = cluster.context("PostgreSQL engines need the cluster")?;
            let url = cluster.fresh_db()?;
            let db = url.rsplit('/').next().context("a database")?.to_string();
            let storage = HubStorage {
                engine: StorageEngine::Postgres,
                url: Some(url.try_into()?),
                pool_size: args.pool_size,
                ..HubStorage::default()
            };
            (storage, Store::Postgres { cluster, db }, processes)
        }
    };
    let first = HubRig::start_with(dir, storage).await?;
    let mut hubs = vec![];
    for k in 1..processes {
        hubs.push(first.sibling(&dir.join(format!("sibling-{k}"))).await?);
    }
    hubs.insert(0, first);
    let ports: Vec<u16> = hubs.iter().map(HubRig::sync_port).collect();
    let mut centers = Vec::with_capacity(args.centers);
    for k in 0..args.centers {
        let id: CenterId = format!("c{:02}", k + 1).parse()?;
        let bundle = hubs[0].bundle(&id)?;
        let mut c = Center::open(&dir.join(format!("{id}.db")), id, &bundle)?;
        let mut client = c.client(ports[k % ports.len()], "lan")?;
        c.sync(&mut client)
            .await
            .context("while syncing before the day")?;
        centers.push(c);
    }
    // The days, written on both cores (the centers are independent).
    let t = Instant::now();
    let seed = args.seed;
    let shape = args.shape;
    let half = centers.len().div_ceil(2);
    let second = centers.split_off(half);
    let work = |mut list: Vec<Center>, offset: usize| -> anyhow::Result<Vec<Center>> {
        for (i, c) in list.iter_mut().enumerate() {
            let ops = workload::generate(seed, &c.id, (offset + i + 1) as u32, shape)?;
            let id = c.id.clone();
            workload::apply(&mut c.conn, &mut c.docs, &id, &ops, 1000)?;
        }
        Ok(list)
    };
    let (a, b) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let h = s.spawn(|| work(second, half));
            let a = work(centers, 0);
            (a, h.join())
        })
    });
    let mut centers = a?;
    centers.extend(b.map_err(|_| anyhow::anyhow!("a generator thread panicked"))??);
    let generate = t.elapsed();
    let all: Vec<Vec<(String, Vec<u8>)>> =
        centers.iter().map(changes_of).collect::<Result<_, _>>()?;
    let expected: usize = all.iter().map(Vec::len).sum();
    let before = tokio::task::block_in_place(|| store.bytes())?;

    // All sessions at once.
    let cpu0 = CpuMark::now(cluster);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, mut c) in centers.into_iter().enumerate() {
        let port = ports[k % ports.len()];
        tasks.spawn(async move {
            let mut client = c.client(port, "lan")?;
            let cost = c.sync(&mut client).await?;
            anyhow::Ok(cost.report.pushed)
        });
    }
    let mut pushed = 0;
    while let Some(r) = tasks.join_next().await {
        pushed += r.context("a center task")??;
    }
    let wall = start.elapsed();
    let cpu = CpuMark::now(cluster).since(&cpu0);
    anyhow::ensure!(
        pushed == expected,
        "the hub acknowledged {pushed} of {expected} changes"
    );
    for hub in hubs {
        hub.stop().await?;
    }
    let (after, iv) =
        tokio::task::block_in_place(|| anyhow::Ok((store.bytes()?, store.push_intervals()?)))?;
    let push_busy = Duration::from_millis(union_ms(iv).max(0) as u64);
    Ok((
        Run {
            engine,
            changes: pushed,
            wall,
            push_busy,
            generate,
            grown: after.saturating_sub(before),
            cpu,
        },
        all,
    ))
}

/// Runs `bench hub`; returns the markdown section.
pub async fn hub(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = super::scratch_dir("hub")?;
    let cluster = tokio::task::block_in_place(|| {
        PgCluster::start(PgOptions {
            ssl: false,
            durable: true,
        })
    })
    .context(
        "bench hub measures PostgreSQL too: it needs PostgreSQL's server binaries \
         (Debian's `postgresql`, or MARKAZ_PG_BIN)",
    )?;
    let mut runs: Vec<Run> = Vec::new();
    let mut bases: Vec<Baseline> = Vec::new();
    for k in 0..args.runs {
        for engine in Engine::ALL {
            let dir = root.join(format!("run-{k}-{}", runs.len()));
            std::fs::create_dir_all(&dir)?;
            let r = once(&dir, args, engine, Some(&cluster)).await;
            let _ = std::fs::remove_dir_all(&dir);
            let (r, all) = r?;
            eprintln!(
                "hub run {} {}: {} changes in {:.1} s = {:.0}/s (push requests in flight {:.1} s); store grew {} bytes; CPU this process {:.1} s, PostgreSQL {:.1} s, machine {:.1} s; (days written in {:.0} s)",
                k + 1,
                r.engine.label(args.pool_size),
                r.changes,
                r.wall.as_secs_f64(),
                r.rate(),
                r.push_busy.as_secs_f64(),
                thousands(r.grown),
                r.cpu.this_process.as_secs_f64(),
                r.cpu.postgres.as_secs_f64(),
                r.cpu.machine_busy.as_secs_f64(),
                r.generate.as_secs_f64()
            );
            if engine == Engine::Sqlite {
                let b = tokio::task::block_in_place(|| baseline(&all))?;
                eprintln!(
                    "hub run {}: in-memory automerge {:.2} s = {:.0}/s; saved documents {} bytes",
                    k + 1,
                    b.wall.as_secs_f64(),
                    b.rate(),
                    thousands(b.saved)
                );
                bases.push(b);
            }
            runs.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(markdown(args, command, &machine, &runs, &bases))
}

fn markdown(args: &Args, command: &str, machine: &str, runs: &[Run], bases: &[Baseline]) -> String {
    let centers = args.centers as f64;
    let of = |e: Engine| runs.iter().filter(move |r| r.engine == e);
    let med = |e: Engine, f: &dyn Fn(&Run) -> f64| median(of(e).map(f).collect());
    let sqlite = med(Engine::Sqlite, &|r| r.rate());
    let changes = runs.first().map_or(0, |r| r.changes);
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs, {} centers × one center-day each ({} changes in all), seed {}, every engine in each run; machine: {machine}.\n\n",
        args.runs,
        args.centers,
        thousands(changes as u64),
        args.seed
    ));
    md.push_str(
        "| engine | changes/s (median) | vs SQLite | runs (changes/s, wall) | bytes on disk per center-day | push requests in flight | CPU during the push: this process / PostgreSQL / whole machine |\n| --- | ---: | ---: | --- | ---: | ---: | --- |\n",
    );
    for e in Engine::ALL {
        let rate = med(e, &|r| r.rate());
        let list: Vec<String> = of(e)
            .map(|r| format!("{:.0} ({:.1} s)", r.rate(), r.wall.as_secs_f64()))
            .collect();
        let busy = med(e, &|r| r.push_busy.as_secs_f64() / r.wall.as_secs_f64());
        let cpu = |f: &dyn Fn(&Cpu) -> Duration| {
            med(e, &|r| f(&r.cpu).as_secs_f64() / r.wall.as_secs_f64())
        };
        md.push_str(&format!(
            "| {} | {rate:.0} | {:.0}% | {} | {} | {:.0}% | {:.2} / {:.2} / {:.2} cores |\n",
            e.label(args.pool_size),
            100.0 * rate / sqlite,
            list.join(", "),
            thousands(med(e, &|r| r.grown as f64 / centers) as u64),
            100.0 * busy,
            cpu(&|c| c.this_process),
            cpu(&|c| c.postgres),
            cpu(&|c| c.machine_busy),
        ));
    }
    let base = median(bases.iter().map(Baseline::rate).collect());
    md.push_str(&format!(
        "| in-memory automerge, one thread (decode + apply, no storage) | {base:.0} | {:.0}% | {} | {} (save format, in memory) | — | — |\n\n",
        100.0 * base / sqlite,
        bases
            .iter()
            .map(|b| format!("{:.0} ({:.2} s)", b.rate(), b.wall.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        thousands(median(bases.iter().map(|b| b.saved as f64 / centers).collect()) as u64),
    ));
    let pg1 = med(Engine::Postgres { processes: 1 }, &|r| r.rate());
    let pg2 = med(Engine::Postgres { processes: 2 }, &|r| r.rate());
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    md.push_str(&format!(
        "PostgreSQL / SQLite (target ≥ 60%): one hub **{:.0}%** ({}), two hub instances **{:.0}%** ({}). SQLite hub / in-memory automerge (target ≥ 50%): **{:.1}%** ({}).\n",
        100.0 * pg1 / sqlite,
        met(pg1 >= 0.6 * sqlite),
        100.0 * pg2 / sqlite,
        met(pg2 >= 0.6 * sqlite),
        100.0 * sqlite / base,
        met(sqlite >= 0.5 * base),
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::union_ms;

    #[test]
    fn overlapping_intervals_count_once() {
        assert_eq!(union_ms(vec![(0, 10), (5, 15), (20, 25)]), 20);
        assert_eq!(union_ms(vec![]), 0);
    }
}
