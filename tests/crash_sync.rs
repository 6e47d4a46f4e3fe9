//! Sync state after crashes: a node with sync enabled serves desk terminals while a
//! technician presses "sync now" every 100 ms against a running hub, and the node is
//! SIGKILLed at random moments — so most kills land in or around a sync session (a
//! request being built, a reply being merged, cursors moving). 12 rounds by default,
//! `MARKAZ_CRASH_ROUNDS` for more, `MARKAZ_CRASH_SEED` to replay the kill times.
//!
//! After every kill (the file as the power cut left it) and every restart:
//! - `PRAGMA integrity_check` is `ok`;
//! - `peer_cursors.push_acked` for the hub is at most the largest local change sequence
//!   (the node never believes the hub acknowledged a change it does not have);
//! - every stored change belongs to a document with `doc_meta` (no orphaned change);
//! - every case the node acknowledged is in its database.
//!
//! At the end, on a clean sync, the hub holds every acknowledged case exactly once, and
//! reads it as the center does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_e2e::{
    Api, CaseSummary, HubProcess, NodeProcess, Rng, backlog_total, citizen_json, open_case,
};
use rusqlite::{Connection, OpenFlags};

const TERMINALS: usize = 4;
const DESK_PASSWORD: &str = "desk-crash-sync-password";

/// Desk work until the node stops answering; acknowledged case numbers go in `acked`.
async fn terminal(desk: Api, first_nid: u64, acked: Arc<Mutex<Vec<String>>>) -> Result<()> {
    let mut nid = first_nid;
    loop {
        nid += 1;
        let id = format!("{nid:011}");
        let (s, b) = desk
            .post("/citizens", citizen_json(&id, "0944123456"))
            .await?;
        ensure!(s == 201 || s == 200, "citizen: {s} {b}");
        let no = open_case(&desk, &id, &[]).await?;
        acked.lock().unwrap().push(no.clone());
        for step in ["pay", "start"] {
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
    }
}

/// The sync state on disk is consistent and holds every acknowledged case.
fn verify(db: &std::path::Path, acked: &[String], round: usize, when: &str) -> Result<()> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(ok == "ok", "round {round} {when}: integrity_check: {ok}");
    let max_local: i64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM changes WHERE local = 1",
        [],
        |r| r.get(0),
    )?;
    // Every lane's acknowledgement (`push_acked`, and `bulk_acked` where the lanes have
    // their own) is a local change sequence: none may run ahead of the local changes.
    let ack_columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('peer_cursors') WHERE name LIKE '%acked'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ensure!(
        ack_columns.iter().any(|c| c == "push_acked"),
        "peer_cursors has no push_acked: {ack_columns:?}"
    );
    for col in &ack_columns {
        let ahead: Vec<(String, i64)> = conn
            .prepare(&format!(
                "SELECT peer, {col} FROM peer_cursors WHERE {col} > ?1"
            ))?
            .query_map([max_local], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        ensure!(
            ahead.is_empty(),
            "round {round} {when}: {col} {ahead:?} is past the last local change {max_local}"
        );
    }
    let orphans: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT doc_id FROM changes c
             WHERE NOT EXISTS (SELECT 1 FROM doc_meta m WHERE m.doc_id = c.doc_id) LIMIT 5",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ensure!(
        orphans.is_empty(),
        "round {round} {when}: changes of documents without doc_meta: {orphans:?}"
    );
    let mut st = conn.prepare("SELECT count(*) FROM cases WHERE case_no = ?1")?;
    for no in acked {
        let n: i64 = st.query_row([no], |r| r.get(0))?;
        ensure!(n == 1, "round {round} {when}: acknowledged case {no} lost");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_state_is_consistent_after_sigkill_during_syncs() -> Result<()> {
    let rounds: usize = std::env::var("MARKAZ_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut rng = Rng::from_env("MARKAZ_CRASH_SEED");
    let hub = HubProcess::start(&["midan"]).await?;
    let mut node = NodeProcess::start_synced("midan", &hub).await?;
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
    let db = node.db_path();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut nid_block = 0u64;
    let (mut hub_newest, mut rounds_with_sync) = (None, 0usize);
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for _ in 0..TERMINALS {
            nid_block += 1_000;
            tasks.push(tokio::spawn(terminal(
                desk.rebased(&node.base_url),
                10_000_000_000 + nid_block,
                acked.clone(),
            )));
        }
        let tech = admin.rebased(&node.base_url);
        let presser = tokio::spawn(async move {
            loop {
                let _ = tech
                    .post("/technician/sync-now", serde_json::json!({}))
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
        node.kill9().await?;
        presser.abort();
        for t in tasks {
            match t.await? {
                Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => {}
                Err(e) => panic!("round {round}: a terminal got an error answer: {e:#}"),
                Ok(()) => unreachable!("terminals loop until the node is gone"),
            }
        }
        let snapshot = acked.lock().unwrap().clone();
        verify(&db, &snapshot, round, "after the kill")?;
        node.spawn().await?;
        verify(&db, &snapshot, round, "after the restart")?;
        // Sessions reached the hub during this round (the kill cut one or came after):
        // the newest row of the hub's sync log changed.
        let newest = hub.sync_log("midan").await?.into_iter().next();
        if newest.is_some() && newest != hub_newest {
            rounds_with_sync += 1;
        }
        hub_newest = newest;
    }
    eprintln!("{rounds_with_sync} of {rounds} rounds had sync traffic at the hub");
    ensure!(
        rounds_with_sync * 2 >= rounds,
        "kills did not land among syncs: only {rounds_with_sync} of {rounds} rounds synced"
    );

    // A clean sync: everything acknowledged reaches the hub, once.
    let admin = admin.rebased(&node.base_url);
    let desk = desk.rebased(&node.base_url);
    let local_cases = || -> Result<BTreeSet<String>> {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut st = conn.prepare("SELECT case_no FROM cases")?;
        let v = st
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()
            .context("cases")?;
        Ok(v)
    };
    let local = local_cases()?;
    let mut caught_up = false;
    for _ in 0..5 {
        let r = node
            .sync_now_within(&admin, Duration::from_secs(60))
            .await?;
        let at_hub: BTreeSet<String> = hub
            .db()?
            .cases()?
            .iter()
            .map(|v| v.case_no.to_string())
            .collect();
        if r["result"] == "ok" && at_hub == local {
            caught_up = true;
            break;
        }
    }
    let panel = node.sync_panel(&admin).await?;
    if backlog_total(&panel)? != 0 {
        // Which local changes the node still counts as unacknowledged, and whether the
        // hub holds their documents as the node does.
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let pending: Vec<String> = conn
            .prepare(
                "SELECT DISTINCT doc_id FROM changes WHERE local = 1
                 AND seq > (SELECT push_acked FROM peer_cursors WHERE peer = 'hub')",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let hub_heads = hub.db()?.heads()?;
        let local_heads = node.docs()?.heads()?;
        for d in pending {
            eprintln!(
                "unacknowledged at the center: {d}; the hub's copy is the same: {}",
                hub_heads.get(&d) == local_heads.get(&d)
            );
        }
    }
    if !caught_up {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let cursor: String = conn.query_row(
            "SELECT json_object('push_acked', push_acked, 'pull', pull_cursor, 'epoch', epoch) FROM peer_cursors WHERE peer = 'hub'",
            [],
            |r| r.get(0),
        )?;
        anyhow::bail!(
            "no clean catch-up: panel {panel}\ncursor {cursor}\nlog:\n{}",
            node.log()
        );
    }
    let acked = acked.lock().unwrap().clone();
    let unique: BTreeSet<&String> = acked.iter().collect();
    ensure!(
        unique.len() == acked.len(),
        "a case number was handed out twice"
    );
    let hub_cases = hub.db()?.cases()?;
    for no in &acked {
        let at_hub: Vec<_> = hub_cases
            .iter()
            .filter(|v| v.case_no.as_str() == no)
            .collect();
        ensure!(
            at_hub.len() == 1,
            "{no} is {} times at the hub",
            at_hub.len()
        );
        let (s, local) = desk.get(&format!("/cases/{no}")).await?;
        ensure!(s == 200, "{no}: {s} {local}");
        ensure!(
            CaseSummary::of_doc(at_hub[0]) == CaseSummary::of_api(&local),
            "{no}: hub {:?} vs center {:?}",
            CaseSummary::of_doc(at_hub[0]),
            CaseSummary::of_api(&local)
        );
    }
    // Cases whose creation committed but whose answer the kill swallowed are at the center
    // too: the hub holds exactly the center's cases.
    for v in &hub_cases {
        ensure!(
            local.contains(v.case_no.as_str()),
            "{} at the hub is unknown to the center",
            v.case_no
        );
    }
    ensure!(
        hub_cases.len() == local.len(),
        "the hub holds {} cases, the center {}",
        hub_cases.len(),
        local.len()
    );
    eprintln!(
        "{rounds} kills during syncs: {} cases acknowledged, {} at the hub; sync panel backlog {}",
        acked.len(),
        hub_cases.len(),
        backlog_total(&panel)?
    );
    let status = node.stop().await?;
    ensure!(status.success(), "clean exit on SIGTERM: {status}");
    Ok(())
}
