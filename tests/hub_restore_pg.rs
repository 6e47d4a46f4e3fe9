//! A hub on PostgreSQL restored from a backup, as real processes: a hub process on a
//! throwaway cluster and two centers.
//!
//! The database is backed up with `pg_dump` while the hub runs. After the backup, the
//! centers push new cases. Then the database is lost and put back with PostgreSQL's tools
//! (`dropdb`, `createdb`, `pg_restore`), and `markaz hub restore` (no `--from`) runs the
//! after-restore step: a new epoch, feeds moved on. It refuses while a hub process is
//! still connected to the database. In the end every center holds every document the hub
//! routes to it, identical to the hub's (same automerge heads), and what the hub lost
//! came back from the centers.
//!
//! Skipped (printed) without PostgreSQL unless CI is set.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::pg::PgCluster;
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json, open_case};

const CENTERS: [&str; 2] = ["midan", "qanawat"];
const DESK_PASSWORD: &str = "desk-restore-password";

struct Center {
    node: NodeProcess,
    admin: Api,
    desk: Api,
    next_nid: u32,
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
        Ok(Self {
            node,
            admin,
            desk,
            next_nid: 1,
        })
    }

    fn name(&self) -> &str {
        &self.node.center
    }

    /// A citizen registered and a case opened and paid at the counter.
    async fn work(&mut self) -> Result<()> {
        let prefix = if self.name() == "midan" { 3 } else { 4 };
        let nid = format!("0{prefix}{:09}", self.next_nid);
        self.next_nid += 1;
        let (s, b) = self
            .desk
            .post("/citizens", citizen_json(&nid, "0944000000"))
            .await?;
        ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
        open_case(&self.desk, &nid, &["pay"]).await?;
        Ok(())
    }

    async fn sync(&self) -> Result<serde_json::Value> {
        self.node
            .sync_now(&self.admin)
            .await
            .with_context(|| format!("node log:\n{}", self.node.log()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The documents routed to `c` that it lacks or holds differently from the hub's
/// database.
fn differences(cluster: &PgCluster, db: &str, c: &Center) -> Result<Vec<String>> {
    let hub: BTreeMap<String, String> = cluster
        .psql(
            db,
            "SELECT doc_id || ' ' || encode(heads, 'hex') FROM doc_meta",
        )?
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let routed = cluster.psql(
        db,
        &format!("SELECT doc_id FROM routes WHERE center = '{}'", c.name()),
    )?;
    let held = c.node.docs()?.heads()?;
    Ok(routed
        .lines()
        .filter(|d| held.get(*d).map(|h| hex(h)) != hub.get(*d).cloned())
        .map(str::to_string)
        .collect())
}

/// Sync every center until each holds every document routed to it as the hub has it.
async fn converge(cluster: &PgCluster, db: &str, centers: &[Center]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        for c in centers {
            c.sync().await?;
        }
        let mut left = Vec::new();
        for c in centers {
            let d = differences(cluster, db, c)?;
            if !d.is_empty() {
                left.push(format!("{}: {d:?}", c.name()));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not converged: {left:?}"
        );
    }
}

fn cases_at_hub(cluster: &PgCluster, db: &str) -> Result<usize> {
    Ok(cluster
        .psql(db, "SELECT count(*) FROM doc_meta WHERE kind = 'case'")?
        .trim()
        .parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_hub_restored_with_pg_tools_and_the_command_delivers_everything() -> Result<()> {
    let Some(cluster) = markaz_e2e::pg::cluster_or_skip(
        "a_postgres_hub_restored_with_pg_tools_and_the_command_delivers_everything",
    ) else {
        return Ok(());
    };
    let url = cluster.fresh_db()?;
    let db = url.rsplit('/').next().context("db name")?.to_string();
    let storage = format!("[storage]\nengine = \"postgres\"\nurl = \"{url}\"\npool_size = 2\n");
    let mut hub = HubProcess::prepare_with(&CENTERS, &storage)?;
    hub.spawn().await?;
    let mut centers = Vec::new();
    for name in CENTERS {
        centers.push(Center::start(name, &hub).await?);
    }
    for c in centers.iter_mut() {
        c.work().await?;
    }
    converge(cluster, &db, &centers).await?;
    let epoch = cluster.psql(&db, "SELECT value FROM hub_meta WHERE key = 'epoch'")?;

    let dump = hub.dir.path().join("hub.dump");
    cluster.dump(&db, &dump)?;
    // After the backup: cases only the lost database had.
    for c in centers.iter_mut() {
        c.work().await?;
    }
    converge(cluster, &db, &centers).await?;
    ensure!(cases_at_hub(cluster, &db)? == 4);

    // The database is lost; the operator puts it back with PostgreSQL's tools.
    hub.stop().await?;
    cluster.restore_db(&db, &dump)?;
    ensure!(
        cases_at_hub(cluster, &db)? == 2,
        "the dump holds the first cases"
    );

    // Refused while another process of the hub is connected to the database.
    let mut other = hub.sibling()?;
    other.spawn().await?;
    let refused = hub.restore_in_place();
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("stop every hub process first")),
        "{refused:?}"
    );
    other.stop().await?;
    // Its server processes end a moment after the hub process.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = hub.restore_in_place()?;
    ensure!(out.contains("new epoch"), "{out}");
    let new_epoch = cluster.psql(&db, "SELECT value FROM hub_meta WHERE key = 'epoch'")?;
    ensure!(new_epoch != epoch, "a new epoch: {new_epoch}");

    hub.spawn().await?;
    // Each center notices the new epoch, repairs, and gives back what the hub lost.
    for c in centers.iter_mut() {
        c.work().await?;
    }
    converge(cluster, &db, &centers).await?;
    ensure!(
        cases_at_hub(cluster, &db)? == 6,
        "every case is back at the hub"
    );
    for c in &centers {
        let row = hub.center_row(c.name()).await?.context("center row")?;
        ensure!(row["alarm"].is_null(), "{}: {row}", c.name());
        ensure!(row["backlog"] == 0, "{}: {row}", c.name());
    }
    hub.stop().await?;
    Ok(())
}
