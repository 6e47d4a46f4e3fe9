//! Secrets never reach the logs: a node process logging everything (`RUST_LOG=trace`, JSON
//! format) serves logins, failed logins, staff created with passwords, bearer and cookie
//! sessions with CSRF tokens, a forged token and a logout; afterwards its whole log holds
//! none of those passwords, session tokens or CSRF tokens. Tokens are not in the database
//! file either (only their hashes are).

use markaz_e2e::{ADMIN_PASSWORD, Api, NodeProcess};
use serde_json::{Value, json};

const STAFF_PASSWORD: &str = "Staff-Secret-Pass-4242";
const WRONG_PASSWORD: &str = "Wrong-Guess-Pass-9191";
const FORGED_TOKEN: &str = "ForgedToken-Not-A-Real-Session-77777777777";

async fn login_raw(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": password, "terminal": "desk-7"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
#[allow(unsafe_code)] // each `unsafe` block here says why it is sound
async fn passwords_and_tokens_never_appear_in_a_trace_level_log() {
    // This test binary runs only this test, so the variable reaches only its node.
    unsafe { std::env::set_var("RUST_LOG", "trace") };
    let mut node = NodeProcess::start_with("midan", "format = \"json\"\n")
        .await
        .unwrap();
    let base = node.base_url.clone();
    let http = reqwest::Client::new();
    let mut secrets: Vec<String> = vec![
        ADMIN_PASSWORD.into(),
        STAFF_PASSWORD.into(),
        WRONG_PASSWORD.into(),
        FORGED_TOKEN.into(),
    ];

    let (s, admin) = login_raw(&http, &base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{admin}");
    // Session tokens and passwords must not be in the database file either; CSRF tokens
    // are stored (they are compared there) but never logged.
    let mut session_tokens: Vec<String> = vec![admin["token"].as_str().unwrap().into()];
    secrets.push(admin["csrf"].as_str().unwrap().into());
    let api = Api::login(&base, "admin", ADMIN_PASSWORD).await.unwrap();
    session_tokens.push(api.token.clone());

    // Failed logins: a wrong password, an unknown user.
    for (user, pw) in [("admin", WRONG_PASSWORD), ("nobody", WRONG_PASSWORD)] {
        let (s, _) = login_raw(&http, &base, user, pw).await;
        assert_eq!(s, 401);
    }
    // Staff created with a password, who then logs in and works with a cookie + CSRF.
    api.create_staff("clerk7", STAFF_PASSWORD, &["clerk", "reception"], &[])
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "clerk7", "password": STAFF_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let (token, csrf) = (
        body["token"].as_str().unwrap().to_string(),
        body["csrf"].as_str().unwrap().to_string(),
    );
    session_tokens.push(token.clone());
    secrets.push(csrf.clone());
    let resp = http
        .post(format!("{base}/api/v1/tickets"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"group": "civil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    // A wrong CSRF token and a forged bearer token are refused (and not logged either).
    let resp = http
        .post(format!("{base}/api/v1/tickets"))
        .header("cookie", &cookie)
        .header("x-csrf-token", FORGED_TOKEN)
        .json(&json!({"group": "civil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = http
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(FORGED_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Logout with the token.
    let resp = http
        .post(format!("{base}/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    assert!(node.stop().await.unwrap().success());
    let in_db: Vec<String> = [ADMIN_PASSWORD, STAFF_PASSWORD, WRONG_PASSWORD]
        .iter()
        .map(|s| s.to_string())
        .chain(session_tokens.iter().cloned())
        .collect();
    secrets.extend(session_tokens);
    let log = node.log();
    // The log is really at trace level and in JSON, so the test can see what it claims.
    assert!(
        log.lines().filter(|l| l.starts_with('{')).count() > 20,
        "a JSON log: {}",
        &log[..log.len().min(2000)]
    );
    assert!(log.contains("\"TRACE\"") || log.contains("\"level\":\"TRACE\""));
    assert!(log.contains("failed login"), "failed logins are logged");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log contains a secret ({}…): {}",
            &secret[..6],
            log.lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or_default()
        );
    }
    // Only hashes of tokens are stored.
    let db = std::fs::read(node.dir.path().join("data").join("markaz-node.db")).unwrap();
    let wal =
        std::fs::read(node.dir.path().join("data").join("markaz-node.db-wal")).unwrap_or_default();
    for secret in &in_db {
        for file in [&db, &wal] {
            assert!(
                !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the database holds a secret ({}…) in clear",
                &secret[..6]
            );
        }
    }
}
