//! The hub's operators: accounts with roles, password login, sessions, API tokens per
//! operator, the login limit per (username, address), and the audit log of every change
//! an operator makes.
//!
//! The roles are the governorate's user groups ([`Role`]); what each route needs is in
//! `web::access`, one table. Passwords, tokens, CSRF tokens, session lifetimes and the
//! login limit are the shared rules of `markaz_web`; the rows live behind
//! [`crate::storage::Operators`] (no engine type in it). Only hashes of session and API
//! tokens are stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::storage::HubEngine;

/// An operator role: the four user groups of a governorate, the administrators split by
/// what they keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operator accounts and everything else.
    Admin,
    /// The policy and oversight department: every case of every center, the audit log.
    Oversight,
    /// Administrators of the catalog and the fees.
    Catalog,
    /// Administrators of the centers' staff and their permissions.
    Staff,
    /// The electronic services center: portal cases, delivery by post.
    Eservices,
    /// The network and field team: links, modems, power (read-only, technical).
    Network,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Oversight,
        Role::Catalog,
        Role::Staff,
        Role::Eservices,
        Role::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Oversight => "oversight",
            Role::Catalog => "catalog",
            Role::Staff => "staff",
            Role::Eservices => "eservices",
            Role::Network => "network",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = OperatorError;
    fn from_str(s: &str) -> Result<Role, OperatorError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                OperatorError::invalid(
                    "roles",
                    format!(
                        "unknown role `{s}`; the roles are {}",
                        Role::ALL.map(Role::as_str).join(", ")
                    ),
                )
            })
    }
}

/// A valid operator username: 2 to 32 of ASCII letters, digits, `.`, `_`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = OperatorError;
    fn from_str(s: &str) -> Result<Username, OperatorError> {
        let ok = (2..=32).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Username(s.to_string()))
        } else {
            Err(OperatorError::invalid(
                "username",
                "2 to 32 letters, digits, '.', '_' or '-'",
            ))
        }
    }
}

/// The shortest password an operator may choose.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Checks a new password.
pub fn check_password(p: &str) -> Result<(), OperatorError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(OperatorError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Parses a comma-separated list of roles (`admin,network`); at least one.
pub fn parse_roles(s: &str) -> Result<Vec<Role>, OperatorError> {
    let mut roles = s
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(Role::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(OperatorError::invalid("roles", "at least one role"));
    }
    Ok(roles)
}

/// An operator account as stored (the password only as its argon2 hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub username: Username,
    pub full_name: String,
    pub roles: Vec<Role>,
    pub password_hash: String,
    pub active: bool,
    /// `ar` or `en`: the pages' language for this operator.
    pub language: String,
    pub created_ms: i64,
}

impl OperatorRecord {
    /// What the pages and the API show of it.
    pub fn view(&self) -> OperatorView {
        OperatorView {
            username: self.username.clone(),
            full_name: self.full_name.clone(),
            roles: self.roles.clone(),
            active: self.active,
            language: self.language.clone(),
        }
    }
}

/// An operator without secrets, as pages, the API and the audit log show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorView {
    pub username: Username,
    pub full_name: String,
    pub roles: Vec<Role>,
    pub active: bool,
    pub language: String,
}

impl OperatorView {
    /// Whether the operator holds `role` (an admin holds every role).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    /// Whether the operator holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }
}

/// A stored session: who, and when it began and was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub username: Username,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

/// An API token of an operator, as listed (the token itself is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub username: Username,
    pub label: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// A login limit in force, for the operators page (who may clear it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginLimit {
    pub username: String,
    pub address: String,
    pub failures: u32,
    pub last_ms: i64,
}

impl LoginLimit {
    /// Until when (ms since the epoch) the next attempt of this pair waits under
    /// `policy` at `now_ms`; `None` when it may try now.
    pub fn waits_until_ms(
        &self,
        policy: &markaz_web::login::LoginPolicy,
        now_ms: i64,
    ) -> Option<i64> {
        let f = markaz_web::login::Failures {
            count: self.failures,
            last_ms: self.last_ms,
        };
        policy.wait_ms(f, now_ms).map(|w| now_ms + w)
    }
}

/// One change made at the hub: who, when, from where, what, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The operator (or `system` for the hub itself, `cli` for `markaz hub operator`).
    pub operator: String,
    /// The client address.
    pub address: String,
    /// What kind of change: `catalog.service`, `staff.grant`, `operator.create`, …
    pub kind: String,
    /// The center it concerns, if one.
    pub center: Option<String>,
    /// What was changed (a service code, `center/username`, an operator).
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which audit entries to list (all filters optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuditFilter {
    pub operator: Option<String>,
    pub center: Option<String>,
    /// A kind, or a prefix of kinds ending in `.` (`catalog.`).
    pub kind: Option<String>,
    pub limit: Option<u32>,
}

/// Why an operator operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the operator `{0}` exists already")]
    Exists(String),
    #[error("no operator `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl OperatorError {
    pub fn invalid(field: &'static str, message: impl ToString) -> Self {
        OperatorError::Invalid {
            field,
            message: message.to_string(),
        }
    }
}

/// Who makes a change, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub operator: String,
    pub address: String,
    pub at_ms: i64,
}

impl Who {
    /// An audit entry of a change this caller made.
    pub fn entry(
        &self,
        kind: &str,
        center: Option<&str>,
        target: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            at_ms: self.at_ms,
            operator: self.operator.clone(),
            address: self.address.clone(),
            kind: kind.into(),
            center: center.map(str::to_string),
            target: target.into(),
            before,
            after,
        }
    }
}

/// A new operator (the password comes separately, already hashed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub username: String,
    #[serde(default)]
    pub full_name: String,
    pub roles: Vec<Role>,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "ar".into()
}

fn check_language(l: &str) -> Result<(), OperatorError> {
    if markaz_web::i18n::Lang::from_code(l).is_some() {
        Ok(())
    } else {
        Err(OperatorError::invalid("language", "ar or en"))
    }
}

/// A change to an operator (each field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorUpdate {
    pub full_name: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub active: Option<bool>,
    pub language: Option<String>,
}

fn to_json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

/// Creates an operator and records it. Runs on a storage worker.
pub fn create(
    e: &mut dyn HubEngine,
    new: &NewOperator,
    password_hash: String,
    who: &Who,
) -> Result<OperatorView, OperatorError> {
    let username: Username = new.username.trim().parse()?;
    if new.roles.is_empty() {
        return Err(OperatorError::invalid("roles", "at least one role"));
    }
    check_language(&new.language)?;
    let mut roles = new.roles.clone();
    roles.sort();
    roles.dedup();
    let rec = OperatorRecord {
        username: username.clone(),
        full_name: new.full_name.trim().to_string(),
        roles,
        password_hash,
        active: true,
        language: new.language.clone(),
        created_ms: who.at_ms,
    };
    if !e.insert_operator(&rec)? {
        return Err(OperatorError::Exists(username.to_string()));
    }
    let view = rec.view();
    e.record_audit(&who.entry(
        "operator.create",
        None,
        username.as_str(),
        None,
        to_json(&view),
    ))?;
    Ok(view)
}

/// Changes an operator and records it; a deactivated operator's sessions end. An
/// administrator cannot take the admin role from, or deactivate, the last active admin.
pub fn update(
    e: &mut dyn HubEngine,
    username: &str,
    change: &OperatorUpdate,
    who: &Who,
) -> Result<OperatorView, OperatorError> {
    let mut rec = e
        .operator(username)?
        .ok_or_else(|| OperatorError::NotFound(username.into()))?;
    let before = rec.view();
    if let Some(n) = &change.full_name {
        rec.full_name = n.trim().to_string();
    }
    if let Some(r) = &change.roles {
        if r.is_empty() {
            return Err(OperatorError::invalid("roles", "at least one role"));
        }
        let mut r = r.clone();
        r.sort();
        r.dedup();
        rec.roles = r;
    }
    if let Some(a) = change.active {
        rec.active = a;
    }
    if let Some(l) = &change.language {
        check_language(l)?;
        rec.language = l.clone();
    }
    let was_admin = before.active && before.roles.contains(&Role::Admin);
    let is_admin = rec.active && rec.roles.contains(&Role::Admin);
    if was_admin && !is_admin {
        let admins = e
            .operators()?
            .iter()
            .filter(|o| o.active && o.roles.contains(&Role::Admin))
            .count();
        if admins <= 1 {
            return Err(OperatorError::invalid(
                "roles",
                "the last active administrator keeps the admin role",
            ));
        }
    }
    e.update_operator(&rec)?;
    if !rec.active {
        e.delete_sessions_of(username)?;
    }
    let after = rec.view();
    if after != before {
        e.record_audit(&who.entry(
            "operator.update",
            None,
            username,
            to_json(&before),
            to_json(&after),
        ))?;
    }
    Ok(after)
}

/// Sets an operator's password (already hashed), ends their other sessions, records it
/// (without any secret).
pub fn set_password(
    e: &mut dyn HubEngine,
    username: &str,
    password_hash: String,
    keep_session: Option<&str>,
    who: &Who,
) -> Result<(), OperatorError> {
    let mut rec = e
        .operator(username)?
        .ok_or_else(|| OperatorError::NotFound(username.into()))?;
    rec.password_hash = password_hash;
    e.update_operator(&rec)?;
    e.delete_sessions_of(username)?;
    if let Some(token_hash) = keep_session {
        e.insert_session(
            token_hash,
            &SessionRecord {
                username: rec.username.clone(),
                created_ms: who.at_ms,
                last_seen_ms: who.at_ms,
            },
        )?;
    }
    e.record_audit(&who.entry("operator.password", None, username, None, None))?;
    Ok(())
}

/// Stores a new API token (its hash) for an operator and records it.
pub fn add_token(
    e: &mut dyn HubEngine,
    username: &str,
    label: &str,
    token_hash: &str,
    who: &Who,
) -> Result<ApiTokenInfo, OperatorError> {
    if e.operator(username)?.is_none() {
        return Err(OperatorError::NotFound(username.into()));
    }
    let label = label.trim();
    if label.chars().count() > 100 {
        return Err(OperatorError::invalid("label", "at most 100 characters"));
    }
    let id = e.insert_api_token(token_hash, username, label, who.at_ms)?;
    let info = ApiTokenInfo {
        id,
        username: username.parse()?,
        label: label.to_string(),
        created_ms: who.at_ms,
        last_used_ms: None,
    };
    e.record_audit(&who.entry(
        "operator.token.create",
        None,
        username,
        None,
        to_json(&info),
    ))?;
    Ok(info)
}

/// Revokes an API token and records it.
pub fn revoke_token(e: &mut dyn HubEngine, id: i64, who: &Who) -> Result<(), OperatorError> {
    let before = e.api_tokens(None)?.into_iter().find(|t| t.id == id);
    let Some(before) = before else {
        return Err(OperatorError::NotFound(format!("token {id}")));
    };
    e.delete_api_token(id)?;
    e.record_audit(&who.entry(
        "operator.token.revoke",
        None,
        before.username.as_str(),
        to_json(&before),
        None,
    ))?;
    Ok(())
}

/// Clears the login limit of a username (from one address or all) and records it.
pub fn clear_limit(
    e: &mut dyn HubEngine,
    username: &str,
    address: Option<&str>,
    who: &Who,
) -> Result<u64, OperatorError> {
    let n = e.clear_login_failures(username, address)?;
    e.record_audit(&who.entry(
        "operator.login_limit.clear",
        None,
        username,
        None,
        Some(serde_json::json!({ "address": address, "cleared": n })),
    ))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_usernames_parse_strictly() {
        assert_eq!(
            parse_roles("network, admin,network").unwrap(),
            vec![Role::Admin, Role::Network]
        );
        assert!(parse_roles("").is_err());
        assert!(parse_roles("root").is_err());
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("amal.k".parse::<Username>().is_ok());
        assert!("a".parse::<Username>().is_err());
        assert!("a b".parse::<Username>().is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
    }

    #[test]
    fn an_admin_holds_every_role() {
        let v = |roles: Vec<Role>| OperatorView {
            username: "x1".parse().unwrap(),
            full_name: String::new(),
            roles,
            active: true,
            language: "ar".into(),
        };
        assert!(v(vec![Role::Admin]).has(Role::Network));
        assert!(!v(vec![Role::Network]).has(Role::Catalog));
        assert!(v(vec![Role::Network]).has_any(&[Role::Catalog, Role::Network]));
    }
}
