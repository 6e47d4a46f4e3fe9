//! Automerge documents, their storage, and the sync protocol (both sides, sans-IO).
//!
//! `model` holds the plain, strict value types and rules of the documents that node and
//! hub share (ids, money, catalog, fees, citizens, cases, staff). The rest of the crate
//! stores those documents as automerge changes and moves them between center and hub.

pub mod model;
