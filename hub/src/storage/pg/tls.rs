//! TLS to PostgreSQL: how a hub process encrypts its connections to a database server on
//! another machine, and verifies that server.
//!
//! The mode comes from `sslmode` in `storage.url` (libpq's words): `disable` is plain
//! TCP; `prefer` is TLS when the server offers it; `require` (or `verify-full`) is TLS or
//! no connection. Whenever TLS is used, the server's certificate must chain to
//! `storage.ca_cert` and name the URL's host (a DNS name or an IP address SAN): the hub
//! never encrypts without verifying, so a mode other than `disable` needs the CA
//! (`check-config` says so). Without `sslmode`, a configured CA means `require`, no CA
//! means `disable` (the database on the hub's own machine or private link).
//!
//! `storage.client_cert` / `client_key` add a client certificate for `cert`
//! authentication in `pg_hba.conf`. rustls (ring) is the TLS stack, as for the centers'
//! sync endpoint; no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use markaz_config::{HubStorage, PgSslMode};
use postgres::config::SslMode;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::storage::StorageError;
use crate::tls::{provider, read_certs};

/// How a hub process's connections to PostgreSQL are protected.
#[derive(Clone, Default)]
pub enum PgTls {
    /// Plain TCP (`sslmode=disable`, or no CA configured).
    #[default]
    Off,
    /// TLS, verified against `ca_cert`.
    On {
        /// `prefer` (plain TCP if the server does not offer TLS) or `require`.
        mode: PgSslMode,
        /// The CA file, for messages.
        ca_cert: PathBuf,
        config: Arc<ClientConfig>,
    },
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgTls::Off => f.write_str("Off"),
            PgTls::On { mode, ca_cert, .. } => f
                .debug_struct("On")
                .field("mode", &mode.as_str())
                .field("ca_cert", ca_cert)
                .finish(),
        }
    }
}

impl PgTls {
    /// From the hub's `[storage]`: reads the CA and the client certificate and key.
    pub fn from_config(s: &HubStorage) -> Result<PgTls, StorageError> {
        let given = s.url.as_ref().and_then(|u| u.sslmode());
        let mode = match (given, &s.ca_cert) {
            (Some(PgSslMode::Disable), _) | (None, None) => return Ok(PgTls::Off),
            (Some(m), Some(_)) => m,
            (None, Some(_)) => PgSslMode::Require,
            (Some(m), None) => {
                return Err(StorageError::Invalid(format!(
                    "sslmode={} needs storage.ca_cert to verify the PostgreSQL server",
                    m.as_str()
                )));
            }
        };
        let ca = s.ca_cert.as_deref().unwrap_or(Path::new(""));
        let client = match (&s.client_cert, &s.client_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(StorageError::Invalid(
                    "storage.client_cert and storage.client_key go together".into(),
                ));
            }
        };
        PgTls::verified(mode, ca, client)
    }

    /// TLS in `mode` (`Prefer` or `Require`), verifying the server against the CA in
    /// `ca_cert`, sending the client certificate `client` (certificate, key) if given.
    pub fn verified(
        mode: PgSslMode,
        ca_cert: &Path,
        client: Option<(&Path, &Path)>,
    ) -> Result<PgTls, StorageError> {
        if mode == PgSslMode::Disable {
            return Ok(PgTls::Off);
        }
        let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            StorageError::Invalid(format!("storage.{what} {}: {e}", path.display()))
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_cert).map_err(|e| bad("ca_cert", ca_cert, &e))? {
            roots
                .add(cert)
                .map_err(|e| bad("ca_cert", ca_cert, &format!("not a usable CA: {e}")))?;
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| StorageError::Invalid(format!("TLS to PostgreSQL: {e}")))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert).map_err(|e| bad("client_cert", cert, &e))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| bad("client_key", key, &e))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    bad(
                        "client_key",
                        cert,
                        &format!("does not fit the certificate: {e}"),
                    )
                })?
            }
        };
        Ok(PgTls::On {
            mode,
            ca_cert: ca_cert.to_path_buf(),
            config: Arc::new(config),
        })
    }

    /// Whether the connections are encrypted (or may be, for `prefer`).
    pub fn is_on(&self) -> bool {
        matches!(self, PgTls::On { .. })
    }

    /// Connect with `config`, encrypted as this says.
    pub(crate) fn connect(
        &self,
        config: &mut postgres::Config,
    ) -> Result<postgres::Client, postgres::Error> {
        match self {
            PgTls::Off => config.ssl_mode(SslMode::Disable).connect(postgres::NoTls),
            PgTls::On {
                mode, config: tls, ..
            } => {
                config.ssl_mode(match mode {
                    PgSslMode::Prefer => SslMode::Prefer,
                    _ => SslMode::Require,
                });
                config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (**tls).clone(),
                ))
            }
        }
    }

    /// A failed connection, said so that an operator knows what to fix: a server
    /// certificate that does not verify names the CA file and the host.
    pub(crate) fn explain(&self, host: &str, port: u16, e: postgres::Error) -> StorageError {
        let PgTls::On { ca_cert, mode, .. } = self else {
            return e.into();
        };
        let Some(tls) = rustls_error(&e) else {
            let text = e.to_string();
            if text.contains("server does not support TLS") {
                return StorageError::Invalid(format!(
                    "PostgreSQL at {host}:{port} does not offer TLS, and sslmode={} \
                     requires it: set `ssl = on` (with ssl_cert_file and ssl_key_file) in \
                     postgresql.conf",
                    mode.as_str()
                ));
            }
            return e.into();
        };
        let why = match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
                "its certificate is not signed by the CA in storage.ca_cert ({})",
                ca_cert.display()
            ),
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "its certificate does not name `{host}` (the host in storage.url); issue it \
                 with that name or IP address, or use the name it has in the URL"
            ),
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
            ) => "its certificate has expired".to_string(),
            other => other.to_string(),
        };
        StorageError::Invalid(format!(
            "refused the PostgreSQL server at {host}:{port} over TLS: {why} ({tls})"
        ))
    }
}

/// The rustls error inside a failed TLS handshake, if that is what failed.
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // tokio-rustls wraps it in an io::Error, whose `source` skips it.
        if let Some(t) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}
