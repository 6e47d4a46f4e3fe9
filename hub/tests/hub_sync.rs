//! The hub as it runs (`markaz_hub::run`) with real mutual TLS on loopback: a center
//! pushes and pulls through `ClientSession` + the node's `HubClient`, the sync log
//! records it, another center never receives the first one's case, a portal case routed
//! to midan reaches midan, and the pages render Arabic first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_config::HubConfig;
use markaz_hub::pki::{Ca, Validity};
use markaz_node::uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use markaz_sync::docs::{self, DocId, NewCase};
use markaz_sync::hlc::Clock;
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Delivery};
use markaz_sync::model::{CaseNo, CenterId};
use markaz_sync::protocol::{ClientSession, Limits};
use markaz_sync::store::{self, DocStore};
use rusqlite::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Hub {
    _dir: tempfile::TempDir,
    pki: PathBuf,
    data: PathBuf,
    sync_port: u16,
    web: String,
    shutdown: CancellationToken,
}

impl Hub {
    async fn start() -> anyhow::Result<Hub> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        let ca = Ca::create(&pki, "test CA", Validity::days(30)?)?;
        let hub = ca.issue_hub(&["127.0.0.1".into()], Validity::days(30)?)?;
        let data = dir.path().join("hub");
        let mut cfg = HubConfig::default();
        cfg.hub.data_dir = data.clone();
        cfg.hub.listen = "127.0.0.1:0".parse()?;
        cfg.hub.web_listen = "127.0.0.1:0".parse()?;
        cfg.hub.ca_cert = Some(ca.cert_path());
        cfg.hub.server_cert = Some(hub.cert_path);
        cfg.hub.server_key = Some(hub.key_path);
        cfg.hub.crl = Some(ca.crl_path());
        let shutdown = CancellationToken::new();
        tokio::spawn(markaz_hub::run(cfg, shutdown.clone()));
        let addr_file = data.join(markaz_hub::SYNC_ADDR_FILE);
        for _ in 0..200 {
            if data.join(markaz_hub::WEB_ADDR_FILE).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let sync: std::net::SocketAddr = std::fs::read_to_string(&addr_file)?.parse()?;
        let web = std::fs::read_to_string(data.join(markaz_hub::WEB_ADDR_FILE))?;
        Ok(Hub {
            _dir: dir,
            pki,
            data,
            sync_port: sync.port(),
            web,
            shutdown,
        })
    }

    fn bundle(&self, center: &str) -> anyhow::Result<PathBuf> {
        let ca = Ca::load(&self.pki)?;
        let issued = ca.issue_center(&center.parse()?, Validity::days(10)?)?;
        Ok(issued.cert_path.parent().context("bundle")?.to_path_buf())
    }

    /// A plain HTTP/1.0 request to the operator listener: (status line, body).
    async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let token = std::fs::read_to_string(self.data.join(markaz_hub::TOKEN_FILE))?;
        let mut s = tokio::net::TcpStream::connect(&self.web).await?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8(out)?;
        let (head, body) = text.split_once("\r\n\r\n").context("response")?;
        Ok((
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        ))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Center {
    id: CenterId,
    conn: Connection,
    docs: DocStore,
    client: HubClient,
}

impl Center {
    fn new(hub: &Hub, id: &str) -> anyhow::Result<Center> {
        let bundle = hub.bundle(id)?;
        let conn = Connection::open_in_memory()?;
        store::migrate(&conn)?;
        let actor = store::incarnation(&conn, id, 0)?;
        let config = client_config(&ClientTlsFiles::in_bundle(&bundle))?;
        let connector = Arc::new(TcpConnector::new("primary", Duration::from_secs(5)));
        let target = HubTarget::new("127.0.0.1", hub.sync_port)?;
        Ok(Center {
            id: id.parse()?,
            conn,
            docs: DocStore::new(actor, 16),
            client: HubClient::new(config, connector, target, ClientOptions::default()),
        })
    }

    async fn sync(&mut self) -> anyhow::Result<markaz_sync::protocol::SessionReport> {
        let now = || jiff::Timestamp::now().as_millisecond() as u64;
        let mut s = ClientSession::new(
            self.id.clone(),
            self.docs.actor().clone(),
            Clock::new(self.id.as_str()),
            Limits::default(),
        );
        let mut n = 0;
        while let Some(req) = s.next_request(&self.conn, &mut self.docs, now())? {
            n += 1;
            anyhow::ensure!(n < 100, "session does not end");
            let (status, body) = self
                .client
                .post("/sync/v1", "application/octet-stream", Bytes::from(req))
                .await?;
            anyhow::ensure!(status.is_success(), "status {status}");
            let tx = self.conn.transaction()?;
            s.handle_response(&tx, &mut self.docs, &body, now())?;
            tx.commit()?;
        }
        Ok(s.report().clone())
    }

    fn has(&self, id: &DocId) -> bool {
        self.conn
            .query_row(
                "SELECT 1 FROM doc_meta WHERE doc_id=?1",
                [id.as_str()],
                |_| Ok(()),
            )
            .is_ok()
    }

    fn new_case(&mut self, seq: u32) -> anyhow::Result<DocId> {
        let no = CaseNo::new("MID", 2026, seq)?;
        let c = NewCase {
            case_no: no.clone(),
            center: Some(self.id.clone()),
            service: "criminal_record".into(),
            citizen: "01020304050".parse()?,
            delivery: Delivery::Pickup {
                center: self.id.clone(),
            },
            fields: BTreeMap::new(),
            fee: None,
            created: CaseEvent {
                kind: CaseEventKind::Created,
                actor: "clerk".into(),
                desk: None,
                at: jiff::Timestamp::now(),
                hlc: "0000000000001.00000.midan".into(),
            },
        };
        let id = DocId::case(Some(&self.id), &no);
        self.docs
            .create(&self.conn, &id, |d| docs::create_case(d, &c))?;
        Ok(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sync_log_partial_replication_portal_and_pages() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
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
        .http("GET", "/api/v1/sync-log?center=midan", None)
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
    let (status, html) = hub.http("GET", "/", None).await?;
    assert!(status.contains("200"));
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""));
    assert!(html.contains("midan") && html.contains("qanawat"));
    let (_, html) = hub.http("GET", "/oversight?lang=en", None).await?;
    assert!(html.contains("lang=\"en\" dir=\"ltr\""));
    assert!(html.contains("Pending beyond target"));
    let (_, centers) = hub.http("GET", "/api/v1/centers", None).await?;
    let centers: Vec<serde_json::Value> = serde_json::from_str(&centers)?;
    assert_eq!(centers.len(), 2);
    assert!(centers.iter().all(|c| c["backlog"] == 0), "{centers:?}");
    Ok(())
}
