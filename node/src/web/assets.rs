//! The static files of the pages (the shared stylesheet, the display and print scripts),
//! built into the binary so a center needs no internet and no files beside the executable.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "markaz.css",
        "text/css; charset=utf-8",
        markaz_web::http::STYLESHEET,
    ),
    (
        "display.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/display.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/live.js"),
    ),
    (
        "print.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/print.js"),
    ),
    (
        "technician.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/technician.js"),
    ),
];

/// Looks an asset up by file name.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| (*ct, *body))
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some((ct, body)) => {
            let mut resp = body.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            // Assets change only with the binary; an hour keeps terminals quick after an upgrade.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_and_scripts_carry_no_words() {
        assert!(asset("markaz.css").is_some_and(
            |(ct, b)| ct.starts_with("text/css") && b.contains("size: 80mm auto;")
        ));
        assert!(asset("../Cargo.toml").is_none());
        // No user-facing text in scripts: the words come from the page. A crude but
        // useful check: scripts contain no Arabic letters and no string literal that
        // looks like a sentence.
        for name in ["display.js", "print.js", "technician.js", "live.js"] {
            let (_, js) = asset(name).unwrap();
            assert!(
                !js.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
                "{name} has Arabic text"
            );
            for line in js.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for lit in line.split('"').skip(1).step_by(2) {
                    assert!(
                        lit.split_whitespace().count() < 3,
                        "{name}: literal text \"{lit}\""
                    );
                }
            }
        }
    }
}
