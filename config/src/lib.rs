//! Markaz configuration: the TOML files of a center node and of the hub.
//!
//! [`load_node`] / [`load_hub`] read a file, [`parse_node`] / [`parse_hub`] take text,
//! and [`check_file`] tells which of the two a file is (a top-level `[hub]` table makes
//! it a hub file) and checks it. Every setting has a default, so an empty file is a
//! working node configuration. A file with problems gives a [`ConfigError`] that lists
//! all of them, each with file, line, column, key path and a hint:
//!
//! ```text
//! midan.toml:12:1: unknown key `prority_weight` in [queue]
//!   hint: did you mean `priority_weight`?
//! ```
//!
//! This crate knows nothing of the node or the hub; they read the plain structs.
//! Every key is listed in `docs/CONFIG.md`.

mod error;
mod hub;
mod loader;
mod node;
mod rules;
mod suggest;
mod values;

use std::fmt;
use std::path::Path;

pub use error::{ConfigError, Problem, ProblemKind};
pub use hub::{HubConfig, HubSection, HubStorage, StorageEngine};
pub use node::KioskConfig;
pub use node::{
    AuthConfig, BackupConfig, CenterConfig, ControlConfig, ControlMethod, ControllerFamily,
    CounterConfig, GeneratorConfig, GeneratorRegisters, InverterConfig, LinkConfig, LoggingConfig,
    MetricsConfig, ModbusTable, ModemConfig, ModemDialect, ModemRoute, NodeConfig, OnMonitorLost,
    PointConfig, PointTable, PowerConfig, PowerThresholds, QueueConfig, QueueGroupConfig,
    RegisterScale, Secs, ServerConfig, ServerTlsConfig, StorageConfig, SyncConfig, VeDirectConfig,
    VeDirectRole, WordOrderName,
};
pub use values::{
    CenterId, Digits, GroupId, GroupLetter, HhMm, HhMmRange, HostPort, HttpsUrl, Lang, LogFilter,
    LogFormat, PgSslMode, PgUrl, PhoneNumber, ReceiptPrefix, TimeZoneName, ValueError,
};

/// Which configuration a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A center node configuration.
    Node,
    /// A hub configuration (the file has a top-level `[hub]` table).
    Hub,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Node => "node",
            Self::Hub => "hub",
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

fn origin_of(path: &Path) -> String {
    path.display().to_string()
}

/// Parses and checks a node configuration from bytes (any bytes: never panics). With
/// `files`, the files it names (the LAN certificate and key) are checked on disk too.
fn parse_node_bytes(
    bytes: &[u8],
    origin_name: &str,
    files: bool,
) -> Result<NodeConfig, ConfigError> {
    loader::load(
        bytes,
        origin_name,
        files,
        NodeConfig::fill_defaults,
        rules::node,
    )
}

fn parse_hub_bytes(bytes: &[u8], origin_name: &str, files: bool) -> Result<HubConfig, ConfigError> {
    loader::load(bytes, origin_name, files, |_| {}, rules::hub)
}

/// Reads and checks a node configuration file, and the files it names (the LAN
/// certificate and key of `[server.tls]`) on this machine.
pub fn load_node(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigError> {
    let path = path.as_ref();
    parse_node_bytes(&read(path)?, &origin_of(path), true)
}

/// Parses and checks node configuration text; `origin_name` names it in errors. Files
/// it names are not looked at (see [`load_node`]).
pub fn parse_node(text: &str, origin_name: &str) -> Result<NodeConfig, ConfigError> {
    parse_node_bytes(text.as_bytes(), origin_name, false)
}

/// Reads and checks a hub configuration file, and that the files its `[storage]` names
/// (password, TLS certificates and key) can be read.
pub fn load_hub(path: impl AsRef<Path>) -> Result<HubConfig, ConfigError> {
    let path = path.as_ref();
    parse_hub_bytes(&read(path)?, &origin_of(path), true)
}

/// Parses and checks hub configuration text; `origin_name` names it in errors. The files
/// it names are not opened (see [`load_hub`]).
pub fn parse_hub(text: &str, origin_name: &str) -> Result<HubConfig, ConfigError> {
    parse_hub_bytes(text.as_bytes(), origin_name, false)
}

/// Whether the text is a hub file: it parses as TOML and has a top-level `[hub]`
/// table. Text that does not parse counts as a node file (whose loader then reports
/// the syntax error).
fn is_hub(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| toml::de::DeTable::parse(text).ok())
        .is_some_and(|root| {
            matches!(
                root.get_ref().get("hub").map(|v| v.get_ref()),
                Some(toml::de::DeValue::Table(_))
            )
        })
}

/// Decides whether a file is a node or a hub configuration and checks it fully, as
/// `markaz check-config FILE` does.
pub fn check_file(path: impl AsRef<Path>) -> Result<Kind, ConfigError> {
    let path = path.as_ref();
    let bytes = read(path)?;
    check_bytes(&bytes, &origin_of(path))
}

fn check_bytes(bytes: &[u8], origin_name: &str) -> Result<Kind, ConfigError> {
    if is_hub(bytes) {
        parse_hub_bytes(bytes, origin_name, true).map(|_| Kind::Hub)
    } else {
        parse_node_bytes(bytes, origin_name, true).map(|_| Kind::Node)
    }
}

#[cfg(test)]
mod tests;
