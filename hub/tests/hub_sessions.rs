//! One sync-log row per session: requests carrying `X-Markaz-Session` are summed into
//! their session (bytes, changes, uplink path, skew), two sessions of one center are two
//! rows whose bytes equal the per-request sums, requests are still listed one by one and
//! filtered by session, a failing last request ends its session with the error, and the
//! centers overview reads the sessions. The sync router is driven in-process with the
//! center identity the TLS layer would have put on the request. Every test body runs on
//! both engines (SQLite, and PostgreSQL with a pool of workers when the test cluster is
//! available).

use std::net::SocketAddr;

use anyhow::Context;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use markaz_hub::pki::Serial;
use markaz_hub::storage::{HubDb, HubWriter, PgSettings};
use markaz_hub::tls::CenterIdentity;
use markaz_hub::{endpoint, operators, web};
use markaz_sync::protocol::{ErrorCode, Request, Response};
use serde_json::Value;
use tower::ServiceExt;

struct Rig {
    _dir: tempfile::TempDir,
    /// A network operator's API token.
    token: String,
    sync: axum::Router,
    web: axum::Router,
}

impl Rig {
    async fn sqlite() -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir()?;
        let writer = HubWriter::spawn(HubDb::open(dir.path())?)?;
        Self::on(writer, dir).await
    }

    /// On a fresh PostgreSQL database, three workers; `None` (printed) when PostgreSQL is
    /// not available and CI is not set.
    async fn pg(test: &str) -> anyhow::Result<Option<Rig>> {
        let Some(cluster) = markaz_e2e::pg::cluster_or_skip(test) else {
            return Ok(None);
        };
        let settings = PgSettings {
            url: cluster.fresh_db()?.try_into()?,
            password: None,
            pool_size: 3,
            tls: markaz_hub::storage::pg::PgTls::Off,
        };
        // The blocking client runs its own runtime: off the test's.
        let pool =
            tokio::task::spawn_blocking(move || markaz_hub::storage::pg::open_pool(&settings))
                .await??;
        let writer = HubWriter::spawn_pool(pool)?;
        Ok(Some(Self::on(writer, tempfile::tempdir()?).await?))
    }

    /// The routers on `writer`, with a network operator and an API token of theirs.
    async fn on(writer: HubWriter, dir: tempfile::TempDir) -> anyhow::Result<Rig> {
        let token = markaz_web::password::new_token();
        let hash = markaz_web::password::token_hash(&token);
        writer
            .run(move |e| -> anyhow::Result<()> {
                let who = operators::Who {
                    operator: "cli".into(),
                    address: "local".into(),
                    at_ms: 0,
                };
                let new = operators::NewOperator {
                    username: "watcher".into(),
                    full_name: String::new(),
                    roles: vec![operators::Role::Network],
                    language: "ar".into(),
                };
                operators::create(e, &new, "x".into(), &who)?;
                operators::add_token(e, "watcher", "", &hash, &who)?;
                Ok(())
            })
            .await??;
        Ok(Rig {
            sync: endpoint::router(writer.clone(), 1 << 20),
            web: web::router(web::WebState::new(writer, web::WebOptions::default())),
            token,
            _dir: dir,
        })
    }

    /// One sync request from `center`; returns (bytes sent, bytes received, response).
    async fn send(
        &self,
        center: &str,
        session: Option<&str>,
        uplink: &str,
        req: &Request,
    ) -> anyhow::Result<(usize, usize, Response)> {
        let body = req.encode();
        let sent = body.len();
        let mut r = HttpRequest::post(markaz_sync::protocol::contract::SYNC_PATH)
            .header(markaz_sync::protocol::contract::UPLINK_HEADER, uplink);
        if let Some(s) = session {
            r = r.header(markaz_sync::protocol::contract::SESSION_HEADER, s);
        }
        let mut r = r.body(Body::from(body))?;
        r.extensions_mut().insert(CenterIdentity {
            center_id: center.parse()?,
            serial: Serial::random(),
        });
        let resp = self.sync.clone().oneshot(r).await?;
        anyhow::ensure!(resp.status() == StatusCode::OK, "{}", resp.status());
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((sent, bytes.len(), Response::decode(&bytes)?))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut r = HttpRequest::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())?;
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let resp = self.web.clone().oneshot(r).await?;
        anyhow::ensure!(resp.status() == StatusCode::OK, "{path}: {}", resp.status());
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn status_and_json(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let mut r = HttpRequest::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())?;
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let resp = self.web.clone().oneshot(r).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes)?))
    }

    async fn page(&self, path: &str) -> anyhow::Result<String> {
        let mut r = HttpRequest::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())?;
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let resp = self.web.clone().oneshot(r).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec())?)
    }
}

fn hello(center: &str, wall_ms: u64) -> Request {
    Request::Hello {
        center: center.into(),
        actor: "0a0b0c0d".into(),
        epoch_seen: None,
        hlc: "0000000000001.00000.x".into(),
        wall_ms,
        done_at: None,
    }
}

fn pull(cursor: u64) -> Request {
    Request::Pull {
        cursor,
        max_bytes: 64 * 1024,
    }
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

const S1: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
const S2: &str = "9f0c2a4e-7d1b-4c3e-a5f6-112233445566";

#[tokio::test]
async fn two_sessions_of_one_center_are_two_rows_with_summed_bytes() -> anyhow::Result<()> {
    two_sessions_are_two_rows(Rig::sqlite().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_sessions_of_one_center_are_two_rows_with_summed_bytes()
-> anyhow::Result<()> {
    let Some(rig) = Rig::pg("on_postgres_two_sessions_of_one_center_are_two_rows").await? else {
        return Ok(());
    };
    two_sessions_are_two_rows(rig).await
}

async fn two_sessions_are_two_rows(rig: Rig) -> anyhow::Result<()> {
    let mut sent = [0usize; 2];
    let mut got = [0usize; 2];
    // Session 1 starts on the primary link and fails over to the modem.
    let (u, d, r) = rig
        .send(
            "midan",
            Some(S1),
            "primary",
            &hello("midan", now_ms() - 1500),
        )
        .await?;
    assert!(matches!(r, Response::Welcome { .. }), "{r:?}");
    sent[0] += u;
    got[0] += d;
    let mut cursor = 0;
    loop {
        let (u, d, r) = rig.send("midan", Some(S1), "modem", &pull(cursor)).await?;
        sent[0] += u;
        got[0] += d;
        match r {
            Response::PullBatch {
                next_cursor, more, ..
            } => {
                cursor = next_cursor;
                if !more {
                    break;
                }
            }
            other => anyhow::bail!("{other:?}"),
        }
    }
    // Session 2 on the modem only: open after its Hello, ended by its last pull.
    let (u, d, _) = rig
        .send("midan", Some(S2), "modem", &hello("midan", now_ms()))
        .await?;
    sent[1] += u;
    got[1] += d;
    let open = rig.get("/api/v1/sync-log?center=midan").await?;
    assert_eq!(open[0]["result"], "open", "{open}");
    assert_eq!(open[0]["ended_ms"], Value::Null);
    let (u, d, _) = rig.send("midan", Some(S2), "modem", &pull(cursor)).await?;
    sent[1] += u;
    got[1] += d;
    // Another center's session stays out of midan's rows.
    rig.send("qanawat", Some(S1), "primary", &hello("qanawat", now_ms()))
        .await?;

    let sessions = rig.get("/api/v1/sync-log?center=midan").await?;
    let sessions = sessions.as_array().context("list")?;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (second, first) = (&sessions[0], &sessions[1]);
    assert_eq!(first["session"], S1);
    assert_eq!(second["session"], S2);
    assert_eq!(first["uplink"], "primary→modem");
    assert_eq!(second["uplink"], "modem");
    assert_eq!(first["bytes_up"], sent[0] as i64);
    assert_eq!(first["bytes_down"], got[0] as i64);
    assert_eq!(second["bytes_up"], sent[1] as i64);
    assert_eq!(second["bytes_down"], got[1] as i64);
    assert!(
        first["docs_down"].as_i64().unwrap_or(0) > 0,
        "the catalog came down"
    );
    assert_eq!(first["result"], "ok");
    assert_eq!(second["result"], "ok", "its last pull caught the center up");
    let skew = first["skew_ms"].as_i64().context("skew")?;
    assert!(
        (1400..60_000).contains(&skew),
        "skew from the Hello: {skew}"
    );

    // The per-request rows are kept and add up to the session.
    let id = first["id"].as_i64().context("id")?;
    let reqs = rig
        .get(&format!("/api/v1/sync-log/requests?session={id}"))
        .await?;
    let reqs = reqs.as_array().context("requests")?;
    assert_eq!(reqs.len() as i64, first["requests"].as_i64().unwrap_or(-1));
    let sum = |k: &str| reqs.iter().map(|r| r[k].as_i64().unwrap_or(0)).sum::<i64>();
    assert_eq!(sum("bytes_up"), sent[0] as i64);
    assert_eq!(sum("bytes_down"), got[0] as i64);
    assert_eq!(sum("docs_down"), first["docs_down"].as_i64().unwrap_or(-1));
    assert!(reqs.iter().all(|r| r["session"] == S1));

    // A failing last request ends the session with its error: a Hello naming another
    // center than the certificate is refused.
    let (_, _, r) = rig
        .send("midan", Some(S2), "modem", &hello("qanawat", now_ms()))
        .await?;
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
    let sessions = rig.get("/api/v1/sync-log?center=midan").await?;
    let s2 = &sessions[0];
    assert_eq!(
        (s2["requests"].as_i64(), s2["errors"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(s2["result"], "error");
    assert!(
        s2["error"]
            .as_str()
            .unwrap_or("")
            .contains(ErrorCode::WrongCenter.as_str()),
        "{s2}"
    );
    assert!(s2["ended_ms"].as_i64().is_some());

    // The overview reads the sessions; the pages list them with a link to the requests.
    let centers = rig.get("/api/v1/centers").await?;
    let midan = centers
        .as_array()
        .and_then(|c| c.iter().find(|r| r["center"] == "midan"))
        .context("midan row")?;
    assert_eq!(midan["sessions"], 2);
    assert_eq!(midan["uplink"], "modem");
    assert!(midan["last_sync_ms"].as_i64().is_some());
    let html = rig.page("/sync-log?center=midan").await?;
    assert!(html.contains("lang=\"ar\""));
    assert!(html.contains(&format!("/sync-log/requests?session={id}")));
    assert!(html.contains("primary→modem"));
    let html = rig
        .page(&format!("/sync-log/requests?session={id}&lang=en"))
        .await?;
    assert!(html.contains("Sync requests") && html.contains("hello"));
    Ok(())
}

#[tokio::test]
async fn without_the_header_each_hello_opens_a_session() -> anyhow::Result<()> {
    each_hello_opens_a_session(Rig::sqlite().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_without_the_header_each_hello_opens_a_session() -> anyhow::Result<()> {
    let Some(rig) = Rig::pg("on_postgres_without_the_header_each_hello_opens_a_session").await?
    else {
        return Ok(());
    };
    each_hello_opens_a_session(rig).await
}

async fn each_hello_opens_a_session(rig: Rig) -> anyhow::Result<()> {
    for _ in 0..2 {
        rig.send("midan", None, "primary", &hello("midan", now_ms()))
            .await?;
        rig.send("midan", None, "primary", &pull(0)).await?;
    }
    // A header that is not a UUID v4 counts as no header.
    rig.send("midan", Some("not-a-uuid"), "bogus", &pull(0))
        .await?;
    let sessions = rig.get("/api/v1/sync-log?center=midan").await?;
    let sessions = sessions.as_array().context("list")?;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0]["requests"], 3);
    assert_eq!(sessions[0]["uplink"], "primary→unknown");
    assert_eq!(sessions[1]["requests"], 2);
    assert!(
        sessions
            .iter()
            .all(|s| s["session"].as_str().unwrap_or("").starts_with("auto:"))
    );
    // A bad filter is refused in the API's error format.
    let (status, body) = rig
        .status_and_json("/api/v1/sync-log/requests?session=abc")
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_query");
    Ok(())
}
