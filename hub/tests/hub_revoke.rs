//! A center whose certificate is revoked is refused by the sync endpoint once the CRL is
//! rewritten and the hub reloads its TLS configuration (what `run` does every minute).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_hub::pki::{Ca, RevokeTarget, Validity};
use markaz_hub::storage::{HubDb, HubWriter};
use markaz_hub::tls::{self, ServeOptions, ServerTls, ServerTlsFiles};
use markaz_node::uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use markaz_sync::protocol::{Request, Response};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_refuses_a_revoked_center_after_the_crl_is_rewritten() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let ca = Ca::create(&pki, "test CA", Validity::days(30)?)?;
    ca.issue_hub(&["127.0.0.1".into()], Validity::days(30)?)?;
    let issued = ca.issue_center(&"midan".parse()?, Validity::days(10)?)?;
    let bundle = issued.cert_path.parent().context("bundle")?.to_path_buf();
    let data = dir.path().join("hub");
    std::fs::create_dir_all(&data)?;
    let writer = HubWriter::spawn(HubDb::open(&data)?)?;
    let tls_cfg = ServerTls::load(ServerTlsFiles::in_pki_dir(&pki))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(tls::serve(
        listener,
        tls_cfg.clone(),
        markaz_hub::endpoint::router(writer, 1 << 20),
        ServeOptions::default(),
        shutdown.clone(),
    ));
    let client = |bundle: &std::path::Path| -> anyhow::Result<HubClient> {
        Ok(HubClient::new(
            client_config(&ClientTlsFiles::in_bundle(bundle))?,
            Arc::new(TcpConnector::new("primary", Duration::from_secs(5))),
            HubTarget::new("127.0.0.1", port)?,
            ClientOptions::default(),
        ))
    };
    let hello = Request::Hello {
        center: "midan".into(),
        actor: hex::encode(b"midan/1"),
        epoch_seen: None,
        hlc: "0000000000001.00000.midan".into(),
        wall_ms: 1,
        done_at: None,
    }
    .encode();
    let mut c = client(&bundle)?;
    let (status, body) = c
        .post(
            "/sync/v1",
            "application/octet-stream",
            Bytes::from(hello.clone()),
        )
        .await?;
    assert!(status.is_success());
    assert!(matches!(Response::decode(&body)?, Response::Welcome { .. }));

    // A malformed body gets a clear error response, not a dropped connection.
    let (status, body) = c
        .post(
            "/sync/v1",
            "application/octet-stream",
            Bytes::from_static(b"junk"),
        )
        .await?;
    assert!(status.is_success());
    assert!(matches!(Response::decode(&body)?, Response::Error { .. }));

    ca.revoke(&RevokeTarget::Center("midan".parse()?))?;
    tls_cfg.reload()?;
    let mut fresh = client(&bundle)?;
    let refused = fresh
        .post("/sync/v1", "application/octet-stream", Bytes::from(hello))
        .await;
    assert!(refused.is_err(), "a revoked center is refused: {refused:?}");
    shutdown.cancel();
    Ok(())
}
