//! Sync through the modem (issue 5): a center whose primary link is down syncs with the
//! hub entirely through the 3G modem's TCP path — the node process drives the modem
//! emulator (run by this test on a real pty, paced at 115200 baud) with Quectel AT
//! socket commands, and the emulator passes the bytes through to the hub's sync port —
//! with mutual TLS end to end. Then the primary link comes back, and after the failback
//! hold the node syncs over it again.
//!
//! What is checked is what the technician and the hub operator see: the link panel's
//! uplink, the sync panel and `sync_sessions` (uplink `modem`, result ok), the cases at
//! the hub, and the uplink the hub's sync log records for those sessions.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use markaz_e2e::hub::free_port;
use markaz_e2e::{
    AlwaysUp, Api, CaseSummary, HubProcess, NodeProcess, backlog_essential, citizen_json, open_case,
};
use markaz_hardware::modem::emulator::{self, UART_115200};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DESK_PASSWORD: &str = "desk-modem-password";
const HOLD_SECS: u64 = 6;

/// Polls the node's status until `ok` accepts it (or fails after `secs`).
async fn wait_status(
    api: &Api,
    what: &str,
    secs: u64,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, b) = api.get("/status").await?;
        ensure!(s == 200, "GET /status: {s} {b}");
        if ok(&b["panels"]) {
            return Ok(b["panels"].clone());
        }
        ensure!(
            Instant::now() < deadline,
            "{what} not seen within {secs} s; panels: {}",
            b["panels"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn uplink(p: &Value) -> &str {
    p["link"]["data"]["uplink"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_center_syncs_through_the_modem_then_fails_back_to_the_primary_link() -> Result<()> {
    // The hub starts once the node is on the modem, so every byte of the modem phase goes
    // through the modem's socket (nothing reached the hub over the primary before).
    let mut hub = HubProcess::prepare(&["midan"])?;
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (modem, _task) = emulator::start(cancel.clone())?;
    modem.set_pace(Some(UART_115200));
    // The primary link's probe target: nothing listens there until the link "comes back".
    let primary_port = free_port()?;
    let toml = format!(
        r#"
[modem]
enabled = true
port = "{port}"
poll_interval_secs = 1
command_timeout_ms = 5000

[link]
probe_targets = ["127.0.0.1:{primary_port}"]
probe_interval_secs = 1
probe_timeout_secs = 1
down_after = 2
up_after = 2
failback_hold_secs = {HOLD_SECS}
"#,
        port = modem.path().display()
    );
    // A long interval: every session below is started by "sync now" or by a change of
    // uplink, never by the clock.
    let toml = format!(
        "{}\n{toml}",
        markaz_e2e::sync_toml(&hub, "midan", &hub.sync_url(), 3600)
    );
    let mut node = NodeProcess::start_with("midan", &toml).await?;
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

    // Work at the desk while the hub is out of reach.
    let mut cases = Vec::new();
    for (i, steps) in [&["pay"][..], &["pay", "start", "ready"][..]]
        .into_iter()
        .enumerate()
    {
        let nid = format!("0600000000{i}");
        let (s, b) = desk
            .post("/citizens", citizen_json(&nid, "0944123456"))
            .await?;
        ensure!(s == 201 || s == 200, "{s} {b}");
        cases.push(open_case(&desk, &nid, steps).await?);
    }
    // A restart writes today's statistics document (a bulk document) from that work.
    node.stop().await?;
    node.spawn().await?;
    let (admin, desk) = (admin.rebased(&node.base_url), desk.rebased(&node.base_url));

    // The primary is down and the modem registered: the uplink is the modem.
    wait_status(&admin, "uplink = modem", 60, |p| {
        uplink(p) == "modem" && p["link"]["data"]["primary"]["state"] == "down"
    })
    .await?;
    hub.spawn().await?;
    let t0 = Instant::now();
    let mut session = Value::Null;
    for _ in 0..3 {
        session = node
            .sync_now_within(&admin, Duration::from_secs(180))
            .await?;
        if session["result"] == "ok" && session["uplink"] == "modem" {
            break;
        }
    }
    ensure!(
        session["result"] == "ok" && session["uplink"] == "modem",
        "no good session over the modem: {session}\nlog:\n{}",
        node.log()
    );
    let secs = t0.elapsed().as_secs_f64();
    let took = |k: &str| {
        session[k]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    if let (Some(a), Some(b)) = (took("started_at"), took("ended_at")) {
        eprintln!("the session itself: {:?}", b.duration_since(a));
    }
    let bytes =
        session["bytes_up"].as_u64().unwrap_or(0) + session["bytes_down"].as_u64().unwrap_or(0);
    eprintln!("a sync session through the modem at 115200 baud: {bytes} bytes in {secs:.1} s");
    ensure!(bytes > 0, "{session}");
    // The bytes went through the modem's AT socket, not around it.
    let commands = modem.commands();
    let sends = commands
        .iter()
        .filter(|c| c.starts_with("AT+QISEND"))
        .count();
    eprintln!(
        "modem: {} AT+QIOPEN, {sends} AT+QISEND",
        commands
            .iter()
            .filter(|c| c.starts_with("AT+QIOPEN"))
            .count()
    );
    ensure!(
        sends > 0,
        "a session labelled modem sent nothing through the modem's socket: {session}"
    );
    ensure!(
        session["metered"] == true,
        "a session over the modem is metered: {session}"
    );
    let panel = node.sync_panel(&admin).await?;
    ensure!(panel["uplink"] == "modem", "{panel}");
    // Bulk documents (statistics, energy) may wait for the primary link; the rest may not.
    ensure!(backlog_essential(&panel)? == 0, "{panel}");
    let stored: String = node.docs()?.conn.query_row(
        "SELECT uplink FROM sync_sessions WHERE result = 'ok' ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    ensure!(stored == "modem", "sync_sessions says {stored}");

    // The hub has the cases, as the center reads them.
    let hub_cases = hub.db()?.cases()?;
    for no in &cases {
        let at_hub = hub_cases
            .iter()
            .find(|v| v.case_no.as_str() == no)
            .with_context(|| format!("{no} did not reach the hub through the modem"))?;
        let (_, local) = desk.get(&format!("/cases/{no}")).await?;
        ensure!(
            CaseSummary::of_doc(at_hub) == CaseSummary::of_api(&local),
            "{no}"
        );
    }
    // The hub's sync log records the uplink the center names in its `x-markaz-uplink`
    // header: every session so far ran over the modem.
    let log = hub.sync_log("midan").await?;
    ensure!(!log.is_empty(), "the hub logged the modem sessions");
    let uplinks: Vec<&str> = log.iter().filter_map(|r| r["uplink"].as_str()).collect();
    eprintln!("hub sync log uplinks while on the modem: {uplinks:?}");
    ensure!(
        uplinks.iter().all(|u| *u == "modem"),
        "sessions through the modem logged as another uplink at the hub: {uplinks:?}"
    );
    let modem_rows = log.len();
    // Metered: the center's bulk documents (statistics, energy) wait for the primary link.
    let bulk_docs = |db: &markaz_e2e::DocsDb| -> Result<Vec<String>> {
        let mut v = Vec::new();
        for kind in ["stats", "energy"] {
            v.extend(db.docs_of_kind(kind)?.into_iter().map(|(id, _)| id));
        }
        Ok(v)
    };
    let local_bulk = bulk_docs(&node.docs()?)?;
    let hub_bulk = bulk_docs(&hub.db()?)?;
    eprintln!("bulk documents at the center: {local_bulk:?}; at the hub: {hub_bulk:?}");
    ensure!(
        !local_bulk.is_empty(),
        "the center wrote no statistics document for its work"
    );
    ensure!(
        hub_bulk.is_empty(),
        "bulk documents crossed the metered modem uplink: {hub_bulk:?}"
    );

    // The primary link comes back: it is declared up after two good rounds, but the
    // node stays on the modem for the hold, then fails back.
    let _primary = AlwaysUp::start_on(primary_port).await?;
    let back = Instant::now();
    wait_status(&admin, "primary up while still on the modem", 20, |p| {
        p["link"]["data"]["primary"]["state"] == "up" && uplink(p) == "modem"
    })
    .await?;
    wait_status(&admin, "failback to the primary", 30, |p| {
        uplink(p) == "primary"
    })
    .await?;
    let waited = back.elapsed();
    ensure!(
        waited >= Duration::from_secs(HOLD_SECS),
        "failed back after {waited:?}, before the {HOLD_SECS} s hold"
    );
    // The failback itself starts a session over the primary — no "sync now", and the
    // interval is an hour away.
    let auto = wait_status(
        &admin,
        "a session over the primary after failback",
        20,
        |p| {
            let last = &p["sync"]["data"]["last_session"];
            last["uplink"] == "primary" && last["result"] == "ok"
        },
    )
    .await;
    ensure!(auto.is_ok(), "no session started by the failback: {auto:?}");
    let sends_before = modem
        .commands()
        .iter()
        .filter(|c| c.starts_with("AT+QISEND"))
        .count();
    let session = node.sync_now(&admin).await?;
    ensure!(session["uplink"] == "primary", "{session}");
    let sends_after = modem
        .commands()
        .iter()
        .filter(|c| c.starts_with("AT+QISEND"))
        .count();
    ensure!(session["metered"] == false, "{session}");
    // Unmetered again: the bulk documents that waited are at the hub, as the center has them.
    let (hub_heads, local_heads) = (hub.db()?.heads()?, node.docs()?.heads()?);
    for id in &local_bulk {
        ensure!(
            hub_heads.contains_key(id) && hub_heads.get(id) == local_heads.get(id),
            "{id} did not follow over the primary link"
        );
    }
    let log = hub.sync_log("midan").await?;
    ensure!(
        log.len() > modem_rows,
        "the hub logged the session over the primary"
    );
    // The session the node records as `primary` runs over the primary: nothing through the
    // modem's socket, and the hub (told by the connection's own `x-markaz-uplink`) logs it
    // as `primary` — a connection kept alive over the modem is not reused after failback.
    let through_modem = sends_after - sends_before;
    ensure!(
        through_modem == 0,
        "the session recorded as primary sent {through_modem} AT+QISEND through the modem"
    );
    ensure!(
        log[0]["uplink"] == "primary",
        "the hub logged the session after failback as {}",
        log[0]["uplink"]
    );
    Ok(())
}
