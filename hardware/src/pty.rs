//! Linux pseudo-terminals for device emulators.
//!
//! An emulator owns the master side and hands the slave's path (`/dev/pts/N`) to the
//! driver, which opens it with `tokio-serial` exactly as it would open `/dev/ttyUSB0`.
//! The driver cannot tell the difference: it sets baud rate and termios on a real tty.
//!
//! Guarantees: the slave is put in raw mode before its path is handed out (no echo, no
//! line discipline), and the emulator keeps its own slave descriptor open so that the
//! master never sees EIO while the driver closes and reopens the port (as it does when
//! it resets a hung device).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{OpenptyResult, openpty};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The master side of a pseudo-terminal, usable as an async byte stream.
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
    // Held open so the master does not get EIO when the driver closes its side.
    _slave: OwnedFd,
    path: PathBuf,
}

impl PtyMaster {
    /// Opens a new pty pair in raw mode. Must be called inside a tokio runtime.
    #[allow(unsafe_code)] // each `unsafe` block here says why it is sound
    pub fn open() -> io::Result<Self> {
        let OpenptyResult { master, slave } = openpty(None, None).map_err(io::Error::from)?;
        let mut tio = tcgetattr(slave.as_fd()).map_err(io::Error::from)?;
        cfmakeraw(&mut tio);
        tcsetattr(slave.as_fd(), SetArg::TCSANOW, &tio).map_err(io::Error::from)?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))?;
        let flags = fcntl(master.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
        fcntl(
            master.as_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        // SAFETY: `master` is an `OwnedFd` moved into the `AsyncFd`, so the descriptor is
        // open, is not closed or replaced elsewhere, and `as_raw_fd` always returns it
        // for the whole life of the `AsyncFd`.
        let fd = unsafe { AsyncFd::register(master) }?;
        Ok(Self {
            fd,
            _slave: slave,
            path,
        })
    }

    /// The slave device path a driver opens, e.g. `/dev/pts/7`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| {
                nix::unistd::read(inner.get_ref(), unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO means no slave is open; ours always is, so treat it as a transient.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Pending,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard
                .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
            {
                Ok(res) => return Poll::Ready(res),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPortBuilderExt;

    #[tokio::test]
    async fn driver_opens_slave_as_a_serial_port() {
        let mut master = PtyMaster::open().unwrap();
        let mut port = tokio_serial::new(master.path().to_string_lossy(), 115_200)
            .open_native_async()
            .unwrap();
        port.write_all(b"AT\r").await.unwrap();
        let mut buf = [0u8; 3];
        master.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"AT\r");
        master.write_all(b"\r\nOK\r\n").await.unwrap();
        let mut reply = [0u8; 6];
        port.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\r\nOK\r\n");
    }
}
