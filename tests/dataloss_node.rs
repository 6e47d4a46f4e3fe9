//! A center's database lost or restored, as real `markaz` processes (issue 21).
//!
//! midan opens cases and takes cash at the counter, syncs, and then its disk is lost:
//! the node is stopped and its data directory moved away (or replaced by a backup taken
//! before its last cases). The node starts again on the same certificate bundle:
//! - `hub_down_at_replacement`: the hub is unreachable at that first start;
//! - `hub_up_at_replacement`: the hub is reachable;
//! - `restored_backup_older_than_last_sync`: the data directory is a backup taken before
//!   the last cases, the hub reachable.
//!
//! The counter works again (new cases, cash for an old unpaid case), the node syncs, and
//! every test asserts what a supervisor would check: no case or receipt number was handed
//! out twice; every case, old and new, reads as itself (citizen, status, receipt) at the
//! center and at the hub; the hub's oversight counts every case once; nothing is flagged
//! in the hub's conflicts list, and nothing at the center.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json, open_case};
use markaz_sync::docs::CaseView;
use markaz_sync::model::ids::{CaseNo, ReceiptNo};
use serde_json::{Value, json};

const CENTER: &str = "midan";
const DESK_PASSWORD: &str = "desk-dataloss-password";

/// One case as the counter made it: who it is for and what was done.
#[derive(Debug, Clone)]
struct Opened {
    case_no: String,
    nid: String,
    status: &'static str,
    receipt: Option<String>,
}

/// The admin and a clerk at the counter of a (possibly brand-new) node database: the
/// technician makes the clerk's account again on an empty database.
async fn counter(node: &NodeProcess) -> Result<(Api, Api)> {
    let admin = node.login_admin().await?;
    let (s, staff) = admin.get("/staff").await?;
    ensure!(s == 200, "GET /staff: {s} {staff}");
    let known = staff
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["username"] == "desk"));
    if !known {
        admin
            .create_staff(
                "desk",
                DESK_PASSWORD,
                &["clerk", "reception"],
                &[("justice", "2099-12-31")],
            )
            .await?;
    }
    let desk = Api::login(&node.base_url, "desk", DESK_PASSWORD).await?;
    Ok((admin, desk))
}

async fn register(api: &Api, nid: &str) -> Result<()> {
    let (s, b) = api
        .post("/citizens", citizen_json(nid, "0944000111"))
        .await?;
    ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
    Ok(())
}

/// Opens a case for `nid` and takes it through `steps` (see `open_case`).
async fn work(desk: &Api, nid: &str, steps: &[&str]) -> Result<Opened> {
    let case_no = open_case(desk, nid, steps).await?;
    let (s, b) = desk.get(&format!("/cases/{case_no}")).await?;
    ensure!(s == 200, "GET {case_no}: {s} {b}");
    Ok(Opened {
        case_no,
        nid: nid.to_string(),
        status: status_after(steps),
        receipt: b["payment"]["receipt"].as_str().map(str::to_string),
    })
}

/// Pays an existing case in cash at the counter; records its receipt.
async fn pay(desk: &Api, case: &mut Opened) -> Result<()> {
    let (s, b) = desk
        .post(
            &format!("/cases/{}/payment", case.case_no),
            json!({"method": "cash"}),
        )
        .await?;
    ensure!(s == 200, "paying {}: {s} {b}", case.case_no);
    case.status = "paid";
    case.receipt = b["payment"]["receipt"].as_str().map(str::to_string);
    ensure!(case.receipt.is_some(), "no receipt: {b}");
    Ok(())
}

fn status_after(steps: &[&str]) -> &'static str {
    match steps.last() {
        None => "created",
        Some(&"pay") => "paid",
        Some(&"start") => "in_progress",
        Some(&"ready") => "ready",
        Some(other) => panic!("no expected status for step {other}"),
    }
}

/// A sync session that ends well, within a few tries (the first request after the hub
/// came back may meet a dead kept-alive connection).
async fn synced(node: &NodeProcess, admin: &Api) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..6 {
        last = node.sync_now_within(admin, Duration::from_secs(60)).await?;
        if last["result"] == "ok" {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "no sync session ended well: {last}\nnode log:\n{}",
        tail(&node.log())
    )
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The disk is lost: the node's data directory goes away (kept aside for the post-mortem).
fn lose_disk(node: &NodeProcess) -> Result<()> {
    let data = node.dir.path().join("data");
    let aside = node.dir.path().join("data.lost");
    std::fs::rename(&data, &aside).context("moving the data directory away")?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The midan cases at the hub, each creation once (two cases merged under one number
/// count twice here, as they must).
fn hub_cases(hub: &HubProcess) -> Result<Vec<CaseView>> {
    let mut out = Vec::new();
    for mut v in hub.db()?.cases()? {
        let twins = std::mem::take(&mut v.twins);
        out.push(v);
        out.extend(twins);
    }
    Ok(out)
}

/// Four cases at the first box: two finished, one paid, one awaiting payment.
async fn first_day(desk: &Api) -> Result<Vec<Opened>> {
    for nid in ["01000000011", "01000000012", "01000000013", "01000000014"] {
        register(desk, nid).await?;
    }
    Ok(vec![
        work(desk, "01000000011", &["pay", "start", "ready"]).await?,
        work(desk, "01000000012", &["pay", "start", "ready"]).await?,
        work(desk, "01000000013", &["pay"]).await?,
        work(desk, "01000000014", &[]).await?,
    ])
}

/// What a supervisor checks after the loss, the counter's work and a sync.
async fn check(hub: &HubProcess, node: &NodeProcess, desk: &Api, all: &[Opened]) -> Result<()> {
    // No number handed out twice.
    let nos: BTreeSet<&str> = all.iter().map(|o| o.case_no.as_str()).collect();
    ensure!(
        nos.len() == all.len(),
        "a case number was used twice: {all:#?}"
    );
    let receipts: Vec<&str> = all.iter().filter_map(|o| o.receipt.as_deref()).collect();
    let unique: BTreeSet<&str> = receipts.iter().copied().collect();
    ensure!(
        unique.len() == receipts.len(),
        "a receipt number was used twice: {all:#?}"
    );
    for r in &receipts {
        r.parse::<ReceiptNo>()
            .with_context(|| format!("receipt {r}"))?;
    }

    // Every case reads as itself at the center.
    for o in all {
        let (s, b) = desk.get(&format!("/cases/{}", o.case_no)).await?;
        ensure!(s == 200, "{} at the center: {s} {b}", o.case_no);
        ensure!(
            b["national_id"] == o.nid.as_str(),
            "{} at the center is another citizen's: {b}",
            o.case_no
        );
        ensure!(
            b["status"] == o.status,
            "{} at the center: status {} (expected {})",
            o.case_no,
            b["status"],
            o.status
        );
        ensure!(
            b["payment"]["receipt"].as_str() == o.receipt.as_deref(),
            "{} at the center: receipt {} (expected {:?})",
            o.case_no,
            b["payment"]["receipt"],
            o.receipt
        );
        ensure!(
            b["conflict"].is_null(),
            "{} flagged at the center: {b}",
            o.case_no
        );
    }
    let (s, listed) = desk.get("/cases?limit=500").await?;
    ensure!(s == 200, "GET /cases: {s} {listed}");
    let listed: BTreeSet<&str> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["case_no"].as_str())
        .collect();
    ensure!(
        listed == nos,
        "the center lists {listed:?}, the counter made {nos:?}"
    );

    // And at the hub: one case per number, the same one.
    let at_hub = hub_cases(hub)?;
    let mut by_no: BTreeMap<String, Vec<&CaseView>> = BTreeMap::new();
    for v in &at_hub {
        by_no.entry(v.case_no.to_string()).or_default().push(v);
    }
    ensure!(
        by_no.len() == all.len() && at_hub.len() == all.len(),
        "the hub holds {} cases under {} numbers; the counter made {}",
        at_hub.len(),
        by_no.len(),
        all.len()
    );
    for o in all {
        let views = by_no
            .get(&o.case_no)
            .with_context(|| format!("{} at the hub", o.case_no))?;
        ensure!(
            views.len() == 1,
            "{} is {} cases at the hub",
            o.case_no,
            views.len()
        );
        let v = views[0];
        ensure!(
            v.citizen.as_str() == o.nid,
            "{} at the hub is another citizen's",
            o.case_no
        );
        ensure!(
            v.derived.status.as_str() == o.status,
            "{} at the hub: {:?} (expected {})",
            o.case_no,
            v.derived.status,
            o.status
        );
        let receipt = match &v.derived.payment {
            Some(markaz_sync::model::case::Payment::Cash { receipt }) => Some(receipt.to_string()),
            _ => None,
        };
        ensure!(
            receipt == o.receipt,
            "{} at the hub: receipt {receipt:?} (expected {:?})",
            o.case_no,
            o.receipt
        );
        ensure!(
            v.derived.conflict.is_none(),
            "{} flagged at the hub",
            o.case_no
        );
    }

    // The hub's oversight counts every case once.
    let rows = hub.get("/oversight").await?;
    let row = rows
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["center"] == CENTER && r["service"] == "criminal_record")
        })
        .with_context(|| format!("midan's row in the oversight: {rows}"))?;
    let finished = all.iter().filter(|o| o.status == "ready").count();
    ensure!(
        row["received"] == all.len(),
        "oversight received: {row} (expected {})",
        all.len()
    );
    ensure!(
        row["finished"] == finished,
        "oversight finished: {row} (expected {finished})"
    );

    // Nothing was merged into anything: the conflicts list is empty.
    let conflicts = hub.get("/conflicts").await?;
    ensure!(
        conflicts.as_array().is_some_and(Vec::is_empty),
        "conflicts at the hub: {conflicts}"
    );
    let _ = node;
    Ok(())
}

fn case_no(o: &Opened) -> Result<CaseNo> {
    o.case_no
        .parse()
        .with_context(|| format!("case number {}", o.case_no))
}

fn receipt_no(o: &Opened) -> Result<ReceiptNo> {
    o.receipt
        .as_deref()
        .context("no receipt")?
        .parse()
        .context("receipt number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_down_at_replacement() -> Result<()> {
    let mut hub = HubProcess::start(&[CENTER]).await?;
    let mut node = NodeProcess::start_synced(CENTER, &hub).await?;
    let (admin, desk) = counter(&node).await?;
    let mut all = first_day(&desk).await?;
    synced(&node, &admin).await?;

    // The disk dies; the replacement box starts with the link down.
    node.stop().await?;
    lose_disk(&node)?;
    hub.stop().await?;
    node.spawn().await?;
    let (admin, desk) = counter(&node).await?;
    register(&desk, "01000000015").await?;
    register(&desk, "01000000016").await?;
    let offline = vec![
        work(&desk, "01000000015", &["pay"]).await?,
        work(&desk, "01000000016", &["pay", "start", "ready"]).await?,
    ];
    // The center is not stopped, and what it hands out is in a series of its own.
    let series = case_no(&offline[0])?
        .series()
        .context("an offline series letter")?;
    for o in &offline {
        ensure!(case_no(o)?.series() == Some(series), "{o:?}");
        ensure!(receipt_no(o)?.series() == Some(series), "{o:?}");
    }
    all.extend(offline);
    let r = node
        .sync_now_within(&admin, Duration::from_secs(60))
        .await?;
    ensure!(r["result"] != "ok", "a sync with the hub down: {r}");

    // The hub is back: the node learns where the main series stands.
    hub.spawn().await?;
    synced(&node, &admin).await?;
    let mut back = work(&desk, "01000000011", &["pay"]).await?;
    let first = case_no(&all[0])?;
    ensure!(
        case_no(&back)?.series().is_none() && case_no(&back)?.seq() == 5,
        "after the sync the main series goes on after the lost box's 4 cases: {back:?}"
    );
    ensure!(
        receipt_no(&back)?.series().is_none() && receipt_no(&back)?.seq() == 4,
        "the main receipts go on after the lost box's 3: {back:?}"
    );
    ensure!(case_no(&back)?.year() == first.year());
    // An old unpaid case is paid now.
    pay(&desk, &mut all[3]).await?;
    ensure!(receipt_no(&all[3])?.seq() == 5, "{:?}", all[3]);
    back.status = "paid";
    all.push(back);
    synced(&node, &admin).await?;
    check(&hub, &node, &desk, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_up_at_replacement() -> Result<()> {
    let hub = HubProcess::start(&[CENTER]).await?;
    let mut node = NodeProcess::start_synced(CENTER, &hub).await?;
    let (admin, desk) = counter(&node).await?;
    // A clerk the hub's administration manages: it comes back with the documents.
    let staff = json!({"username": "hubclerk", "full_name": "Hub clerk", "roles": ["clerk"],
        "permissions": [{"authority": "justice", "expires_on": "2099-12-31"}], "active": true});
    let (s, b) = hub.api("PUT", "/staff/midan/hubclerk", Some(staff)).await?;
    ensure!((200..300).contains(&s), "staff at the hub: {s} {b}");
    let mut all = first_day(&desk).await?;
    synced(&node, &admin).await?;

    node.stop().await?;
    lose_disk(&node)?;
    node.spawn().await?;
    // At once, without waiting for anything: the counter works and numbers go on.
    let (admin, desk) = counter(&node).await?;
    let fresh = work(&desk, "01000000012", &["pay"]).await?;
    ensure!(
        case_no(&fresh)?.series().is_none() && case_no(&fresh)?.seq() == 5,
        "the first case after the replacement: {fresh:?}"
    );
    ensure!(receipt_no(&fresh)?.seq() == 4, "{fresh:?}");
    all.push(fresh);
    pay(&desk, &mut all[3]).await?;
    ensure!(receipt_no(&all[3])?.seq() == 5, "{:?}", all[3]);
    // No write fails: more cases, each with a fresh number.
    register(&desk, "01000000017").await?;
    for _ in 0..3 {
        all.push(work(&desk, "01000000017", &[]).await?);
    }
    // The hub's clerk and permission are back.
    let (s, staff) = admin.get("/staff").await?;
    ensure!(s == 200, "{staff}");
    let clerk = staff
        .as_array()
        .and_then(|a| a.iter().find(|m| m["username"] == "hubclerk"))
        .with_context(|| format!("the hub's clerk after the replacement: {staff}"))?;
    ensure!(
        clerk["permissions"].to_string().contains("justice"),
        "{clerk}"
    );
    synced(&node, &admin).await?;
    check(&hub, &node, &desk, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_backup_older_than_last_sync() -> Result<()> {
    let hub = HubProcess::start(&[CENTER]).await?;
    let mut node = NodeProcess::start_synced(CENTER, &hub).await?;
    let (admin, desk) = counter(&node).await?;
    let mut all = first_day(&desk).await?;
    synced(&node, &admin).await?;

    // The nightly backup.
    node.stop().await?;
    let data = node.dir.path().join("data");
    let backup = node.dir.path().join("data.backup");
    copy_dir(&data, &backup)?;
    node.spawn().await?;
    let desk = desk.rebased(&node.base_url);
    let admin = admin.rebased(&node.base_url);
    register(&desk, "01000000018").await?;
    all.push(work(&desk, "01000000018", &["pay"]).await?);
    all.push(work(&desk, "01000000018", &["pay", "start", "ready"]).await?);
    synced(&node, &admin).await?;

    // The disk is found corrupt; the technician restores last night's backup.
    node.stop().await?;
    lose_disk(&node)?;
    copy_dir(&backup, &data)?;
    node.spawn().await?;
    let (admin, desk) = counter(&node).await?;
    let fresh = work(&desk, "01000000018", &["pay"]).await?;
    ensure!(
        case_no(&fresh)?.seq() == 7 && case_no(&fresh)?.series().is_none(),
        "the first case after the restore reuses nothing the hub holds: {fresh:?}"
    );
    ensure!(receipt_no(&fresh)?.seq() == 6, "{fresh:?}");
    all.push(fresh);
    pay(&desk, &mut all[3]).await?;
    ensure!(receipt_no(&all[3])?.seq() == 7, "{:?}", all[3]);
    synced(&node, &admin).await?;
    check(&hub, &node, &desk, &all).await
}
