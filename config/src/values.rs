//! Typed configuration values that can only hold valid contents.
//!
//! Each type here is parsed from its TOML string once, when the file is loaded, and is
//! valid from then on: a `CenterId` is always a slug, a `HhMmRange` always two real
//! times of day. Their `TryFrom<String>` error is the message a user sees next to the
//! file position, so it says what the value must look like.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a configuration value was refused; the text is shown to the user as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $parse:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value as written in the file.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                $parse(&s)?;
                Ok(Self(s))
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A center's identifier is the model's [`CenterId`] (`markaz-ids`): one type and one
/// rule, so an id this file accepts is one the node can sync under (issue #19.1: two
/// grammars let `mazzeh-` pass `check-config` and then fail at run time).
pub use markaz_ids::CenterId;

/// `deserialize_with` for a [`CenterId`]: the model's rule, with the message a user sees
/// next to the file position.
pub(crate) fn center_id<'de, D>(d: D) -> Result<CenterId, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    CenterId::from_str(&s).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid center id `{s}`: use 2 to 32 characters, a lowercase ASCII letter \
             first, then lowercase letters, digits or single `-` between them, not at the \
             end (like `midan` or `mazzeh-2`)"
        ))
    })
}

fn check_receipt_prefix(s: &str) -> Result<(), ValueError> {
    if (2..=5).contains(&s.len()) && s.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        err(format!(
            "invalid receipt prefix `{s}`: use 2 to 5 uppercase ASCII letters (like `MDN`)"
        ))
    }
}

string_newtype!(
    /// The prefix of a center's receipt numbers: `^[A-Z]{2,5}$`, e.g. `MDN`.
    ReceiptPrefix,
    check_receipt_prefix
);

fn check_group_id(s: &str) -> Result<(), ValueError> {
    let mut chars = s.chars();
    let ok = (1..=32).contains(&s.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid group id `{s}`: use 1 to 32 characters, a lowercase ASCII letter \
             first, then lowercase letters, digits or `_` (like `real_estate`)"
        ))
    }
}

string_newtype!(
    /// A queue service group's identifier: `^[a-z][a-z0-9_]{0,31}$`, e.g. `real_estate`.
    GroupId,
    check_group_id
);

fn check_phone(s: &str) -> Result<(), ValueError> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid phone number `{s}`: use E.164 form, `+` then country code and \
             number, no spaces (like `+963944123456`)"
        ))
    }
}

string_newtype!(
    /// A phone number in E.164 form: `+` and 8 to 15 digits, e.g. `+963944123456`.
    PhoneNumber,
    check_phone
);

fn check_time_zone(s: &str) -> Result<(), ValueError> {
    if jiff::tz::db().get(s).is_ok() {
        return Ok(());
    }
    let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
    let near = crate::suggest::closest(s, names.iter().map(String::as_str));
    match near {
        Some(n) => err(format!(
            "unknown time zone `{s}` (did you mean `{n}`?); use an IANA name like `Asia/Damascus`"
        )),
        None => err(format!(
            "unknown time zone `{s}`; use an IANA name like `Asia/Damascus`"
        )),
    }
}

string_newtype!(
    /// An IANA time zone name known to the bundled time zone database,
    /// e.g. `Asia/Damascus`.
    TimeZoneName,
    check_time_zone
);

impl TimeZoneName {
    /// The time zone itself. Falls back to UTC only if the bundled database changed
    /// under a running process, which cannot happen: the name was checked at load.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::db()
            .get(&self.0)
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

fn check_log_filter(s: &str) -> Result<(), ValueError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let bad = || {
        err(format!(
            "invalid log filter `{s}`: use a level ({}) or comma-separated \
             `target=level` directives, like `info,markaz_node=debug`",
            LEVELS.join(", ")
        ))
    };
    if s.trim().is_empty() {
        return bad();
    }
    for directive in s.split(',') {
        let level = match directive.split_once('=') {
            Some((target, level)) => {
                let target_ok = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
                if !target_ok {
                    return bad();
                }
                level
            }
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return bad();
        }
    }
    Ok(())
}

string_newtype!(
    /// A `tracing` filter: a level (`info`) or directives like `info,markaz_node=debug`.
    LogFilter,
    check_log_filter
);

fn parse_host_port(s: &str) -> Result<(&str, u16), ValueError> {
    let bad = || {
        err(format!(
            "invalid address `{s}`: use host:port, like `192.0.2.10:443`, \
             `hub.example.org:8443` or `[2001:db8::1]:443`"
        ))
    };
    let Some((host, port)) = s.rsplit_once(':') else {
        return bad();
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok((host, p)),
        _ => bad(),
    }
}

/// Implements the string side of a type that keeps its parsed parts beside the text:
/// serde as a string, `FromStr`, `Display`, `as_str`.
macro_rules! parsed_string {
    ($name:ident) => {
        impl $name {
            /// The value as written in the file.
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.text
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
    };
}

/// A `host:port` pair (host name, IPv4, or bracketed IPv6), e.g. `192.0.2.10:443`, kept
/// with its parts as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    text: String,
    host: String,
    port: u16,
}

impl TryFrom<String> for HostPort {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        let (host, port) = parse_host_port(&text)?;
        let host = host.to_owned();
        Ok(Self { text, host, port })
    }
}

parsed_string!(HostPort);

impl HostPort {
    /// The host part (brackets kept for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port part (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `(host, port)` of an `https://host[:port][/path]` URL: the host without IPv6
/// brackets, the port 443 when none is given.
fn parse_https_url(s: &str) -> Result<(String, u16), ValueError> {
    let bad = || {
        err(format!(
            "invalid hub URL `{s}`: use `https://host[:port]`, like `https://hub.example.org:8443`"
        ))
    };
    if s.contains(char::is_whitespace) {
        return bad();
    }
    let Some(rest) = s.strip_prefix("https://") else {
        return bad();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Ok((host, port)) = parse_host_port(authority) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Ok((host.to_owned(), port));
    }
    let name_ok = !authority.is_empty()
        && authority.len() <= 253
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if name_ok {
        return Ok((authority.to_owned(), 443));
    }
    if let Some(v6) = authority
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .filter(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    {
        return Ok((v6.to_owned(), 443));
    }
    bad()
}

/// An `https://host[:port][/path]` URL, e.g. `https://127.0.0.1:8443`, kept with its host
/// and port as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpsUrl {
    text: String,
    host: String,
    port: u16,
}

impl TryFrom<String> for HttpsUrl {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        let (host, port) = parse_https_url(&text)?;
        Ok(Self { text, host, port })
    }
}

parsed_string!(HttpsUrl);

impl HttpsUrl {
    /// The host: a name or an IP address (IPv6 without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 443 when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A libpq URL to the hub's PostgreSQL database, without a password
/// (`postgres://markaz@127.0.0.1:5432/markaz`): user, host, port (default 5432),
/// database and, optionally, `?sslmode=…`, kept as parsed. The password lives in its own
/// file (`password_file`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PgUrl {
    text: String,
    user: String,
    host: String,
    port: u16,
    dbname: String,
    sslmode: Option<PgSslMode>,
}

/// `sslmode` of a libpq URL: whether the connection to PostgreSQL is encrypted. Markaz
/// never encrypts without verifying: whenever TLS is used, the server's certificate
/// chain is checked against `storage.ca_cert` and its name against the URL's host
/// (libpq's `verify-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgSslMode {
    /// Plain TCP (a database on the same machine or a private link).
    Disable,
    /// TLS when the server offers it, plain TCP when it does not.
    Prefer,
    /// TLS or no connection (`require` and `verify-full` alike).
    Require,
}

impl PgSslMode {
    /// The word in the URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
        }
    }
}

impl FromStr for PgSslMode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" | "verify-full" => Ok(Self::Require),
            "verify-ca" => err(
                "`sslmode=verify-ca` (the chain without the host name) is not offered: \
                 Markaz always checks both; use `sslmode=require` (or `verify-full`) and \
                 a server certificate naming the URL's host",
            ),
            "allow" => err("`sslmode=allow` is not offered: use `disable`, `prefer` or `require`"),
            other => err(format!(
                "unknown sslmode `{other}`: use `disable`, `prefer` or `require`"
            )),
        }
    }
}

impl PgUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The role to log in as.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// Host name, IP address, or (starting with `/`) a Unix socket directory.
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The database.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }
    /// `?sslmode=…` if the URL gives it.
    pub fn sslmode(&self) -> Option<PgSslMode> {
        self.sslmode
    }
    /// The same server and role, another database (tests make one per test).
    pub fn with_dbname(&self, dbname: &str) -> PgUrl {
        let mut u = self.clone();
        u.dbname = dbname.to_owned();
        u.text = format!(
            "postgres://{}@{}:{}/{dbname}{}",
            u.user,
            host_in_url(&u.host),
            u.port,
            u.sslmode
                .map(|m| format!("?sslmode={}", m.as_str()))
                .unwrap_or_default()
        );
        u
    }
}

fn host_in_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn is_pg_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl TryFrom<String> for PgUrl {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        let shape = "use `postgres://USER@HOST:PORT/DATABASE`, like \
                     `postgres://markaz@127.0.0.1:5432/markaz`";
        let Some(rest) = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
        else {
            return err(format!("invalid database URL `{text}`: {shape}"));
        };
        if rest.contains('#') {
            return err(format!("invalid database URL `{text}`: {shape}"));
        }
        let (rest, sslmode) = match rest.split_once('?') {
            None => (rest, None),
            Some((rest, query)) => {
                let mut mode = None;
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some(("sslmode", v)) if mode.is_none() => mode = Some(v.parse()?),
                        Some(("sslmode", _)) => {
                            return err(format!(
                                "invalid database URL `{text}`: `sslmode` is given twice"
                            ));
                        }
                        _ => {
                            return err(format!(
                                "invalid database URL `{text}`: the only parameter is \
                                 `?sslmode=disable|prefer|require`; the TLS files are \
                                 `storage.ca_cert`, `storage.client_cert` and \
                                 `storage.client_key`"
                            ));
                        }
                    }
                }
                (rest, mode)
            }
        };
        let Some((userinfo, hostpath)) = rest.split_once('@') else {
            return err(format!("invalid database URL `{text}`: no user; {shape}"));
        };
        if userinfo.contains(':') {
            return err(format!(
                "the database URL must not carry a password: put it in \
                 `storage.password_file` and write `postgres://{}@…`",
                userinfo.split(':').next().unwrap_or_default()
            ));
        }
        let Some((hostport, dbname)) = hostpath.split_once('/') else {
            return err(format!(
                "invalid database URL `{text}`: no database; {shape}"
            ));
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return err(format!("invalid database URL `{text}`: {shape}")),
                },
                None => return err(format!("invalid database URL `{text}`: {shape}")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => 5432,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return err(format!("invalid port `{p}` in the database URL `{text}`")),
            },
        };
        let host_ok = !host.is_empty()
            && (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_ok()
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !host_ok {
            return err(format!(
                "invalid host `{host}` in the database URL `{text}`"
            ));
        }
        if !is_pg_name(userinfo) || !is_pg_name(dbname) {
            return err(format!(
                "invalid database URL `{text}`: the user and the database are 1 to 63 \
                 letters, digits, `_`, `-` or `.`"
            ));
        }
        Ok(PgUrl {
            user: userinfo.to_owned(),
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            sslmode,
            text,
        })
    }
}

impl FromStr for PgUrl {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<PgUrl> for String {
    fn from(u: PgUrl) -> String {
        u.text
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One letter of a queue group's ticket series (`A` gives tickets A001, A002, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupLetter(char);

impl GroupLetter {
    /// The letter, always an ASCII uppercase letter.
    pub fn as_char(self) -> char {
        self.0
    }
}

impl TryFrom<String> for GroupLetter {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_uppercase() => Ok(Self(c)),
            _ => err(format!(
                "invalid ticket letter `{s}`: use one uppercase ASCII letter, like `A`"
            )),
        }
    }
}

impl TryFrom<char> for GroupLetter {
    type Error = ValueError;
    fn try_from(c: char) -> Result<Self, ValueError> {
        Self::try_from(c.to_string())
    }
}

impl From<GroupLetter> for String {
    fn from(l: GroupLetter) -> String {
        l.0.to_string()
    }
}

impl fmt::Display for GroupLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A time of day, minute precision; `"HH:MM"` in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HhMm {
    minute_of_day: u16,
}

impl HhMm {
    /// Builds a time of day; `None` unless `hour < 24` and `minute < 60`.
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then(|| Self {
            minute_of_day: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    /// Minutes since midnight, `0..1440`.
    pub fn minute_of_day(self) -> u16 {
        self.minute_of_day
    }

    fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.split_once(':')?;
        if h.len() != 2 || m.len() != 2 || !(h.chars().chain(m.chars())).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        Self::new(h.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for HhMm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

impl TryFrom<String> for HhMm {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        match Self::parse(&s) {
            Some(t) => Ok(t),
            None => err(format!(
                "invalid time `{s}`: use `HH:MM` in 24-hour time, like `02:30`"
            )),
        }
    }
}

impl FromStr for HhMm {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<HhMm> for String {
    fn from(t: HhMm) -> String {
        t.to_string()
    }
}

/// A daily time window `"HH:MM-HH:MM"`, e.g. `"22:00-06:00"`; it may wrap past
/// midnight. Start and end differ, so the window is never empty nor the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HhMmRange {
    /// First minute inside the window.
    pub start: HhMm,
    /// First minute after the window.
    pub end: HhMm,
}

impl HhMmRange {
    /// Whether the time of day (minutes since midnight) falls in the window.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        let (s, e) = (self.start.minute_of_day, self.end.minute_of_day);
        if s < e {
            (s..e).contains(&minute_of_day)
        } else {
            minute_of_day >= s || minute_of_day < e
        }
    }
}

impl TryFrom<String> for HhMmRange {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let parsed = s
            .split_once('-')
            .and_then(|(a, b)| Some((HhMm::parse(a)?, HhMm::parse(b)?)));
        match parsed {
            Some((start, end)) if start != end => Ok(Self { start, end }),
            Some(_) => err(format!(
                "invalid time window `{s}`: start and end are equal; leave the key out \
                 for no window"
            )),
            None => err(format!(
                "invalid time window `{s}`: use `HH:MM-HH:MM` in 24-hour time, like `22:00-06:00`"
            )),
        }
    }
}

impl FromStr for HhMmRange {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<HhMmRange> for String {
    fn from(r: HhMmRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for HhMmRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Which digits numbers are shown with (ticket numbers, amounts, dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Digits {
    /// ٠١٢٣٤٥٦٧٨٩
    #[default]
    ArabicIndic,
    /// 0123456789
    Western,
}

/// A user-interface language: the one enum config, the web stack, node and hub use.
pub use markaz_ids::Lang;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines, for development.
    #[default]
    Pretty,
    /// One JSON object per line, for production.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn receipt_prefix_is_two_to_five_capitals() {
        assert!(ReceiptPrefix::from_str("MDN").is_ok());
        assert!(ReceiptPrefix::from_str("AB").is_ok());
        assert!(ReceiptPrefix::from_str("ABCDEF").is_err());
        assert!(ReceiptPrefix::from_str("A").is_err());
        assert!(ReceiptPrefix::from_str("Mdn").is_err());
    }

    #[test]
    fn phone_is_e164() {
        assert!(PhoneNumber::from_str("+963944123456").is_ok());
        assert!(PhoneNumber::from_str("0944123456").is_err());
        assert!(PhoneNumber::from_str("+0944123456").is_err());
        assert!(PhoneNumber::from_str("+963 944 123 456").is_err());
    }

    #[test]
    fn time_window_parses_and_wraps_midnight() {
        let r = HhMmRange::from_str("22:00-06:00").unwrap();
        assert!(r.contains(23 * 60));
        assert!(r.contains(0));
        assert!(r.contains(5 * 60 + 59));
        assert!(!r.contains(6 * 60));
        assert!(!r.contains(12 * 60));
        let day = HhMmRange::from_str("08:30-14:00").unwrap();
        assert!(day.contains(8 * 60 + 30) && !day.contains(14 * 60) && !day.contains(60));
        assert_eq!(r.to_string(), "22:00-06:00");
        for bad in [
            "22:00",
            "24:00-01:00",
            "2:00-06:00",
            "22:00-22:00",
            "22:60-01:00",
            "aa:bb-cc:dd",
        ] {
            assert!(HhMmRange::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_url_parts() {
        let parts = |s: &str| {
            let u = HttpsUrl::from_str(s).unwrap();
            (u.host().to_owned(), u.port())
        };
        assert_eq!(parts("https://127.0.0.1:8443"), ("127.0.0.1".into(), 8443));
        assert_eq!(
            parts("https://hub.damascus.example/"),
            ("hub.damascus.example".into(), 443)
        );
        assert_eq!(parts("https://[::1]:9/x"), ("::1".into(), 9));
        assert_eq!(parts("https://[::1]"), ("::1".into(), 443));
        for bad in [
            "http://hub",
            "https://hub:x",
            "https://",
            "https://a b",
            "https://hub:0",
        ] {
            assert!(HttpsUrl::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_port_parts() {
        let hp = HostPort::from_str("hub.example.org:8443").unwrap();
        assert_eq!((hp.host(), hp.port()), ("hub.example.org", 8443));
        assert!(HostPort::from_str("[::1]:443").is_ok());
        for bad in ["hub", ":443", "hub:0", "hub:70000", "h b:1", "[zz]:1"] {
            assert!(HostPort::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zone_suggests_a_close_name() {
        assert!(TimeZoneName::from_str("Asia/Damascus").is_ok());
        let e = TimeZoneName::from_str("Asia/Damscus").unwrap_err();
        assert!(e.0.contains("`Asia/Damascus`"), "{e}");
    }

    #[test]
    fn log_filter_directives() {
        for ok in [
            "info",
            "WARN",
            "info,markaz_node=debug",
            "tower_http::trace=off",
        ] {
            assert!(LogFilter::from_str(ok).is_ok(), "{ok}");
        }
        for bad in ["", "loud", "info,=debug", "a b=info"] {
            assert!(LogFilter::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_url() {
        assert!(HttpsUrl::from_str("https://127.0.0.1:8443").is_ok());
        assert!(HttpsUrl::from_str("https://hub.example.org/markaz").is_ok());
        assert!(HttpsUrl::from_str("http://hub.example.org").is_err());
        assert!(HttpsUrl::from_str("https://").is_err());
    }

    #[test]
    fn pg_urls_are_parsed_once_and_never_carry_a_password() {
        let u = PgUrl::from_str("postgres://markaz@127.0.0.1:5433/markaz_hub").unwrap();
        assert_eq!(
            (u.user(), u.host(), u.port(), u.dbname()),
            ("markaz", "127.0.0.1", 5433, "markaz_hub")
        );
        let d = PgUrl::from_str("postgresql://markaz@db.example.org/markaz").unwrap();
        assert_eq!(d.port(), 5432);
        let v6 = PgUrl::from_str("postgres://markaz@[::1]:5432/markaz").unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(
            u.with_dbname("t1").as_str(),
            "postgres://markaz@127.0.0.1:5433/t1"
        );
        let e = PgUrl::from_str("postgres://markaz:secret@127.0.0.1/markaz").unwrap_err();
        assert!(e.0.contains("password_file"), "{e}");
        assert!(!e.0.contains("secret"), "the password is not echoed: {e}");
        for bad in [
            "mysql://markaz@h/db",
            "postgres://127.0.0.1/markaz",
            "postgres://markaz@127.0.0.1",
            "postgres://markaz@127.0.0.1:0/markaz",
            "postgres://markaz@127.0.0.1:99999/markaz",
            "postgres://markaz@127.0.0.1/markaz?sslmode=always",
            "postgres://markaz@127.0.0.1/markaz?application_name=x",
            "postgres://markaz@/markaz",
            "postgres://mar kaz@h/markaz",
        ] {
            assert!(PgUrl::from_str(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn time_window_round_trips(a in 0u16..1440, b in 0u16..1440) {
            prop_assume!(a != b);
            let s = format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60);
            let r = HhMmRange::from_str(&s).unwrap();
            prop_assert_eq!(r.to_string(), s);
            prop_assert!(r.contains(a));
            prop_assert!(!r.contains(b));
        }

        #[test]
        fn value_parsers_never_panic(s in "\\PC{0,40}") {
            let _ = HhMmRange::from_str(&s);
            let _ = HostPort::from_str(&s);
            let _ = HttpsUrl::from_str(&s);
            let _ = PgUrl::from_str(&s);
            let _ = LogFilter::from_str(&s);
            let _ = PhoneNumber::from_str(&s);
            let _ = GroupLetter::try_from(s.clone());
        }
    }
}
