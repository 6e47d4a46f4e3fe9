//! Writes the upgrade test's fixture (`tests/upgrade.rs`): a center's database as a
//! previous release leaves it — staff, tickets called and finished, citizens, cases in
//! every state (created, paid, in progress, ready, delivered, cancelled) with their
//! receipts, a ticket still waiting — written through that release's own API by its own
//! binary, then checkpointed into one self-contained file.
//!
//! ```text
//! MARKAZ_E2E_BIN=/tmp/old/target/debug/markaz \
//!   cargo run -p markaz-e2e --example write_upgrade_fixture -- tests/fixtures/node-05e8209.db
//! ```

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, NodeProcess, citizen_json};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .context("usage: write_upgrade_fixture OUT.db (with MARKAZ_E2E_BIN set)")?;
    ensure!(
        std::env::var_os("MARKAZ_E2E_BIN").is_some(),
        "set MARKAZ_E2E_BIN to the previous release's markaz binary"
    );
    // An empty `[server]` body: only keys every release since schema v4 accepts.
    let mut node = NodeProcess::start_configured("midan", &std::env::temp_dir(), "", "").await?;
    let admin = node.login_admin().await?;
    admin
        .create_staff(
            "clerk1",
            "clerk1-password",
            &["clerk", "reception"],
            &[("justice", "2099-12-31"), ("civil_affairs", "2099-12-31")],
        )
        .await?;
    let api = Api::login(&node.base_url, "clerk1", "clerk1-password").await?;
    let mut cases = Vec::new();
    for i in 0..8u32 {
        let (s, t) = api.post("/tickets", json!({"group": "civil"})).await?;
        ensure!(s == 201, "ticket: {s} {t}");
        let (s, b) = api.post("/counters/1/call-next", json!({})).await?;
        ensure!(s == 200, "call-next: {s} {b}");
        let nid = format!("01{:09}", 100 + i);
        let (s, b) = api
            .post("/citizens", citizen_json(&nid, &format!("09441234{i:02}")))
            .await?;
        ensure!(s == 201 || s == 200, "citizen: {s} {b}");
        let service = if i % 2 == 0 {
            "criminal_record"
        } else {
            "individual_statement"
        };
        let (s, c) = api
            .post("/cases", json!({"national_id": nid, "service": service}))
            .await?;
        if s != 201 {
            // A catalog without this service: the judicial record is always there.
            let (s2, c2) = api
                .post(
                    "/cases",
                    json!({"national_id": nid, "service": "criminal_record"}),
                )
                .await?;
            ensure!(s2 == 201, "case: {s} {c}; {s2} {c2}");
            cases.push((c2["case_no"].as_str().context("case_no")?.to_string(), nid));
        } else {
            cases.push((c["case_no"].as_str().context("case_no")?.to_string(), nid));
        }
        let (s, b) = api.post("/counters/1/finish", json!({})).await?;
        ensure!(s == 200, "finish: {s} {b}");
    }
    // Case i goes through the first i steps of its life.
    let steps: [serde_json::Value; 5] = [
        json!({"method": "cash"}),
        json!({"action": "start"}),
        json!({"action": "ready"}),
        json!({"action": "deliver", "receiver_national_id": ""}),
        json!({}),
    ];
    for (i, (case_no, nid)) in cases.iter().enumerate() {
        if i == 7 {
            let (s, b) = api
                .post(
                    &format!("/cases/{case_no}/transitions"),
                    json!({"action": "cancel", "reason": "المواطن عدل عن الطلب"}),
                )
                .await?;
            ensure!(s == 200, "cancel: {s} {b}");
            continue;
        }
        for step in steps.iter().take(i.min(4)) {
            let (path, body) = if step.get("method").is_some() {
                (format!("/cases/{case_no}/payment"), step.clone())
            } else if step["action"] == "deliver" {
                (
                    format!("/cases/{case_no}/transitions"),
                    json!({"action": "deliver", "receiver_national_id": nid}),
                )
            } else {
                (format!("/cases/{case_no}/transitions"), step.clone())
            };
            let (s, b) = api.post(&path, body).await?;
            ensure!(s == 200, "{path}: {s} {b}");
        }
    }
    let (s, b) = api.post("/tickets", json!({"group": "pickup"})).await?;
    ensure!(s == 201, "a ticket still waiting: {s} {b}");
    node.stop().await?;

    // One self-contained file: the WAL folded in.
    let db = node.db_path();
    let conn = rusqlite::Connection::open(&db)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    drop(conn);
    std::fs::copy(&db, &out)?;
    println!("wrote {out} (schema version {version})");
    Ok(())
}
