//! The modem's OS route (`[link] modem_route = "os-route"`): the module is brought up by
//! the OS (pppd, a QMI/ECM interface such as `wwan0`), and data to the hub goes through a
//! plain TCP socket bound to that interface with `SO_BINDTODEVICE`, instead of the
//! driver's AT socket commands. The driver keeps polling status and sending SMS on the
//! serial port either way.
//!
//! Binding to the device (not merely to its address) makes the socket use the modem
//! even while the routing table still points at the laser link, and fail at once when
//! the interface is gone rather than leak over another link. Binding needs
//! `CAP_NET_RAW` (the node runs as root on the center's box).

use std::io;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// Opens `host:port` over `interface`, trying each resolved address in turn, all within
/// `limit`.
pub async fn connect_via(
    interface: &str,
    host: &str,
    port: u16,
    limit: Duration,
) -> io::Result<TcpStream> {
    let attempt = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            bind_device(&socket, interface)?;
            match socket.connect(addr).await {
                Ok(s) => {
                    // Sync batches are written whole; don't let Nagle hold the last segment.
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
        }))
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TCP connect to {host}:{port} over {interface} timed out"),
        )
    })?
}

#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
fn bind_device(socket: &TcpSocket, interface: &str) -> io::Result<()> {
    socket.bind_device(Some(interface.as_bytes())).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind to interface {interface} (SO_BINDTODEVICE): {e}"),
        )
    })
}

#[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
fn bind_device(_: &TcpSocket, interface: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("binding to interface {interface} needs Linux (SO_BINDTODEVICE)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binding needs CAP_NET_RAW; the tests run as root, but say why if not.
    fn can_bind() -> bool {
        let s = TcpSocket::new_v4().expect("socket");
        match s.bind_device(Some(b"lo")) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: SO_BINDTODEVICE needs CAP_NET_RAW ({e})");
                false
            }
            Err(e) => panic!("binding to lo: {e}"),
        }
    }

    #[tokio::test]
    async fn connects_over_the_named_interface_and_refuses_a_missing_one() {
        if !can_bind() {
            return;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let limit = Duration::from_secs(2);
        let s = connect_via("lo", "127.0.0.1", port, limit)
            .await
            .expect("over lo");
        let (peer, _) = listener.accept().await.expect("accepted");
        assert_eq!(peer.peer_addr().unwrap(), s.local_addr().unwrap());
        let err = connect_via("nosuchif0", "127.0.0.1", port, limit)
            .await
            .expect_err("no such interface");
        assert!(err.to_string().contains("nosuchif0"), "{err}");
    }
}
