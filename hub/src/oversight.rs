//! What the operator pages show, computed on the writer thread from the hub database:
//! the centers overview (from the sync sessions: last session, its uplink and result;
//! backlog = feed entries after the center's pull cursor; freshness = time since the last
//! session that ended well; an alarm when the backlog cannot drain, [`backlog_alarm`]),
//! the sync log's requests, the conflicts list, and the
//! oversight figures per center and service from the case documents (energy and queue
//! statistics: [`crate::energy`]).
//!
//! The figures are pure functions of the case views ([`tally`]), so they are tested
//! without a database.

use std::collections::BTreeMap;

use jiff::civil::Date;

use markaz_sync::docs::{self, CaseView, DocId};
use markaz_sync::model::case::{CaseEventKind, CaseStatus, Delivery, Resolution};
use markaz_sync::model::catalog::Service;
use serde::Serialize;

use crate::sessions::SyncSession;
use crate::storage::{CenterFacts, HubEngine, StorageError, SyncLogEntry};
use markaz_sync::protocol::contract::SessionResult;

/// One row of the centers overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CenterRow {
    pub center: String,
    /// Last request of the center's latest session.
    pub last_sync_ms: Option<i64>,
    /// Last request of its latest session whose last request succeeded.
    pub last_ok_ms: Option<i64>,
    /// The uplink (path) of the latest session.
    pub uplink: Option<String>,
    /// Result of the latest session: `ok`, `error` or `open`.
    pub last_result: Option<SessionResult>,
    /// Sessions recorded for the center.
    pub sessions: i64,
    pub feed_len: i64,
    pub cursor: i64,
    /// Changes waiting in the center's feed.
    pub backlog: i64,
    /// Milliseconds since the last successful sync (how old the hub's copy may be).
    pub freshness_ms: Option<i64>,
    pub skew_ms: Option<i64>,
    /// The backlog cannot drain (see [`backlog_alarm`]).
    pub alarm: Option<CenterAlarm>,
}

/// Why a center's backlog cannot drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum CenterAlarm {
    /// The center has read feed positions this hub never handed out: its database is
    /// older than what the center has seen. The hub recovers by itself at the center's
    /// next request (new epoch, the center repairs); this shows until then.
    CursorBeyondFeed { cursor: i64, feed_len: i64 },
    /// The center keeps syncing, but its last sessions took nothing from its feed.
    NotDraining { backlog: i64, sessions: usize },
}

impl CenterAlarm {
    /// `error` or `warn`, as logged.
    pub fn level(&self) -> &'static str {
        match self {
            CenterAlarm::CursorBeyondFeed { .. } => "error",
            CenterAlarm::NotDraining { .. } => "warn",
        }
    }

    pub fn message_en(&self) -> String {
        match self {
            CenterAlarm::CursorBeyondFeed { cursor, feed_len } => format!(
                "the center has read up to {cursor}, beyond this hub's feed ({feed_len}): \
                 the hub database is older than the center's — run `markaz hub restore` \
                 after restoring a backup"
            ),
            CenterAlarm::NotDraining { backlog, sessions } => format!(
                "{backlog} change(s) wait for this center and its last {sessions} sessions \
                 took none: see the sync log"
            ),
        }
    }

    pub fn message_ar(&self) -> String {
        match self {
            CenterAlarm::CursorBeyondFeed { cursor, feed_len } => format!(
                "قرأ المركز حتى {cursor}، أبعد من سجل المحور ({feed_len}): قاعدة بيانات المحور \
                 أقدم مما رآه المركز — شغّل `markaz hub restore` بعد الاستعادة من نسخة احتياطية"
            ),
            CenterAlarm::NotDraining { backlog, sessions } => format!(
                "{backlog} تغييرات تنتظر هذا المركز ولم تأخذ آخر {sessions} جلسات أياً منها: \
                 راجع سجل المزامنة"
            ),
        }
    }
}

/// Ended sessions in a row that took nothing from a non-empty feed before it is an alarm.
pub const NOT_DRAINING_SESSIONS: usize = 3;

/// Whether a center's backlog cannot drain, from its figures and its latest sessions
/// (newest first): its cursor is beyond the feed, or its last [`NOT_DRAINING_SESSIONS`]
/// ended sessions all began after its cursor last moved while entries wait. A center that
/// does not sync is not an alarm here (its freshness shows it).
pub fn backlog_alarm(f: &CenterFacts, recent: &[SyncSession]) -> Option<CenterAlarm> {
    if f.cursor > f.feed_len {
        return Some(CenterAlarm::CursorBeyondFeed {
            cursor: f.cursor,
            feed_len: f.feed_len,
        });
    }
    if f.backlog == 0 {
        return None;
    }
    let moved = f.cursor_ms.unwrap_or(i64::MIN);
    let ended: Vec<&SyncSession> = recent
        .iter()
        .filter(|s| s.result != SessionResult::Open)
        .take(NOT_DRAINING_SESSIONS)
        .collect();
    (ended.len() == NOT_DRAINING_SESSIONS && ended.iter().all(|s| s.started_ms > moved)).then_some(
        CenterAlarm::NotDraining {
            backlog: f.backlog,
            sessions: NOT_DRAINING_SESSIONS,
        },
    )
}

/// The centers overview: every center that registered or synced, from its sessions.
pub fn centers(e: &mut dyn HubEngine, now_ms: i64) -> Result<Vec<CenterRow>, StorageError> {
    let mut rows = Vec::new();
    for f in e.center_facts()? {
        // The open session (if any) and the ended ones the alarm looks at.
        let recent = e.sessions(Some(&f.center), now_ms, NOT_DRAINING_SESSIONS as u32 + 1)?;
        let last_result = recent.first().map(|s| s.result);
        let alarm = backlog_alarm(&f, &recent);
        rows.push(CenterRow {
            alarm,
            backlog: f.backlog,
            freshness_ms: f.last_ok_ms.map(|t| (now_ms - t).max(0)),
            center: f.center,
            last_sync_ms: f.last_sync_ms,
            last_ok_ms: f.last_ok_ms,
            uplink: f.uplink,
            last_result,
            sessions: f.sessions,
            feed_len: f.feed_len,
            cursor: f.cursor,
            skew_ms: f.skew_ms,
        });
    }
    Ok(rows)
}

/// A center on the modem for longer than this stands out.
pub const MODEM_ALERT_MS: i64 = 2 * 3_600_000;
/// A day whose lowest battery state of charge is at or below this stands out.
pub const BATTERY_CRITICAL_PCT: i64 = 20;

/// Why a center needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// No successful sync for longer than `hub.silent_after_minutes`.
    Silent,
    /// Its sessions have gone over the modem for hours.
    OnModem,
    /// Its battery went critically low today (or on its latest reported day).
    BatteryCritical,
    /// Its latest session failed.
    SyncFailing,
    /// Its backlog cannot drain ([`backlog_alarm`]; the row's `alarm` says why).
    BacklogStuck,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Silent => "silent",
            AlertKind::OnModem => "on_modem",
            AlertKind::BatteryCritical => "battery_critical",
            AlertKind::SyncFailing => "sync_failing",
            AlertKind::BacklogStuck => "backlog_stuck",
        }
    }
}

/// One open alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub center: String,
    pub kind: AlertKind,
    /// Since when (ms), where that is known.
    pub since_ms: Option<i64>,
    /// The figure behind it: minutes silent or on the modem, battery percent.
    pub value: Option<i64>,
}

/// A center on the overview: its row, its alerts, and the figures behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CenterState {
    #[serde(flatten)]
    pub row: CenterRow,
    /// Since when its sessions go over the modem (unbroken), if they do.
    pub modem_since_ms: Option<i64>,
    /// The lowest battery state of charge of its latest reported day, and that day.
    pub battery_min_pct: Option<i64>,
    pub battery_day: Option<String>,
    pub alerts: Vec<Alert>,
}

/// The alerts of one center, from its row, its newest sessions (newest first) and the
/// lowest state of charge of its latest reported day. Pure.
pub fn alerts_of(
    row: &CenterRow,
    sessions: &[crate::sessions::SyncSession],
    battery_min_pct: Option<i64>,
    now_ms: i64,
    silent_after_ms: i64,
) -> (Vec<Alert>, Option<i64>) {
    let mut out = Vec::new();
    let alert = |kind, since_ms, value| Alert {
        center: row.center.clone(),
        kind,
        since_ms,
        value,
    };
    let since_ok = row.last_ok_ms.or(row.last_sync_ms);
    match since_ok {
        Some(t) if now_ms - t > silent_after_ms => out.push(alert(
            AlertKind::Silent,
            Some(t),
            Some((now_ms - t) / 60_000),
        )),
        _ => {}
    }
    if row.last_result == Some(SessionResult::Error) {
        out.push(alert(AlertKind::SyncFailing, row.last_sync_ms, None));
    }
    if row.alarm.is_some() {
        out.push(alert(AlertKind::BacklogStuck, None, Some(row.backlog)));
    }
    let on_modem = |s: &crate::sessions::SyncSession| s.uplink.ends_with("modem");
    let modem_since = if sessions.first().is_some_and(on_modem) {
        sessions
            .iter()
            .take_while(|s| on_modem(s))
            .last()
            .map(|s| s.started_ms)
    } else {
        None
    };
    if let Some(t) = modem_since
        && now_ms - t > MODEM_ALERT_MS
    {
        out.push(alert(
            AlertKind::OnModem,
            Some(t),
            Some((now_ms - t) / 60_000),
        ));
    }
    if let Some(p) = battery_min_pct
        && p <= BATTERY_CRITICAL_PCT
    {
        out.push(alert(AlertKind::BatteryCritical, None, Some(p)));
    }
    (out, modem_since)
}

/// Every center with its alerts (see [`alerts_of`]), by center id.
pub fn center_states(
    e: &mut dyn HubEngine,
    now_ms: i64,
    silent_after_ms: i64,
) -> Result<Vec<CenterState>, StorageError> {
    let now = jiff::Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| jiff::Timestamp::now());
    let from = crate::energy::window_start(crate::catalog::today(now), Some(2));
    let energy = crate::energy::days(e, crate::energy::MetricsKind::Energy, None, from)?;
    let mut out = Vec::new();
    for row in centers(e, now_ms)? {
        let sessions = e.sessions(Some(&row.center), now_ms, 200)?;
        // Newest day first: the latest reported day of this center.
        let day = energy.iter().find(|d| d.center == row.center);
        let battery_min_pct = day.and_then(|d| d.get("min_soc_pct"));
        let (alerts, modem_since_ms) =
            alerts_of(&row, &sessions, battery_min_pct, now_ms, silent_after_ms);
        out.push(CenterState {
            battery_day: day.map(|d| d.day.to_string()),
            row,
            modem_since_ms,
            battery_min_pct,
            alerts,
        });
    }
    Ok(out)
}

/// The newest `limit` sync log rows (one per request), optionally of one center and of
/// one session (`sync_sessions.id`).
pub fn sync_log(
    e: &mut dyn HubEngine,
    center: Option<&str>,
    session: Option<i64>,
    limit: u32,
) -> Result<Vec<SyncLogEntry>, StorageError> {
    e.sync_log(center, session, limit)
}

/// Every case view at the hub (unreadable documents are skipped and logged).
pub fn case_views(e: &mut dyn HubEngine) -> Result<Vec<CaseView>, StorageError> {
    let mut out = Vec::new();
    for id in e.doc_ids("case")? {
        let mut typed = None;
        let r = e.read_doc(&id, &mut |d| {
            typed = Some(docs::read_case(d)?);
            Ok(serde_json::Value::Null)
        });
        match r {
            // Two cases created under one number are two cases: each counted, each
            // listed in the conflicts.
            Ok(_) => {
                if let Some(mut v) = typed {
                    let twins = std::mem::take(&mut v.twins);
                    out.push(v);
                    out.extend(twins);
                }
            }
            Err(err) => tracing::warn!(doc = %id, %err, "unreadable case document"),
        }
    }
    Ok(out)
}

/// One case whose derived status carries a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictRow {
    pub case_no: String,
    pub center: String,
    pub service: String,
    pub status: String,
    pub message_ar: String,
    pub message_en: String,
    /// The statuses an operator may choose between (empty: two cases under one number,
    /// which is not resolved by choosing).
    pub outcomes: Vec<CaseStatus>,
    /// The operator's decision, once made (it travels in the case document).
    pub resolution: Option<Resolution>,
}

/// The center a case belongs to for oversight: its owner, or the pickup center of a
/// portal case, or `hub`.
pub fn case_center(v: &CaseView) -> String {
    match (&v.center, &v.delivery) {
        (Some(c), _) => c.to_string(),
        (None, Delivery::Pickup { center }) => center.to_string(),
        (None, Delivery::Post { .. }) => docs::HUB_OWNER.to_string(),
    }
}

/// The conflicts list.
pub fn conflicts(views: &[CaseView]) -> Vec<ConflictRow> {
    views
        .iter()
        .filter_map(|v| {
            let c = v.derived.conflict.as_ref()?;
            Some(ConflictRow {
                case_no: v.case_no.to_string(),
                center: case_center(v),
                service: v.service.clone(),
                status: v.derived.status.as_str().into(),
                message_ar: c.message_ar(),
                message_en: c.message_en(),
                outcomes: c.outcomes(),
                resolution: c.resolution.clone(),
            })
        })
        .collect()
}

/// Oversight figures of one center and service (and one day, when asked per day).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OversightRow {
    /// The day the counted cases were opened (governorate time), when tallied per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<Date>,
    pub center: String,
    pub service: String,
    /// Cases opened.
    pub received: u32,
    /// Ready, notified, delivered or posted.
    pub finished: u32,
    /// Finished within the service's target time, or still pending and not yet beyond it.
    pub within_target: u32,
    /// Finished after the target time, or still pending beyond it.
    pub beyond_target: u32,
    pub pending_within_target: u32,
    pub pending_beyond_target: u32,
    /// Average created → ready time of the finished cases, in minutes.
    pub avg_processing_minutes: Option<i64>,
}

/// Which cases the oversight counts and how it groups them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OversightQuery {
    /// First and last day the cases were opened (inclusive, governorate time).
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub center: Option<String>,
    pub service: Option<String>,
    /// One row per day as well as per center and service.
    pub per_day: bool,
}

/// Tally the cases per (center, service). A case is pending while it is not finished,
/// cancelled or rejected; it is beyond target when `now − created` exceeds the service's
/// `target_hours` (wall-clock hours; unknown services have no target and count within).
pub fn tally(views: &[CaseView], catalog: &[Service], now: jiff::Timestamp) -> Vec<OversightRow> {
    tally_by(
        views,
        catalog,
        now,
        &jiff::tz::TimeZone::UTC,
        &OversightQuery::default(),
    )
}

/// [`tally`] for the cases `q` selects (opened in its days, in `tz`; of its center and
/// service), per day when it asks. A finished case is within target when it was ready
/// no later than `target_hours` after it was opened; a cancelled or rejected one counts
/// as opened only. Rows sorted by (day, center, service).
pub fn tally_by(
    views: &[CaseView],
    catalog: &[Service],
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
    q: &OversightQuery,
) -> Vec<OversightRow> {
    type Key = (Option<Date>, String, String);
    let mut rows: BTreeMap<Key, (OversightRow, i64, i64)> = BTreeMap::new();
    for v in views {
        let created = v
            .events
            .iter()
            .find(|e| e.kind == CaseEventKind::Created)
            .map(|e| e.at);
        let opened = created.map(|c| c.to_zoned(tz.clone()).date());
        let in_range = match opened {
            Some(d) => q.from.is_none_or(|f| d >= f) && q.to.is_none_or(|t| d <= t),
            // A case without its creation event has no day: only an unbounded query
            // counts it.
            None => q.from.is_none() && q.to.is_none(),
        };
        let center = case_center(v);
        if !in_range
            || q.center.as_deref().is_some_and(|c| c != center)
            || q.service.as_deref().is_some_and(|s| s != v.service)
        {
            continue;
        }
        let key = (
            if q.per_day { opened } else { None },
            center,
            v.service.clone(),
        );
        let (row, sum, n) = rows.entry(key.clone()).or_insert_with(|| {
            (
                OversightRow {
                    day: key.0,
                    center: key.1.clone(),
                    service: key.2.clone(),
                    ..OversightRow::default()
                },
                0,
                0,
            )
        });
        row.received += 1;
        let ready = v
            .events
            .iter()
            .find(|e| {
                matches!(
                    e.kind,
                    CaseEventKind::Ready
                        | CaseEventKind::Delivered { .. }
                        | CaseEventKind::Posted { .. }
                )
            })
            .map(|e| e.at);
        let target = catalog
            .iter()
            .find(|s| s.code == v.service)
            .map(|s| i64::from(s.target_hours) * 3600);
        use CaseStatus as S;
        match v.derived.status {
            S::Ready | S::Notified | S::Delivered | S::Posted => {
                row.finished += 1;
                let took = match (created, ready) {
                    (Some(c), Some(r)) => Some(r.duration_since(c).as_secs()),
                    _ => None,
                };
                if let Some(secs) = took {
                    *sum += secs / 60;
                    *n += 1;
                }
                match (target, took) {
                    (Some(t), Some(secs)) if secs > t => row.beyond_target += 1,
                    _ => row.within_target += 1,
                }
            }
            S::Cancelled | S::Rejected => {}
            S::Created | S::Paid | S::InProgress => {
                let age = created.map(|c| now.duration_since(c).as_secs());
                match (target, age) {
                    (Some(t), Some(a)) if a > t => {
                        row.pending_beyond_target += 1;
                        row.beyond_target += 1;
                    }
                    _ => {
                        row.pending_within_target += 1;
                        row.within_target += 1;
                    }
                }
            }
        }
    }
    rows.into_values()
        .map(|(mut row, sum, n)| {
            row.avg_processing_minutes = (n > 0).then(|| sum / n);
            row
        })
        .collect()
}

/// The oversight figures `q` asks for, read through the store (either engine): every
/// case document and the catalog, tallied by [`tally_by`].
pub fn figures(
    e: &mut dyn HubEngine,
    q: &OversightQuery,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<OversightRow>, StorageError> {
    let views = case_views(e)?;
    let services = catalog(e)?;
    Ok(tally_by(&views, &services, now, tz, q))
}

/// The catalog's services at the hub (empty if there is no catalog yet).
pub fn catalog(e: &mut dyn HubEngine) -> Result<Vec<Service>, StorageError> {
    let mut out = Vec::new();
    e.read_doc(&DocId::catalog(), &mut |d| {
        out = docs::read_catalog(d)?.services;
        Ok(serde_json::Value::Null)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use markaz_sync::docs::NewCase;
    use markaz_sync::model::case::{CaseEvent, derive};
    use markaz_sync::model::{CaseNo, CenterId};

    fn ev(kind: CaseEventKind, hours: i64, hlc: &str) -> CaseEvent {
        CaseEvent {
            kind,
            actor: "clerk".into(),
            desk: None,
            at: jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(hours),
            hlc: hlc.into(),
        }
    }

    fn view(seq: u32, events: Vec<CaseEvent>) -> CaseView {
        let center: CenterId = "midan".parse().expect("id");
        let n = NewCase {
            case_no: CaseNo::new("MID", 2026, seq).expect("no"),
            center: Some(center.clone()),
            service: "criminal_record".into(),
            citizen: "01020304050".parse().expect("nid"),
            delivery: Delivery::Pickup { center },
            fields: BTreeMap::new(),
            fee: None,
            created: events[0].clone(),
        };
        let derived = derive(&events, &n.delivery);
        CaseView {
            case_no: n.case_no,
            center: n.center,
            service: n.service,
            citizen: n.citizen,
            delivery: n.delivery,
            fields: n.fields,
            fee: None,
            events,
            derived,
            unreadable: 0,
            conflicts: vec![],
            twins: vec![],
            citizen_profile: None,
        }
    }

    fn facts(feed_len: i64, cursor: i64, backlog: i64, cursor_ms: Option<i64>) -> CenterFacts {
        CenterFacts {
            center: "midan".into(),
            feed_len,
            cursor,
            backlog,
            cursor_ms,
            ..CenterFacts::default()
        }
    }

    fn session(started_ms: i64, result: SessionResult) -> SyncSession {
        SyncSession {
            id: started_ms,
            center: "midan".into(),
            session: format!("s{started_ms}"),
            uplink: "primary".into(),
            started_ms,
            last_ms: started_ms + 10,
            ended_ms: (result != SessionResult::Open).then_some(started_ms + 10),
            requests: 3,
            errors: 0,
            bytes_up: 0,
            bytes_down: 0,
            docs_up: 0,
            docs_down: 0,
            changes_up: 0,
            changes_down: 0,
            refused: 0,
            result,
            error: None,
            skew_ms: None,
        }
    }

    #[test]
    fn a_cursor_beyond_the_feed_is_an_alarm() {
        let a = backlog_alarm(&facts(4, 9, 0, Some(100)), &[]);
        assert_eq!(
            a,
            Some(CenterAlarm::CursorBeyondFeed {
                cursor: 9,
                feed_len: 4
            })
        );
        assert_eq!(a.map(|a| a.level()), Some("error"));
    }

    #[test]
    fn a_backlog_the_last_sessions_did_not_take_is_an_alarm() {
        let stuck = [
            session(400, SessionResult::Open),
            session(300, SessionResult::Ok),
            session(200, SessionResult::Error),
            session(150, SessionResult::Ok),
        ];
        let a = backlog_alarm(&facts(10, 7, 3, Some(100)), &stuck);
        assert_eq!(
            a,
            Some(CenterAlarm::NotDraining {
                backlog: 3,
                sessions: 3
            })
        );
        // A center that never reported a cursor and keeps failing is stuck too.
        assert!(backlog_alarm(&facts(10, 0, 10, None), &stuck).is_some());
    }

    #[test]
    fn a_backlog_that_moves_or_waits_for_a_center_offline_is_no_alarm() {
        // The cursor moved during one of the last sessions.
        let moving = [
            session(300, SessionResult::Ok),
            session(200, SessionResult::Ok),
            session(150, SessionResult::Ok),
        ];
        assert_eq!(backlog_alarm(&facts(10, 7, 3, Some(250)), &moving), None);
        // Fewer ended sessions than the rule needs (a center offline since).
        let few = [
            session(300, SessionResult::Open),
            session(200, SessionResult::Ok),
        ];
        assert_eq!(backlog_alarm(&facts(10, 7, 3, Some(100)), &few), None);
        // Nothing waits.
        assert_eq!(backlog_alarm(&facts(10, 10, 0, Some(100)), &moving), None);
    }

    #[test]
    fn tally_counts_finished_pending_and_average() {
        let cat: Vec<Service> = markaz_sync::model::catalog::default_catalog()
            .into_iter()
            .filter(|s| s.code == "criminal_record")
            .collect();
        let target = i64::from(cat[0].target_hours);
        let views = vec![
            view(
                1,
                vec![
                    ev(CaseEventKind::Created, 0, "01"),
                    ev(
                        CaseEventKind::Paid(markaz_sync::model::case::Payment::EPayment {
                            reference: "R1".into(),
                            bank: markaz_sync::model::case::Bank::Bemo,
                        }),
                        0,
                        "015",
                    ),
                    ev(CaseEventKind::Started, 1, "02"),
                    ev(CaseEventKind::Ready, 2, "03"),
                ],
            ),
            view(2, vec![ev(CaseEventKind::Created, 0, "01")]),
            view(3, vec![ev(CaseEventKind::Created, target + 10, "01")]),
        ];
        let now = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(target + 11);
        let rows = tally(&views, &cat, now);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.received, r.finished), (3, 1));
        assert_eq!((r.pending_within_target, r.pending_beyond_target), (1, 1));
        assert_eq!(r.avg_processing_minutes, Some(120));
        assert_eq!((r.within_target, r.beyond_target), (2, 1));
    }

    #[test]
    fn tally_by_day_range_center_and_service() {
        let cat: Vec<Service> = markaz_sync::model::catalog::default_catalog();
        let target = cat
            .iter()
            .find(|s| s.code == "criminal_record")
            .map(|s| i64::from(s.target_hours))
            .expect("criminal_record");
        let day = 24;
        let finished = |seq, created: i64, ready: i64| {
            view(
                seq,
                vec![
                    ev(CaseEventKind::Created, created, "01"),
                    ev(
                        CaseEventKind::Paid(markaz_sync::model::case::Payment::EPayment {
                            reference: format!("R{seq}"),
                            bank: markaz_sync::model::case::Bank::Bemo,
                        }),
                        created,
                        "015",
                    ),
                    ev(CaseEventKind::Started, created, "02"),
                    ev(CaseEventKind::Ready, ready, "03"),
                ],
            )
        };
        let views = vec![
            // Day 0: finished late (beyond target).
            finished(1, 1, 1 + target + 1),
            // Day 1: finished in two hours; and one cancelled.
            finished(2, day + 1, day + 3),
            view(
                3,
                vec![
                    ev(CaseEventKind::Created, day + 2, "01"),
                    ev(
                        CaseEventKind::Cancelled { reason: "x".into() },
                        day + 3,
                        "02",
                    ),
                ],
            ),
            // Day 2: pending.
            view(4, vec![ev(CaseEventKind::Created, 2 * day + 1, "01")]),
        ];
        let now = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(2 * day + 2);
        let utc = jiff::tz::TimeZone::UTC;
        let d = |n: i16| jiff::civil::date(1970, 1, 1 + n as i8);
        let per_day = tally_by(
            &views,
            &cat,
            now,
            &utc,
            &OversightQuery {
                per_day: true,
                ..OversightQuery::default()
            },
        );
        let got: Vec<(Option<Date>, u32, u32, u32, u32)> = per_day
            .iter()
            .map(|r| {
                (
                    r.day,
                    r.received,
                    r.finished,
                    r.within_target,
                    r.beyond_target,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(d(0)), 1, 1, 0, 1),
                (Some(d(1)), 2, 1, 1, 0),
                (Some(d(2)), 1, 0, 1, 0),
            ]
        );
        assert_eq!(per_day[1].avg_processing_minutes, Some(120));
        // A range sums its days into one row per center and service.
        let range = tally_by(
            &views,
            &cat,
            now,
            &utc,
            &OversightQuery {
                from: Some(d(1)),
                to: Some(d(2)),
                ..OversightQuery::default()
            },
        );
        assert_eq!(range.len(), 1);
        assert_eq!(
            (range[0].day, range[0].received, range[0].finished),
            (None, 3, 1)
        );
        // Another service or center selects nothing.
        for q in [
            OversightQuery {
                service: Some("birth_statement".into()),
                ..OversightQuery::default()
            },
            OversightQuery {
                center: Some("qanawat".into()),
                ..OversightQuery::default()
            },
        ] {
            assert!(tally_by(&views, &cat, now, &utc, &q).is_empty(), "{q:?}");
        }
        // The day is the governorate's: 22:30 UTC on day 0 is day 1 in Damascus.
        let late = vec![view(5, vec![ev(CaseEventKind::Created, 23, "01")])];
        let damascus = jiff::tz::TimeZone::get("Asia/Damascus").expect("tz");
        let rows = tally_by(
            &late,
            &cat,
            now,
            &damascus,
            &OversightQuery {
                per_day: true,
                ..OversightQuery::default()
            },
        );
        assert_eq!(rows[0].day, Some(d(1)));
    }
}
