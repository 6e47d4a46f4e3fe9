//! The HTTP details both servers' pages share: reading cookies, the session cookie's
//! attributes, local-only redirects (never another site, whatever `next=` says), the
//! security headers of every response, the stylesheet, and the JSON error body
//! `{"error":{"code","message","field"}}`.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The stylesheet of every page, node and hub (one file, one look).
pub const STYLESHEET: &str = include_str!("../assets/markaz.css");

/// The Content-Security-Policy of every response: scripts, styles and everything else
/// only from the server itself, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
form-action 'self'";

/// Middleware adding the security headers (CSP, `X-Frame-Options: DENY`,
/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`) to every response
/// that does not set its own.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    resp
}

/// Middleware for a server behind HTTPS: every cookie it sets is marked `Secure`, so a
/// browser never sends the session (or any other cookie) over plain HTTP. One place for
/// every cookie: the session cookie of the pages and of the API, the language, the counter.
pub async fn secure_cookies(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let cookies: Vec<HeaderValue> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(mark_secure)
        .collect();
    if !cookies.is_empty() {
        let h = resp.headers_mut();
        h.remove(header::SET_COOKIE);
        for c in cookies {
            h.append(header::SET_COOKIE, c);
        }
    }
    resp
}

fn mark_secure(cookie: &HeaderValue) -> HeaderValue {
    let already = cookie.to_str().is_ok_and(|c| {
        c.split(';')
            .skip(1)
            .any(|a| a.trim().eq_ignore_ascii_case("secure"))
    });
    if already {
        return cookie.clone();
    }
    let mut bytes = cookie.as_bytes().to_vec();
    bytes.extend_from_slice(b"; Secure");
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| cookie.clone())
}

/// Reads one cookie by name.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// A session cookie: HttpOnly, SameSite=Strict, for the whole site; `Secure` when the
/// pages are served over HTTPS.
pub fn session_cookie(name: &str, token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The cookie that ends a session in the browser.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A path a form or a `next=` may send the browser to: `/` or a relative path whose
/// first segment is one of the server's own pages (`own_pages`), else `/`. Only printable
/// ASCII without `\\` is kept: a browser drops tabs and newlines from a URL and reads `\\`
/// as `/`, so `/\t/evil.example` would take the user to `//evil.example`, another site;
/// empty, `.` and `..` segments are refused too.
pub fn safe_back<'a>(back: &'a str, own_pages: &[&str]) -> &'a str {
    if is_own_page(back, own_pages) {
        back
    } else {
        "/"
    }
}

fn is_own_page(back: &str, own_pages: &[&str]) -> bool {
    if !back.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    let path = back.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    own_pages.contains(&first) && segments.all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The fields of an `application/x-www-form-urlencoded` body, in order, decoded
/// (`+` is a space; a broken `%` escape is kept as it is). Repeated names (checkboxes)
/// stay repeated.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let mut it = kv.splitn(2, |b| *b == b'=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON error body both APIs answer with.
pub fn json_error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(f) = field {
        error["field"] = serde_json::Value::String(f.to_string());
    }
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

/// `GET /assets/markaz.css`, cached for an hour (it changes only with the binary).
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_links_stay_on_this_server() {
        let own = &["desk", "cases"];
        assert_eq!(safe_back("/desk?counter=2", own), "/desk?counter=2");
        assert_eq!(
            safe_back("/cases/MID-2026-000001", own),
            "/cases/MID-2026-000001"
        );
        assert_eq!(safe_back("/", own), "/");
        for evil in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "\\\\evil",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/%09/evil.example",
            "/%2F/evil.example",
            "/desk//evil.example",
            "/desk/../../evil",
            "/evil.example",
            "/desk\\@evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_back(evil, own), "/", "{evil:?}");
        }
        assert_eq!(urlencode("/cases?q=a b"), "/cases%3Fq%3Da%20b");
    }

    #[test]
    fn form_fields_are_decoded_and_repeat() {
        let f = form_pairs(b"role=admin&role=network&name=%D8%B9+x&bad=%zz&end=%4");
        assert_eq!(
            f,
            vec![
                ("role".into(), "admin".into()),
                ("role".into(), "network".into()),
                ("name".into(), "ع x".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(session_cookie("s", "t", true).ends_with("; Secure"));
        assert!(!session_cookie("s", "t", false).contains("Secure"));
        assert!(clear_cookie("s").contains("Max-Age=0"));
    }

    #[tokio::test]
    async fn behind_https_every_cookie_is_secure() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|| async {
                    (
                        axum::response::AppendHeaders([
                            (header::SET_COOKIE, "a=1; Path=/; HttpOnly"),
                            (header::SET_COOKIE, "b=2; Secure"),
                        ]),
                        "x",
                    )
                }),
            )
            .layer(axum::middleware::from_fn(secure_cookies));
        let req = Request::builder()
            .uri("/")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let set: Vec<&str> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(set, ["a=1; Path=/; HttpOnly; Secure", "b=2; Secure"]);
    }

    #[tokio::test]
    async fn every_response_gets_the_security_headers() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "x" }))
            .layer(axum::middleware::from_fn(security_headers));
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let h = resp.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
