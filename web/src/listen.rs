//! A listener's limits, for the node's listener and both of the hub's: a cap on open
//! connections in total and per client address, and a time limit on a request's headers.
//!
//! Guarantees: one client address cannot hold more than `max_per_client` connections, so
//! it cannot use up the process's file descriptors or the total cap and lock everyone
//! else out (about 1,000 half-sent requests from one address did). A connection that
//! sends its headers too slowly (or stays idle between keep-alive requests) is closed
//! after `header_read_timeout`. A connection over a cap is accepted and closed at once
//! (on plain HTTP after a JSON 503, while few are being refused), so the queue of
//! pending connections keeps moving. The
//! total cap is lowered to fit the process's open-file limit, which is first raised to
//! its hard limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Time allowed to receive a request's headers, and for an idle keep-alive
    /// connection to start its next request.
    pub header_read_timeout: Duration,
    /// On shutdown, how long an in-flight request may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_client: 64,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept for everything but connections (database, log, serial ports).
pub const RESERVED_FDS: u64 = 64;

impl Limits {
    /// These limits with the total lowered to fit an open-file limit of `fds`.
    pub fn fit_open_files(self, fds: u64) -> Limits {
        let room = usize::try_from(fds.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
        Limits {
            max_connections: self.max_connections.min(room),
            max_per_client: self.max_per_client.min(self.max_connections.min(room)),
            ..self
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit and returns the soft
/// limit now in force (`None` when it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Some(lim.rlim_cur as u64)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_per_client` are open from this address.
    PerClient,
}

/// Counts open connections, in total and per client address. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct GateState {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

/// An admitted connection; its slot is freed when this is dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Gate,
    ip: IpAddr,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            state: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, or says which cap it is over. Refusals are logged
    /// at most every 10 s, with their count (an attack must not flood the log).
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = ip.to_canonical();
        let mut s = self.lock();
        let from_ip = s.per_client.get(&ip).copied().unwrap_or(0);
        let refused = if s.total >= self.limits.max_connections {
            Some(Refused::Total)
        } else if from_ip >= self.limits.max_per_client {
            Some(Refused::PerClient)
        } else {
            None
        };
        if let Some(why) = refused {
            s.refused_since_log += 1;
            if s.last_log
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                tracing::warn!(
                    client = %ip,
                    cap = ?why,
                    open = s.total,
                    from_client = from_ip,
                    refused = s.refused_since_log,
                    "connections refused: over the listener's limit"
                );
                s.refused_since_log = 0;
                s.last_log = Some(Instant::now());
            }
            return Err(why);
        }
        s.total += 1;
        *s.per_client.entry(ip).or_insert(0) += 1;
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Open connections: in total, and from `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let s = self.lock();
        (
            s.total,
            s.per_client.get(&ip.to_canonical()).copied().unwrap_or(0),
        )
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.ip);
            }
        }
    }
}

/// What a refused plain-HTTP connection reads before it is closed.
const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 99\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; try again shortly\"}}\n";

/// Refused connections answered at the same time at most; more are closed at once.
const ANSWERING_REFUSED: usize = 64;

/// Time a refused connection gets to read its 503.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// Accepts the next connection admitted by `gate`. Refused ones are handed to `refuse`
/// (which must not wait: dropping the stream closes it); accept errors (EMFILE…) back off
/// instead of spinning. `None` once `shutdown` is cancelled.
pub async fn accept(
    listener: &TcpListener,
    gate: &Gate,
    shutdown: &CancellationToken,
    refuse: &impl Fn(TcpStream),
) -> Option<(TcpStream, SocketAddr, Permit)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match gate.admit(peer.ip()) {
            Ok(permit) => return Some((tcp, peer, permit)),
            Err(_) => refuse(tcp),
        }
    }
}

/// Serves `app` over plain HTTP/1.1 on `listener` within `limits` until `shutdown`, then
/// lets open connections finish their current request (up to `limits.shutdown_grace`).
/// Each request gets `ConnectInfo<SocketAddr>` in its extensions.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = match raise_open_files_limit() {
        Some(fds) => limits.fit_open_files(fds),
        None => limits,
    };
    let gate = Gate::new(limits);
    let tracker = TaskTracker::new();
    // A refused connection is told why (503, JSON) and read until the client closes, so
    // the kernel does not reset it before the client reads the answer — by a bounded
    // number of tasks: under an attack the rest are closed at once.
    let answering = Arc::new(tokio::sync::Semaphore::new(ANSWERING_REFUSED));
    let refuse = move |tcp: TcpStream| {
        if let Ok(slot) = answering.clone().try_acquire_owned() {
            tokio::spawn(async move {
                answer_refused(tcp).await;
                drop(slot);
            });
        }
    };
    while let Some((tcp, peer, permit)) = accept(&listener, &gate, &shutdown, &refuse).await {
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            connection(tcp, peer, app, limits, shutdown).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn answer_refused(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSED_LINGER, async {
        tcp.write_all(REFUSED_RESPONSE).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await {
                Ok(Err(error)) => tracing::debug!(%error, %peer, "connection ended with an error during shutdown"),
                Ok(Ok(())) => {}
                Err(_) => tracing::warn!(%peer, "connection still busy at the end of the shutdown grace; dropped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_gate_caps_per_client_and_in_total_and_frees_on_drop() {
        let gate = Gate::new(Limits {
            max_connections: 5,
            max_per_client: 3,
            ..Limits::default()
        });
        let a: Vec<Permit> = (0..3)
            .map(|_| gate.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerClient);
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refused::PerClient
        );
        let b1 = gate.admit(ip("10.0.0.2")).unwrap();
        let _b2 = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), Refused::Total);
        drop(b1);
        let _c = gate.admit(ip("10.0.0.3")).unwrap();
        drop(a);
        assert_eq!(gate.open(ip("10.0.0.1")), (2, 0));
        gate.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn the_total_fits_the_open_file_limit() {
        let l = Limits::default().fit_open_files(256);
        assert_eq!(l.max_connections, 256 - RESERVED_FDS as usize);
        assert_eq!(Limits::default().fit_open_files(1 << 20), Limits::default());
    }

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, shutdown.clone()));
        (addr, shutdown)
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_over_its_cap_gets_a_json_503_and_others_are_served() {
        let (addr, shutdown) = start(Limits {
            max_per_client: 2,
            ..Limits::default()
        })
        .await;
        // Two half-sent requests hold this client's two slots.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = get(addr).await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("too_many_connections"), "{refused}");
        let body = refused.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str::<serde_json::Value>(body).expect("the body is JSON");
        assert!(refused.contains(&format!("Content-Length: {}\r\n", body.len())));
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ok = get(addr).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("127.0.0.1"), "ConnectInfo is set: {ok}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off_after_the_header_read_timeout() {
        let (addr, shutdown) = start(Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the connection was not closed");
        assert!(started.elapsed() < Duration::from_secs(2));
        shutdown.cancel();
    }
}
