//! The web stack that the center node and the governorate hub share, so that a rule about
//! accounts, sessions, pages or listeners lives once: operator and staff passwords
//! (argon2), sessions that expire, CSRF tokens, login rate limits, the template
//! environment (autoescaped), the i18n catalogs, the stylesheet, the JSON error format,
//! browser security headers and the listener's connection limits.
//!
//! It knows nothing of the node's or the hub's tables: each server hands it what it
//! stores (through small traits) and keeps its own pages and routes.

pub mod listen;
pub mod metrics;
