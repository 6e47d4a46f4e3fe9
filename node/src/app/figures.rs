//! What the supervisor watches and counts (issue #15.10): the live board — who serves at
//! which counter, the longest waits, the tickets waiting beyond their group's target
//! (`[[queue.groups]] target_wait_minutes`, default 20) — and the figures of a day or a
//! range of days per day, per service group, per service and per clerk, with their CSV.
//!
//! A ticket's day is its `day` column (the center's local date at issue). A case's and a
//! payment's day is the local date of its timestamp, computed here in the center's time
//! zone: stored timestamps carry a variable number of fraction digits, which text order
//! does not compare well, so rows are read with bounds a day wider and filtered exactly.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::params;
use serde::Serialize;

use markaz_sync::model::staff::Capability;

use super::reports::QueueFigures;
use super::{Actor, App};
use crate::error::AppError;

/// The longest range of days one figures request may cover.
pub const MAX_RANGE_DAYS: i32 = 366;

/// One counter on the live board.
#[derive(Debug, Clone, Serialize)]
pub struct CounterNow {
    pub counter: u32,
    /// The ticket being served, if any.
    pub ticket: Option<String>,
    pub group: Option<String>,
    /// Since when (ms) the current ticket was called.
    pub called_ms: Option<i64>,
    /// Who called at this counter last today (username and name).
    pub clerk: Option<String>,
    pub clerk_name: Option<String>,
    /// Tickets finished at this counter today.
    pub served_today: u32,
}

/// A waiting ticket on the live board.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub number: String,
    pub group: String,
    pub priority: String,
    pub issued_ms: i64,
    pub wait_secs: i64,
    pub target_minutes: u32,
    pub beyond_target: bool,
}

/// The live board.
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub counters: Vec<CounterNow>,
    /// The longest-waiting tickets, longest first (at most [`Board::LONGEST`]).
    pub longest: Vec<Waiting>,
    /// Every ticket waiting longer than its group's target, longest first.
    pub beyond_target: Vec<Waiting>,
    pub waiting_total: u32,
    /// Tickets called today after waiting longer than their target.
    pub called_late_today: u32,
}

impl Board {
    pub const LONGEST: usize = 10;
}

/// A range of local days, both ends included, at most [`MAX_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayRange {
    pub from: Date,
    pub to: Date,
}

/// Why a range of days was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("'{value}' is not a date like 2027-06-30")]
    BadDate { field: &'static str, value: String },
    #[error("the range ends ({to}) before it starts ({from})")]
    Reversed { from: Date, to: Date },
    #[error("a range covers at most {MAX_RANGE_DAYS} days")]
    TooLong,
}

impl RangeError {
    /// The query parameter at fault.
    pub fn field(&self) -> &'static str {
        match self {
            RangeError::BadDate { field, .. } => field,
            RangeError::Reversed { .. } | RangeError::TooLong => "to",
        }
    }
}

fn parse_date(field: &'static str, s: Option<&str>) -> Result<Option<Date>, RangeError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<Date>()
            .map(Some)
            // `2027-6-3` parses nowhere else; refuse it here too, so one spelling holds.
            .ok()
            .filter(|d| d.map(|d| d.to_string() == v).unwrap_or(false))
            .ok_or_else(|| RangeError::BadDate {
                field,
                value: v.chars().take(40).collect(),
            }),
    }
}

impl DayRange {
    /// `?day=` alone, or `?from=&to=` (a missing end is the other end; nothing is
    /// `today`). `day` wins over `from`/`to`.
    pub fn parse(
        day: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        today: Date,
    ) -> Result<DayRange, RangeError> {
        if let Some(d) = parse_date("day", day)? {
            return Ok(DayRange { from: d, to: d });
        }
        let from = parse_date("from", from)?;
        let to = parse_date("to", to)?;
        let (from, to) = match (from, to) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f),
            (None, Some(t)) => (t, t),
            (None, None) => (today, today),
        };
        if to < from {
            return Err(RangeError::Reversed { from, to });
        }
        if (to - from).get_days() >= MAX_RANGE_DAYS {
            return Err(RangeError::TooLong);
        }
        Ok(DayRange { from, to })
    }

    pub fn is_one_day(&self) -> bool {
        self.from == self.to
    }

    pub fn contains(&self, d: Date) -> bool {
        self.from <= d && d <= self.to
    }
}

/// Cases of one service in a range.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServiceFigures {
    pub service: String,
    pub opened: u32,
    /// Delivered or posted.
    pub finished: u32,
    /// Cancelled or rejected.
    pub dropped: u32,
    /// Fees of the cases opened in the range that were paid, in piastres.
    pub fees_paid: i64,
}

/// One clerk's work in a range.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClerkFigures {
    pub username: String,
    pub full_name: String,
    pub tickets_called: u32,
    pub tickets_finished: u32,
    /// Seconds from call to finish of the tickets this clerk finished.
    pub avg_service_secs: Option<i64>,
    pub cases_opened: u32,
    pub receipts: u32,
    /// Piastres taken in cash receipts.
    pub cash: i64,
}

/// The figures of a range of days.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub range: DayRange,
    /// Queue figures per day that had tickets (key: the date).
    pub by_day: Vec<QueueFigures>,
    /// Queue figures per service group over the range (key: the group id).
    pub by_group: Vec<QueueFigures>,
    pub total: QueueFigures,
    pub by_service: Vec<ServiceFigures>,
    pub by_clerk: Vec<ClerkFigures>,
}

const FIGURES: &str = "count(*),
    sum(state = 'done'),
    sum(state = 'no_show'),
    sum(state = 'waiting'),
    avg(CASE WHEN called_ms IS NOT NULL THEN (called_ms - issued_ms) / 1000 END),
    max(CASE WHEN called_ms IS NOT NULL THEN (called_ms - issued_ms) / 1000 END),
    avg(CASE WHEN state = 'done' THEN (done_ms - called_ms) / 1000 END)";

fn queue_figures(key: String, r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<QueueFigures> {
    Ok(QueueFigures {
        key,
        issued: r.get(at)?,
        served: r.get::<_, Option<u32>>(at + 1)?.unwrap_or(0),
        no_shows: r.get::<_, Option<u32>>(at + 2)?.unwrap_or(0),
        waiting_now: r.get::<_, Option<u32>>(at + 3)?.unwrap_or(0),
        avg_wait_secs: r.get::<_, Option<f64>>(at + 4)?.map(|v| v.round() as i64),
        max_wait_secs: r.get::<_, Option<i64>>(at + 5)?,
        avg_service_secs: r.get::<_, Option<f64>>(at + 6)?.map(|v| v.round() as i64),
    })
}

impl App {
    /// The supervisor's live board, now.
    pub async fn supervisor_board(&self, actor: &Actor) -> Result<Board, AppError> {
        actor.require(Capability::ViewReports)?;
        let day = self.today().to_string();
        let now_ms = self.now_ms();
        let counters: Vec<u32> = self.settings.counters.iter().map(|c| c.number).collect();
        let targets: BTreeMap<String, u32> = self
            .settings
            .groups
            .iter()
            .map(|g| (g.id.clone(), g.target_wait_minutes))
            .collect();
        self.db
            .readers
            .read(move |c| -> Result<Board, AppError> {
                let target_of = |g: &str| targets.get(g).copied().unwrap_or(20);
                let mut board_counters = Vec::new();
                for n in counters {
                    let current: Option<(String, String, i64)> = c
                        .query_row(
                            "SELECT number, group_id, called_ms FROM tickets
                             WHERE day = ?1 AND counter = ?2 AND state = 'called'
                             ORDER BY called_ms DESC LIMIT 1",
                            params![day, n],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .ok();
                    let clerk: Option<(String, String)> = c
                        .query_row(
                            "SELECT e.actor, coalesce(s.full_name, e.actor) FROM ticket_events e
                             JOIN tickets t ON t.id = e.ticket_id
                             LEFT JOIN staff s ON s.username = e.actor
                             WHERE t.day = ?1 AND e.counter = ?2 AND e.actor IS NOT NULL
                               AND e.action IN ('called', 'recalled')
                             ORDER BY e.at_ms DESC, e.id DESC LIMIT 1",
                            params![day, n],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .ok();
                    let served_today: u32 = c.query_row(
                        "SELECT count(*) FROM tickets WHERE day = ?1 AND counter = ?2 AND state = 'done'",
                        params![day, n],
                        |r| r.get(0),
                    )?;
                    board_counters.push(CounterNow {
                        counter: n,
                        ticket: current.as_ref().map(|x| x.0.clone()),
                        group: current.as_ref().map(|x| x.1.clone()),
                        called_ms: current.as_ref().map(|x| x.2),
                        clerk: clerk.as_ref().map(|x| x.0.clone()),
                        clerk_name: clerk.map(|x| x.1),
                        served_today,
                    });
                }
                let mut waiting: Vec<Waiting> = c
                    .prepare(
                        "SELECT number, group_id, priority, issued_ms FROM tickets
                         WHERE day = ?1 AND state = 'waiting' ORDER BY issued_ms, id",
                    )?
                    .query_map([&day], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                    })?
                    .map(|row| {
                        row.map(|(number, group, priority, issued_ms)| {
                            let target_minutes = target_of(&group);
                            let wait_secs = ((now_ms - issued_ms) / 1000).max(0);
                            Waiting {
                                number,
                                group,
                                priority,
                                issued_ms,
                                wait_secs,
                                target_minutes,
                                beyond_target: wait_secs > i64::from(target_minutes) * 60,
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?;
                waiting.sort_by_key(|w| std::cmp::Reverse(w.wait_secs));
                let called: Vec<(String, i64)> = c
                    .prepare(
                        "SELECT group_id, called_ms - issued_ms FROM tickets
                         WHERE day = ?1 AND called_ms IS NOT NULL",
                    )?
                    .query_map([&day], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let called_late_today = called
                    .iter()
                    .filter(|(g, ms)| *ms > i64::from(target_of(g)) * 60_000)
                    .count() as u32;
                Ok(Board {
                    counters: board_counters,
                    waiting_total: waiting.len() as u32,
                    beyond_target: waiting.iter().filter(|w| w.beyond_target).cloned().collect(),
                    longest: waiting.into_iter().take(Board::LONGEST).collect(),
                    called_late_today,
                })
            })
            .await
    }

    /// The figures of a range of days.
    pub async fn figures(&self, actor: &Actor, range: DayRange) -> Result<Figures, AppError> {
        actor.require(Capability::ViewReports)?;
        let tz = self.settings.timezone.clone();
        let bound = |d: Date| -> Result<Timestamp, AppError> {
            d.to_zoned(tz.clone())
                .map(|z| z.timestamp())
                .map_err(|e| AppError::Internal(format!("day {d}: {e}")))
        };
        let day_wide = jiff::Span::new().hours(48);
        let lo = (bound(range.from)? - day_wide).to_string();
        let hi = (bound(range.to)? + day_wide).to_string();
        let (from, to) = (range.from.to_string(), range.to.to_string());
        self.db
            .readers
            .read(move |c| -> Result<Figures, AppError> {
                let in_range = |at: &str| {
                    at.parse::<Timestamp>()
                        .map(|t| range.contains(t.to_zoned(tz.clone()).date()))
                        .unwrap_or(false)
                };
                let by_day = c
                    .prepare(&format!("SELECT day, {FIGURES} FROM tickets WHERE day BETWEEN ?1 AND ?2 GROUP BY day ORDER BY day"))?
                    .query_map([&from, &to], |r| queue_figures(r.get(0)?, r, 1))?
                    .collect::<Result<Vec<_>, _>>()?;
                let by_group = c
                    .prepare(&format!("SELECT original_group, {FIGURES} FROM tickets WHERE day BETWEEN ?1 AND ?2 GROUP BY original_group ORDER BY original_group"))?
                    .query_map([&from, &to], |r| queue_figures(r.get(0)?, r, 1))?
                    .collect::<Result<Vec<_>, _>>()?;
                let total = c.query_row(
                    &format!("SELECT {FIGURES} FROM tickets WHERE day BETWEEN ?1 AND ?2"),
                    [&from, &to],
                    |r| queue_figures("total".into(), r, 0),
                )?;

                // Per service: the cases opened in the range.
                let mut services: BTreeMap<String, ServiceFigures> = BTreeMap::new();
                let mut clerks: BTreeMap<String, ClerkFigures> = BTreeMap::new();
                let rows: Vec<(String, String, String, i64, bool, String)> = c
                    .prepare(
                        "SELECT service_code, status, created_at, fee_total, payment IS NOT NULL, created_by
                         FROM cases WHERE created_at >= ?1 AND created_at < ?2",
                    )?
                    .query_map([&lo, &hi], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (service, status, at, fee, paid, by) in rows {
                    if !in_range(&at) {
                        continue;
                    }
                    let s = services.entry(service.clone()).or_insert_with(|| ServiceFigures {
                        service,
                        ..Default::default()
                    });
                    s.opened += 1;
                    match status.as_str() {
                        "delivered" | "posted" => s.finished += 1,
                        "cancelled" | "rejected" => s.dropped += 1,
                        _ => {}
                    }
                    if paid {
                        s.fees_paid += fee;
                    }
                    clerks.entry(by).or_default().cases_opened += 1;
                }

                // Per clerk: tickets called and finished (by the ticket's day), cash taken.
                let events: Vec<(String, String, Option<i64>)> = c
                    .prepare(
                        "SELECT e.actor, e.action,
                                CASE WHEN e.action = 'finished' THEN t.done_ms - t.called_ms END
                         FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
                         WHERE t.day BETWEEN ?1 AND ?2 AND e.actor IS NOT NULL
                           AND e.action IN ('called', 'finished')",
                    )?
                    .query_map([&from, &to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                let mut service_ms: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                for (who, action, ms) in events {
                    let k = clerks.entry(who.clone()).or_default();
                    if action == "called" {
                        k.tickets_called += 1;
                    } else {
                        k.tickets_finished += 1;
                        if let Some(ms) = ms {
                            let e = service_ms.entry(who).or_default();
                            e.0 += ms;
                            e.1 += 1;
                        }
                    }
                }
                let paid: Vec<(String, String, i64)> = c
                    .prepare(
                        "SELECT e.actor, e.at, cs.fee_total FROM case_events e
                         JOIN cases cs ON cs.case_no = e.case_no
                         WHERE e.kind = 'paid' AND e.at >= ?1 AND e.at < ?2",
                    )?
                    .query_map([&lo, &hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                for (who, at, fee) in paid {
                    if in_range(&at) {
                        let k = clerks.entry(who).or_default();
                        k.receipts += 1;
                        k.cash += fee;
                    }
                }
                let mut by_clerk = Vec::new();
                for (username, mut k) in clerks {
                    k.full_name = c
                        .query_row("SELECT full_name FROM staff WHERE username = ?1", [&username], |r| r.get(0))
                        .unwrap_or_else(|_| username.clone());
                    k.avg_service_secs = service_ms
                        .get(&username)
                        .filter(|(_, n)| *n > 0)
                        .map(|(ms, n)| (*ms as f64 / *n as f64 / 1000.0).round() as i64);
                    k.username = username;
                    by_clerk.push(k);
                }
                Ok(Figures {
                    range,
                    by_day,
                    by_group,
                    total,
                    by_service: services.into_values().collect(),
                    by_clerk,
                })
            })
            .await
    }
}

/// Seconds as minutes with one decimal, for a spreadsheet; empty when unknown.
fn minutes(secs: Option<i64>) -> String {
    secs.map(|s| format!("{:.1}", s as f64 / 60.0))
        .unwrap_or_default()
}

fn money(p: i64) -> String {
    let sign = if p < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", p.abs() / 100, p.abs() % 100)
}

/// One CSV field, quoted; a leading = + - @ would be a formula in a spreadsheet.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The figures as CSV for a spreadsheet: UTF-8 with a byte-order mark (so Excel reads
/// Arabic names right), CRLF line ends, one table per section, each with its header row
/// and separated by an empty line. `name` gives the display name of a group, service or
/// clerk key.
pub fn figures_csv(f: &Figures, name: impl Fn(&str, &str) -> String) -> String {
    let mut out = String::from("\u{feff}");
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(vec!["from".into(), "to".into()]);
    line(vec![f.range.from.to_string(), f.range.to.to_string()]);
    line(vec![]);
    let queue_head = |first: &str| {
        vec![
            first.to_string(),
            "name".into(),
            "issued".into(),
            "served".into(),
            "no_shows".into(),
            "waiting".into(),
            "avg_wait_min".into(),
            "max_wait_min".into(),
            "avg_service_min".into(),
        ]
    };
    let queue_row = |key: &str, name: String, q: &QueueFigures| {
        vec![
            field(key),
            field(&name),
            q.issued.to_string(),
            q.served.to_string(),
            q.no_shows.to_string(),
            q.waiting_now.to_string(),
            minutes(q.avg_wait_secs),
            minutes(q.max_wait_secs),
            minutes(q.avg_service_secs),
        ]
    };
    line(queue_head("day"));
    for q in &f.by_day {
        line(queue_row(&q.key, String::new(), q));
    }
    line(queue_row("total", String::new(), &f.total));
    line(vec![]);
    line(queue_head("group"));
    for q in &f.by_group {
        line(queue_row(&q.key, name("group", &q.key), q));
    }
    line(vec![]);
    line(
        [
            "service",
            "name",
            "opened",
            "finished",
            "dropped",
            "fees_paid",
        ]
        .map(String::from)
        .to_vec(),
    );
    for s in &f.by_service {
        line(vec![
            field(&s.service),
            field(&name("service", &s.service)),
            s.opened.to_string(),
            s.finished.to_string(),
            s.dropped.to_string(),
            money(s.fees_paid),
        ]);
    }
    line(vec![]);
    line(
        [
            "clerk",
            "name",
            "tickets_called",
            "tickets_finished",
            "avg_service_min",
            "cases_opened",
            "receipts",
            "cash",
        ]
        .map(String::from)
        .to_vec(),
    );
    for k in &f.by_clerk {
        line(vec![
            field(&k.username),
            field(&k.full_name),
            k.tickets_called.to_string(),
            k.tickets_finished.to_string(),
            minutes(k.avg_service_secs),
            k.cases_opened.to_string(),
            k.receipts.to_string(),
            money(k.cash),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_strictly() {
        let today = d("2026-12-03");
        let one = |x| DayRange::parse(Some(x), None, None, today);
        assert_eq!(
            one("2026-11-30"),
            Ok(DayRange {
                from: d("2026-11-30"),
                to: d("2026-11-30")
            })
        );
        assert_eq!(
            DayRange::parse(None, None, None, today).unwrap(),
            DayRange {
                from: today,
                to: today
            }
        );
        assert_eq!(
            DayRange::parse(Some(" "), Some("2026-11-01"), Some("2026-11-30"), today).unwrap(),
            DayRange {
                from: d("2026-11-01"),
                to: d("2026-11-30")
            }
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "03/12/2026",
            "2026-1-5",
            "yesterday",
        ] {
            let e = one(bad).unwrap_err();
            assert_eq!(e.field(), "day", "{bad}");
            assert!(e.to_string().contains("is not a date"), "{bad}: {e}");
        }
        assert!(matches!(
            DayRange::parse(None, Some("2026-12-02"), Some("2026-12-01"), today),
            Err(RangeError::Reversed { .. })
        ));
        assert_eq!(
            DayRange::parse(None, Some("2025-01-01"), Some("2026-12-01"), today),
            Err(RangeError::TooLong)
        );
        assert_eq!(
            DayRange::parse(None, Some("x"), None, today)
                .unwrap_err()
                .field(),
            "from"
        );
    }

    #[test]
    fn csv_has_a_bom_quotes_names_and_defuses_formulas() {
        let f = Figures {
            range: DayRange {
                from: d("2026-12-01"),
                to: d("2026-12-03"),
            },
            by_day: vec![],
            by_group: vec![QueueFigures {
                key: "civil".into(),
                issued: 3,
                ..Default::default()
            }],
            total: QueueFigures {
                key: "total".into(),
                issued: 3,
                ..Default::default()
            },
            by_service: vec![ServiceFigures {
                service: "birth".into(),
                opened: 2,
                fees_paid: 150_050,
                ..Default::default()
            }],
            by_clerk: vec![ClerkFigures {
                username: "rami".into(),
                full_name: "=رامي \"الأول\"".into(),
                avg_service_secs: Some(90),
                ..Default::default()
            }],
        };
        let csv = figures_csv(&f, |kind, key| format!("{kind}:{key}"));
        assert!(csv.starts_with("\u{feff}from,to\r\n2026-12-01,2026-12-03\r\n"));
        assert!(
            csv.contains("\"civil\",\"group:civil\",3,0,0,0,,,\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\"birth\",\"service:birth\",2,0,0,1500.50\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\"rami\",\"'=رامي \"\"الأول\"\"\",0,0,1.5,0,0,0.00\r\n"),
            "{csv}"
        );
    }
}
