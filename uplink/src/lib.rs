//! The center's side of the mutual-TLS pipe to the governorate hub.
//!
//! Layers, inside out: a [`Connector`] gives a raw byte stream to the hub — over the OS
//! ([`TcpConnector`], the laser link) or over the 3G modem's AT sockets
//! ([`ModemConnector`]); [`CountingStream`] counts every byte on that stream (TLS records
//! included) for the sync log; rustls runs on top with the center's client certificate;
//! hyper's HTTP/1.1 client runs on the TLS stream. [`HubClient`] owns all of it: it keeps
//! one connection alive, reconnects through the connector when it drops, and resumes the
//! TLS session on reconnect (one round trip saved, which matters at 3G latencies).
//!
//! Guarantees: every await on the network has a timeout; a response body is never read
//! beyond a configured size; a request that fails on a reused keep-alive connection (the
//! hub closed it while idle) is sent once more on a fresh connection — safe because every
//! sync message is idempotent.
//!
//! A crate of its own so that the node, the bench and the hub's tests use one client
//! without the hub depending on the node. The path and headers it sends are the sync
//! contract's (`markaz_sync::protocol::contract`).

mod client;
mod connector;
mod counting;

pub use client::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, UplinkError, client_config,
    uplink_of_connector,
};
pub use connector::{AsyncStream, BoxedStream, Connector, ModemConnector, TcpConnector};
pub use counting::{ByteCount, ByteCounters, CountingStream};
