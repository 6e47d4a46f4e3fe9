//! Load: 100 terminal sessions against one `markaz node` process for a minute
//! (`MARKAZ_LOAD_SECS`, default 60), each doing a desk's work in a loop — issue a ticket,
//! call it to a counter, look the citizen up, register them, open a case, take payment,
//! advance it, finish the ticket. No request may fail; the test prints throughput and
//! p50/p95/p99/max latency per kind of request. (The figures in docs/BENCHMARKS.md come
//! from a release build run, not from this test.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, NodeProcess, citizen_json, quantile};
use serde_json::json;

const SESSIONS: usize = 100;
const PASSWORD: &str = "load-test-password";

/// (request kind, latency) samples of one terminal.
type Samples = Vec<(&'static str, Duration)>;

async fn timed(
    samples: &mut Samples,
    kind: &'static str,
    fut: impl std::future::Future<Output = Result<(u16, serde_json::Value)>>,
) -> Result<(u16, serde_json::Value)> {
    let t = Instant::now();
    let out = fut.await.with_context(|| format!("{kind}: transport"))?;
    samples.push((kind, t.elapsed()));
    Ok(out)
}

/// One desk: its own counter (1..=4 by config) is shared, so calls may find the queue
/// empty (204) or the counter busy (409) — both are answers a desk sees; anything else
/// outside 2xx is an error.
async fn desk(api: Api, id: usize, stop: Arc<AtomicBool>) -> Result<Samples> {
    let mut s = Samples::new();
    let mut n = 0u64;
    let counter = 1 + id % 4;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let nid = format!("02{:04}{:05}", id, n % 100_000);
        let (st, t) = timed(
            &mut s,
            "issue_ticket",
            api.post("/tickets", json!({"group": "civil"})),
        )
        .await?;
        ensure!(st == 201, "ticket {st} {t}");
        let (st, b) = timed(
            &mut s,
            "call_next",
            api.post(&format!("/counters/{counter}/call-next"), json!({})),
        )
        .await?;
        ensure!(matches!(st, 200 | 204 | 409), "call-next {st} {b}");
        let called = st == 200;
        let (st, b) = timed(
            &mut s,
            "lookup_citizen",
            api.get(&format!("/citizens?national_id={nid}")),
        )
        .await?;
        ensure!(st == 200, "lookup {st} {b}");
        let (st, b) = timed(
            &mut s,
            "save_citizen",
            api.post("/citizens", citizen_json(&nid, "0944123456")),
        )
        .await?;
        ensure!(st == 201 || st == 200, "citizen {st} {b}");
        let (st, c) = timed(
            &mut s,
            "create_case",
            api.post(
                "/cases",
                json!({"national_id": nid, "service": "criminal_record"}),
            ),
        )
        .await?;
        ensure!(st == 201, "case {st} {c}");
        let case_no = c["case_no"].as_str().context("case_no")?.to_string();
        let (st, b) = timed(
            &mut s,
            "take_payment",
            api.post(
                &format!("/cases/{case_no}/payment"),
                json!({"method": "cash"}),
            ),
        )
        .await?;
        ensure!(st == 200, "payment {st} {b}");
        for action in ["start", "ready"] {
            let (st, b) = timed(
                &mut s,
                "advance_case",
                api.post(
                    &format!("/cases/{case_no}/transitions"),
                    json!({"action": action}),
                ),
            )
            .await?;
            ensure!(st == 200, "{action} {st} {b}");
        }
        let (st, b) = timed(&mut s, "get_case", api.get(&format!("/cases/{case_no}"))).await?;
        ensure!(st == 200, "get case {st} {b}");
        if called {
            let (st, b) = timed(
                &mut s,
                "finish_ticket",
                api.post(&format!("/counters/{counter}/finish"), json!({})),
            )
            .await?;
            // Another desk on the same counter may have finished it first.
            ensure!(st == 200 || st == 409, "finish {st} {b}");
        }
    }
    Ok(s)
}

fn report(label: &str, mut lat: Vec<Duration>, secs: f64) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{label:<15} n={:>7} {:>8.1}/s  p50={:>7.2}ms p95={:>7.2}ms p99={:>7.2}ms max={:>8.2}ms",
        lat.len(),
        lat.len() as f64 / secs,
        ms(quantile(&lat, 0.50)),
        ms(quantile(&lat, 0.95)),
        ms(quantile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_terminals_for_a_minute_without_an_error() {
    let secs: u64 = std::env::var("MARKAZ_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut node = NodeProcess::start("midan").await.unwrap();
    let admin = node.login_admin().await.unwrap();
    admin
        .create_staff(
            "desk",
            PASSWORD,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(Api::login(&node.base_url, "desk", PASSWORD).await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, api)| tokio::spawn(desk(api, i, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: Samples = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap().expect("a terminal got an error"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{SESSIONS} sessions for {elapsed:.1} s");
    let mut kinds: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        report(
            k,
            all.iter()
                .filter(|(x, _)| *x == k)
                .map(|(_, d)| *d)
                .collect(),
            elapsed,
        );
    }
    report("all", all.iter().map(|(_, d)| *d).collect(), elapsed);
    assert!(
        all.len() as f64 > 10.0 * elapsed,
        "the node did real work: {} requests",
        all.len()
    );
    // The node is still healthy and stops cleanly.
    let (s, _) = admin.rebased(&node.base_url).get("/auth/me").await.unwrap();
    assert_eq!(s, 200);
    assert!(node.stop().await.unwrap().success());
}
