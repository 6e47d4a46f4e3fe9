//! A hub and three centers as real `markaz` processes, talking mutual TLS on loopback
//! with certificates made by `markaz pki`.
//!
//! The three centers work while the hub is down — cases created and moved through
//! states, and the same citizen registered at two of them with different details. Then
//! the hub starts and every center syncs, and:
//! - every document a center holds is, at the hub, the same document (same automerge
//!   heads), and each case reads the same at the hub and at its center (status, events,
//!   fee);
//! - the shared citizen is one profile, the same at the hub and at both centers;
//! - a center holds and lists only its own cases and the cases routed to it;
//! - a portal case created at the hub for pickup at qanawat reaches qanawat only;
//! - a permission revoked at the hub stops qanawat's clerk after qanawat's next sync;
//! - a center whose certificate is revoked (`markaz pki revoke`; the running hub sees
//!   the new CRL within 2 s, without a restart) is refused, its sync panel and
//!   `sync_sessions` show the error, and its new work stays in its backlog.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::{
    Api, CaseSummary, HubProcess, NodeProcess, backlog_essential, backlog_total, citizen_json,
    listed_cases, open_case,
};
use serde_json::json;

const CENTERS: [&str; 3] = ["midan", "qanawat", "mazzeh"];
const DESK_PASSWORD: &str = "desk-sync-password";
/// Registered at midan and at qanawat while the hub is down.
const SHARED_NID: &str = "02000000001";

struct Center {
    node: NodeProcess,
    admin: Api,
    desk: Api,
    /// Case numbers this center opened.
    cases: Vec<String>,
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
            cases: Vec::new(),
        })
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

async fn register(api: &Api, nid: &str, phone: &str, address: &str) -> Result<()> {
    let mut c = citizen_json(nid, phone);
    c["address"] = json!(address);
    let (s, b) = api.post("/citizens", c).await?;
    ensure!(s == 201 || s == 200, "registering {nid}: {s} {b}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_centers_work_offline_then_converge_through_the_hub() -> Result<()> {
    let started = std::time::Instant::now();
    let mut hub = HubProcess::prepare(&CENTERS)?;
    let mut centers = Vec::new();
    for name in CENTERS {
        centers.push(Center::start(name, &hub).await?);
    }

    // ---- Offline: the hub is down. ----
    for (i, c) in centers.iter_mut().enumerate() {
        for (j, steps) in [
            &[][..],
            &["pay"][..],
            &["pay", "start"][..],
            &["pay", "start", "ready"][..],
        ]
        .into_iter()
        .enumerate()
        {
            let nid = format!("0{}{:09}", i + 3, j + 1);
            register(&c.desk, &nid, "0944000000", "دمشق").await?;
            c.cases.push(open_case(&c.desk, &nid, steps).await?);
        }
    }
    // The same citizen at two centers, with different phone and address.
    register(&centers[0].desk, SHARED_NID, "0933111111", "دمشق - الميدان").await?;
    register(&centers[1].desk, SHARED_NID, "0944222222", "دمشق - القنوات").await?;
    for c in &mut centers[..2] {
        let no = open_case(&c.desk, SHARED_NID, &["pay"]).await?;
        c.cases.push(no);
    }
    // A sync attempt while the hub is down fails, is recorded, and keeps the backlog.
    for c in &centers {
        let r = c
            .node
            .sync_now_within(&c.admin, Duration::from_secs(30))
            .await?;
        ensure!(r["result"] != "ok", "a session with no hub: {r}");
        let panel = c.node.sync_panel(&c.admin).await?;
        ensure!(backlog_essential(&panel)? > 0, "{panel}");
        ensure!(panel["last_error"].is_string(), "{panel}");
    }

    // ---- The hub comes up; every center syncs, twice round (pull what others pushed). ----
    hub.spawn().await?;
    for _ in 0..2 {
        for c in &centers {
            c.sync().await?;
        }
    }
    for c in &centers {
        let panel = c.node.sync_panel(&c.admin).await?;
        ensure!(backlog_total(&panel)? == 0, "{}: {panel}", c.node.center);
        ensure!(panel["uplink"] == "primary", "{panel}");
    }

    // The operator's overview: every center synced, nothing waiting in its feed.
    for c in &centers {
        let row = hub
            .center_row(&c.node.center)
            .await?
            .with_context(|| format!("{} in the hub's overview", c.node.center))?;
        ensure!(row["last_ok_ms"].is_i64(), "{row}");
        ensure!(backlog_total(&row)? == 0, "{row}");
    }

    let mut hub_db = hub.db()?;
    let hub_cases = hub_db.cases()?;
    let all_opened: usize = centers.iter().map(|c| c.cases.len()).sum();
    ensure!(
        hub_cases.len() == all_opened,
        "the hub holds {} cases, the centers opened {all_opened}",
        hub_cases.len()
    );
    let hub_heads = hub_db.heads()?;
    for c in &centers {
        let name = c.node.center.as_str();
        // Each case reads the same at the hub and at its center.
        for no in &c.cases {
            let at_hub = hub_cases
                .iter()
                .find(|v| v.case_no.as_str() == no)
                .with_context(|| format!("{no} of {name} is not at the hub"))?;
            ensure!(
                at_hub.center.as_ref().map(|c| c.as_str()) == Some(name),
                "{no} is owned by {name}"
            );
            let (s, local) = c.desk.get(&format!("/cases/{no}")).await?;
            ensure!(s == 200, "{no} at {name}: {s} {local}");
            ensure!(
                CaseSummary::of_doc(at_hub) == CaseSummary::of_api(&local),
                "{no}: hub {:?} vs {name} {:?}",
                CaseSummary::of_doc(at_hub),
                CaseSummary::of_api(&local)
            );
        }
        // Every case, citizen and staff document the center holds is the same document
        // at the hub.
        let docs = c.node.docs()?;
        for kind in ["case", "citizen", "staff"] {
            for (id, _) in docs.docs_of_kind(kind)? {
                let here = docs.heads()?.remove(&id);
                ensure!(
                    hub_heads.get(&id) == here.as_ref(),
                    "{id} at {name} differs from the hub's copy"
                );
            }
        }
        // Only its own cases: listed, and held.
        let listed: BTreeSet<String> = listed_cases(&c.desk).await?.into_iter().collect();
        let own: BTreeSet<String> = c.cases.iter().cloned().collect();
        ensure!(listed == own, "{name} lists {listed:?}, opened {own:?}");
        for (id, owner) in docs.docs_of_kind("case")? {
            ensure!(owner == name, "{name} holds {id} of {owner}");
        }
    }

    // One citizen, merged, the same everywhere it belongs; not at the third center.
    let at_hub = hub_db
        .citizen(SHARED_NID)?
        .context("the shared citizen is at the hub")?;
    for c in &centers[..2] {
        let (s, local) = c.desk.get(&format!("/citizens/{SHARED_NID}")).await?;
        ensure!(s == 200, "{s} {local}");
        for (field, hub_value) in [
            ("full_name", &at_hub.input.full_name),
            ("address", &at_hub.input.address),
        ] {
            ensure!(
                local[field].as_str() == Some(hub_value.as_str()),
                "{field} at {}: {} vs hub {hub_value}",
                c.node.center,
                local[field]
            );
        }
        let n: i64 = c.node.docs()?.conn.query_row(
            "SELECT count(*) FROM citizens WHERE national_id = ?1",
            [SHARED_NID],
            |r| r.get(0),
        )?;
        ensure!(
            n == 1,
            "{n} rows for the shared citizen at {}",
            c.node.center
        );
    }
    let phones: Vec<String> = {
        let mut v = Vec::new();
        for c in &centers[..2] {
            let (_, local) = c.desk.get(&format!("/citizens/{SHARED_NID}")).await?;
            v.push(local["phone"].to_string());
        }
        v
    };
    ensure!(
        phones[0] == phones[1],
        "one phone after the merge: {phones:?}"
    );
    ensure!(
        centers[2].node.docs()?.citizen(SHARED_NID)?.is_none(),
        "mazzeh has no case of the shared citizen and does not receive the profile"
    );

    // ---- A portal case at the hub for pickup at qanawat reaches qanawat only. ----
    let intake = json!({
        "citizen": citizen_json("09000000001", "0955123456"),
        "service": "criminal_record",
        "payment": {"reference": "EP-E2E-1", "bank": "commercial_bank"},
        "delivery": {"mode": "pickup", "center": "qanawat"}
    });
    let (s, created) = hub.api("POST", "/portal/cases", Some(intake)).await?;
    ensure!(s == 201, "portal intake: {s} {created}");
    let portal_no = created["case_no"].as_str().context("case_no")?.to_string();
    for c in &centers {
        c.sync().await?;
    }
    for c in &centers {
        let (s, b) = c.desk.get(&format!("/cases/{portal_no}")).await?;
        let want = if c.node.center == "qanawat" { 200 } else { 404 };
        ensure!(s == want, "{portal_no} at {}: {s} {b}", c.node.center);
        if s == 200 {
            // Paid by e-payment at the portal, as the hub has it.
            let at_hub = hub
                .db()?
                .cases()?
                .into_iter()
                .find(|v| v.case_no.as_str() == portal_no)
                .context("the portal case at the hub")?;
            ensure!(
                CaseSummary::of_doc(&at_hub) == CaseSummary::of_api(&b),
                "{portal_no}: hub {:?} vs qanawat {:?}",
                CaseSummary::of_doc(&at_hub),
                CaseSummary::of_api(&b)
            );
            ensure!(b["status"] == "paid", "{b}");
        }
    }

    // ---- A permission revoked at the hub stops qanawat's clerk after its next sync. ----
    // Staff and permissions are written at the hub: the hub's administration takes over
    // qanawat's clerk, then withdraws the justice permission.
    let staff = json!({"username": "desk", "full_name": "Staff desk", "roles": ["clerk", "reception"],
        "permissions": [{"authority": "justice", "expires_on": "2099-12-31"}], "active": true});
    let (s, b) = hub.api("PUT", "/staff/qanawat/desk", Some(staff)).await?;
    ensure!((200..300).contains(&s), "staff at the hub: {s} {b}");
    centers[1].sync().await?;
    let no = open_case(&centers[1].desk, SHARED_NID, &[]).await?;
    centers[1].cases.push(no);
    let (s, b) = hub
        .api("DELETE", "/staff/qanawat/desk/permissions/justice", None)
        .await?;
    ensure!(s == 200, "revoke at the hub: {s} {b}");
    centers[1].sync().await?;
    let (s, b) = centers[1]
        .desk
        .post(
            "/cases",
            json!({"national_id": SHARED_NID, "service": "criminal_record"}),
        )
        .await?;
    ensure!(s == 403, "qanawat's clerk after the revocation: {s} {b}");
    ensure!(b["error"]["code"] == "permission_missing", "{b}");
    // midan's clerk of the same name is another person: untouched.
    centers[0].sync().await?;
    let no = open_case(&centers[0].desk, SHARED_NID, &[]).await?;
    centers[0].cases.push(no);

    // ---- mazzeh's certificate is revoked: refused, and it shows. ----
    let out = hub.revoke("mazzeh")?;
    ensure!(out.contains("1 certificate"), "{out}");
    // The hub notices the rewritten CRL by itself (no restart) and closes open
    // connections, so even mazzeh's kept-alive connection is verified again.
    // (markaz_hub::TLS_POLL_EVERY is 2 s.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mazzeh = &mut centers[2];
    let late = open_case(&mazzeh.desk, "05000000001", &["pay"]).await?;
    let r = mazzeh
        .node
        .sync_now_within(&mazzeh.admin, Duration::from_secs(30))
        .await?;
    ensure!(r["result"] != "ok", "a revoked center was served: {r}");
    let panel = mazzeh.node.sync_panel(&mazzeh.admin).await?;
    ensure!(panel["last_error"].is_string(), "{panel}");
    ensure!(backlog_essential(&panel)? > 0, "{panel}");
    let last: String = mazzeh.node.docs()?.conn.query_row(
        "SELECT result FROM sync_sessions ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    ensure!(last != "ok", "sync_sessions records the refusal: {last}");
    ensure!(
        !hub.db()?
            .cases()?
            .iter()
            .any(|v| v.case_no.as_str() == late),
        "the revoked center's new case did not reach the hub"
    );
    // The others still sync.
    centers[0].sync().await?;
    let hub_cases = hub.db()?.cases()?;
    ensure!(
        hub_cases
            .iter()
            .any(|v| Some(v.case_no.as_str()) == centers[0].cases.last().map(String::as_str)),
        "midan's newest case reached the hub"
    );
    eprintln!(
        "three centers: {} cases at the hub, {:.1} s",
        hub_cases.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
