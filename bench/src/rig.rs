//! The benchmark rig: the real hub (`markaz_hub::run`, its writer thread, its mutual-TLS
//! sync endpoint) in this process on loopback, with a fresh PKI, and centers that sync
//! with it the way the node does: `markaz_sync::protocol::ClientSession` driven over the
//! node's `HubClient` (HTTP/1.1 over mutual TLS, byte counters on the raw stream, TLS
//! session resumption). Each center's documents live in the sync store tables of its own
//! SQLite file, the same tables the node keeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use markaz_config::{HubConfig, HubStorage};
use markaz_hub::pki::{Ca, Validity};
use markaz_sync::hlc::HlcClock;
use markaz_sync::model::ids::CenterId;
use markaz_sync::protocol::{ClientSession, Limits, SessionReport};
use markaz_sync::store::{self, DocStore};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, Connector, HubClient, HubTarget, TcpConnector, client_config,
};
use rusqlite::Connection;
use rustls::{ClientConfig, HandshakeKind};
use tokio_util::sync::CancellationToken;

/// A hub running in this process.
pub struct HubRig {
    pki: PathBuf,
    data: PathBuf,
    storage: HubStorage,
    sync_port: u16,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl HubRig {
    /// A new CA, hub certificate and hub database under `dir`, and the hub serving on
    /// ephemeral loopback ports.
    pub async fn start(dir: &Path) -> anyhow::Result<HubRig> {
        Self::start_with(dir, HubStorage::default()).await
    }

    /// Like [`HubRig::start`], the hub's data in `storage` (SQLite under `dir`, or a
    /// PostgreSQL database).
    pub async fn start_with(dir: &Path, storage: HubStorage) -> anyhow::Result<HubRig> {
        let pki = dir.join("pki");
        let ca = Ca::create(&pki, "bench CA", Validity::days(30)?)?;
        ca.issue_hub(&["127.0.0.1".into()], Validity::days(30)?)?;
        Self::run_on(pki, dir.join("hub"), storage).await
    }

    /// A second hub instance on the same store and PKI (one of two hub processes sharing
    /// a PostgreSQL database), its own data directory (address files) under `dir`.
    pub async fn sibling(&self, dir: &Path) -> anyhow::Result<HubRig> {
        Self::run_on(self.pki.clone(), dir.join("hub"), self.storage.clone()).await
    }

    async fn run_on(pki: PathBuf, data: PathBuf, storage: HubStorage) -> anyhow::Result<HubRig> {
        let ca = Ca::load(&pki)?;
        let hub_dir = markaz_hub::pki::hub_dir(&pki);
        let mut cfg = HubConfig::default();
        cfg.hub.data_dir = data.clone();
        cfg.hub.listen = "127.0.0.1:0".parse()?;
        cfg.hub.web_listen = "127.0.0.1:0".parse()?;
        cfg.hub.ca_cert = Some(ca.cert_path());
        cfg.hub.server_cert = Some(hub_dir.join(markaz_hub::pki::CERT));
        cfg.hub.server_key = Some(hub_dir.join(markaz_hub::pki::KEY));
        cfg.hub.crl = Some(ca.crl_path());
        cfg.storage = storage.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(markaz_hub::run(cfg, shutdown.clone()));
        let addr_file = data.join(markaz_hub::SYNC_ADDR_FILE);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !data.join(markaz_hub::WEB_ADDR_FILE).exists() {
            anyhow::ensure!(Instant::now() < deadline, "the hub did not start in 20 s");
            if task.is_finished() {
                task.await??;
                anyhow::bail!("the hub stopped while starting");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sync: std::net::SocketAddr = std::fs::read_to_string(&addr_file)?.trim().parse()?;
        Ok(HubRig {
            pki,
            data,
            storage,
            sync_port: sync.port(),
            shutdown,
            task,
        })
    }

    /// The port of the mutual-TLS sync endpoint.
    pub fn sync_port(&self) -> u16 {
        self.sync_port
    }

    /// The hub's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Issues `center`'s certificate bundle; returns its directory.
    pub fn bundle(&self, center: &CenterId) -> anyhow::Result<PathBuf> {
        let ca = Ca::load(&self.pki)?;
        let issued = ca.issue_center(&center.as_str().parse()?, Validity::days(10)?)?;
        Ok(issued
            .cert_path
            .parent()
            .context("the bundle directory")?
            .to_path_buf())
    }

    /// Stops the hub and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("the hub did not stop in 30 s")???;
        Ok(())
    }
}

/// What one sync session cost.
#[derive(Debug, Clone)]
pub struct SessionCost {
    pub report: SessionReport,
    /// HTTP requests (each one round trip).
    pub requests: usize,
    /// Bytes on the wire, TLS records and handshakes included.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Sync message bytes (HTTP bodies) each way: the wire minus TLS and HTTP.
    pub body_up: u64,
    pub body_down: u64,
    pub elapsed: Duration,
    /// Connections opened during the session, and how the last handshake went.
    pub connections: u64,
    pub handshake: Option<HandshakeKind>,
}

impl SessionCost {
    pub fn bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }
}

/// A center: its document store in a SQLite file and its TLS client configuration.
pub struct Center {
    pub id: CenterId,
    pub conn: Connection,
    pub docs: DocStore,
    tls: Arc<ClientConfig>,
    clock: HlcClock,
    pub limits: Limits,
}

impl Center {
    /// A center with an empty store at `db`, holding the certificate bundle `bundle`.
    pub fn open(db: &Path, id: CenterId, bundle: &Path) -> anyhow::Result<Center> {
        let conn =
            Connection::open(db).with_context(|| format!("while opening {}", db.display()))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        store::migrate(&conn)?;
        let actor = store::incarnation(&conn, id.as_str(), 0)?;
        let tls = client_config(&ClientTlsFiles::in_bundle(bundle))?;
        Ok(Center {
            clock: HlcClock::new(id.as_str()),
            id,
            conn,
            docs: DocStore::new(actor, 256),
            tls,
            limits: Limits::default(),
        })
    }

    /// A client to the hub on `127.0.0.1:port` through a plain TCP connector named
    /// `uplink`. Clients of one center share its TLS session cache.
    pub fn client(&self, port: u16, uplink: &str) -> anyhow::Result<HubClient> {
        let connector: Arc<dyn Connector> =
            Arc::new(TcpConnector::new(uplink, Duration::from_secs(10)));
        self.client_via(port, connector)
    }

    /// A client through `connector`.
    pub fn client_via(
        &self,
        port: u16,
        connector: Arc<dyn Connector>,
    ) -> anyhow::Result<HubClient> {
        let opts = ClientOptions {
            handshake_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_response_bytes: 64 << 20,
        };
        Ok(HubClient::new(
            self.tls.clone(),
            connector,
            HubTarget::new("127.0.0.1", port)?,
            opts,
        ))
    }

    /// Local changes of this center (what a catch-up must carry): (count, raw bytes).
    pub fn local_changes(&self) -> anyhow::Result<(usize, Vec<u8>)> {
        let mut st = self
            .conn
            .prepare("SELECT bytes FROM changes WHERE local = 1 ORDER BY seq")?;
        let mut raw = Vec::new();
        let mut n = 0;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let b: Vec<u8> = r.get(0)?;
            raw.extend_from_slice(&b);
            n += 1;
        }
        Ok((n, raw))
    }

    /// Runs one whole session through `client`, the way the node's sync task does: each
    /// request built from the store, POSTed, and each reply merged in one transaction.
    pub async fn sync(&mut self, client: &mut HubClient) -> anyhow::Result<SessionCost> {
        let now = || u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let actor = self.docs.actor().clone();
        let clock = std::mem::replace(&mut self.clock, HlcClock::new(self.id.as_str()));
        let mut s = ClientSession::new(self.id.clone(), actor, clock, self.limits);
        let bytes0 = client.bytes();
        let conns0 = client.connections();
        let started = Instant::now();
        let mut requests = 0;
        let (mut body_up, mut body_down) = (0u64, 0u64);
        while let Some(req) = s.next_request(&self.conn, &mut self.docs, now())? {
            requests += 1;
            body_up += req.len() as u64;
            anyhow::ensure!(requests <= 100_000, "the session does not end");
            let (status, body) = client
                .sync(Bytes::from(req))
                .await
                .context("while posting to the hub")?;
            body_down += body.len() as u64;
            anyhow::ensure!(
                status.is_success() || !body.is_empty(),
                "the hub answered {status}"
            );
            let tx = self.conn.transaction()?;
            s.handle_response(&tx, &mut self.docs, &body, now())?;
            tx.commit()?;
        }
        let elapsed = started.elapsed();
        let bytes = client.bytes().since(bytes0);
        let report = s.report().clone();
        self.clock = s.into_clock();
        Ok(SessionCost {
            report,
            requests,
            bytes_up: bytes.up,
            bytes_down: bytes.down,
            body_up,
            body_down,
            elapsed,
            connections: client.connections() - conns0,
            handshake: client.last_handshake(),
        })
    }
}
