//! The operator router in process, the way the hub's page and API tests drive it: a
//! fresh hub database with one operator per role (`op-<role>`, password [`PASSWORD`],
//! one API token each), and requests sent from a chosen client address, as the
//! listener would give it.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use markaz_hub::operators::{self, NewOperator, Role, Who};
use markaz_hub::storage::{HubDb, HubWriter};
use markaz_hub::web::{self, WebOptions, WebState};
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery";

pub struct Rig {
    pub _dir: tempfile::TempDir,
    pub router: axum::Router,
    /// An API token per role, by role.
    pub tokens: Vec<(Role, String)>,
}

pub fn who() -> Who {
    Who {
        operator: "cli".into(),
        address: "local".into(),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

impl Rig {
    pub fn new(options: WebOptions, setup: impl FnOnce(&mut HubDb)) -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir()?;
        let mut db = HubDb::open(dir.path())?;
        let hash = markaz_web::password::hash_password(PASSWORD)?;
        let mut tokens = Vec::new();
        for role in Role::ALL {
            let name = format!("op-{role}");
            let new = NewOperator {
                username: name.clone(),
                full_name: format!("Operator {role}"),
                roles: vec![role],
                language: "ar".into(),
            };
            operators::create(&mut db, &new, hash.clone(), &who())?;
            let token = markaz_web::password::new_token();
            operators::add_token(
                &mut db,
                &name,
                "tests",
                &markaz_web::password::token_hash(&token),
                &who(),
            )?;
            tokens.push((role, token));
        }
        setup(&mut db);
        let writer = HubWriter::spawn(db)?;
        Ok(Rig {
            _dir: dir,
            router: web::router(WebState::new(writer, options)),
            tokens,
        })
    }

    pub fn token(&self, role: Role) -> &str {
        &self
            .tokens
            .iter()
            .find(|(r, _)| *r == role)
            .expect("role")
            .1
    }

    /// One request from `from`: (status, headers, body).
    pub async fn send(
        &self,
        from: [u8; 4],
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, axum::http::HeaderMap, String)> {
        let mut r = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut r = r.body(body.map(Body::from).unwrap_or_else(Body::empty))?;
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((from, 4000))));
        let resp = self.router.clone().oneshot(r).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }
}
