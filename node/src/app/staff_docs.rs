//! The center's staff accounts as synced documents (`staff:<center>:<username>`).
//!
//! The SQL rows (`staff`, `staff_permissions`) are what logins and permission checks
//! read; the document carries them to the hub and back. [`reflect`] writes the center's
//! fields of one account (name, roles, language, its own active switch, the argon2id
//! password hash) and a stamped decision per authority whose grant differs, in the same
//! writer job as the SQL change. Only what differs is written, so reflecting an account
//! the document already matches adds no change. The hub's deactivation (`hub_active`)
//! is never written here: it comes from the hub and is projected (`sync::project`).
//! Field ownership is documented in docs/PROTOCOL.md, "Staff accounts".

use jiff::Timestamp;
use markaz_sync::docs::{self as sync_docs, CenterStaff, DocId, PermissionDecision};
use markaz_sync::model::catalog::Authority;
use markaz_sync::model::ids::CenterId;
use markaz_sync::model::staff::Role;
use rusqlite::OptionalExtension;

use crate::error::AppError;
use crate::storage::WriteTx;

/// Whether a stored hash is a real one (the projection's placeholder for an account the
/// hub created, `!unset:…`, is not synced).
fn usable_hash(h: &str) -> bool {
    h.starts_with('$')
}

/// Write one account's center-owned fields and its permission decisions to its staff
/// document, if they differ. `by` is who made the change (for the decisions' stamp).
pub(crate) fn reflect(
    tx: &mut WriteTx<'_>,
    center: &CenterId,
    username: &str,
    by: &str,
    at: Timestamp,
) -> Result<(), AppError> {
    let c = tx.conn;
    let row = c
        .query_row(
            "SELECT full_name, roles, language, active, password_hash FROM staff WHERE username = ?1",
            [username],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((full_name, roles, language, active, hash)) = row else {
        return Ok(());
    };
    let roles: Vec<Role> = serde_json::from_str(&roles)?;
    let mut granted: Vec<(Authority, jiff::civil::Date, Option<String>, String)> = Vec::new();
    {
        let mut stmt = c.prepare_cached(
            "SELECT authority, expires_on, granted_by, granted_at FROM staff_permissions WHERE username = ?1",
        )?;
        let rows = stmt.query_map([username], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (a, e, gb, ga) = row?;
            let (Ok(a), Ok(e)) = (
                serde_json::from_value::<Authority>(serde_json::Value::String(a)),
                e.parse::<jiff::civil::Date>(),
            ) else {
                continue;
            };
            granted.push((a, e, gb, ga));
        }
    }
    let id = DocId::staff(center, username)
        .map_err(|e| AppError::Internal(format!("staff document id: {e}")))?;
    // The current decisions, to stamp only what differs.
    let current = tx
        .docs
        .read(c, &id, sync_docs::read_staff_view)?
        .and_then(Result::ok)
        .map(|v| v.decisions)
        .unwrap_or_default();
    let mut decisions: Vec<PermissionDecision> = Vec::new();
    let mut stamp: Option<String> = None;
    let mut next_stamp = |c: &rusqlite::Connection| -> Result<String, AppError> {
        if let Some(s) = &stamp {
            return Ok(s.clone());
        }
        let s = super::next_hlc(c, center.as_str(), at)?;
        stamp = Some(s.clone());
        Ok(s)
    };
    for (a, e, gb, _) in &granted {
        let same = current
            .iter()
            .any(|d| d.authority == *a && d.expires_on == Some(*e));
        if !same {
            decisions.push(PermissionDecision {
                authority: *a,
                expires_on: Some(*e),
                by: gb.clone().unwrap_or_else(|| by.to_string()),
                hlc: next_stamp(c)?,
            });
        }
    }
    for d in &current {
        if d.expires_on.is_some() && !granted.iter().any(|(a, ..)| *a == d.authority) {
            decisions.push(PermissionDecision {
                authority: d.authority,
                expires_on: None,
                by: by.to_string(),
                hlc: next_stamp(c)?,
            });
        }
    }
    let fields = CenterStaff {
        username,
        full_name: &full_name,
        roles: &roles,
        language: &language,
        active,
        password_hash: usable_hash(&hash).then_some(hash.as_str()),
    };
    tx.docs.edit(c, &id, |d| {
        sync_docs::write_center_staff(d, center, &fields)?;
        for dec in &decisions {
            sync_docs::decide_permission(d, dec)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// [`reflect`] every account (at start and before each sync session): accounts made
/// before staff were synced get their documents, and a change made without a hook (a
/// password set elsewhere) is carried at the next session. Returns how many documents
/// changed.
pub(crate) fn reflect_all(
    tx: &mut WriteTx<'_>,
    center: &CenterId,
    at: Timestamp,
) -> Result<usize, AppError> {
    let names: Vec<String> = tx
        .conn
        .prepare("SELECT username FROM staff ORDER BY username")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let before: i64 = tx
        .conn
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
    for n in &names {
        if DocId::staff(center, n).is_err() {
            tracing::warn!(username = %n, "a username that cannot name a staff document is not synced");
            continue;
        }
        reflect(tx, center, n, "system", at)?;
    }
    let after: i64 = tx
        .conn
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
    Ok(usize::try_from(after - before).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_real_hashes_sync() {
        assert!(super::usable_hash("$argon2id$v=19$m=19456,t=2,p=1$abc$def"));
        assert!(!super::usable_hash("!unset:00ff"));
    }
}
