//! A TCP connection over the chosen uplink.
//!
//! The sync client asks for a stream to the hub and gets an [`UplinkStream`]: an OS
//! socket when the uplink is the primary link (or an OS route such as ppp), a
//! [`ModemTcpStream`] through the modem's AT sockets otherwise. Both are
//! `AsyncRead + AsyncWrite`, so TLS and HTTP sit on top unchanged. The connect is
//! bounded by the caller's timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::uplink::Uplink;
use crate::modem::{ModemHandle, ModemTcpStream, TcpError};

/// Why no stream could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No uplink is usable.
    #[error("offline: no uplink")]
    Offline,
    /// The connect did not finish in time.
    #[error("connect timed out")]
    Timeout,
    /// The OS refused or failed the connection.
    #[error("connect through an OS network interface (primary link or OS route) failed: {0}")]
    Os(#[from] io::Error),
    /// The modem refused or failed the connection.
    #[error("connect through the modem failed: {0}")]
    Modem(#[from] TcpError),
}

/// A byte stream over whichever uplink was chosen.
#[derive(Debug)]
pub enum UplinkStream {
    /// An OS socket (primary link, or an OS route such as ppp).
    Os(TcpStream),
    /// A socket in the modem's IP stack.
    Modem(ModemTcpStream),
}

impl UplinkStream {
    /// Which uplink carries it.
    pub fn uplink(&self) -> Uplink {
        match self {
            UplinkStream::Os(_) => Uplink::Primary,
            UplinkStream::Modem(_) => Uplink::Modem,
        }
    }
}

/// Opens `host:port` over `uplink`, within `limit`.
pub async fn connect(
    uplink: Uplink,
    modem: &ModemHandle,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<UplinkStream, ConnectError> {
    let attempt = async {
        match uplink {
            Uplink::Primary => Ok(UplinkStream::Os(TcpStream::connect((host, port)).await?)),
            Uplink::Modem => Ok(UplinkStream::Modem(modem.connect(host, port).await?)),
            Uplink::Offline | Uplink::Unknown => Err(ConnectError::Offline),
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

impl AsyncRead for UplinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UplinkStream::Os(s) => Pin::new(s).poll_read(cx, buf),
            UplinkStream::Modem(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UplinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UplinkStream::Os(s) => Pin::new(s).poll_write(cx, data),
            UplinkStream::Modem(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UplinkStream::Os(s) => Pin::new(s).poll_flush(cx),
            UplinkStream::Modem(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UplinkStream::Os(s) => Pin::new(s).poll_shutdown(cx),
            UplinkStream::Modem(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
