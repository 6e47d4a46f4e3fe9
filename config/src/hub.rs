//! The hub's configuration: what `markaz hub --config FILE` reads.
//!
//! A hub file is recognised by its top-level `[hub]` table. Like the node file, every
//! field has a default and unknown keys are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::node::{LoggingConfig, MetricsConfig};
use crate::values::{PgUrl, TimeZoneName};

/// The whole hub configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// `[hub]`: listeners, storage and TLS material.
    pub hub: HubSection,
    /// `[storage]`: which database engine holds the hub's data.
    pub storage: HubStorage,
    /// `[logging]`: as in the node file.
    pub logging: LoggingConfig,
    /// `[metrics]`: the Prometheus endpoint, as in the node file.
    pub metrics: MetricsConfig,
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
    /// Days the sync log (one row per request) and the sessions are kept. Default 90.
    pub sync_log_days: u32,
    /// The governorate's time zone: every time on the operator pages. Default
    /// `Asia/Damascus`.
    pub timezone: TimeZoneName,
    /// A center silent (no successful sync) this many minutes stands out on the
    /// overview and in `/api/v1/alerts`. Default 60.
    pub silent_after_minutes: u32,
    /// Accept the old shared token in `<data_dir>/operator.token` as an administrator's
    /// API token, for scripts not yet given their own. Default false.
    pub legacy_operator_token: bool,
    /// Mark the operator session cookie `Secure` (the pages are reached over HTTPS
    /// through a proxy). Default false.
    pub secure_cookies: bool,
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
            sync_log_days: 90,
            timezone: "Asia/Damascus"
                .parse()
                .expect("the default time zone is in the bundled database"),
            silent_after_minutes: 60,
            legacy_operator_token: false,
            secure_cookies: false,
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

/// The hub's database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// One SQLite file in `hub.data_dir`, one hub process (the embedded default).
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by one or more hub processes.
    Postgres,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubStorage {
    /// `sqlite` (default) or `postgres`.
    pub engine: StorageEngine,
    /// PostgreSQL: a libpq URL without the password,
    /// `postgres://markaz@127.0.0.1:5432/markaz`. Required for `postgres`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<PgUrl>,
    /// PostgreSQL: a file holding the role's password (first line). Default: none (peer,
    /// trust or a `~/.pgpass` of the hub's user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections this hub process keeps open, each serving one request at
    /// a time. Default 4.
    pub pool_size: u32,
    /// PostgreSQL over TLS: the CA certificate (PEM) that signed the database server's
    /// certificate. The chain and the URL's host name are verified. Setting it makes
    /// `sslmode` default to `require`. Default: none (plain TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// PostgreSQL over TLS: the hub's client certificate (PEM), for `cert` authentication
    /// in `pg_hba.conf` (its CN is the role). Needs `client_key`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl Default for HubStorage {
    fn default() -> Self {
        Self {
            engine: StorageEngine::Sqlite,
            url: None,
            password_file: None,
            pool_size: 4,
            ca_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}
