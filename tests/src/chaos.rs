//! A fault-injecting TCP proxy for the link between centers and the hub: while its
//! [`Faults`] say so, it cuts connections (both sides closed mid-stream), stalls them,
//! slows them to a few kB/s and flips bytes — every decision drawn from a seeded
//! [`Rng`], so a failing run is replayed from the seed it printed. With
//! [`Faults::clean`] it forwards bytes untouched.
//!
//! A flipped byte inside a TLS record must be caught by the record's MAC: the session
//! fails and is retried; it must never be merged. [`ChaosStats`] counts what was done so
//! a test can show that the chaos actually happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Rng;

/// What the proxy does to traffic. Probabilities are per thousand, drawn per chunk read
/// (`cut`, `stall`, `corrupt`) or per connection (`slow`, `lifetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Close both sides instead of forwarding a chunk.
    pub cut_per_mille: u64,
    /// Hold a chunk for up to `stall_max_ms` before forwarding it.
    pub stall_per_mille: u64,
    pub stall_max_ms: u64,
    /// Flip one bit of one byte of a chunk.
    pub corrupt_per_mille: u64,
    /// A connection that is throttled to `slow_bytes_per_sec` for its whole life.
    pub slow_per_mille: u64,
    pub slow_bytes_per_sec: u64,
    /// Cut a connection after a random lifetime up to this (0: no timed cut), whether or
    /// not bytes flow: a link that dies while both ends wait.
    pub max_lifetime_ms: u64,
}

impl Faults {
    /// Forward everything untouched.
    pub const fn clean() -> Self {
        Self {
            cut_per_mille: 0,
            stall_per_mille: 0,
            stall_max_ms: 0,
            corrupt_per_mille: 0,
            slow_per_mille: 0,
            slow_bytes_per_sec: 0,
            max_lifetime_ms: 0,
        }
    }

    /// A bad day on the link: every kind of fault, often enough that most sessions meet
    /// one, rarely enough that some get through.
    pub const fn bad_day() -> Self {
        Self {
            cut_per_mille: 40,
            stall_per_mille: 60,
            stall_max_ms: 1_500,
            corrupt_per_mille: 25,
            slow_per_mille: 250,
            slow_bytes_per_sec: 8_000,
            max_lifetime_ms: 4_000,
        }
    }

    fn is_clean(&self) -> bool {
        *self == Self::clean()
    }
}

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub timed_cuts: AtomicU64,
    pub stalls: AtomicU64,
    pub corruptions: AtomicU64,
    pub slow_connections: AtomicU64,
    pub bytes: AtomicU64,
}

impl ChaosStats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One line for the test log.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} connections, {} bytes; {} cuts, {} timed cuts, {} stalls, {} corrupted chunks, {} slow connections",
            g(&self.connections),
            g(&self.bytes),
            g(&self.cuts),
            g(&self.timed_cuts),
            g(&self.stalls),
            g(&self.corruptions),
            g(&self.slow_connections)
        )
    }
}

/// The proxy: listens on a loopback port, forwards to `upstream`.
pub struct ChaosProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ChaosStats>,
    faults: watch::Sender<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// Starts a clean proxy to `upstream`; connections get RNGs derived from `seed`.
    pub async fn start(upstream: SocketAddr, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ChaosStats::default());
        let (faults, rx) = watch::channel(Faults::clean());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            let mut master = Rng::new(seed);
            while let Ok((client, _)) = listener.accept().await {
                ChaosStats::bump(&st.connections);
                let rng = Rng::new(master.next_u64());
                tokio::spawn(relay(client, upstream, rng, rx.clone(), st.clone()));
            }
        });
        Ok(Self {
            addr,
            stats,
            faults,
            task,
        })
    }

    /// From now on, new chunks and connections meet these faults.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// `https://<addr>`: what a center's `sync.hub_url` says to go through the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut rng: Rng,
    faults: watch::Receiver<Faults>,
    stats: Arc<ChaosStats>,
) {
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await
    else {
        return; // the hub is down: the client sees its connection closed
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let f = *faults.borrow();
    let slow = (!f.is_clean() && rng.range(0, 1000) < f.slow_per_mille)
        .then_some(f.slow_bytes_per_sec.max(1));
    if slow.is_some() {
        ChaosStats::bump(&stats.slow_connections);
    }
    let lifetime = (!f.is_clean() && f.max_lifetime_ms > 0)
        .then(|| Duration::from_millis(rng.range(200, f.max_lifetime_ms.max(201))));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(
        cr,
        sw,
        Rng::new(rng.next_u64()),
        faults.clone(),
        slow,
        stats.clone(),
    );
    let down = pump(
        sr,
        cw,
        Rng::new(rng.next_u64()),
        faults,
        slow,
        stats.clone(),
    );
    // Whichever ends first (EOF, error or a cut) ends the connection: both halves are
    // dropped here, which closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = async {
            match lifetime {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => ChaosStats::bump(&stats.timed_cuts),
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rng: Rng,
    faults: watch::Receiver<Faults>,
    slow: Option<u64>,
    stats: Arc<ChaosStats>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        let f = *faults.borrow();
        if !f.is_clean() {
            if rng.range(0, 1000) < f.cut_per_mille {
                ChaosStats::bump(&stats.cuts);
                return;
            }
            if rng.range(0, 1000) < f.corrupt_per_mille {
                let i = rng.range(0, n as u64) as usize;
                chunk[i] ^= 1 << rng.range(0, 8);
                ChaosStats::bump(&stats.corruptions);
            }
            if f.stall_max_ms > 0 && rng.range(0, 1000) < f.stall_per_mille {
                ChaosStats::bump(&stats.stalls);
                tokio::time::sleep(Duration::from_millis(rng.range(1, f.stall_max_ms + 1))).await;
            }
        }
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let ok = match slow.filter(|_| !faults.borrow().is_clean()) {
            // ~10 writes per second of bytes_per_sec / 10 each.
            Some(bps) => {
                let step = (bps / 10).max(1) as usize;
                let mut ok = true;
                for piece in chunk.chunks(step) {
                    if to.write_all(piece).await.is_err() {
                        ok = false;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ok
            }
            None => to.write_all(chunk).await.is_ok(),
        };
        if !ok {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_clean_proxy_forwards_bytes_unchanged() {
        let proxy = ChaosProxy::start(echo_server().await, 7).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.split();
        let (_, back) = tokio::join!(w.write_all(&data), async {
            let mut back = vec![0u8; data.len()];
            r.read_exact(&mut back).await.map(|_| back)
        });
        assert_eq!(back.unwrap(), data);
        assert_eq!(proxy.stats.cuts.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn chaos_cuts_and_corrupts_and_a_seed_replays_it() {
        async fn run(seed: u64) -> (bool, Vec<u8>) {
            let proxy = ChaosProxy::start(echo_server().await, seed).await.unwrap();
            proxy.set(Faults {
                cut_per_mille: 100,
                corrupt_per_mille: 500,
                ..Faults::clean()
            });
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            let mut got = Vec::new();
            let mut cut = false;
            for i in 0..50u8 {
                if s.write_all(&[i; 64]).await.is_err() {
                    cut = true;
                    break;
                }
                let mut b = [0u8; 64];
                match tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b)).await {
                    Ok(Ok(_)) => got.extend_from_slice(&b),
                    _ => {
                        cut = true;
                        break;
                    }
                }
            }
            (cut, got)
        }
        let (cut, got) = run(42).await;
        assert!(cut, "a 10% cut rate over 100 chunks cuts the connection");
        let expected: Vec<u8> = (0..(got.len() / 64) as u8).flat_map(|i| [i; 64]).collect();
        assert_ne!(got, expected, "at 50% some echoed chunk was corrupted");
        assert_eq!(run(42).await, (cut, got), "the same seed, the same faults");
    }
}
