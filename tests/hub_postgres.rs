//! Two `markaz hub` processes on one PostgreSQL database (a throwaway cluster), and three
//! centers as real `markaz node` processes: midan and mazzeh sync with hub A, qanawat
//! with hub B.
//!
//! - Cases opened at every center, synced at the same time through both hubs, reach the
//!   shared database once: every document a center holds has, in PostgreSQL, the same
//!   automerge heads.
//! - The same citizen registered at midan (through hub A) and at qanawat (through hub B)
//!   is one profile, the same at the hub and at both centers.
//! - The operator API of either hub shows the same centers and sync sessions.
//! - Each center knows both hubs (`[sync] hub_urls`, its own first) and pushes in small
//!   batches. Hub A is SIGKILLed in the middle of midan's and mazzeh's pushes: they
//!   finish through hub B, and their sessions say so.
//! - PostgreSQL itself is restarted (immediate stop) in the middle of pushes: both hub
//!   processes reconnect, the centers retry.
//! - Afterwards every document is identical at the hub and at its centers (same heads),
//!   every case opened is there once, none twice.
//!
//! Skipped (printed) without PostgreSQL unless CI is set.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json, open_case};

const DESK_PASSWORD: &str = "desk-sync-password";
const SHARED_NID: &str = "02000000001";

struct Center {
    node: NodeProcess,
    admin: Api,
    desk: Api,
}

impl Center {
    /// A center syncing with `urls` in order, pushing in batches of 4 KiB (a push is many
    /// requests, so a hub can die in the middle of one).
    async fn start(name: &str, hub: &HubProcess, urls: &[String]) -> Result<Self> {
        let node =
            NodeProcess::start_synced_to(name, hub, urls, "batch_max_bytes = 4096\n").await?;
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
        Ok(Self { node, admin, desk })
    }

    async fn sync(&self) -> Result<()> {
        self.node
            .sync_now_within(&self.admin, Duration::from_secs(60))
            .await
            .and_then(|r| {
                ensure!(r["result"] == "ok", "{}: {r}", self.node.center);
                Ok(())
            })
            .with_context(|| format!("node log:\n{}", self.node.log()))
    }

    /// Presses "sync now" without waiting for the session.
    async fn press_sync(&self) -> Result<()> {
        let (s, b) = self
            .admin
            .post("/technician/sync-now", serde_json::json!({}))
            .await?;
        ensure!((200..300).contains(&s), "sync-now: {s} {b}");
        Ok(())
    }

    /// Waits until a session that started after `since` succeeded and left nothing to
    /// push.
    async fn settled(&self, since: jiff::Timestamp, within: Duration) -> Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let panel = self.node.sync_panel(&self.admin).await?;
            let last = &panel["last_session"];
            let started = last["started_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if started.is_some_and(|t| t >= since)
                && panel["backlog"] == 0
                && last["result"] == "ok"
            {
                return Ok(panel);
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "{} did not settle within {within:?}: {panel}\nnode log:\n{}",
                self.node.center,
                self.node.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// (hub address, result) of every session the center recorded, oldest first.
    fn sessions(&self) -> Result<Vec<(String, String)>> {
        let db = self.node.docs()?;
        let mut st = db
            .conn
            .prepare("SELECT hub, result FROM sync_sessions ORDER BY id")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Opens `n` cases for new citizens (national ids `0<g><seq>`).
    async fn open_cases(&self, governorate: usize, from: usize, n: usize) -> Result<()> {
        for j in from..from + n {
            let nid = format!("0{governorate}{j:09}");
            register(&self.desk, &nid, "0944000000").await?;
            open_case(&self.desk, &nid, &["pay"]).await?;
        }
        Ok(())
    }
}

/// Push requests of `centers` in the hub's sync log so far.
fn pushes(cluster: &markaz_e2e::pg::PgCluster, db: &str, centers: &str) -> Result<i64> {
    let n = cluster.psql(
        db,
        &format!("SELECT count(*) FROM sync_log WHERE kind = 'push' AND center IN ({centers})"),
    )?;
    Ok(n.trim().parse()?)
}

/// Waits until the hub has logged more than `before` push requests of `centers`.
async fn wait_for_push(
    cluster: &markaz_e2e::pg::PgCluster,
    db: &str,
    centers: &str,
    before: i64,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pushes(cluster, db, centers)? <= before {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no push of {centers} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}

async fn register(api: &Api, nid: &str, phone: &str) -> Result<()> {
    let (s, b) = api.post("/citizens", citizen_json(nid, phone)).await?;
    ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
    Ok(())
}

/// doc id → heads (hex) of every document in the hub's PostgreSQL database.
fn hub_heads(cluster: &markaz_e2e::pg::PgCluster, db: &str) -> Result<BTreeMap<String, String>> {
    let out = cluster.psql(
        db,
        "SELECT doc_id || ' ' || encode(heads, 'hex') FROM doc_meta",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hub_processes_on_one_postgres_serve_three_centers() -> Result<()> {
    let Some(cluster) =
        markaz_e2e::pg::cluster_or_skip("two_hub_processes_on_one_postgres_serve_three_centers")
    else {
        return Ok(());
    };
    let url = cluster.fresh_db()?;
    let db = url.rsplit('/').next().context("db name")?.to_string();
    let storage = format!("[storage]\nengine = \"postgres\"\nurl = \"{url}\"\npool_size = 3\n");
    let mut hub_a = HubProcess::prepare_with(&["midan", "qanawat", "mazzeh"], &storage)?;
    hub_a.spawn().await?;
    let mut hub_b = hub_a.sibling()?;
    hub_b.spawn().await?;

    let a_first = [hub_a.sync_url(), hub_b.sync_url()];
    let b_first = [hub_b.sync_url(), hub_a.sync_url()];
    let centers = [
        Center::start("midan", &hub_a, &a_first).await?,
        Center::start("qanawat", &hub_a, &b_first).await?,
        Center::start("mazzeh", &hub_a, &a_first).await?,
    ];
    // Cases opened per center, all phases together.
    let mut opened = [3usize; 3];
    for (i, c) in centers.iter().enumerate() {
        c.open_cases(i + 3, 1, 3).await?;
    }
    register(&centers[0].desk, SHARED_NID, "0933111111").await?;
    register(&centers[1].desk, SHARED_NID, "0944222222").await?;
    open_case(&centers[0].desk, SHARED_NID, &["pay"]).await?;
    open_case(&centers[1].desk, SHARED_NID, &[]).await?;

    // Every center syncs at the same time, each with its hub; twice round, so each
    // pulls what the others pushed.
    for _ in 0..2 {
        let (a, b, c) = tokio::join!(centers[0].sync(), centers[1].sync(), centers[2].sync());
        a?;
        b?;
        c?;
    }

    // Every document a center holds is, in the shared database, the same document.
    let at_hub = hub_heads(cluster, &db)?;
    for c in &centers {
        let held = c.node.docs()?.heads()?;
        ensure!(held.len() > 3, "{}: {held:?}", c.node.center);
        for (id, heads) in held {
            ensure!(
                at_hub.get(&id) == Some(&hex(&heads)),
                "{id} at {} differs from the hub's",
                c.node.center
            );
        }
    }
    // The shared citizen is one document, at both centers and the hub.
    let nid: markaz_sync::model::NationalId =
        SHARED_NID.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let citizen = markaz_sync::docs::DocId::citizen(&nid).to_string();
    let midan = centers[0].node.docs()?.heads()?;
    let qanawat = centers[1].node.docs()?.heads()?;
    ensure!(
        midan.contains_key(&citizen) && midan.get(&citizen) == qanawat.get(&citizen),
        "the shared citizen differs between midan and qanawat"
    );

    // Either hub's operator API shows the same sessions and centers.
    // A session's log row is written after its answer went out: wait for it a little.
    for center in ["midan", "qanawat", "mazzeh"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let (a, b) = loop {
            let a = hub_a.sync_log(center).await?;
            let b = hub_b.sync_log(center).await?;
            if (!a.is_empty() && a.len() == b.len()) || std::time::Instant::now() > deadline {
                break (a, b);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        ensure!(!a.is_empty(), "{center} has sessions");
        ensure!(
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x["id"] == y["id"]),
            "{center}: hub A lists {a:?}, hub B {b:?}"
        );
    }
    let (_, centers_a) = hub_a.api("GET", "/centers", None).await?;
    let (_, centers_b) = hub_b.api("GET", "/centers", None).await?;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|r| r["center"].to_string()).collect())
            .unwrap_or_default()
    };
    ensure!(names(&centers_a) == names(&centers_b) && names(&centers_a).len() == 3);

    // Hub A dies (SIGKILL) in the middle of midan's and mazzeh's pushes.
    for (i, c) in centers.iter().enumerate() {
        let n = if i == 1 { 5 } else { 25 };
        c.open_cases(i + 3, opened[i] + 1, n).await?;
        opened[i] += n;
    }
    let before = pushes(cluster, &db, "'midan', 'mazzeh'")?;
    let pressed = jiff::Timestamp::now();
    for c in &centers {
        c.press_sync().await?;
    }
    wait_for_push(cluster, &db, "'midan', 'mazzeh'", before).await?;
    hub_a.kill9().await?;
    for c in &centers {
        c.settled(pressed, Duration::from_secs(120)).await?;
    }
    for c in [&centers[0], &centers[2]] {
        let sessions = c.sessions()?;
        let last = sessions.last().context("sessions")?;
        ensure!(
            *last == (format!("127.0.0.1:{}", hub_b.sync_port), "ok".to_string()),
            "{} finished through hub B: {sessions:?}",
            c.node.center
        );
        ensure!(
            sessions
                .iter()
                .any(|(hub, r)| *hub == format!("127.0.0.1:{}", hub_a.sync_port) && r != "ok"),
            "{}: a session was cut on hub A: {sessions:?}",
            c.node.center
        );
    }

    // Hub A comes back; then PostgreSQL itself restarts in the middle of pushes.
    hub_a.spawn().await?;
    for (i, c) in centers.iter().enumerate() {
        c.open_cases(i + 3, opened[i] + 1, 10).await?;
        opened[i] += 10;
    }
    let before = pushes(cluster, &db, "'midan', 'qanawat', 'mazzeh'")?;
    let pressed = jiff::Timestamp::now();
    for c in &centers {
        c.press_sync().await?;
    }
    wait_for_push(cluster, &db, "'midan', 'qanawat', 'mazzeh'", before).await?;
    cluster.restart()?;
    for c in &centers {
        c.settled(pressed, Duration::from_secs(120)).await?;
    }
    // Both hub processes serve from the restarted database (their connections are new).
    for hub in [&hub_a, &hub_b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while hub.api("GET", "/sync-log?center=midan", None).await?.0 != 200 {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "a hub did not reconnect to PostgreSQL; log:\n{}",
                hub.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Two more rounds: everyone pulls what the others pushed.
    for _ in 0..2 {
        for c in &centers {
            c.sync().await?;
        }
    }
    let at_hub = hub_heads(cluster, &db)?;
    for c in &centers {
        let held = c.node.docs()?.heads()?;
        for (id, heads) in &held {
            ensure!(
                at_hub.get(id) == Some(&hex(heads)),
                "{id} at {} differs from the hub's after the faults",
                c.node.center
            );
        }
    }
    // Every case opened is at the hub once, and at its center once.
    let per_owner = cluster.psql(
        &db,
        "SELECT owner || ' ' || count(*) FROM doc_meta WHERE kind = 'case' GROUP BY owner ORDER BY owner",
    )?;
    let per_owner: BTreeMap<String, usize> = per_owner
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(o, n)| (o.to_string(), n.parse().unwrap_or(0)))
        .collect();
    for (i, c) in centers.iter().enumerate() {
        // The shared citizen's cases: one at midan, one at qanawat.
        let expected = opened[i] + usize::from(i < 2);
        let own = c
            .node
            .docs()?
            .docs_of_kind("case")?
            .into_iter()
            .filter(|(_, owner)| *owner == c.node.center)
            .count();
        ensure!(
            own == expected && per_owner.get(&c.node.center) == Some(&expected),
            "{}: {own} cases at the center, {:?} at the hub, {expected} opened",
            c.node.center,
            per_owner.get(&c.node.center)
        );
    }
    let dup = cluster.psql(
        &db,
        "SELECT (SELECT count(*) FROM changes) - (SELECT count(DISTINCT hash) FROM changes)",
    )?;
    ensure!(dup.trim() == "0", "duplicated changes: {dup}");

    hub_a.stop().await?;
    hub_b.stop().await?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
