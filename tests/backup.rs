//! Built-in backups (issue 18.5): `markaz backup --to FILE` on a real node while terminals
//! write, then `markaz restore FILE` into a new data directory; the restored node starts
//! and holds every write acknowledged before the backup began. A restore refuses a node
//! that runs, a damaged backup and one of a newer schema.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use markaz_e2e::hub::markaz_cli;
use markaz_e2e::{Api, NodeProcess, citizen_json, markaz_bin};

const TERMINALS: usize = 4;
const CLERK_PASSWORD: &str = "clerk-backup-password";

/// Acknowledged national ids with the instant each was acknowledged.
type Acks = Arc<Mutex<Vec<(String, Instant)>>>;

async fn terminal(api: Api, first: u64, acks: Acks, stop: Arc<AtomicBool>) -> Result<()> {
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("01{n:09}");
        let (s, b) = api
            .post("/citizens", citizen_json(&id, "0944123456"))
            .await?;
        ensure!(s == 201, "saving {id}: {s} {b}");
        acks.lock().unwrap().push((id, Instant::now()));
    }
    Ok(())
}

/// `markaz <args>`: (success, output).
fn run(args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(markaz_bin()?)
        .args(args)
        .output()
        .context("running markaz")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_acknowledged_write() -> Result<()> {
    let node = NodeProcess::start("midan").await?;
    let admin = node.login_admin().await?;
    admin
        .create_staff("desk", CLERK_PASSWORD, &["clerk", "reception"], &[])
        .await?;
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..TERMINALS {
        let api = Api::login(&node.base_url, "desk", CLERK_PASSWORD).await?;
        tasks.push(tokio::spawn(terminal(
            api,
            (i as u64 + 1) * 10_000_000,
            acks.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let out = tempfile::tempdir()?;
    let file = out.path().join("midan.db");
    let config = node.dir.path().join("node.toml");
    let began = Instant::now();
    let printed = tokio::task::spawn_blocking({
        let (config, file) = (config.clone(), file.clone());
        move || markaz_cli(&["backup", "--config", s(&config), "--to", s(&file)])
    })
    .await??;
    eprintln!("{printed}");
    // The terminals go on a little after the backup, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let acks = acks.lock().unwrap().clone();
    let before: HashSet<String> = acks
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id.clone())
        .collect();
    let during = acks.len() - before.len();
    eprintln!(
        "{} citizens acknowledged before the backup began, {during} during and after",
        before.len()
    );
    ensure!(before.len() > 20, "too little load: {}", before.len());
    ensure!(
        during > 0,
        "the terminals kept writing while the backup ran"
    );

    // The checksum file is sha256sum's.
    let sums = out.path().join("midan.db.sha256");
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(&sums)
        .current_dir(out.path())
        .output()?;
    ensure!(
        check.status.success(),
        "sha256sum -c: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A fresh node is the new box: restoring onto it while it runs is refused.
    let mut fresh = NodeProcess::start("midan").await?;
    let fresh_config = fresh.dir.path().join("node.toml");
    let (ok, text) = run(&["restore", s(&file), "--config", s(&fresh_config)])?;
    ensure!(
        !ok && text.contains("running"),
        "restore over a running node: {text}"
    );
    fresh.stop().await?;

    // A damaged copy and a newer-schema copy are refused.
    let damaged = out.path().join("damaged.db");
    std::fs::copy(&file, &damaged)?;
    std::fs::copy(&sums, out.path().join("damaged.db.sha256"))?;
    let mut bytes = std::fs::read(&damaged)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&damaged, bytes)?;
    let (ok, text) = run(&["restore", s(&damaged), "--config", s(&fresh_config)])?;
    ensure!(!ok && text.contains("SHA-256"), "a damaged backup: {text}");
    let newer = out.path().join("newer.db");
    std::fs::copy(&file, &newer)?;
    rusqlite::Connection::open(&newer)?.pragma_update(None, "user_version", 9999)?;
    let (ok, text) = run(&["restore", s(&newer), "--config", s(&fresh_config)])?;
    ensure!(!ok && text.contains("newer"), "a newer backup: {text}");

    let restored = markaz_cli(&["restore", s(&file), "--config", s(&fresh_config)])?;
    eprintln!("{restored}");
    fresh.spawn().await?;
    let api = fresh.login_admin().await?;
    let mut missing = Vec::new();
    for id in &before {
        let (s, _) = api.get(&format!("/citizens/{id}")).await?;
        if s != 200 {
            missing.push(format!("{id}: {s}"));
        }
    }
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged citizens are missing after the restore: {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(10)]
    );
    // The restored node takes new writes.
    let (s, b) = api
        .post("/citizens", citizen_json("01999999999", "0944123456"))
        .await?;
    ensure!(s == 201, "{s} {b}");
    Ok(())
}
