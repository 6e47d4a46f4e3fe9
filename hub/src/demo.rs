//! A ready-made PKI for `markaz demo`: a CA, a hub certificate for `127.0.0.1` and
//! `localhost`, and one center certificate (`demo`), in the `markaz pki` layout.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::pki::{self, Ca, Validity};

/// Paths of the demo PKI: what the hub's `[hub]` section and the demo center need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoPki {
    /// The PKI directory.
    pub dir: PathBuf,
    /// `[hub] ca_cert`.
    pub ca_cert: PathBuf,
    /// `[hub] server_cert`.
    pub server_cert: PathBuf,
    /// `[hub] server_key`.
    pub server_key: PathBuf,
    /// `[hub] crl`.
    pub crl: PathBuf,
    /// The center `demo`'s bundle directory (`cert.pem`, `key.pem`, `ca.pem`).
    pub center_bundle: PathBuf,
}

/// The demo center's id.
pub const DEMO_CENTER: &str = "demo";

/// Create (or reuse, if `dir` already holds a CA) the demo PKI in `dir`.
pub fn demo_pki(dir: &Path) -> anyhow::Result<DemoPki> {
    let ca = if dir.join(pki::CA_KEY).exists() {
        Ca::load(dir).context("while loading the demo CA")?
    } else {
        Ca::create(dir, "Markaz demo CA", Validity::days(3650)?)
            .context("while creating the demo CA")?
    };
    let hub = ca
        .issue_hub(
            &["127.0.0.1".into(), "localhost".into()],
            Validity::days(825)?,
        )
        .context("while issuing the demo hub certificate")?;
    let demo = DEMO_CENTER.parse()?;
    let center = ca
        .issue_center(&demo, Validity::days(825)?)
        .context("while issuing the demo center certificate")?;
    Ok(DemoPki {
        dir: dir.to_path_buf(),
        ca_cert: ca.cert_path(),
        server_cert: hub.cert_path,
        server_key: hub.key_path,
        crl: ca.crl_path(),
        center_bundle: center
            .cert_path
            .parent()
            .map_or_else(|| pki::center_dir(dir, &demo), Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_pki_makes_a_loadable_hub_and_center() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = demo_pki(dir.path()).expect("pki");
        let files = crate::tls::ServerTlsFiles {
            ca: p.ca_cert.clone(),
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            crl: p.crl.clone(),
        };
        crate::tls::server_config(&files).expect("hub tls loads");
        assert!(p.center_bundle.join(pki::CERT).exists());
        demo_pki(dir.path()).expect("again, reusing the CA");
    }
}
