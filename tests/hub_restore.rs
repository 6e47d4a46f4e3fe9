//! A hub restored from a backup, as real `markaz` processes: a hub and two centers.
//!
//! The hub is backed up while it runs (`VACUUM INTO`). After the backup, the hub makes
//! changes of its own (staff members added for each center through its API) and the
//! centers push new cases, and both centers read all of it. Then the hub's database is
//! lost and put back from the backup, and the hub makes more changes. In the end every
//! center holds every document the hub routes to it, identical to the hub's (same
//! automerge heads): the hub-made changes after the restore arrive, what the hub lost
//! comes back from the centers, and no center's backlog is left in alarm.
//!
//! Two ways back: `markaz hub restore` (the documented one), and the file copied back by
//! hand, which the hub must notice by itself from the centers' cursors.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json, open_case};
use serde_json::json;

const CENTERS: [&str; 2] = ["midan", "qanawat"];
const DESK_PASSWORD: &str = "desk-restore-password";

struct Center {
    node: NodeProcess,
    admin: Api,
    desk: Api,
    /// National ids registered here, one per case.
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
    async fn work(&mut self) -> Result<String> {
        let prefix = if self.name() == "midan" { 3 } else { 4 };
        let nid = format!("0{prefix}{:09}", self.next_nid);
        self.next_nid += 1;
        let (s, b) = self
            .desk
            .post("/citizens", citizen_json(&nid, "0944000000"))
            .await?;
        ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
        open_case(&self.desk, &nid, &["pay"]).await
    }

    async fn sync(&self) -> Result<serde_json::Value> {
        self.node
            .sync_now(&self.admin)
            .await
            .with_context(|| format!("node log:\n{}", tail(&self.node.log())))
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A staff member added for `center` through the hub's API (a hub-made change).
async fn hub_staff(hub: &HubProcess, center: &str, username: &str) -> Result<()> {
    let staff = json!({"username": username, "full_name": format!("Staff {username}"),
        "roles": ["clerk"], "permissions": [{"authority": "justice", "expires_on": "2099-12-31"}],
        "active": true});
    let (s, b) = hub
        .api("PUT", &format!("/staff/{center}/{username}"), Some(staff))
        .await?;
    ensure!(
        (200..300).contains(&s),
        "staff {username} at the hub: {s} {b}"
    );
    Ok(())
}

/// The documents routed to a center that it lacks or holds differently from the hub.
fn differences(hub: &HubProcess, c: &Center) -> Result<Vec<String>> {
    let hub_heads = hub.db()?.heads()?;
    let node_heads = c.node.docs()?.heads()?;
    Ok(hub
        .routed_to(c.name())?
        .into_iter()
        .filter(|d| node_heads.get(d) != hub_heads.get(d))
        .collect())
}

/// Sync every center until each holds every document routed to it as the hub has it
/// (a center may need a second session: one to notice the restore, one to repair).
async fn converge(hub: &HubProcess, centers: &[Center]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        for c in centers {
            c.sync().await?;
        }
        let mut left = Vec::new();
        for c in centers {
            let d = differences(hub, c)?;
            if !d.is_empty() {
                left.push(format!("{}: {d:?}", c.name()));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not converged: {left:?}\nhub log:\n{}",
            tail(&hub.log())
        );
    }
}

/// The hub's staff documents for a center, by user name.
fn staff_at(docs: &markaz_e2e::DocsDb, center: &str) -> Result<Vec<String>> {
    Ok(docs
        .docs_of_kind("staff")?
        .into_iter()
        .filter(|(_, owner)| owner == center)
        .map(|(id, _)| id.rsplit(':').next().unwrap_or_default().to_string())
        .collect())
}

/// Everything up to the loss of the hub: two centers working and syncing, a backup,
/// then hub-made changes and center pushes that only the lost hub had.
async fn before_the_loss(hub: &HubProcess, centers: &mut [Center]) -> Result<std::path::PathBuf> {
    for c in centers.iter_mut() {
        c.work().await?;
        c.sync().await?;
    }
    hub_staff(hub, "midan", "early").await?;
    converge(hub, centers).await?;
    let backup = hub.dir.path().join("backup.db");
    hub.backup_to(&backup)?;
    // After the backup.
    for c in CENTERS {
        hub_staff(hub, c, "lost").await?;
    }
    for c in centers.iter_mut() {
        c.work().await?;
    }
    converge(hub, centers).await?;
    for c in centers.iter() {
        ensure!(
            staff_at(&c.node.docs()?, c.name())?.contains(&"lost".to_string()),
            "{} read the hub's change before the loss",
            c.name()
        );
    }
    Ok(backup)
}

/// After the restore: more hub-made changes and counter work; everything converges, the
/// hub has back what it lost, and no center is in alarm.
async fn after_the_restore(hub: &HubProcess, centers: &mut [Center]) -> Result<()> {
    for c in CENTERS {
        hub_staff(hub, c, "after").await?;
    }
    for c in centers.iter_mut() {
        c.work().await?;
    }
    converge(hub, centers).await?;
    // A second round, by log shipping this time.
    for c in CENTERS {
        hub_staff(hub, c, "later").await?;
    }
    converge(hub, centers).await?;
    let hub_docs = hub.db()?;
    for c in centers.iter() {
        let at_center = staff_at(&c.node.docs()?, c.name())?;
        let at_hub = staff_at(&hub_docs, c.name())?;
        for user in ["lost", "after", "later"] {
            ensure!(
                at_center.contains(&user.to_string()),
                "{} lacks {user}: {at_center:?}",
                c.name()
            );
        }
        ensure!(
            at_center == at_hub,
            "{}: {at_center:?} vs {at_hub:?}",
            c.name()
        );
        let cases_at_center = c
            .node
            .docs()?
            .docs_of_kind("case")?
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>();
        ensure!(
            cases_at_center.len() == 3,
            "{}: {cases_at_center:?}",
            c.name()
        );
        let row = hub.center_row(c.name()).await?.context("center row")?;
        ensure!(row["alarm"].is_null(), "{}: {row}", c.name());
        ensure!(row["backlog"] == 0, "{}: {row}", c.name());
    }
    ensure!(
        hub_docs.docs_of_kind("case")?.len() == 6,
        "every case is back at the hub"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restored_with_the_command_the_hub_delivers_everything() -> Result<()> {
    let mut hub = HubProcess::start(&CENTERS).await?;
    let mut centers = Vec::new();
    for name in CENTERS {
        centers.push(Center::start(name, &hub).await?);
    }
    let backup = before_the_loss(&hub, &mut centers).await?;

    hub.stop().await?;
    let out = hub.restore_from(&backup)?;
    ensure!(out.contains("new epoch"), "{out}");
    // Refused while a hub runs.
    hub.spawn().await?;
    let refused = hub.restore_from(&backup);
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("stop the hub first")),
        "{refused:?}"
    );

    after_the_restore(&hub, &mut centers).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_back_by_hand_the_hub_notices_and_delivers_everything() -> Result<()> {
    let mut hub = HubProcess::start(&CENTERS).await?;
    let mut centers = Vec::new();
    for name in CENTERS {
        centers.push(Center::start(name, &hub).await?);
    }
    let backup = before_the_loss(&hub, &mut centers).await?;

    hub.stop().await?;
    hub.put_back(&backup)?;
    hub.spawn().await?;

    after_the_restore(&hub, &mut centers).await?;
    ensure!(
        hub.log().contains("older than what a center has seen"),
        "the hub logs what it noticed:\n{}",
        tail(&hub.log())
    );
    Ok(())
}
