//! What the service manager's watchdog is fed: whether this node can still do its work.
//!
//! systemd kills and restarts a `Type=notify` service whose `WATCHDOG=1` pings stop for
//! `WatchdogSec`. The binary pings only after [`Liveness::check`] passes, and it passes
//! only when
//! - the storage writer is not stuck: it committed since the last check, or it answers a
//!   one-row probe write within the timeout. An answer that is an error (a full disk, a
//!   damaged file refused) still counts: the thread is alive, and a restart would not
//!   help — `/healthz` reports those. A batch that has run for longer than
//!   [`crate::storage::STALLED_AFTER`], or a probe stuck behind one, does not;
//! - the HTTP server answers a request on its own listener within the timeout.
//!
//! So a writer stuck inside a transaction (a lock that is never released, a hung disk)
//! gets the process restarted, and a node that is merely unhealthy does not restart in
//! a loop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::storage::{StorageError, WriterState};

/// The node's liveness, checked before each watchdog ping. Cheap to clone.
#[derive(Clone)]
pub struct Liveness {
    app: App,
    addr: SocketAddr,
    /// The writer's commit count at the last check (`u64::MAX`: none yet).
    commits_seen: Arc<AtomicU64>,
}

impl Liveness {
    /// The liveness of the node `app` serving HTTP on `addr`.
    pub fn new(app: App, addr: SocketAddr) -> Self {
        Self {
            app,
            addr,
            commits_seen: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// `Ok` when the writer and the HTTP server both answer within `timeout` (each);
    /// otherwise what does not.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        self.writer(timeout).await?;
        http_answers(self.addr, "/healthz", timeout)
            .await
            .map(drop)
            .map_err(|e| format!("the HTTP server does not answer: {e}"))
    }

    async fn writer(&self, timeout: Duration) -> Result<(), String> {
        let writer = &self.app.db.writer;
        let health = writer.health();
        match health.state {
            WriterState::Stalled | WriterState::Stopped => {
                return Err(format!("the storage writer is {}", health.state.as_str()));
            }
            WriterState::Ok | WriterState::Failing | WriterState::Refusing => {}
        }
        let seen = self.commits_seen.swap(health.commits, Ordering::Relaxed);
        if seen != u64::MAX && health.commits > seen {
            return Ok(());
        }
        match writer.probe(timeout).await {
            Ok(()) => {
                self.commits_seen
                    .store(writer.health().commits, Ordering::Relaxed);
                Ok(())
            }
            Err(
                e @ (StorageError::Timeout(_)
                | StorageError::WriterGone
                | StorageError::NotCommitted),
            ) => Err(format!("the storage writer is stuck: {e}")),
            // An answer, if a failing one: the writer is alive.
            Err(_) => Ok(()),
        }
    }
}

/// Sends `GET path` to `addr` (its loopback twin when `addr` is a wildcard) and returns
/// the status code of the answer, within `timeout`.
pub async fn http_answers(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let target = SocketAddr::new(
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        },
        addr.port(),
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        // The status line is all that is needed: "HTTP/1.1 200 OK".
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| format!("read: {e}"))?;
        std::str::from_utf8(&head)
            .ok()
            .and_then(|h| h.strip_prefix("HTTP/1.1 "))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&head)))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer from {target} within {timeout:?}")),
    }
}
