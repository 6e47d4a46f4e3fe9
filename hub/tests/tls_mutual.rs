//! Mutual TLS between a center's `HubClient` and the hub's `tls::serve`, with real
//! certificates from `hub::pki` and real TLS on loopback: who gets in, who is refused,
//! what the handler sees, session resumption and the byte counters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Extension, State};
use axum::routing::post;
use axum::{Router, body::Bytes};
use jiff::{SignedDuration, Timestamp};
use markaz_hub::pki::{Ca, RevokeTarget, Validity};
use markaz_hub::tls::{self, CenterIdentity, ServeOptions, ServerTls, ServerTlsFiles};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, UplinkError, client_config,
};
use rustls::HandshakeKind;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A governorate PKI in a temp directory.
struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new(name: &str) -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::create(&dir.path().join("pki"), name, Validity::days(3650)?)?;
        ca.issue_hub(
            &["127.0.0.1".into(), "localhost".into()],
            Validity::days(365)?,
        )?;
        Ok(Pki { _dir: dir, ca })
    }

    fn dir(&self) -> &Path {
        self.ca.dir()
    }

    /// Issues a center certificate valid for `validity` and returns its bundle directory.
    fn center(&self, id: &str, validity: Validity) -> anyhow::Result<PathBuf> {
        let issued = self.ca.issue_center(&id.parse()?, validity)?;
        Ok(issued
            .cert_path
            .parent()
            .context("bundle dir")?
            .to_path_buf())
    }
}

/// A hub serving a small router over mutual TLS on a loopback port.
struct Hub {
    port: u16,
    tls: ServerTls,
    /// How many requests reached a handler.
    hits: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn whoami(
    Extension(id): Extension<CenterIdentity>,
    State(hits): State<Arc<AtomicUsize>>,
    body: Bytes,
) -> String {
    hits.fetch_add(1, Ordering::SeqCst);
    format!("{} {} {}", id.center_id, id.serial, body.len())
}

async fn big(State(hits): State<Arc<AtomicUsize>>) -> Vec<u8> {
    hits.fetch_add(1, Ordering::SeqCst);
    vec![b'x'; 100_000]
}

impl Hub {
    async fn start(pki: &Pki, opts: ServeOptions) -> anyhow::Result<Hub> {
        let tls = ServerTls::load(ServerTlsFiles::in_pki_dir(pki.dir()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/whoami", post(whoami))
            .route("/big", post(big))
            .with_state(hits.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tls::serve(
            listener,
            tls.clone(),
            app,
            opts,
            shutdown.clone(),
        ));
        Ok(Hub {
            port,
            tls,
            hits,
            shutdown,
            task,
        })
    }

    fn client(&self, files: &ClientTlsFiles) -> anyhow::Result<HubClient> {
        Ok(self.client_with(client_config(files)?, ClientOptions::default()))
    }

    fn client_with(&self, config: Arc<rustls::ClientConfig>, opts: ClientOptions) -> HubClient {
        let connector = Arc::new(TcpConnector::new("lan", Duration::from_secs(5)));
        let target = HubTarget::new("127.0.0.1", self.port).expect("ip is a valid server name");
        HubClient::new(config, connector, target, opts)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        handshake_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
    }
}

async fn whoami_of(client: &mut HubClient, body: &[u8]) -> Result<(u16, String), UplinkError> {
    let (status, bytes) = client
        .post(
            "/whoami",
            "application/octet-stream",
            Bytes::copy_from_slice(body),
        )
        .await?;
    Ok((
        status.as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// The request failed, and the hub's TLS alert names `alert` (the reason it refused).
fn assert_refused(result: Result<(u16, String), UplinkError>, alert: &str) {
    match result {
        Ok(ok) => panic!("served, but should have been refused with {alert}: {ok:?}"),
        Err(e) => {
            let chain = format!("{e} / {e:?}");
            assert!(
                chain.contains(alert),
                "refused, but not with {alert}: {chain}"
            );
        }
    }
}

#[tokio::test]
async fn a_center_with_a_good_certificate_is_served_and_identified() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let serial = pki.ca.issued()?.last().context("issued")?.serial.clone();
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client(&ClientTlsFiles::in_bundle(&bundle))?;

    let (status, body) = whoami_of(&mut midan, b"hello").await?;
    assert_eq!(status, 200);
    assert_eq!(body, format!("midan {serial} 5"));
    // A second request rides the same kept-alive connection.
    let (status, _) = whoami_of(&mut midan, b"again").await?;
    assert_eq!(status, 200);
    assert_eq!(midan.connections(), 1);
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Full));
    assert_eq!(hub.hits(), 2);
    Ok(())
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_file(pki.dir().join("ca.pem"))?;
    roots.add(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut anonymous = hub.client_with(Arc::new(config), quick());

    let result = whoami_of(&mut anonymous, b"hello").await;
    assert_refused(result, "CertificateRequired");
    assert_eq!(hub.hits(), 0);
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let rogue = Pki::new("Rogue CA")?;
    let rogue_bundle = rogue.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    // The rogue center trusts the real hub, but its own certificate is from the rogue CA.
    let files = ClientTlsFiles {
        ca: pki.dir().join("ca.pem"),
        ..ClientTlsFiles::in_bundle(&rogue_bundle)
    };
    let mut intruder = hub.client_with(client_config(&files)?, quick());

    let result = whoami_of(&mut intruder, b"hello").await;
    assert_refused(result, "UnknownCA");
    assert_eq!(hub.hits(), 0);
    Ok(())
}

#[tokio::test]
async fn an_expired_certificate_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let now = Timestamp::now();
    let expired = Validity::between(
        now - SignedDuration::from_hours(24 * 30),
        now - SignedDuration::from_hours(24),
    )?;
    let bundle = pki.center("midan", expired)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client_with(client_config(&ClientTlsFiles::in_bundle(&bundle))?, quick());

    let result = whoami_of(&mut midan, b"hello").await;
    assert_refused(result, "CertificateExpired");
    assert_eq!(hub.hits(), 0);
    Ok(())
}

#[tokio::test]
async fn a_revoked_center_is_refused_after_reload_even_with_a_session_ticket() -> anyhow::Result<()>
{
    let pki = Pki::new("Damascus CA")?;
    let midan_bundle = pki.center("midan", Validity::days(30)?)?;
    let mazzeh_bundle = pki.center("mazzeh", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client_with(
        client_config(&ClientTlsFiles::in_bundle(&midan_bundle))?,
        quick(),
    );
    let mut mazzeh = hub.client_with(
        client_config(&ClientTlsFiles::in_bundle(&mazzeh_bundle))?,
        quick(),
    );
    assert_eq!(whoami_of(&mut midan, b"before").await?.0, 200);
    assert_eq!(whoami_of(&mut mazzeh, b"before").await?.0, 200);

    let revoked = pki.ca.revoke(&"midan".parse::<RevokeTarget>()?)?;
    assert_eq!(revoked.len(), 1);
    hub.tls.reload()?;

    // Midan holds a session ticket from before; it must not get back in with it.
    midan.disconnect();
    let result = whoami_of(&mut midan, b"after").await;
    assert_refused(result, "CertificateRevoked");
    // A fresh client (no ticket) is refused too.
    let mut fresh = hub.client_with(
        client_config(&ClientTlsFiles::in_bundle(&midan_bundle))?,
        quick(),
    );
    assert_refused(whoami_of(&mut fresh, b"after").await, "CertificateRevoked");
    // Other centers are unaffected.
    mazzeh.disconnect();
    let (status, body) = whoami_of(&mut mazzeh, b"after").await?;
    assert_eq!(status, 200);
    assert!(body.starts_with("mazzeh "), "{body}");
    assert_eq!(hub.hits(), 3);
    Ok(())
}

#[tokio::test]
async fn a_kept_alive_connection_does_not_outlive_a_revocation() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let midan_bundle = pki.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client_with(
        client_config(&ClientTlsFiles::in_bundle(&midan_bundle))?,
        quick(),
    );
    assert_eq!(whoami_of(&mut midan, b"one").await?.0, 200);
    assert_eq!(whoami_of(&mut midan, b"two").await?.0, 200);
    assert_eq!(midan.connections(), 1, "the connection is kept alive");

    pki.ca.revoke(&"midan".parse::<RevokeTarget>()?)?;
    hub.tls.reload()?;
    // No disconnect here: the client would reuse its open connection if the hub let it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let result = whoami_of(&mut midan, b"after").await;
    assert_refused(result, "CertificateRevoked");
    assert_eq!(
        hub.hits(),
        2,
        "no request after the revocation reached a handler"
    );
    Ok(())
}

#[tokio::test]
async fn a_reconnect_resumes_the_tls_session_and_costs_fewer_bytes() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client(&ClientTlsFiles::in_bundle(&bundle))?;
    let payload = vec![0xA5u8; 10_000];

    let (status, first_body) = whoami_of(&mut midan, &payload).await?;
    assert_eq!(status, 200);
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Full));
    let full = midan.bytes();

    midan.disconnect();
    let (status, second_body) = whoami_of(&mut midan, &payload).await?;
    assert_eq!(status, 200);
    assert_eq!(midan.connections(), 2);
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Resumed));
    // The hub still knows who it is on a resumed session.
    assert_eq!(second_body, first_body);
    let resumed = midan.bytes().since(full);

    // Plausible counts: the body went up once per request, plus TLS and HTTP overhead.
    assert!(
        full.up > 10_000 && full.up < 10_000 + 6_000,
        "full up {full:?}"
    );
    assert!(
        full.down > first_body.len() as u64 && full.down < 6_000,
        "full down {full:?}"
    );
    // The client sends a short session id instead of its certificate chain.
    assert!(
        resumed.up > 10_000 && resumed.up + 300 < full.up,
        "resumed {resumed:?} vs full {full:?}"
    );
    // The whole resumed handshake, TLS and HTTP overhead included, is small.
    assert!(
        resumed.up + resumed.down < 10_000 + second_body.len() as u64 + 2_000,
        "resumed {resumed:?}"
    );
    // The hub sends no certificate on resumption: its side is much smaller.
    assert!(
        resumed.down + 300 < full.down,
        "resumed {resumed:?} vs full {full:?}"
    );
    assert!(
        resumed.up + resumed.down < full.up + full.down,
        "resumed {resumed:?} vs full {full:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_the_hub_closed_while_idle_is_replaced_transparently() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let opts = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let hub = Hub::start(&pki, opts).await?;
    let mut midan = hub.client(&ClientTlsFiles::in_bundle(&bundle))?;
    assert_eq!(whoami_of(&mut midan, b"one").await?.0, 200);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(whoami_of(&mut midan, b"two").await?.0, 200);
    assert_eq!(midan.connections(), 2);
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Resumed));
    assert_eq!(hub.hits(), 2);
    Ok(())
}

#[tokio::test]
async fn a_response_beyond_the_size_bound_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let opts = ClientOptions {
        max_response_bytes: 10_000,
        ..quick()
    };
    let mut midan = hub.client_with(client_config(&ClientTlsFiles::in_bundle(&bundle))?, opts);
    let result = midan
        .post("/big", "application/octet-stream", Bytes::new())
        .await;
    assert!(
        matches!(result, Err(UplinkError::ResponseTooLarge { limit: 10_000 })),
        "{result:?}"
    );
    // The client recovers on the next request.
    assert_eq!(whoami_of(&mut midan, b"ok").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_the_accept_loop_and_closes_idle_connections() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let mut midan = hub.client(&ClientTlsFiles::in_bundle(&bundle))?;
    assert_eq!(whoami_of(&mut midan, b"one").await?.0, 200);
    hub.shutdown.cancel();
    let served = tokio::time::timeout(Duration::from_secs(5), hub.task).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    assert!(whoami_of(&mut midan, b"two").await.is_err());
    Ok(())
}

#[tokio::test]
async fn the_hub_picks_up_a_revocation_without_a_restart() -> anyhow::Result<()> {
    let pki = Pki::new("Damascus CA")?;
    let bundle = pki.center("midan", Validity::days(30)?)?;
    let hub = Hub::start(&pki, ServeOptions::default()).await?;
    let watcher = tokio::spawn(
        hub.tls
            .clone()
            .reload_on_change(Duration::from_millis(50), hub.shutdown.clone()),
    );
    let config = client_config(&ClientTlsFiles::in_bundle(&bundle))?;
    let mut midan = hub.client_with(config.clone(), quick());
    assert_eq!(whoami_of(&mut midan, b"before").await?.0, 200);

    // `markaz pki revoke` in another process: only the files change.
    markaz_hub::pki::revoke(pki.dir(), &"midan".parse()?)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut fresh = hub.client_with(config.clone(), quick());
        match whoami_of(&mut fresh, b"after").await {
            Err(e) => {
                assert_refused(Err(e), "CertificateRevoked");
                break;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(ok) => panic!("still served 5 s after the revocation: {ok:?}"),
        }
    }
    hub.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher).await??;
    Ok(())
}
