//! `bench catch-up` (issue 8, target 2) and `bench nothing-new` (target 3).
//!
//! Catch-up: a center that was in sync (it has pulled the hub's catalog) works a whole
//! center-day offline, then syncs it to the hub in one session over real mutual TLS
//! through the emulated 3G link ([`super::shaper`]). Measured in the same run: the bytes
//! on the wire both ways (TLS included, from the client's stream counters), the zstd size
//! (level 3, the wire's level) of the day's automerge changes concatenated, and the time
//! against (bytes up + bytes down) / 48,000 B/s.
//!
//! Nothing-new: the same center after its catch-up (synced at full speed) opens a new
//! connection through the 3G link — the TLS session is resumed from the first
//! connection's ticket — and runs a session with nothing to push or pull.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use markaz_sync::model::ids::CenterId;

use super::rig::{Center, HubRig, SessionCost};
use super::shaper::{LinkShape, Shaper};
use super::workload::{self, Shape};
use super::{machine, median, thousands};

/// Arguments shared by both benchmarks.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub seed: u64,
    pub shape: Shape,
}

/// A hub, and a center in sync with it that then worked `shape` offline.
struct Prepared {
    hub: HubRig,
    center: Center,
    ops: usize,
    apply_secs: f64,
}

async fn prepare(dir: &Path, seed: u64, shape: Shape) -> anyhow::Result<Prepared> {
    let hub = HubRig::start(dir).await?;
    let id: CenterId = "midan".parse()?;
    let bundle = hub.bundle(&id)?;
    let mut center = Center::open(&dir.join("center.db"), id.clone(), &bundle)?;
    // In sync before the outage: the first session brings the catalog down.
    let mut first = center.client(hub.sync_port(), "lan")?;
    center
        .sync(&mut first)
        .await
        .context("while syncing before the outage")?;
    let ops = workload::generate(seed, &id, 0, shape)?;
    let t = Instant::now();
    let n = tokio::task::block_in_place(|| {
        workload::apply(&mut center.conn, &mut center.docs, &id, &ops, 500)
    })?;
    Ok(Prepared {
        hub,
        center,
        ops: n,
        apply_secs: t.elapsed().as_secs_f64(),
    })
}

/// One catch-up run.
#[derive(Debug, Clone)]
struct CatchUpRun {
    ops: usize,
    apply_secs: f64,
    changes: usize,
    raw: usize,
    zstd: usize,
    /// zstd of the same changes cut into the client's push batches, each compressed alone.
    zstd_batched: usize,
    cost: SessionCost,
}

impl CatchUpRun {
    fn wire_ratio(&self) -> f64 {
        self.cost.bytes() as f64 / self.zstd.max(1) as f64
    }
    fn ideal_secs(&self) -> f64 {
        self.cost.bytes() as f64 / LinkShape::THREE_G.bytes_per_sec
    }
    fn time_ratio(&self) -> f64 {
        self.cost.elapsed.as_secs_f64() / self.ideal_secs()
    }
}

/// The changes cut the way the client cuts push batches (`max` change bytes, at least
/// one change), each batch compressed on its own: what per-batch compression costs.
fn batched_zstd(center: &Center, max: usize) -> anyhow::Result<usize> {
    let mut st = center
        .conn
        .prepare("SELECT bytes FROM changes WHERE local = 1 ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut total = 0;
    let mut batch: Vec<u8> = Vec::new();
    while let Some(r) = rows.next()? {
        let b: Vec<u8> = r.get(0)?;
        if !batch.is_empty() && batch.len() + b.len() > max {
            total += zstd::bulk::compress(&batch, 3)?.len();
            batch.clear();
        }
        batch.extend_from_slice(&b);
    }
    if !batch.is_empty() {
        total += zstd::bulk::compress(&batch, 3)?.len();
    }
    Ok(total)
}

async fn catch_up_once(dir: &Path, args: &Args) -> anyhow::Result<CatchUpRun> {
    let mut p = prepare(dir, args.seed, args.shape).await?;
    let (changes, raw) = p.center.local_changes()?;
    let zstd = zstd::bulk::compress(&raw, 3)?.len();
    let zstd_batched = batched_zstd(&p.center, p.center.limits.push_bytes)?;
    let link = Shaper::start(p.hub.sync_port(), LinkShape::THREE_G).await?;
    let mut client = p.center.client(link.port(), "3g")?;
    let cost = p
        .center
        .sync(&mut client)
        .await
        .context("while catching up")?;
    anyhow::ensure!(
        cost.report.pushed == changes,
        "the hub took {} of {changes} changes",
        cost.report.pushed
    );
    drop(client);
    drop(link);
    p.hub.stop().await?;
    Ok(CatchUpRun {
        ops: p.ops,
        apply_secs: p.apply_secs,
        changes,
        raw: raw.len(),
        zstd,
        zstd_batched,
        cost,
    })
}

/// Runs `bench catch-up`; returns the markdown section.
pub async fn catch_up(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = super::scratch_dir("catch-up")?;
    let mut runs = Vec::new();
    for k in 0..args.runs {
        let dir = root.join(format!("run-{k}"));
        std::fs::create_dir_all(&dir)?;
        let r = catch_up_once(&dir, args).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        eprintln!(
            "catch-up run {}: {} changes, wire {} B (up {}, down {}), zstd {} B, ratio {:.2}; {:.1} s vs {:.1} s ideal ({:.2}x), {} requests",
            k + 1,
            r.changes,
            r.cost.bytes(),
            r.cost.bytes_up,
            r.cost.bytes_down,
            r.zstd,
            r.wire_ratio(),
            r.cost.elapsed.as_secs_f64(),
            r.ideal_secs(),
            r.time_ratio(),
            r.cost.requests
        );
        runs.push(r);
    }
    let _ = std::fs::remove_dir_all(&root);
    let first = runs.first().context("no runs")?;
    let med = |f: &dyn Fn(&CatchUpRun) -> f64| median(runs.iter().map(f).collect());
    let wire_ratio = med(&|r| r.wire_ratio());
    let time_ratio = med(&|r| r.time_ratio());
    let list =
        |f: &dyn Fn(&CatchUpRun) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs, seed {}; machine: {machine}.\n\n",
        args.runs, args.seed
    ));
    md.push_str(&format!(
        "Workload: {} operations → {} automerge changes, {} B raw, {} B zstd-3 (one stream); \
         written in {:.1} s (median) through the document functions.\n\n",
        thousands(first.ops as u64),
        thousands(first.changes as u64),
        thousands(first.raw as u64),
        thousands(first.zstd as u64),
        med(&|r| r.apply_secs)
    ));
    md.push_str("| measure | median | runs |\n| --- | ---: | --- |\n");
    md.push_str(&format!(
        "| bytes on the wire, up + down (TLS included) | {} | {} |\n",
        thousands(med(&|r| r.cost.bytes() as f64) as u64),
        list(&|r| format!("{} + {}", r.cost.bytes_up, r.cost.bytes_down))
    ));
    md.push_str(&format!(
        "| wire / zstd(changes) | **{wire_ratio:.3}** | {} |\n",
        list(&|r| format!("{:.3}", r.wire_ratio()))
    ));
    md.push_str(&format!(
        "| time over the emulated 3G link, s | {:.1} | {} |\n",
        med(&|r| r.cost.elapsed.as_secs_f64()),
        list(&|r| format!("{:.1}", r.cost.elapsed.as_secs_f64()))
    ));
    md.push_str(&format!(
        "| (up + down) / 48,000 B/s, s | {:.1} | {} |\n",
        med(&|r| r.ideal_secs()),
        list(&|r| format!("{:.1}", r.ideal_secs()))
    ));
    md.push_str(&format!(
        "| time / ideal | **{time_ratio:.2}×** | {} |\n",
        list(&|r| format!("{:.2}", r.time_ratio()))
    ));
    md.push_str(&format!(
        "| HTTP requests (round trips of 300 ms each) | {} | {} |\n\n",
        med(&|r| r.cost.requests as f64),
        list(&|r| r.cost.requests.to_string())
    ));
    let m = |f: &dyn Fn(&CatchUpRun) -> f64| thousands(med(f) as u64);
    md.push_str(&format!(
        "Where the bytes go (medians): zstd of the changes as one stream {}; the same changes \
         compressed per push batch of {} KiB, each alone, {}; sync message bodies (framing: \
         per-change length + CRC-32C, document ids, sequence numbers, acks; compressed per \
         batch) {} up + {} down; TLS records, handshake (certificates both ways) and HTTP \
         headers {}.\n\n",
        m(&|r| r.zstd as f64),
        markaz_sync::protocol::Limits::default().push_bytes / 1024,
        m(&|r| r.zstd_batched as f64),
        m(&|r| r.cost.body_up as f64),
        m(&|r| r.cost.body_down as f64),
        m(&|r| (r.cost.bytes() - r.cost.body_up - r.cost.body_down) as f64),
    ));
    md.push_str(&format!(
        "Target 2a, wire ≤ 1.3× zstd(changes): **{}** ({wire_ratio:.3}×). \
         Target 2b, time ≤ 1.5× bytes/bandwidth: **{}** ({time_ratio:.2}×).\n",
        verdict(wire_ratio <= 1.3),
        verdict(time_ratio <= 1.5)
    ));
    Ok(md)
}

/// One nothing-new run.
#[derive(Debug, Clone)]
struct NothingNewRun {
    catch_up: SessionCost,
    cost: SessionCost,
}

async fn nothing_new_once(dir: &Path, args: &Args) -> anyhow::Result<NothingNewRun> {
    let mut p = prepare(dir, args.seed, args.shape).await?;
    let mut lan = p.center.client(p.hub.sync_port(), "lan")?;
    let catch_up = p.center.sync(&mut lan).await.context("while catching up")?;
    drop(lan);
    let link = Shaper::start(p.hub.sync_port(), LinkShape::THREE_G).await?;
    let mut client = p.center.client(link.port(), "3g")?;
    let cost = p
        .center
        .sync(&mut client)
        .await
        .context("while syncing nothing new")?;
    drop(client);
    drop(link);
    p.hub.stop().await?;
    Ok(NothingNewRun { catch_up, cost })
}

/// Runs `bench nothing-new`; returns the markdown section.
pub async fn nothing_new(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = super::scratch_dir("nothing-new")?;
    let mut runs = Vec::new();
    for k in 0..args.runs {
        let dir = root.join(format!("run-{k}"));
        std::fs::create_dir_all(&dir)?;
        let r = nothing_new_once(&dir, args).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        eprintln!(
            "nothing-new run {}: {} B (up {}, down {}), {} requests, {:?}, {:.2} s; catch-up before it: {} changes pushed",
            k + 1,
            r.cost.bytes(),
            r.cost.bytes_up,
            r.cost.bytes_down,
            r.cost.requests,
            r.cost.handshake,
            r.cost.elapsed.as_secs_f64(),
            r.catch_up.report.pushed,
        );
        runs.push(r);
    }
    let _ = std::fs::remove_dir_all(&root);
    let med = |f: &dyn Fn(&NothingNewRun) -> f64| median(runs.iter().map(f).collect());
    let list =
        |f: &dyn Fn(&NothingNewRun) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let bytes = med(&|r| r.cost.bytes() as f64);
    let requests = med(&|r| r.cost.requests as f64);
    let resumed = runs
        .iter()
        .all(|r| r.cost.handshake == Some(rustls::HandshakeKind::Resumed));
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs, seed {}; machine: {machine}.\n\n",
        args.runs, args.seed
    ));
    md.push_str("| measure | median | runs |\n| --- | ---: | --- |\n");
    md.push_str(&format!(
        "| bytes on the wire, up + down (TLS handshake included) | {} | {} |\n",
        thousands(bytes as u64),
        list(&|r| format!("{} + {}", r.cost.bytes_up, r.cost.bytes_down))
    ));
    md.push_str(&format!(
        "| of which sync message bodies, up + down | {} | {} |\n",
        thousands(med(&|r| (r.cost.body_up + r.cost.body_down) as f64) as u64),
        list(&|r| format!("{} + {}", r.cost.body_up, r.cost.body_down))
    ));
    md.push_str(&format!(
        "| connections opened (TCP + TLS) | {} | {} |\n",
        med(&|r| r.cost.connections as f64),
        list(&|r| r.cost.connections.to_string())
    ));
    md.push_str(&format!(
        "| HTTP requests (round trips) | {requests} | {} |\n",
        list(&|r| r.cost.requests.to_string())
    ));
    md.push_str(&format!(
        "| TLS handshake | {} | {} |\n",
        if resumed {
            "resumed"
        } else {
            "NOT always resumed"
        },
        list(&|r| format!("{:?}", r.cost.handshake))
    ));
    md.push_str(&format!(
        "| time over the emulated 3G link, s | {:.2} | {} |\n\n",
        med(&|r| r.cost.elapsed.as_secs_f64()),
        list(&|r| format!("{:.2}", r.cost.elapsed.as_secs_f64()))
    ));
    let ok_bytes = bytes < 2048.0;
    let ok_rt = requests <= 1.0 && resumed;
    md.push_str(&format!(
        "Target 3, < 2 KB: **{}** ({} B); one round trip on a resumed session: **{}** \
         ({requests} request(s), {}).\n",
        if ok_bytes { "met" } else { "NOT met" },
        thousands(bytes as u64),
        if ok_rt { "met" } else { "NOT met" },
        if resumed { "resumed" } else { "not resumed" },
    ));
    Ok(md)
}
