//! What a new user sees: `markaz demo` starts a hub and a center, prints their URLs, and
//! both answer; `markaz check-config` explains a broken file.

use std::process::Stdio;
use std::time::Duration;

use markaz_e2e::hub::free_port;
use markaz_e2e::markaz_bin;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn demo_starts_a_hub_and_a_center_and_prints_their_urls() {
    let dir = tempfile::tempdir().unwrap();
    let (port, hub_port, sync_port) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let mut child = tokio::process::Command::new(markaz_bin().unwrap())
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("demo"))
        .args([
            "--port",
            &port.to_string(),
            "--hub-port",
            &hub_port.to_string(),
            "--sync-port",
            &sync_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "demo printed nothing useful in 30 s: {printed}"
    );
    assert!(
        printed.contains(&format!("http://127.0.0.1:{port}/")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("http://127.0.0.1:{hub_port}/")),
        "{printed}"
    );
    assert!(
        printed.contains("admin /"),
        "the login is printed: {printed}"
    );

    let node = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(node.status().as_u16(), 200);
    let hub = reqwest::get(format!("http://127.0.0.1:{hub_port}/"))
        .await
        .unwrap();
    assert_eq!(hub.status().as_u16(), 200);
    // The printed login works.
    let api = markaz_e2e::Api::login(&format!("http://127.0.0.1:{port}"), "admin", "markaz-demo")
        .await
        .unwrap();
    let (s, services) = api.get("/catalog/services").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        services.as_array().unwrap().len(),
        17,
        "the catalog of the report"
    );
    // The emulated devices feed the technician's panels.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, status) = api.get("/status").await.unwrap();
        assert_eq!(s, 200, "{status}");
        let live = |p: &str| status["panels"][p]["state"] == "live";
        if live("modem") && live("power") && live("link") && live("sync") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "panels not live after 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The center synced with the hub over mutual TLS: its sync panel has a success.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = api.get("/status").await.unwrap();
        if status["panels"]["sync"]["data"]["last_success_at"].is_string()
            || status["panels"]["sync"]["last_success_at"].is_string()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo center never synced: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // SIGTERM stops both cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn check_config_points_at_the_line_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("midan.toml");
    std::fs::write(
        &file,
        "[center]\nid = \"midan\"\n\n[queue]\nprority_weight = 2\n",
    )
    .unwrap();
    let out = std::process::Command::new(markaz_bin().unwrap())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("midan.toml:5:1"), "{err}");
    assert!(err.contains("priority_weight"), "did-you-mean hint: {err}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/midan.toml");
    let out = std::process::Command::new(markaz_bin().unwrap())
        .arg("check-config")
        .arg(example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
