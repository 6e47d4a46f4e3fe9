//! Staff authentication over the center's tables: bearer/cookie sessions that expire
//! (absolute lifetime and idle timeout), CSRF tokens for cookie sessions, and login rate
//! limiting per (username, client address) with the shared rule of
//! [`markaz_web::login`] (a growing delay, never a lock of the username as a whole). Passwords, tokens and CSRF tokens are the shared ones
//! ([`markaz_web::password`]): only the blake3 hash of a session token is stored, and
//! the CSRF token is derived from the session token, its hash alone kept in the row, so
//! a copy of the database neither logs anyone in nor passes a CSRF check. Secrets never
//! reach the logs.

use markaz_web::login::{Failures, LoginPolicy};
use rusqlite::{Connection, OptionalExtension, params};

use crate::app::Mono;
use crate::error::AppError;

/// Session lifetimes and login limits (from config `[auth]`).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub session_ttl_ms: i64,
    pub session_idle_ms: i64,
    pub login_max_attempts: u32,
    pub login_window_ms: i64,
}

impl AuthPolicy {
    /// The login limit of one (username, address): `login_max_attempts` free failures,
    /// then a wait of 2 s doubling with each failure up to `login_window_ms`; failures are
    /// forgotten after a day.
    pub fn logins(&self) -> LoginPolicy {
        let max_delay_ms = self.login_window_ms.max(1_000);
        LoginPolicy {
            free_attempts: self.login_max_attempts,
            first_delay_ms: 2_000.min(max_delay_ms),
            max_delay_ms,
            ..LoginPolicy::default()
        }
    }
}

/// One (username, address) pair with failed logins, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoginLimit {
    pub username: String,
    pub address: String,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// When the last one happened (ms since the epoch).
    pub last_failure_ms: i64,
    /// Until when the next attempt from this address at this name is refused (ms since
    /// the epoch), if it is.
    pub waits_until_ms: Option<i64>,
}

/// The failures recorded for (username, address); none when there is no row.
pub fn login_failures(
    conn: &Connection,
    username: &str,
    address: &str,
) -> Result<Failures, AppError> {
    Ok(conn
        .query_row(
            "SELECT failures, last_ms FROM login_limits WHERE username = ?1 AND address = ?2",
            params![username, address],
            |r| {
                Ok(Failures {
                    count: r.get(0)?,
                    last_ms: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Records one more failed login of (username, address) at `now_ms`, and forgets pairs
/// whose last failure is older than the policy keeps them.
pub fn record_login_failure(
    conn: &Connection,
    username: &str,
    address: &str,
    now_ms: i64,
    policy: &LoginPolicy,
) -> Result<(), AppError> {
    let f = policy.after_failure(login_failures(conn, username, address)?, now_ms);
    conn.execute(
        "INSERT INTO login_limits(username, address, failures, last_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(username, address) DO UPDATE SET failures = ?3, last_ms = ?4",
        params![username, address, f.count, f.last_ms],
    )?;
    conn.execute(
        "DELETE FROM login_limits WHERE last_ms < ?1",
        [now_ms - policy.forget_after_ms],
    )?;
    Ok(())
}

/// Clears the limit of `username` from `address`, or from every address; returns how
/// many pairs were cleared.
pub fn clear_login_limit(
    conn: &Connection,
    username: &str,
    address: Option<&str>,
) -> Result<usize, AppError> {
    Ok(conn.execute(
        "DELETE FROM login_limits WHERE username = ?1 AND (?2 IS NULL OR address = ?2)",
        params![username, address],
    )?)
}

/// Every pair with failures the policy still remembers at `now_ms`, the most recent first.
pub fn login_limits(
    conn: &Connection,
    now_ms: i64,
    policy: &LoginPolicy,
) -> Result<Vec<LoginLimit>, AppError> {
    let mut stmt = conn.prepare(
        "SELECT username, address, failures, last_ms FROM login_limits
         WHERE last_ms > ?1 ORDER BY last_ms DESC, username, address",
    )?;
    let rows = stmt.query_map([now_ms - policy.forget_after_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (username, address, count, last_ms) = row?;
        let f = Failures { count, last_ms };
        out.push(LoginLimit {
            username,
            address,
            failures: count,
            last_failure_ms: last_ms,
            waits_until_ms: policy.wait_ms(f, now_ms).map(|w| now_ms + w),
        });
    }
    Ok(out)
}

pub use markaz_web::password::{DUMMY_HASH, new_token, token_hash, verify_password};

/// Hashes a password with argon2id (PHC string). CPU-heavy: call on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    markaz_web::password::hash_password(password).map_err(|e| AppError::Internal(e.to_string()))
}

/// A session as the API sees it once the token checked out.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub username: String,
    pub csrf: String,
    pub terminal: Option<String>,
    pub last_seen_ms: i64,
    /// How long since the session was last seen (monotonic when measurable).
    pub idle_ms: i64,
}

/// A wall clock that went back by more than this since a session was issued (in an
/// earlier boot, where the monotonic clock cannot measure) leaves its age unknown: the
/// session is refused.
pub const WALL_SLACK_MS: i64 = 60_000;

/// Looks a token up; expired sessions (absolute or idle) are refused. Within the boot
/// that issued it, a session's age is measured on the monotonic clock (`mono`), so a wall
/// clock that jumps neither extends nor shortens it; across a reboot, by the wall clock,
/// and a session whose wall-clock age is negative (the clock went back) is refused.
pub fn find_session(
    conn: &Connection,
    token: &str,
    now_ms: i64,
    mono: &Mono,
    policy: &AuthPolicy,
) -> Result<Option<SessionRow>, AppError> {
    let row = conn
        .query_row(
            "SELECT s.username, s.csrf, s.terminal, s.last_seen_ms, s.created_ms,
                    st.active AND st.hub_active, s.boot, s.issued_mono_ms, s.seen_mono_ms
             FROM sessions s JOIN staff st ON st.username = s.username WHERE s.token_hash = ?1",
            [token_hash(token)],
            |r| {
                let s = SessionRow {
                    username: r.get(0)?,
                    // The row keeps only the CSRF token's hash; the token itself
                    // follows from the session token the client presented.
                    csrf: {
                        let _stored_hash: String = r.get(1)?;
                        markaz_web::password::csrf_token(token)
                    },
                    terminal: r.get(2)?,
                    last_seen_ms: r.get(3)?,
                    idle_ms: 0,
                };
                let created: i64 = r.get(4)?;
                let active: bool = r.get(5)?;
                let boot: Option<String> = r.get(6)?;
                let issued: Option<i64> = r.get(7)?;
                let seen: Option<i64> = r.get(8)?;
                Ok((s, created, active, boot, issued, seen))
            },
        )
        .optional()?;
    let Some((mut s, created, active, boot, issued, seen)) = row else {
        return Ok(None);
    };
    let (age, idle) = match (boot, issued, seen) {
        (Some(b), Some(i), Some(seen)) if *b == *mono.boot => (mono.ms - i, mono.ms - seen),
        _ => {
            if now_ms - created < -WALL_SLACK_MS || now_ms - s.last_seen_ms < -WALL_SLACK_MS {
                return Ok(None);
            }
            (now_ms - created, now_ms - s.last_seen_ms)
        }
    };
    s.idle_ms = idle;
    Ok((active && age < policy.session_ttl_ms && idle < policy.session_idle_ms).then_some(s))
}

/// Creates a session; returns (token, csrf).
pub fn create_session(
    conn: &Connection,
    username: &str,
    terminal: Option<&str>,
    now_ms: i64,
    mono: &Mono,
    policy: &AuthPolicy,
) -> Result<(String, String), AppError> {
    let token = new_token();
    let csrf = markaz_web::password::csrf_token(&token);
    conn.execute(
        "INSERT INTO sessions(token_hash, username, csrf, terminal, created_ms, last_seen_ms,
           expires_ms, boot, issued_mono_ms, seen_mono_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?8)",
        params![
            token_hash(&token),
            username,
            token_hash(&csrf),
            terminal,
            now_ms,
            now_ms + policy.session_ttl_ms,
            &*mono.boot,
            mono.ms
        ],
    )?;
    // Housekeeping: sessions of this boot past their lifetime go (the others are refused
    // when used, and go here once this boot's clock says so).
    conn.execute(
        "DELETE FROM sessions WHERE boot = ?1 AND (issued_mono_ms < ?2 OR seen_mono_ms < ?3)",
        params![
            &*mono.boot,
            mono.ms - policy.session_ttl_ms,
            mono.ms - policy.session_idle_ms
        ],
    )?;
    conn.execute(
        "DELETE FROM sessions WHERE (boot IS NULL OR boot <> ?1)
           AND (expires_ms < ?2 OR last_seen_ms < ?3)",
        params![&*mono.boot, now_ms, now_ms - policy.session_idle_ms],
    )?;
    Ok((token, csrf))
}

/// Marks a session seen now (both clocks; the monotonic one only within its boot).
pub fn touch_session(
    conn: &Connection,
    token: &str,
    now_ms: i64,
    mono: &Mono,
) -> Result<(), AppError> {
    conn.execute(
        "UPDATE sessions SET last_seen_ms = ?2,
           seen_mono_ms = CASE WHEN boot = ?3 THEN ?4 ELSE seen_mono_ms END
         WHERE token_hash = ?1",
        params![token_hash(token), now_ms, &*mono.boot, mono.ms],
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

/// Refuses an attempt when `key` failed too often within the window (the check of one's
/// own current password, `user:<name>`).
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
    fn a_session_row_keeps_no_secret() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE staff(username TEXT PRIMARY KEY, active INTEGER NOT NULL DEFAULT 1,
               hub_active INTEGER NOT NULL DEFAULT 1);
             INSERT INTO staff(username) VALUES ('amal');
             CREATE TABLE sessions(token_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
               csrf TEXT NOT NULL, terminal TEXT, created_ms INTEGER NOT NULL,
               last_seen_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
               boot TEXT, issued_mono_ms INTEGER, seen_mono_ms INTEGER);",
        )
        .unwrap();
        let policy = AuthPolicy {
            session_ttl_ms: 60_000,
            session_idle_ms: 60_000,
            login_max_attempts: 5,
            login_window_ms: 60_000,
        };
        let mono = |ms| Mono {
            boot: std::sync::Arc::from("test"),
            ms,
        };
        let (token, csrf) =
            create_session(&conn, "amal", None, 1_000, &mono(1_000), &policy).unwrap();
        let (stored_token, stored_csrf): (String, String) = conn
            .query_row("SELECT token_hash, csrf FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_ne!(stored_token, token);
        assert_ne!(stored_csrf, csrf, "the CSRF token is stored hashed");
        let found = find_session(&conn, &token, 2_000, &mono(2_000), &policy)
            .unwrap()
            .unwrap();
        assert_eq!(
            found.csrf, csrf,
            "the page still gets the session's CSRF token"
        );
    }
}
