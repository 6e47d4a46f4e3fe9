//! Ways to open a raw byte stream to the hub. The uplink selector picks one; TLS and HTTP
//! sit on top unchanged.

use std::fmt;
use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use markaz_hardware::modem::ModemHandle;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream the TLS layer can run on.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A boxed byte stream, whatever carries it.
pub type BoxedStream = Box<dyn AsyncStream>;

/// Opens byte streams to a host. Implementations bound the time they take.
pub trait Connector: Send + Sync + fmt::Debug {
    /// A short name for the sync log (`"lan"`, `"modem"`).
    fn name(&self) -> &str;

    /// Opens a stream to `host:port`.
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedStream>>;
}

/// A plain OS TCP connection (the laser link / LAN), with a connect timeout.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    name: String,
    timeout: Duration,
}

impl TcpConnector {
    /// A connector named `name` (for the sync log) that gives up after `timeout`.
    pub fn new(name: impl Into<String>, timeout: Duration) -> TcpConnector {
        TcpConnector {
            name: name.into(),
            timeout,
        }
    }
}

impl Connector for TcpConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("TCP connect to {host}:{port} timed out"),
                    )
                })??;
            // Sync batches are written whole; don't let Nagle hold the last segment.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}

/// A TCP connection through the 3G modem's own IP stack (AT socket commands).
#[derive(Debug, Clone)]
pub struct ModemConnector {
    modem: ModemHandle,
    timeout: Duration,
}

impl ModemConnector {
    /// A connector over `modem` that gives up after `timeout` (on top of the driver's own
    /// budget, so a stuck driver cannot hold the sync client).
    pub fn new(modem: ModemHandle, timeout: Duration) -> ModemConnector {
        ModemConnector { modem, timeout }
    }
}

impl Connector for ModemConnector {
    fn name(&self) -> &str {
        "modem"
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = tokio::time::timeout(self.timeout, self.modem.connect(host, port))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("modem connect to {host}:{port} timed out"),
                    )
                })?
                .map_err(io::Error::from)?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_connector_connects_and_reports_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let c = TcpConnector::new("lan", Duration::from_secs(2));
        assert_eq!(c.name(), "lan");
        c.connect("127.0.0.1", port).await.expect("connects");
        drop(listener);
        let err = match c.connect("127.0.0.1", port).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
