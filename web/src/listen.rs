//! A listener's limits, for the node's listener and both of the hub's: a cap on open
//! connections in total and per client address, and a time limit on a request's headers.
//!
//! Guarantees: one client address cannot hold more than `max_per_client` connections, so
//! it cannot use up the process's file descriptors or the total cap and lock everyone
//! else out (about 1,000 half-sent requests from one address did). A connection that
//! sends its headers too slowly (or stays idle between keep-alive requests) is closed
//! after `header_read_timeout`. A connection over a cap is accepted and closed at once
//! (on plain HTTP after a JSON 503, while few are being refused), so the queue of
//! pending connections keeps moving. The
//! total cap is lowered to fit the process's open-file limit, which is first raised to
//! its hard limit.
//!
//! The same listener serves HTTPS ([`serve_tls`], the node's `[server.tls]`): the TLS
//! handshake must end within the header-read timeout too, a refused connection is closed
//! without an answer (a plain 503 means nothing to a TLS client), and a client that
//! speaks plain HTTP to it gets a plain 400 that says to use `https://`, then the close.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Time allowed to receive a request's headers, and for an idle keep-alive
    /// connection to start its next request.
    pub header_read_timeout: Duration,
    /// On shutdown, how long an in-flight request may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_client: 64,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept for everything but connections (database, log, serial ports).
pub const RESERVED_FDS: u64 = 64;

impl Limits {
    /// These limits with the total lowered to fit an open-file limit of `fds`.
    pub fn fit_open_files(self, fds: u64) -> Limits {
        let room = usize::try_from(fds.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
        Limits {
            max_connections: self.max_connections.min(room),
            max_per_client: self.max_per_client.min(self.max_connections.min(room)),
            ..self
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit and returns the soft
/// limit now in force (`None` when it cannot be read).
#[allow(unsafe_code)] // each `unsafe` block here says why it is sound
pub fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Some(lim.rlim_cur as u64)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_per_client` are open from this address.
    PerClient,
}

/// Counts open connections, in total and per client address. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct GateState {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

/// An admitted connection; its slot is freed when this is dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Gate,
    ip: IpAddr,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            state: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, or says which cap it is over. Refusals are logged
    /// at most every 10 s, with their count (an attack must not flood the log).
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = ip.to_canonical();
        let mut s = self.lock();
        let from_ip = s.per_client.get(&ip).copied().unwrap_or(0);
        let refused = if s.total >= self.limits.max_connections {
            Some(Refused::Total)
        } else if from_ip >= self.limits.max_per_client {
            Some(Refused::PerClient)
        } else {
            None
        };
        if let Some(why) = refused {
            s.refused_since_log += 1;
            if s.last_log
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                tracing::warn!(
                    client = %ip,
                    cap = ?why,
                    open = s.total,
                    from_client = from_ip,
                    refused = s.refused_since_log,
                    "connections refused: over the listener's limit"
                );
                s.refused_since_log = 0;
                s.last_log = Some(Instant::now());
            }
            return Err(why);
        }
        s.total += 1;
        *s.per_client.entry(ip).or_insert(0) += 1;
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Open connections: in total, and from `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let s = self.lock();
        (
            s.total,
            s.per_client.get(&ip.to_canonical()).copied().unwrap_or(0),
        )
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.ip);
            }
        }
    }
}

/// What a refused plain-HTTP connection reads before it is closed.
const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 99\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; try again shortly\"}}\n";

/// Refused connections answered at the same time at most; more are closed at once.
const ANSWERING_REFUSED: usize = 64;

/// Time a refused connection gets to read its 503.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// Accepts the next connection admitted by `gate`. Refused ones are handed to `refuse`
/// (which must not wait: dropping the stream closes it); accept errors (EMFILE…) back off
/// instead of spinning. `None` once `shutdown` is cancelled.
pub async fn accept(
    listener: &TcpListener,
    gate: &Gate,
    shutdown: &CancellationToken,
    refuse: &impl Fn(TcpStream),
) -> Option<(TcpStream, SocketAddr, Permit)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match gate.admit(peer.ip()) {
            Ok(permit) => return Some((tcp, peer, permit)),
            Err(_) => refuse(tcp),
        }
    }
}

/// Why a server certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the certificate and key do not go together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS configuration of an HTTPS listener: the certificate chain in `cert` (PEM, the
/// leaf first) and its private key in `key`; HTTP/1.1, no client certificates.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsFilesError> {
    fn read(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsFilesError + '_ {
        move |source| TlsFilesError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(read(cert))?;
    if chain.is_empty() {
        return Err(TlsFilesError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(read(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over plain HTTP/1.1 on `listener` within `limits` until `shutdown`, then
/// lets open connections finish their current request (up to `limits.shutdown_grace`).
/// Each request gets `ConnectInfo<SocketAddr>` in its extensions.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, None, shutdown).await
}

/// Like [`serve`], over HTTPS with `tls` (see [`tls_config`]).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, Some(tls), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = match raise_open_files_limit() {
        Some(fds) => limits.fit_open_files(fds),
        None => limits,
    };
    let gate = Gate::new(limits);
    let tracker = TaskTracker::new();
    // A refused connection is told why (503, JSON) and read until the client closes, so
    // the kernel does not reset it before the client reads the answer — by a bounded
    // number of tasks: under an attack the rest are closed at once.
    let answering = Arc::new(tokio::sync::Semaphore::new(ANSWERING_REFUSED));
    let plain = tls.is_none();
    let refuse = move |tcp: TcpStream| {
        if !plain {
            return; // dropped: closed at once
        }
        if let Ok(slot) = answering.clone().try_acquire_owned() {
            tokio::spawn(async move {
                answer_refused(tcp).await;
                drop(slot);
            });
        }
    };
    while let Some((tcp, peer, permit)) = accept(&listener, &gate, &shutdown, &refuse).await {
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        tracker.spawn(async move {
            match acceptor {
                None => connection(tcp, peer, app, limits, shutdown).await,
                Some(acceptor) => {
                    if let Some(tls) = handshake(acceptor, tcp, peer, limits).await {
                        connection(tls, peer, app, limits, shutdown).await;
                    }
                }
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn answer_refused(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSED_LINGER, async {
        tcp.write_all(REFUSED_RESPONSE).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// What a client that sends plain HTTP to an HTTPS port reads before it is closed.
fn plain_http_answer() -> Vec<u8> {
    let body = "{\"error\":{\"code\":\"https_required\",\"message\":\"this port speaks HTTPS: open the address with https://\"}}\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The TLS handshake of an accepted connection, within the header-read timeout. Plain
/// HTTP is told to use HTTPS; a failed or slow handshake is logged (debug) and closed.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    mut tcp: TcpStream,
    peer: SocketAddr,
    limits: Limits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let within = limits.header_read_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) => {
            tracing::debug!(%peer, "plain HTTP on the HTTPS port: told to use https://");
            let _ = tokio::time::timeout(REFUSED_LINGER, async {
                tcp.write_all(&plain_http_answer()).await?;
                tcp.shutdown().await?;
                // Read what the client sent, so the close is not a reset that loses the
                // answer.
                let mut sink = [0u8; 1024];
                use tokio::io::AsyncReadExt;
                while tcp.read(&mut sink).await? > 0 {}
                Ok::<(), std::io::Error>(())
            })
            .await;
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout(within, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake too slow; closed");
            None
        }
    }
}

async fn connection<I>(
    tcp: I,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await {
                Ok(Err(error)) => tracing::debug!(%error, %peer, "connection ended with an error during shutdown"),
                Ok(Ok(())) => {}
                Err(_) => tracing::warn!(%peer, "connection still busy at the end of the shutdown grace; dropped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_gate_caps_per_client_and_in_total_and_frees_on_drop() {
        let gate = Gate::new(Limits {
            max_connections: 5,
            max_per_client: 3,
            ..Limits::default()
        });
        let a: Vec<Permit> = (0..3)
            .map(|_| gate.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerClient);
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refused::PerClient
        );
        let b1 = gate.admit(ip("10.0.0.2")).unwrap();
        let _b2 = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), Refused::Total);
        drop(b1);
        let _c = gate.admit(ip("10.0.0.3")).unwrap();
        drop(a);
        assert_eq!(gate.open(ip("10.0.0.1")), (2, 0));
        gate.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn the_total_fits_the_open_file_limit() {
        let l = Limits::default().fit_open_files(256);
        assert_eq!(l.max_connections, 256 - RESERVED_FDS as usize);
        assert_eq!(Limits::default().fit_open_files(1 << 20), Limits::default());
    }

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, shutdown.clone()));
        (addr, shutdown)
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_over_its_cap_gets_a_json_503_and_others_are_served() {
        let (addr, shutdown) = start(Limits {
            max_per_client: 2,
            ..Limits::default()
        })
        .await;
        // Two half-sent requests hold this client's two slots.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = get(addr).await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("too_many_connections"), "{refused}");
        let body = refused.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str::<serde_json::Value>(body).expect("the body is JSON");
        assert!(refused.contains(&format!("Content-Length: {}\r\n", body.len())));
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ok = get(addr).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("127.0.0.1"), "ConnectInfo is set: {ok}");
        shutdown.cancel();
    }

    /// A CA and a leaf for 127.0.0.1 signed by it, written to `dir`: (ca.pem, cert, key).
    fn ca_and_leaf(dir: &Path) -> (String, PathBuf, PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (ca_cert.pem(), cert_path, key_path)
    }

    #[tokio::test]
    async fn https_serves_and_plain_http_is_told_to_use_https() {
        let dir = std::env::temp_dir().join(format!("markaz-listen-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = ca_and_leaf(&dir);
        assert!(matches!(
            tls_config(&cert, &dir.join("absent.pem")),
            Err(TlsFilesError::Read { .. })
        ));
        let tls = tls_config(&cert, &key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let shutdown = CancellationToken::new();
        let limits = Limits {
            header_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        tokio::spawn(serve_tls(listener, app, limits, tls, shutdown.clone()));

        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let resp = client.get(format!("https://{addr}/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "127.0.0.1");
        // A client that does not trust the CA is refused by its own TLS check.
        let untrusting = reqwest::Client::builder().build().unwrap();
        assert!(
            untrusting
                .get(format!("https://{addr}/"))
                .send()
                .await
                .is_err()
        );

        let plain = get(addr).await;
        assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
        assert!(plain.contains("https_required"), "{plain}");
        let body = plain.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str::<serde_json::Value>(body).expect("the body is JSON");

        // A connection that never starts its handshake is closed after the timeout.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the silent connection was not closed");
        // And the server still serves.
        let resp = client.get(format!("https://{addr}/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off_after_the_header_read_timeout() {
        let (addr, shutdown) = start(Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the connection was not closed");
        assert!(started.elapsed() < Duration::from_secs(2));
        shutdown.cancel();
    }
}
