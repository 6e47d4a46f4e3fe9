//! The staff and permissions page: every staff member of every center (accounts made at
//! a center included, once it has synced), with the hub's decisions — grant a permission
//! per authority until a date, revoke it, deactivate or reactivate an account (the
//! hub's own switch, `hub_active`, which a center cannot lift). Each change is written
//! to the staff document (routed to the center) and audited with the member before and
//! after. Who owns which field: docs/PROTOCOL.md, "Staff accounts".

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use markaz_sync::model::catalog::Authority;
use minijinja::{Value, context};
use serde::Deserialize;

use super::access::Caller;
use super::api::{load_centers, staff_change};
use super::conflicts::refusal;
use super::data::{self, DataError, center_of, today};
use super::pages::{failed, field, flash, form, page};
use super::{ApiError, Q, WebState};
use crate::portal::{self, Grant, PortalError};

#[derive(Debug, Default, Deserialize)]
pub(super) struct StaffPageQuery {
    center: Option<String>,
    done: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// `GET /staff?center=`
pub(super) async fn list(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Q(q): Q<StaffPageQuery>,
) -> Response {
    let flash = flash(caller.lang, q.done.as_deref());
    list_page(&s, &caller, q.center, StatusCode::OK, flash, None).await
}

async fn list_page(
    s: &WebState,
    caller: &Caller,
    center: Option<String>,
    status: StatusCode,
    flash: Option<String>,
    error: Option<String>,
) -> Response {
    let centers: Vec<String> = match load_centers(s).await {
        Ok(c) => c.into_iter().map(|c| c.center).collect(),
        Err(e) => return failed(caller, e),
    };
    let chosen = center
        .filter(|c| !c.is_empty())
        .and_then(|c| center_of(&c).ok());
    let want = chosen.clone();
    let rows = match s
        .writer
        .run(move |e| portal::list_staff(e, want.as_ref(), today()))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(caller, e.into()),
        Err(e) => return failed(caller, e.into()),
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let permissions: Vec<Value> = r
                .permissions
                .iter()
                .map(|p| {
                    context! {
                        authority => p.authority.as_str(),
                        expires_on => p.expires_on.map(|d| d.to_string()),
                        expired => p.expired, by => p.by,
                    }
                })
                .collect();
            context! {
                center => r.center, username => r.username, full_name => r.full_name,
                roles => r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                active => r.active, center_active => r.center_active,
                hub_active => r.hub_active, has_password => r.has_password,
                permissions => permissions,
            }
        })
        .collect();
    let path = match &chosen {
        Some(c) => format!("/staff?center={c}"),
        None => "/staff".into(),
    };
    page(
        caller,
        &path,
        status,
        "staff.html",
        context! {
            rows => rows, centers => centers,
            chosen => chosen.map(|c| c.to_string()),
            authorities => Authority::ALL.map(Authority::as_str),
            today => today().to_string(),
            flash => flash, error => error,
        },
    )
}

/// Back to the list (of the member's center), or the list again with the refusal.
async fn answer(
    s: &WebState,
    caller: &Caller,
    center: String,
    done: &str,
    result: Result<(), DataError>,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!(
            "/staff?center={}&done={done}",
            markaz_web::http::urlencode(&center)
        ))
        .into_response(),
        Err(e) => match refusal(caller, e) {
            Ok((status, msg)) => list_page(s, caller, Some(center), status, None, Some(msg)).await,
            Err(resp) => resp,
        },
    }
}

fn authority_of(v: &str) -> Result<Authority, DataError> {
    v.parse()
        .map_err(|e: markaz_sync::model::catalog::FieldError| {
            DataError::Api(ApiError::Portal(PortalError::Invalid {
                field: "authority".into(),
                message: e.to_string(),
            }))
        })
}

/// `POST /staff/{center}/{username}/grant`: `authority` and `expires_on` (a date).
pub(super) async fn grant(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let result = async {
        let c = center_of(&center)?;
        let authority = authority_of(&field(&pairs, "authority"))?;
        let expires_on: jiff::civil::Date =
            field(&pairs, "expires_on")
                .parse()
                .map_err(|e: jiff::Error| {
                    DataError::Api(ApiError::Portal(PortalError::Invalid {
                        field: "expires_on".into(),
                        message: e.to_string(),
                    }))
                })?;
        let g = Grant {
            authority,
            expires_on,
        };
        let who = caller.who();
        s.writer
            .run(move |e| {
                staff_change(e, &who, "staff.grant", &c, &username, &mut |e| {
                    portal::grant(e, &c, &username, &g)
                })
            })
            .await??;
        Ok::<(), DataError>(())
    }
    .await;
    answer(&s, &caller, center, "permission_granted", result).await
}

/// `POST /staff/{center}/{username}/revoke`: `authority`.
pub(super) async fn revoke(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let result = async {
        let c = center_of(&center)?;
        let authority = authority_of(&field(&pairs, "authority"))?;
        let who = caller.who();
        s.writer
            .run(move |e| {
                staff_change(e, &who, "staff.revoke", &c, &username, &mut |e| {
                    portal::revoke(e, &c, &username, authority)
                })
            })
            .await??;
        Ok::<(), DataError>(())
    }
    .await;
    answer(&s, &caller, center, "permission_revoked", result).await
}

/// `POST /staff/{center}/{username}/active`: `active` = `1` (reactivate) or `0`.
pub(super) async fn set_active(
    State(s): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((center, username)): Path<(String, String)>,
    req: Request,
) -> Response {
    let pairs = form(req).await;
    let active = field(&pairs, "active") == "1";
    let result = data::set_active(&s, &caller, &center, username, active)
        .await
        .map(|_| ());
    let done = if active {
        "staff_activated"
    } else {
        "staff_deactivated"
    };
    answer(&s, &caller, center, done, result).await
}
