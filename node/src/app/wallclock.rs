//! Whether the box's wall clock can be trusted with the year of a case number.
//!
//! A case number carries the year (`MDN-2026-000124`), printed on the citizen's receipt.
//! A box whose clock is two years ahead would hand out `MDN-2028-…`; one that woke up in
//! 1970 (no clock battery) cannot number at all. The wall clock is compared with, in this
//! order of trust:
//! 1. the mobile network's time read from the modem (`AT+CCLK?`), when recent;
//! 2. the hub's time, measured by the last sync session (NTP-style skew), when the
//!    session is recent and the wall clock has not gone back since;
//! 3. the last stamp in the database (the hybrid logical clock's wall part).
//!
//! [`judge`] is pure (evidence in, verdict out). Rules:
//! - a clock before [`FLOOR`] (before this release existed) is not set: numbering is
//!   refused, whatever a technician says, with an error that says why;
//! - a clock more than [`TOLERANCE`] away from the network's or the hub's time is wrong
//!   (a warning on the technician page and in the log); if its year differs from theirs,
//!   cases are not numbered until the clock is corrected or a technician confirms the
//!   clock's year (`POST /technician/clock/confirm`);
//! - with neither, a clock behind the last stamp, or more than [`LONG_GAP`] ahead of it,
//!   in another year, is refused the same way until confirmed.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use markaz_sync::model::staff::Capability;

use super::{Actor, App, audit, node_log};
use crate::error::AppError;

/// How far the wall clock may be from the network's or the hub's time.
pub const TOLERANCE: SignedDuration = SignedDuration::from_mins(5);
/// A wall clock this far ahead of the last stamp, with nothing else to compare with, is
/// suspect when it changes the year.
pub const LONG_GAP: SignedDuration = SignedDuration::from_hours(180 * 24);
/// A hub measurement older than this (by the wall clock) is not used.
pub const HUB_MAX_AGE: SignedDuration = SignedDuration::from_hours(7 * 24);
/// A modem reading older than this is not used.
pub const MODEM_MAX_AGE: SignedDuration = SignedDuration::from_hours(24);
/// No box running this release can truly be before this instant.
pub const FLOOR: Timestamp = Timestamp::constant(1_767_225_600, 0); // 2026-01-01T00:00:00Z
/// `meta` key: the wall-clock year a technician confirmed as right.
pub const CONFIRMED_YEAR_KEY: &str = "clock.confirmed_year";

/// Where a reference time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The mobile network's time, read from the modem.
    Network,
    /// The hub's time, measured by the last sync session.
    Hub,
    /// The last stamp stored in the database.
    LastStamp,
}

impl Source {
    fn words(self) -> &'static str {
        match self {
            Source::Network => "the mobile network's time",
            Source::Hub => "the hub's time",
            Source::LastStamp => "the last event recorded here",
        }
    }
}

/// What the clock is compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub wall: Timestamp,
    /// The network's time now (from the modem).
    pub network: Option<Timestamp>,
    /// The hub's time now (wall + the last measured skew).
    pub hub: Option<Timestamp>,
    /// The wall part of the last stamp stored here.
    pub last_stamp: Option<Timestamp>,
    /// The wall-clock year a technician confirmed.
    pub confirmed_year: Option<i16>,
}

/// The verdict: what the technician page shows and what numbering obeys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockCheck {
    /// Nothing to report.
    pub ok: bool,
    pub wall: String,
    /// What the clock was compared with, and its time.
    pub reference: Option<Source>,
    pub reference_time: Option<String>,
    /// Wall clock minus reference, in seconds (positive: the clock is ahead).
    pub offset_seconds: Option<i64>,
    /// The problem in plain words (`None` when ok).
    pub problem: Option<String>,
    /// Why cases are not numbered now (`None`: they are).
    pub numbering_refused: Option<String>,
    /// The clock was never set (before [`FLOOR`]); a confirmation does not help.
    pub not_set: bool,
    /// A technician confirmed this year.
    pub confirmed_year: Option<i16>,
}

fn year(t: Timestamp, tz: &TimeZone) -> i16 {
    t.to_zoned(tz.clone()).year()
}

fn human(d: SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// Judges the wall clock from `e` (see the module documentation).
pub fn judge(e: &Evidence, tz: &TimeZone) -> ClockCheck {
    let mut out = ClockCheck {
        ok: true,
        wall: e.wall.to_string(),
        reference: None,
        reference_time: None,
        offset_seconds: None,
        problem: None,
        numbering_refused: None,
        not_set: false,
        confirmed_year: e.confirmed_year,
    };
    let wall_year = year(e.wall, tz);
    if e.wall < FLOOR {
        out.ok = false;
        out.not_set = true;
        out.problem = Some(format!(
            "the clock says {}, before this software existed: it was never set (a box without a clock battery wakes up in 1970)",
            e.wall.strftime("%Y-%m-%d %H:%M")
        ));
        out.numbering_refused = Some(format!(
            "case numbers carry the year, and the clock says {wall_year}: set the clock (a sync with the hub or the modem's network time shows the right time), then try again"
        ));
        return out;
    }
    let refuse = |other: i16, source: Source| -> Option<String> {
        (other != wall_year && e.confirmed_year != Some(wall_year)).then(|| {
            format!(
                "the clock says the year is {wall_year} but {} says {other}: cases are not numbered in {wall_year} until the clock is corrected or a technician confirms it on the technician page",
                source.words()
            )
        })
    };
    let reference = e
        .network
        .map(|t| (Source::Network, t))
        .or(e.hub.map(|t| (Source::Hub, t)));
    if let Some((source, r)) = reference {
        let off = e.wall.duration_since(r);
        out.reference = Some(source);
        out.reference_time = Some(r.to_string());
        out.offset_seconds = Some(off.as_secs());
        if off.abs() > TOLERANCE {
            out.ok = false;
            out.problem = Some(format!(
                "the clock is {} {} {} ({})",
                human(off),
                if off.is_positive() {
                    "ahead of"
                } else {
                    "behind"
                },
                source.words(),
                r.strftime("%Y-%m-%d %H:%M UTC")
            ));
            out.numbering_refused = refuse(year(r, tz), source);
        }
        return out;
    }
    if let Some(l) = e.last_stamp {
        let off = e.wall.duration_since(l);
        out.reference = Some(Source::LastStamp);
        out.reference_time = Some(l.to_string());
        out.offset_seconds = Some(off.as_secs());
        if off < -TOLERANCE {
            out.ok = false;
            out.problem = Some(format!(
                "the clock says {}, {} before {} ({}); no hub or network time to compare with",
                e.wall.strftime("%Y-%m-%d %H:%M UTC"),
                human(off),
                Source::LastStamp.words(),
                l.strftime("%Y-%m-%d %H:%M UTC")
            ));
            out.numbering_refused = refuse(year(l, tz), Source::LastStamp);
        } else if off > LONG_GAP && year(l, tz) != wall_year {
            out.ok = false;
            out.problem = Some(format!(
                "the clock says {}, {} after {} ({}); no hub or network time to compare with",
                e.wall.strftime("%Y-%m-%d %H:%M UTC"),
                human(off),
                Source::LastStamp.words(),
                l.strftime("%Y-%m-%d %H:%M UTC")
            ));
            out.numbering_refused = refuse(year(l, tz), Source::LastStamp);
        }
    }
    out
}

/// The evidence stored in the database: the last stamp, the hub's time from the last
/// sync session that measured it, the confirmed year. `network` comes from the modem.
pub fn evidence(
    c: &Connection,
    wall: Timestamp,
    network: Option<Timestamp>,
) -> rusqlite::Result<Evidence> {
    let meta = |key: &str| -> rusqlite::Result<Option<String>> {
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    };
    let last_stamp = meta("hlc")?
        .and_then(|s| markaz_sync::hlc::HlcStamp::parse(&s).ok())
        .and_then(|h| Timestamp::from_millisecond(i64::try_from(h.wall_ms).ok()?).ok())
        .filter(|t| *t > Timestamp::UNIX_EPOCH);
    let confirmed_year = meta(CONFIRMED_YEAR_KEY)?.and_then(|s| s.parse().ok());
    let measured: Option<(i64, String)> = c
        .query_row(
            "SELECT skew_ms, ended_at FROM sync_sessions WHERE skew_ms IS NOT NULL
             ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    // The skew holds only while the wall clock has not jumped since it was measured: a
    // session "ended" in the future of the wall clock means it went back since.
    let hub = measured.and_then(|(skew, ended)| {
        let ended: Timestamp = ended.parse().ok()?;
        let age = wall.duration_since(ended);
        if age >= -TOLERANCE && age <= HUB_MAX_AGE {
            wall.checked_add(SignedDuration::from_millis(skew)).ok()
        } else {
            None
        }
    });
    Ok(Evidence {
        wall,
        network,
        hub,
        last_stamp,
        confirmed_year,
    })
}

/// The network's time now from a modem reading (`read_at` by the system clock), when the
/// reading is recent.
pub fn network_now(network: Timestamp, read_at: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let age = now.duration_since(read_at);
    if age < SignedDuration::ZERO || age > MODEM_MAX_AGE {
        return None;
    }
    network.checked_add(age).ok()
}

/// How often the clock watch looks again (and logs a change of verdict).
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl App {
    /// The network's time now, from the modem's last recent `AT+CCLK?` reading.
    pub fn network_time_now(&self) -> Option<Timestamp> {
        let nt = self.devices.modem_status().borrow().network_time?;
        network_now(nt.network, nt.read_at, Timestamp::now())
    }

    /// The clock's verdict now (the `clock` field of `GET /status`).
    pub async fn clock_check(&self) -> Result<ClockCheck, AppError> {
        let wall = self.now();
        let network = self.network_time_now();
        let tz = self.settings.timezone.clone();
        self.db
            .readers
            .read(move |c| -> Result<_, AppError> { Ok(judge(&evidence(c, wall, network)?, &tz)) })
            .await
    }

    /// `POST /technician/clock/confirm`: a technician says the clock's year is right, and
    /// cases are numbered in it although the network, the hub or the last stamp disagree.
    /// A clock that was never set cannot be confirmed.
    pub async fn technician_confirm_clock(&self, actor: &Actor) -> Result<ClockCheck, AppError> {
        actor.require(Capability::TechnicalActions)?;
        let check = self.clock_check().await?;
        if check.not_set {
            return Err(AppError::Conflict {
                code: "clock_not_set",
                message: check.problem.unwrap_or_default(),
            });
        }
        let at = self.now();
        let year = self.local_now().year();
        let who = actor.clone();
        let problem = check.problem.clone().unwrap_or_else(|| "none".into());
        self.db
            .writer
            .write(move |tx| -> Result<(), AppError> {
                let c = tx.conn;
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    rusqlite::params![CONFIRMED_YEAR_KEY, year.to_string()],
                )?;
                audit(
                    c,
                    at,
                    &who,
                    "technician.clock_confirm",
                    "clock",
                    serde_json::json!({"year": year, "problem": problem}),
                )?;
                node_log(
                    c,
                    at,
                    "warn",
                    "clock",
                    &format!(
                        "{} confirmed the clock ({}): cases are numbered in {year}; problem seen: {problem}",
                        who.username, at
                    ),
                )
            })
            .await?;
        tracing::warn!(year, by = %actor.username, "a technician confirmed the clock's year");
        self.clock_check().await
    }
}

/// Logs the clock's verdict when it changes (in the log and the node log the technician
/// page lists), every [`WATCH_EVERY`] until `cancel`.
pub async fn watch(app: App, cancel: tokio_util::sync::CancellationToken) {
    let mut last: Option<Option<String>> = None;
    loop {
        if let Ok(check) = app.clock_check().await {
            let now = check.problem.clone();
            if last.as_ref() != Some(&now) {
                match &now {
                    Some(p) => {
                        tracing::warn!(problem = %p, refused = ?check.numbering_refused, "the clock looks wrong");
                        let (p, at) = (p.clone(), app.now());
                        let _ = app
                            .db
                            .writer
                            .write(move |tx| node_log(tx.conn, at, "warn", "clock", &p))
                            .await;
                    }
                    None if last.is_some() => {
                        tracing::info!("the clock agrees with its references again")
                    }
                    None => {}
                }
                last = Some(now);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz() -> TimeZone {
        TimeZone::fixed(jiff::tz::offset(3))
    }

    fn at(wall: &str) -> Evidence {
        Evidence {
            wall: t(wall),
            ..Evidence::default()
        }
    }

    #[test]
    fn a_clock_agreeing_with_the_network_or_the_hub_is_ok() {
        let mut e = at("2026-12-03T10:00:00Z");
        e.network = Some(t("2026-12-03T10:01:00Z"));
        e.last_stamp = Some(t("2028-01-01T00:00:00Z"));
        let c = judge(&e, &tz());
        assert!(c.ok, "{c:?}");
        assert_eq!(c.reference, Some(Source::Network));
        let mut e = at("2026-12-03T10:00:00Z");
        e.hub = Some(t("2026-12-03T09:58:00Z"));
        assert!(judge(&e, &tz()).ok);
    }

    #[test]
    fn two_years_ahead_of_the_hub_is_refused_until_confirmed() {
        let mut e = at("2028-12-03T10:00:00Z");
        e.hub = Some(t("2026-12-03T10:00:00Z"));
        let c = judge(&e, &tz());
        assert!(!c.ok);
        assert!(
            c.problem
                .as_deref()
                .unwrap()
                .contains("ahead of the hub's time")
        );
        assert!(c.numbering_refused.as_deref().unwrap().contains("2028"));
        e.confirmed_year = Some(2028);
        let c = judge(&e, &tz());
        assert!(!c.ok, "still a warning");
        assert_eq!(c.numbering_refused, None, "confirmed");
    }

    #[test]
    fn a_small_offset_in_the_same_year_warns_without_refusing() {
        let mut e = at("2026-06-03T10:00:00Z");
        e.network = Some(t("2026-06-03T09:00:00Z"));
        let c = judge(&e, &tz());
        assert!(!c.ok);
        assert_eq!(c.offset_seconds, Some(3600));
        assert_eq!(c.numbering_refused, None);
    }

    #[test]
    fn a_box_in_1970_is_not_set_whatever_is_confirmed() {
        let mut e = at("1970-01-01T00:00:12Z");
        e.confirmed_year = Some(1970);
        let c = judge(&e, &tz());
        assert!(c.not_set);
        assert!(c.problem.as_deref().unwrap().contains("never set"));
        assert!(
            c.numbering_refused
                .as_deref()
                .unwrap()
                .contains("set the clock")
        );
    }

    #[test]
    fn without_network_or_hub_the_last_stamp_bounds_the_clock() {
        // Behind the last event, in an earlier year.
        let mut e = at("2026-03-01T00:00:00Z");
        e.last_stamp = Some(t("2027-02-01T00:00:00Z"));
        assert!(judge(&e, &tz()).numbering_refused.is_some());
        // Two years ahead of the last event.
        let mut e = at("2028-12-03T10:00:00Z");
        e.last_stamp = Some(t("2026-12-03T09:00:00Z"));
        assert!(judge(&e, &tz()).numbering_refused.is_some());
        // New Year's morning after a closed week: fine.
        let mut e = at("2027-01-02T06:00:00Z");
        e.last_stamp = Some(t("2026-12-24T12:00:00Z"));
        assert!(judge(&e, &tz()).ok);
    }

    #[test]
    fn a_modem_reading_ages_with_the_system_clock() {
        let n = network_now(
            t("2026-12-03T10:00:00Z"),
            t("2028-12-03T10:00:00Z"),
            t("2028-12-03T10:10:00Z"),
        );
        assert_eq!(n, Some(t("2026-12-03T10:10:00Z")));
        assert_eq!(
            network_now(
                t("2026-12-03T10:00:00Z"),
                t("2026-12-03T10:00:00Z"),
                t("2026-12-05T10:00:00Z")
            ),
            None
        );
    }
}
