//! Automerge documents, their storage, and the sync protocol (both sides, sans-IO).
//!
//! `model` holds the plain, strict value types and rules of the documents that node and
//! hub share (ids, money, catalog, fees, citizens, cases, staff). The rest of the crate
//! stores those documents as automerge changes and moves them between center and hub:
//!
//! - [`hlc`]: hybrid logical clock stamps that sort as text.
//! - [`frame`]: checksummed frames and zstd batches (wire and disk).
//! - [`docs`]: document ids and typed schemas over automerge (case, citizen, staff,
//!   catalog, statistics, energy).
//! - [`store`]: the SQLite tables of changes and snapshots, and [`store::DocStore`].
//! - [`protocol`]: versioned messages, client and server sessions, the [`protocol::HubStore`]
//!   trait and its SQLite implementation.

pub mod docs;
pub mod frame;
pub mod hlc;
pub mod model;
pub mod protocol;
pub mod store;
