//! TCP through the modem's own IP stack.
//!
//! [`SocketDialect`] is the module family's AT vocabulary for data sockets (context
//! setup, open, send, read, close, and the URCs that drive them); [`Quectel`] speaks the
//! UC20/UC15 buffer-access dialect. [`ModemTcpStream`] is `AsyncRead + AsyncWrite`, so
//! TLS and HTTP run over it unchanged. It never touches the port: it talks to the driver
//! task through channels, and the driver interleaves socket commands with status polls
//! and SMS.
//!
//! Guarantees: writes are cut into sends of at most [`SocketDialect::max_send`] bytes,
//! one in flight at a time, and a failed send is reported on the next write or flush;
//! reads end with EOF when the remote closes (after all buffered data is delivered) and
//! with an error when the data context drops or the modem is reset.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use super::at::{AtCommand, FinalResult, Response};
use super::driver::{Request, SocketKey};

/// Why a socket operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    /// The modem is not ready (no SIM, not registered, resetting, dead, not configured).
    #[error("modem unavailable: {0}")]
    Unavailable(String),
    /// The data context (PDP) could not be activated.
    #[error("data context activation failed: {0}")]
    ContextFailed(String),
    /// The module reported an open error (Quectel: 561 PDP, 563 in use, 565 DNS,
    /// 566 connect failed, 569 timeout, 570 PDP broken).
    #[error("connect failed with module error {0}")]
    ConnectFailed(u16),
    /// All socket ids are in use.
    #[error("no free socket")]
    NoFreeSocket,
    /// The module answered `SEND FAIL` or an error to a send.
    #[error("send failed")]
    SendFailed,
    /// The module did not answer in time.
    #[error("modem timed out")]
    Timeout,
    /// The socket is closed (by the peer, a reset, or a context drop).
    #[error("socket closed")]
    Closed,
    /// An unexpected reply.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl From<TcpError> for io::Error {
    fn from(e: TcpError) -> Self {
        let kind = match e {
            TcpError::Timeout => io::ErrorKind::TimedOut,
            TcpError::Closed => io::ErrorKind::BrokenPipe,
            TcpError::ConnectFailed(_) => io::ErrorKind::ConnectionRefused,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Unsolicited socket events a dialect recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketUrc {
    /// The result of an open: 0 is success, anything else a module error code.
    Opened {
        /// Socket id.
        id: u8,
        /// Module error code (0 = connected).
        error: u16,
    },
    /// Data is waiting in the module's buffer.
    DataReady {
        /// Socket id.
        id: u8,
    },
    /// The peer closed the connection.
    Closed {
        /// Socket id.
        id: u8,
    },
    /// The data context dropped: every socket is gone.
    ContextLost,
}

/// APN credentials for the data context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Apn {
    /// Access point name.
    pub name: String,
    /// User name (may be empty).
    pub user: String,
    /// Password (may be empty).
    pub password: String,
}

/// The AT vocabulary of one module family for TCP sockets.
pub trait SocketDialect: Send + Sync + fmt::Debug + 'static {
    /// Number of socket ids (0..n).
    fn max_sockets(&self) -> u8;
    /// Largest payload of one send.
    fn max_send(&self) -> usize;
    /// Sets APN and credentials of the context.
    fn configure_context(&self, apn: &Apn) -> AtCommand;
    /// Asks whether the context is active.
    fn query_context(&self) -> AtCommand;
    /// Reads the answer to [`Self::query_context`].
    fn context_active(&self, response: &Response) -> bool;
    /// Activates the context (slow).
    fn activate_context(&self) -> AtCommand;
    /// Opens a TCP connection; the result arrives as [`SocketUrc::Opened`].
    fn open(&self, id: u8, host: &str, port: u16) -> AtCommand;
    /// Sends `data` (at most [`Self::max_send`] bytes).
    fn send(&self, id: u8, data: &[u8]) -> AtCommand;
    /// Whether a send's final result means success.
    fn send_ok(&self, result: &FinalResult) -> bool;
    /// Reads buffered received data.
    fn read(&self, id: u8) -> AtCommand;
    /// Extracts the bytes from the answer to [`Self::read`] (empty = buffer drained).
    fn read_data(&self, response: &Response) -> Result<Vec<u8>, TcpError>;
    /// Closes a socket.
    fn close(&self, id: u8) -> AtCommand;
    /// Recognises a socket URC.
    fn parse_urc(&self, line: &str) -> Option<SocketUrc>;
}

/// Quectel UC20/UC15 (and the EC2x family), buffer access mode, context 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quectel;

fn quote_safe(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && !c.is_control()).collect()
}

impl SocketDialect for Quectel {
    fn max_sockets(&self) -> u8 {
        12
    }

    fn max_send(&self) -> usize {
        1460
    }

    fn configure_context(&self, apn: &Apn) -> AtCommand {
        AtCommand::new(format!(
            "AT+QICSGP=1,1,\"{}\",\"{}\",\"{}\",1",
            quote_safe(&apn.name),
            quote_safe(&apn.user),
            quote_safe(&apn.password)
        ))
    }

    fn query_context(&self) -> AtCommand {
        AtCommand::new("AT+QIACT?")
    }

    fn context_active(&self, response: &Response) -> bool {
        response.lines.iter().any(|l| {
            l.strip_prefix("+QIACT:")
                .map(|r| r.trim().split(',').nth(1) == Some("1") && r.trim().starts_with("1,"))
                .unwrap_or(false)
        })
    }

    fn activate_context(&self) -> AtCommand {
        AtCommand::new("AT+QIACT=1")
    }

    fn open(&self, id: u8, host: &str, port: u16) -> AtCommand {
        AtCommand::new(format!(
            "AT+QIOPEN=1,{id},\"TCP\",\"{}\",{port},0,0",
            quote_safe(host)
        ))
    }

    fn send(&self, id: u8, data: &[u8]) -> AtCommand {
        AtCommand::with_payload(format!("AT+QISEND={id},{}", data.len()), data.to_vec())
    }

    fn send_ok(&self, result: &FinalResult) -> bool {
        *result == FinalResult::SendOk
    }

    fn read(&self, id: u8) -> AtCommand {
        AtCommand::with_raw_data(format!("AT+QIRD={id},1500"), "+QIRD:")
    }

    fn read_data(&self, response: &Response) -> Result<Vec<u8>, TcpError> {
        if !response.is_ok() {
            return Err(TcpError::Protocol(format!("{:?}", response.result)));
        }
        let n: usize = response
            .info("+QIRD:")
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| TcpError::Protocol("missing +QIRD".into()))?;
        if response.data.len() != n {
            return Err(TcpError::Protocol(format!(
                "+QIRD announced {n} bytes, got {}",
                response.data.len()
            )));
        }
        Ok(response.data.clone())
    }

    fn close(&self, id: u8) -> AtCommand {
        AtCommand::new(format!("AT+QICLOSE={id}"))
    }

    fn parse_urc(&self, line: &str) -> Option<SocketUrc> {
        if let Some(rest) = line.strip_prefix("+QIOPEN:") {
            let mut it = rest.split(',').map(|s| s.trim().parse::<u16>().ok());
            let id = u8::try_from(it.next()??).ok()?;
            let error = it.next()??;
            return Some(SocketUrc::Opened { id, error });
        }
        let rest = line.strip_prefix("+QIURC:")?.trim();
        let (kind, arg) = rest.split_once(',').unwrap_or((rest, ""));
        let id = || arg.trim().parse::<u8>().ok();
        match kind.trim().trim_matches('"') {
            "recv" => Some(SocketUrc::DataReady { id: id()? }),
            "closed" => Some(SocketUrc::Closed { id: id()? }),
            "pdpdeact" => Some(SocketUrc::ContextLost),
            _ => None,
        }
    }
}

/// A TCP connection through the modem.
pub struct ModemTcpStream {
    key: SocketKey,
    max_send: usize,
    tx: mpsc::Sender<Request>,
    poll_tx: PollSender<Request>,
    incoming: mpsc::Receiver<Result<Bytes, TcpError>>,
    leftover: Bytes,
    inflight: Option<oneshot::Receiver<Result<(), TcpError>>>,
    read_done: bool,
    shut: bool,
}

impl fmt::Debug for ModemTcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModemTcpStream")
            .field("socket", &self.key)
            .finish_non_exhaustive()
    }
}

impl ModemTcpStream {
    pub(crate) fn new(
        key: SocketKey,
        max_send: usize,
        tx: mpsc::Sender<Request>,
        incoming: mpsc::Receiver<Result<Bytes, TcpError>>,
    ) -> Self {
        Self {
            key,
            max_send,
            poll_tx: PollSender::new(tx.clone()),
            tx,
            incoming,
            leftover: Bytes::new(),
            inflight: None,
            read_done: false,
            shut: false,
        }
    }

    /// The module's socket id.
    pub fn socket_id(&self) -> u8 {
        self.key.id
    }

    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(rx) = &mut self.inflight {
            let res = ready!(Pin::new(rx).poll(cx));
            self.inflight = None;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Poll::Ready(Err(e.into())),
                Err(_) => return Poll::Ready(Err(TcpError::Closed.into())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ModemTcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.leftover.is_empty() {
                let n = self.leftover.len().min(buf.remaining());
                buf.put_slice(&self.leftover[..n]);
                self.leftover.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.incoming.poll_recv(cx)) {
                Some(Ok(b)) => self.leftover = b,
                Some(Err(e)) => {
                    self.read_done = true;
                    return Poll::Ready(Err(e.into()));
                }
                None => {
                    self.read_done = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for ModemTcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shut {
            return Poll::Ready(Err(TcpError::Closed.into()));
        }
        ready!(self.poll_inflight(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_tx.poll_reserve(cx)).map_err(|_| io::Error::from(TcpError::Closed))?;
        let n = data.len().min(self.max_send);
        let (reply, rx) = oneshot::channel();
        let req = Request::SocketSend {
            key: self.key,
            data: Bytes::copy_from_slice(&data[..n]),
            reply,
        };
        self.poll_tx
            .send_item(req)
            .map_err(|_| io::Error::from(TcpError::Closed))?;
        self.inflight = Some(rx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_inflight(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_inflight(cx))?;
        if !self.shut {
            self.shut = true;
            let _ = self.tx.try_send(Request::SocketClose { key: self.key });
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for ModemTcpStream {
    fn drop(&mut self) {
        if !self.shut {
            let _ = self.tx.try_send(Request::SocketClose { key: self.key });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::at::{AtEngine, Output};

    #[test]
    fn quectel_urcs() {
        let q = Quectel;
        assert_eq!(
            q.parse_urc("+QIOPEN: 0,0"),
            Some(SocketUrc::Opened { id: 0, error: 0 })
        );
        assert_eq!(
            q.parse_urc("+QIOPEN: 3,566"),
            Some(SocketUrc::Opened { id: 3, error: 566 })
        );
        assert_eq!(
            q.parse_urc("+QIURC: \"recv\",2"),
            Some(SocketUrc::DataReady { id: 2 })
        );
        assert_eq!(
            q.parse_urc("+QIURC: \"closed\",1"),
            Some(SocketUrc::Closed { id: 1 })
        );
        assert_eq!(
            q.parse_urc("+QIURC: \"pdpdeact\",1"),
            Some(SocketUrc::ContextLost)
        );
        assert_eq!(q.parse_urc("+QIURC: \"recv\""), None);
        assert_eq!(q.parse_urc("+CREG: 1"), None);
    }

    #[test]
    fn quectel_commands_and_read() {
        let q = Quectel;
        let apn = Apn {
            name: "internet\"x".into(),
            user: String::new(),
            password: String::new(),
        };
        assert_eq!(
            q.configure_context(&apn).line,
            "AT+QICSGP=1,1,\"internetx\",\"\",\"\",1"
        );
        assert_eq!(
            q.open(0, "127.0.0.1", 8443).line,
            "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8443,0,0"
        );
        let mut e = AtEngine::new();
        e.submit(q.read(0)).unwrap();
        e.feed(b"\r\n+QIRD: 3\r\nabc\r\n\r\nOK\r\n");
        let r = std::iter::from_fn(|| e.poll_output())
            .find_map(|o| match o {
                Output::Response(r) => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(q.read_data(&r).unwrap(), b"abc");
        let mut e = AtEngine::new();
        e.submit(q.query_context()).unwrap();
        e.feed(b"\r\n+QIACT: 1,1,1,\"10.0.0.2\"\r\n\r\nOK\r\n");
        let r = std::iter::from_fn(|| e.poll_output())
            .find_map(|o| match o {
                Output::Response(r) => Some(r),
                _ => None,
            })
            .unwrap();
        assert!(q.context_active(&r));
    }
}
