//! Durability under SIGKILL: a real `markaz node` process serves many terminals at once
//! (tickets, citizens, cases paid in cash and advanced to ready, which queues an SMS),
//! and is killed with SIGKILL at random moments, 50 times by default
//! (`MARKAZ_CRASH_ROUNDS=500` for a long run; `MARKAZ_CRASH_SEED` replays a run).
//!
//! After every restart, reading the database file directly (read-only):
//! - `PRAGMA integrity_check` is `ok`;
//! - every write the node acknowledged (2xx) is there: tickets, citizens, cases at least
//!   at the status acknowledged, cash receipts on their case;
//! - the outbox holds exactly one `case_ready` SMS per case that reached ready, and none
//!   for the others;
//! - no case number, receipt number or ticket number was handed out twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use markaz_e2e::{Api, NodeProcess, Rng, citizen_json};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};

const TERMINALS: usize = 12;
const CLERK_PASSWORD: &str = "clerk-crash-password";

/// What the node acknowledged, across all rounds.
#[derive(Default)]
struct Ledger {
    /// ticket id → (day, number)
    tickets: HashMap<i64, (String, String)>,
    ticket_numbers: HashSet<(String, String)>,
    citizens: HashSet<String>,
    /// case number → highest acknowledged status rank
    cases: HashMap<String, u8>,
    /// receipt number → case number
    receipts: HashMap<String, String>,
    duplicates: Vec<String>,
}

fn rank(status: &str) -> u8 {
    match status {
        "created" => 0,
        "paid" => 1,
        "in_progress" => 2,
        "ready" => 3,
        _ => 4,
    }
}

/// A receipt number anywhere in a payment JSON (`<PREFIX>-R-…`).
fn find_receipt(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains("-R-") => Some(s.clone()),
        Value::Object(m) => m.values().find_map(find_receipt),
        Value::Array(a) => a.iter().find_map(find_receipt),
        _ => None,
    }
}

/// One terminal's desk work until the node stops answering.
async fn terminal(api: Api, ledger: Arc<Mutex<Ledger>>, first_nid: u64) -> Result<()> {
    let mut nid_seq = first_nid;
    loop {
        let (s, t) = api.post("/tickets", json!({"group": "civil"})).await?;
        ensure!(s == 201, "ticket: {s} {t}");
        {
            let mut l = ledger.lock().unwrap();
            let id = t["id"].as_i64().context("ticket id")?;
            let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            let entry = (text("day"), text("number"));
            if !l.ticket_numbers.insert(entry.clone()) {
                l.duplicates.push(format!("ticket {entry:?} issued twice"));
            }
            l.tickets.insert(id, entry);
        }
        nid_seq += 1;
        let nid = format!("01{nid_seq:09}");
        let (s, b) = api
            .post("/citizens", citizen_json(&nid, "0944123456"))
            .await?;
        ensure!(s == 201 || s == 200, "citizen: {s} {b}");
        ledger.lock().unwrap().citizens.insert(nid.clone());
        let (s, c) = api
            .post(
                "/cases",
                json!({"national_id": nid, "service": "criminal_record"}),
            )
            .await?;
        ensure!(s == 201, "case: {s} {c}");
        let case_no = c["case_no"].as_str().context("case_no")?.to_string();
        {
            let mut l = ledger.lock().unwrap();
            if l.cases.insert(case_no.clone(), 0).is_some() {
                l.duplicates
                    .push(format!("case number {case_no} issued twice"));
            }
        }
        let (s, p) = api
            .post(
                &format!("/cases/{case_no}/payment"),
                json!({"method": "cash"}),
            )
            .await?;
        ensure!(s == 200, "payment: {s} {p}");
        {
            let receipt = find_receipt(&p["payment"]).context("receipt in payment")?;
            let mut l = ledger.lock().unwrap();
            if let Some(other) = l.receipts.insert(receipt.clone(), case_no.clone()) {
                l.duplicates
                    .push(format!("receipt {receipt} issued to {other} and {case_no}"));
            }
            l.cases.insert(case_no.clone(), rank("paid"));
        }
        for action in ["start", "ready"] {
            let (s, b) = api
                .post(
                    &format!("/cases/{case_no}/transitions"),
                    json!({"action": action}),
                )
                .await?;
            ensure!(s == 200, "{action}: {s} {b}");
            let status = b["status"].as_str().context("status")?;
            ledger
                .lock()
                .unwrap()
                .cases
                .insert(case_no.clone(), rank(status));
        }
    }
}

/// Checks the database file against the ledger.
fn verify(db: &std::path::Path, ledger: &Ledger, round: usize) -> Result<()> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(ok == "ok", "round {round}: integrity_check: {ok}");
    ensure!(
        ledger.duplicates.is_empty(),
        "round {round}: {:?}",
        ledger.duplicates
    );
    for (id, (day, number)) in &ledger.tickets {
        let row: Option<(String, String)> = conn
            .query_row("SELECT day, number FROM tickets WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let want = (day.clone(), number.clone());
        ensure!(
            row.as_ref() == Some(&want),
            "round {round}: acknowledged ticket {id} {want:?} is {row:?}"
        );
    }
    for nid in &ledger.citizens {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM citizens WHERE national_id = ?1",
            [nid],
            |r| r.get(0),
        )?;
        ensure!(n == 1, "round {round}: acknowledged citizen {nid} lost");
    }
    for (case_no, acked) in &ledger.cases {
        let status: Option<String> = conn
            .query_row(
                "SELECT status FROM cases WHERE case_no = ?1",
                [case_no],
                |r| r.get(0),
            )
            .optional()?;
        let Some(status) = status else {
            bail!("round {round}: acknowledged case {case_no} lost");
        };
        ensure!(
            rank(&status) >= *acked,
            "round {round}: case {case_no} is {status}, below the acknowledged rank {acked}"
        );
    }
    for (receipt, case_no) in &ledger.receipts {
        let on: Vec<String> = conn
            .prepare("SELECT case_no FROM cases WHERE payment LIKE '%\"' || ?1 || '\"%'")?
            .query_map([receipt], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ensure!(
            on == [case_no.clone()],
            "round {round}: receipt {receipt} is on {on:?}, acknowledged for {case_no}"
        );
    }
    // Exactly one SMS per case that reached ready; none for the others.
    let rows: Vec<(String, i64, i64)> = conn
        .prepare(
            "SELECT c.case_no,
                (SELECT count(*) FROM case_events e WHERE e.case_no = c.case_no
                   AND e.json LIKE '%\"kind\":\"ready\"%'),
                (SELECT count(*) FROM outbox o WHERE o.subject = c.case_no
                   AND o.kind = 'case_ready')
             FROM cases c",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (case_no, ready_events, sms) in &rows {
        ensure!(
            *ready_events <= 1 && sms == ready_events,
            "round {round}: case {case_no} has {ready_events} ready events and {sms} SMS"
        );
    }
    let acked_ready = ledger.cases.values().filter(|r| **r >= 3).count();
    let db_ready = rows.iter().filter(|r| r.1 == 1).count();
    ensure!(
        db_ready >= acked_ready,
        "round {round}: {db_ready} cases reached ready on disk, {acked_ready} acknowledged"
    );
    // Numbers handed out are unique on disk as well.
    let dup_receipts: i64 = conn.query_row(
        "SELECT count(*) FROM (SELECT payment FROM cases WHERE payment IS NOT NULL
           GROUP BY payment HAVING count(*) > 1)",
        [],
        |r| r.get(0),
    )?;
    ensure!(
        dup_receipts == 0,
        "round {round}: duplicate payments on disk"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_repeated_sigkill_under_load() {
    let rounds: usize = std::env::var("MARKAZ_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng::from_env("MARKAZ_CRASH_SEED");
    let mut node = NodeProcess::start("midan").await.unwrap();
    let admin = node.login_admin().await.unwrap();
    admin
        .create_staff(
            "desk",
            CLERK_PASSWORD,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await
        .unwrap();
    let mut terms = Vec::new();
    for _ in 0..TERMINALS {
        terms.push(
            Api::login(&node.base_url, "desk", CLERK_PASSWORD)
                .await
                .unwrap(),
        );
    }
    let db = node.dir.path().join("data").join("markaz-node.db");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let mut nid_block = 0u64;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for term in &terms {
            nid_block += 1_000;
            let api = term.rebased(&node.base_url);
            tasks.push(tokio::spawn(terminal(api, ledger.clone(), nid_block)));
        }
        tokio::time::sleep(Duration::from_millis(rng.range(80, 400))).await;
        node.kill9().await.unwrap();
        for t in tasks {
            // Every terminal ends with a connection error once the node is gone; an HTTP
            // error answer while it was alive is a failure.
            match t.await.unwrap() {
                Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => {}
                Err(e) => panic!("round {round}: a terminal got an error answer: {e:#}"),
                Ok(()) => unreachable!("terminals loop until the node is gone"),
            }
        }
        // Verify the file as the power cut left it, then again after the node reopened it.
        verify(&db, &ledger.lock().unwrap(), round).unwrap();
        node.spawn().await.unwrap();
        verify(&db, &ledger.lock().unwrap(), round).unwrap();
    }
    {
        let l = ledger.lock().unwrap();
        eprintln!(
            "{rounds} kills in {:.1} s: {} tickets, {} citizens, {} cases ({} ready) acknowledged",
            started.elapsed().as_secs_f64(),
            l.tickets.len(),
            l.citizens.len(),
            l.cases.len(),
            l.cases.values().filter(|r| **r >= 3).count()
        );
        assert!(
            l.cases.values().filter(|r| **r >= 3).count() >= rounds / 2,
            "the load reached the ready step often enough to test the outbox"
        );
    }
    let status = node.stop().await.unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}
