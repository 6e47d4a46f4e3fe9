//! Where the numbers a citizen holds on paper (case numbers, cash receipts) stand, across
//! the loss of this node's database.
//!
//! A database knows where the center's main series stands only once it is *confirmed*:
//! a sync session of this database incarnation ended well, so every document the hub
//! holds for the center is here, and [`confirm`] raised each counter to the highest
//! number those documents carry. (A database made before this rule, which numbered on its
//! own, is confirmed by its migration.) A new incarnation — an empty database, or a copy
//! the hub unmasked as old (`ClientError::RestoredDatabase`) — is not confirmed.
//!
//! Rules, checked in the writer job that hands the number out:
//! - confirmed, or no sync configured: the main series (`MID-2026-000124`);
//! - not confirmed: a series letter of this incarnation, picked once among the letters
//!   no local document uses and kept until confirmation (`MID-2026-B000001`). Its
//!   numbers cannot be ones the lost database handed out in the main series.
//!
//! At start a node that syncs holds its first number until its first session has ended
//! (at most [`FIRST_SESSION_WAIT`]), so a box started next to a reachable hub numbers in
//! the main series from the right place instead of racing its first sync.
//! Whatever the counters say, a number already used by a case or receipt known here is
//! skipped, never handed out again (and never a write that fails forever).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use markaz_sync::docs::DocId;
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Payment};
use markaz_sync::model::ids::{CaseNo, CenterId, ReceiptNo, Series};

use super::{next_seq, node_log};
use crate::domain::receipts::{
    case_in_series, case_sequence, pick_series, receipt_in_series, receipt_sequence,
};
use crate::error::AppError;

/// `meta` key: the hex actor id of the incarnation whose numbers the hub confirmed
/// (`legacy` for a database that numbered before this rule).
pub const CONFIRMED_KEY: &str = "numbering.confirmed";
/// `meta` key: the series letter an unconfirmed incarnation numbers in.
pub const SERIES_KEY: &str = "numbering.series";

/// How long the first number after start waits for the first sync session.
pub const FIRST_SESSION_WAIT: Duration = Duration::from_secs(10);

/// Whether numbers may be handed out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No sync configured: this database is the only record; the main series.
    Local,
    /// The first sync session since start has not ended yet.
    FirstSession,
    /// Number as the database's confirmation says.
    Open,
}

/// The series new numbers take in this transaction. `actor` is the database
/// incarnation's actor id; `now` stamps the node-log line of a newly picked series.
pub fn current_series(
    c: &Connection,
    actor: &[u8],
    gate: Gate,
    now: jiff::Timestamp,
) -> Result<Option<Series>, AppError> {
    if gate == Gate::Local || is_confirmed(c, actor)? {
        return Ok(None);
    }
    let stored: Option<String> = meta(c, SERIES_KEY)?;
    if let Some(s) = stored
        .as_deref()
        .and_then(|s| s.chars().next())
        .and_then(|l| Series::new(l).ok())
    {
        return Ok(Some(s));
    }
    let used = used_series(c)?;
    let series = pick_series(&used, rand::random::<u64>()).ok_or_else(|| {
        AppError::Internal("every numbering series letter is used at this center".into())
    })?;
    set_meta(c, SERIES_KEY, &series.to_string())?;
    node_log(
        c,
        now,
        "warn",
        "numbering",
        &format!(
            "this database has not yet learned the center's numbers from the hub: new cases and receipts are numbered in series {series} until the first sync"
        ),
    )?;
    tracing::warn!(%series, "numbering in a series of this database until the hub confirms the center's numbers");
    Ok(Some(series))
}

/// Whether the hub confirmed this incarnation's numbers (or the database predates the rule).
pub fn is_confirmed(c: &Connection, actor: &[u8]) -> Result<bool, AppError> {
    Ok(meta(c, CONFIRMED_KEY)?.is_some_and(|v| v == "legacy" || v == hex::encode(actor)))
}

/// The next case number of `year` in `series`, skipping numbers a case here already has.
pub fn next_case_no(
    c: &Connection,
    center: &CenterId,
    prefix: &str,
    year: i16,
    series: Option<Series>,
) -> Result<CaseNo, AppError> {
    let name = case_sequence(year, series);
    loop {
        let seq = next_seq(c, &name)?;
        let no = case_in_series(prefix, year, series, seq)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let doc = DocId::case(Some(center), &no);
        let taken: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM cases WHERE case_no = ?1)
                 OR EXISTS(SELECT 1 FROM doc_meta WHERE doc_id = ?2)",
            params![no.as_str(), doc.as_str()],
            |r| r.get(0),
        )?;
        if !taken {
            return Ok(no);
        }
        tracing::warn!(case_no = %no, "skipping a case number already used here");
    }
}

/// The next cash receipt number in `series`, skipping numbers a payment here already has.
pub fn next_receipt_no(
    c: &Connection,
    prefix: &str,
    series: Option<Series>,
) -> Result<ReceiptNo, AppError> {
    let name = receipt_sequence(series);
    loop {
        let seq = next_seq(c, &name)?;
        let no = receipt_in_series(prefix, series, seq)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let taken: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM case_events WHERE kind = 'paid' AND instr(json, ?1) > 0)",
            [format!("\"{no}\"")],
            |r| r.get(0),
        )?;
        if !taken {
            return Ok(no);
        }
        tracing::warn!(receipt = %no, "skipping a receipt number already used here");
    }
}

/// The highest numbers of this center's prefix found here: per `(year, series)` for case
/// numbers, per series for receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub cases: BTreeMap<(i16, Option<Series>), u32>,
    pub receipts: BTreeMap<Option<Series>, u64>,
}

/// The marks of `prefix` in the cases and payments known here (this center's own and
/// those it took payment for), as the documents projected them.
pub fn marks(c: &Connection, prefix: &str) -> Result<Marks, AppError> {
    let mut m = Marks::default();
    let mut st = c.prepare("SELECT case_no FROM cases")?;
    let nos: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for no in nos.iter().filter_map(|s| s.parse::<CaseNo>().ok()) {
        if no.prefix() == prefix {
            let e = m.cases.entry((no.year(), no.series())).or_default();
            *e = (*e).max(no.seq());
        }
    }
    let mut st = c.prepare("SELECT json FROM case_events WHERE kind = 'paid'")?;
    let paid: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for ev in paid
        .iter()
        .filter_map(|j| serde_json::from_str::<CaseEvent>(j).ok())
    {
        if let CaseEventKind::Paid(Payment::Cash { receipt }) = ev.kind
            && receipt.prefix() == prefix
        {
            let e = m.receipts.entry(receipt.series()).or_default();
            *e = (*e).max(receipt.seq());
        }
    }
    Ok(m)
}

/// After a sync session of incarnation `actor` that ended well (everything the hub holds
/// for the center is here): raise every counter to the marks found, record the
/// incarnation as confirmed and go back to the main series. Returns whether the
/// database was not confirmed before (the node log says so).
pub fn confirm(
    c: &Connection,
    actor: &[u8],
    prefix: &str,
    now: jiff::Timestamp,
) -> Result<bool, AppError> {
    if is_confirmed(c, actor)? {
        return Ok(false);
    }
    let m = marks(c, prefix)?;
    for (&(year, series), &seq) in &m.cases {
        raise(c, &case_sequence(year, series), i64::from(seq))?;
    }
    for (&series, &seq) in &m.receipts {
        raise(
            c,
            &receipt_sequence(series),
            i64::try_from(seq).unwrap_or(i64::MAX),
        )?;
    }
    let was: Option<String> = meta(c, SERIES_KEY)?;
    c.execute("DELETE FROM meta WHERE key = ?1", [SERIES_KEY])?;
    set_meta(c, CONFIRMED_KEY, &hex::encode(actor))?;
    let main = m
        .cases
        .iter()
        .filter(|((_, s), _)| s.is_none())
        .map(|(_, v)| *v)
        .max();
    let line = format!(
        "the hub confirmed the center's numbers: highest case number seen {}, highest receipt {}; new numbers continue the main series{}",
        main.map_or("none".into(), |v| v.to_string()),
        m.receipts
            .get(&None)
            .map_or("none".into(), |v| v.to_string()),
        was.map(|s| format!(" (series {s} ends)"))
            .unwrap_or_default()
    );
    node_log(c, now, "info", "numbering", &line)?;
    tracing::info!(cases = ?m.cases, receipts = ?m.receipts, "numbering confirmed by the hub");
    Ok(true)
}

/// Queue tickets never leave the center, but the day's statistics document counts the
/// tickets issued so far today (`issued`, as the hub last received it). A new
/// incarnation confirmed by the hub starts the `day`'s sequence of every group `letter`
/// above that count, so no ticket number the hub knows was issued today is issued again.
/// Tickets issued after the last statistics reached the hub are not known (see
/// docs/OPERATIONS.md). Returns the count used (0: nothing raised).
pub fn raise_tickets(
    c: &Connection,
    day: jiff::civil::Date,
    letters: &[char],
    issued: i64,
) -> Result<i64, AppError> {
    if issued <= 0 {
        return Ok(0);
    }
    for letter in letters {
        raise(c, &format!("ticket:{day}:{letter}"), issued)?;
    }
    Ok(issued)
}

/// Every series letter a case or receipt number here uses (so a new one differs).
fn used_series(c: &Connection) -> Result<BTreeSet<Series>, AppError> {
    let mut out = BTreeSet::new();
    let mut st = c.prepare("SELECT case_no FROM cases")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    for no in rows {
        if let Some(s) = no?.parse::<CaseNo>().ok().and_then(|n| n.series()) {
            out.insert(s);
        }
    }
    let mut st =
        c.prepare("SELECT name FROM sequences WHERE name LIKE 'case:%' OR name LIKE 'receipt:%'")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    for name in rows {
        let name = name?;
        let letter = name.rsplit(':').next().filter(|l| l.len() == 1);
        if let Some(s) = letter
            .and_then(|l| l.chars().next())
            .filter(char::is_ascii_uppercase)
            .and_then(|l| Series::new(l).ok())
        {
            out.insert(s);
        }
    }
    Ok(out)
}

fn raise(c: &Connection, name: &str, to: i64) -> Result<(), AppError> {
    c.execute(
        "INSERT INTO sequences(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
        params![name, to],
    )?;
    Ok(())
}

fn meta(c: &Connection, key: &str) -> Result<Option<String>, AppError> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

fn set_meta(c: &Connection, key: &str, value: &str) -> Result<(), AppError> {
    c.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for sql in crate::storage::MIGRATIONS {
            c.execute_batch(sql).unwrap();
        }
        markaz_sync::store::migrate(&c).unwrap();
        c
    }

    /// A case the lost database made, as the hub's documents brought it back.
    fn pulled(c: &Connection, no: &str, receipt: Option<&str>) {
        c.execute(
            "INSERT INTO cases(case_no, national_id, service_code, authority, fields, delivery, fee,
               fee_total, status, target_at, created_by, created_at, updated_at)
             VALUES (?1, '01020304050', 'criminal_record', 'justice', '{}', '{}', '{}', 0,
               'paid', 't', 'clerk', 't', 't')",
            [no],
        )
        .unwrap();
        if let Some(r) = receipt {
            let ev = serde_json::json!({"kind": {"kind": "paid", "method": "cash", "receipt": r},
                "actor": "clerk", "desk": null, "at": "2026-12-03T08:00:00Z", "hlc": "x"});
            c.execute(
                "INSERT INTO case_events(case_no, idx, at, actor, kind, json) VALUES (?1, 1, 't', 'clerk', 'paid', ?2)",
                params![no, ev.to_string()],
            )
            .unwrap();
        }
    }

    const ACTOR: &[u8] = b"midan/replacement";

    #[test]
    fn an_unconfirmed_database_numbers_in_its_own_series_until_the_hub_confirms() {
        let c = db();
        let center: CenterId = "midan".parse().unwrap();
        let now = jiff::Timestamp::UNIX_EPOCH;
        // No sync configured: this database is the record; the main series.
        assert_eq!(current_series(&c, ACTOR, Gate::Local, now).unwrap(), None);
        // A replacement box, hub unreachable: a letter, the same for every number.
        let s = current_series(&c, ACTOR, Gate::Open, now)
            .unwrap()
            .expect("a series");
        assert_eq!(current_series(&c, ACTOR, Gate::Open, now).unwrap(), Some(s));
        let offline = next_case_no(&c, &center, "MID", 2026, Some(s)).unwrap();
        assert_eq!(offline.series(), Some(s));
        assert_eq!(offline.seq(), 1);
        let r = next_receipt_no(&c, "MID", Some(s)).unwrap();
        assert_eq!((r.series(), r.seq()), (Some(s), 1));
        // The hub is back: the lost database's cases arrive, the hub confirms.
        pulled(&c, "MID-2026-000001", Some("MID-R-000001"));
        pulled(&c, "MID-2026-000004", Some("MID-R-000003"));
        pulled(&c, "QAN-2026-000090", Some("QAN-R-000090"));
        assert!(confirm(&c, ACTOR, "MID", now).unwrap());
        assert!(
            !confirm(&c, ACTOR, "MID", now).unwrap(),
            "once per incarnation"
        );
        assert_eq!(current_series(&c, ACTOR, Gate::Open, now).unwrap(), None);
        let next = next_case_no(&c, &center, "MID", 2026, None).unwrap();
        assert_eq!(next.as_str(), "MID-2026-000005");
        let r = next_receipt_no(&c, "MID", None).unwrap();
        assert_eq!(r.as_str(), "MID-R-000004");
        // Another incarnation (a restored copy unmasked by the hub) is not confirmed.
        assert!(
            current_series(&c, b"midan/other", Gate::Open, now)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn todays_tickets_continue_above_the_count_the_hub_had() {
        let c = db();
        let day: jiff::civil::Date = "2026-12-03".parse().unwrap();
        assert_eq!(raise_tickets(&c, day, &['A', 'B'], 0).unwrap(), 0);
        assert_eq!(raise_tickets(&c, day, &['A', 'B'], 17).unwrap(), 17);
        for letter in ['A', 'B'] {
            let next = next_seq(&c, &format!("ticket:{day}:{letter}")).unwrap();
            assert_eq!(next, 18, "group {letter}");
        }
        // Never lowered.
        raise_tickets(&c, day, &['A'], 3).unwrap();
        assert_eq!(next_seq(&c, &format!("ticket:{day}:A")).unwrap(), 19);
    }

    #[test]
    fn a_stale_counter_skips_numbers_already_used_here() {
        let c = db();
        let center: CenterId = "midan".parse().unwrap();
        pulled(&c, "MID-2026-000001", Some("MID-R-000001"));
        pulled(&c, "MID-2026-000002", Some("MID-R-000002"));
        assert_eq!(
            next_case_no(&c, &center, "MID", 2026, None)
                .unwrap()
                .as_str(),
            "MID-2026-000003"
        );
        assert_eq!(
            next_receipt_no(&c, "MID", None).unwrap().as_str(),
            "MID-R-000003"
        );
    }
}
