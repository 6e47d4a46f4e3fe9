//! [`HubClient`]: one kept-alive HTTP/1.1-over-mutual-TLS connection to the hub.
//!
//! Every request carries the uplink its connection runs over ([`UPLINK_HEADER`]:
//! `primary` or `modem`) and, between [`HubClient::start_session`] and
//! [`HubClient::end_session`], the session's id ([`SESSION_HEADER`], a UUID v4), so the
//! hub keeps one sync-log row per session with the uplink it used. [`HubClient::sync`]
//! posts one sync request to [`SYNC_PATH`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use markaz_sync::protocol::contract::{
    SESSION_HEADER, SYNC_CONTENT_TYPE, SYNC_PATH, UPLINK_HEADER, Uplink,
};

use super::connector::{BoxedStream, Connector};
use super::counting::{ByteCount, ByteCounters, CountingStream};

/// File names inside a center's certificate bundle (as `markaz pki center` writes it).
const BUNDLE_CA: &str = "ca.pem";
const BUNDLE_CERT: &str = "cert.pem";
const BUNDLE_KEY: &str = "key.pem";

/// The uplink a connector's connections run over, as the uplink header names it: the
/// modem for [`ModemConnector`](crate::ModemConnector) (named `modem`), the primary link
/// for every OS route (the laser link, a LAN).
pub fn uplink_of_connector(connector_name: &str) -> Uplink {
    if connector_name == Uplink::Modem.as_str() {
        Uplink::Modem
    } else {
        Uplink::Primary
    }
}

/// What went wrong talking to the hub. `is_transient` tells the sync loop whether to
/// retry later (link trouble) or to stop and report (configuration trouble).
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("while reading {path}: {source}")]
    ReadTls {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no {what}")]
    EmptyTls { path: PathBuf, what: &'static str },
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("{0:?} is not a valid hub host name or IP address")]
    BadHost(String),
    #[error("connecting to the hub through {uplink}: {source}")]
    Connect {
        uplink: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with the hub: {0}")]
    Handshake(std::io::Error),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("reading the response body: {0}")]
    Body(String),
    #[error("the hub's response is larger than {limit} bytes")]
    ResponseTooLarge { limit: usize },
}

impl UplinkError {
    /// Link trouble worth retrying later, as opposed to a configuration fault.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UplinkError::Connect { .. }
                | UplinkError::Handshake(_)
                | UplinkError::Timeout(_)
                | UplinkError::Http(_)
                | UplinkError::Body(_)
        )
    }
}

/// Where a center's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The governorate CA certificate: the hub's certificate must chain to it.
    pub ca: PathBuf,
    /// The center's client certificate (PEM).
    pub cert: PathBuf,
    /// The center's private key (PEM).
    pub key: PathBuf,
}

impl ClientTlsFiles {
    /// The files of a bundle directory written by `markaz pki center`: `ca.pem`,
    /// `cert.pem`, `key.pem`.
    pub fn in_bundle(dir: &Path) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: dir.join(BUNDLE_CA),
            cert: dir.join(BUNDLE_CERT),
            key: dir.join(BUNDLE_KEY),
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, UplinkError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| UplinkError::ReadTls {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(UplinkError::EmptyTls {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Builds the center's rustls client configuration: trusts only the governorate CA,
/// presents the center certificate, offers ALPN `http/1.1`, and keeps an in-memory
/// session cache. Build it once and share it: every [`HubClient`] built from the same
/// `Arc` resumes sessions from the same cache.
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, UplinkError> {
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca)? {
        roots.add(ca)?;
    }
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| UplinkError::ReadTls {
        path: files.key.clone(),
        source,
    })?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::in_memory_sessions(64);
    Ok(Arc::new(config))
}

/// The hub's address: where to connect, and the name its certificate must carry.
#[derive(Debug, Clone)]
pub struct HubTarget {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl HubTarget {
    /// `host` is a DNS name or an IP address; the hub's certificate must name it.
    pub fn new(host: &str, port: u16) -> Result<HubTarget, UplinkError> {
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| UplinkError::BadHost(host.to_string()))?;
        Ok(HubTarget {
            host: host.to_string(),
            port,
            server_name,
        })
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for HubTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Time and size bounds of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// TLS handshake (the connector applies its own connect timeout).
    pub handshake_timeout: Duration,
    /// One request: sending it, the response headers and the whole body.
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            handshake_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: 16 << 20,
        }
    }
}

struct Live {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    /// The uplink this connection was opened through (the link may change under it).
    uplink: Uplink,
    /// The connector's name when it opened this connection.
    opened_via: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A client of the hub over mutual TLS: owns one kept-alive connection and reconnects
/// through its [`Connector`] when it drops. Owned by the sync task (`&mut self`).
pub struct HubClient {
    tls: TlsConnector,
    connector: Arc<dyn Connector>,
    target: HubTarget,
    opts: ClientOptions,
    counters: ByteCounters,
    live: Option<Live>,
    connections: u64,
    last_handshake: Option<HandshakeKind>,
    session: Option<String>,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("target", &self.target)
            .field("uplink", &self.connector.name())
            .field("connected", &self.live.is_some())
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client that will connect to `target` through `connector` with `tls` (from
    /// [`client_config`]). Nothing is opened until the first request.
    pub fn new(
        tls: Arc<ClientConfig>,
        connector: Arc<dyn Connector>,
        target: HubTarget,
        opts: ClientOptions,
    ) -> HubClient {
        HubClient {
            tls: TlsConnector::from(tls),
            connector,
            target,
            opts,
            counters: ByteCounters::new(),
            live: None,
            connections: 0,
            last_handshake: None,
            session: None,
        }
    }

    /// Starts a sync session: a fresh UUID v4, sent as [`SESSION_HEADER`] with every
    /// request until [`HubClient::end_session`]. Returns it.
    pub fn start_session(&mut self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.session = Some(id.clone());
        id
    }

    /// Ends the session: later requests carry no session id.
    pub fn end_session(&mut self) {
        self.session = None;
    }

    /// The current session's id, if one is started.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Switches the uplink (e.g. laser → modem). The current connection is closed; the
    /// next request reconnects through `connector` (still resuming the TLS session).
    pub fn set_connector(&mut self, connector: Arc<dyn Connector>) {
        self.live = None;
        self.connector = connector;
    }

    /// The hub this client talks to.
    pub fn target(&self) -> &HubTarget {
        &self.target
    }

    /// Talks to another hub address from the next request on (`[sync] hub_urls`); the
    /// current connection is closed.
    pub fn set_target(&mut self, target: HubTarget) {
        self.live = None;
        self.target = target;
    }

    /// The name of the uplink in use, for the sync log.
    pub fn uplink(&self) -> &str {
        self.connector.name()
    }

    /// Bytes carried on the wire so far, both ways, TLS included (all connections).
    pub fn bytes(&self) -> ByteCount {
        self.counters.snapshot()
    }

    /// A handle on the same byte counters.
    pub fn counters(&self) -> ByteCounters {
        self.counters.clone()
    }

    /// How many connections (TCP + TLS) this client has opened.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// How the last TLS handshake went (`Resumed` when the session cache was used).
    pub fn last_handshake(&self) -> Option<HandshakeKind> {
        self.last_handshake
    }

    /// Closes the current connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.live = None;
    }

    /// POSTs one encoded sync request to the hub's [`SYNC_PATH`] (see [`HubClient::post`]).
    pub async fn sync(&mut self, request: Bytes) -> Result<(StatusCode, Bytes), UplinkError> {
        self.post(SYNC_PATH, SYNC_CONTENT_TYPE, request).await
    }

    /// POSTs `body` to `path` and returns the status and the whole response body. A
    /// failure on a reused connection is retried once on a fresh one (every sync message
    /// is idempotent); a timeout is not retried. A kept-alive connection opened through
    /// another uplink than the connector's current one is closed first, so a request
    /// always travels over (and names in its header) the uplink in use now.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), UplinkError> {
        let reused = self.live.as_ref().is_some_and(|l| !l.sender.is_closed());
        match self.post_once(path, content_type, body.clone()).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.live = None;
                if reused
                    && !matches!(
                        e,
                        UplinkError::Timeout(_) | UplinkError::ResponseTooLarge { .. }
                    )
                {
                    tracing::debug!(error = %e, "request failed on a kept-alive connection; retrying on a new one");
                    let r = self.post_once(path, content_type, body).await;
                    if r.is_err() {
                        self.live = None;
                    }
                    r
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn post_once(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), UplinkError> {
        let limit = self.opts.max_response_bytes;
        let timeout = self.opts.request_timeout;
        let session = self.session.clone();
        let host = format!("{}:{}", self.target.host, self.target.port);
        let live = self.ensure_connected().await?;
        let mut request = hyper::Request::post(path)
            .header(HOST, host)
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, body.len())
            .header(UPLINK_HEADER, live.uplink.as_str());
        if let Some(id) = session {
            request = request.header(SESSION_HEADER, id);
        }
        let request = request.body(Full::new(body))?;
        let exchange = async {
            live.sender.ready().await?;
            let response = live.sender.send_request(request).await?;
            let status = response.status();
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(UplinkError::ResponseTooLarge { limit });
            }
            let collected = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        UplinkError::ResponseTooLarge { limit }
                    } else {
                        UplinkError::Body(e.to_string())
                    }
                })?;
            Ok((status, collected.to_bytes()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UplinkError::Timeout("the request to the hub"))?
    }

    async fn ensure_connected(&mut self) -> Result<&mut Live, UplinkError> {
        if self.live.as_ref().is_some_and(|l| l.sender.is_closed()) {
            self.live = None;
        }
        // The uplink changed under a kept-alive connection (failover or failback): the
        // next request goes over the new uplink, not the old connection.
        if let Some(l) = &self.live
            && l.opened_via != self.connector.name()
        {
            tracing::debug!(from = %l.opened_via, to = self.connector.name(),
                "uplink changed; reconnecting");
            self.live = None;
        }
        if self.live.is_none() {
            let live = self.connect().await?;
            self.live = Some(live);
        }
        self.live.as_mut().ok_or(UplinkError::Timeout("connecting"))
    }

    async fn connect(&mut self) -> Result<Live, UplinkError> {
        let opened_via = self.connector.name().to_string();
        let uplink = uplink_of_connector(&opened_via);
        let raw: BoxedStream = self
            .connector
            .connect(&self.target.host, self.target.port)
            .await
            .map_err(|source| UplinkError::Connect {
                uplink: self.connector.name().to_string(),
                source,
            })?;
        let counted = CountingStream::new(raw, self.counters.clone());
        let tls = tokio::time::timeout(
            self.opts.handshake_timeout,
            self.tls.connect(self.target.server_name.clone(), counted),
        )
        .await
        .map_err(|_| UplinkError::Timeout("the TLS handshake"))?
        .map_err(UplinkError::Handshake)?;
        let kind = tls.get_ref().1.handshake_kind();
        self.last_handshake = kind;
        self.connections += 1;
        tracing::debug!(uplink = self.connector.name(), handshake = ?kind, "connected to the hub");
        let (sender, conn) = tokio::time::timeout(
            self.opts.handshake_timeout,
            http1::handshake(TokioIo::new(tls)),
        )
        .await
        .map_err(|_| UplinkError::Timeout("the HTTP handshake"))??;
        let driver = tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "hub connection ended");
            }
        });
        Ok(Live {
            sender,
            driver,
            uplink,
            opened_via,
        })
    }
}
