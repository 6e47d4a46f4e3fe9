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
use rusqlite::OptionalExtension;

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
    /// zstd-3 of the day's operations as plain JSON ([`plain_json`]).
    json_zstd: usize,
    json_raw: usize,
}

/// The center-day as a system without a CRDT would send it: each operation one plain
/// JSON object with its fields (the operation, then the profile, the new case or the
/// case number and its event), one per line. No document ids, hashes or clocks beyond
/// what the operation itself holds.
pub fn plain_json(ops: &[workload::Op]) -> anyhow::Result<Vec<u8>> {
    use serde_json::json;
    let mut out = Vec::new();
    for op in ops {
        let v = match op {
            workload::Op::RegisterCitizen(c) => json!({"op": "register_citizen", "citizen": c}),
            workload::Op::UpdateCitizen(c) => json!({"op": "update_citizen", "citizen": c}),
            workload::Op::CreateCase(c) => json!({"op": "create_case", "case": c}),
            workload::Op::CaseEvent { case_no, event } => {
                json!({"op": "case_event", "case_no": case_no, "event": event})
            }
        };
        serde_json::to_writer(&mut out, &v)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether the hub (its SQLite file `hub_db`, the hub stopped) holds every local change
/// of `center` byte for byte, and the same heads for every document the center wrote.
fn check_hub_has_the_day(center: &Center, hub_db: &Path) -> anyhow::Result<()> {
    let hub = rusqlite::Connection::open(hub_db)?;
    let mut at_hub = hub.prepare("SELECT bytes FROM changes WHERE hash = ?1")?;
    let mut st = center
        .conn
        .prepare("SELECT hash, bytes FROM changes WHERE local = 1")?;
    let mut rows = st.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let (hash, bytes): (Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?);
        let theirs: Option<Vec<u8>> = at_hub.query_row([&hash], |r| r.get(0)).optional()?;
        anyhow::ensure!(
            theirs.as_deref() == Some(bytes.as_slice()),
            "the hub does not hold change {} as the center does",
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        n += 1;
    }
    let mut heads = hub.prepare("SELECT heads FROM doc_meta WHERE doc_id = ?1")?;
    let mut st = center.conn.prepare(
        "SELECT doc_id, heads FROM doc_meta WHERE doc_id IN \
         (SELECT DISTINCT doc_id FROM changes WHERE local = 1)",
    )?;
    let mut rows = st.query([])?;
    let mut docs = 0;
    while let Some(r) = rows.next()? {
        let (id, ours): (String, Vec<u8>) = (r.get(0)?, r.get(1)?);
        let theirs: Option<Vec<u8>> = heads.query_row([&id], |r| r.get(0)).optional()?;
        anyhow::ensure!(
            theirs.as_deref() == Some(ours.as_slice()),
            "the hub's heads of {id} differ from the center's"
        );
        docs += 1;
    }
    anyhow::ensure!(n > 0 && docs > 0, "nothing to compare");
    eprintln!(
        "catch-up: the hub holds all {n} changes byte for byte, same heads on {docs} documents"
    );
    Ok(())
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
    let json = plain_json(&ops)?;
    let json_zstd = zstd::bulk::compress(&json, 3)?.len();
    let t = Instant::now();
    let n = tokio::task::block_in_place(|| {
        workload::apply(&mut center.conn, &mut center.docs, &id, &ops, 500)
    })?;
    Ok(Prepared {
        hub,
        center,
        ops: n,
        apply_secs: t.elapsed().as_secs_f64(),
        json_zstd,
        json_raw: json.len(),
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
    json_zstd: usize,
    json_raw: usize,
    cost: SessionCost,
}

impl CatchUpRun {
    fn wire_ratio(&self) -> f64 {
        self.cost.bytes() as f64 / self.zstd.max(1) as f64
    }
    /// Wire bytes against the zstd-3 of the day as plain JSON (issue 20, target 1).
    fn json_ratio(&self) -> f64 {
        self.cost.bytes() as f64 / self.json_zstd.max(1) as f64
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
    let hub_db = p.hub.data_dir().join("markaz-hub.db");
    p.hub.stop().await?;
    check_hub_has_the_day(&p.center, &hub_db).context("while comparing the hub with the center")?;
    Ok(CatchUpRun {
        ops: p.ops,
        apply_secs: p.apply_secs,
        changes,
        raw: raw.len(),
        zstd,
        zstd_batched,
        json_zstd: p.json_zstd,
        json_raw: p.json_raw,
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
            "catch-up run {}: {} changes, wire {} B (up {}, down {}), zstd {} B, ratio {:.2}, plain JSON zstd {} B, ratio {:.3}; {:.1} s vs {:.1} s ideal ({:.2}x), {} requests",
            k + 1,
            r.changes,
            r.cost.bytes(),
            r.cost.bytes_up,
            r.cost.bytes_down,
            r.zstd,
            r.wire_ratio(),
            r.json_zstd,
            r.json_ratio(),
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
    let json_ratio = med(&|r| r.json_ratio());
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
    md.push_str(&format!(
        "The same operations as plain JSON (one object per operation with its fields, what a \
         system without a CRDT would send): {} B raw, {} B zstd-3.\n\n",
        thousands(first.json_raw as u64),
        thousands(first.json_zstd as u64),
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
        "| wire / zstd(plain JSON) | **{json_ratio:.3}** | {} |\n",
        list(&|r| format!("{:.3}", r.json_ratio()))
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
         compressed per push batch of {} KiB, each alone, {}; sync message bodies (packed \
         push form: sequence runs, a document table, each change without the hashes and \
         checksum the hub rebuilds; acks; compressed per batch) {} up + {} down; TLS records, handshake (certificates both ways) and HTTP \
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
         Target 2b, time ≤ 1.5× bytes/bandwidth: **{}** ({time_ratio:.2}×). \
         Issue 20 target 1, wire ≤ 1.5× zstd(plain JSON): **{}** ({json_ratio:.3}×). \
         Exactness: after every run the hub held each of the center's changes byte for byte \
         and the same heads for every document the center wrote (checked in the bench).\n",
        verdict(wire_ratio <= 1.3),
        verdict(time_ratio <= 1.5),
        verdict(json_ratio <= 1.5)
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

#[cfg(test)]
mod encoding_experiment {
    //! Sizes of candidate push encodings on the center-day workload, the experiment that
    //! chose the compact push form (`docs/PROTOCOL.md`): it prints the zstd sizes of each
    //! candidate at several batch sizes and levels, and checks that the compact form beats
    //! the framed one and stays within target 2a's 1.3× of one zstd stream. By default a
    //! tenth of a center-day; the whole day with `MARKAZ_ENCODING_FULL=1 cargo test
    //! --release -p markaz --bin markaz encoding_experiment -- --nocapture`.

    use markaz_sync::protocol::{PushForm, Request};
    use markaz_sync::store::{self, DocStore, Lane, WireChange};
    use rusqlite::Connection;

    use super::super::workload::{self, Shape};

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn z(raw: &[u8], level: i32) -> usize {
        zstd::bulk::compress(raw, level).unwrap().len()
    }

    /// Legacy frames without the per-frame CRC.
    fn no_crc(b: &[(u64, WireChange)]) -> Vec<u8> {
        let mut raw = Vec::new();
        let seqs: Vec<u64> = b.iter().map(|(s, _)| *s).collect();
        raw.extend_from_slice(&serde_json::to_vec(&seqs).unwrap());
        for (_, c) in b {
            let id = c.doc_id.as_str();
            raw.extend_from_slice(&((2 + id.len() + c.bytes.len()) as u32).to_le_bytes());
            raw.extend_from_slice(&(id.len() as u16).to_le_bytes());
            raw.extend_from_slice(id.as_bytes());
            raw.extend_from_slice(&c.bytes);
        }
        raw
    }

    /// Seq order kept; doc ids interned in a table; seq deltas as varints.
    fn interned(b: &[(u64, WireChange)]) -> Vec<u8> {
        let mut ids: Vec<&str> = Vec::new();
        let mut raw = Vec::new();
        let mut body = Vec::new();
        let mut prev = 0;
        for (s, c) in b {
            let id = c.doc_id.as_str();
            let k = match ids.iter().position(|d| *d == id) {
                Some(k) => k,
                None => {
                    ids.push(id);
                    ids.len() - 1
                }
            };
            varint(s - prev, &mut body);
            prev = *s;
            varint(k as u64, &mut body);
            varint(c.bytes.len() as u64, &mut body);
            body.extend_from_slice(&c.bytes);
        }
        varint(ids.len() as u64, &mut raw);
        for id in ids {
            varint(id.len() as u64, &mut raw);
            raw.extend_from_slice(id.as_bytes());
        }
        raw.extend_from_slice(&body);
        raw
    }

    /// Grouped by document (first appearance); per group: id, count, then per change
    /// seq delta (from the previous seq in the group), length, bytes. `columnar`: all
    /// group headers and lengths first, then all change bytes.
    fn grouped(b: &[(u64, WireChange)], columnar: bool) -> Vec<u8> {
        let mut order: Vec<&str> = Vec::new();
        let mut groups: std::collections::HashMap<&str, Vec<&(u64, WireChange)>> =
            Default::default();
        for x in b {
            let id = x.1.doc_id.as_str();
            groups
                .entry(id)
                .or_insert_with(|| {
                    order.push(id);
                    Vec::new()
                })
                .push(x);
        }
        let mut meta = Vec::new();
        let mut data = Vec::new();
        varint(order.len() as u64, &mut meta);
        for id in order {
            varint(id.len() as u64, &mut meta);
            meta.extend_from_slice(id.as_bytes());
            let g = &groups[id];
            varint(g.len() as u64, &mut meta);
            let mut prev = 0;
            for (s, c) in g.iter().map(|x| (x.0, &x.1)) {
                varint(s - prev, &mut meta);
                prev = s;
                varint(c.bytes.len() as u64, &mut meta);
                if columnar {
                    data.extend_from_slice(&c.bytes);
                } else {
                    meta.extend_from_slice(&c.bytes);
                }
            }
        }
        meta.extend_from_slice(&data);
        meta
    }

    #[test]
    fn push_encodings_compared() {
        let c: markaz_sync::model::ids::CenterId = "midan".parse().unwrap();
        let shape = if std::env::var_os("MARKAZ_ENCODING_FULL").is_some() {
            Shape::CENTER_DAY
        } else {
            Shape {
                cases: 150,
                citizens: 120,
                citizen_update_pct: 10,
            }
        };
        let ops = workload::generate(2026, &c, 0, shape).unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        store::migrate(&conn).unwrap();
        let actor = store::incarnation(&conn, "midan", 0).unwrap();
        let mut docs = DocStore::new(actor, 256);
        workload::apply(&mut conn, &mut docs, &c, &ops, 500).unwrap();
        let batches_of = |max: usize| {
            let mut batches: Vec<Vec<(u64, WireChange)>> = Vec::new();
            let mut after = 0;
            loop {
                let b = store::lane_changes_after(&conn, Lane::Essential, after, max).unwrap();
                let Some(last) = b.last() else { break };
                after = last.0;
                batches.push(b);
            }
            batches
        };
        let raw: Vec<u8> = batches_of(usize::MAX)
            .iter()
            .flatten()
            .flat_map(|(_, c)| c.bytes.clone())
            .collect();
        let one_stream = z(&raw, 3);
        println!(
            "changes {} raw {} zstd3 one stream {one_stream} (zstd19 {})",
            ops.len(),
            raw.len(),
            z(&raw, 19)
        );
        for batch_bytes in [256 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
            let batches = batches_of(batch_bytes);
            let mut legacy = 0;
            let mut compact = [0usize; 1];
            let mut sizes = [[0usize; 3]; 5];
            let levels = [3, 6, 9];
            for b in &batches {
                legacy += Request::Push {
                    actor: "a".repeat(64),
                    changes: b.clone(),
                }
                .encode()
                .len();
                compact[0] += Request::Push {
                    actor: "a".repeat(64),
                    changes: b.clone(),
                }
                .encode_with(PushForm::Compact)
                .len();
                let bare: Vec<u8> = b.iter().flat_map(|(_, c)| c.bytes.clone()).collect();
                let forms = [
                    bare,
                    no_crc(b),
                    interned(b),
                    grouped(b, false),
                    grouped(b, true),
                ];
                for (f, raw) in forms.iter().enumerate() {
                    for (l, level) in levels.iter().enumerate() {
                        sizes[f][l] += z(raw, *level);
                    }
                }
            }
            println!(
                "batch {} KiB: {} batches; framed message {}, compact message {} (zstd3)",
                batch_bytes / 1024,
                batches.len(),
                legacy,
                compact[0]
            );
            let names = [
                "bare changes",
                "no-crc",
                "interned",
                "grouped",
                "grouped-columnar",
            ];
            for (f, n) in names.iter().enumerate() {
                println!(
                    "  {n:>18}: zstd3 {} zstd6 {} zstd9 {}",
                    sizes[f][0], sizes[f][1], sizes[f][2]
                );
            }
            assert!(
                compact[0] < legacy,
                "compact {} framed {legacy}",
                compact[0]
            );
            assert!(
                compact[0] as f64 <= 1.3 * one_stream as f64,
                "compact {} against {one_stream}",
                compact[0]
            );
        }
    }
}
