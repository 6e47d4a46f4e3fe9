//! The hub as it runs (`markaz_hub::run`) with real mutual TLS on loopback: a center
//! pushes and pulls through `ClientSession` + the node's `HubClient`, the sync log
//! records it, another center never receives the first one's case, a portal case routed
//! to midan reaches midan, and the pages render Arabic first. Each scenario runs on
//! SQLite and on PostgreSQL (`hub_on_postgres_…`, a fresh database of the throwaway test
//! cluster; skipped with a printed reason without PostgreSQL unless CI is set), and two
//! hubs on one PostgreSQL database serve the same centers.

use crate::support;

use anyhow::Context;
use markaz_hub::storage::Transactional;
use markaz_sync::docs::{self, DocId};
use markaz_sync::protocol::contract::SessionResult;
use support::{Center, Hub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sync_log_partial_replication_portal_and_pages() -> anyhow::Result<()> {
    sync_log_partial_replication_portal_and_pages(Hub::start().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_on_postgres_sync_log_partial_replication_portal_and_pages() -> anyhow::Result<()> {
    let Some(hub) = Hub::start_pg("hub_on_postgres_sync_log_partial_replication").await? else {
        return Ok(());
    };
    sync_log_partial_replication_portal_and_pages(hub).await
}

/// The same scenario on either engine.
async fn sync_log_partial_replication_portal_and_pages(hub: Hub) -> anyhow::Result<()> {
    let mut midan = Center::new(&hub, "midan")?;
    let mut qanawat = Center::new(&hub, "qanawat")?;

    let case = midan.new_case(1)?;
    let r = midan.sync().await?;
    assert_eq!(r.pushed, 1, "{r:?}");
    assert!(midan.has(&DocId::catalog()), "the catalog came down");
    qanawat.sync().await?;
    assert!(
        !qanawat.has(&case),
        "another center never receives midan's case"
    );

    // The sync log has midan's push with bytes and counts.
    let (status, log) = hub
        .http("GET", "/api/v1/sync-log/requests?center=midan", None)
        .await?;
    assert!(status.contains("200"), "{status}");
    let log: Vec<serde_json::Value> = serde_json::from_str(&log)?;
    let push = log
        .iter()
        .find(|r| r["kind"] == "push")
        .context("push row")?;
    assert_eq!(push["changes_up"], 1);
    assert_eq!(push["docs_up"], 1);
    assert!(push["bytes_up"].as_i64().unwrap_or(0) > 0);
    assert!(push["bytes_down"].as_i64().unwrap_or(0) > 0);
    assert_eq!(push["result"], "ok");
    assert!(log.iter().all(|r| r["center"] == "midan"));
    assert!(
        log.iter().any(|r| r["docs_down"].as_i64().unwrap_or(0) > 0),
        "the first session (repair) carried the catalog down: {log:?}"
    );

    // A portal case for pickup at midan reaches midan, not qanawat.
    let service = markaz_sync::model::catalog::default_catalog()
        .into_iter()
        .find(|s| s.fields.iter().all(|f| !f.required))
        .context("a service without required fields")?;
    let intake = serde_json::json!({
        "citizen": {"national_id": "01020304099", "full_name": "ريم الحسن", "father_name": "أحمد",
            "mother_name": "سلمى", "birth_date": "1990-01-01", "birth_place": "دمشق",
            "phone": "0933123456", "address": "دمشق"},
        "service": service.code,
        "payment": {"reference": "EP-123", "bank": "commercial_bank"},
        "delivery": {"mode": "pickup", "center": "midan"}
    });
    let (status, body) = hub
        .http("POST", "/api/v1/portal/cases", Some(&intake.to_string()))
        .await?;
    assert!(status.contains("201"), "{status} {body}");
    let created: serde_json::Value = serde_json::from_str(&body)?;
    let portal: DocId = created["doc_id"].as_str().context("doc_id")?.parse()?;
    let citizen: DocId = created["citizen_doc"]
        .as_str()
        .context("citizen")?
        .parse()?;
    assert!(
        created["case_no"]
            .as_str()
            .unwrap_or("")
            .starts_with("WEB-")
    );
    midan.sync().await?;
    qanawat.sync().await?;
    assert!(midan.has(&portal) && midan.has(&citizen));
    assert!(!qanawat.has(&portal) && !qanawat.has(&citizen));

    // A permission granted then revoked at the hub reaches midan at its next syncs.
    let staff = serde_json::json!({"username": "clerk1", "full_name": "موظف", "roles": ["clerk"],
        "permissions": [], "active": true});
    let (status, body) = hub
        .http(
            "PUT",
            "/api/v1/staff/midan/clerk1",
            Some(&staff.to_string()),
        )
        .await?;
    assert!(status.contains("204"), "{status} {body}");
    let grant = serde_json::json!({"authority": "justice", "expires_on": "2027-01-31"});
    let (status, body) = hub
        .http(
            "POST",
            "/api/v1/staff/midan/clerk1/permissions",
            Some(&grant.to_string()),
        )
        .await?;
    assert!(status.contains("200"), "{status} {body}");
    let staff_doc = DocId::staff(&midan.id, "clerk1")?;
    midan.sync().await?;
    let perms = |c: &mut Center| -> anyhow::Result<usize> {
        Ok(c.docs
            .read(&c.conn, &staff_doc, docs::read_staff)?
            .context("staff doc")??
            .permissions
            .len())
    };
    assert_eq!(perms(&mut midan)?, 1);
    qanawat.sync().await?;
    assert!(!qanawat.has(&staff_doc), "another center's staff stays out");
    let (status, _) = hub
        .http(
            "DELETE",
            "/api/v1/staff/midan/clerk1/permissions/justice",
            None,
        )
        .await?;
    assert!(status.contains("200"), "{status}");
    midan.sync().await?;
    assert_eq!(
        perms(&mut midan)?,
        0,
        "the revocation took effect at the next sync"
    );

    // Pages: Arabic first, English on request; the overview lists both centers.
    let (status, html) = hub.http("GET", "/centers", None).await?;
    assert!(status.contains("200"));
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""));
    assert!(html.contains("midan") && html.contains("qanawat"));
    let (_, html) = hub.http("GET", "/oversight?lang=en", None).await?;
    assert!(html.contains("lang=\"en\" dir=\"ltr\""));
    assert!(html.contains("Beyond target") && html.contains("Still open"));
    let (_, centers) = hub.http("GET", "/api/v1/centers", None).await?;
    let centers: Vec<serde_json::Value> = serde_json::from_str(&centers)?;
    assert_eq!(centers.len(), 2);
    assert!(centers.iter().all(|c| c["backlog"] == 0), "{centers:?}");

    // One session row per sync (`Center::sync` starts no session, so no session header:
    // each Hello opens one), each the sum of its requests.
    let (_, sessions) = hub
        .http("GET", "/api/v1/sync-log?center=midan", None)
        .await?;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&sessions)?;
    assert_eq!(sessions.len(), 4, "midan synced four times: {sessions:?}");
    let (_, reqs) = hub
        .http("GET", "/api/v1/sync-log/requests?center=midan", None)
        .await?;
    let reqs: Vec<serde_json::Value> = serde_json::from_str(&reqs)?;
    // A nothing-new session is its session row alone (no request row).
    let logged: std::collections::BTreeSet<i64> = reqs
        .iter()
        .filter_map(|r| r["session_id"].as_i64())
        .collect();
    let (with_rows, alone): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = sessions
        .iter()
        .partition(|s| s["id"].as_i64().is_some_and(|id| logged.contains(&id)));
    for s in &alone {
        assert_eq!(
            (s["requests"].as_i64(), s["changes_up"].as_i64()),
            (Some(1), Some(0)),
            "{s}"
        );
        assert_eq!(s["changes_down"], 0, "{s}");
    }
    for key in ["bytes_up", "bytes_down", "changes_up", "changes_down"] {
        let by_req: i64 = reqs.iter().map(|r| r[key].as_i64().unwrap_or(0)).sum();
        let by_session: i64 = with_rows.iter().map(|r| r[key].as_i64().unwrap_or(0)).sum();
        assert_eq!(by_req, by_session, "{key}");
    }
    assert!(
        sessions
            .iter()
            // The client names the TCP connector's link `primary`.
            .all(|s| s["uplink"] == "primary" && s["result"] == SessionResult::Ok.as_str()),
        "each ended with its last pull: {sessions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_session_header_makes_one_row_per_session() -> anyhow::Result<()> {
    one_row_per_session(Hub::start().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_on_postgres_the_session_header_makes_one_row_per_session() -> anyhow::Result<()> {
    let Some(hub) = Hub::start_pg("hub_on_postgres_one_row_per_session").await? else {
        return Ok(());
    };
    one_row_per_session(hub).await
}

async fn one_row_per_session(hub: Hub) -> anyhow::Result<()> {
    let mut midan = Center::new(&hub, "midan")?;
    midan.new_case(1)?;
    let (first, _) = midan.sync_in_session().await?;
    midan.new_case(2)?;
    let (second, _) = midan.sync_in_session().await?;
    assert_ne!(first, second);

    let (_, sessions) = hub
        .http("GET", "/api/v1/sync-log?center=midan", None)
        .await?;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&sessions)?;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0]["session"], second.as_str());
    assert_eq!(sessions[1]["session"], first.as_str());
    for s in &sessions {
        assert_eq!(s["uplink"], "primary", "{s}");
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["changes_up"], 1, "one case each: {s}");
        assert!(s["skew_ms"].as_i64().is_some(), "{s}");
        let id = s["id"].as_i64().context("id")?;
        let (_, reqs) = hub
            .http(
                "GET",
                &format!("/api/v1/sync-log/requests?session={id}"),
                None,
            )
            .await?;
        let reqs: Vec<serde_json::Value> = serde_json::from_str(&reqs)?;
        assert_eq!(reqs.len() as i64, s["requests"].as_i64().unwrap_or(-1));
        for key in ["bytes_up", "bytes_down"] {
            let sum: i64 = reqs.iter().map(|r| r[key].as_i64().unwrap_or(0)).sum();
            assert_eq!(sum, s[key].as_i64().unwrap_or(-1), "{key}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nothing_new_session_is_one_round_trip_and_ends_at_once_in_the_log() -> anyhow::Result<()>
{
    nothing_new_is_one_round_trip(Hub::start().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_on_postgres_a_nothing_new_session_is_one_round_trip() -> anyhow::Result<()> {
    let Some(hub) = Hub::start_pg("hub_on_postgres_nothing_new").await? else {
        return Ok(());
    };
    nothing_new_is_one_round_trip(hub).await
}

async fn nothing_new_is_one_round_trip(hub: Hub) -> anyhow::Result<()> {
    let mut midan = Center::new(&hub, "midan")?;
    midan.new_case(1)?;
    midan.sync_in_session().await?;
    // Nothing new on either side: the Hello offers to stop, the Welcome agrees.
    let (idle, report) = midan.sync_in_session().await?;
    assert_eq!(
        (report.requests, report.pushed, report.pulled_new),
        (1, 0, 0),
        "{report:?}"
    );
    let (_, sessions) = hub
        .http("GET", "/api/v1/sync-log?center=midan", None)
        .await?;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&sessions)?;
    let row = sessions
        .iter()
        .find(|s| s["session"] == idle.as_str())
        .context("the idle session is logged")?;
    assert_eq!(row["requests"], 1, "{row}");
    // Ended by its Welcome, not left open until the idle time.
    assert_eq!(row["result"], "ok", "{row}");
    // And it is that one row: no request row besides it, however many idle rounds run.
    let id = row["id"].as_i64().context("id")?;
    let (_, reqs) = hub
        .http(
            "GET",
            &format!("/api/v1/sync-log/requests?session={id}"),
            None,
        )
        .await?;
    assert_eq!(reqs.trim(), "[]", "{reqs}");
    let count = |path: &'static str| {
        let hub = &hub;
        async move {
            let (_, body) = hub.http("GET", path, None).await?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&body)?;
            anyhow::Ok(rows.len())
        }
    };
    let requests_before = count("/api/v1/sync-log/requests?center=midan").await?;
    let sessions_before = count("/api/v1/sync-log?center=midan").await?;
    for _ in 0..3 {
        midan.sync_in_session().await?;
    }
    assert_eq!(
        count("/api/v1/sync-log/requests?center=midan").await?,
        requests_before
    );
    assert_eq!(
        count("/api/v1/sync-log?center=midan").await?,
        sessions_before + 3
    );

    // A new case at midan: nothing to offer at the Hello, so the session goes on.
    midan.new_case(2)?;
    let (_, report) = midan.sync_in_session().await?;
    assert!(
        report.requests >= 2,
        "a push needs more than the Welcome: {report:?}"
    );
    Ok(())
}

/// Two hub processes on one PostgreSQL database serve the same centers: a center syncs
/// with either (and moves between them), a case routed by one reaches its center
/// through the other, a portal case taken in at one goes out through the other, centers
/// sync with both at the same time, and at the end every document has the same heads at
/// the centers and at the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgres_serve_the_same_centers() -> anyhow::Result<()> {
    let Some(a) = Hub::start_pg("two_hubs_on_one_postgres_serve_the_same_centers").await? else {
        return Ok(());
    };
    let b = a.sibling().await?;
    let mut midan = Center::new(&a, "midan")?;
    let mut qanawat = Center::new(&b, "qanawat")?;
    let own = midan.new_case(1)?;
    midan.sync().await?;
    qanawat.sync().await?;
    assert!(qanawat.has(&DocId::catalog()));
    assert!(!qanawat.has(&own));

    // A portal case taken in at hub B for pickup at midan reaches midan through hub A.
    let service = markaz_sync::model::catalog::default_catalog()
        .into_iter()
        .find(|s| s.fields.iter().all(|f| !f.required))
        .context("a service without required fields")?;
    let intake = serde_json::json!({
        "citizen": {"national_id": "01020304099", "full_name": "ريم الحسن", "father_name": "أحمد",
            "mother_name": "سلمى", "birth_date": "1990-01-01", "birth_place": "دمشق",
            "phone": "0933123456", "address": "دمشق"},
        "service": service.code,
        "payment": {"reference": "EP-123", "bank": "commercial_bank"},
        "delivery": {"mode": "pickup", "center": "midan"}
    });
    let (status, body) = b
        .http("POST", "/api/v1/portal/cases", Some(&intake.to_string()))
        .await?;
    assert!(status.contains("201"), "{status} {body}");
    let created: serde_json::Value = serde_json::from_str(&body)?;
    let portal: DocId = created["doc_id"].as_str().context("doc_id")?.parse()?;
    midan.sync().await?;
    assert!(midan.has(&portal), "hub A serves what hub B took in");
    // Portal case numbers come from one counter, whichever hub takes the case.
    let (_, body2) = a
        .http("POST", "/api/v1/portal/cases", Some(&intake.to_string()))
        .await?;
    let created2: serde_json::Value = serde_json::from_str(&body2)?;
    assert_ne!(created["case_no"], created2["case_no"], "{body2}");

    // Both centers push and pull at the same time, each to its own hub, several rounds;
    // then they swap hubs.
    for round in 0..3u32 {
        midan.new_case(10 + round)?;
        qanawat.new_case(20 + round)?;
        let (m, q) = tokio::join!(midan.sync(), qanawat.sync());
        m?;
        q?;
    }
    midan.switch_to(&b)?;
    qanawat.switch_to(&a)?;
    midan.sync().await?;
    qanawat.sync().await?;
    midan.sync().await?;

    // Every document a center holds has the same heads at the hub.
    let mut held = Vec::new();
    for center in [&mut midan, &mut qanawat] {
        let ids: Vec<String> = {
            let mut stmt = center.conn.prepare("SELECT doc_id FROM doc_meta")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        assert!(ids.len() > 3, "{ids:?}");
        for id in ids {
            let id: DocId = id.parse()?;
            let heads = center.docs.heads(&center.conn, &id)?;
            held.push((center.id.to_string(), id, heads));
        }
    }
    let settings = markaz_hub::storage::PgSettings::from_config(&a.storage)?;
    // The blocking PostgreSQL client runs off the async runtime.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut store = markaz_hub::storage::PgHub::open(&settings)?;
        for (center, id, at_center) in held {
            let at_hub = store.in_tx(&mut |t, docs, _| (docs.heads(t, &id), true))??;
            assert_eq!(at_center, at_hub, "{id} at {center}");
        }
        Ok(())
    })
    .await??;
    // Midan's session on hub B after its sessions on hub A: the sessions of a center are
    // listed by either hub.
    let (_, on_a) = a.http("GET", "/api/v1/sync-log?center=midan", None).await?;
    let (_, on_b) = b.http("GET", "/api/v1/sync-log?center=midan", None).await?;
    let on_a: Vec<serde_json::Value> = serde_json::from_str(&on_a)?;
    let on_b: Vec<serde_json::Value> = serde_json::from_str(&on_b)?;
    assert_eq!(on_a, on_b, "one sync log, whichever hub shows it");
    assert_eq!(on_a.len(), 7, "midan synced seven times: {on_a:?}");
    Ok(())
}
