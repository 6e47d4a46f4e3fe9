//! Passwords and tokens. Passwords are argon2id PHC strings; tokens are random 256-bit
//! values of which only the blake3 hash is stored, so a copy of a database logs nobody
//! in. The CSRF token of a session is derived from the session token with a keyed hash:
//! a page can always show it, and nothing about it is stored (a stolen database row
//! gives neither the session nor its CSRF token).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;

/// A password that could not be hashed (the salt or the hasher refused it).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// A PHC string that matches no password: verifying against it costs what a real check
/// costs, so an unknown username cannot be told apart by timing.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000";

/// Hashes a password with argon2id (PHC string). CPU-heavy: call on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(format!("argon2: {e}")))
}

/// Checks a password against a stored PHC string. CPU-heavy: call on a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token, URL-safe (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a token: its blake3 hash, hex.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The CSRF token of the session whose token is `session_token`.
pub fn csrf_token(session_token: &str) -> String {
    blake3::derive_key(
        "markaz 2026 csrf token of a session",
        session_token.as_bytes(),
    )
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
}

/// Whether `sent` is the CSRF token of `session_token` (constant time).
pub fn csrf_ok(session_token: &str, sent: &str) -> bool {
    !sent.is_empty() && constant_time_eq(sent.as_bytes(), csrf_token(session_token).as_bytes())
}

/// Compares two secrets without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_salted() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
        assert!(!verify_password("x", "not a phc string"));
        assert!(!verify_password("x", DUMMY_HASH));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = new_token();
        assert_ne!(t, new_token());
        assert_eq!(t.len(), 43);
        assert_ne!(token_hash(&t), t);
    }

    #[test]
    fn csrf_is_derived_per_session_and_checked() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_ne!(csrf_token(&a), token_hash(&a), "not the stored hash");
        assert!(csrf_ok(&a, &csrf_token(&a)));
        assert!(!csrf_ok(&a, &csrf_token(&b)));
        assert!(!csrf_ok(&a, ""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
