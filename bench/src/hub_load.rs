//! `bench hub` (issue 8, target 4): the center-days of many centers arriving at the hub
//! at once.
//!
//! Every center (`c01`…) is first in sync with the hub (catalog pulled), then works its
//! own center-day offline (its own seed, its own citizens). Then all of them open a
//! session at the same moment (one task each, real mutual TLS on loopback, no shaping)
//! and push their day. The hub's apply rate is the changes it acknowledged divided by
//! the wall time from the start of the sessions to the last one's end. The baseline, in
//! the same run: the same changes (the same bytes, read from the centers' stores) decoded
//! and applied one by one, in each center's order, to in-memory automerge documents on
//! one thread, with no storage at all.
//!
//! The centers' own work (building requests, merging replies into their SQLite files)
//! runs in this process on the same cores as the hub, so the figure is a floor for the
//! hub on its own machine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use automerge::{AutoCommit, Change};
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
}

#[derive(Debug, Clone)]
struct Run {
    changes: usize,
    wall: Duration,
    baseline: Duration,
    /// Time the hub's sync log shows at least one push request in flight.
    push_busy: Duration,
    generate: Duration,
}

impl Run {
    fn hub_rate(&self) -> f64 {
        self.changes as f64 / self.wall.as_secs_f64()
    }
    fn base_rate(&self) -> f64 {
        self.changes as f64 / self.baseline.as_secs_f64()
    }
    fn ratio(&self) -> f64 {
        self.hub_rate() / self.base_rate()
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

/// Applies every center's changes to fresh in-memory documents on this thread; returns
/// the time it took.
fn baseline(all: &[Vec<(String, Vec<u8>)>]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    for center in all {
        let mut docs: HashMap<&str, AutoCommit> = HashMap::new();
        for (doc, bytes) in center {
            let change = Change::from_bytes(bytes.clone()).context("a stored change")?;
            docs.entry(doc.as_str())
                .or_default()
                .apply_changes([change])
                .context("applying a change in memory")?;
        }
        std::hint::black_box(&docs);
    }
    Ok(t.elapsed())
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

async fn once(dir: &Path, args: &Args) -> anyhow::Result<Run> {
    let hub = HubRig::start(dir).await?;
    let mut centers = Vec::with_capacity(args.centers);
    for k in 0..args.centers {
        let id: CenterId = format!("c{:02}", k + 1).parse()?;
        let bundle = hub.bundle(&id)?;
        let mut c = Center::open(&dir.join(format!("{id}.db")), id, &bundle)?;
        let mut client = c.client(hub.sync_port(), "lan")?;
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
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| work(second, half));
        let a = work(centers, 0);
        (a, h.join())
    });
    let mut centers = a?;
    centers.extend(b.map_err(|_| anyhow::anyhow!("a generator thread panicked"))??);
    let generate = t.elapsed();
    let all: Vec<Vec<(String, Vec<u8>)>> =
        centers.iter().map(changes_of).collect::<Result<_, _>>()?;
    let expected: usize = all.iter().map(Vec::len).sum();

    // All sessions at once.
    let port = hub.sync_port();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in centers {
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
    anyhow::ensure!(
        pushed == expected,
        "the hub acknowledged {pushed} of {expected} changes"
    );
    let db = hub.data_dir().join("markaz-hub.db");
    hub.stop().await?;
    let conn = rusqlite::Connection::open(&db)?;
    let mut st = conn.prepare("SELECT started_ms, ended_ms FROM sync_log WHERE kind = 'push'")?;
    let iv: Vec<(i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let push_busy = Duration::from_millis(union_ms(iv).max(0) as u64);
    let baseline = tokio::task::block_in_place(|| baseline(&all))?;
    Ok(Run {
        changes: pushed,
        wall,
        baseline,
        push_busy,
        generate,
    })
}

/// Runs `bench hub`; returns the markdown section.
pub async fn hub(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = super::scratch_dir("hub")?;
    let mut runs = Vec::new();
    for k in 0..args.runs {
        let dir = root.join(format!("run-{k}"));
        std::fs::create_dir_all(&dir)?;
        let r = once(&dir, args).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        eprintln!(
            "hub run {}: {} changes in {:.1} s = {:.0}/s (push requests in flight {:.1} s); in-memory automerge {:.2} s = {:.0}/s; ratio {:.1}%; (days written in {:.0} s)",
            k + 1,
            r.changes,
            r.wall.as_secs_f64(),
            r.hub_rate(),
            r.push_busy.as_secs_f64(),
            r.baseline.as_secs_f64(),
            r.base_rate(),
            100.0 * r.ratio(),
            r.generate.as_secs_f64()
        );
        runs.push(r);
    }
    let _ = std::fs::remove_dir_all(&root);
    let first = runs.first().context("no runs")?;
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let list = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let ratio = med(&|r| r.ratio());
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs, {} centers × one center-day each ({} changes in all), seed {}; machine: {machine}.\n\n",
        args.runs,
        args.centers,
        thousands(first.changes as u64),
        args.seed
    ));
    md.push_str("| side | changes/s (median) | runs (changes/s) |\n| --- | ---: | --- |\n");
    md.push_str(&format!(
        "| hub: {} concurrent sessions over mutual TLS, applied + routed + logged, `synchronous=FULL` | {:.0} | {} |\n",
        args.centers,
        med(&|r| r.hub_rate()),
        list(&|r| format!("{:.0} ({:.1} s)", r.hub_rate(), r.wall.as_secs_f64()))
    ));
    md.push_str(&format!(
        "| in-memory automerge, one thread (decode + apply, no storage) | {:.0} | {} |\n\n",
        med(&|r| r.base_rate()),
        list(&|r| format!("{:.0} ({:.2} s)", r.base_rate(), r.baseline.as_secs_f64()))
    ));
    md.push_str(&format!(
        "Ratio hub / in-memory: **{:.1}%** (target ≥ 50%): **{}**. Push requests were in flight at the hub for {} of the wall time.\n",
        100.0 * ratio,
        if ratio >= 0.5 { "met" } else { "NOT met" },
        list(&|r| format!("{:.0}%", 100.0 * r.push_busy.as_secs_f64() / r.wall.as_secs_f64()))
    ));
    Ok(md)
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
