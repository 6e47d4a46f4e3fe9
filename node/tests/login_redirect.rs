//! The redirect after a genuine login stays on this node (issue 17.5): `next` leads only
//! to a relative path of one of the node's own pages.

use crate::support;

use support::{ADMIN_PASSWORD, TestNode};

/// Logs in through the login form with `next` (already form-encoded) and returns the
/// redirect's `Location`.
async fn location_after_login(node: &TestNode, next_encoded: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let body = format!("username=admin&password={ADMIN_PASSWORD}&terminal=&next={next_encoded}");
    let resp = http
        .post(format!("{}/login", node.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "a successful login redirects");
    assert!(
        resp.headers().get("set-cookie").is_some(),
        "the login succeeded"
    );
    resp.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_redirect_after_login_never_leaves_the_node() {
    let node = TestNode::start().await;
    let home = location_after_login(&node, "").await;
    assert!(home.starts_with('/') && !home.starts_with("//"), "{home}");

    // A page of the node is honoured.
    assert_eq!(
        location_after_login(&node, "%2Fcases%3Fq%3D1").await,
        "/cases?q=1"
    );

    for attack in [
        "/%09/evil.example",     // tab: a browser drops it and reads //evil.example
        "%2F%09%2Fevil.example", // the same, fully encoded
        "/%0a/evil.example",
        "/%0d%0a/evil.example",
        "//evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example", // backslash: a browser reads /\evil as //evil
        "https://evil.example/",
        "/evil.example",
        "/%20/evil.example",
    ] {
        let to = location_after_login(&node, attack).await;
        assert_eq!(to, home, "next={attack} must lead home, not to {to:?}");
    }
}
