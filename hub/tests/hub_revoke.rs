//! A center whose certificate is revoked is refused by the sync endpoint once the CRL is
//! rewritten and the hub reloads its TLS configuration (what `run` does every
//! `TLS_POLL_EVERY`) — by every hub process: one on SQLite, two on one PostgreSQL
//! database (each process watches the CRL file itself).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use markaz_hub::pki::{Ca, RevokeTarget, Validity};
use markaz_hub::storage::{HubDb, HubWriter};
use markaz_hub::tls::{self, ServeOptions, ServerTls, ServerTlsFiles};
use markaz_sync::protocol::{ErrorCode, Request, Response};
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};
use support::Hub;
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
    let (status, body) = c.sync(Bytes::from(hello.clone())).await?;
    assert!(status.is_success());
    assert!(matches!(Response::decode(&body)?, Response::Welcome { .. }));

    // A malformed body gets a clear error response, not a dropped connection.
    let (status, body) = c.sync(Bytes::from_static(b"junk")).await?;
    assert!(status.is_success());
    assert!(matches!(
        Response::decode(&body)?,
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));

    ca.revoke(&RevokeTarget::Center("midan".parse()?))?;
    tls_cfg.reload()?;
    let mut fresh = client(&bundle)?;
    let refused = fresh.sync(Bytes::from(hello)).await;
    assert!(refused.is_err(), "a revoked center is refused: {refused:?}");
    shutdown.cancel();
    Ok(())
}

fn hello_of(center: &str) -> Vec<u8> {
    Request::Hello {
        center: center.into(),
        actor: hex::encode(format!("{center}/1")),
        epoch_seen: None,
        hlc: format!("0000000000001.00000.{center}"),
        wall_ms: 1,
        done_at: None,
    }
    .encode()
}

/// A Hello from `center` (its bundle at `bundle`) on a fresh connection to `hub`: whether
/// it was served.
async fn served(hub: &Hub, center: &str, bundle: &std::path::Path) -> anyhow::Result<bool> {
    let mut c = HubClient::new(
        client_config(&ClientTlsFiles::in_bundle(bundle))?,
        Arc::new(TcpConnector::new("primary", Duration::from_secs(5))),
        HubTarget::new("127.0.0.1", hub.sync_port)?,
        ClientOptions::default(),
    );
    match c.sync(Bytes::from(hello_of(center))).await {
        Ok((status, body)) => {
            anyhow::ensure!(status.is_success(), "{status}");
            Ok(matches!(Response::decode(&body)?, Response::Welcome { .. }))
        }
        Err(_) => Ok(false),
    }
}

/// `markaz pki revoke` rewrites the CRL (here: `Ca::revoke`); each hub process picks it
/// up by itself and refuses the center, while another center is still served.
async fn every_process_refuses_a_revoked_center(hubs: &[&Hub]) -> anyhow::Result<()> {
    let ca = Ca::load(&hubs[0].pki)?;
    let midan = hubs[0].bundle("midan")?;
    let qanawat = hubs[0].bundle("qanawat")?;
    for hub in hubs {
        assert!(
            served(hub, "midan", &midan).await?,
            "midan before the revocation"
        );
    }
    ca.revoke(&RevokeTarget::Center("midan".parse()?))?;
    for (i, hub) in hubs.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while served(hub, "midan", &midan).await? {
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub process {i} still serves a revoked center"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            served(hub, "qanawat", &qanawat).await?,
            "qanawat on process {i}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_center_is_refused_by_the_hub_process() -> anyhow::Result<()> {
    let hub = Hub::start().await?;
    every_process_refuses_a_revoked_center(&[&hub]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_revoked_center_is_refused_by_every_hub_process() -> anyhow::Result<()> {
    let Some(a) =
        Hub::start_pg("on_postgres_a_revoked_center_is_refused_by_every_hub_process").await?
    else {
        return Ok(());
    };
    let b = a.sibling().await?;
    every_process_refuses_a_revoked_center(&[&a, &b]).await
}
