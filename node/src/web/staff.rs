//! The staff page (managers): create accounts, set their roles, grant permissions per
//! authority until a date, revoke them, deactivate and reactivate accounts, reset a
//! password, see and clear login limits; and every user's own password page, which the
//! first-start message points to. Each form calls the same use case as the JSON API (`app::staff`).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::catalog::{Authority, FieldError};
use markaz_sync::model::staff::{Capability, Role};

use super::Lang;
use super::session::{
    PageError, Staff, Web, error_message, field_errors, flash, form_error, page, status_of,
    urlencode,
};
use crate::app::staff::{ChangePassword, Grant, NewStaff, ResetPassword, SetRoles, StaffView};
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

fn authorities(lang: Lang) -> Vec<Value> {
    Authority::ALL
        .iter()
        .map(|x| context! { value => x.as_str(), name => if lang == Lang::Ar { x.name_ar() } else { x.name_en() } })
        .collect()
}

fn staff_value(web: &Web, lang: Lang, s: &StaffView) -> Value {
    let today = web.app.today();
    let perms: Vec<Value> = s
        .permissions
        .iter()
        .map(|p| context! {
            key => p.authority.as_str(),
            authority => if lang == Lang::Ar { p.authority.name_ar() } else { p.authority.name_en() },
            expires_on => p.expires_on.to_string(),
            expired => p.expires_on < today,
        })
        .collect();
    context! {
        username => &s.username, full_name => &s.full_name, active => s.active,
        roles => s.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        permissions => perms,
    }
}

/// The new-account form as typed.
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    language: String,
}

/// A refused new-account form, re-shown: the values as typed, the roles ticked, errors.
struct ListShown {
    form: Value,
    roles: Vec<String>,
    errors: Value,
    error: Option<String>,
}

impl Default for ListShown {
    fn default() -> Self {
        ListShown {
            form: Value::from(()),
            roles: Vec::new(),
            errors: Value::from(()),
            error: None,
        }
    }
}

async fn render_list(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    done: Option<&str>,
    shown: ListShown,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let list = web
        .app
        .list_staff(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let limits: Vec<Value> = web
        .app
        .login_limits(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?
        .iter()
        .map(|l| {
            let when = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| super::session::local_datetime(&web.app, &t.to_string()))
                    .unwrap_or_default()
            };
            context! {
                username => &l.username, address => &l.address, failures => l.failures,
                last => when(l.last_failure_ms),
                waits_until => l.waits_until_ms.map(when),
            }
        })
        .collect();
    page(
        web,
        staff,
        status,
        "staff.html",
        context! {
            staff => list.iter().map(|s| staff_value(web, lang, s)).collect::<Vec<_>>(),
            limits => limits,
            all_roles => Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            form => shown.form,
            form_roles => shown.roles,
            errors => shown.errors,
            flash => flash(lang, done),
            error => shown.error,
        },
    )
}

/// `GET /staff`
pub async fn list(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ManageStaff)?;
    render_list(
        &web,
        &staff,
        StatusCode::OK,
        q.done.as_deref(),
        ListShown::default(),
    )
    .await
}

/// Roles ticked on a form (`role` repeated), parsed; an unknown spelling is an error.
fn ticked_roles(form: &[(String, String)]) -> Result<Vec<Role>, FieldError> {
    form.iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| {
            v.parse::<Role>()
                .map_err(|_| form_error("roles", "unknown_role", "form.choose_role"))
        })
        .collect()
}

fn get<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// `POST /staff`: creates an account.
pub async fn create(
    State(web): State<Web>,
    staff: Staff,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    staff.check_csrf(get(&form, "csrf"))?;
    staff.require(Capability::ManageStaff)?;
    let lang = staff.lang();
    let typed = CreateForm {
        csrf: String::new(),
        username: get(&form, "username").trim().to_string(),
        full_name: get(&form, "full_name").to_string(),
        password: String::new(),
        language: get(&form, "language").to_string(),
    };
    let result = match ticked_roles(&form) {
        Ok(roles) => {
            let input = NewStaff {
                username: typed.username.clone(),
                full_name: typed.full_name.clone(),
                password: get(&form, "password").to_string(),
                roles,
                language: Some(if typed.language == "en" { "en" } else { "ar" }.to_string()),
            };
            web.app.create_staff(&staff.actor, input).await
        }
        Err(e) => Err(AppError::Invalid(vec![e])),
    };
    let roles: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.clone())
        .collect();
    match result {
        Ok(s) => Ok(Redirect::to(&format!(
            "/staff/{}?done=staff_created",
            urlencode(&s.username)
        ))
        .into_response()),
        Err(AppError::Invalid(errs)) => {
            let shown = ListShown {
                form: Value::from_serialize(&typed),
                roles,
                errors: field_errors(lang, &errs),
                error: Some(super::i18n::t(lang, "error.invalid").to_string()),
            };
            render_list(&web, &staff, StatusCode::BAD_REQUEST, None, shown).await
        }
        Err(AppError::Conflict { code, .. }) if code == "username_taken" => {
            let errs = vec![form_error("username", code, "staff.username_taken")];
            let shown = ListShown {
                form: Value::from_serialize(&typed),
                roles,
                errors: field_errors(lang, &errs),
                error: Some(super::i18n::t(lang, "error.invalid").to_string()),
            };
            render_list(&web, &staff, StatusCode::CONFLICT, None, shown).await
        }
        Err(e) => Err(PageError::app(e, lang)),
    }
}

/// Which form of the member page failed, with its errors.
#[derive(Default)]
struct MemberShown {
    errors: Vec<FieldError>,
    error: Option<String>,
}

async fn render_member(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    username: &str,
    done: Option<&str>,
    shown: MemberShown,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let member = web
        .app
        .get_staff(username)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    page(
        web,
        staff,
        status,
        "staff_member.html",
        context! {
            member => staff_value(web, lang, &member),
            myself => member.username == staff.actor.username,
            all_roles => Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            authorities => authorities(lang),
            errors => field_errors(lang, &shown.errors),
            flash => flash(lang, done),
            error => shown.error,
        },
    )
}

/// `GET /staff/{username}`
pub async fn member(
    State(web): State<Web>,
    staff: Staff,
    Path(username): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ManageStaff)?;
    render_member(
        &web,
        &staff,
        StatusCode::OK,
        &username,
        q.done.as_deref(),
        MemberShown::default(),
    )
    .await
}

/// `POST /staff/{username}/{action}`: roles, grant, revoke, active, password.
pub async fn action(
    State(web): State<Web>,
    staff: Staff,
    Path((username, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    staff.check_csrf(get(&form, "csrf"))?;
    staff.require(Capability::ManageStaff)?;
    let lang = staff.lang();
    let app = &web.app;
    let a = &staff.actor;
    let result: Result<&str, AppError> = match action.as_str() {
        "roles" => match ticked_roles(&form) {
            Ok(roles) => app
                .set_roles(a, &username, SetRoles { roles })
                .await
                .map(|_| "roles_saved"),
            Err(e) => Err(AppError::Invalid(vec![e])),
        },
        "grant" => {
            let authority = get(&form, "authority").parse::<Authority>();
            let expires_on = get(&form, "expires_on").trim().parse::<jiff::civil::Date>();
            match (authority, expires_on) {
                (Ok(authority), Ok(expires_on)) => app
                    .grant_permission(
                        a,
                        &username,
                        Grant {
                            authority,
                            expires_on,
                        },
                    )
                    .await
                    .map(|_| "granted"),
                (Err(e), _) => Err(AppError::Invalid(vec![e])),
                (_, Err(_)) => Err(AppError::Invalid(vec![form_error(
                    "expires_on",
                    "invalid_date",
                    "form.date_format",
                )])),
            }
        }
        "revoke" => match get(&form, "authority").parse::<Authority>() {
            Ok(authority) => app
                .revoke_permission(a, &username, authority)
                .await
                .map(|_| "revoked"),
            Err(e) => Err(AppError::Invalid(vec![e])),
        },
        "active" => {
            let active = get(&form, "active") == "true";
            app.set_active(a, &username, active)
                .await
                .map(|_| if active { "activated" } else { "deactivated" })
        }
        "password" => app
            .reset_password(
                a,
                &username,
                ResetPassword {
                    password: get(&form, "password").to_string(),
                },
            )
            .await
            .map(|_| "password_reset"),
        _ => return Err(PageError::NotFound { lang }),
    };
    match result {
        Ok(done) => Ok(
            Redirect::to(&format!("/staff/{}?done={done}", urlencode(&username))).into_response(),
        ),
        Err(AppError::Invalid(errs)) => {
            let shown = MemberShown {
                errors: errs,
                error: Some(super::i18n::t(lang, "error.invalid").to_string()),
            };
            render_member(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &username,
                None,
                shown,
            )
            .await
        }
        Err(e @ AppError::NotFound { .. }) => Err(PageError::app(e, lang)),
        Err(e) => {
            let shown = MemberShown {
                errors: Vec::new(),
                error: Some(error_message(lang, &e)),
            };
            render_member(&web, &staff, status_of(&e), &username, None, shown).await
        }
    }
}

/// `POST /login-limits/clear`: clears one (username, address) login limit, so that user
/// can log in from that address at once.
pub async fn clear_limit(
    State(web): State<Web>,
    staff: Staff,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    staff.check_csrf(get(&form, "csrf"))?;
    staff.require(Capability::ManageStaff)?;
    let lang = staff.lang();
    let address = get(&form, "address").trim();
    web.app
        .clear_login_limit(
            &staff.actor,
            get(&form, "username").trim(),
            (!address.is_empty()).then_some(address),
        )
        .await
        .map_err(|e| PageError::app(e, lang))?;
    Ok(Redirect::to("/staff?done=limit_cleared").into_response())
}

/// `GET /account/password`: any logged-in user.
pub async fn password_form(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    page(
        &web,
        &staff,
        StatusCode::OK,
        "password.html",
        context! { errors => Value::from(()), flash => flash(lang, q.done.as_deref()) },
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

/// `POST /account/password`: changes the user's own password; other sessions end.
pub async fn change_password(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let result = if f.new_password != f.new_password_again {
        Err(AppError::Invalid(vec![form_error(
            "new_password_again",
            "mismatch",
            "account.mismatch",
        )]))
    } else {
        web.app
            .change_own_password(
                &staff.actor,
                &staff.token,
                ChangePassword {
                    current_password: f.current_password,
                    new_password: f.new_password,
                },
            )
            .await
    };
    match result {
        Ok(()) => Ok(Redirect::to("/account/password?done=password_changed").into_response()),
        Err(e) => {
            let (errors, error) = match &e {
                AppError::Invalid(errs) => (
                    field_errors(lang, errs),
                    super::i18n::t(lang, "error.invalid").to_string(),
                ),
                other => (Value::from(()), error_message(lang, other)),
            };
            page(
                &web,
                &staff,
                status_of(&e),
                "password.html",
                context! { errors => errors, error => error },
            )
        }
    }
}
