//! Staff authentication: argon2 password hashes, bearer/cookie sessions that expire
//! (absolute lifetime and idle timeout), CSRF tokens for cookie sessions, and login rate
//! limiting. Tokens are random 256-bit values; only their blake3 hash is stored, so a
//! copy of the database does not log anyone in. Secrets never reach the logs.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::AppError;

/// Session lifetimes and login limits (from config `[auth]`).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub session_ttl_ms: i64,
    pub session_idle_ms: i64,
    pub login_max_attempts: u32,
    pub login_window_ms: i64,
}

/// Hashes a password with argon2id (PHC string). CPU-heavy: call on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))
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

/// A fresh random token, URL-safe.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// A session as the API sees it once the token checked out.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub username: String,
    pub csrf: String,
    pub terminal: Option<String>,
    pub last_seen_ms: i64,
}

/// Looks a token up; expired sessions (absolute or idle) are deleted and refused.
pub fn find_session(
    conn: &Connection,
    token: &str,
    now_ms: i64,
    policy: &AuthPolicy,
) -> Result<Option<SessionRow>, AppError> {
    let row = conn
        .query_row(
            "SELECT s.username, s.csrf, s.terminal, s.last_seen_ms, s.expires_ms, st.active AND st.hub_active
             FROM sessions s JOIN staff st ON st.username = s.username WHERE s.token_hash = ?1",
            [token_hash(token)],
            |r| {
                Ok((
                    SessionRow {
                        username: r.get(0)?,
                        csrf: r.get(1)?,
                        terminal: r.get(2)?,
                        last_seen_ms: r.get(3)?,
                    },
                    r.get::<_, i64>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(match row {
        Some((s, expires, active))
            if active && now_ms < expires && now_ms - s.last_seen_ms < policy.session_idle_ms =>
        {
            Some(s)
        }
        _ => None,
    })
}

/// Creates a session; returns (token, csrf).
pub fn create_session(
    conn: &Connection,
    username: &str,
    terminal: Option<&str>,
    now_ms: i64,
    policy: &AuthPolicy,
) -> Result<(String, String), AppError> {
    let token = new_token();
    let csrf = new_token();
    conn.execute(
        "INSERT INTO sessions(token_hash, username, csrf, terminal, created_ms, last_seen_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        params![token_hash(&token), username, csrf, terminal, now_ms, now_ms + policy.session_ttl_ms],
    )?;
    // Housekeeping: sessions past their lifetime go.
    conn.execute(
        "DELETE FROM sessions WHERE expires_ms < ?1 OR last_seen_ms < ?2",
        params![now_ms, now_ms - policy.session_idle_ms],
    )?;
    Ok((token, csrf))
}

pub fn touch_session(conn: &Connection, token: &str, now_ms: i64) -> Result<(), AppError> {
    conn.execute(
        "UPDATE sessions SET last_seen_ms = ?2 WHERE token_hash = ?1",
        params![token_hash(token), now_ms],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, token: &str) -> Result<(), AppError> {
    conn.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        [token_hash(token)],
    )?;
    Ok(())
}

/// Refuses a login attempt when `key` (a username or a client address) failed too often
/// within the window.
pub fn check_rate(
    conn: &Connection,
    key: &str,
    now_ms: i64,
    policy: &AuthPolicy,
) -> Result<(), AppError> {
    let (n, oldest): (u32, Option<i64>) = conn.query_row(
        "SELECT count(*), min(at_ms) FROM login_failures WHERE key = ?1 AND at_ms > ?2",
        params![key, now_ms - policy.login_window_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n >= policy.login_max_attempts {
        let retry = oldest
            .map(|o| (o + policy.login_window_ms - now_ms).max(1000) / 1000)
            .unwrap_or(1);
        return Err(AppError::RateLimited {
            retry_after_secs: retry as u64,
        });
    }
    Ok(())
}

pub fn record_failure(
    conn: &Connection,
    key: &str,
    now_ms: i64,
    policy: &AuthPolicy,
) -> Result<(), AppError> {
    conn.execute(
        "INSERT INTO login_failures(key, at_ms) VALUES (?1, ?2)",
        params![key, now_ms],
    )?;
    conn.execute(
        "DELETE FROM login_failures WHERE at_ms < ?1",
        [now_ms - policy.login_window_ms],
    )?;
    Ok(())
}

pub fn clear_failures(conn: &Connection, key: &str) -> Result<(), AppError> {
    conn.execute("DELETE FROM login_failures WHERE key = ?1", [key])?;
    Ok(())
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
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = new_token();
        assert_ne!(t, new_token());
        assert_eq!(t.len(), 43);
        assert_ne!(token_hash(&t), t);
    }
}
