//! Operators at the hub, driven through the operator router in-process (the layer sees
//! the client address the listener would give it): every route × every role is allowed
//! or refused as `web::ACCESS` says; a browser logs in, gets a session cookie, cannot
//! change anything without the session's CSRF token, and logs out; wrong passwords
//! from one address do not keep the operator out from another; API tokens act with their
//! operator's roles and the old shared token only when configured; every change is in the
//! audit log with its operator, address and values before and after; a silent center
//! stands out on the overview and in `/api/v1/alerts`; markup typed by an operator comes
//! out escaped.

use crate::rig;

use axum::http::{Method, StatusCode, header};
use markaz_hub::operators::{self, NewOperator, Role};
use markaz_hub::storage::{Operators, SyncLog, SyncLogEntry};
use markaz_hub::web::{self, ACCESS, Need, WebOptions};
use markaz_sync::protocol::contract::{RequestKind, SessionResult};
use rig::{PASSWORD, Rig, who};
use serde_json::{Value, json};

impl Rig {
    async fn bearer(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let auth = format!("Bearer {token}");
        let (s, _, b) = self
            .send(
                [127, 0, 0, 1],
                method,
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.map(|v| v.to_string()),
            )
            .await?;
        Ok((s, b))
    }

    /// Logs in from `from` through the form; the session cookie on success.
    async fn login(
        &self,
        from: [u8; 4],
        user: &str,
        password: &str,
    ) -> anyhow::Result<(StatusCode, Option<String>)> {
        let body = format!(
            "username={user}&password={}&next=%2F",
            password.replace(' ', "+")
        );
        let (s, h, _) = self
            .send(
                from,
                Method::POST,
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(body),
            )
            .await?;
        let cookie = h
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(web::SESSION_COOKIE))
            .map(|c| c.split(';').next().unwrap_or("").to_string());
        Ok((s, cookie))
    }
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{center}", "midan")
        .replace("{username}", "op-network")
        .replace("{code}", "civil_birth")
        .replace("{authority}", "justice")
        .replace("{id}", "999")
}

#[tokio::test]
async fn every_route_refuses_exactly_the_roles_its_row_does_not_name() -> anyhow::Result<()> {
    let rig = Rig::new(WebOptions::default(), |_| {})?;
    let mut checked = 0;
    for (method, pattern, need) in ACCESS {
        let path = concrete(pattern);
        let method: Method = method.parse()?;
        // Without any credential: nothing but the public routes.
        let (status, headers, _) = rig
            .send([127, 0, 0, 1], method.clone(), &path, &[], None)
            .await?;
        if *need == Need::Public {
            continue;
        }
        if path.starts_with("/api/") {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::SEE_OTHER,
                "{method} {path} without a session"
            );
            let to = headers[header::LOCATION].to_str()?;
            assert!(to.starts_with("/login?next="), "{to}");
        }
        for role in Role::ALL {
            // Changes go through the API with a token (no CSRF); pages too.
            let body = (method != Method::GET).then(|| json!({}));
            let (status, body) = rig
                .bearer(rig.token(role), method.clone(), &path, body)
                .await?;
            let allowed = match need {
                Need::Public | Need::Operator => true,
                Need::Any(roles) => role == Role::Admin || roles.contains(&role),
            };
            if allowed {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} may {method} {path}: {body}"
                );
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{role} {method} {path}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} must be refused {method} {path}: {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
    Ok(())
}

#[tokio::test]
async fn a_browser_logs_in_needs_csrf_for_changes_and_logs_out() -> anyhow::Result<()> {
    let rig = Rig::new(WebOptions::default(), |_| {})?;
    let from = [10, 0, 0, 7];
    let (status, cookie) = rig.login(from, "op-admin", "wrong password!").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    let (status, cookie) = rig.login(from, "op-admin", PASSWORD).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a session cookie");

    // The overview, Arabic first, with the session's CSRF token in its forms.
    let (status, headers, html) = rig
        .send(from, Method::GET, "/centers", &[("cookie", &cookie)], None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""), "{html}");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str()?;
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string();

    // A change without the token is refused, with it accepted.
    let form = "username=amal&full_name=%3Cscript%3Ealert(1)%3C%2Fscript%3E&role=network&password=long+enough+pw";
    let (status, _, _) = rig
        .send(
            from,
            Method::POST,
            "/operators",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(form.to_string()),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, headers, _) = rig
        .send(
            from,
            Method::POST,
            "/operators",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(format!("csrf={csrf}&{form}")),
        )
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/operators?done=operator_added");

    // The name typed by the operator is escaped on the page.
    let (_, _, html) = rig
        .send(
            from,
            Method::GET,
            "/operators",
            &[("cookie", &cookie)],
            None,
        )
        .await?;
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(!html.contains("<script>alert(1)"));

    // The audit log names who, from where, and what.
    let (status, body) = rig
        .bearer(
            rig.token(Role::Oversight),
            Method::GET,
            "/api/v1/audit?kind=operator.create",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<Value> = serde_json::from_str(&body)?;
    let e = entries
        .iter()
        .find(|e| e["target"] == "amal")
        .expect("the creation is audited");
    assert_eq!(e["operator"], "op-admin");
    assert_eq!(e["address"], "10.0.0.7");
    assert_eq!(e["after"]["roles"], json!(["network"]));

    // Logging out ends the session.
    let (status, _, _) = rig
        .send(
            from,
            Method::POST,
            "/logout",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(format!("csrf={csrf}")),
        )
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = rig
        .send(from, Method::GET, "/centers", &[("cookie", &cookie)], None)
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER, "back to the login page");
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_keep_the_operator_out_from_another()
-> anyhow::Result<()> {
    let rig = Rig::new(WebOptions::default(), |_| {})?;
    let attacker = [10, 0, 0, 66];
    for _ in 0..5 {
        let (status, _) = rig.login(attacker, "op-admin", "guess guess guess").await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = rig.login(attacker, "op-admin", PASSWORD).await?;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address waits, even with the right password"
    );
    let (status, cookie) = rig.login([10, 0, 0, 7], "op-admin", PASSWORD).await?;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the operator's own machine is not held"
    );
    assert!(cookie.is_some());

    // An administrator sees the limit and clears it.
    let admin = rig.token(Role::Admin);
    let (_, body) = rig
        .bearer(admin, Method::GET, "/api/v1/login-limits", None)
        .await?;
    let limits: Vec<Value> = serde_json::from_str(&body)?;
    assert!(
        limits
            .iter()
            .any(|l| l["address"] == "10.0.0.66" && l["waits_until_ms"].as_i64().is_some()),
        "the attacker's address waits, and the list says until when: {body}"
    );
    let (status, _) = rig
        .bearer(
            admin,
            Method::DELETE,
            "/api/v1/login-limits?username=op-admin&address=10.0.0.66",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = rig.login(attacker, "op-admin", PASSWORD).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn tokens_act_with_their_operators_roles_and_the_shared_token_only_when_configured()
-> anyhow::Result<()> {
    let rig = Rig::new(WebOptions::default(), |_| {})?;
    let (status, body) = rig
        .bearer(rig.token(Role::Network), Method::GET, "/api/v1/me", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["username"],
        "op-network"
    );
    let (status, _) = rig
        .bearer("shared-old-token", Method::GET, "/api/v1/centers", None)
        .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no shared token by default"
    );

    // A token made through the API works, and stops working once revoked.
    let admin = rig.token(Role::Admin);
    let (status, body) = rig
        .bearer(
            admin,
            Method::POST,
            "/api/v1/operators/op-network/tokens",
            Some(json!({"label": "nightly"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let made: Value = serde_json::from_str(&body)?;
    let token = made["token"].as_str().expect("token").to_string();
    assert_eq!(
        rig.bearer(&token, Method::GET, "/api/v1/centers", None)
            .await?
            .0,
        StatusCode::OK
    );
    let id = made["id"].as_i64().expect("id");
    let (status, _) = rig
        .bearer(admin, Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        rig.bearer(&token, Method::GET, "/api/v1/centers", None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Deactivating an operator ends their tokens' use; the change is audited before/after.
    let (status, _) = rig
        .bearer(
            admin,
            Method::PUT,
            "/api/v1/operators/op-network",
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rig.bearer(rig.token(Role::Network), Method::GET, "/api/v1/me", None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body) = rig
        .bearer(
            admin,
            Method::GET,
            "/api/v1/audit?kind=operator.update",
            None,
        )
        .await?;
    let entries: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(entries[0]["before"]["active"], true);
    assert_eq!(entries[0]["after"]["active"], false);

    let legacy = Rig::new(
        WebOptions {
            legacy_token: Some("shared-old-token".into()),
            ..WebOptions::default()
        },
        |_| {},
    )?;
    assert_eq!(
        legacy
            .bearer("shared-old-token", Method::GET, "/api/v1/operators", None)
            .await?
            .0,
        StatusCode::OK,
        "with hub.legacy_operator_token the old token acts as an administrator"
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_center_stands_out_on_the_overview_and_in_the_alerts() -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let rig = Rig::new(WebOptions::default(), |db| {
        for (center, at) in [("midan", now - 60_000), ("qanawat", now - 3 * 3_600_000)] {
            let entry = SyncLogEntry {
                center: center.into(),
                uplink: "primary".into(),
                kind: RequestKind::Hello,
                started_ms: at,
                ended_ms: at + 100,
                result: SessionResult::Ok,
                ..SyncLogEntry::default()
            };
            db.record_sync(&entry).expect("recorded");
        }
    })?;
    let (status, body) = rig
        .bearer(
            rig.token(Role::Network),
            Method::GET,
            "/api/v1/alerts",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let alerts: Vec<Value> = serde_json::from_str(&body)?;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["center"], "qanawat");
    assert_eq!(alerts[0]["kind"], "silent");

    let (_, html) = rig
        .bearer(
            rig.token(Role::Network),
            Method::GET,
            "/centers?lang=en",
            None,
        )
        .await?;
    assert!(
        html.contains("<tr id=\"center-qanawat\" class=\"attention\">"),
        "{html}"
    );
    assert!(html.contains("<tr id=\"center-midan\">"));
    // Needs attention first.
    assert!(html.find("center-qanawat") < html.find("center-midan"));
    let (_, html) = rig
        .bearer(
            rig.token(Role::Network),
            Method::GET,
            "/centers?attention=1",
            None,
        )
        .await?;
    assert!(html.contains("center-qanawat") && !html.contains("center-midan"));
    let (status, html) = rig
        .bearer(
            rig.token(Role::Network),
            Method::GET,
            "/centers/qanawat",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"sessions\""));
    Ok(())
}

#[tokio::test]
async fn the_sync_log_groups_sessions_with_nothing_new_and_filters_failures() -> anyhow::Result<()>
{
    let now = jiff::Timestamp::now().as_millisecond();
    // Oldest first: three quiet sessions, one that moved changes, two quiet, one failed.
    let plan = [0, 0, 0, 3, 0, 0, -1];
    let rig = Rig::new(WebOptions::default(), |db| {
        for (i, changes) in plan.iter().enumerate() {
            let at = now - (10 - i as i64) * 600_000;
            let entry = SyncLogEntry {
                center: "midan".into(),
                session: Some(format!("00000000-0000-4000-8000-00000000000{i}")),
                uplink: "primary".into(),
                kind: RequestKind::Hello,
                started_ms: at,
                ended_ms: at + 100,
                changes_up: (*changes).max(0),
                result: if *changes < 0 {
                    SessionResult::Error
                } else {
                    SessionResult::Ok
                },
                error: (*changes < 0).then(|| "hub_error: <b>boom</b>".to_string()),
                ..SyncLogEntry::default()
            };
            db.record_sync(&entry).expect("recorded");
        }
    })?;
    let token = rig.token(Role::Network).to_string();
    let (status, html) = rig
        .bearer(&token, Method::GET, "/sync-log?lang=en", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let quiet: Vec<&str> = html
        .match_indices("sessions with nothing new")
        .map(|(i, _)| &html[i.saturating_sub(2)..i])
        .collect();
    assert_eq!(quiet, ["2 ", "3 "], "newest first: {html}");
    assert_eq!(html.matches("<tr id=\"session-").count(), 2, "{html}");
    assert!(html.contains("&lt;b&gt;boom"), "the error is escaped");
    let (_, html) = rig
        .bearer(&token, Method::GET, "/sync-log?failures=1&lang=en", None)
        .await?;
    assert_eq!(html.matches("<tr id=\"session-").count(), 1, "{html}");
    assert!(!html.contains("nothing new"));
    assert!(html.contains("class=\"attention\""));
    Ok(())
}

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Both payloads in every field that reaches a hub page — an operator's name, a token's
/// label, the audit log (kind, center, target, values), a center id, its uplink and
/// error in the sync log, every filter a page echoes, the login form's `next` and
/// username — come out escaped on every page.
#[tokio::test]
async fn markup_in_any_field_comes_out_escaped_on_every_page() -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let rig = Rig::new(WebOptions::default(), |db| {
        for (i, p) in [SCRIPT, IMG].iter().enumerate() {
            let new = NewOperator {
                username: format!("xss-{i}"),
                full_name: (*p).into(),
                roles: vec![Role::Network],
                language: "ar".into(),
            };
            operators::create(db, &new, "x".into(), &who()).expect("operator");
            operators::add_token(db, &new.username, p, &format!("hash-{i}"), &who())
                .expect("token");
            let mut e = who().entry(p, Some(p), p, Some(json!({ "v": p })), Some(json!(p)));
            e.address = (*p).into();
            db.record_audit(&e).expect("audit");
            for center in ["midan", *p] {
                let entry = SyncLogEntry {
                    center: center.into(),
                    session: Some(format!("{p}{i}")),
                    uplink: (*p).into(),
                    kind: RequestKind::Hello,
                    started_ms: now - 3 * 3_600_000,
                    ended_ms: now - 3 * 3_600_000 + 10,
                    result: SessionResult::Error,
                    error: Some((*p).into()),
                    ..SyncLogEntry::default()
                };
                db.record_sync(&entry).expect("sync");
            }
            db.set_login_failures(
                p,
                p,
                markaz_web::login::Failures {
                    count: 3,
                    last_ms: now,
                },
            )
            .expect("limit");
        }
    })?;
    let admin = rig.token(Role::Admin).to_string();
    let query = [
        "center", "operator", "kind", "next", "sort", "session", "done",
    ]
    .iter()
    .map(|k| format!("{k}={}", urlenc(&format!("{SCRIPT}{IMG}"))))
    .collect::<Vec<_>>()
    .join("&");
    let mut pages = 0;
    for (method, pattern, _) in ACCESS {
        if *method != "GET" || pattern.starts_with("/api/") || pattern.starts_with("/assets") {
            continue;
        }
        let mut paths = vec![concrete(pattern), format!("{}?{query}", concrete(pattern))];
        if pattern.contains("{center}") {
            paths.push(pattern.replace("{center}", &urlenc(SCRIPT)));
        }
        for path in paths {
            for lang in ["ar", "en"] {
                let path = format!(
                    "{path}{}lang={lang}",
                    if path.contains('?') { "&" } else { "?" }
                );
                let (_, html) = rig.bearer(&admin, Method::GET, &path, None).await?;
                assert!(!html.contains(SCRIPT), "{path}: {html}");
                assert!(!html.contains("<img src=x"), "{path}: {html}");
                pages += 1;
            }
        }
    }
    assert!(pages > 30, "{pages}");
    // The login page echoes `next` and, after a failure, the username.
    let (_, _, html) = rig
        .send(
            [127, 0, 0, 1],
            Method::GET,
            &format!("/login?next={}", urlenc(IMG)),
            &[],
            None,
        )
        .await?;
    assert!(!html.contains("<img src=x"), "{html}");
    let body = format!(
        "username={}&password=x&next={}",
        urlenc(SCRIPT),
        urlenc(IMG)
    );
    let (_, _, html) = rig
        .send(
            [127, 0, 0, 1],
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        )
        .await?;
    assert!(
        !html.contains(SCRIPT) && !html.contains("<img src=x"),
        "{html}"
    );
    Ok(())
}
