//! The center server: storage, domain, HTTP API, web UI, outbox, supervisors.

pub mod domain;
pub mod storage;
