//! The web stack that the center node and the governorate hub share, so that a rule about
//! accounts, sessions, pages or listeners lives once: operator and staff passwords
//! (argon2), sessions that expire, CSRF tokens, login rate limits, the template
//! environment (autoescaped), the i18n catalogs, the stylesheet, the JSON error format,
//! browser security headers and the listener's connection limits.
//!
//! It knows nothing of the node's or the hub's tables: each server hands it what it
//! stores (through small traits) and keeps its own pages and routes.
//!
//! - [`password`] — argon2id hashes, random tokens and their stored hashes, the CSRF token
//!   derived from a session token (so no CSRF secret is ever stored).
//! - [`session`] — when a session is still alive (absolute lifetime, idle timeout).
//! - [`login`] — the login limit per (username, client address): a growing delay, never
//!   a lock of the username as a whole.
//! - [`i18n`] — languages, digit styles, the catalog format and its checks.
//! - [`render`] — the functions and filters every template gets (`t`, `num`, `money`,
//!   `minutes`) and the checks that templates carry no literal text.
//! - [`listen`] — the listener with a header-read timeout and connection limits.
//! - [`http`] — cookies, local redirects, the security headers of every response, the
//!   stylesheet.

pub mod http;
pub mod i18n;
pub mod listen;
pub mod login;
pub mod metrics;
pub mod password;
pub mod render;
pub mod session;
