//! `/metrics` on a real node and a real hub (issue 18.4), scraped over HTTP and read with
//! a Prometheus text-format parser: the families are there and their values move with
//! what happens (a POST counts under its route template, the writer's batches, the sync
//! backlog, sessions at both ends); who may read is as `[metrics]` says.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use markaz_e2e::{HubProcess, NodeProcess, citizen_json};
use prometheus_parse::{Scrape, Value};

/// A parsed scrape of `url`, sent with `token` as a bearer when given.
async fn scrape(url: &str, token: Option<&str>) -> Result<Scrape> {
    let (status, body) = get(url, token).await?;
    ensure!(status == 200, "GET {url}: {status} {body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).context("parsing the metrics as Prometheus text")
}

async fn get(url: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        _ => None,
    }
}

/// The value of the sample of `metric` whose labels include `labels`; a counter is found
/// with or without its `_total`.
fn sample(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric || x.metric == format!("{metric}_total"))
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .find_map(|x| number(&x.value))
}

/// How many observations a histogram holds (its `_count` sample: the parser keeps the
/// buckets to itself).
fn histogram_count(s: &Scrape, metric: &str) -> Option<f64> {
    sample(s, &format!("{metric}_count"), &[])
}

fn must(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Result<f64> {
    sample(s, metric, labels).with_context(|| {
        let names: std::collections::BTreeSet<&str> =
            s.samples.iter().map(|x| x.metric.as_str()).collect();
        format!("no {metric}{labels:?} among {names:?}")
    })
}

#[tokio::test]
async fn node_metrics_are_parsed_and_move_with_requests_and_writes() -> Result<()> {
    let node = NodeProcess::start("midan").await?;
    let api = node.login_admin().await?;
    let url = node.url("/metrics");

    let before = scrape(&url, None).await?;
    for family in [
        "markaz_up",
        "markaz_writer_queue_depth",
        "markaz_disk_free_bytes",
        "markaz_disk_size_bytes",
        "markaz_disk_guard_active",
        "markaz_link_primary_up",
        "markaz_sync_last_success_timestamp_seconds",
    ] {
        must(&before, family, &[])?;
    }
    ensure!(must(&before, "markaz_disk_free_bytes", &[])? > 0.0);
    let in_use: f64 = ["primary", "modem", "offline", "unknown"]
        .iter()
        .map(|u| sample(&before, "markaz_uplink", &[("uplink", u)]).unwrap_or(0.0))
        .sum();
    ensure!(in_use == 1.0, "one uplink in use");
    ensure!(must(&before, "markaz_outbox_messages", &[("state", "pending")])? == 0.0);
    let essential_before = must(
        &before,
        "markaz_sync_backlog_changes",
        &[("lane", "essential")],
    )?;
    let batches_before = histogram_count(&before, "markaz_writer_batch_size").unwrap_or(0.0);
    let jobs_before = histogram_count(&before, "markaz_writer_job_seconds").unwrap_or(0.0);
    let route = [
        ("method", "POST"),
        ("route", "/api/v1/citizens"),
        ("status", "201"),
    ];
    let posts_before = sample(&before, "markaz_http_requests", &route).unwrap_or(0.0);

    let (s, b) = api
        .post("/citizens", citizen_json("01234567891", "0944123456"))
        .await?;
    ensure!(s == 201, "{s} {b}");
    let (s, _) = api.get("/citizens/01234567891").await?;
    ensure!(s == 200);

    let after = scrape(&url, None).await?;
    ensure!(
        must(&after, "markaz_http_requests", &route)? == posts_before + 1.0,
        "the POST is counted under its route"
    );
    // A path with an id counts under its template, never the raw path. (The parser
    // skips a line whose label holds a brace, so this one is read in the text.)
    let (_, text) = get(&url, None).await?;
    ensure!(
        text.contains(
            r#"markaz_http_requests_total{method="GET",route="/api/v1/citizens/{national_id}",status="200"} 1"#
        ),
        "the GET of one citizen counts under its route template:\n{text}"
    );
    ensure!(!text.contains("01234567891"), "a raw path became a label");
    ensure!(
        after
            .samples
            .iter()
            .any(|x| x.metric == "markaz_http_request_duration_seconds_count"
                && x.labels.get("route") == Some("/api/v1/citizens")),
        "no latency histogram for the POST"
    );
    let batches_after = histogram_count(&after, "markaz_writer_batch_size")
        .context("the writer's batch-size histogram")?;
    ensure!(
        batches_after > batches_before,
        "the citizen's write went through a counted batch ({batches_before} → {batches_after})"
    );
    let jobs_after = histogram_count(&after, "markaz_writer_job_seconds")
        .context("the writer's job-time histogram")?;
    ensure!(
        jobs_after > jobs_before,
        "the citizen's write is a timed job ({jobs_before} → {jobs_after})"
    );
    ensure!(
        must(
            &after,
            "markaz_sync_backlog_changes",
            &[("lane", "essential")]
        )? > essential_before,
        "the new citizen document waits for the hub"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_and_a_listener_of_its_own_guard_the_node_metrics() -> Result<()> {
    let secrets = tempfile::tempdir()?;
    let token_file = secrets.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me-please\n")?;
    let node = NodeProcess::start_with(
        "midan",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .await?;
    let (s, _) = get(&node.url("/metrics"), None).await?;
    ensure!(s == 404, "the main listener no longer serves /metrics: {s}");
    let addr = std::fs::read_to_string(node.dir.path().join("data").join("metrics.addr"))?;
    let url = format!("http://{}/metrics", addr.trim());
    let (s, body) = get(&url, None).await?;
    ensure!(s == 401, "no token, no metrics: {s} {body}");
    let (s, _) = get(&url, Some("wrong")).await?;
    ensure!(s == 401);
    let ok = scrape(&url, Some("scrape-me-please")).await?;
    ensure!(must(&ok, "markaz_up", &[])? == 1.0);

    // Turned off: no endpoint anywhere.
    let off = NodeProcess::start_with("midan", "[metrics]\nenabled = false\n").await?;
    let (s, _) = get(&off.url("/metrics"), None).await?;
    ensure!(s == 404, "{s}");
    Ok(())
}

#[tokio::test]
async fn sync_counts_at_the_node_and_the_center_at_the_hub() -> Result<()> {
    let hub = HubProcess::start(&["midan"]).await?;
    let node = NodeProcess::start_synced("midan", &hub).await?;
    let api = node.login_admin().await?;
    let (s, b) = api
        .post("/citizens", citizen_json("01234567892", "0944123456"))
        .await?;
    ensure!(s == 201, "{s} {b}");
    node.sync_now(&api).await?;

    let n = scrape(&node.url("/metrics"), None).await?;
    ensure!(must(&n, "markaz_sync_sessions", &[("result", "ok")])? >= 1.0);
    ensure!(must(&n, "markaz_sync_bytes", &[("direction", "up")])? > 0.0);
    ensure!(must(&n, "markaz_sync_changes", &[("direction", "up")])? >= 1.0);
    let last_ok = must(&n, "markaz_sync_last_success_timestamp_seconds", &[])?;
    let now = jiff::Timestamp::now().as_second() as f64;
    ensure!(
        (now - last_ok).abs() < 300.0,
        "last success {last_ok} is not about now ({now})"
    );

    // The hub's web listener serves its own; the test is on loopback.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let h = scrape(&format!("{}/metrics", hub.web_url), None).await?;
        let last = sample(
            &h,
            "markaz_hub_center_last_sync_timestamp_seconds",
            &[("center", "midan")],
        );
        if let Some(last) = last.filter(|t| (now - t).abs() < 300.0) {
            must(
                &h,
                "markaz_hub_center_backlog_changes",
                &[("center", "midan")],
            )?;
            ensure!(must(&h, "markaz_hub_centers", &[])? >= 1.0);
            ensure!(must(&h, "markaz_disk_free_bytes", &[])? > 0.0);
            ensure!(
                h.samples
                    .iter()
                    .any(|x| x.metric.starts_with("markaz_http_requests")
                        && x.labels.get("route") == Some("/sync/v1")),
                "the sync endpoint's requests are counted by route"
            );
            eprintln!("hub: midan last synced at {last}");
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the hub's metrics never showed midan's sync");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
