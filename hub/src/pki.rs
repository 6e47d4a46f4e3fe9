//! The governorate's small PKI: one CA, the hub's server certificate, one client
//! certificate per center, a LAN server certificate per center (HTTPS for the clerks'
//! terminals, `[server.tls]`), and a CRL to revoke them.
//!
//! Everything here is a plain function over a directory of PEM files (no network, no
//! global state), so `markaz pki …` and the tests call the same code. A center's identity
//! is its [`CenterId`], carried twice in its certificate: as the subject CN and as the URI
//! SAN `urn:markaz:center:<id>`; the hub authorises sync from that certificate and never
//! from a request body (see [`crate::tls`]).
//!
//! Guarantees:
//! - private keys are written with mode 0600, atomically (temp file + rename), so a crash
//!   never leaves a half-written key;
//! - every certificate issued is recorded in `index.json` (serial, kind, center,
//!   validity, revocation), so a center can be revoked by id and the CRL regenerated with
//!   every revoked serial, with a growing CRL number;
//! - validity windows are explicit ([`Validity`]), so expired certificates can be made on
//!   purpose in tests.
//!
//! File layout of a PKI directory:
//!
//! ```text
//! <pki>/ca.pem                     CA certificate (public: goes to the hub and every center)
//! <pki>/ca.key                     CA private key (0600) — keep this directory off the network
//! <pki>/crl.pem                    CRL signed by the CA, rewritten on `init` and every revoke
//! <pki>/index.json                 every certificate issued, with its serial and revocation
//! <pki>/hub/cert.pem               hub server certificate
//! <pki>/hub/key.pem                hub server key (0600)
//! <pki>/centers/<id>/cert.pem      center client certificate
//! <pki>/centers/<id>/key.pem       center client key (0600)
//! <pki>/centers/<id>/ca.pem        copy of the CA certificate: the folder is the bundle to
//!                                  copy to the center
//! <pki>/lan/<id>/cert.pem          the center's LAN server certificate (its box's names
//!                                  and addresses on the center's network)
//! <pki>/lan/<id>/key.pem           its key (0600)
//! <pki>/lan/<id>/ca.pem            copy of the CA certificate, to trust on the terminals
//! ```

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use jiff::{SignedDuration, Timestamp};
use markaz_sync::model::CenterId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};

/// File name of the CA certificate in a PKI directory (and in a center bundle).
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY: &str = "ca.key";
/// File name of the certificate revocation list.
pub const CRL: &str = "crl.pem";
/// File name of the registry of issued certificates.
pub const INDEX: &str = "index.json";
/// Sub-directory with the hub's server certificate and key.
pub const HUB_DIR: &str = "hub";
/// Sub-directory with one bundle directory per center.
pub const CENTERS_DIR: &str = "centers";
/// Sub-directory with one LAN certificate directory per center.
pub const LAN_DIR: &str = "lan";
/// File name of a leaf certificate inside `hub/` or `centers/<id>/`.
pub const CERT: &str = "cert.pem";
/// File name of a leaf private key inside `hub/` or `centers/<id>/`.
pub const KEY: &str = "key.pem";

/// The URI SAN prefix that carries a center's id.
pub const CENTER_URI_PREFIX: &str = "urn:markaz:center:";

/// How long a regenerated CRL announces itself valid. The hub does not enforce the CRL's
/// next-update (a stale CRL still revokes), so this is informational.
const CRL_VALID_DAYS: i64 = 365;

/// What went wrong while creating, loading or using the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("while {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a CA already exists in {0}; refusing to overwrite it")]
    CaExists(PathBuf),
    #[error("no CA in {0} (run `markaz pki init` first)")]
    NoCa(PathBuf),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate index {path} is unreadable: {source}")]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid validity window: not_before {not_before} is not before not_after {not_after}")]
    BadValidity {
        not_before: Timestamp,
        not_after: Timestamp,
    },
    #[error("validity of {days} days is out of range")]
    BadDays { days: u32 },
    #[error("a server certificate needs at least one DNS name or IP address (--san)")]
    NoSans,
    #[error("{0:?} is not a valid DNS name or IP address for a server certificate")]
    BadSan(String),
    #[error("nothing to revoke: no active certificate matches {0}")]
    NothingToRevoke(String),
    #[error("{0:?} is not a certificate serial (hex digits)")]
    BadSerial(String),
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate serial number, shown and stored as lowercase hex of its DER integer
/// bytes (the form `openssl x509 -serial` prints, in lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    /// A fresh random 128-bit serial. The top byte is in 0x40..=0x7f: positive and without
    /// a leading zero byte, so the DER bytes are the same everywhere they are compared.
    pub fn random() -> Serial {
        let mut bytes: [u8; 16] = rand::random();
        bytes[0] = (bytes[0] & 0x3f) | 0x40;
        Serial(hex_lower(&bytes))
    }

    /// The serial of a parsed certificate or CRL entry, from its raw DER integer bytes.
    pub fn from_der_bytes(bytes: &[u8]) -> Serial {
        // A DER INTEGER may carry a 0x00 sign byte; it is not part of the number.
        let trimmed = match bytes {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => bytes,
        };
        Serial(hex_lower(trimmed))
    }

    /// The serial as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn to_bytes(&self) -> Vec<u8> {
        (0..self.0.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&self.0[i..i + 2], 16).ok())
            .collect()
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FromStr for Serial {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Serial, PkiError> {
        let cleaned: String = s.trim().chars().filter(|c| *c != ':').collect();
        let cleaned = cleaned.to_ascii_lowercase();
        if cleaned.is_empty()
            || !cleaned.len().is_multiple_of(2)
            || cleaned.len() > 42
            || !cleaned.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(PkiError::BadSerial(s.to_string()));
        }
        Ok(Serial(cleaned))
    }
}

impl TryFrom<String> for Serial {
    type Error = PkiError;
    fn try_from(s: String) -> Result<Serial, PkiError> {
        s.parse()
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The window in which a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    not_before: Timestamp,
    not_after: Timestamp,
}

impl Validity {
    /// Valid from one hour ago (tolerates a little clock skew between boxes) for `days`
    /// days from now.
    pub fn days(days: u32) -> Result<Validity, PkiError> {
        if days == 0 || days > 100 * 366 {
            return Err(PkiError::BadDays { days });
        }
        let now = now_seconds();
        let not_before = now - SignedDuration::from_hours(1);
        let not_after = now + SignedDuration::from_hours(24 * i64::from(days));
        Validity::between(not_before, not_after)
    }

    /// An explicit window (for instance one that is already over, in tests).
    pub fn between(not_before: Timestamp, not_after: Timestamp) -> Result<Validity, PkiError> {
        if not_before >= not_after {
            return Err(PkiError::BadValidity {
                not_before,
                not_after,
            });
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// Start of the window.
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }

    /// End of the window.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = SystemTime::from(self.not_before).into();
        params.not_after = SystemTime::from(self.not_after).into();
    }
}

fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// What a certificate was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Hub,
    Center,
    /// A center's HTTPS certificate for its LAN (`markaz pki lan`).
    Lan,
}

/// One line of `index.json`: a certificate this CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub serial: Serial,
    pub kind: CertKind,
    /// The center, for a center or LAN certificate.
    pub center_id: Option<CenterId>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub issued_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Number of the last CRL written (CRL numbers must grow).
    crl_number: u64,
    certs: Vec<IssuedRecord>,
}

/// A certificate and key just written to disk.
#[derive(Debug, Clone)]
pub struct Issued {
    pub serial: Serial,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub validity: Validity,
}

/// What to revoke: one certificate by serial, or every active certificate of a center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    Serial(Serial),
    Center(CenterId),
}

impl FromStr for RevokeTarget {
    type Err = PkiError;
    /// A center id (`midan`) or a serial (hex, optionally with colons). The serials this CA
    /// issues are 32 hex digits; a center id starts with a letter and is at most 32 chars,
    /// so a string of exactly 32 hex digits (or one with colons) is read as a serial.
    fn from_str(s: &str) -> Result<RevokeTarget, PkiError> {
        let t = s.trim();
        let hexish = t.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        if hexish && (t.contains(':') || t.len() == 32) {
            return Ok(RevokeTarget::Serial(t.parse()?));
        }
        match t.parse::<CenterId>() {
            Ok(id) => Ok(RevokeTarget::Center(id)),
            Err(_) => Ok(RevokeTarget::Serial(t.parse()?)),
        }
    }
}

impl fmt::Display for RevokeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeTarget::Serial(s) => write!(f, "serial {s}"),
            RevokeTarget::Center(c) => write!(f, "center {c}"),
        }
    }
}

/// The governorate CA, loaded from its directory.
pub struct Ca {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA in `dir` (created if missing) named `name` (its subject CN), and
    /// writes `ca.pem`, `ca.key`, an empty `crl.pem` and `index.json`. Refuses if `dir`
    /// already holds a CA key.
    pub fn create(dir: &Path, name: &str, validity: Validity) -> Result<Ca, PkiError> {
        let key_path = dir.join(CA_KEY);
        if key_path.exists() {
            return Err(PkiError::CaExists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Markaz");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial_number(&Serial::random()));
        params.key_identifier_method = KeyIdMethod::Sha256;
        validity.apply(&mut params);
        let cert = params.self_signed(&key)?;

        write_secret(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&dir.join(CA_CERT), cert.pem().as_bytes())?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        };
        ca.save_index(&Index::default())?;
        ca.write_crl()?;
        Ok(ca)
    }

    /// Loads the CA from `dir` (`ca.pem` and `ca.key`).
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let key_path = dir.join(CA_KEY);
        let cert_path = dir.join(CA_CERT);
        if !key_path.exists() || !cert_path.exists() {
            return Err(PkiError::NoCa(dir.to_path_buf()));
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io_err("reading", &key_path))?;
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err("reading", &cert_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            issuer,
        })
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Path of the CRL.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL)
    }

    /// Issues the hub's server certificate for `sans` (DNS names and IP addresses, e.g.
    /// `hub.damascus.example`, `10.0.0.1`, `127.0.0.1`, `localhost`) into `<pki>/hub/`.
    /// Issuing again replaces the files (renewal); the old certificate stays valid until it
    /// expires or is revoked by serial.
    pub fn issue_hub(&self, sans: &[String], validity: Validity) -> Result<Issued, PkiError> {
        self.issue(
            server_params(sans)?,
            validity,
            CertKind::Hub,
            None,
            &self.dir.join(HUB_DIR),
        )
    }

    /// Issues `center`'s LAN server certificate for `sans` (the names and addresses its
    /// terminals use to reach the box, e.g. `midan.lan`, `192.168.1.10`) into
    /// `<pki>/lan/<id>/`, with a copy of `ca.pem` to trust on the terminals. It serves
    /// HTTPS only (no client use, no center identity: it cannot sync). Issuing again
    /// replaces the files; revoking the center revokes it too.
    pub fn issue_lan(
        &self,
        center: &CenterId,
        sans: &[String],
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = server_params(sans)?;
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, center.to_string());
        let dir = lan_dir(&self.dir, center);
        let issued = self.issue(params, validity, CertKind::Lan, Some(center.clone()), &dir)?;
        let ca_copy = dir.join(CA_CERT);
        fs::copy(self.cert_path(), &ca_copy)
            .map_err(io_err("copying the CA certificate to", &ca_copy))?;
        Ok(issued)
    }

    /// Issues a client certificate for `center` into `<pki>/centers/<id>/` (with a copy of
    /// `ca.pem`, so the folder is the bundle to install on the center). The center id is
    /// the subject CN and the URI SAN `urn:markaz:center:<id>`.
    pub fn issue_center(&self, center: &CenterId, validity: Validity) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let uri = format!("{CENTER_URI_PREFIX}{center}");
        params.subject_alt_names = vec![SanType::URI(
            uri.clone().try_into().map_err(|_| PkiError::BadSan(uri))?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, center.to_string());
        dn.push(DnType::OrganizationName, "Markaz");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let dir = center_dir(&self.dir, center);
        let issued = self.issue(
            params,
            validity,
            CertKind::Center,
            Some(center.clone()),
            &dir,
        )?;
        let ca_copy = dir.join(CA_CERT);
        fs::copy(self.cert_path(), &ca_copy)
            .map_err(io_err("copying the CA certificate to", &ca_copy))?;
        Ok(issued)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        validity: Validity,
        kind: CertKind,
        center_id: Option<CenterId>,
        out_dir: &Path,
    ) -> Result<Issued, PkiError> {
        let serial = Serial::random();
        params.serial_number = Some(serial_number(&serial));
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;

        // Record first: a certificate that exists on disk but not in the index could never
        // be revoked by center id.
        let mut index = self.load_index()?;
        index.certs.push(IssuedRecord {
            serial: serial.clone(),
            kind,
            center_id,
            not_before: validity.not_before,
            not_after: validity.not_after,
            issued_at: now_seconds(),
            revoked_at: None,
        });
        self.save_index(&index)?;

        fs::create_dir_all(out_dir).map_err(io_err("creating", out_dir))?;
        let cert_path = out_dir.join(CERT);
        let key_path = out_dir.join(KEY);
        write_secret(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&cert_path, cert.pem().as_bytes())?;
        Ok(Issued {
            serial,
            cert_path,
            key_path,
            validity,
        })
    }

    /// Revokes the certificate(s) matching `target` and rewrites `crl.pem`. Returns the
    /// serials newly revoked. Revoking what is already revoked, or an unknown serial or
    /// center, is an error, so a typo is not silently accepted.
    pub fn revoke(&self, target: &RevokeTarget) -> Result<Vec<Serial>, PkiError> {
        let mut index = self.load_index()?;
        let now = now_seconds();
        let mut revoked = Vec::new();
        for rec in index.certs.iter_mut().filter(|r| r.revoked_at.is_none()) {
            let hit = match target {
                RevokeTarget::Serial(s) => &rec.serial == s,
                RevokeTarget::Center(c) => rec.center_id.as_ref() == Some(c),
            };
            if hit {
                rec.revoked_at = Some(now);
                revoked.push(rec.serial.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::NothingToRevoke(target.to_string()));
        }
        self.save_index(&index)?;
        self.write_crl()?;
        Ok(revoked)
    }

    /// Every certificate this CA issued, as recorded in `index.json`.
    pub fn issued(&self) -> Result<Vec<IssuedRecord>, PkiError> {
        Ok(self.load_index()?.certs)
    }

    /// Regenerates `crl.pem` from the index (all revoked serials), with the next CRL
    /// number. Returns its path.
    pub fn write_crl(&self) -> Result<PathBuf, PkiError> {
        let mut index = self.load_index()?;
        index.crl_number += 1;
        let now = now_seconds();
        let revoked_certs = index
            .certs
            .iter()
            .filter_map(|r| {
                r.revoked_at.map(|at| RevokedCertParams {
                    serial_number: serial_number(&r.serial),
                    revocation_time: SystemTime::from(at).into(),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: SystemTime::from(now).into(),
            next_update: SystemTime::from(now + SignedDuration::from_hours(24 * CRL_VALID_DAYS))
                .into(),
            crl_number: SerialNumber::from(index.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        let path = self.crl_path();
        write_public(&path, crl.pem()?.as_bytes())?;
        self.save_index(&index)?;
        Ok(path)
    }

    fn load_index(&self) -> Result<Index, PkiError> {
        let path = self.dir.join(INDEX);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| PkiError::Index { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    fn save_index(&self, index: &Index) -> Result<(), PkiError> {
        let path = self.dir.join(INDEX);
        let json = serde_json::to_vec_pretty(index).map_err(|source| PkiError::Index {
            path: path.clone(),
            source,
        })?;
        write_public(&path, &json)
    }
}

/// A server certificate's parameters for `sans` (DNS names and IP addresses; the first
/// is the subject CN).
fn server_params(sans: &[String]) -> Result<CertificateParams, PkiError> {
    if sans.is_empty() {
        return Err(PkiError::NoSans);
    }
    let mut params = CertificateParams::default();
    for san in sans {
        let san = san.trim();
        let entry = match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if !is_dns_name(san) => return Err(PkiError::BadSan(san.to_string())),
            Err(_) => SanType::DnsName(
                san.to_string()
                    .try_into()
                    .map_err(|_| PkiError::BadSan(san.to_string()))?,
            ),
        };
        params.subject_alt_names.push(entry);
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, sans[0].trim());
    dn.push(DnType::OrganizationName, "Markaz");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// A host name a client can ask for: dot-separated labels of ASCII letters, digits and
/// hyphens (1 to 63 each, not starting or ending with a hyphen), 253 characters at most.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn serial_number(serial: &Serial) -> SerialNumber {
    SerialNumber::from_slice(&serial.to_bytes())
}

/// The bundle directory of a center inside a PKI directory.
pub fn center_dir(pki_dir: &Path, center: &CenterId) -> PathBuf {
    pki_dir.join(CENTERS_DIR).join(center.to_string())
}

/// A center's LAN certificate directory inside a PKI directory.
pub fn lan_dir(pki_dir: &Path, center: &CenterId) -> PathBuf {
    pki_dir.join(LAN_DIR).join(center.to_string())
}

/// The hub's directory inside a PKI directory.
pub fn hub_dir(pki_dir: &Path) -> PathBuf {
    pki_dir.join(HUB_DIR)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, 0o644)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, 0o600)
}

/// Writes to a temp file in the same directory with `mode`, fsyncs and renames over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("renaming into", path))?;
    Ok(())
}

// ---- One function per `markaz pki` subcommand ----

/// `markaz pki init <dir> --name <name> --days <days>`: creates the CA. Returns the path
/// of `ca.pem`.
pub fn init(dir: &Path, name: &str, days: u32) -> Result<PathBuf, PkiError> {
    let ca = Ca::create(dir, name, Validity::days(days)?)?;
    Ok(ca.cert_path())
}

/// `markaz pki hub <dir> --san <name-or-ip>... --days <days>`: issues the hub's server
/// certificate into `<dir>/hub/`.
pub fn hub(dir: &Path, sans: &[String], days: u32) -> Result<Issued, PkiError> {
    Ca::load(dir)?.issue_hub(sans, Validity::days(days)?)
}

/// `markaz pki center <dir> <center-id> --days <days>`: issues a center's client
/// certificate into `<dir>/centers/<id>/`.
pub fn center(dir: &Path, center: &CenterId, days: u32) -> Result<Issued, PkiError> {
    Ca::load(dir)?.issue_center(center, Validity::days(days)?)
}

/// `markaz pki lan <dir> <center-id> --san <name-or-ip>... --days <days>`: issues the
/// center's LAN server certificate into `<dir>/lan/<id>/`.
pub fn lan(dir: &Path, center: &CenterId, sans: &[String], days: u32) -> Result<Issued, PkiError> {
    Ca::load(dir)?.issue_lan(center, sans, Validity::days(days)?)
}

/// `markaz pki revoke <dir> <center-id|serial>`: revokes and rewrites `<dir>/crl.pem`.
/// The hub picks the new CRL up on its next reload ([`crate::tls::ServerTls::reload`]).
pub fn revoke(dir: &Path, target: &RevokeTarget) -> Result<Vec<Serial>, PkiError> {
    Ca::load(dir)?.revoke(target)
}

/// `markaz pki list <dir>`: every certificate issued, with its state.
pub fn list(dir: &Path) -> Result<Vec<IssuedRecord>, PkiError> {
    Ca::load(dir)?.issued()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::{CertificateRevocationList, FromDer, GeneralName, X509Certificate};

    fn midan() -> CenterId {
        "midan".parse().expect("valid id")
    }

    fn parse_pem(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).expect("read pem");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        pem.contents
    }

    #[test]
    fn init_writes_the_layout_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        init(&pki, "Damascus CA", 3650).expect("init");
        hub(&pki, &["localhost".into(), "127.0.0.1".into()], 365).expect("hub");
        center(&pki, &midan(), 365).expect("center");
        for (path, mode) in [
            (pki.join(CA_KEY), 0o600),
            (pki.join(CA_CERT), 0o644),
            (pki.join(CRL), 0o644),
            (pki.join(INDEX), 0o644),
            (pki.join("hub/key.pem"), 0o600),
            (pki.join("hub/cert.pem"), 0o644),
            (pki.join("centers/midan/key.pem"), 0o600),
            (pki.join("centers/midan/cert.pem"), 0o644),
            (pki.join("centers/midan/ca.pem"), 0o644),
        ] {
            let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
        }
        assert!(matches!(
            init(&pki, "again", 10),
            Err(PkiError::CaExists(_))
        ));
    }

    #[test]
    fn center_certificate_carries_the_id_in_cn_and_uri_san() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("days")).expect("ca");
        let issued = ca
            .issue_center(&midan(), Validity::days(5).expect("days"))
            .expect("issue");
        let der = parse_pem(&issued.cert_path);
        let (_, cert) = X509Certificate::from_der(&der).expect("x509");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(cn, vec!["midan"]);
        let san = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san present");
        assert!(
            san.value
                .general_names
                .iter()
                .any(|g| matches!(g, GeneralName::URI("urn:markaz:center:midan")))
        );
        assert_eq!(Serial::from_der_bytes(cert.raw_serial()), issued.serial);
        let eku = cert.extended_key_usage().expect("ext").expect("eku");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        let secs = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(secs, 5 * 86400 + 3600);
    }

    #[test]
    fn revoke_by_center_lists_every_active_serial_in_the_crl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("days")).expect("ca");
        let a = ca
            .issue_center(&midan(), Validity::days(5).expect("days"))
            .expect("a");
        let b = ca
            .issue_center(&midan(), Validity::days(5).expect("days"))
            .expect("b");
        let other: CenterId = "mazzeh-2".parse().expect("id");
        let c = ca
            .issue_center(&other, Validity::days(5).expect("days"))
            .expect("c");
        let revoked = ca.revoke(&RevokeTarget::Center(midan())).expect("revoke");
        assert_eq!(revoked, vec![a.serial.clone(), b.serial.clone()]);
        // Loading again from disk sees the same state.
        let ca = Ca::load(dir.path()).expect("load");
        assert!(matches!(
            ca.revoke(&RevokeTarget::Center(midan())),
            Err(PkiError::NothingToRevoke(_))
        ));
        let der = parse_crl(&ca.crl_path());
        let (_, crl) = CertificateRevocationList::from_der(&der).expect("crl");
        let serials: Vec<Serial> = crl
            .iter_revoked_certificates()
            .map(|r| Serial::from_der_bytes(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![a.serial, b.serial]);
        assert!(!serials.contains(&c.serial));
        // init wrote CRL number 1, the revoke number 2.
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()),
            Some("2".to_string())
        );
    }

    fn parse_crl(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).expect("read crl");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        assert_eq!(pem.label, "X509 CRL");
        pem.contents
    }

    #[test]
    fn revoke_target_parses_centers_and_serials() {
        assert_eq!(
            "midan".parse::<RevokeTarget>().expect("c"),
            RevokeTarget::Center(midan())
        );
        let s = Serial::random();
        assert_eq!(s.as_str().len(), 32);
        assert_eq!(
            s.as_str().parse::<RevokeTarget>().expect("s"),
            RevokeTarget::Serial(s.clone())
        );
        assert_eq!(
            "4A:0B".parse::<RevokeTarget>().expect("colons"),
            RevokeTarget::Serial("4a0b".parse().expect("hex"))
        );
        assert!("Not An Id!".parse::<RevokeTarget>().is_err());
    }

    #[test]
    fn validity_rejects_empty_windows() {
        let now = Timestamp::now();
        assert!(Validity::between(now, now).is_err());
        assert!(Validity::days(0).is_err());
        let v = Validity::between(
            now - SignedDuration::from_hours(48),
            now - SignedDuration::from_hours(24),
        )
        .expect("past");
        assert!(v.not_after() < now);
    }

    #[test]
    fn hub_certificate_needs_sans_and_takes_ips_and_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("days")).expect("ca");
        assert!(matches!(
            ca.issue_hub(&[], Validity::days(1).expect("d")),
            Err(PkiError::NoSans)
        ));
        let issued = ca
            .issue_hub(
                &["hub.example".into(), "10.1.2.3".into()],
                Validity::days(1).expect("d"),
            )
            .expect("hub");
        let der = parse_pem(&issued.cert_path);
        let (_, cert) = X509Certificate::from_der(&der).expect("x509");
        let san = cert.subject_alternative_name().expect("ext").expect("san");
        assert!(
            san.value
                .general_names
                .iter()
                .any(|g| matches!(g, GeneralName::DNSName("hub.example")))
        );
        assert!(
            san.value
                .general_names
                .iter()
                .any(|g| matches!(g, GeneralName::IPAddress([10, 1, 2, 3])))
        );
        let records = ca.issued().expect("index");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kind, CertKind::Hub);
    }

    #[test]
    fn a_lan_certificate_serves_the_boxs_names_and_addresses_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create(dir.path(), "CA", Validity::days(10).expect("days")).expect("ca");
        assert!(matches!(
            ca.issue_lan(&midan(), &[], Validity::days(1).expect("d")),
            Err(PkiError::NoSans)
        ));
        assert!(matches!(
            ca.issue_lan(
                &midan(),
                &["not a name".into()],
                Validity::days(1).expect("d")
            ),
            Err(PkiError::BadSan(_))
        ));
        let issued = ca
            .issue_lan(
                &midan(),
                &["midan.lan".into(), "192.168.1.10".into()],
                Validity::days(30).expect("d"),
            )
            .expect("lan");
        assert_eq!(issued.cert_path, dir.path().join("lan/midan/cert.pem"));
        assert!(dir.path().join("lan/midan/ca.pem").exists());
        let der = parse_pem(&issued.cert_path);
        let (_, cert) = X509Certificate::from_der(&der).expect("x509");
        let names = &cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san")
            .value
            .general_names;
        assert!(
            names
                .iter()
                .any(|g| matches!(g, GeneralName::DNSName("midan.lan")))
        );
        assert!(
            names
                .iter()
                .any(|g| matches!(g, GeneralName::IPAddress([192, 168, 1, 10])))
        );
        assert!(
            !names.iter().any(|g| matches!(g, GeneralName::URI(_))),
            "no center identity: it cannot sync"
        );
        let eku = cert.extended_key_usage().expect("ext").expect("eku");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        let records = ca.issued().expect("index");
        assert_eq!(records[0].kind, CertKind::Lan);
        assert_eq!(records[0].center_id, Some(midan()));
    }

    proptest::proptest! {
        #[test]
        fn serial_text_round_trips_and_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..20), junk in ".{0,64}") {
            let serial = Serial::from_der_bytes(&bytes);
            let again: Serial = serial.as_str().parse().expect("own text parses");
            proptest::prop_assert_eq!(&again, &serial);
            proptest::prop_assert_eq!(Serial::from_der_bytes(&again.to_bytes()), serial);
            let _ = junk.parse::<Serial>();
            let _ = junk.parse::<RevokeTarget>();
        }
    }
}
