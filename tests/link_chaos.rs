//! Link chaos: two centers sync with a real hub process through [`ChaosProxy`], which
//! cuts, stalls, slows and corrupts their TLS traffic at random, while clerks at both
//! centers keep opening cases and moving them along; halfway through, the hub process is
//! SIGKILLed and restarted. Then the link goes clean, each center syncs, and:
//! - every case a center acknowledged is at the hub, once, reading the same there as at
//!   the center (status, events, fee) and being the same document (automerge heads);
//! - the hub holds exactly the acknowledged cases — none lost, none duplicated, no
//!   stranger;
//! - the centers' backlogs and the hub's feeds to them are empty.
//!
//! `MARKAZ_CHAOS_SECS` (default 30) sets how long the chaos runs, `MARKAZ_CHAOS_SEED`
//! replays a run's proxy decisions (the seed is printed).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::chaos::{ChaosProxy, Faults};
use markaz_e2e::{
    Api, CaseSummary, HubProcess, NodeProcess, Rng, backlog_total, citizen_json, open_case,
};

const DESK_PASSWORD: &str = "desk-chaos-password";

struct Center {
    node: NodeProcess,
    admin: Api,
    desk: Api,
}

/// Desk work until `stop`: a new citizen and a case, paid, started, made ready; every
/// case number the node acknowledged goes into `acked`.
async fn desk_work(
    desk: Api,
    first_nid: u64,
    acked: Arc<Mutex<Vec<String>>>,
    stop: stop_flag::Flag,
) -> Result<()> {
    let mut nid = first_nid;
    while !stop.is_set() {
        nid += 1;
        let id = format!("{nid:011}");
        let (s, b) = desk
            .post("/citizens", citizen_json(&id, "0944123456"))
            .await?;
        ensure!(s == 201 || s == 200, "citizen: {s} {b}");
        let no = open_case(&desk, &id, &[]).await?;
        acked.lock().unwrap().push(no.clone());
        for step in ["pay", "start", "ready"] {
            if stop.is_set() {
                break;
            }
            let (s, b) = if step == "pay" {
                desk.post(
                    &format!("/cases/{no}/payment"),
                    serde_json::json!({"method": "cash"}),
                )
                .await?
            } else {
                desk.post(
                    &format!("/cases/{no}/transitions"),
                    serde_json::json!({"action": step}),
                )
                .await?
            };
            ensure!(s == 200, "{step} {no}: {s} {b}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    Ok(())
}

/// A flag the desk tasks poll to stop.
mod stop_flag {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Flag(Arc<AtomicBool>);

    impl Flag {
        pub fn set(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
        pub fn is_set(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn centers_behind_a_chaotic_link_lose_and_duplicate_nothing() -> Result<()> {
    let secs: u64 = std::env::var("MARKAZ_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = Rng::from_env("MARKAZ_CHAOS_SEED").next_u64();
    let mut hub = HubProcess::start(&["midan", "qanawat"]).await?;
    let proxy = ChaosProxy::start(([127, 0, 0, 1], hub.sync_port).into(), seed).await?;
    let mut centers = Vec::new();
    for name in ["midan", "qanawat"] {
        // Sessions every few seconds through the proxy; the probe target is always up, so
        // the uplink stays `primary` and every failure is the proxy's doing.
        let node = NodeProcess::start_synced_with(name, &hub, &proxy.url(), "").await?;
        let admin = node.login_admin().await?;
        admin
            .create_staff(
                "desk",
                DESK_PASSWORD,
                &["clerk", "reception"],
                &[("justice", "2099-12-31")],
            )
            .await?;
        let desk = Api::login(&node.base_url, "desk", DESK_PASSWORD).await?;
        centers.push(Center { node, admin, desk });
    }
    // A clean first session each, so both centers are known to the hub.
    for c in &centers {
        c.node.sync_now(&c.admin).await?;
    }

    proxy.set(Faults {
        corrupt_per_mille: 50,
        ..Faults::bad_day()
    });
    let stop = stop_flag::Flag::default();
    let mut work = Vec::new();
    let mut acked = Vec::new();
    for (i, c) in centers.iter().enumerate() {
        let a = Arc::new(Mutex::new(Vec::new()));
        acked.push(a.clone());
        work.push(tokio::spawn(desk_work(
            c.desk.clone(),
            (i as u64 + 1) * 10_000_000_000 / 10 + 1,
            a,
            stop.clone(),
        )));
    }
    // Besides the sync interval, technicians press "sync now" now and then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng::new(seed ^ 0x5eed);
    // Halfway through, the hub itself dies (SIGKILL) and comes back a second later.
    let hub_crash_at = tokio::time::Instant::now() + Duration::from_secs(secs / 2);
    let mut hub_crashed = false;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
        if !hub_crashed && tokio::time::Instant::now() >= hub_crash_at {
            hub_crashed = true;
            hub.kill9().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            hub.spawn().await?;
            eprintln!("the hub was SIGKILLed and restarted");
        }
        let c = &centers[rng.range(0, 2) as usize];
        let _ = c
            .admin
            .post("/technician/sync-now", serde_json::json!({}))
            .await;
    }
    stop.set();
    for w in work {
        w.await.context("desk task")??;
    }
    eprintln!("chaos for {secs} s: {}", proxy.stats.summary());
    let sessions_failed: i64 = {
        let mut n = 0;
        for c in &centers {
            n += c.node.docs()?.conn.query_row(
                "SELECT count(*) FROM sync_sessions WHERE result != 'ok'",
                [],
                |r| r.get::<_, i64>(0),
            )?;
        }
        n
    };
    eprintln!("sessions that failed under chaos: {sessions_failed}");
    ensure!(
        sessions_failed > 0,
        "the chaos never broke a session: {}",
        proxy.stats.summary()
    );

    // The link is clean again: every center catches up.
    proxy.set(Faults::clean());
    for c in &centers {
        let mut ok = false;
        for _ in 0..5 {
            let r = c
                .node
                .sync_now_within(&c.admin, Duration::from_secs(60))
                .await?;
            let panel = c.node.sync_panel(&c.admin).await?;
            if r["result"] == "ok" && backlog_total(&panel)? == 0 {
                ok = true;
                break;
            }
        }
        ensure!(
            ok,
            "{} did not catch up on a clean link; log:\n{}",
            c.node.center,
            c.node.log()
        );
    }
    // Once more each, so nothing is left in flight either way.
    for c in &centers {
        c.node.sync_now(&c.admin).await?;
    }

    let mut hub_db = hub.db()?;
    let hub_cases = hub_db.cases()?;
    let hub_heads = hub_db.heads()?;
    let mut all_acked = BTreeSet::new();
    for (c, acked) in centers.iter().zip(&acked) {
        let name = c.node.center.as_str();
        let acked = acked.lock().unwrap().clone();
        let unique: BTreeSet<&String> = acked.iter().collect();
        ensure!(
            unique.len() == acked.len(),
            "{name} handed out a case number twice"
        );
        ensure!(!acked.is_empty(), "{name} did no work");
        // The center holds exactly what it acknowledged (read from its database: a long
        // run has more cases than one page of `GET /cases`).
        let docs = c.node.docs()?;
        let held: BTreeSet<String> = docs
            .conn
            .prepare("SELECT case_no FROM cases")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ensure!(
            held == acked.iter().cloned().collect(),
            "{name} holds exactly what it acknowledged"
        );
        let local_heads = docs.heads()?;
        for no in &acked {
            let at_hub: Vec<_> = hub_cases
                .iter()
                .filter(|v| v.case_no.as_str() == no)
                .collect();
            ensure!(
                at_hub.len() == 1,
                "{no} of {name} is {} times at the hub",
                at_hub.len()
            );
            let (s, local) = c.desk.get(&format!("/cases/{no}")).await?;
            ensure!(s == 200, "{no}: {s} {local}");
            ensure!(
                CaseSummary::of_doc(at_hub[0]) == CaseSummary::of_api(&local),
                "{no}: hub {:?} vs {name} {:?}",
                CaseSummary::of_doc(at_hub[0]),
                CaseSummary::of_api(&local)
            );
        }
        for (id, _) in docs.docs_of_kind("case")? {
            ensure!(
                hub_heads.get(&id) == local_heads.get(&id),
                "{id} at {name} is not the hub's document"
            );
        }
        let panel = c.node.sync_panel(&c.admin).await?;
        ensure!(backlog_total(&panel)? == 0, "{name}: {panel}");
        let row = hub
            .center_row(name)
            .await?
            .with_context(|| format!("{name} in the hub's overview"))?;
        ensure!(backlog_total(&row)? == 0, "the hub's feed to {name}: {row}");
        all_acked.extend(acked);
    }
    let at_hub: BTreeSet<String> = hub_cases.iter().map(|v| v.case_no.to_string()).collect();
    ensure!(
        hub_cases.len() == all_acked.len() && at_hub == all_acked,
        "the hub holds {} cases, {} were acknowledged",
        hub_cases.len(),
        all_acked.len()
    );
    eprintln!(
        "{} cases acknowledged, all at the hub once and identical",
        all_acked.len()
    );
    Ok(())
}
