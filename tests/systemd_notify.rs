//! `Type=notify` and `WatchdogSec=` against a fake service manager: the test binds the
//! unix datagram socket systemd would (`NOTIFY_SOCKET`), runs a real `markaz node`
//! process with `WATCHDOG_USEC`, and reads what it sends.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UnixDatagram;
use tokio::time::Instant;

/// What the node process sends, one datagram at a time.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    /// The next datagram within `limit`.
    async fn next(&self, limit: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(limit, self.socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Every datagram that arrives within `window`.
    async fn during(&self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut got = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(m) => got.push(m),
                None => break,
            }
        }
        got
    }
}

fn pings(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[tokio::test]
async fn ready_once_serving_then_watchdog_pings_that_stop_while_the_writer_is_stuck() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("node.toml");
    // A writer blocked on a lock waits a whole minute before giving up: stuck, for the
    // length of this test.
    std::fs::write(
        &config,
        format!(
            "[center]\nid = \"midan\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\ndata_dir = \"{}\"\nbusy_timeout_ms = 60000\n\
             [auth]\ninitial_admin_password = \"{}\"\n",
            data.display(),
            markaz_e2e::ADMIN_PASSWORD
        ),
    )?;
    let socket_path = dir.path().join("notify.sock");
    let manager = Manager {
        socket: UnixDatagram::bind(&socket_path)?,
    };
    let log = std::fs::File::create(dir.path().join("node.log"))?;
    let mut child = tokio::process::Command::new(markaz_e2e::markaz_bin()?)
        .args(["node", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        // systemd's WatchdogSec=2: a ping every second while healthy, each check given
        // 500 ms (a loaded CI machine's fsync can take a few hundred).
        .env("WATCHDOG_USEC", "2000000")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let node_log = || std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();

    // READY=1, and by then the node answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            bail!("no READY=1 within 60 s; log:\n{}", node_log());
        };
        let Some(m) = manager.next(left).await else {
            continue;
        };
        if m.lines().any(|l| l == "READY=1") {
            assert!(
                m.lines()
                    .any(|l| l.starts_with("STATUS=serving on 127.0.0.1:")),
                "{m}"
            );
            break;
        }
        assert!(
            !m.contains("WATCHDOG=1"),
            "a watchdog ping before READY: {m}"
        );
    }
    let addr = std::fs::read_to_string(data.join("listen.addr"))
        .context("READY before the listener's address was written")?;
    let healthz = format!("http://{}/healthz", addr.trim());
    let r = reqwest::get(&healthz).await?;
    assert_eq!(r.status().as_u16(), 200, "READY before the node serves");

    let healthy = manager.during(Duration::from_secs(4)).await;
    assert!(
        pings(&healthy) >= 3,
        "pings every second while healthy, got {healthy:?}; log:\n{}",
        node_log()
    );

    // Another process holds the database's write lock: the writer's next transaction
    // (its probe) cannot begin. Reads go on (WAL), so only the writer is stuck.
    let db = rusqlite::Connection::open(data.join("markaz-node.db"))?;
    db.execute_batch("BEGIN EXCLUSIVE")?;
    // A check already under way may still ping once.
    manager.during(Duration::from_millis(2200)).await;
    let stuck = manager.during(Duration::from_secs(5)).await;
    assert_eq!(
        pings(&stuck),
        0,
        "pings went on while the writer was stuck: {stuck:?}"
    );
    let r = reqwest::get(&healthz).await?;
    assert!(
        r.status().is_success() || r.status().as_u16() == 503,
        "the HTTP server itself still answers: {}",
        r.status()
    );
    assert!(
        node_log().contains("the storage writer is stuck"),
        "the reason is logged:\n{}",
        node_log()
    );

    // The lock goes away: the queued probe commits and the pings come back.
    db.execute_batch("ROLLBACK")?;
    let back = manager.during(Duration::from_secs(5)).await;
    assert!(
        pings(&back) >= 2,
        "pings did not resume once the writer could commit: {back:?}; log:\n{}",
        node_log()
    );
    assert!(
        child.try_wait()?.is_none(),
        "the node must not exit by itself"
    );

    // SIGTERM: STOPPING=1 before the exit.
    let pid = child.id().context("no pid")? as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    assert!(status.success(), "{status}; log:\n{}", node_log());
    let last = manager.during(Duration::from_millis(300)).await;
    assert!(
        last.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "{last:?}"
    );
    Ok(())
}
