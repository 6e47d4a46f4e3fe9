//! What a real `markaz node` process writes to its log: plain text when stderr is not a
//! terminal, JSON with `--log-format json`, syslog priorities for the journal, and a
//! configured log file that rotates by size.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Starts `markaz [args] node --config <dir>/node.toml` (with `extra_toml` in the config)
/// with stderr and stdout into `<dir>/stderr.log`, waits until it serves, makes `requests`
/// requests, stops it with SIGTERM, and returns what it wrote there.
async fn run_node(
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
    extra_toml: &str,
    requests: usize,
) -> Result<String> {
    let data = dir.join("data");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[center]\nid = \"midan\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\ndata_dir = \"{}\"\n[auth]\ninitial_admin_password = \"{}\"\n{extra_toml}\n",
            data.display(),
            markaz_e2e::ADMIN_PASSWORD
        ),
    )?;
    let stderr_path = dir.join("stderr.log");
    let log = std::fs::File::create(&stderr_path)?;
    let mut cmd = tokio::process::Command::new(markaz_e2e::markaz_bin()?);
    cmd.args(args)
        .args(["node", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let addr_file = data.join("listen.addr");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let base = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && !a.trim().is_empty()
        {
            let base = format!("http://{}", a.trim());
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                break base;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the node did not serve: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A failed login logs a warning.
    let _ = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": "wrong", "terminal": "t"}))
        .send()
        .await?;
    for _ in 0..requests {
        reqwest::get(format!("{base}/healthz")).await?;
    }
    let pid = child.id().context("no pid")? as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    Ok(std::fs::read_to_string(&stderr_path)?)
}

/// The log lines (the node also prints its generated password notice on stdout; this
/// config sets the password, so everything here is log).
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[tokio::test]
async fn a_log_that_is_not_a_terminal_has_no_colours() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = run_node(dir.path(), &[], &[], "", 0).await?;
    assert!(text.contains("node serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{text}"
    );
    Ok(())
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = run_node(dir.path(), &["--log-format", "json"], &[], "", 0).await?;
    let lines = lines(&text);
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON line: {line:?}"))?;
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("node serving")), "{text}");
    Ok(())
}

#[tokio::test]
async fn under_journald_each_line_starts_with_its_syslog_priority() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    // systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to
    // stderr; here that stream is the log file, created before the process starts.
    let stderr_path = dir.path().join("stderr.log");
    std::fs::File::create(&stderr_path)?;
    let meta = std::fs::metadata(&stderr_path)?;
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    // run_node re-creates (truncates) the same file: same inode.
    let text = run_node(
        dir.path(),
        &["--log-format", "json"],
        &[("JOURNAL_STREAM", stream)],
        "",
        0,
    )
    .await?;
    let lines = lines(&text);
    let serving = lines
        .iter()
        .find(|l| l.contains("node serving"))
        .with_context(|| format!("no serving line:\n{text}"))?;
    let json = serving
        .strip_prefix("<6>")
        .with_context(|| format!("an info line without <6>: {serving}"))?;
    let v: serde_json::Value = serde_json::from_str(json)?;
    assert!(
        v.get("timestamp").is_none(),
        "the journal stamps the time: {json}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("login")),
        "the failed login's warning carries <4>:\n{text}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with('<')),
        "a line without its priority:\n{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_configured_log_file_rotates_by_size() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("node.log");
    let text = run_node(
        dir.path(),
        &[],
        &[],
        &format!(
            "[logging]\nlevel = \"debug\"\nfile = \"{}\"\nfile_max_bytes = 4096\nfile_keep = 2\n",
            file.display()
        ),
        200,
    )
    .await?;
    assert!(
        !text.contains("node serving"),
        "with a file, the log does not go to stderr:\n{text}"
    );
    for f in [
        file.clone(),
        dir.path().join("node.log.1"),
        dir.path().join("node.log.2"),
    ] {
        let len = std::fs::metadata(&f)
            .with_context(|| {
                format!(
                    "{} missing: 200 requests at debug fill 3 files",
                    f.display()
                )
            })?
            .len();
        assert!(len <= 4096, "{} has {len} bytes", f.display());
    }
    assert!(!dir.path().join("node.log.3").exists(), "file_keep = 2");
    // Oldest to newest: node.log.2, node.log.1, node.log. The shutdown is in the last
    // two (lines after it can fill node.log alone), and the times never go back.
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name));
    let all = format!(
        "{}{}{}",
        read("node.log.2")?,
        read("node.log.1")?,
        read("node.log")?
    );
    assert!(
        format!("{}{}", read("node.log.1")?, read("node.log")?).contains("SIGTERM"),
        "the shutdown is in the newest files:\n{all}"
    );
    let stamps: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| t.starts_with("20"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "the files are not in order, oldest to newest:\n{all}"
    );
    Ok(())
}
