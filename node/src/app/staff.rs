//! Staff accounts, logins and permissions at the center. Accounts and permissions are
//! granted and revoked often (seasonal staff); every change is audited.

use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use markaz_sync::model::catalog::Authority;
use markaz_sync::model::staff::{Capability, Permission, Role, StaffMember};

use super::{Actor, App, audit};
use crate::auth;
use crate::error::AppError;

/// A staff member as shown to supervisors (no password hash).
#[derive(Debug, Clone, Serialize)]
pub struct StaffView {
    pub username: String,
    pub full_name: String,
    pub roles: Vec<Role>,
    pub permissions: Vec<Permission>,
    /// Whether it acts: its own switch here and the hub's both on.
    pub active: bool,
    pub language: String,
    /// Deactivated by the governorate hub (only the hub can lift it).
    pub deactivated_at_hub: bool,
}

impl StaffView {
    pub fn member(&self) -> StaffMember {
        StaffMember {
            username: self.username.clone(),
            full_name: self.full_name.clone(),
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
            active: self.active,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub username: String,
    pub full_name: String,
    pub password: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub authority: Authority,
    pub expires_on: Date,
}

/// The roles an account has from now on (replacing the old ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    pub roles: Vec<Role>,
}

/// A new password set by a manager for someone else's account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    pub password: String,
}

/// A staff member changing their own password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// The shortest password the node accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

fn password_errors(field: &str, password: &str) -> Vec<markaz_sync::model::catalog::FieldError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        vec![field_error(
            field,
            "too_short",
            "at least 10 characters",
            "10 محارف على الأقل",
        )]
    } else {
        Vec::new()
    }
}

/// The staff table's writes that this module makes beyond creating an account: one
/// function per column family, so a sync of staff records has one place to hook into.
mod store {
    use rusqlite::{Connection, params};

    use super::Role;
    use crate::error::AppError;

    pub fn set_roles(c: &Connection, user: &str, roles: &[Role], at: &str) -> Result<(), AppError> {
        c.execute(
            "UPDATE staff SET roles = ?2, updated_at = ?3 WHERE username = ?1",
            params![user, serde_json::to_string(roles)?, at],
        )?;
        Ok(())
    }

    /// Sets the password hash and ends the account's sessions but `keep` (a token hash).
    pub fn set_password(
        c: &Connection,
        user: &str,
        hash: &str,
        at: &str,
        keep: Option<&str>,
    ) -> Result<(), AppError> {
        c.execute(
            "UPDATE staff SET password_hash = ?2, updated_at = ?3 WHERE username = ?1",
            params![user, hash, at],
        )?;
        c.execute(
            "DELETE FROM sessions WHERE username = ?1 AND token_hash IS NOT ?2",
            params![user, keep],
        )?;
        Ok(())
    }
}

/// What a successful login returns.
#[derive(Debug, Clone, Serialize)]
pub struct LoginOutcome {
    pub token: String,
    pub csrf: String,
    pub user: StaffView,
}

pub(crate) fn load_staff(
    conn: &Connection,
    username: &str,
) -> Result<Option<(StaffView, String)>, AppError> {
    let row = conn
        .query_row(
            "SELECT username, full_name, roles, active AND hub_active, language, password_hash, hub_active FROM staff WHERE username = ?1",
            [username],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((username, full_name, roles, active, language, hash, hub_active)) = row else {
        return Ok(None);
    };
    let roles: Vec<Role> = serde_json::from_str(&roles)?;
    let mut stmt = conn.prepare_cached("SELECT authority, expires_on FROM staff_permissions WHERE username = ?1 ORDER BY authority")?;
    let permissions = stmt
        .query_map([&username], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .filter_map(|r| r.ok())
        .filter_map(|(a, e)| {
            Some(Permission {
                authority: serde_json::from_value(serde_json::Value::String(a)).ok()?,
                expires_on: e.parse().ok()?,
            })
        })
        .collect();
    Ok(Some((
        StaffView {
            username,
            full_name,
            roles,
            permissions,
            active,
            language,
            deactivated_at_hub: !hub_active,
        },
        hash,
    )))
}

fn authority_key(a: Authority) -> Result<String, AppError> {
    match serde_json::to_value(a)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(AppError::Internal(format!(
            "authority serialised as {other}"
        ))),
    }
}

fn valid_username(u: &str) -> bool {
    (2..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

impl App {
    /// Creates the first admin account on an empty staff table. Returns the password
    /// when it was generated (to be shown once on the console).
    pub async fn bootstrap_admin(&self) -> Result<Option<String>, AppError> {
        let user = self.settings.initial_admin_user.clone();
        let (password, generated) = match &self.settings.initial_admin_password {
            Some(p) => (p.clone(), false),
            None => (auth::new_token()[..16].to_string(), true),
        };
        let hash = tokio::task::spawn_blocking({
            let p = password.clone();
            move || auth::hash_password(&p)
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
        let now = self.now().to_string();
        let created = self
            .db
            .writer
            .write(move |tx| -> Result<bool, AppError> {
                let c = tx.conn;
                let n: i64 = c.query_row("SELECT count(*) FROM staff", [], |r| r.get(0))?;
                if n > 0 {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO staff(username, full_name, password_hash, roles, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![user, "Administrator", hash, serde_json::to_string(&vec![Role::Admin])?, now],
                )?;
                c.execute(
                    "INSERT INTO audit_log(at, actor, action, subject) VALUES (?1, 'system', 'staff.bootstrap_admin', ?2)",
                    params![now, user],
                )?;
                Ok(true)
            })
            .await?;
        Ok((created && generated).then_some(password))
    }

    /// Checks a username and password, limited per (username, client address): failures
    /// from one address slow down only that address's attempts at that name.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        terminal: Option<&str>,
        client: &str,
    ) -> Result<LoginOutcome, AppError> {
        let now = self.now_ms();
        let policy = self.settings.auth.clone();
        let logins = policy.logins();
        let (u, cl) = (username.to_string(), client.to_string());
        {
            let (u, cl) = (u.clone(), cl.clone());
            let f = self
                .db
                .readers
                .read(move |c| auth::login_failures(c, &u, &cl))
                .await?;
            if let Some(ms) = logins.wait_ms(f, now) {
                return Err(AppError::RateLimited {
                    retry_after_secs: markaz_web::login::retry_after_secs(ms),
                });
            }
        }
        let name = username.to_string();
        let found = self.db.readers.read(move |c| load_staff(c, &name)).await?;
        let pw = password.to_string();
        let verified = match found {
            Some((view, hash)) if view.active => {
                let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
                    .await
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                ok.then_some(view)
            }
            _ => {
                // Spend the same time as a real check so usernames cannot be probed by timing.
                let _ = tokio::task::spawn_blocking(move || {
                    auth::verify_password(&pw, auth::DUMMY_HASH)
                })
                .await;
                None
            }
        };
        let terminal = terminal.map(str::to_string);
        let Some(view) = verified else {
            self.db
                .writer
                .write(move |tx| auth::record_login_failure(tx.conn, &u, &cl, now, &logins))
                .await?;
            tracing::warn!(username, client, "failed login");
            return Err(AppError::Unauthenticated);
        };
        let at = self.now();
        let mono = self.clock.monotonic();
        let user = view.clone();
        let (token, csrf) = self
            .db
            .writer
            .write(move |tx| -> Result<(String, String), AppError> {
                let c = tx.conn;
                auth::clear_login_limit(c, &u, Some(&cl))?;
                let out = auth::create_session(
                    c,
                    &user.username,
                    terminal.as_deref(),
                    now,
                    &mono,
                    &policy,
                )?;
                let actor = Actor {
                    username: user.username.clone(),
                    full_name: user.full_name.clone(),
                    roles: user.roles.clone(),
                    terminal,
                    language: user.language.clone(),
                };
                audit(
                    c,
                    at,
                    &actor,
                    "auth.login",
                    &user.username,
                    serde_json::json!({}),
                )?;
                Ok(out)
            })
            .await?;
        Ok(LoginOutcome {
            token,
            csrf,
            user: view,
        })
    }

    /// Resolves a session token to the acting staff member; refreshes its idle timer.
    pub async fn authenticate(&self, token: &str) -> Result<(Actor, String), AppError> {
        let now = self.now_ms();
        let mono = self.clock.monotonic();
        let m2 = mono.clone();
        let policy = self.settings.auth.clone();
        let tok = token.to_string();
        let (session, staff) = self
            .db
            .readers
            .read(move |c| -> Result<_, AppError> {
                let s = auth::find_session(c, &tok, now, &m2, &policy)?
                    .ok_or(AppError::Unauthenticated)?;
                let (staff, _) = load_staff(c, &s.username)?.ok_or(AppError::Unauthenticated)?;
                Ok((s, staff))
            })
            .await?;
        // Refresh at most once a minute, so reads do not each cost a durable write.
        if session.idle_ms > 60_000 {
            let tok = token.to_string();
            self.db
                .writer
                .write(move |tx| auth::touch_session(tx.conn, &tok, now, &mono))
                .await?;
        }
        let actor = Actor {
            username: staff.username,
            full_name: staff.full_name,
            roles: staff.roles,
            terminal: session.terminal,
            language: staff.language,
        };
        Ok((actor, session.csrf))
    }

    pub async fn logout(&self, token: &str) -> Result<(), AppError> {
        let tok = token.to_string();
        self.db
            .writer
            .write(move |tx| auth::delete_session(tx.conn, &tok))
            .await?;
        Ok(())
    }

    pub async fn list_staff(&self, actor: &Actor) -> Result<Vec<StaffView>, AppError> {
        actor
            .require(Capability::ViewReports)
            .or_else(|_| actor.require(Capability::ManageStaff))?;
        self.db
            .readers
            .read(|c| -> Result<Vec<StaffView>, AppError> {
                let names: Vec<String> = c
                    .prepare("SELECT username FROM staff ORDER BY username")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::new();
                for n in names {
                    if let Some((v, _)) = load_staff(c, &n)? {
                        out.push(v);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Every account's full name by username: pages name people, not usernames.
    pub async fn staff_names(&self) -> Result<std::collections::HashMap<String, String>, AppError> {
        self.db
            .readers
            .read(|c| -> Result<_, AppError> {
                Ok(c.prepare_cached("SELECT username, full_name FROM staff")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    pub async fn get_staff(&self, username: &str) -> Result<StaffView, AppError> {
        let n = username.to_string();
        self.db
            .readers
            .read(move |c| load_staff(c, &n))
            .await?
            .map(|(v, _)| v)
            .ok_or_else(|| AppError::not_found(format!("staff member '{username}'")))
    }

    pub async fn create_staff(
        &self,
        actor: &Actor,
        input: NewStaff,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        let mut errs = Vec::new();
        if !valid_username(&input.username) {
            errs.push(field_error(
                "username",
                "invalid_username",
                "2–32 letters, digits, '.', '_' or '-'",
                "من 2 إلى 32 حرفاً لاتينياً أو رقماً",
            ));
        }
        if input.full_name.trim().is_empty() {
            errs.push(field_error(
                "full_name",
                "required",
                "the full name is required",
                "الاسم الكامل مطلوب",
            ));
        }
        if input.password.chars().count() < 10 {
            errs.push(field_error(
                "password",
                "too_short",
                "at least 10 characters",
                "10 محارف على الأقل",
            ));
        }
        if input.roles.is_empty() {
            errs.push(field_error(
                "roles",
                "required",
                "at least one role",
                "دور واحد على الأقل",
            ));
        }
        let language = input.language.clone().unwrap_or_else(|| "ar".into());
        if language != "ar" && language != "en" {
            errs.push(field_error(
                "language",
                "invalid_language",
                "'ar' or 'en'",
                "'ar' أو 'en'",
            ));
        }
        if !errs.is_empty() {
            return Err(AppError::Invalid(errs));
        }
        let pw = input.password.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))??;
        let at = self.now();
        let actor2 = actor.clone();
        let username = input.username.clone();
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                let exists: bool = c.query_row("SELECT count(*) > 0 FROM staff WHERE username = ?1", [&input.username], |r| r.get(0))?;
                if exists {
                    return Err(AppError::Conflict { code: "username_taken", message: format!("the username '{}' is already taken", input.username) });
                }
                c.execute(
                    "INSERT INTO staff(username, full_name, password_hash, roles, language, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![input.username, input.full_name.trim(), hash, serde_json::to_string(&input.roles)?, language, at.to_string()],
                )?;
                audit(c, at, &actor2, "staff.create", &input.username, serde_json::json!({"roles": input.roles}))?;
                super::staff_docs::reflect(tx, &center, &input.username, &actor2.username, at)
            })
            .await?;
        self.get_staff(&username).await
    }

    /// Grants (or extends) a permission for an authority's system, until a date.
    pub async fn grant_permission(
        &self,
        actor: &Actor,
        username: &str,
        grant: Grant,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        if grant.expires_on < self.today() {
            return Err(AppError::field(
                "expires_on",
                "in_the_past",
                "the expiry date is already past",
                "تاريخ الانتهاء مضى",
            ));
        }
        self.get_staff(username).await?;
        let at = self.now();
        let (actor2, user) = (actor.clone(), username.to_string());
        let center = self.settings.center_id.clone();
        let key = authority_key(grant.authority)?;
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                c.execute(
                    "INSERT INTO staff_permissions(username, authority, expires_on, granted_by, granted_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(username, authority) DO UPDATE SET expires_on = excluded.expires_on, granted_by = excluded.granted_by, granted_at = excluded.granted_at",
                    params![user, key, grant.expires_on.to_string(), actor2.username, at.to_string()],
                )?;
                audit(c, at, &actor2, "staff.grant_permission", &user, serde_json::json!({"authority": key, "expires_on": grant.expires_on.to_string()}))?;
                super::staff_docs::reflect(tx, &center, &user, &actor2.username, at)
            })
            .await?;
        self.get_staff(username).await
    }

    pub async fn revoke_permission(
        &self,
        actor: &Actor,
        username: &str,
        authority: Authority,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        self.get_staff(username).await?;
        let at = self.now();
        let (actor2, user) = (actor.clone(), username.to_string());
        let center = self.settings.center_id.clone();
        let key = authority_key(authority)?;
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                let n = c.execute(
                    "DELETE FROM staff_permissions WHERE username = ?1 AND authority = ?2",
                    params![user, key],
                )?;
                if n == 0 {
                    return Err(AppError::not_found(format!("permission {key} of '{user}'")));
                }
                audit(
                    c,
                    at,
                    &actor2,
                    "staff.revoke_permission",
                    &user,
                    serde_json::json!({"authority": key}),
                )?;
                super::staff_docs::reflect(tx, &center, &user, &actor2.username, at)
            })
            .await?;
        self.get_staff(username).await
    }

    /// Deactivates an account and ends its sessions.
    pub async fn set_active(
        &self,
        actor: &Actor,
        username: &str,
        active: bool,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        if username == actor.username && !active {
            return Err(AppError::Conflict {
                code: "self_deactivation",
                message: "you cannot deactivate your own account".into(),
            });
        }
        self.get_staff(username).await?;
        let at = self.now();
        let (actor2, user) = (actor.clone(), username.to_string());
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                c.execute(
                    "UPDATE staff SET active = ?2, updated_at = ?3 WHERE username = ?1",
                    params![user, active, at.to_string()],
                )?;
                if !active {
                    c.execute("DELETE FROM sessions WHERE username = ?1", [&user])?;
                }
                audit(
                    c,
                    at,
                    &actor2,
                    if active {
                        "staff.activate"
                    } else {
                        "staff.deactivate"
                    },
                    &user,
                    serde_json::json!({}),
                )?;
                super::staff_docs::reflect(tx, &center, &user, &actor2.username, at)
            })
            .await?;
        self.get_staff(username).await
    }

    /// Writes every account's staff document where it differs from the rows (see
    /// `app::staff_docs::reflect_all`, which every sync session also runs as it starts).
    /// Returns how many changed.
    pub async fn publish_staff_docs(&self) -> Result<usize, AppError> {
        let center = self.settings.center_id.clone();
        let at = self.now();
        Ok(self
            .db
            .writer
            .write(move |tx| super::staff_docs::reflect_all(tx, &center, at))
            .await?)
    }

    /// Replaces an account's roles. A manager cannot take away their own right to manage
    /// staff (the center would be left without anyone who can).
    pub async fn set_roles(
        &self,
        actor: &Actor,
        username: &str,
        input: SetRoles,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        let mut roles = input.roles;
        roles.sort_by_key(|r| Role::ALL.iter().position(|x| x == r));
        roles.dedup();
        if roles.is_empty() {
            return Err(AppError::Invalid(vec![field_error(
                "roles",
                "required",
                "at least one role",
                "دور واحد على الأقل",
            )]));
        }
        if username == actor.username && !roles.iter().any(|r| r.allows(Capability::ManageStaff)) {
            return Err(AppError::Conflict {
                code: "self_demotion",
                message: "you cannot take away your own right to manage staff".into(),
            });
        }
        self.get_staff(username).await?;
        let at = self.now();
        let (actor2, user) = (actor.clone(), username.to_string());
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                store::set_roles(c, &user, &roles, &at.to_string())?;
                audit(
                    c,
                    at,
                    &actor2,
                    "staff.set_roles",
                    &user,
                    serde_json::json!({"roles": roles}),
                )?;
                super::staff_docs::reflect(tx, &center, &user, &actor2.username, at)
            })
            .await?;
        self.get_staff(username).await
    }

    /// Sets a new password for someone's account (they forgot theirs) and ends its
    /// sessions.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        username: &str,
        input: ResetPassword,
    ) -> Result<StaffView, AppError> {
        actor.require(Capability::ManageStaff)?;
        let errs = password_errors("password", &input.password);
        if !errs.is_empty() {
            return Err(AppError::Invalid(errs));
        }
        self.get_staff(username).await?;
        let hash = hash_blocking(input.password).await?;
        let at = self.now();
        let (actor2, user) = (actor.clone(), username.to_string());
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                store::set_password(c, &user, &hash, &at.to_string(), None)?;
                audit(
                    c,
                    at,
                    &actor2,
                    "staff.reset_password",
                    &user,
                    serde_json::json!({}),
                )?;
                super::staff_docs::reflect(tx, &center, &user, &actor2.username, at)
            })
            .await?;
        self.get_staff(username).await
    }

    /// The login limits in force: each (username, address) with failed logins, and until
    /// when its next attempt waits. For those who manage staff.
    pub async fn login_limits(&self, actor: &Actor) -> Result<Vec<auth::LoginLimit>, AppError> {
        actor.require(Capability::ManageStaff)?;
        let now = self.now_ms();
        let logins = self.settings.auth.logins();
        self.db
            .readers
            .read(move |c| auth::login_limits(c, now, &logins))
            .await
    }

    /// Clears the login limit of `username` from `address` (or from every address), so
    /// the user can log in at once; audited. Returns how many pairs were cleared.
    pub async fn clear_login_limit(
        &self,
        actor: &Actor,
        username: &str,
        address: Option<&str>,
    ) -> Result<usize, AppError> {
        actor.require(Capability::ManageStaff)?;
        let at = self.now();
        let (actor2, user, addr) = (
            actor.clone(),
            username.to_string(),
            address.map(str::to_string),
        );
        Ok(self
            .db
            .writer
            .write(move |tx| -> Result<usize, AppError> {
                let c = tx.conn;
                let n = auth::clear_login_limit(c, &user, addr.as_deref())?;
                audit(
                    c,
                    at,
                    &actor2,
                    "staff.clear_login_limit",
                    &user,
                    serde_json::json!({"address": addr, "cleared": n}),
                )?;
                Ok(n)
            })
            .await?)
    }

    /// A staff member changes their own password: the current one is checked (failures
    /// count towards the login limit), the new one must differ, and every other session
    /// of the account ends (`token` is the session that asked, which stays).
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        token: &str,
        input: ChangePassword,
    ) -> Result<(), AppError> {
        let now = self.now_ms();
        let policy = self.settings.auth.clone();
        let key = format!("user:{}", actor.username);
        {
            let (key, policy) = (key.clone(), policy.clone());
            self.db
                .readers
                .read(move |c| auth::check_rate(c, &key, now, &policy))
                .await?;
        }
        let name = actor.username.clone();
        let (_, hash) = self
            .db
            .readers
            .read(move |c| load_staff(c, &name))
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let current = input.current_password.clone();
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&current, &hash))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        if !ok {
            self.db
                .writer
                .write(move |tx| auth::record_failure(tx.conn, &key, now, &policy))
                .await?;
            return Err(AppError::Invalid(vec![field_error(
                "current_password",
                "wrong_password",
                "this is not your current password",
                "كلمة المرور الحالية غير صحيحة",
            )]));
        }
        let mut errs = password_errors("new_password", &input.new_password);
        if errs.is_empty() && input.new_password == input.current_password {
            errs.push(field_error(
                "new_password",
                "same_password",
                "the new password must differ from the current one",
                "يجب أن تختلف كلمة المرور الجديدة عن الحالية",
            ));
        }
        if !errs.is_empty() {
            return Err(AppError::Invalid(errs));
        }
        let hash = hash_blocking(input.new_password).await?;
        let at = self.now();
        let actor2 = actor.clone();
        let keep = auth::token_hash(token);
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                auth::clear_failures(c, &key)?;
                store::set_password(c, &actor2.username, &hash, &at.to_string(), Some(&keep))?;
                audit(
                    c,
                    at,
                    &actor2,
                    "staff.change_own_password",
                    &actor2.username,
                    serde_json::json!({}),
                )?;
                let user = actor2.username.clone();
                super::staff_docs::reflect(tx, &center, &user, &user, at)
            })
            .await?;
        Ok(())
    }

    /// Refuses unless the actor holds an unexpired permission for `authority` today.
    pub async fn require_permission(
        &self,
        actor: &Actor,
        authority: Authority,
    ) -> Result<(), AppError> {
        let staff = self.get_staff(&actor.username).await?;
        markaz_sync::model::staff::can_process(&staff.member(), authority, self.today())
            .map_err(|e| AppError::forbidden("permission_missing", e.to_string()))
    }
}

async fn hash_blocking(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
}

pub(crate) fn field_error(
    field: &str,
    code: &str,
    en: &str,
    ar: &str,
) -> markaz_sync::model::catalog::FieldError {
    markaz_sync::model::catalog::FieldError {
        field: field.into(),
        code: code.into(),
        message_en: en.into(),
        message_ar: ar.into(),
    }
}
