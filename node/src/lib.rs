//! The center server: storage, domain, HTTP API, web UI, outbox, supervisors.
//!
//! Layers, outside in: [`server`] (axum, one listener) → [`api`] (JSON) and [`web`]
//! (pages) → [`app`] (use cases: roles, permissions, transactions, events) → [`domain`]
//! and `markaz_sync::model` (pure rules) and [`storage`] (SQLite, group commit).

pub mod api;
pub mod app;
pub mod auth;
pub mod center;
pub mod devices;
pub mod domain;
pub mod error;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod storage;
pub mod sync;
pub mod watchdog;
pub mod web;
