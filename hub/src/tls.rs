//! The hub's side of the mutual-TLS pipe: a rustls server configuration that admits only
//! centers holding a valid, unrevoked certificate from the governorate CA, and an accept
//! loop that serves an axum [`Router`] over it.
//!
//! Guarantees:
//! - no request reaches the router without a client certificate that chains to the CA,
//!   is inside its validity window and is not on the CRL (rustls' webpki verifier with
//!   the CRL; unknown revocation status is refused);
//! - every request carries the verified [`CenterIdentity`] in its extensions, parsed from
//!   the peer certificate (CN and the `urn:markaz:center:<id>` URI SAN must agree), so a
//!   handler authorises with `Extension<CenterIdentity>` — never from the body;
//! - the TLS handshake has a timeout, request headers have a read timeout, and on
//!   shutdown every connection finishes its in-flight request and closes;
//! - a CRL change takes effect with [`ServerTls::reload`]: new connections use the new
//!   configuration, whose fresh session cache also voids every resumable session issued
//!   before, so a revoked center cannot come back through TLS session resumption; connections
//!   already open finish their request in flight and close, so a kept-alive connection
//!   does not outlive a revocation either.
//!
//! TLS 1.3 and 1.2 (ring provider), ALPN `http/1.1`, stateful session resumption (a
//! short session id the hub looks up in memory, for both versions), because a 3G round
//! trip costs hundreds of milliseconds.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use markaz_sync::model::CenterId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{HandshakeKind, RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::pki::{self, CENTER_URI_PREFIX, Serial};

/// The protocol offered with ALPN.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why the server's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("while reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("the CA certificate {path} is not usable as a trust anchor: {source}")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the client certificate verifier could not be built (bad CRL?): {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a verified peer certificate does not name a center. Only reachable with a
/// certificate the CA signed without the center fields (e.g. the hub's own).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the peer certificate is not valid X.509")]
    NotX509,
    #[error("the peer certificate has no subject CN")]
    NoCommonName,
    #[error("the peer certificate has no {CENTER_URI_PREFIX}<id> URI SAN")]
    NoCenterUri,
    #[error("the center id {0:?} in the certificate is not a valid center id")]
    BadCenterId(String),
    #[error("the certificate's CN {cn:?} and URI SAN {uri:?} name different centers")]
    Mismatch { cn: String, uri: String },
}

/// The center at the other end of a verified connection, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterIdentity {
    pub center_id: CenterId,
    /// The serial of the certificate it presented (for the sync log and revocation).
    pub serial: Serial,
}

impl CenterIdentity {
    /// Reads the identity from a (verified) certificate in DER form: the subject CN and the
    /// `urn:markaz:center:<id>` URI SAN must both be present, valid and equal.
    pub fn from_certificate(der: &[u8]) -> Result<CenterIdentity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::NotX509)?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or(IdentityError::NoCommonName)?;
        let san = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .ok_or(IdentityError::NoCenterUri)?;
        let uri_id = san
            .value
            .general_names
            .iter()
            .find_map(|g| match g {
                GeneralName::URI(u) => u.strip_prefix(CENTER_URI_PREFIX),
                _ => None,
            })
            .ok_or(IdentityError::NoCenterUri)?;
        if uri_id != cn {
            return Err(IdentityError::Mismatch {
                cn: cn.to_string(),
                uri: uri_id.to_string(),
            });
        }
        let center_id = cn
            .parse::<CenterId>()
            .map_err(|_| IdentityError::BadCenterId(cn.to_string()))?;
        Ok(CenterIdentity {
            center_id,
            serial: Serial::from_der_bytes(cert.raw_serial()),
        })
    }
}

/// Where the hub's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The governorate CA certificate: client certificates must chain to it.
    pub ca: PathBuf,
    /// The hub's server certificate (PEM, leaf first).
    pub cert: PathBuf,
    /// The hub's server key (PEM, PKCS#8/SEC1/PKCS#1).
    pub key: PathBuf,
    /// The CA's CRL (PEM). Required: a hub without one could not refuse a revoked center.
    pub crl: PathBuf,
}

impl ServerTlsFiles {
    /// The files in the layout `hub::pki` writes: `ca.pem`, `hub/cert.pem`, `hub/key.pem`,
    /// `crl.pem`.
    pub fn in_pki_dir(dir: &Path) -> ServerTlsFiles {
        ServerTlsFiles {
            ca: dir.join(pki::CA_CERT),
            cert: pki::hub_dir(dir).join(pki::CERT),
            key: pki::hub_dir(dir).join(pki::KEY),
            crl: dir.join(pki::CRL),
        }
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Builds the hub's rustls configuration from `files`: client certificate REQUIRED,
/// chaining to the CA, checked against the CRL, within its validity window.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca)? {
        roots.add(ca).map_err(|source| TlsError::BadCa {
            path: files.ca.clone(),
            source,
        })?;
    }
    let crls = CertificateRevocationListDer::pem_file_iter(&files.crl)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            path: files.crl.clone(),
            source,
        })?;
    if crls.is_empty() {
        return Err(TlsError::Empty {
            path: files.crl.clone(),
            what: "CRL",
        });
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        // The trust anchor is the CA itself; only leaves are on the CRL.
        .only_check_end_entity_revocation()
        .build()?;
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    // Stateful resumption: the hub keeps each session's state (with the center's
    // certificate chain) in memory and hands out a short id. A stateless ticket would
    // carry that chain sealed — about a kilobyte each way on every resumption, which a
    // nothing-new sync over 3G pays for. One ticket per handshake is enough: a center
    // keeps one connection. A hub restart or a reload (new cache) voids every id.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// Resumable sessions the hub remembers (a few per center; the oldest are dropped).
pub const SESSION_CACHE: usize = 16_384;

/// The hub's current TLS configuration, reloadable while serving. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    files: ServerTlsFiles,
    current: Arc<watch::Sender<Arc<ServerConfig>>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the configuration from `files`.
    pub fn load(files: ServerTlsFiles) -> Result<ServerTls, TlsError> {
        let config = server_config(&files)?;
        Ok(ServerTls {
            files,
            current: Arc::new(watch::Sender::new(config)),
        })
    }

    /// Re-reads the files (after `markaz pki revoke`, or a renewed hub certificate). New
    /// connections use the new configuration; on error the old one stays in force.
    /// Connections already open keep going until they close.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        self.current.send_replace(config);
        tracing::info!(crl = %self.files.crl.display(), "hub TLS configuration reloaded");
        Ok(())
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.borrow().clone()
    }

    /// Polls the files every `every` and reloads when one changed (modification time or
    /// size), until `shutdown`. So `markaz pki revoke` on the hub's PKI directory takes
    /// effect without a restart. A failed reload is logged and the old configuration
    /// stays; it is retried at the next change.
    pub async fn reload_on_change(self, every: Duration, shutdown: CancellationToken) {
        let mut seen = self.fingerprint();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = self.fingerprint();
            if now == seen {
                continue;
            }
            seen = now;
            if let Err(error) = self.reload() {
                tracing::error!(%error, "hub TLS files changed but do not load; keeping the old configuration");
            }
        }
    }

    fn fingerprint(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        [
            &self.files.ca,
            &self.files.cert,
            &self.files.key,
            &self.files.crl,
        ]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
    }
}

/// Timeouts and connection caps of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed for a TLS handshake (a slow 3G client needs a few round trips).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers, and for an idle keep-alive
    /// connection to start its next request.
    pub header_read_timeout: Duration,
    /// On shutdown, how long an in-flight request may take to finish.
    pub shutdown_grace: Duration,
    /// Open connections in total (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Open connections from one address (centers behind one NAT share one).
    pub max_per_client: usize,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            handshake_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 4096,
            max_per_client: 64,
        }
    }
}

/// Serves `app` over mutual TLS on `listener` until `shutdown` is cancelled, then lets
/// open connections finish their current request (up to `opts.shutdown_grace`).
///
/// Each request gets the peer's [`CenterIdentity`] and `ConnectInfo<SocketAddr>` in its
/// extensions. Connections refused at the handshake are logged (with the reason rustls
/// gives: unknown CA, expired, revoked, no certificate) and never reach `app`.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    app: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let limits = markaz_web::listen::Limits {
        max_connections: opts.max_connections,
        max_per_client: opts.max_per_client,
        header_read_timeout: opts.header_read_timeout,
        shutdown_grace: opts.shutdown_grace,
    };
    let limits = match markaz_web::listen::raise_open_files_limit() {
        Some(fds) => limits.fit_open_files(fds),
        None => limits,
    };
    let gate = markaz_web::listen::Gate::new(limits);
    // Over a cap: closed before the TLS handshake (nothing to say in plain text).
    let refuse = drop::<tokio::net::TcpStream>;
    while let Some((tcp, peer, permit)) =
        markaz_web::listen::accept(&listener, &gate, &shutdown, &refuse).await
    {
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current());
        let reloaded = tls.current.subscribe();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                connection(tcp, peer, acceptor, reloaded, app, opts, shutdown).await;
                drop(permit);
            }
            .instrument(tracing::info_span!("hub_conn", %peer)),
        );
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    mut reloaded: watch::Receiver<Arc<ServerConfig>>,
    app: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    reloaded.mark_unchanged();
    let stream = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        // A center's link probe connects and closes without a handshake, every second:
        // not worth a warning.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%error, "connection closed before the TLS handshake (a link probe?)");
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(timeout = ?opts.handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
    let identity = match session.peer_certificates().and_then(|chain| chain.first()) {
        Some(der) => CenterIdentity::from_certificate(der),
        // Unreachable with the verifier above (it requires a certificate); refuse anyway.
        None => Err(IdentityError::NoCommonName),
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(%error, "verified certificate names no center; closing");
            return;
        }
    };
    let span = tracing::info_span!("center", center = %identity.center_id, serial = %identity.serial, resumed);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(identity.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    async {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            // A reload may have revoked this center: finish the request in flight, then
            // close, so its next request is verified again on a new handshake.
            Ok(()) = reloaded.changed() => {
                tracing::info!("TLS configuration reloaded; closing the connection after its request");
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(opts.shutdown_grace, conn.as_mut()).await {
                    Ok(Err(error)) => tracing::debug!(%error, "connection ended with an error after the reload"),
                    Ok(Ok(())) => {}
                    Err(_) => tracing::warn!("connection still busy at the end of the grace after a reload; dropped"),
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(opts.shutdown_grace, conn.as_mut()).await {
                    Ok(Err(error)) => tracing::debug!(%error, "connection ended with an error during shutdown"),
                    Ok(Ok(())) => {}
                    Err(_) => tracing::warn!("connection still busy at the end of the shutdown grace; dropped"),
                }
            }
        }
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn leaf_der(cn: Option<&str>, uri: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(uri) = uri {
            params.subject_alt_names = vec![SanType::URI(uri.to_string().try_into().expect("ia5"))];
        }
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn identity_needs_cn_and_uri_to_agree() {
        let ok = CenterIdentity::from_certificate(&leaf_der(
            Some("midan"),
            Some("urn:markaz:center:midan"),
        ))
        .expect("ok");
        assert_eq!(ok.center_id.as_str(), "midan");
        assert_eq!(
            CenterIdentity::from_certificate(&leaf_der(
                Some("midan"),
                Some("urn:markaz:center:mazzeh")
            )),
            Err(IdentityError::Mismatch {
                cn: "midan".into(),
                uri: "mazzeh".into()
            })
        );
        assert_eq!(
            CenterIdentity::from_certificate(&leaf_der(Some("midan"), None)),
            Err(IdentityError::NoCenterUri)
        );
        assert_eq!(
            CenterIdentity::from_certificate(&leaf_der(None, Some("urn:markaz:center:midan"))),
            Err(IdentityError::NoCommonName)
        );
        assert_eq!(
            CenterIdentity::from_certificate(&leaf_der(
                Some("Bad Id"),
                Some("urn:markaz:center:Bad Id")
            )),
            Err(IdentityError::BadCenterId("Bad Id".into()))
        );
        assert_eq!(
            CenterIdentity::from_certificate(b"junk"),
            Err(IdentityError::NotX509)
        );
    }

    #[test]
    fn identity_serial_matches_the_issued_serial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("d")).expect("ca");
        let issued = ca
            .issue_center(&"midan".parse().expect("id"), Validity::days(1).expect("d"))
            .expect("issue");
        let der = CertificateDer::from_pem_file(&issued.cert_path).expect("pem");
        let id = CenterIdentity::from_certificate(&der).expect("identity");
        assert_eq!(id.serial, issued.serial);
    }

    #[test]
    fn server_config_requires_the_crl_and_offers_http1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("d")).expect("ca");
        ca.issue_hub(&["localhost".into()], Validity::days(1).expect("d"))
            .expect("hub");
        let files = ServerTlsFiles::in_pki_dir(dir.path());
        let config = server_config(&files).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Stateful resumption: no sealed tickets carrying the client's chain.
        assert!(!config.ticketer.enabled());
        assert_eq!(config.send_tls13_tickets, 1);
        std::fs::remove_file(&files.crl).expect("rm crl");
        assert!(matches!(server_config(&files), Err(TlsError::Read { .. })));
    }

    proptest::proptest! {
        #[test]
        fn identity_parsing_never_panics_on_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert!(CenterIdentity::from_certificate(&bytes).is_err());
        }
    }
}
