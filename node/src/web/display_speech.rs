//! The waiting-room display's spoken Arabic call: "التذكرة بي أربعة وثلاثون إلى الشباك
//! خمسة" for ticket B034 at counter 5, composed from short clips built into the binary
//! (`node/assets/speech/*.opus`, made offline by `generate.sh` with espeak-ng), so a
//! center needs no internet and no speech service.
//!
//! [`call_clips`] is the whole composition and is pure: the ticket word, the letter's
//! name, the sequence number read the Arabic way (units before tens, "wa-" between
//! parts: 1204 → ألف ومئتان وأربعة), the words "to counter" and the counter number.
//! `GET /display/speech?ticket=B034&counter=5` answers the clip URLs in order; the page
//! plays them one after the other. Clips are served from `/display/clips/{name}` with a year's
//! cache and a version in the URL, so a new binary's clips are fetched again.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::queue::TicketNo;

macro_rules! clips {
    ($($name:literal),* $(,)?) => {
        /// Every clip: (name, Ogg Opus bytes).
        pub const CLIPS: &[(&str, &[u8])] = &[
            $(($name, include_bytes!(concat!("../../assets/speech/", $name, ".opus")))),*
        ];
    };
}

clips!(
    "ticket",
    "to_counter",
    "letter_a",
    "letter_b",
    "letter_c",
    "letter_d",
    "letter_e",
    "letter_f",
    "letter_g",
    "letter_h",
    "letter_i",
    "letter_j",
    "letter_k",
    "letter_l",
    "letter_m",
    "letter_n",
    "letter_o",
    "letter_p",
    "letter_q",
    "letter_r",
    "letter_s",
    "letter_t",
    "letter_u",
    "letter_v",
    "letter_w",
    "letter_x",
    "letter_y",
    "letter_z",
    "n0",
    "n1",
    "n2",
    "n3",
    "n4",
    "n5",
    "n6",
    "n7",
    "n8",
    "n9",
    "n10",
    "n11",
    "n12",
    "n13",
    "n14",
    "n15",
    "n16",
    "n17",
    "n18",
    "n19",
    "n20",
    "n30",
    "n40",
    "n50",
    "n60",
    "n70",
    "n80",
    "n90",
    "n100",
    "n200",
    "n300",
    "n400",
    "n500",
    "n600",
    "n700",
    "n800",
    "n900",
    "and_n1",
    "and_n2",
    "and_n3",
    "and_n4",
    "and_n5",
    "and_n6",
    "and_n7",
    "and_n8",
    "and_n9",
    "and_n10",
    "and_n11",
    "and_n12",
    "and_n13",
    "and_n14",
    "and_n15",
    "and_n16",
    "and_n17",
    "and_n18",
    "and_n19",
    "and_n20",
    "and_n30",
    "and_n40",
    "and_n50",
    "and_n60",
    "and_n70",
    "and_n80",
    "and_n90",
    "and_n100",
    "and_n200",
    "and_n300",
    "and_n400",
    "and_n500",
    "and_n600",
    "and_n700",
    "and_n800",
    "and_n900",
    "n1000",
    "n2000",
    "thousands",
    "thousand_acc",
);

/// The clip of a word, with "wa-" ("and") before it when it is not the number's first.
fn word(out: &mut Vec<String>, first: &mut bool, n: u32) {
    out.push(if *first {
        format!("n{n}")
    } else {
        format!("and_n{n}")
    });
    *first = false;
}

/// 1..=999 as Arabic reads it: hundreds, then units before tens ("four and thirty").
fn below_thousand(out: &mut Vec<String>, first: &mut bool, n: u32) {
    let (h, r) = (n / 100, n % 100);
    if h > 0 {
        word(out, first, h * 100);
    }
    match r {
        0 => {}
        1..=19 => word(out, first, r),
        _ => {
            let (t, u) = (r / 10 * 10, r % 10);
            if u > 0 {
                word(out, first, u);
            }
            word(out, first, t);
        }
    }
}

/// The clips that read `n` (0..=99 999) in Arabic.
pub fn number_clips(n: u32) -> Vec<String> {
    let mut out = Vec::new();
    if n == 0 {
        out.push("n0".to_string());
        return out;
    }
    let mut first = true;
    let (th, rest) = (n / 1000, n % 1000);
    match th {
        0 => {}
        1 => {
            out.push("n1000".into());
            first = false;
        }
        2 => {
            out.push("n2000".into());
            first = false;
        }
        // ثلاثة آلاف … عشرة آلاف
        3..=10 => {
            below_thousand(&mut out, &mut first, th);
            out.push("thousands".into());
        }
        // أحد عشر ألفاً … تسعة وتسعون ألفاً
        _ => {
            below_thousand(&mut out, &mut first, th.min(999));
            out.push("thousand_acc".into());
        }
    }
    below_thousand(&mut out, &mut first, rest);
    out
}

/// The clips of a call, in order: ticket, letter, number, "to counter", counter.
pub fn call_clips(ticket: TicketNo, counter: u32) -> Vec<String> {
    let mut out = vec![
        "ticket".to_string(),
        format!("letter_{}", ticket.letter().to_ascii_lowercase()),
    ];
    out.extend(number_clips(ticket.seq()));
    out.push("to_counter".into());
    out.extend(number_clips(counter));
    out
}

/// A clip's bytes by name.
pub fn clip(name: &str) -> Option<&'static [u8]> {
    CLIPS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// A short fingerprint of all clips (FNV-1a), put in their URLs: a year's cache holds
/// until a binary with other clips serves other URLs.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, bytes) in CLIPS {
            for b in name.as_bytes().iter().chain(bytes.iter()) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:08x}", h as u32)
    })
}

/// The URL the page fetches a clip from.
pub fn clip_url(name: &str) -> String {
    format!("/display/clips/{name}.opus?v={}", version())
}

#[derive(Debug, Deserialize, Default)]
pub struct SpeechQuery {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    counter: String,
}

/// `GET /display/speech?ticket=B034&counter=5` → `{"clips": ["/display/clips/ticket.opus?v=…", …]}`.
/// Public, like the display: it says nothing the hall does not hear.
pub async fn call(Query(q): Query<SpeechQuery>) -> Response {
    let bad = |code: &str, message: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "code": code, "message": message })),
        )
            .into_response()
    };
    let ticket = match q.ticket.parse::<TicketNo>() {
        Ok(t) => t,
        Err(e) => return bad("invalid_ticket", e.to_string()),
    };
    let counter = match q.counter.trim().parse::<u32>() {
        Ok(c) if (1..=99).contains(&c) => c,
        _ => {
            return bad(
                "invalid_counter",
                format!("a counter is a number 1-99, got '{}'", q.counter),
            );
        }
    };
    let clips: Vec<String> = call_clips(ticket, counter)
        .iter()
        .map(|n| clip_url(n))
        .collect();
    Json(serde_json::json!({ "clips": clips })).into_response()
}

/// `GET /display/clips/{name}.opus`: one clip, cached for a year (its URL carries the version).
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(bytes) = file.strip_suffix(".opus").and_then(clip) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: u32) -> Vec<String> {
        number_clips(x)
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn numbers_read_the_arabic_way() {
        assert_eq!(n(0), v(&["n0"]));
        assert_eq!(n(5), v(&["n5"]));
        assert_eq!(n(11), v(&["n11"]));
        assert_eq!(n(20), v(&["n20"]));
        // أربعة وثلاثون
        assert_eq!(n(34), v(&["n4", "and_n30"]));
        // مئة وخمسة
        assert_eq!(n(105), v(&["n100", "and_n5"]));
        // تسعمئة وتسعة وتسعون
        assert_eq!(n(999), v(&["n900", "and_n9", "and_n90"]));
        // ألف ومئتان وأربعة
        assert_eq!(n(1204), v(&["n1000", "and_n200", "and_n4"]));
        assert_eq!(n(2000), v(&["n2000"]));
        // ثلاثة آلاف وسبعة عشر
        assert_eq!(n(3017), v(&["n3", "thousands", "and_n17"]));
        assert_eq!(n(10_000), v(&["n10", "thousands"]));
        // خمسة وعشرون ألفاً ومئة
        assert_eq!(n(25_100), v(&["n5", "and_n20", "thousand_acc", "and_n100"]));
    }

    #[test]
    fn a_call_is_ticket_letter_number_then_counter() {
        let t: TicketNo = "B034".parse().unwrap();
        assert_eq!(
            call_clips(t, 5),
            v(&["ticket", "letter_b", "n4", "and_n30", "to_counter", "n5"])
        );
        let t: TicketNo = "A001".parse().unwrap();
        assert_eq!(
            call_clips(t, 12),
            v(&["ticket", "letter_a", "n1", "to_counter", "n12"])
        );
    }

    /// Every number a ticket or counter can have is read with clips that exist, and every
    /// clip is a real Ogg Opus stream; all of them together stay small.
    #[test]
    fn every_clip_needed_exists_and_is_opus() {
        for x in 0..=TicketNo::MAX_SEQ {
            for c in number_clips(x) {
                assert!(clip(&c).is_some(), "{x}: no clip {c}");
            }
        }
        for l in 'A'..='Z' {
            let t = TicketNo::new(l, 1).unwrap();
            for c in call_clips(t, 99) {
                assert!(clip(&c).is_some(), "{t}: no clip {c}");
            }
        }
        let mut total = 0;
        for (name, bytes) in CLIPS {
            assert!(
                bytes.starts_with(b"OggS") && bytes.windows(8).any(|w| w == b"OpusHead"),
                "{name} is not Ogg Opus"
            );
            assert!(bytes.len() > 500, "{name} is too short to be speech");
            total += bytes.len();
        }
        assert!(total < 400 * 1024, "clips total {total} bytes");
        // And the generator makes exactly these clips.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/speech");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .to_str()?
                    .strip_suffix(".opus")
                    .map(str::to_string)
            })
            .collect();
        files.sort();
        let mut names: Vec<String> = CLIPS.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
    }
}
