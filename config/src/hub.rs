//! The hub's configuration: what `markaz hub --config FILE` reads.
//!
//! A hub file is recognised by its top-level `[hub]` table. Like the node file, every
//! field has a default and unknown keys are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::node::LoggingConfig;

/// The whole hub configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// `[hub]`: listeners, storage and TLS material.
    pub hub: HubSection,
    /// `[logging]`: as in the node file.
    pub logging: LoggingConfig,
}

/// `[hub]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSection {
    /// Sync endpoint (HTTPS with client certificates). Default `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// Directory of the hub database. Default `/var/lib/markaz-hub`.
    pub data_dir: PathBuf,
    /// Oversight web pages (policy and oversight department). Default `0.0.0.0:8090`.
    pub web_listen: SocketAddr,
    /// CA certificate (PEM) that signs center certificates. Default
    /// `<data_dir>/tls/ca.pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The hub's server certificate (PEM). Default `<data_dir>/tls/server.pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cert: Option<PathBuf>,
    /// Its private key (PEM). Default `<data_dir>/tls/server.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key: Option<PathBuf>,
    /// Certificate revocation list (PEM) of withdrawn center certificates. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// Largest accepted sync request body. Default 8388608.
    pub max_body_bytes: u64,
}

impl Default for HubSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            data_dir: PathBuf::from("/var/lib/markaz-hub"),
            web_listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            ca_cert: None,
            server_cert: None,
            server_key: None,
            crl: None,
            max_body_bytes: 8_388_608,
        }
    }
}

impl HubSection {
    fn in_tls_dir(&self, given: &Option<PathBuf>, file: &str) -> PathBuf {
        given
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls").join(file))
    }

    /// The CA certificate path, explicit or `<data_dir>/tls/ca.pem`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.in_tls_dir(&self.ca_cert, "ca.pem")
    }

    /// The server certificate path, explicit or `<data_dir>/tls/server.pem`.
    pub fn server_cert_path(&self) -> PathBuf {
        self.in_tls_dir(&self.server_cert, "server.pem")
    }

    /// The server key path, explicit or `<data_dir>/tls/server.key`.
    pub fn server_key_path(&self) -> PathBuf {
        self.in_tls_dir(&self.server_key, "server.key")
    }

    /// The CRL path, if one is configured.
    pub fn crl_path(&self) -> Option<&Path> {
        self.crl.as_deref()
    }
}
