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
    async fn start(name: &str, hub: &HubProcess) -> Result<Self> {
        let node = NodeProcess::start_synced(name, hub).await?;
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

    let centers = [
        Center::start("midan", &hub_a).await?,
        Center::start("qanawat", &hub_b).await?,
        Center::start("mazzeh", &hub_a).await?,
    ];
    for (i, c) in centers.iter().enumerate() {
        for j in 0..3 {
            let nid = format!("0{}{:09}", i + 3, j + 1);
            register(&c.desk, &nid, "0944000000").await?;
            open_case(&c.desk, &nid, &["pay"]).await?;
        }
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
    hub_a.stop().await?;
    hub_b.stop().await?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
