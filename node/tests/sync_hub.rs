//! The node's sync client against a hub in the same process: real certificates from
//! `hub::pki`, real mutual TLS through `hub::tls::serve`, and the sync crate's hub
//! handler behind `POST /sync/v1` (the hub engineer's server was not ready; this is the
//! same handler it wraps). The node is a real node (`TestNode`): edits go through its
//! API, and what the test checks is what a clerk sees there.

mod support;

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
use markaz_node::sync::{SyncOptions, backlog, recent_sessions, sync_once};
use markaz_node::uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use markaz_sync::docs::{self, DocId};
use markaz_sync::hlc::Clock as HlcClock;
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Delivery};
use markaz_sync::model::citizen::CitizenInput;
use markaz_sync::model::ids::{CaseNo, CenterId};
use markaz_sync::model::staff::{Role, StaffMember};
use markaz_sync::protocol::client::Limits;
use markaz_sync::protocol::server::{SqliteHub, handle_request, migrate_hub};
use markaz_sync::store::{self, DocStore, StoredChange};
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
    body: Bytes,
) -> Vec<u8> {
    let center: CenterId = id.center_id.to_string().parse().expect("center id");
    hub.lock().unwrap().handle(&center, &body)
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
        }));
        let tls_files = ServerTls::load(ServerTlsFiles::in_pki_dir(ca.dir()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = Router::new()
            .route("/sync/v1", post(sync_v1))
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
            target: HubTarget::new("127.0.0.1", self.port)?,
            tls: ClientTlsFiles::in_bundle(&self.bundle(center)?),
            interval: Duration::from_secs(3600),
            limits: Limits::default(),
            client: quick,
            connect_timeout: Duration::from_secs(5),
            writer_timeout: Duration::from_secs(30),
        })
    }

    fn client(&self, opts: &SyncOptions) -> anyhow::Result<HubClient> {
        Ok(HubClient::new(
            client_config(&opts.tls)?,
            Arc::new(TcpConnector::new("primary", Duration::from_secs(5))),
            opts.target.clone(),
            opts.client,
        ))
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
    let center: CenterId = node.app.settings.center_id.parse()?;
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
            docs::write_citizen(
                d,
                &CitizenInput {
                    national_id: PORTAL_NID.into(),
                    full_name: "ريم الحلبي".into(),
                    father_name: "سامر".into(),
                    mother_name: "هالة".into(),
                    birth_date: "1990-01-02".into(),
                    birth_place: "دمشق".into(),
                    phone: String::new(),
                    address: "دمشق - الميدان".into(),
                },
            )
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
    let opts = hub.options(&center)?;
    let clerk = node
        .staff("clerk1", &["clerk", "reception"], &[JUSTICE_UNTIL])
        .await;
    assert_eq!(clerk.post("/citizens", citizen(NID)).await.0, 201);

    // The hub is unreachable (a port nobody listens on): the session fails, is logged,
    // and the changes stay in the backlog.
    let mut dead = opts.clone();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    dead.target = HubTarget::new("127.0.0.1", closed.local_addr()?.port())?;
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
            .is_some_and(|p| p["last_success_at"].is_string());
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful session on the panel"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), panel.changed()).await;
    }
    let p = panel.borrow().clone().unwrap();
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

#[tokio::test]
async fn a_center_whose_certificate_is_revoked_is_refused_and_keeps_its_backlog()
-> anyhow::Result<()> {
    let hub = Hub::start().await?;
    let node = TestNode::start().await;
    let center = node.app.settings.center_id.clone();
    let opts = hub.options(&center)?;
    let mut client = hub.client(&opts)?;
    let first = sync_once(&node.app, &mut client, &opts).await;
    assert!(first.ok(), "{first:?}");

    hub.ca.revoke(&RevokeTarget::Center(center.parse()?))?;
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
    let center: CenterId = node.app.settings.center_id.parse()?;
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
