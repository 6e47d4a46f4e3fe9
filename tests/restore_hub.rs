//! A replaced center box restored from the hub, as real `markaz` processes (issue 18.6).
//!
//! midan works at the counter (cases created, paid, finished with the "ready" SMS queued)
//! and syncs. Its disk dies: the node is stopped and its data directory moved away. The
//! technician runs `markaz restore --from-hub --config …` on the replacement (it refused
//! to run over the old, non-empty database), then starts the node. The restored node has
//! every case as it was, sends no SMS again, and its first new case continues the main
//! series above the lost box's numbers; that case reaches the hub.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json, markaz_bin, open_case};
use markaz_sync::model::ids::CaseNo;

const CENTER: &str = "midan";
const DESK_PASSWORD: &str = "desk-restore-password";

/// Runs `markaz restore --from-hub` for `node`'s config with `extra` arguments; returns
/// (success, stdout + stderr).
async fn restore(node: &NodeProcess, extra: &[&str]) -> Result<(bool, String)> {
    let out = tokio::process::Command::new(markaz_bin()?)
        .args(["restore", "--from-hub", "--config"])
        .arg(node.dir.path().join("node.toml"))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running markaz restore")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The clerk's account (made again when the restored database does not have it).
async fn desk(admin: &Api, node: &NodeProcess) -> Result<Api> {
    let (s, staff) = admin.get("/staff").await?;
    ensure!(s == 200, "GET /staff: {s} {staff}");
    if staff
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["username"] == "desk"))
    {
        return Api::login(&node.base_url, "desk", DESK_PASSWORD).await;
    }
    admin
        .create_staff(
            "desk",
            DESK_PASSWORD,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await?;
    Api::login(&node.base_url, "desk", DESK_PASSWORD).await
}

async fn synced(node: &NodeProcess, admin: &Api) -> Result<()> {
    let mut last = serde_json::Value::Null;
    for _ in 0..6 {
        last = node.sync_now_within(admin, Duration::from_secs(60)).await?;
        if last["result"] == "ok" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("no sync session ended well: {last}")
}

fn count(db: &rusqlite::Connection, sql: &str) -> Result<i64> {
    Ok(db.query_row(sql, [], |r| r.get(0))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_box_restored_from_the_hub_has_every_case_and_numbers_on() -> Result<()> {
    let hub = HubProcess::start(&[CENTER]).await?;
    let mut node = NodeProcess::start_synced(CENTER, &hub).await?;
    let admin = node.login_admin().await?;
    let clerk = desk(&admin, &node).await?;
    let nids = ["01000000021", "01000000022", "01000000023", "01000000024"];
    for nid in nids {
        let (s, b) = clerk
            .post("/citizens", citizen_json(nid, "0944000222"))
            .await?;
        ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
    }
    let steps: [&[&str]; 5] = [
        &["pay", "start", "ready"],
        &["pay", "start", "ready"],
        &["pay"],
        &[],
        &["pay", "start"],
    ];
    let mut before = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        let no = open_case(&clerk, nids[i % nids.len()], st).await?;
        let (s, b) = clerk.get(&format!("/cases/{no}")).await?;
        ensure!(s == 200, "{no}: {s} {b}");
        before.push(b);
    }
    synced(&node, &admin).await?;
    let outbox_before = {
        let db = rusqlite::Connection::open(node.db_path())?;
        count(&db, "SELECT count(*) FROM outbox")?
    };
    ensure!(outbox_before == 2, "two ready SMS queued: {outbox_before}");

    // The restore refuses to run over a database that holds the center's work.
    node.stop().await?;
    let (ok, out) = restore(&node, &[]).await?;
    ensure!(
        !ok,
        "a restore over a non-empty database must be refused: {out}"
    );
    ensure!(
        out.contains("not empty") && out.contains("--force"),
        "{out}"
    );

    // The disk dies; the replacement box is restored from the hub.
    let data = node.dir.path().join("data");
    std::fs::rename(&data, node.dir.path().join("data.lost"))?;
    let t0 = Instant::now();
    let (ok, out) = restore(&node, &[]).await?;
    let took = t0.elapsed();
    ensure!(ok, "markaz restore --from-hub failed:\n{out}");
    println!("restore of {} cases took {took:?}:\n{out}", before.len());
    ensure!(out.contains("5 cases"), "{out}");
    {
        let db = rusqlite::Connection::open(node.db_path())?;
        ensure!(count(&db, "SELECT count(*) FROM cases")? == 5);
        ensure!(
            count(&db, "SELECT count(*) FROM citizens")? == 4,
            "every citizen is back"
        );
        ensure!(
            count(&db, "SELECT count(*) FROM outbox")? == 0,
            "the restored history queues no SMS again"
        );
    }

    node.spawn().await?;
    let admin = node.login_admin().await?;
    // The center's staff came back from the hub (issue 21.3): the clerk made at the
    // center before the loss, with their roles and permission, logs in with their old
    // password (the argon2 hash travels in the staff document; nothing is made again).
    let (s, staff) = admin.get("/staff").await?;
    ensure!(s == 200, "GET /staff: {s} {staff}");
    let member = staff
        .as_array()
        .and_then(|a| a.iter().find(|m| m["username"] == "desk"))
        .with_context(|| format!("the clerk is not back after the restore: {staff}"))?;
    let roles = member["roles"].to_string();
    ensure!(
        roles.contains("clerk") && roles.contains("reception"),
        "the clerk's roles after the restore: {member}"
    );
    let permissions = member["permissions"]
        .as_array()
        .with_context(|| format!("permissions: {member}"))?;
    ensure!(
        permissions.len() == 1
            && permissions[0]["authority"] == "justice"
            && permissions[0]["expires_on"] == "2099-12-31",
        "the clerk's permissions after the restore: {member}"
    );
    ensure!(member["active"] == true, "{member}");
    let clerk = Api::login(&node.base_url, "desk", DESK_PASSWORD)
        .await
        .context("the clerk logs in with the password set before the loss")?;
    for b in &before {
        let no = b["case_no"].as_str().context("case_no")?;
        let (s, now) = clerk.get(&format!("/cases/{no}")).await?;
        ensure!(s == 200, "{no} after the restore: {s} {now}");
        for field in [
            "national_id",
            "status",
            "payment",
            "fee_total",
            "service_code",
        ] {
            ensure!(
                now[field] == b[field],
                "{no}: {field} was {} and is {} after the restore",
                b[field],
                now[field]
            );
        }
    }
    // The first new case continues the main series.
    let highest = before
        .iter()
        .filter_map(|b| b["case_no"].as_str()?.parse::<CaseNo>().ok())
        .map(|n| n.seq())
        .max()
        .context("no case before")?;
    let fresh = open_case(&clerk, nids[0], &["pay"]).await?;
    let fresh_no: CaseNo = fresh.parse()?;
    ensure!(
        fresh_no.series().is_none() && fresh_no.seq() == highest + 1,
        "the first case after the restore is {fresh}, expected the main series after {highest}"
    );
    let (s, b) = clerk.get(&format!("/cases/{fresh}")).await?;
    ensure!(s == 200, "{b}");
    let receipt = b["payment"]["receipt"].as_str().context("a receipt")?;
    let old_receipts: Vec<&str> = before
        .iter()
        .filter_map(|b| b["payment"]["receipt"].as_str())
        .collect();
    ensure!(
        !old_receipts.contains(&receipt),
        "receipt {receipt} was handed out before: {old_receipts:?}"
    );
    synced(&node, &admin).await?;
    let at_hub = hub.db()?.cases()?;
    ensure!(
        at_hub.iter().any(|v| v.case_no.to_string() == fresh),
        "the new case reached the hub"
    );
    ensure!(
        at_hub.len() == before.len() + 1,
        "{} at the hub",
        at_hub.len()
    );
    Ok(())
}
