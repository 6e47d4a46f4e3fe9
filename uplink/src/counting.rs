//! Byte counting on the raw stream under TLS, so the sync log records what the link
//! really carried (handshakes and record overhead included).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared running totals of bytes up (to the hub) and down. Cheap to clone; every clone
/// sees the same totals.
#[derive(Debug, Clone, Default)]
pub struct ByteCounters {
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

/// A snapshot of [`ByteCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCount {
    pub up: u64,
    pub down: u64,
}

impl ByteCount {
    /// What was carried since `earlier` (for one sync session).
    pub fn since(self, earlier: ByteCount) -> ByteCount {
        ByteCount {
            up: self.up.saturating_sub(earlier.up),
            down: self.down.saturating_sub(earlier.down),
        }
    }
}

impl ByteCounters {
    /// Fresh counters at zero.
    pub fn new() -> ByteCounters {
        ByteCounters::default()
    }

    /// The totals now.
    pub fn snapshot(&self) -> ByteCount {
        ByteCount {
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}

/// A stream that adds every byte read and written to [`ByteCounters`].
#[derive(Debug)]
pub struct CountingStream<S> {
    inner: S,
    counters: ByteCounters,
}

impl<S> CountingStream<S> {
    /// Wraps `inner`, counting into `counters`.
    pub fn new(inner: S, counters: ByteCounters) -> CountingStream<S> {
        CountingStream { inner, counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = (buf.filled().len() - before) as u64;
            this.counters.down.fetch_add(n, Ordering::Relaxed);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.counters.up.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.counters.up.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_exactly_what_crosses_the_stream() {
        let (a, mut b) = tokio::io::duplex(64);
        let counters = ByteCounters::new();
        let mut s = CountingStream::new(a, counters.clone());
        // The peer reads concurrently: the duplex buffer is smaller than what is written.
        let peer = tokio::spawn(async move {
            let mut got = vec![0u8; 1000];
            b.read_exact(&mut got).await.expect("read");
            b.write_all(b"hello").await.expect("reply");
            b
        });
        s.write_all(&[7u8; 1000]).await.expect("write");
        let _b = peer.await.expect("join");
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply).await.expect("read reply");
        let now = counters.snapshot();
        assert_eq!(now, ByteCount { up: 1000, down: 5 });
        assert_eq!(
            now.since(ByteCount { up: 400, down: 5 }),
            ByteCount { up: 600, down: 0 }
        );
    }
}
