//! Mutual TLS to the hub through the 3G modem: `HubClient` over `ModemConnector`, the
//! modem being the pty emulator with its TCP passthrough paced at 115200 baud. The same
//! TLS and HTTP layers as over the LAN; the session resumes on reconnect.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Extension;
use axum::routing::post;
use markaz_hardware::modem::emulator::{self, UART_115200};
use markaz_hardware::modem::{ModemHandle, ModemSettings, ModemState, Quectel};
use markaz_hub::pki::{Ca, Validity};
use markaz_hub::tls::{self, CenterIdentity, ServeOptions, ServerTls, ServerTlsFiles};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, ModemConnector, client_config,
};
use rustls::HandshakeKind;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_reaches_the_hub_over_the_modem_and_resumes() -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();

    let dir = tempfile::tempdir()?;
    let ca = Ca::create(
        &dir.path().join("pki"),
        "Damascus CA",
        Validity::days(3650)?,
    )?;
    ca.issue_hub(&["127.0.0.1".into()], Validity::days(365)?)?;
    let bundle = ca.issue_center(&"midan".parse()?, Validity::days(30)?)?;
    let bundle = bundle
        .cert_path
        .parent()
        .context("bundle dir")?
        .to_path_buf();

    let tls = ServerTls::load(ServerTlsFiles::in_pki_dir(ca.dir()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = Router::new().route(
        "/whoami",
        post(
            |Extension(id): Extension<CenterIdentity>, body: Bytes| async move {
                format!("{} {}", id.center_id, body.len())
            },
        ),
    );
    tokio::spawn(tls::serve(
        listener,
        tls,
        app,
        ServeOptions::default(),
        cancel.clone(),
    ));

    let (emu, _) = emulator::start(cancel.clone()).context("while starting the modem emulator")?;
    emu.set_pace(Some(UART_115200));
    let mut settings = ModemSettings::new(emu.path());
    settings.apn = "internet".into();
    settings.poll_interval = Duration::from_secs(5);
    settings.connect_timeout = Duration::from_secs(5);
    let (modem, _) = ModemHandle::spawn(settings, Arc::new(Quectel), cancel.clone());
    let mut status = modem.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.state == ModemState::Ready),
    )
    .await
    .context("the modem never became ready")??;

    let opts = ClientOptions {
        handshake_timeout: Duration::from_secs(20),
        request_timeout: Duration::from_secs(20),
        max_response_bytes: 1 << 20,
    };
    let connector = Arc::new(ModemConnector::new(modem, Duration::from_secs(10)));
    let mut midan = HubClient::new(
        client_config(&ClientTlsFiles::in_bundle(&bundle))?,
        connector,
        HubTarget::new("127.0.0.1", port)?,
        opts,
    );
    assert_eq!(midan.uplink(), "modem");

    let payload = Bytes::from(vec![1u8; 4_000]);
    let (status, body) = midan
        .post("/whoami", "application/octet-stream", payload.clone())
        .await?;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"midan 4000"[..]));
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Full));
    let full = midan.bytes();

    midan.disconnect();
    let (status, body) = midan
        .post("/whoami", "application/octet-stream", payload)
        .await?;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"midan 4000"[..]));
    assert_eq!(midan.last_handshake(), Some(HandshakeKind::Resumed));
    assert_eq!(midan.connections(), 2);
    let resumed = midan.bytes().since(full);
    assert!(
        full.up > 4_000 && resumed.up > 4_000,
        "{full:?} {resumed:?}"
    );
    assert!(resumed.down < full.down, "{full:?} {resumed:?}");
    Ok(())
}
