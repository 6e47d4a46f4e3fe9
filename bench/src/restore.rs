//! `bench restore` (issue 18.6): a replaced center box restored from the hub, for a center
//! with a year of cases.
//!
//! The center is `bench million`'s generated data set of `--cases` cases (the node's own
//! use cases through its group-commit writer; cached under `target/bench-million/`). A copy
//! of its database is pushed to a real hub on loopback (the bench rig: `markaz_hub::run`,
//! mutual TLS) until the hub holds every change. Each run then restores the center into an
//! empty data directory with the node's own `markaz_node::sync::restore::from_hub` — what
//! `markaz restore --from-hub` runs — over the primary link (loopback, no emulated 3G), and
//! records the wall time, the bytes on the wire and the restored database's size. The hub
//! and the restoring node share this machine's CPUs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use markaz_sync::model::ids::CenterId;

use crate::million;
use crate::rig::{Center, HubRig};
use crate::{machine, median, thousands};

const CENTER: &str = "midan";

/// Arguments of `bench restore`.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub cases: u32,
    pub seed: u64,
}

/// One restore.
struct Run {
    wall: Duration,
    bytes_down: u64,
    bytes_up: u64,
    sessions: usize,
    documents: u64,
    cases: u64,
    db_bytes: u64,
}

fn file_bytes(data: &Path) -> u64 {
    std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("markaz-node.db")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn node_toml(data: &Path, port: u16, bundle: &Path) -> String {
    format!(
        r#"[center]
id = "{CENTER}"
name_ar = "مركز الميدان"
name_en = "Midan center"
receipt_prefix = "MID"

[server]
listen = "127.0.0.1:0"

[storage]
data_dir = "{data}"

[sync]
enabled = true
hub_url = "https://127.0.0.1:{port}"
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
"#,
        data = data.display(),
        ca = bundle.join("ca.pem").display(),
        cert = bundle.join("cert.pem").display(),
        key = bundle.join("key.pem").display(),
    )
}

/// Pushes every local change of the center database `db` to the hub; returns (changes
/// pushed, seconds).
pub(crate) async fn push_all(
    hub: &HubRig,
    db: &Path,
    bundle: &Path,
) -> anyhow::Result<(usize, f64)> {
    let id: CenterId = CENTER.parse()?;
    let mut center = Center::open(db, id, bundle)?;
    let mut client = center.client(hub.sync_port(), "primary")?;
    let started = Instant::now();
    let mut pushed = 0;
    for _ in 0..1000 {
        let cost = center.sync(&mut client).await?;
        anyhow::ensure!(
            cost.report.refused_by_hub.is_empty(),
            "the hub refused changes: {:?}",
            cost.report.refused_by_hub.first()
        );
        pushed += cost.report.pushed;
        if cost.report.pushed == 0 {
            return Ok((pushed, started.elapsed().as_secs_f64()));
        }
    }
    anyhow::bail!("the center did not finish pushing in 1000 sessions")
}

/// Runs `bench restore`; returns the markdown section.
pub async fn restore(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let (dataset, g, reused) = million::dataset(&million::Args {
        runs: 1,
        cases: args.cases,
        seed: args.seed,
        lookups: 1,
    })
    .await?;
    eprintln!(
        "restore: a center of {} cases, {} citizens ({})",
        thousands(u64::from(g.cases)),
        thousands(u64::from(g.citizens)),
        if reused { "reused" } else { "generated now" }
    );
    let work = tempfile::tempdir_in(dataset.parent().context("the data set's folder")?)?;
    // The center's database as it was before its disk died, pushed to a fresh hub.
    let lost = work.path().join("lost");
    std::fs::create_dir_all(&lost)?;
    for f in ["markaz-node.db", "markaz-node.db-wal"] {
        let from = dataset.join("data").join(f);
        if from.exists() {
            std::fs::copy(&from, lost.join(f))?;
        }
    }
    let hub = HubRig::start(work.path()).await?;
    let bundle = hub.bundle(&CENTER.parse()?)?;
    let (pushed, push_secs) = push_all(&hub, &lost.join("markaz-node.db"), &bundle).await?;
    eprintln!(
        "restore: the hub holds the center: {} changes pushed in {push_secs:.0} s",
        thousands(pushed as u64)
    );

    let mut runs = Vec::new();
    for k in 0..args.runs {
        let dir = work.path().join(format!("run{k}"));
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let config = dir.join("node.toml");
        std::fs::write(&config, node_toml(&data, hub.sync_port(), &bundle))?;
        let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        let report = markaz_node::sync::restore::from_hub(&cfg, false).await?;
        let wall = started.elapsed();
        anyhow::ensure!(
            report.cases == u64::from(g.cases),
            "restored {} cases of {}",
            report.cases,
            g.cases
        );
        let run = Run {
            wall,
            bytes_down: report.bytes_down,
            bytes_up: report.bytes_up,
            sessions: report.sessions,
            documents: report.documents,
            cases: report.cases,
            db_bytes: file_bytes(&data),
        };
        eprintln!(
            "restore run {}: {:.1} s, {} documents, {} MB down, database {} MB",
            k + 1,
            run.wall.as_secs_f64(),
            thousands(run.documents),
            run.bytes_down / 1_000_000,
            run.db_bytes / 1_000_000
        );
        let _ = std::fs::remove_dir_all(&dir);
        runs.push(run);
    }
    hub.stop().await?;

    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let list = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let wall = med(&|r| r.wall.as_secs_f64());
    // The target is for a year of cases (450,000): scaled linearly when fewer were run.
    let per_case = wall / f64::from(g.cases);
    let year = per_case * 450_000.0;
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs; machine: {machine}.\n\n",
        args.runs
    ));
    md.push_str(&format!(
        "Data: `bench million`'s center of {} cases and {} citizens (database {} MB), pushed to a fresh hub on loopback ({} changes in {push_secs:.0} s) before the runs. Each run restores it into an empty data directory with `markaz_node::sync::restore::from_hub`, what `markaz restore --from-hub` runs, over the primary link; hub and node share the machine.\n\n",
        thousands(u64::from(g.cases)),
        thousands(u64::from(g.citizens)),
        g.db_bytes / 1_000_000,
        thousands(pushed as u64),
    ));
    md.push_str("| measure | median | runs | target |\n| --- | ---: | --- | --- |\n");
    md.push_str(&format!(
        "| restore wall time, s | {wall:.1} | {} | |\n",
        list(&|r| format!("{:.1}", r.wall.as_secs_f64()))
    ));
    md.push_str(&format!(
        "| per 450,000 cases (a year), min | {:.1} | | < 10 min: **{}**{} |\n",
        year / 60.0,
        if year < 600.0 { "met" } else { "NOT met" },
        if g.cases < 450_000 {
            " (scaled linearly from the cases run)"
        } else {
            ""
        }
    ));
    md.push_str(&format!(
        "| bytes down / up, MB | {:.1} / {:.2} | {} | |\n",
        med(&|r| r.bytes_down as f64) / 1e6,
        med(&|r| r.bytes_up as f64) / 1e6,
        list(&|r| format!(
            "{:.1} / {:.2}",
            r.bytes_down as f64 / 1e6,
            r.bytes_up as f64 / 1e6
        ))
    ));
    md.push_str(&format!(
        "| bytes down per case | {:.0} | | |\n",
        med(&|r| r.bytes_down as f64 / r.cases.max(1) as f64)
    ));
    md.push_str(&format!(
        "| restored database, MB | {:.1} | {} | |\n",
        med(&|r| r.db_bytes as f64) / 1e6,
        list(&|r| format!("{:.1}", r.db_bytes as f64 / 1e6))
    ));
    md.push_str(&format!(
        "| sessions / documents | {} / {} | | |\n",
        runs[0].sessions,
        thousands(runs[0].documents)
    ));
    Ok(md)
}
