//! Streams over each uplink: the OS socket, the emulated modem, and offline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use markaz_hardware::link::Uplink;
use markaz_hardware::link::connect::{ConnectError, UplinkStream, connect};
use markaz_hardware::modem::{ModemHandle, ModemSettings, ModemState, Quectel, emulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn echo_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(port)
}

async fn roundtrip(stream: &mut UplinkStream, msg: &[u8]) -> Result<Vec<u8>> {
    stream.write_all(msg).await?;
    stream.flush().await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .context("no echo")??;
    Ok(back)
}

#[tokio::test]
async fn the_same_hub_over_primary_and_modem_and_none_when_offline() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let port = echo_server().await?;
    let (emu, _) = emulator::start(cancel.clone())?;
    emu.set_pace(None);
    let mut s = ModemSettings::new(emu.path());
    s.command_timeout = Duration::from_secs(1);
    s.poll_interval = Duration::from_secs(5);
    let (modem, _) = ModemHandle::spawn(s, Arc::new(Quectel), cancel.clone());
    tokio::time::timeout(
        Duration::from_secs(5),
        modem.status().wait_for(|s| s.state == ModemState::Ready),
    )
    .await??;
    let limit = Duration::from_secs(5);

    let mut os = connect(Uplink::Primary, &modem, "127.0.0.1", port, limit).await?;
    assert_eq!(os.uplink(), Uplink::Primary);
    assert_eq!(
        roundtrip(&mut os, b"over the laser").await?,
        b"over the laser"
    );

    let mut m = connect(Uplink::Modem, &modem, "127.0.0.1", port, limit).await?;
    assert_eq!(m.uplink(), Uplink::Modem);
    assert_eq!(roundtrip(&mut m, b"over 3G").await?, b"over 3G");
    assert!(emu.commands().iter().any(|c| c.starts_with("AT+QISEND=")));

    let off = connect(Uplink::Offline, &modem, "127.0.0.1", port, limit).await;
    assert!(matches!(off, Err(ConnectError::Offline)), "{off:?}");
    Ok(())
}
