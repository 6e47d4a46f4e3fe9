//! A real node in-process: a temp SQLite file, the real router on a loopback port, real
//! HTTP with reqwest, and a manual clock the test can move.

#![allow(dead_code)]

use std::time::Duration;

use markaz_node::app::{App, Clock};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestNode {
    pub app: App,
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// 2026-11-29 09:00 in Damascus (+03:00).
pub fn morning() -> jiff::Timestamp {
    "2026-11-29T06:00:00Z".parse().unwrap()
}

impl TestNode {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut markaz_config::NodeConfig)) -> Self {
        Self::start_clocked(Clock::manual(morning()), tweak).await
    }

    /// A node on `clock` (a stepped clock, say: its wall time can jump).
    pub async fn start_clocked(
        clock: Clock,
        tweak: impl FnOnce(&mut markaz_config::NodeConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = markaz_config::NodeConfig::default();
        cfg.storage.data_dir = dir.path().join("data");
        cfg.auth.initial_admin_password = Some(ADMIN_PASSWORD.into());
        cfg.server.max_body_bytes = 16 * 1024;
        tweak(&mut cfg);
        let app = markaz_node::center::open(&cfg, clock).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = markaz_node::server::router(
            app.clone(),
            cfg.server.max_body_bytes as usize,
            Duration::from_secs(30),
        );
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .unwrap();
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            app,
            base,
            dir,
            shutdown,
            http,
        }
    }

    pub fn advance(&self, by: Duration) {
        self.app.clock.advance(by);
    }

    pub async fn login(&self, user: &str, password: &str) -> Client {
        let (status, body) = self
            .raw(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": user, "password": password, "terminal": "desk-1"})),
            )
            .await;
        assert_eq!(status, 200, "login of {user}: {body}");
        Client {
            node_base: self.base.clone(),
            token: body["token"].as_str().unwrap().to_string(),
            http: self.http.clone(),
        }
    }

    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// A request with an optional bearer token; returns status and JSON (or Null).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a staff member with roles and permissions (authority, expires_on) and logs in.
    pub async fn staff(
        &self,
        username: &str,
        roles: &[&str],
        permissions: &[(&str, &str)],
    ) -> Client {
        let admin = self.admin().await;
        let (s, b) = admin
            .post("/staff", json!({"username": username, "full_name": format!("Staff {username}"), "password": "a-long-password", "roles": roles}))
            .await;
        assert_eq!(s, 201, "{b}");
        for (authority, expires) in permissions {
            let (s, b) = admin
                .post(
                    &format!("/staff/{username}/permissions"),
                    json!({"authority": authority, "expires_on": expires}),
                )
                .await;
            assert_eq!(s, 200, "{b}");
        }
        self.login(username, "a-long-password").await
    }
}

#[derive(Clone)]
pub struct Client {
    node_base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/api/v1{path}", self.node_base),
            )
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }
}

/// A valid citizen profile (Damascus national id).
pub fn citizen(nid: &str) -> Value {
    json!({
        "national_id": nid,
        "full_name": "أحمد محمد الخطيب",
        "father_name": "محمد",
        "mother_name": "فاطمة",
        "birth_date": "1980-05-17",
        "birth_place": "دمشق",
        "phone": "0944123456",
        "address": "دمشق - الميدان - شارع الجزماتية"
    })
}

/// A browser-like client of the pages: a session cookie and a language cookie, the CSRF
/// token read from a page, redirects not followed (each test checks where they lead).
pub struct Pages {
    pub base: String,
    http: reqwest::Client,
    pub cookie: String,
}

impl Pages {
    pub async fn login(node: &TestNode, user: &str, password: &str) -> Pages {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(format!("{}/login", node.base))
            .form(&[
                ("username", user),
                ("password", password),
                ("terminal", "desk-1"),
                ("next", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login of {user}");
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("markaz_session="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .expect("session cookie");
        Pages {
            base: node.base.clone(),
            http,
            cookie,
        }
    }

    /// (status, content type, body bytes) of a page in `lang` (`ar` or `en`).
    pub async fn get_raw(&self, path: &str, lang: &str) -> (u16, String, Vec<u8>) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("{}; markaz_lang={lang}", self.cookie))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ct, resp.bytes().await.unwrap().to_vec())
    }

    /// (status, body) of a page in `lang`.
    pub async fn get_in(&self, path: &str, lang: &str) -> (u16, String) {
        let (s, _, b) = self.get_raw(path, lang).await;
        (s, String::from_utf8(b).unwrap())
    }

    /// (status, body) of a page in Arabic.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_in(path, "ar").await
    }

    pub async fn csrf(&self) -> String {
        let (_, html) = self.get("/account/password").await;
        let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
        html[at..].split('"').next().unwrap().to_string()
    }

    /// POSTs a form (the CSRF token is added); (status, Location or body).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        self.post_in(path, fields, "ar").await
    }

    pub async fn post_in(&self, path: &str, fields: &[(&str, &str)], lang: &str) -> (u16, String) {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("{}; markaz_lang={lang}", self.cookie))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status == 303 {
            let to = resp.headers()["location"].to_str().unwrap().to_string();
            return (status, to);
        }
        (status, resp.text().await.unwrap())
    }
}
