//! TCP through the emulated modem's socket commands, against a real loopback server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use markaz_hardware::modem::emulator::{self, EmulatorHandle, UART_115200};
use markaz_hardware::modem::sms::PhoneNumber;
use markaz_hardware::modem::{ModemHandle, ModemSettings, ModemState, Quectel, TcpError};
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

async fn ready_modem(
    cancel: &CancellationToken,
    pace: Option<u32>,
) -> Result<(EmulatorHandle, ModemHandle)> {
    let (emu, _) = emulator::start(cancel.clone()).context("while starting the emulator")?;
    emu.set_pace(pace);
    let mut s = ModemSettings::new(emu.path());
    s.apn = "internet".into();
    s.poll_interval = Duration::from_millis(400);
    s.command_timeout = Duration::from_secs(1);
    s.sms_timeout = Duration::from_secs(3);
    s.pdp_timeout = Duration::from_secs(2);
    s.connect_timeout = Duration::from_secs(3);
    let (modem, _) = ModemHandle::spawn(s, Arc::new(Quectel), cancel.clone());
    let mut rx = modem.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.state == ModemState::Ready),
    )
    .await
    .context("modem never became ready")??;
    Ok((emu, modem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_20kb_both_ways_at_115200_while_polling_and_sending_sms() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let port = echo_server().await?;
    let (emu, modem) = ready_modem(&cancel, Some(UART_115200)).await?;

    let stream = modem
        .connect("127.0.0.1", port)
        .await
        .context("while connecting through the modem")?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let payload: Vec<u8> = (0..20 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let started = Instant::now();
    let to_send = payload.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await?;
        wr.flush().await?;
        anyhow::Ok(wr)
    });
    // While the socket streams, the driver still polls and sends SMS.
    let side = {
        let modem = modem.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let polled = modem.poll_now().await;
            let to = PhoneNumber::parse("+963944123456")?;
            let sms = modem.send_sms(&to, "during transfer").await;
            anyhow::Ok((polled, sms))
        })
    };
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(20), rd.read_exact(&mut got))
        .await
        .context("echo did not come back in time")??;
    let elapsed = started.elapsed();
    let mut wr = writer.await??;
    assert!(got == payload, "echoed bytes differ");
    // 20 KiB each way over a 11,520 B/s line cannot take less than ~1.8 s.
    assert!(
        elapsed >= Duration::from_millis(1700),
        "not paced: {elapsed:?}"
    );
    let (polled, sms) = side.await??;
    assert!(polled, "status poll starved by the socket");
    assert_eq!(sms?.len(), 1);
    assert_eq!(emu.sent_messages().len(), 1);
    assert_eq!(modem.status().borrow().state, ModemState::Ready);

    wr.shutdown().await?;
    let cmds = emu.commands();
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("AT+QICSGP=1,1,\"internet\""))
    );
    assert!(cmds.iter().any(|c| c.starts_with("AT+QIRD=")));
    Ok(())
}

#[tokio::test]
async fn remote_close_ends_reads_with_eof() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        if let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(b"bye from hub").await;
        }
    });
    let (_emu, modem) = ready_modem(&cancel, None).await?;
    let mut stream = modem.connect("127.0.0.1", port).await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .context("no EOF")??;
    assert_eq!(got, b"bye from hub");
    // The id is free again: a second connection works.
    let port2 = echo_server().await?;
    let mut s2 = modem.connect("127.0.0.1", port2).await?;
    s2.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s2.read_exact(&mut buf)).await??;
    assert_eq!(&buf, b"ping");
    Ok(())
}

#[tokio::test]
async fn refused_connection_and_lost_context_are_errors() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let (emu, modem) = ready_modem(&cancel, None).await?;
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let err = modem.connect("127.0.0.1", closed).await.unwrap_err();
    assert_eq!(err, TcpError::ConnectFailed(566));

    let port = echo_server().await?;
    let mut stream = modem.connect("127.0.0.1", port).await?;
    emu.inject_urc("+QIURC: \"pdpdeact\",1");
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await?;
    assert!(r.is_err(), "read after context loss should fail: {r:?}");
    Ok(())
}

#[tokio::test]
async fn a_stalled_reader_leaves_data_in_the_module() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let data: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let to_send = data.clone();
    tokio::spawn(async move {
        if let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(&to_send).await;
            // Keep the connection open until the test ends.
            let mut sink = [0u8; 1];
            let _ = sock.read(&mut sink).await;
        }
    });
    let (emu, modem) = ready_modem(&cancel, None).await?;
    let mut stream = modem.connect("127.0.0.1", port).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reads = |emu: &EmulatorHandle| {
        emu.commands()
            .iter()
            .filter(|c| c.starts_with("AT+QIRD="))
            .count()
    };
    let stalled_reads = reads(&emu);
    // The driver stops after a bounded queue (8 chunks of 1500 bytes), far from 60 KB.
    assert!(
        (1..=10).contains(&stalled_reads),
        "reads while stalled: {stalled_reads}"
    );
    assert!(modem.poll_now().await, "driver blocked by a stalled socket");
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got))
        .await
        .context("data did not resume")??;
    assert!(got == data, "bytes differ");
    assert!(reads(&emu) >= 40);
    Ok(())
}
