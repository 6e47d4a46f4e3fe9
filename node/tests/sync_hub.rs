//! The node's sync client against a hub in the same process: real certificates from
//! `hub::pki`, real mutual TLS through `hub::tls::serve`, and the sync crate's hub
//! handler behind `POST /sync/v1` (the hub engineer's server was not ready; this is the
//! same handler it wraps). The node is a real node (`TestNode`): edits go through its
//! API, and what the test checks is what a clerk sees there. The test hub also records
//! the uplink and session headers of every request, as the real hub's sync log does.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::routing::post;
use markaz_hub::pki::{Ca, RevokeTarget, Validity};
use markaz_hub::tls::{self, CenterIdentity, ServeOptions, ServerTls, ServerTlsFiles};
use markaz_node::storage::StorageError;
use markaz_node::sync::{
    BUDGET_SPENT, BULK_WAITS, SyncOptions, backlog, backlog_lanes, modem_budget, recent_sessions,
    sync_once,
};
use markaz_sync::docs::{self, DocId, DocKind};
use markaz_sync::hlc::HlcClock;
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Delivery};
use markaz_sync::model::citizen::CitizenInput;
use markaz_sync::model::ids::{CaseNo, CenterId};
use markaz_sync::model::staff::{Role, StaffMember};
use markaz_sync::protocol::client::Limits;
use markaz_sync::protocol::contract::{SESSION_HEADER, SYNC_PATH, SessionResult, UPLINK_HEADER};
use markaz_sync::protocol::{SqliteHub, handle_request, migrate_hub};
use markaz_sync::store::{self, DocStore, StoredChange};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use rusqlite::Connection;
use serde_json::json;
use support::{TestNode, citizen};
use tokio_util::sync::CancellationToken;

const NID: &str = "01234567890";
const PORTAL_NID: &str = "01020304050";
const JUSTICE_UNTIL: (&str, &str) = ("justice", "2027-06-30");

/// The hub's documents: the sync crate's SQLite hub store.
struct HubDocs {
    conn: Connection,
    docs: DocStore,
    clock: HlcClock,
    /// (`x-markaz-uplink`, `x-markaz-session`) of every request, in order.
    seen: Vec<(Option<String>, Option<String>)>,
}

impl HubDocs {
    fn handle(&mut self, center: &CenterId, body: &[u8]) -> Vec<u8> {
        let now = jiff::Timestamp::now().as_millisecond() as u64;
        let Ok(tx) = self.conn.transaction() else {
            return Vec::new();
        };
        let (resp, log) = {
            let mut h = SqliteHub::new(&tx, &mut self.docs);
            handle_request(&mut h, center, &mut self.clock, now, body)
        };
        if log.error.is_none() {
            tx.commit().expect("hub commit");
        }
        resp
    }

    /// A hub-side edit (staff, portal case), routed like any change.
    fn edit(
        &mut self,
        id: &DocId,
        f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), docs::DocError>,
    ) {
        let tx = self.conn.transaction().unwrap();
        let (_, stored) = self.docs.edit(&tx, id, f).unwrap();
        let stored: Vec<StoredChange> = stored.into_iter().collect();
        SqliteHub::new(&tx, &mut self.docs)
            .route_stored(&stored, None)
            .unwrap();
        tx.commit().unwrap();
    }
}

async fn sync_v1(
    State(hub): State<Arc<Mutex<HubDocs>>>,
    Extension(id): Extension<CenterIdentity>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Vec<u8> {
    let center: CenterId = id.center_id.to_string().parse().expect("center id");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut hub = hub.lock().unwrap();
    hub.seen
        .push((header(UPLINK_HEADER), header(SESSION_HEADER)));
    hub.handle(&center, &body)
}

struct Hub {
    _dir: tempfile::TempDir,
    ca: Ca,
    port: u16,
    tls: ServerTls,
    docs: Arc<Mutex<HubDocs>>,
    shutdown: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Hub {
    async fn start() -> anyhow::Result<Hub> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::create(
            &dir.path().join("pki"),
            "Damascus CA",
            Validity::days(3650)?,
        )?;
        ca.issue_hub(&["127.0.0.1".into()], Validity::days(365)?)?;
        let conn = Connection::open(dir.path().join("hub.db"))?;
        store::migrate(&conn)?;
        migrate_hub(&conn)?;
        let actor = store::incarnation(&conn, "hub", 0)?;
        let docs = Arc::new(Mutex::new(HubDocs {
            conn,
            docs: DocStore::new(actor, 64),
            clock: HlcClock::new("hub"),
            seen: Vec::new(),
        }));
        let tls_files = ServerTls::load(ServerTlsFiles::in_pki_dir(ca.dir()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = Router::new()
            .route(SYNC_PATH, post(sync_v1))
            .with_state(docs.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(tls::serve(
            listener,
            tls_files.clone(),
            app,
            ServeOptions::default(),
            shutdown.clone(),
        ));
        Ok(Hub {
            _dir: dir,
            ca,
            port,
            tls: tls_files,
            docs,
            shutdown,
        })
    }

    /// Issues `center`'s certificate; returns its bundle directory.
    fn bundle(&self, center: &str) -> anyhow::Result<PathBuf> {
        let issued = self
            .ca
            .issue_center(&center.parse()?, Validity::days(365)?)?;
        Ok(issued.cert_path.parent().context("bundle")?.to_path_buf())
    }

    fn options(&self, center: &str) -> anyhow::Result<SyncOptions> {
        let quick = ClientOptions {
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 16 << 20,
        };
        Ok(SyncOptions {
            center: center.parse()?,
            hubs: vec![HubTarget::new("127.0.0.1", self.port)?],
            tls: ClientTlsFiles::in_bundle(&self.bundle(center)?),
            interval: Duration::from_secs(3600),
            // Small merge parts: the pulls here are merged in several writer jobs.
            limits: Limits {
                merge_bytes: 2_000,
                ..Limits::default()
            },
            client: quick,
            connect_timeout: Duration::from_secs(5),
            writer_timeout: Duration::from_secs(30),
            modem_daily_budget: 20_000_000,
        })
    }

    fn client(&self, opts: &SyncOptions) -> anyhow::Result<HubClient> {
        self.client_over(opts, "primary")
    }

    /// A client whose connector is named `uplink` (`"modem"`: what the node's uplink
    /// connector says while the modem carries the sync; here it is loopback TCP).
    fn client_over(&self, opts: &SyncOptions, uplink: &str) -> anyhow::Result<HubClient> {
        Ok(HubClient::new(
            client_config(&opts.tls)?,
            Arc::new(TcpConnector::new(uplink, Duration::from_secs(5))),
            opts.hubs[0].clone(),
            opts.client,
        ))
    }

    /// The heads of a document at the hub (empty when the hub does not have it).
    fn heads(&self, id: &DocId) -> Vec<automerge::ChangeHash> {
        let mut h = self.docs.lock().unwrap();
        let HubDocs { conn, docs: d, .. } = &mut *h;
        d.heads(conn, id).unwrap()
    }

    /// The headers of the requests received so far.
    fn seen(&self) -> Vec<(Option<String>, Option<String>)> {
        self.docs.lock().unwrap().seen.clone()
    }
}

/// Writes an energy summary of `day` at the node, as the daily-documents job does.
async fn energy_doc(node: &TestNode, day: jiff::civil::Date, pv_wh: i64) -> anyhow::Result<DocId> {
    let center: CenterId = node.app.settings.center_id.clone();
    let id = DocId::energy(&center, day);
    let id2 = id.clone();
    node.app
        .db
        .writer
        .write(move |tx| {
            tx.docs
                .edit(tx.conn, &id2, |doc| {
                    docs::create_metrics(doc, DocKind::Energy, &center, day)?;
                    docs::set_metric(doc, "pv_wh", pv_wh)
                })
                .map(|_| ())
                .map_err(StorageError::from)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(id)
}

async fn node_log_count(node: &TestNode, message: &str) -> i64 {
    sql_count(
        node,
        "SELECT count(*) FROM node_log WHERE message = ?1",
        message.to_string(),
    )
    .await
}

/// Every request between `from` and `to` carried `uplink` and the session id `id`.
fn assert_headers(seen: &[(Option<String>, Option<String>)], uplink: &str, id: &str) {
    assert!(!seen.is_empty());
    for (u, s) in seen {
        assert_eq!(u.as_deref(), Some(uplink), "{seen:?}");
        assert_eq!(s.as_deref(), Some(id), "{seen:?}");
    }
    let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4);
}

/// The citizen of the portal cases the hub creates in these tests.
fn portal_citizen() -> CitizenInput {
    CitizenInput {
        national_id: PORTAL_NID.into(),
        full_name: "ريم الحلبي".into(),
        father_name: "سامر".into(),
        mother_name: "هالة".into(),
        birth_date: "1990-01-02".into(),
        birth_place: "دمشق".into(),
        phone: String::new(),
        address: "دمشق - الميدان".into(),
    }
}

fn ev(kind: CaseEventKind, actor: &str, hlc: &str) -> CaseEvent {
    CaseEvent {
        kind,
        actor: actor.into(),
        desk: None,
        at: "2026-11-29T05:00:00Z".parse().unwrap(),
        hlc: hlc.into(),
    }
}

async fn sql_count(node: &TestNode, sql: &'static str, arg: String) -> i64 {
    node.app
        .db
        .readers
        .read(move |c| {
            c.query_row(sql, [arg], |r| r.get::<_, i64>(0))
                .map_err(markaz_node::storage::StorageError::from)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_center_syncs_its_work_up_and_gets_routed_cases_staff_and_revocations_down()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center: CenterId = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let mut client = hub.client(&opts)?;

    // Offline work at the center: a citizen and a case.
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);
    let (s, b) = clerk
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {}, "delivery": {"method": "pickup"}}))
        .await;
    assert_eq!(s, 201, "{b}");
    let case_no: CaseNo = b["case_no"].as_str().unwrap().parse()?;
    assert!(
        backlog(&node.app).await? >= 2,
        "local changes wait for the hub"
    );

    let first = sync_once(&node.app, &mut client, &opts).await;
    assert!(first.ok(), "{first:?}");
    assert!(first.changes_up >= 2 && first.docs_up >= 2, "{first:?}");
    assert!(first.bytes_up > 0 && first.bytes_down > 0, "{first:?}");
    assert!(first.skew_ms.is_some());
    assert_eq!(backlog(&node.app).await?, 0, "everything acknowledged");
    {
        let mut h = hub.docs.lock().unwrap();
        let HubDocs { conn, docs: d, .. } = &mut *h;
        let at_hub = d
            .read(conn, &DocId::case(Some(&center), &case_no), docs::read_case)?
            .context("the case reached the hub")??;
        assert_eq!(at_hub.citizen.as_str(), NID);
    }

    // At the hub: a portal case for pickup here, its citizen, the clerk's permissions
    // revoked, and a new account.
    let portal_no = CaseNo::new("WEB", 2026, 1)?;
    let portal_id = DocId::case(None, &portal_no);
    {
        let mut h = hub.docs.lock().unwrap();
        let pc: markaz_sync::model::ids::NationalId = PORTAL_NID.parse()?;
        h.edit(&DocId::citizen(&pc), |d| {
            docs::write_citizen(d, &portal_citizen())
        });
        let c = docs::NewCase {
            case_no: portal_no.clone(),
            center: None,
            service: "criminal_record".into(),
            citizen: pc,
            delivery: Delivery::Pickup {
                center: center.clone(),
            },
            fields: BTreeMap::new(),
            fee: None,
            created: ev(CaseEventKind::Created, "portal", "0000000000001.00000.hub"),
        };
        h.edit(&portal_id, |d| docs::create_case(d, &c));
        for (user, perms) in [("clerk1", vec![]), ("hubclerk", vec![])] {
            let staff = DocId::staff(&center, user)?;
            let m = StaffMember {
                username: user.into(),
                full_name: format!("{user} of the center"),
                roles: vec![Role::Clerk],
                permissions: perms,
                active: true,
            };
            let c2 = center.clone();
            h.edit(&staff, move |d| docs::write_staff(d, &c2, &m));
        }
    }

    let second = sync_once(&node.app, &mut client, &opts).await;
    assert!(second.ok(), "{second:?}");
    assert!(second.changes_down >= 4, "{second:?}");
    assert!(second.skipped.is_empty(), "{second:?}");

    // The portal case is in the center's case list, with its citizen.
    let (s, b) = clerk.get(&format!("/cases/{portal_no}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "created");
    assert_eq!(b["national_id"], PORTAL_NID);
    assert_eq!(b["citizen_name"], "ريم الحلبي");
    // The revocation took effect: the clerk can no longer open a case.
    let (s, b) = clerk
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {}, "delivery": {"method": "pickup"}}))
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "permission_missing");
    // The account created at the hub exists but cannot log in until a password is set.
    assert_eq!(
        sql_count(
            &node,
            "SELECT count(*) FROM staff WHERE username = ?1 AND password_hash LIKE '!unset:%'",
            "hubclerk".into()
        )
        .await,
        1
    );
    let (s, _) = node
        .raw(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "hubclerk", "password": "anything-at-all"})),
        )
        .await;
    assert_eq!(s, 401);

    // A third session with nothing new moves nothing, and every session is logged.
    let third = sync_once(&node.app, &mut client, &opts).await;
    assert!(third.ok(), "{third:?}");
    assert_eq!((third.changes_up, third.changes_down), (0, 0), "{third:?}");
    let log = recent_sessions(&node.app, 10).await?;
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].changes_up, first.changes_up);
    assert_eq!(log[1].changes_down, second.changes_down);
    assert!(log.iter().all(|r| r.uplink == "primary" && r.ok()));
    Ok(())
}

#[tokio::test]
async fn a_session_cut_by_a_dead_hub_is_recorded_and_the_next_one_resumes() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);

    // The hub is unreachable (a port nobody listens on): the session fails, is logged,
    // and the changes stay in the backlog.
    let mut dead = opts.clone();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    dead.hubs = vec![HubTarget::new("127.0.0.1", closed.local_addr()?.port())?];
    drop(closed);
    let mut client = hub.client(&dead)?;
    let failed = sync_once(&node.app, &mut client, &dead).await;
    assert!(!failed.ok());
    assert!(backlog(&node.app).await? >= 1);

    // The sync task: sync-now runs a session at once and the panel shows it.
    let client = hub.client(&opts)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(markaz_node::sync::run(
        node.app.clone(),
        client,
        opts.clone(),
        stop.clone(),
    ));
    let mut panel = node.app.status.sync.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = panel
            .borrow()
            .as_ref()
            .is_some_and(|p| serde_json::to_value(p).unwrap()["last_success_at"].is_string());
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful session on the panel"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), panel.changed()).await;
    }
    let p = serde_json::to_value(panel.borrow().clone().unwrap())?;
    assert_eq!(p["backlog"], 0, "{p}");
    assert_eq!(p["uplink"], "primary");
    assert!(p["skew_ms"].is_i64(), "{p}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    let log = recent_sessions(&node.app, 10).await?;
    assert!(log.len() >= 2);
    assert!(!log.last().unwrap().ok(), "the failed session is logged");
    Ok(())
}

/// Waits until the sync panel's last session is a successful one other than the session
/// `before` (the test clock stands still, so sessions are told apart by their id);
/// returns the panel.
async fn next_success(node: &TestNode, before: &serde_json::Value) -> serde_json::Value {
    let mut panel = node.app.status.sync.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = panel
            .borrow_and_update()
            .as_ref()
            .map(|p| serde_json::to_value(p).unwrap());
        if let Some(p) = p
            && p["last_session"]["result"] == SessionResult::Ok.as_str()
            && p["last_session"]["session_id"] != *before
        {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new successful session on the panel: {:?}; sessions: {:#?}",
            panel.borrow().clone(),
            recent_sessions(&node.app, 10).await
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), panel.changed()).await;
    }
}

#[tokio::test]
async fn hub_urls_are_tried_in_order_and_the_node_stays_with_the_one_that_answers()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);

    // The first address is a port nobody listens on, the second the hub.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dead = HubTarget::new("127.0.0.1", closed.local_addr()?.port())?;
    drop(closed);
    let live = HubTarget::new("127.0.0.1", hub.port)?;
    let mut opts = hub.options(center.as_str())?;
    opts.hubs = vec![dead.clone(), live.clone()];
    let client = hub.client(&opts)?;
    assert_eq!(client.target().to_string(), dead.to_string());
    let stop = CancellationToken::new();
    let task = tokio::spawn(markaz_node::sync::run(
        node.app.clone(),
        client,
        opts.clone(),
        stop.clone(),
    ));
    let p = next_success(&node, &serde_json::Value::Null).await;
    assert_eq!(p["hub"], live.to_string(), "{p}");
    assert_eq!(
        p["hubs"],
        json!([dead.to_string(), live.to_string()]),
        "{p}"
    );
    assert_eq!(p["backlog"], 0, "{p}");
    let rows = recent_sessions(&node.app, 10).await?;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows[0].ok() && rows[0].hub == live.to_string(), "{rows:#?}");
    assert!(
        !rows[1].ok() && rows[1].hub == dead.to_string(),
        "{rows:#?}"
    );
    assert_eq!(
        node_log_count(&node, &format!("hub {dead}→{live}")).await,
        1
    );

    // The next session goes straight to the hub that answered.
    assert_eq!(clerk.post("/citizens", citizen(PORTAL_NID)).await.0, 201);
    node.app.devices.request_sync_now();
    let p = next_success(&node, &p["last_session"]["session_id"]).await;
    assert_eq!(p["hub"], live.to_string(), "{p}");
    assert_eq!(p["backlog"], 0, "{p}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    let rows = recent_sessions(&node.app, 10).await?;
    assert_eq!(
        rows.len(),
        3,
        "no second try of the dead address: {rows:#?}"
    );
    assert!(rows[0].ok() && rows[0].hub == live.to_string(), "{rows:#?}");
    let stored: i64 = sql_count(
        &node,
        "SELECT count(*) FROM sync_sessions WHERE hub = ?1",
        live.to_string(),
    )
    .await;
    assert_eq!(stored, 2);
    Ok(())
}

#[tokio::test]
async fn a_center_whose_certificate_is_revoked_is_refused_and_keeps_its_backlog()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let mut client = hub.client(&opts)?;
    let first = sync_once(&node.app, &mut client, &opts).await;
    assert!(first.ok(), "{first:?}");

    hub.ca.revoke(&RevokeTarget::Center(center.clone()))?;
    hub.tls.reload()?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);
    let mut client = hub.client(&opts)?;
    let refused = sync_once(&node.app, &mut client, &opts).await;
    assert!(!refused.ok(), "a revoked center was served: {refused:?}");
    assert_eq!(refused.changes_up, 0);
    assert!(
        backlog(&node.app).await? >= 1,
        "the work waits for a valid certificate"
    );
    let log = recent_sessions(&node.app, 10).await?;
    assert_eq!(log[0].result, refused.result);
    Ok(())
}

#[tokio::test]
async fn a_cancellation_at_the_hub_reaches_the_centers_case_view() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center: CenterId = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let mut client = hub.client(&opts)?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);
    let (s, b) = clerk
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {}, "delivery": {"method": "pickup"}}))
        .await;
    assert_eq!(s, 201, "{b}");
    let case_no: CaseNo = b["case_no"].as_str().unwrap().parse()?;
    assert!(sync_once(&node.app, &mut client, &opts).await.ok());

    let id = DocId::case(Some(&center), &case_no);
    hub.docs.lock().unwrap().edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Cancelled {
                    reason: "duplicate application".into(),
                },
                "hub-admin",
                "9000000000000.00000.hub",
            ),
        )
    });
    let r = sync_once(&node.app, &mut client, &opts).await;
    assert!(r.ok(), "{r:?}");
    let (s, b) = clerk.get(&format!("/cases/{case_no}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "cancelled", "{b}");
    assert_eq!(b["events"].as_array().map(Vec::len), Some(2), "{b}");
    Ok(())
}

#[tokio::test]
async fn a_metered_session_over_the_modem_moves_cases_and_leaves_energy_for_the_primary_link()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center: CenterId = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let mut modem = hub.client_over(&opts, "modem")?;
    let mut primary = hub.client(&opts)?;

    // Yesterday's energy summary first, then a case: the case must not wait behind it.
    let energy = energy_doc(&node, jiff::civil::date(2026, 11, 28), 5_400).await?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);
    let (s, b) = clerk
        .post("/cases", json!({"national_id": NID, "service": "criminal_record", "fields": {}, "delivery": {"method": "pickup"}}))
        .await;
    assert_eq!(s, 201, "{b}");
    let case_no: CaseNo = b["case_no"].as_str().unwrap().parse()?;
    let case = DocId::case(Some(&center), &case_no);
    // Staff accounts without a document get one as a session starts; written here first,
    // so that the backlog below is everything the session carries.
    node.app.publish_staff_docs().await?;
    let before = backlog_lanes(&node.app).await?;
    assert_eq!(before.bulk, 1);
    assert!(before.essential >= 2);

    let m = sync_once(&node.app, &mut modem, &opts).await;
    assert!(m.ok(), "{m:?}");
    assert!(m.metered);
    assert_eq!(m.uplink, "modem");
    assert_eq!((m.bulk_changes_up, m.bulk_waiting), (0, 1), "{m:?}");
    assert_eq!(m.changes_up, before.essential);
    assert!(!hub.heads(&case).is_empty(), "the case reached the hub");
    assert!(hub.heads(&energy).is_empty(), "the energy summary waits");
    let after = backlog_lanes(&node.app).await?;
    assert_eq!((after.essential, after.bulk), (0, 1));
    let seen_modem = hub.seen();
    assert_headers(&seen_modem, "modem", m.session_id.as_deref().unwrap());

    let p = sync_once(&node.app, &mut primary, &opts).await;
    assert!(p.ok(), "{p:?}");
    assert!(!p.metered);
    assert_eq!((p.changes_up, p.bulk_changes_up, p.bulk_waiting), (1, 1, 0));
    assert!(
        !hub.heads(&energy).is_empty(),
        "over the primary link it goes"
    );
    assert_eq!(backlog(&node.app).await?, 0);
    // The hub saw which uplink and which session every request belonged to.
    let seen = hub.seen();
    assert_headers(
        &seen[seen_modem.len()..],
        "primary",
        p.session_id.as_deref().unwrap(),
    );
    assert_ne!(m.session_id, p.session_id);

    // The change of uplink is in the node log and on the rows.
    assert_eq!(node_log_count(&node, "uplink modem→primary").await, 1);
    let rows = recent_sessions(&node.app, 10).await?;
    assert_eq!(rows[0].uplink, "primary");
    assert_eq!(rows[1].uplink, "modem");
    assert_eq!(rows[1].bulk_waiting, 1);
    assert_eq!(rows[0].session_id, p.session_id);
    // Over the modem again: nothing new to log twice, the line appears once per change.
    let again = sync_once(&node.app, &mut modem, &opts).await;
    assert!(again.ok(), "{again:?}");
    assert_eq!(node_log_count(&node, "uplink primary→modem").await, 1);
    Ok(())
}

#[tokio::test]
async fn a_spent_modem_budget_stops_sessions_until_the_day_changes_or_the_primary_link_is_back()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let mut opts = hub.options(center.as_str())?;
    // Less than one request's worth: the first request of a session spends it.
    opts.modem_daily_budget = 1;
    let mut modem = hub.client_over(&opts, "modem")?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);

    // The session under way stops once the budget is spent, after its first exchange.
    let first = sync_once(&node.app, &mut modem, &opts).await;
    assert_eq!(first.result, BUDGET_SPENT, "{first:?}");
    assert_eq!(first.requests, 1);
    assert!(first.bytes_up + first.bytes_down > 1);
    let used = modem_budget(&node.app, opts.modem_daily_budget).await?;
    assert!(used.spent, "{used:?}");
    assert_eq!(used.used_bytes, first.bytes_up + first.bytes_down);
    assert_eq!(used.day, "2026-11-29", "the center's local day");

    // The next session over the modem does not even connect.
    let n = hub.seen().len();
    let skipped = sync_once(&node.app, &mut modem, &opts).await;
    assert_eq!(skipped.result, BUDGET_SPENT);
    assert_eq!(
        (skipped.requests, skipped.bytes_up, skipped.bytes_down),
        (0, 0, 0)
    );
    assert_eq!(skipped.session_id, None);
    assert_eq!(hub.seen().len(), n, "nothing went over the modem");
    assert!(backlog(&node.app).await? >= 1);
    let rows = recent_sessions(&node.app, 1).await?;
    assert_eq!(rows[0].result, BUDGET_SPENT);

    // The panel says so.
    let stop = CancellationToken::new();
    let task = tokio::spawn(markaz_node::sync::run(
        node.app.clone(),
        hub.client_over(&opts, "modem")?,
        opts.clone(),
        stop.clone(),
    ));
    let mut panel = node.app.status.sync.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let p = loop {
        let p = panel
            .borrow()
            .clone()
            .map(serde_json::to_value)
            .transpose()?;
        if let Some(p) = p.filter(|p| p["last_session"].is_object()) {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session on the panel"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), panel.changed()).await;
    };
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    assert_eq!(p["last_error"], BUDGET_SPENT, "{p}");
    assert_eq!(p["modem_budget"]["spent"], true, "{p}");
    assert_eq!(p["bulk_filter"], BULK_WAITS, "{p}");
    assert_eq!(hub.seen().len(), n, "nothing went over the modem");

    // The primary link is back: the session runs and the backlog goes.
    let mut primary = hub.client(&opts)?;
    let p = sync_once(&node.app, &mut primary, &opts).await;
    assert!(p.ok(), "{p:?}");
    assert_eq!(backlog(&node.app).await?, 0);

    // A new local day: the modem may carry a session again.
    node.advance(Duration::from_secs(24 * 3600));
    assert!(
        !modem_budget(&node.app, opts.modem_daily_budget)
            .await?
            .spent
    );
    let n = hub.seen().len();
    let next_day = sync_once(&node.app, &mut modem, &opts).await;
    assert!(next_day.requests >= 1, "{next_day:?}");
    assert!(hub.seen().len() > n);
    Ok(())
}

/// The real hub (`markaz_hub::run`), for what only it does: its sync log.
struct RealHub {
    _dir: tempfile::TempDir,
    pki: PathBuf,
    data: PathBuf,
    port: u16,
    web: String,
    shutdown: CancellationToken,
}

impl Drop for RealHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RealHub {
    async fn start() -> anyhow::Result<RealHub> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        let ca = Ca::create(&pki, "test CA", Validity::days(30)?)?;
        let issued = ca.issue_hub(&["127.0.0.1".into()], Validity::days(30)?)?;
        let data = dir.path().join("hub");
        let mut cfg = markaz_config::HubConfig::default();
        cfg.hub.data_dir = data.clone();
        cfg.hub.listen = "127.0.0.1:0".parse()?;
        cfg.hub.web_listen = "127.0.0.1:0".parse()?;
        cfg.hub.ca_cert = Some(ca.cert_path());
        cfg.hub.server_cert = Some(issued.cert_path);
        cfg.hub.server_key = Some(issued.key_path);
        cfg.hub.crl = Some(ca.crl_path());
        // The shared token file stands in for an operator's API token here.
        cfg.hub.legacy_operator_token = true;
        let shutdown = CancellationToken::new();
        tokio::spawn(markaz_hub::run(cfg, shutdown.clone()));
        for _ in 0..400 {
            if data.join(markaz_hub::WEB_ADDR_FILE).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let sync: std::net::SocketAddr =
            std::fs::read_to_string(data.join(markaz_hub::SYNC_ADDR_FILE))?.parse()?;
        let web = std::fs::read_to_string(data.join(markaz_hub::WEB_ADDR_FILE))?;
        Ok(RealHub {
            _dir: dir,
            pki,
            data,
            port: sync.port(),
            web,
            shutdown,
        })
    }

    fn options(&self, center: &str) -> anyhow::Result<SyncOptions> {
        let issued = Ca::load(&self.pki)?.issue_center(&center.parse()?, Validity::days(10)?)?;
        let bundle = issued.cert_path.parent().context("bundle")?.to_path_buf();
        Ok(SyncOptions {
            center: center.parse()?,
            hubs: vec![HubTarget::new("127.0.0.1", self.port)?],
            tls: ClientTlsFiles::in_bundle(&bundle),
            interval: Duration::from_secs(3600),
            // Small merge parts: the pulls here are merged in several writer jobs.
            limits: Limits {
                merge_bytes: 2_000,
                ..Limits::default()
            },
            client: ClientOptions {
                handshake_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
                max_response_bytes: 16 << 20,
            },
            connect_timeout: Duration::from_secs(5),
            writer_timeout: Duration::from_secs(30),
            modem_daily_budget: 20_000_000,
        })
    }

    /// The operator API's sync log of `center`, newest first.
    async fn sync_log(&self, center: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let token = std::fs::read_to_string(self.data.join(markaz_hub::TOKEN_FILE))?;
        let mut s = tokio::net::TcpStream::connect(&self.web).await?;
        let req = format!(
            "GET /api/v1/sync-log?center={center} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8(out)?;
        let (_, body) = text.split_once("\r\n\r\n").context("response")?;
        Ok(serde_json::from_str(body)?)
    }
}

#[tokio::test]
async fn the_hubs_sync_log_rows_carry_each_sessions_uplink() -> anyhow::Result<()> {
    let hub = RealHub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let tls = client_config(&opts.tls)?;
    let over = |uplink: &str| {
        HubClient::new(
            tls.clone(),
            Arc::new(TcpConnector::new(uplink, Duration::from_secs(5))),
            opts.hubs[0].clone(),
            opts.client,
        )
    };
    energy_doc(&node, jiff::civil::date(2026, 11, 28), 900).await?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);

    let m = sync_once(&node.app, &mut over("modem"), &opts).await;
    assert!(m.ok(), "{m:?}");
    let p = sync_once(&node.app, &mut over("primary"), &opts).await;
    assert!(p.ok(), "{p:?}");

    let log = hub.sync_log(center.as_str()).await?;
    assert_eq!(log.len(), 2, "one row per session: {log:?}");
    assert_eq!(log[0]["session"], p.session_id.clone().unwrap().as_str());
    assert_eq!(log[0]["uplink"], "primary", "{log:?}");
    assert_eq!(log[1]["session"], m.session_id.clone().unwrap().as_str());
    assert_eq!(log[1]["uplink"], "modem", "{log:?}");
    // The modem session carried the citizen, not the energy summary.
    assert_eq!(log[1]["changes_up"], m.changes_up as i64, "{log:?}");
    assert_eq!(
        log[0]["changes_up"], 1,
        "the energy summary, over the primary link"
    );
    assert_eq!(m.bulk_waiting, 1);
    Ok(())
}

/// A connector over loopback TCP whose name (the uplink it claims) a test can switch,
/// as the node's uplink connector's does on failover and failback.
#[derive(Debug, Clone, Default)]
struct Switchable {
    modem: Arc<std::sync::atomic::AtomicBool>,
}

impl Switchable {
    fn set_modem(&self, on: bool) {
        self.modem.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl markaz_uplink::Connector for Switchable {
    fn name(&self) -> &str {
        if self.modem.load(std::sync::atomic::Ordering::SeqCst) {
            "modem"
        } else {
            "primary"
        }
    }

    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<markaz_uplink::BoxedStream>> {
        Box::pin(async move {
            let tcp = TcpConnector::new(self.name(), Duration::from_secs(5));
            tcp.connect(host, port).await
        })
    }
}

#[tokio::test]
async fn after_an_uplink_change_the_next_session_runs_on_a_new_connection() -> anyhow::Result<()> {
    use markaz_uplink::Connector;
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let opts = hub.options(node.app.settings.center_id.as_str())?;
    let link = Switchable::default();
    link.set_modem(true);
    let mut client = HubClient::new(
        client_config(&opts.tls)?,
        Arc::new(link.clone()),
        opts.hubs[0].clone(),
        opts.client,
    );
    assert_eq!(link.name(), "modem");
    let mut seen = 0;
    for (i, modem) in [true, false, true].into_iter().enumerate() {
        link.set_modem(modem);
        let r = sync_once(&node.app, &mut client, &opts).await;
        assert!(r.ok(), "{r:?}");
        let uplink = if modem { "modem" } else { "primary" };
        assert_eq!((r.uplink.as_str(), r.metered), (uplink, modem));
        let all = hub.seen();
        assert_headers(&all[seen..], uplink, r.session_id.as_deref().unwrap());
        seen = all.len();
        assert_eq!(
            client.connections(),
            i as u64 + 1,
            "a kept-alive connection outlived the uplink change"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_service_the_hub_adds_is_offered_at_the_center_with_its_fee_and_its_portal_cases()
-> anyhow::Result<()> {
    use markaz_sync::model::catalog::default_catalog;
    use markaz_sync::model::fees::{FeeComponent, ServiceFees};
    use markaz_sync::model::money::Money;

    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center: CenterId = node.app.settings.center_id.clone();
    let opts = hub.options(center.as_str())?;
    let mut client = hub.client(&opts)?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    let (_, services) = clerk.get("/catalog/services").await;
    assert!(
        !services.to_string().contains("well_permit"),
        "not offered before the hub adds it"
    );

    // At the hub, in one batch: a new service with its fee, and a portal case of it for
    // pickup here (its service must be known when the case is projected).
    let mut svc = default_catalog()
        .into_iter()
        .find(|s| s.code == "criminal_record")
        .context("criminal_record")?;
    svc.code = "well_permit".into();
    svc.name_en = "Well drilling permit".into();
    svc.name_ar = "رخصة حفر بئر".into();
    let fees = ServiceFees {
        authority: vec![FeeComponent {
            amount: Money::from_syp(25_000)?,
            decision: "قرار رقم 9 لعام 2026".into(),
            effective_from: jiff::civil::date(2026, 1, 1),
        }],
        surcharge: vec![FeeComponent {
            amount: Money::from_syp(5_000)?,
            decision: "قرار المجلس رقم 3 لعام 2026".into(),
            effective_from: jiff::civil::date(2026, 1, 1),
        }],
    };
    let portal_no = CaseNo::new("WEB", 2026, 7)?;
    {
        let mut h = hub.docs.lock().unwrap();
        let (s2, f2) = (svc.clone(), fees.clone());
        h.edit(&DocId::catalog(), move |d| {
            docs::write_service(d, &s2)?;
            docs::write_fees(d, "well_permit", &f2)
        });
        let pc: markaz_sync::model::ids::NationalId = PORTAL_NID.parse()?;
        h.edit(&DocId::citizen(&pc), |d| {
            docs::write_citizen(d, &portal_citizen())
        });
        let c = docs::NewCase {
            case_no: portal_no.clone(),
            center: None,
            service: "well_permit".into(),
            citizen: pc,
            delivery: Delivery::Pickup {
                center: center.clone(),
            },
            fields: BTreeMap::new(),
            fee: None,
            created: ev(CaseEventKind::Created, "portal", "0000000000001.00000.hub"),
        };
        h.edit(&DocId::case(None, &portal_no), |d| docs::create_case(d, &c));
    }

    let r = sync_once(&node.app, &mut client, &opts).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.skipped.is_empty(), "nothing left unshown: {r:?}");
    let (s, b) = clerk.get(&format!("/cases/{portal_no}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["service"], "well_permit", "{b}");

    let (_, services) = clerk.get("/catalog/services").await;
    let offered = services
        .as_array()
        .context("a list")?
        .iter()
        .find(|s| s["service"]["code"] == "well_permit")
        .with_context(|| format!("offered after the sync: {services}"))?;
    assert_eq!(offered["service"]["name_en"], "Well drilling permit");
    assert!(!offered["fee"].is_null(), "{offered}");
    // Every built-in service keeps its fee.
    assert!(
        services
            .as_array()
            .context("a list")?
            .iter()
            .all(|s| !s["fee"].is_null()),
        "{services}"
    );
    Ok(())
}
