//! The sync wire contract in one place: the endpoint's path, the request headers, the
//! error codes of an `Error` response, the kinds of request the hub logs and the results
//! of a request and of a session. The node, the hub, the bench and the tests import these;
//! nothing spells the strings again. The strings on the wire are those of
//! `docs/PROTOCOL.md` and never change meaning (an older peer reads them).

use std::fmt;

/// The path of the sync endpoint: `POST` one encoded `Request`, get one encoded
/// `Response` (`application/octet-stream`).
pub const SYNC_PATH: &str = "/sync/v1";

/// The content type of a sync request and its response.
pub const SYNC_CONTENT_TYPE: &str = "application/octet-stream";

/// Request header naming the uplink a request travels over (see [`Uplink`]).
pub const UPLINK_HEADER: &str = "x-markaz-uplink";

/// Request header carrying the sync session's id (a UUID v4, the same for every request
/// of one session).
pub const SESSION_HEADER: &str = "x-markaz-session";

/// Implements `as_str`, `parse` and `Display` for a fieldless enum from one table.
macro_rules! wire_strings {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in the order of the table.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The string on the wire (and in the hub's tables).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s,)+
                }
            }

            /// The value of a wire string; `None` for a string this version does not know.
            pub fn parse(s: &str) -> Option<$t> {
                match s {
                    $($s => Some($t::$v),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// The uplink a center names in [`UPLINK_HEADER`]. The hub records any other value as
/// `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uplink {
    /// Every OS route (the laser link, a LAN).
    Primary,
    /// The 3G modem's TCP sockets.
    Modem,
}

wire_strings!(Uplink {
    Primary => "primary",
    Modem => "modem",
});

/// The code of an `Error` response: what the hub could not do with a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The hub could not decode the request (cut or garbled on the way): the client
    /// sends it again.
    BadRequest,
    /// The hub's storage failed: another hub address may serve the session.
    HubError,
    /// The Hello names another center than the client certificate.
    WrongCenter,
    /// A code this version does not know (a newer hub's), kept as received.
    Other(String),
}

impl ErrorCode {
    /// The string on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::HubError => "hub_error",
            ErrorCode::WrongCenter => "wrong_center",
            ErrorCode::Other(s) => s,
        }
    }

    /// The code of a wire string (an unknown one is [`ErrorCode::Other`]).
    pub fn parse(s: &str) -> ErrorCode {
        match s {
            "bad_request" => ErrorCode::BadRequest,
            "hub_error" => ErrorCode::HubError,
            "wrong_center" => ErrorCode::WrongCenter,
            other => ErrorCode::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of one request, as the hub's sync log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestKind {
    /// The body did not decode (the default until a request is read).
    #[default]
    Bad,
    /// The peer speaks another protocol version.
    Refused,
    Hello,
    Push,
    Pull,
    RepairRanges,
    RepairList,
    RepairSync,
}

wire_strings!(RequestKind {
    Bad => "bad",
    Refused => "refused",
    Hello => "hello",
    Push => "push",
    Pull => "pull",
    RepairRanges => "repair_ranges",
    RepairList => "repair_list",
    RepairSync => "repair_sync",
});

/// The result of a request, and of a session as the hub derives it from its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionResult {
    /// It went well (a session: it ended well).
    #[default]
    Ok,
    /// It failed (a session: its last request failed).
    Error,
    /// A session that may still be running.
    Open,
}

wire_strings!(SessionResult {
    Ok => "ok",
    Error => "error",
    Open => "open",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are the wire's (docs/PROTOCOL.md): an older peer reads them.
    #[test]
    fn the_strings_on_the_wire_do_not_change() {
        let kinds: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "bad",
                "refused",
                "hello",
                "push",
                "pull",
                "repair_ranges",
                "repair_list",
                "repair_sync"
            ]
        );
        let results: Vec<&str> = SessionResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(results, ["ok", "error", "open"]);
        assert_eq!(
            [Uplink::Primary.as_str(), Uplink::Modem.as_str()],
            ["primary", "modem"]
        );
        for (code, s) in [
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::HubError, "hub_error"),
            (ErrorCode::WrongCenter, "wrong_center"),
        ] {
            assert_eq!(code.as_str(), s);
            assert_eq!(ErrorCode::parse(s), code);
        }
        assert_eq!(
            ErrorCode::parse("newer_code"),
            ErrorCode::Other("newer_code".into())
        );
        assert_eq!(
            (SYNC_PATH, UPLINK_HEADER, SESSION_HEADER),
            ("/sync/v1", "x-markaz-uplink", "x-markaz-session")
        );
    }

    #[test]
    fn every_string_parses_back() {
        for k in RequestKind::ALL {
            assert_eq!(RequestKind::parse(k.as_str()), Some(*k));
        }
        for r in SessionResult::ALL {
            assert_eq!(SessionResult::parse(r.as_str()), Some(*r));
        }
        for u in Uplink::ALL {
            assert_eq!(Uplink::parse(u.as_str()), Some(*u));
        }
        assert_eq!(RequestKind::parse("nope"), None);
    }
}
