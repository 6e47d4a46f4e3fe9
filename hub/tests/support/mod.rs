//! Helpers shared by the hub's integration tests: a hub started with `markaz_hub::run`
//! (mutual TLS on loopback, its own temp dir and ports) and an in-process center (a
//! document store in memory, `ClientSession` over the node's `HubClient`), so a test
//! reads like its scenario: `let hub = Hub::start().await?; let mut midan =
//! Center::new(&hub, "midan")?; midan.sync().await?;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_config::{HubConfig, HubStorage, StorageEngine};
use markaz_hub::pki::{Ca, Validity};
use markaz_sync::docs::{self, DocId, NewCase};
use markaz_sync::hlc::HlcClock;
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Delivery};
use markaz_sync::model::{CaseNo, CenterId};
use markaz_sync::protocol::{ClientSession, Limits};
use markaz_sync::store::{self, DocStore};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use rusqlite::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub struct Hub {
    pub _dir: tempfile::TempDir,
    pub pki: PathBuf,
    pub data: PathBuf,
    pub sync_port: u16,
    pub web: String,
    pub shutdown: CancellationToken,
    pub storage: HubStorage,
    /// An administrator's API token (`tester`, created before the hub started).
    pub token: String,
}

impl Hub {
    /// A hub on SQLite (the default store).
    pub async fn start() -> anyhow::Result<Hub> {
        Self::start_with(HubStorage::default()).await
    }

    /// A hub on a fresh PostgreSQL database of the test cluster; `None` (printed) when
    /// PostgreSQL is not available and CI is not set.
    pub async fn start_pg(test: &str) -> anyhow::Result<Option<Hub>> {
        let Some(cluster) = markaz_e2e::pg::cluster_or_skip(test) else {
            return Ok(None);
        };
        let url = cluster.fresh_db()?;
        let storage = HubStorage {
            engine: StorageEngine::Postgres,
            url: Some(url.try_into()?),
            pool_size: 3,
            ..HubStorage::default()
        };
        Ok(Some(Self::start_with(storage).await?))
    }

    pub async fn start_with(storage: HubStorage) -> anyhow::Result<Hub> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        Ca::create(&pki, "test CA", Validity::days(30)?)?;
        Self::run_on(dir, pki, storage).await
    }

    /// Another hub process on the same store and the same CA (a hub of a pair behind
    /// the centers' address list).
    pub async fn sibling(&self) -> anyhow::Result<Hub> {
        Self::run_on(tempfile::tempdir()?, self.pki.clone(), self.storage.clone()).await
    }

    /// A hub process with the same CA on another store (the same hub moved to
    /// PostgreSQL, say).
    pub async fn on_store(&self, storage: HubStorage) -> anyhow::Result<Hub> {
        Self::run_on(tempfile::tempdir()?, self.pki.clone(), storage).await
    }

    async fn run_on(
        dir: tempfile::TempDir,
        pki: PathBuf,
        storage: HubStorage,
    ) -> anyhow::Result<Hub> {
        let ca = Ca::load(&pki)?;
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
        cfg.storage = storage.clone();
        let token = admin_token(&cfg).await?;
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(markaz_hub::run(cfg, shutdown.clone()));
        let addr_file = data.join(markaz_hub::SYNC_ADDR_FILE);
        // The hub writes the address files after binding; a file can exist before its
        // content is written, so wait until the address reads.
        let written = || {
            std::fs::read_to_string(data.join(markaz_hub::WEB_ADDR_FILE))
                .ok()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .is_some()
        };
        for _ in 0..400 {
            if written() || run.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if run.is_finished() {
            run.await??;
            anyhow::bail!("the hub stopped at once");
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
            storage,
            token,
        })
    }

    pub fn bundle(&self, center: &str) -> anyhow::Result<PathBuf> {
        let ca = Ca::load(&self.pki)?;
        let issued = ca.issue_center(&center.parse()?, Validity::days(10)?)?;
        Ok(issued.cert_path.parent().context("bundle")?.to_path_buf())
    }

    /// A plain HTTP/1.0 request to the operator listener: (status line, body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let token = &self.token;
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

/// Creates the administrator `tester` in the hub's data directory and returns an API
/// token of theirs (what `markaz operator add --token` does).
pub async fn admin_token(cfg: &HubConfig) -> anyhow::Result<String> {
    use markaz_hub::operators::{NewOperator, OperatorError, Role};
    let cfg = cfg.clone();
    // The stores' clients block (PostgreSQL's runs its own runtime): off the test's.
    tokio::task::spawn_blocking(move || {
        let new = NewOperator {
            username: "tester".into(),
            full_name: "Test operator".into(),
            roles: vec![Role::Admin],
            language: "ar".into(),
        };
        match markaz_hub::add_operator(
            &cfg,
            &new,
            Some("correct horse battery".into()),
            Some("tests"),
        ) {
            Ok(added) => added.token.context("a token"),
            // A sibling hub on the same database: `tester` is there already.
            Err(e) if matches!(e.downcast_ref(), Some(OperatorError::Exists(_))) => {
                markaz_hub::add_operator_token(&cfg, "tester", "tests")
            }
            Err(e) => Err(e),
        }
    })
    .await?
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Center {
    pub id: CenterId,
    pub conn: Connection,
    pub docs: DocStore,
    pub client: HubClient,
}

impl Center {
    pub fn new(hub: &Hub, id: &str) -> anyhow::Result<Center> {
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

    /// Sync with `hub` from now on (another process of the same hub: same CA).
    pub fn switch_to(&mut self, hub: &Hub) -> anyhow::Result<()> {
        let bundle = hub.bundle(self.id.as_str())?;
        let config = client_config(&ClientTlsFiles::in_bundle(&bundle))?;
        let connector = Arc::new(TcpConnector::new("primary", Duration::from_secs(5)));
        let target = HubTarget::new("127.0.0.1", hub.sync_port)?;
        self.client = HubClient::new(config, connector, target, ClientOptions::default());
        Ok(())
    }

    /// One sync session without the session header (as an older node would run it).
    pub async fn sync(&mut self) -> anyhow::Result<markaz_sync::protocol::SessionReport> {
        self.run_session().await
    }

    /// One sync session the way the node's sync task runs it: every request carries the
    /// session's id. Returns the id and the report.
    pub async fn sync_in_session(
        &mut self,
    ) -> anyhow::Result<(String, markaz_sync::protocol::SessionReport)> {
        let id = self.client.start_session();
        let r = self.run_session().await;
        self.client.end_session();
        Ok((id, r?))
    }

    async fn run_session(&mut self) -> anyhow::Result<markaz_sync::protocol::SessionReport> {
        let now = || jiff::Timestamp::now().as_millisecond() as u64;
        let mut s = ClientSession::new(
            self.id.clone(),
            self.docs.actor().clone(),
            HlcClock::new(self.id.as_str()),
            Limits::default(),
        );
        let mut n = 0;
        while let Some(req) = s.next_request(&self.conn, &mut self.docs, now())? {
            n += 1;
            anyhow::ensure!(n < 100, "session does not end");
            let (status, body) = self.client.sync(Bytes::from(req)).await?;
            anyhow::ensure!(status.is_success(), "status {status}");
            let tx = self.conn.transaction()?;
            s.handle_response(&tx, &mut self.docs, &body, now())?;
            tx.commit()?;
        }
        Ok(s.report().clone())
    }

    pub fn has(&self, id: &DocId) -> bool {
        self.conn
            .query_row(
                "SELECT 1 FROM doc_meta WHERE doc_id=?1",
                [id.as_str()],
                |_| Ok(()),
            )
            .is_ok()
    }

    pub fn new_case(&mut self, seq: u32) -> anyhow::Result<DocId> {
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
