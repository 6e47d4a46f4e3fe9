//! `markaz pki`: what the hub operator types to set up certificates.

use markaz_e2e::markaz_bin;

fn markaz(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(markaz_bin().unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn operator_creates_ca_hub_and_center_certificates_then_revokes_a_center() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    let (ok, out) = markaz(&["pki", "init", p]);
    assert!(ok, "{out}");
    let (ok, out) = markaz(&[
        "pki",
        "hub",
        p,
        "--san",
        "hub.damascus.local",
        "--san",
        "127.0.0.1",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = markaz(&["pki", "center", p, "midan"]);
    assert!(ok, "{out}");
    assert!(out.contains("copy the folder"), "{out}");
    for f in [
        "ca.pem",
        "ca.key",
        "crl.pem",
        "hub/cert.pem",
        "hub/key.pem",
        "centers/midan/cert.pem",
        "centers/midan/key.pem",
        "centers/midan/ca.pem",
    ] {
        assert!(pki.join(f).exists(), "{f} missing");
    }
    let (ok, out) = markaz(&["pki", "center", p, "Not A Center"]);
    assert!(!ok && out.contains("center id"), "{out}");
    let crl_before = std::fs::read(pki.join("crl.pem")).unwrap();
    let (ok, out) = markaz(&["pki", "revoke", p, "midan"]);
    assert!(ok && out.contains("1 certificate"), "{out}");
    assert_ne!(
        std::fs::read(pki.join("crl.pem")).unwrap(),
        crl_before,
        "CRL rewritten"
    );
    let (ok, out) = markaz(&["pki", "list", p]);
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("midan") && l.contains("revoked")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("valid until")),
        "the hub certificate stays valid: {out}"
    );
}
