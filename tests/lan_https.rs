//! HTTPS on the LAN (#17.7): the technician issues the box's certificate with
//! `markaz pki lan`, the node serves its pages and API over HTTPS with it (`[server.tls]`),
//! every cookie is `Secure`, plain HTTP sent to the HTTPS port gets a clear 400, the
//! redirect listener sends a clerk who typed `http://` to the same page over HTTPS, and a
//! config whose key file is missing is refused by `check-config` (and by the node) at
//! the key's line.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use markaz_e2e::{ADMIN_PASSWORD, ADMIN_USER, NodeProcess, markaz_bin};

fn markaz(args: &[&std::ffi::OsStr]) -> Result<(bool, String)> {
    let out = std::process::Command::new(markaz_bin()?)
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// `markaz pki init` and `markaz pki lan … midan --san 127.0.0.1 --san localhost`, as
/// the technician types them; returns the bundle directory `lan/midan/`.
fn issue_lan_certificate(pki: &Path) -> Result<std::path::PathBuf> {
    let (ok, out) = markaz(&["pki".as_ref(), "init".as_ref(), pki.as_os_str()])?;
    ensure!(ok, "pki init: {out}");
    let (ok, out) = markaz(&[
        "pki".as_ref(),
        "lan".as_ref(),
        pki.as_os_str(),
        "midan".as_ref(),
        "--san".as_ref(),
        "127.0.0.1".as_ref(),
        "--san".as_ref(),
        "localhost".as_ref(),
    ])?;
    ensure!(ok, "pki lan: {out}");
    ensure!(out.contains("trust ca.pem"), "{out}");
    let (ok, out) = markaz(&["pki".as_ref(), "list".as_ref(), pki.as_os_str()])?;
    ensure!(ok && out.contains("midan (lan)"), "pki list: {out}");
    Ok(pki.join("lan").join("midan"))
}

#[tokio::test]
async fn a_clerk_logs_in_over_https_and_every_cookie_is_secure() -> Result<()> {
    let pki_dir = tempfile::tempdir()?;
    let lan = issue_lan_certificate(&pki_dir.path().join("pki"))?;
    let mut node = NodeProcess::start_https(
        "midan",
        &lan.join("ca.pem"),
        &lan.join("cert.pem"),
        &lan.join("key.pem"),
        "redirect_listen = \"127.0.0.1:0\"",
    )
    .await?;
    ensure!(node.base_url.starts_with("https://"), "{}", node.base_url);
    let https = node.http_client()?;

    // The login page, then a login through the form: the session cookie is Secure.
    let page = https.get(node.url("/login")).send().await?;
    ensure!(page.status() == 200, "login page: {}", page.status());
    let resp = https
        .post(node.url("/login"))
        .form(&[
            ("username", ADMIN_USER),
            ("password", ADMIN_PASSWORD),
            ("terminal", "counter-1"),
            ("next", "/"),
        ])
        .send()
        .await?;
    ensure!(resp.status() == 303, "form login: {}", resp.status());
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("markaz_session="))
        .context("no session cookie")?;
    ensure!(
        session.contains("; Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    let pair = session.split(';').next().unwrap_or_default().to_string();
    let home = https
        .get(node.url("/"))
        .header("cookie", &pair)
        .send()
        .await?;
    ensure!(
        home.status() == 303 || home.status() == 200,
        "the session works: {}",
        home.status()
    );
    if home.status() == 303 {
        let to = home.headers()["location"].to_str()?;
        ensure!(!to.starts_with("/login"), "sent back to login: {to}");
    }

    // The API login over HTTPS: its cookie is Secure too, and the token works.
    let resp = https
        .post(node.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    ensure!(resp.status() == 200, "API login: {}", resp.status());
    let cookie = resp.headers()["set-cookie"].to_str()?.to_string();
    ensure!(cookie.contains("; Secure"), "{cookie}");
    let body: serde_json::Value = resp.json().await?;
    let token = body["token"].as_str().context("token")?;
    let me = https
        .get(node.url("/api/v1/staff"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        me.status() == 200,
        "an API read over HTTPS: {}",
        me.status()
    );

    // Plain HTTP to the HTTPS port: a clear 400, never a page.
    let plain = reqwest::Client::new();
    let http_url = node.base_url.replacen("https://", "http://", 1);
    let resp = plain.get(format!("{http_url}/login")).send().await?;
    ensure!(resp.status() == 400, "plain HTTP: {}", resp.status());
    let body: serde_json::Value = resp.json().await?;
    ensure!(body["error"]["code"] == "https_required", "{body}");
    // A client that does not trust the center's CA does not get through either.
    ensure!(
        reqwest::Client::new()
            .get(node.url("/healthz"))
            .send()
            .await
            .is_err(),
        "an untrusted certificate was accepted"
    );

    // The redirect listener: plain HTTP is sent to the same page over HTTPS.
    let raddr = std::fs::read_to_string(node.dir.path().join("data/redirect.addr"))?;
    let resp = https
        .get(format!("http://{}/login?next=/desk", raddr.trim()))
        .send()
        .await?;
    ensure!(resp.status() == 307, "redirect: {}", resp.status());
    let to = resp.headers()["location"].to_str()?;
    ensure!(to == node.url("/login?next=/desk"), "redirected to {to}");
    let followed = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            lan.join("ca.pem"),
        )?)?)
        .build()?
        .get(format!("http://{}/login", raddr.trim()))
        .send()
        .await?;
    ensure!(
        followed.status() == 200 && followed.url().scheme() == "https",
        "followed: {} {}",
        followed.status(),
        followed.url()
    );
    node.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_key_file_is_refused_with_its_line() -> Result<()> {
    let pki_dir = tempfile::tempdir()?;
    let lan = issue_lan_certificate(&pki_dir.path().join("pki"))?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("node.toml");
    let missing = lan.join("no-such-key.pem");
    std::fs::write(
        &config,
        format!(
            "[center]\nid = \"midan\"\nreceipt_prefix = \"MDN\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[storage]\ndata_dir = \"{}\"\n",
            lan.join("cert.pem").display(),
            missing.display(),
            dir.path().join("data").display()
        ),
    )?;
    let (ok, out) = markaz(&["check-config".as_ref(), config.as_os_str()])?;
    ensure!(!ok, "check-config accepted it: {out}");
    let at = format!("{}:10:7:", config.display());
    ensure!(out.contains(&at), "no {at} in: {out}");
    ensure!(
        out.contains("server.tls.key") && out.contains("no-such-key.pem"),
        "{out}"
    );
    // The node refuses to start with it, with the same words.
    let (ok, out) = markaz(&["node".as_ref(), "--config".as_ref(), config.as_os_str()])?;
    ensure!(!ok && out.contains(&at), "node: {out}");
    // With the real key it is a good config.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)?.replace("no-such-key.pem", "key.pem"),
    )?;
    let (ok, out) = markaz(&["check-config".as_ref(), config.as_os_str()])?;
    ensure!(ok, "{out}");
    Ok(())
}
