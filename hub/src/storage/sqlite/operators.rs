//! The SQLite rows of [`Operators`]: `hub_operators`, `hub_operator_sessions`,
//! `hub_api_tokens`, `hub_login_failures` and `hub_audit`. Tokens are stored as their
//! hashes only; roles as a comma-separated list of role codes.

use markaz_web::login::Failures;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::HubDb;
use crate::operators::{
    ApiTokenInfo, AuditEntry, AuditFilter, LoginLimit, OperatorRecord, Role, SessionRecord,
    Username,
};
use crate::storage::{Operators, StorageError};

pub(super) fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hub_operators(
           username TEXT PRIMARY KEY,
           full_name TEXT NOT NULL,
           roles TEXT NOT NULL,
           password_hash TEXT NOT NULL,
           active INTEGER NOT NULL,
           language TEXT NOT NULL,
           created_ms INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS hub_operator_sessions(
           token_hash TEXT PRIMARY KEY,
           username TEXT NOT NULL REFERENCES hub_operators(username) ON DELETE CASCADE,
           created_ms INTEGER NOT NULL,
           last_seen_ms INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS hub_api_tokens(
           id INTEGER PRIMARY KEY,
           token_hash TEXT NOT NULL UNIQUE,
           username TEXT NOT NULL REFERENCES hub_operators(username) ON DELETE CASCADE,
           label TEXT NOT NULL,
           created_ms INTEGER NOT NULL,
           last_used_ms INTEGER);
         CREATE TABLE IF NOT EXISTS hub_login_failures(
           username TEXT NOT NULL,
           address TEXT NOT NULL,
           failures INTEGER NOT NULL,
           last_ms INTEGER NOT NULL,
           PRIMARY KEY(username, address));
         CREATE TABLE IF NOT EXISTS hub_audit(
           id INTEGER PRIMARY KEY,
           at_ms INTEGER NOT NULL,
           operator TEXT NOT NULL,
           address TEXT NOT NULL,
           kind TEXT NOT NULL,
           center TEXT,
           target TEXT NOT NULL,
           before_json TEXT,
           after_json TEXT);
         CREATE INDEX IF NOT EXISTS hub_audit_operator ON hub_audit(operator, id);
         CREATE INDEX IF NOT EXISTS hub_audit_center ON hub_audit(center, id);",
    )
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Invalid(format!("stored {what} does not parse: {e}"))
}

fn operator_row(r: &Row) -> rusqlite::Result<(String, String, String, String, bool, String, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn operator_of(
    (username, full_name, roles, password_hash, active, language, created_ms): (
        String,
        String,
        String,
        String,
        bool,
        String,
        i64,
    ),
) -> Result<OperatorRecord, StorageError> {
    Ok(OperatorRecord {
        username: username.parse().map_err(|e| corrupt("username", e))?,
        full_name,
        roles: crate::operators::parse_roles(&roles).map_err(|e| corrupt("roles", e))?,
        password_hash,
        active,
        language,
        created_ms,
    })
}

const OPERATOR_COLUMNS: &str =
    "username, full_name, roles, password_hash, active, language, created_ms";

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

fn json_of(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl Operators for HubDb {
    fn operator_count(&mut self) -> Result<u64, StorageError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM hub_operators", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn insert_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError> {
        let n = self.conn.execute(
            "INSERT INTO hub_operators(username, full_name, roles, password_hash, active,
               language, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(username) DO NOTHING",
            params![
                op.username.as_str(),
                op.full_name,
                roles_text(&op.roles),
                op.password_hash,
                op.active,
                op.language,
                op.created_ms
            ],
        )?;
        Ok(n == 1)
    }

    fn update_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError> {
        let n = self.conn.execute(
            "UPDATE hub_operators SET full_name = ?2, roles = ?3, password_hash = ?4,
               active = ?5, language = ?6 WHERE username = ?1",
            params![
                op.username.as_str(),
                op.full_name,
                roles_text(&op.roles),
                op.password_hash,
                op.active,
                op.language
            ],
        )?;
        Ok(n == 1)
    }

    fn operator(&mut self, username: &str) -> Result<Option<OperatorRecord>, StorageError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {OPERATOR_COLUMNS} FROM hub_operators WHERE username = ?1"),
                [username],
                operator_row,
            )
            .optional()?;
        row.map(operator_of).transpose()
    }

    fn operators(&mut self) -> Result<Vec<OperatorRecord>, StorageError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM hub_operators ORDER BY username"
        ))?;
        let rows = st
            .query_map([], operator_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(operator_of).collect()
    }

    fn insert_session(&mut self, token_hash: &str, s: &SessionRecord) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO hub_operator_sessions(token_hash, username, created_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                token_hash,
                s.username.as_str(),
                s.created_ms,
                s.last_seen_ms
            ],
        )?;
        Ok(())
    }

    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StorageError> {
        let row = self
            .conn
            .query_row(
                "SELECT username, created_ms, last_seen_ms FROM hub_operator_sessions
                 WHERE token_hash = ?1",
                [token_hash],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(u, created_ms, last_seen_ms)| {
            Ok(SessionRecord {
                username: u.parse::<Username>().map_err(|e| corrupt("username", e))?,
                created_ms,
                last_seen_ms,
            })
        })
        .transpose()
    }

    fn touch_session(&mut self, token_hash: &str, now_ms: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "UPDATE hub_operator_sessions SET last_seen_ms = ?2 WHERE token_hash = ?1",
            params![token_hash, now_ms],
        )?;
        Ok(())
    }

    fn delete_session(&mut self, token_hash: &str) -> Result<(), StorageError> {
        self.conn.execute(
            "DELETE FROM hub_operator_sessions WHERE token_hash = ?1",
            [token_hash],
        )?;
        Ok(())
    }

    fn delete_sessions_of(&mut self, username: &str) -> Result<(), StorageError> {
        self.conn.execute(
            "DELETE FROM hub_operator_sessions WHERE username = ?1",
            [username],
        )?;
        Ok(())
    }

    fn prune_sessions(
        &mut self,
        created_before_ms: i64,
        seen_before_ms: i64,
    ) -> Result<(), StorageError> {
        self.conn.execute(
            "DELETE FROM hub_operator_sessions WHERE created_ms < ?1 OR last_seen_ms < ?2",
            params![created_before_ms, seen_before_ms],
        )?;
        Ok(())
    }

    fn insert_api_token(
        &mut self,
        token_hash: &str,
        username: &str,
        label: &str,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        self.conn.execute(
            "INSERT INTO hub_api_tokens(token_hash, username, label, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, username, label, now_ms],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn use_api_token(
        &mut self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn
            .query_row(
                "UPDATE hub_api_tokens SET last_used_ms = ?2 WHERE token_hash = ?1
                 RETURNING username",
                params![token_hash, now_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn api_tokens(&mut self, username: Option<&str>) -> Result<Vec<ApiTokenInfo>, StorageError> {
        let mut st = self.conn.prepare(
            "SELECT id, username, label, created_ms, last_used_ms FROM hub_api_tokens
             WHERE ?1 IS NULL OR username = ?1 ORDER BY id",
        )?;
        let rows = st
            .query_map([username], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, u, label, created_ms, last_used_ms)| {
                Ok(ApiTokenInfo {
                    id,
                    username: u.parse().map_err(|e| corrupt("username", e))?,
                    label,
                    created_ms,
                    last_used_ms,
                })
            })
            .collect()
    }

    fn delete_api_token(&mut self, id: i64) -> Result<bool, StorageError> {
        Ok(self
            .conn
            .execute("DELETE FROM hub_api_tokens WHERE id = ?1", [id])?
            == 1)
    }

    fn login_failures(&mut self, username: &str, address: &str) -> Result<Failures, StorageError> {
        Ok(self
            .conn
            .query_row(
                "SELECT failures, last_ms FROM hub_login_failures
                 WHERE username = ?1 AND address = ?2",
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

    fn set_login_failures(
        &mut self,
        username: &str,
        address: &str,
        f: Failures,
    ) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO hub_login_failures(username, address, failures, last_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(username, address) DO UPDATE SET failures = ?3, last_ms = ?4",
            params![username, address, f.count, f.last_ms],
        )?;
        Ok(())
    }

    fn clear_login_failures(
        &mut self,
        username: &str,
        address: Option<&str>,
    ) -> Result<u64, StorageError> {
        let n = self.conn.execute(
            "DELETE FROM hub_login_failures WHERE username = ?1 AND (?2 IS NULL OR address = ?2)",
            params![username, address],
        )?;
        Ok(n as u64)
    }

    fn login_limits(&mut self) -> Result<Vec<LoginLimit>, StorageError> {
        let mut st = self.conn.prepare(
            "SELECT username, address, failures, last_ms FROM hub_login_failures
             ORDER BY last_ms DESC LIMIT 500",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(LoginLimit {
                    username: r.get(0)?,
                    address: r.get(1)?,
                    failures: r.get(2)?,
                    last_ms: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn record_audit(&mut self, e: &AuditEntry) -> Result<i64, StorageError> {
        self.conn.execute(
            "INSERT INTO hub_audit(at_ms, operator, address, kind, center, target, before_json,
               after_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                e.at_ms,
                e.operator,
                e.address,
                e.kind,
                e.center,
                e.target,
                json_text(&e.before),
                json_text(&e.after)
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StorageError> {
        let kind_prefix = f.kind.as_deref().map(|k| {
            if k.ends_with('.') {
                format!("{}%", k.replace('%', ""))
            } else {
                k.replace('%', "")
            }
        });
        let mut st = self.conn.prepare(
            "SELECT id, at_ms, operator, address, kind, center, target, before_json, after_json
             FROM hub_audit
             WHERE (?1 IS NULL OR operator = ?1) AND (?2 IS NULL OR center = ?2)
               AND (?3 IS NULL OR kind LIKE ?3)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = st
            .query_map(
                params![
                    f.operator.as_deref().filter(|s| !s.is_empty()),
                    f.center.as_deref().filter(|s| !s.is_empty()),
                    kind_prefix.filter(|s| !s.is_empty()),
                    f.limit.unwrap_or(500).min(5000)
                ],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        operator: r.get(2)?,
                        address: r.get(3)?,
                        kind: r.get(4)?,
                        center: r.get(5)?,
                        target: r.get(6)?,
                        before: json_of(r.get(7)?),
                        after: json_of(r.get(8)?),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
