//! The PostgreSQL rows of [`Operators`] (schema v3): `hub_operators`,
//! `hub_operator_sessions`, `hub_api_tokens`, `hub_login_failures` and `hub_audit`, the
//! same tables and rules as the SQLite engine's (tokens as their hashes only, roles as a
//! comma-separated list of role codes, before/after values as JSON text).
//!
//! Every hub process of a database sees the same operators, sessions and limits: a
//! session begun on one process is valid on the others, and failed logins from one
//! address count once whichever process answered them (the upsert adds under the row's
//! lock).

use markaz_web::login::Failures;
use postgres::Row;

use super::PgHub;
use crate::operators::{
    ApiTokenInfo, AuditEntry, AuditFilter, LoginLimit, OperatorRecord, Role, SessionRecord,
    Username,
};
use crate::storage::{Operators, StorageError};

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

fn operator_of(r: &Row) -> Result<OperatorRecord, StorageError> {
    let username: String = r.get(0);
    let roles: String = r.get(2);
    Ok(OperatorRecord {
        username: username.parse().map_err(|e| corrupt("username", e))?,
        full_name: r.get(1),
        roles: crate::operators::parse_roles(&roles).map_err(|e| corrupt("roles", e))?,
        password_hash: r.get(3),
        active: r.get(4),
        language: r.get(5),
        created_ms: r.get(6),
    })
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

fn json_of(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn count_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl Operators for PgHub {
    fn operator_count(&mut self) -> Result<u64, StorageError> {
        let n: i64 = self.with_tx(|tx| {
            tx.query_one("SELECT count(*) FROM hub_operators", &[])
                .map(|r| r.get(0))
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn insert_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError> {
        let roles = roles_text(&op.roles);
        let n = self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO hub_operators(username, full_name, roles, password_hash, active,
                   language, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT(username) DO NOTHING",
                &[
                    &op.username.as_str(),
                    &op.full_name,
                    &roles,
                    &op.password_hash,
                    &op.active,
                    &op.language,
                    &op.created_ms,
                ],
            )
        })?;
        Ok(n == 1)
    }

    fn update_operator(&mut self, op: &OperatorRecord) -> Result<bool, StorageError> {
        let roles = roles_text(&op.roles);
        let n = self.with_tx(|tx| {
            tx.execute(
                "UPDATE hub_operators SET full_name = $2, roles = $3, password_hash = $4,
                   active = $5, language = $6 WHERE username = $1",
                &[
                    &op.username.as_str(),
                    &op.full_name,
                    &roles,
                    &op.password_hash,
                    &op.active,
                    &op.language,
                ],
            )
        })?;
        Ok(n == 1)
    }

    fn operator(&mut self, username: &str) -> Result<Option<OperatorRecord>, StorageError> {
        let row = self.with_tx(|tx| {
            tx.query_opt(
                "SELECT username, full_name, roles, password_hash, active, language, created_ms
                 FROM hub_operators WHERE username = $1",
                &[&username],
            )
        })?;
        row.as_ref().map(operator_of).transpose()
    }

    fn operators(&mut self) -> Result<Vec<OperatorRecord>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT username, full_name, roles, password_hash, active, language, created_ms
                 FROM hub_operators ORDER BY username",
                &[],
            )
        })?;
        rows.iter().map(operator_of).collect()
    }

    fn insert_session(&mut self, token_hash: &str, s: &SessionRecord) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO hub_operator_sessions(token_hash, username, created_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &token_hash,
                    &s.username.as_str(),
                    &s.created_ms,
                    &s.last_seen_ms,
                ],
            )
        })?;
        Ok(())
    }

    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StorageError> {
        let row = self.with_tx(|tx| {
            tx.query_opt(
                "SELECT username, created_ms, last_seen_ms FROM hub_operator_sessions
                 WHERE token_hash = $1",
                &[&token_hash],
            )
        })?;
        row.map(|r| {
            let u: String = r.get(0);
            Ok(SessionRecord {
                username: u.parse::<Username>().map_err(|e| corrupt("username", e))?,
                created_ms: r.get(1),
                last_seen_ms: r.get(2),
            })
        })
        .transpose()
    }

    fn touch_session(&mut self, token_hash: &str, now_ms: i64) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE hub_operator_sessions SET last_seen_ms = GREATEST(last_seen_ms, $2)
                 WHERE token_hash = $1",
                &[&token_hash, &now_ms],
            )
        })?;
        Ok(())
    }

    fn delete_session(&mut self, token_hash: &str) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "DELETE FROM hub_operator_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
        })?;
        Ok(())
    }

    fn delete_sessions_of(&mut self, username: &str) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "DELETE FROM hub_operator_sessions WHERE username = $1",
                &[&username],
            )
        })?;
        Ok(())
    }

    fn prune_sessions(
        &mut self,
        created_before_ms: i64,
        seen_before_ms: i64,
    ) -> Result<(), StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "DELETE FROM hub_operator_sessions WHERE created_ms < $1 OR last_seen_ms < $2",
                &[&created_before_ms, &seen_before_ms],
            )
        })?;
        Ok(())
    }

    fn insert_api_token(
        &mut self,
        token_hash: &str,
        username: &str,
        label: &str,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        self.with_tx(|tx| {
            tx.query_one(
                "INSERT INTO hub_api_tokens(token_hash, username, label, created_ms)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&token_hash, &username, &label, &now_ms],
            )
            .map(|r| r.get(0))
        })
    }

    fn use_api_token(
        &mut self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StorageError> {
        let row = self.with_tx(|tx| {
            tx.query_opt(
                "UPDATE hub_api_tokens SET last_used_ms = $2 WHERE token_hash = $1
                 RETURNING username",
                &[&token_hash, &now_ms],
            )
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn api_tokens(&mut self, username: Option<&str>) -> Result<Vec<ApiTokenInfo>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT id, username, label, created_ms, last_used_ms FROM hub_api_tokens
                 WHERE $1::text IS NULL OR username = $1 ORDER BY id",
                &[&username],
            )
        })?;
        rows.iter()
            .map(|r| {
                let u: String = r.get(1);
                Ok(ApiTokenInfo {
                    id: r.get(0),
                    username: u.parse().map_err(|e| corrupt("username", e))?,
                    label: r.get(2),
                    created_ms: r.get(3),
                    last_used_ms: r.get(4),
                })
            })
            .collect()
    }

    fn delete_api_token(&mut self, id: i64) -> Result<bool, StorageError> {
        let n =
            self.with_tx(|tx| tx.execute("DELETE FROM hub_api_tokens WHERE id = $1", &[&id]))?;
        Ok(n == 1)
    }

    fn login_failures(&mut self, username: &str, address: &str) -> Result<Failures, StorageError> {
        let row = self.with_tx(|tx| {
            tx.query_opt(
                "SELECT failures, last_ms FROM hub_login_failures
                 WHERE username = $1 AND address = $2",
                &[&username, &address],
            )
        })?;
        Ok(row
            .map(|r| Failures {
                count: count_of(r.get(0)),
                last_ms: r.get(1),
            })
            .unwrap_or_default())
    }

    fn set_login_failures(
        &mut self,
        username: &str,
        address: &str,
        f: Failures,
    ) -> Result<(), StorageError> {
        let count = i64::from(f.count);
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO hub_login_failures(username, address, failures, last_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT(username, address) DO UPDATE SET failures = $3, last_ms = $4",
                &[&username, &address, &count, &f.last_ms],
            )
        })?;
        Ok(())
    }

    fn clear_login_failures(
        &mut self,
        username: &str,
        address: Option<&str>,
    ) -> Result<u64, StorageError> {
        self.with_tx(|tx| {
            tx.execute(
                "DELETE FROM hub_login_failures
                 WHERE username = $1 AND ($2::text IS NULL OR address = $2)",
                &[&username, &address],
            )
        })
    }

    fn login_limits(&mut self) -> Result<Vec<LoginLimit>, StorageError> {
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT username, address, failures, last_ms FROM hub_login_failures
                 ORDER BY last_ms DESC LIMIT 500",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| LoginLimit {
                username: r.get(0),
                address: r.get(1),
                failures: count_of(r.get(2)),
                last_ms: r.get(3),
            })
            .collect())
    }

    fn record_audit(&mut self, e: &AuditEntry) -> Result<i64, StorageError> {
        let (before, after) = (json_text(&e.before), json_text(&e.after));
        self.with_tx(|tx| {
            tx.query_one(
                "INSERT INTO hub_audit(at_ms, operator, address, kind, center, target,
                   before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING id",
                &[
                    &e.at_ms,
                    &e.operator,
                    &e.address,
                    &e.kind,
                    &e.center,
                    &e.target,
                    &before,
                    &after,
                ],
            )
            .map(|r| r.get(0))
        })
    }

    fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StorageError> {
        let operator = f.operator.as_deref().filter(|s| !s.is_empty());
        let center = f.center.as_deref().filter(|s| !s.is_empty());
        // A kind, or a prefix of kinds ending in `.`; `%` and `_` of the filter are
        // literal.
        let kind = f.kind.as_deref().filter(|s| !s.is_empty()).map(|k| {
            let k = k
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            if k.ends_with('.') { format!("{k}%") } else { k }
        });
        let limit = i64::from(f.limit.unwrap_or(500).min(5000));
        let rows = self.with_tx(|tx| {
            tx.query(
                "SELECT id, at_ms, operator, address, kind, center, target, before_json,
                   after_json
                 FROM hub_audit
                 WHERE ($1::text IS NULL OR operator = $1) AND ($2::text IS NULL OR center = $2)
                   AND ($3::text IS NULL OR kind LIKE $3)
                 ORDER BY id DESC LIMIT $4",
                &[&operator, &center, &kind, &limit],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at_ms: r.get(1),
                operator: r.get(2),
                address: r.get(3),
                kind: r.get(4),
                center: r.get(5),
                target: r.get(6),
                before: json_of(r.get(7)),
                after: json_of(r.get(8)),
            })
            .collect())
    }
}
