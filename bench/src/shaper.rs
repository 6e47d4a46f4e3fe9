//! An emulated slow link: a TCP proxy on loopback that shapes each direction to a
//! bandwidth and adds a one-way latency (the 3G link of issue 8: 48,000 bytes/s each
//! way, 150 ms one way).
//!
//! Model: each direction is a serial link of `bytes_per_sec` followed by a fixed delay.
//! A segment (at most [`SEGMENT`] bytes) leaves the link when the link is free and its
//! bytes have been clocked out (`len / bandwidth`), and arrives `latency` later. The
//! link's buffer is unbounded (the reader never blocks the sender), which only changes
//! when TCP's own flow control would have kicked in, not when the last byte arrives.
//! The proxy can be cut: every connection is dropped and the port closed, so connects
//! and link probes are refused (the failover benchmark).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest piece clocked through the link at once (an Ethernet-sized segment).
pub const SEGMENT: usize = 1460;

/// The shape of one direction.
#[derive(Debug, Clone, Copy)]
pub struct LinkShape {
    pub bytes_per_sec: f64,
    pub latency: Duration,
}

impl LinkShape {
    /// 3G as issue 8 defines it.
    pub const THREE_G: LinkShape = LinkShape {
        bytes_per_sec: 48_000.0,
        latency: Duration::from_millis(150),
    };

    /// No shaping at all (the proxy only forwards; used to cut a link).
    pub const UNSHAPED: LinkShape = LinkShape {
        bytes_per_sec: f64::INFINITY,
        latency: Duration::ZERO,
    };
}

/// A running proxy; dropping it stops it.
#[derive(Debug)]
pub struct Shaper {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    stop: CancellationToken,
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shaper {
    /// Listens on an ephemeral loopback port and forwards each connection to
    /// `127.0.0.1:target`, shaped by `shape` both ways.
    pub async fn start(target: u16, shape: LinkShape) -> std::io::Result<Shaper> {
        let first = TcpListener::bind("127.0.0.1:0").await?;
        let port = first.local_addr()?.port();
        let stop = CancellationToken::new();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let s = stop.clone();
        let c = cut.clone();
        let mut g = generation.subscribe();
        tokio::spawn(async move {
            let listener = first;
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => break,
                    _ = g.changed() => {
                        if c.load(Ordering::SeqCst) {
                            // Cut: no listener at all, so connects are refused.
                            drop(listener);
                            s.cancelled().await;
                            break;
                        }
                        continue;
                    }
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else { continue };
                let mut g = g.clone();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    g.mark_unchanged();
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = g.changed() => {}
                        _ = async { tokio::join!(pipe(ri, wo, shape), pipe(ro, wi, shape)) } => {}
                    }
                });
            }
        });
        Ok(Shaper {
            port,
            cut,
            generation,
            stop,
        })
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link: open connections are dropped and the port closed (connects are
    /// refused) for as long as the proxy runs.
    pub fn cut(&mut self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Copies `from` to `to` through one shaped direction; ends when `from` closes.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
    shape: LinkShape,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut link_free = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].chunks(SEGMENT) {
            let now = Instant::now();
            let start = link_free.max(now);
            let clock_out = if shape.bytes_per_sec.is_finite() {
                Duration::from_secs_f64(piece.len() as f64 / shape.bytes_per_sec)
            } else {
                Duration::ZERO
            };
            link_free = start + clock_out;
            if tx
                .send((link_free + shape.latency, piece.to_vec()))
                .is_err()
            {
                return;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo-less sink: reads everything and reports when the last byte came.
    async fn sink() -> (u16, tokio::task::JoinHandle<(usize, Instant)>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut total = 0;
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            (total, Instant::now())
        });
        (port, h)
    }

    #[tokio::test]
    async fn the_proxy_delivers_every_byte_no_sooner_than_the_link_allows() {
        let (port, done) = sink().await;
        let shape = LinkShape {
            bytes_per_sec: 20_000.0,
            latency: Duration::from_millis(100),
        };
        let proxy = Shaper::start(port, shape).await.unwrap();
        let start = Instant::now();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        c.write_all(&[7u8; 4_000]).await.unwrap();
        c.shutdown().await.unwrap();
        let (total, at) = done.await.unwrap();
        assert_eq!(total, 4_000);
        // 4,000 bytes at 20,000 B/s is 200 ms, plus 100 ms of latency.
        assert!(at - start >= Duration::from_millis(300), "{:?}", at - start);
    }

    #[tokio::test]
    async fn a_cut_link_refuses_connections() {
        let (port, _done) = sink().await;
        let mut proxy = Shaper::start(port, LinkShape::UNSHAPED).await.unwrap();
        proxy.cut();
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", proxy.port()))
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the cut port refuses connections");
    }
}
