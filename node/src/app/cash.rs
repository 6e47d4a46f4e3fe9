//! Cash at the center: the center collects fees on behalf of the authorities and hands
//! the cash over every day. A cash receipt is never deleted; it can be voided, with a
//! reason given by whoever asks and the approval of a supervisor who is not that person.
//! The daily close lists, per clerk and per authority, the day's cash receipts and the
//! totals of the authority fee and of the center surcharge (voided receipts are listed,
//! marked, and left out of the totals).
//!
//! Receipts are read from the cases' `paid` events (who took the cash, when) and the fee
//! each case froze at intake; a void is a `receipt_voids` row, written with its audit row
//! and, once approved, the case document's `void:<receipt>` key, so it syncs with the case.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use markaz_sync::docs::{self as sync_docs, DocId};
use markaz_sync::model::case::{CaseEvent, CaseEventKind, Payment, ReceiptVoid};
use markaz_sync::model::catalog::Authority;
use markaz_sync::model::fees::Fee;
use markaz_sync::model::ids::{CaseNo, ReceiptNo};
use markaz_sync::model::staff::Capability;

use super::staff::field_error;
use super::{Actor, App, audit};
use crate::error::AppError;

/// Asking for a receipt to be voided.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    pub reason: String,
}

/// A void of a receipt: asked for, and approved or still waiting.
#[derive(Debug, Clone, Serialize)]
pub struct VoidView {
    pub receipt_no: String,
    pub case_no: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_name: String,
    pub requested_at: String,
    pub approved_by: Option<String>,
    pub approved_name: Option<String>,
    pub approved_at: Option<String>,
}

impl VoidView {
    pub fn approved(&self) -> bool {
        self.approved_at.is_some()
    }
}

/// One cash receipt of the day.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRow {
    pub receipt_no: String,
    pub case_no: String,
    pub at: String,
    pub clerk: String,
    pub clerk_name: String,
    pub service: String,
    pub authority: Authority,
    /// Piastres, as the case froze them at intake.
    pub authority_fee: i64,
    pub surcharge: i64,
    pub total: i64,
    pub void: Option<VoidView>,
}

impl ReceiptRow {
    /// A receipt counts in the totals unless its void was approved.
    pub fn counts(&self) -> bool {
        !self.void.as_ref().is_some_and(VoidView::approved)
    }
}

/// Counted receipts and their sums, in piastres.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub receipts: u32,
    pub authority_fee: i64,
    pub surcharge: i64,
    pub total: i64,
    /// Receipts of the day that were voided (not in the sums).
    pub voided: u32,
}

impl Totals {
    fn add(&mut self, r: &ReceiptRow) {
        if r.counts() {
            self.receipts += 1;
            self.authority_fee += r.authority_fee;
            self.surcharge += r.surcharge;
            self.total += r.total;
        } else {
            self.voided += 1;
        }
    }

    fn of<'a>(rows: impl IntoIterator<Item = &'a ReceiptRow>) -> Totals {
        let mut t = Totals::default();
        for r in rows {
            t.add(r);
        }
        t
    }
}

/// The totals of one authority (whose fees the center hands over to it).
#[derive(Debug, Clone, Serialize)]
pub struct AuthorityTotals {
    pub authority: Authority,
    pub totals: Totals,
}

fn by_authority(rows: &[ReceiptRow]) -> Vec<AuthorityTotals> {
    let mut map: BTreeMap<&'static str, (Authority, Totals)> = BTreeMap::new();
    for r in rows {
        map.entry(r.authority.as_str())
            .or_insert((r.authority, Totals::default()))
            .1
            .add(r);
    }
    Authority::ALL
        .iter()
        .filter_map(|a| map.get(a.as_str()))
        .map(|(authority, totals)| AuthorityTotals {
            authority: *authority,
            totals: *totals,
        })
        .collect()
}

/// One clerk's close: their receipts and totals.
#[derive(Debug, Clone, Serialize)]
pub struct ClerkClose {
    pub clerk: String,
    pub clerk_name: String,
    pub receipts: Vec<ReceiptRow>,
    pub by_authority: Vec<AuthorityTotals>,
    pub totals: Totals,
}

/// The daily close of the center (or of one clerk).
#[derive(Debug, Clone, Serialize)]
pub struct DailyClose {
    pub day: Date,
    pub clerks: Vec<ClerkClose>,
    pub by_authority: Vec<AuthorityTotals>,
    pub totals: Totals,
}

fn void_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VoidView> {
    Ok(VoidView {
        receipt_no: r.get(0)?,
        case_no: r.get(1)?,
        reason: r.get(2)?,
        requested_by: r.get(3)?,
        requested_name: r.get(4)?,
        requested_at: r.get(5)?,
        approved_by: r.get(6)?,
        approved_name: r.get(7)?,
        approved_at: r.get(8)?,
    })
}

const VOID_COLUMNS: &str = "receipt_no, case_no, reason, requested_by, requested_name, requested_at, approved_by, approved_name, approved_at";

fn load_void(c: &Connection, receipt: &str) -> Result<Option<VoidView>, AppError> {
    Ok(c.query_row(
        &format!("SELECT {VOID_COLUMNS} FROM receipt_voids WHERE receipt_no = ?1"),
        [receipt],
        void_from_row,
    )
    .optional()?)
}

/// The case whose payment is the cash receipt `receipt`.
fn case_of_receipt(c: &Connection, receipt: &str) -> Result<Option<String>, AppError> {
    Ok(c.query_row(
        "SELECT case_no FROM cases WHERE json_extract(payment, '$.method') = 'cash' AND json_extract(payment, '$.receipt') = ?1",
        [receipt],
        |r| r.get(0),
    )
    .optional()?)
}

fn parse_receipt(receipt: &str) -> Result<ReceiptNo, AppError> {
    receipt.trim().parse::<ReceiptNo>().map_err(|e| {
        AppError::field(
            "receipt_no",
            "invalid_receipt_no",
            e.to_string(),
            "رقم الإيصال غير صالح",
        )
    })
}

/// The instant a local civil day starts in `tz`.
fn day_start(day: Date, tz: &jiff::tz::TimeZone) -> Result<Timestamp, AppError> {
    day.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| AppError::Internal(format!("day {day}: {e}")))
}

impl App {
    /// Asks for a cash receipt to be voided, with a reason. Clerks who take payments
    /// and supervisors may ask; the receipt stays valid until a supervisor approves.
    pub async fn request_void(
        &self,
        actor: &Actor,
        receipt: &str,
        input: VoidRequest,
    ) -> Result<VoidView, AppError> {
        if !(actor.can(Capability::TakePayment) || actor.can(Capability::ViewReports)) {
            actor.require(Capability::TakePayment)?;
        }
        let reason = input.reason.trim().to_string();
        if reason.is_empty() {
            return Err(AppError::Invalid(vec![field_error(
                "reason",
                "required",
                "a reason is required",
                "السبب مطلوب",
            )]));
        }
        if reason.chars().count() > 500 {
            return Err(AppError::Invalid(vec![field_error(
                "reason",
                "too_long",
                "at most 500 characters",
                "500 محرف على الأكثر",
            )]));
        }
        let receipt = parse_receipt(receipt)?.to_string();
        let at = self.now();
        let actor2 = actor.clone();
        self.db
            .writer
            .write(move |tx| -> Result<VoidView, AppError> {
                let c = tx.conn;
                let case_no = case_of_receipt(c, &receipt)?
                    .ok_or_else(|| AppError::not_found(format!("cash receipt {receipt}")))?;
                if let Some(v) = load_void(c, &receipt)? {
                    return Err(AppError::Conflict {
                        code: if v.approved() { "receipt_voided" } else { "void_pending" },
                        message: format!(
                            "receipt {receipt} {}",
                            if v.approved() { "is already voided" } else { "already waits for a supervisor's approval" }
                        ),
                    });
                }
                c.execute(
                    "INSERT INTO receipt_voids(receipt_no, case_no, reason, requested_by, requested_name, requested_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![receipt, case_no, reason, actor2.username, actor2.full_name, at.to_string()],
                )?;
                audit(c, at, &actor2, "receipt.void_request", &receipt, serde_json::json!({"case": case_no, "reason": reason}))?;
                load_void(c, &receipt)?.ok_or_else(|| AppError::Internal("void vanished".into()))
            })
            .await
            .map_err(AppError::from)
    }

    /// A supervisor approves a void someone else asked for: the receipt leaves the
    /// totals, and the case document records the void so it syncs with the case.
    pub async fn approve_void(&self, actor: &Actor, receipt: &str) -> Result<VoidView, AppError> {
        actor.require(Capability::ViewReports)?;
        let receipt = parse_receipt(receipt)?;
        let at = self.now();
        let actor2 = actor.clone();
        let center = self.settings.center_id.clone();
        self.db
            .writer
            .write(move |tx| -> Result<VoidView, AppError> {
                let c = tx.conn;
                let key = receipt.to_string();
                let v = load_void(c, &key)?
                    .ok_or_else(|| AppError::not_found(format!("void request for receipt {key}")))?;
                if v.approved() {
                    return Err(AppError::Conflict {
                        code: "receipt_voided",
                        message: format!("receipt {key} is already voided"),
                    });
                }
                if v.requested_by == actor2.username {
                    return Err(AppError::Conflict {
                        code: "same_person",
                        message: "a void is approved by a supervisor other than who asked for it".into(),
                    });
                }
                c.execute(
                    "UPDATE receipt_voids SET approved_by = ?2, approved_name = ?3, approved_at = ?4 WHERE receipt_no = ?1",
                    params![key, actor2.username, actor2.full_name, at.to_string()],
                )?;
                let requested_at: Timestamp = v
                    .requested_at
                    .parse()
                    .map_err(|e| AppError::Internal(format!("stored void time: {e}")))?;
                let record = ReceiptVoid {
                    receipt: receipt.clone(),
                    reason: v.reason.clone(),
                    requested_by: v.requested_by.clone(),
                    requested_name: v.requested_name.clone(),
                    requested_at,
                    approved_by: actor2.username.clone(),
                    approved_name: actor2.full_name.clone(),
                    approved_at: at,
                };
                let case_no: CaseNo = v
                    .case_no
                    .parse()
                    .map_err(|e| AppError::Internal(format!("stored case number: {e}")))?;
                tx.docs.edit(c, &DocId::case(Some(&center), &case_no), |d| {
                    sync_docs::record_receipt_void(d, &record)
                })?;
                audit(c, at, &actor2, "receipt.void", &key, serde_json::json!({"case": v.case_no, "reason": v.reason, "requested_by": v.requested_by}))?;
                load_void(c, &key)?.ok_or_else(|| AppError::Internal("void vanished".into()))
            })
            .await
            .map_err(AppError::from)
    }

    /// Void requests waiting for a supervisor.
    pub async fn pending_voids(&self, actor: &Actor) -> Result<Vec<VoidView>, AppError> {
        actor.require(Capability::ViewReports)?;
        self.db
            .readers
            .read(|c| -> Result<Vec<VoidView>, AppError> {
                Ok(c.prepare(&format!("SELECT {VOID_COLUMNS} FROM receipt_voids WHERE approved_at IS NULL ORDER BY requested_at"))?
                    .query_map([], void_from_row)?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    /// The case a cash receipt paid, if any.
    pub async fn receipt_case(&self, receipt: &str) -> Result<Option<String>, AppError> {
        let r = receipt.to_string();
        self.db.readers.read(move |c| case_of_receipt(c, &r)).await
    }

    /// The void of one receipt, if any was asked for (for the case page).
    pub async fn receipt_void(&self, receipt: &str) -> Result<Option<VoidView>, AppError> {
        let r = receipt.to_string();
        self.db.readers.read(move |c| load_void(c, &r)).await
    }

    /// The daily close of a local day: every clerk's, or only `clerk`'s. A clerk sees
    /// only their own; a supervisor anyone's.
    pub async fn daily_close(
        &self,
        actor: &Actor,
        day: Option<Date>,
        clerk: Option<&str>,
    ) -> Result<DailyClose, AppError> {
        let own_only = !actor.can(Capability::ViewReports);
        if own_only {
            actor.require(Capability::TakePayment)?;
            if clerk.is_some_and(|c| c != actor.username) {
                return Err(AppError::forbidden(
                    "role_forbidden",
                    "your role shows only your own daily close",
                ));
            }
        }
        let clerk = if own_only {
            Some(actor.username.clone())
        } else {
            clerk.map(str::to_string).filter(|c| !c.is_empty())
        };
        let day = day.unwrap_or_else(|| self.today());
        let tz = self.settings.timezone.clone();
        let start = day_start(day, &tz)?;
        let end = day_start(
            day.tomorrow()
                .map_err(|e| AppError::Internal(e.to_string()))?,
            &tz,
        )?;
        // Text bounds one day wider than the day, then the exact instants below: stored
        // times may carry fractions of a second, which text order does not compare well.
        let (lo, hi) = (
            (start - jiff::Span::new().hours(24)).to_string(),
            (end + jiff::Span::new().hours(24)).to_string(),
        );
        let rows = self
            .db
            .readers
            .read(move |c| -> Result<Vec<ReceiptRow>, AppError> {
                let mut stmt = c.prepare(
                    "SELECT e.case_no, e.json, cs.service_code, cs.authority, cs.fee, coalesce(s.full_name, e.actor)
                     FROM case_events e JOIN cases cs ON cs.case_no = e.case_no
                     LEFT JOIN staff s ON s.username = e.actor
                     WHERE e.kind = 'paid' AND e.at >= ?1 AND e.at < ?2
                     ORDER BY e.at, e.case_no",
                )?;
                let raw: Vec<(String, String, String, String, String, String)> = stmt
                    .query_map(params![lo, hi], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::new();
                for (case_no, json, service, authority, fee, clerk_name) in raw {
                    let ev: CaseEvent = match serde_json::from_str(&json) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(case = %case_no, error = %e, "unreadable payment event left out of the daily close");
                            continue;
                        }
                    };
                    let CaseEventKind::Paid(Payment::Cash { receipt }) = &ev.kind else { continue };
                    if ev.at < start || ev.at >= end {
                        continue;
                    }
                    if clerk.as_deref().is_some_and(|c| c != ev.actor) {
                        continue;
                    }
                    let fee: Fee = serde_json::from_str(&fee)?;
                    let authority: Authority =
                        serde_json::from_value(serde_json::Value::String(authority))?;
                    let receipt_no = receipt.to_string();
                    out.push(ReceiptRow {
                        void: load_void(c, &receipt_no)?,
                        receipt_no,
                        case_no,
                        at: ev.at.to_string(),
                        clerk: ev.actor.clone(),
                        clerk_name,
                        service,
                        authority,
                        authority_fee: fee.authority.piastres(),
                        surcharge: fee.surcharge.piastres(),
                        total: fee.total.piastres(),
                    });
                }
                Ok(out)
            })
            .await?;
        let mut clerks: BTreeMap<String, Vec<ReceiptRow>> = BTreeMap::new();
        for r in &rows {
            clerks.entry(r.clerk.clone()).or_default().push(r.clone());
        }
        let clerks = clerks
            .into_iter()
            .map(|(clerk, receipts)| ClerkClose {
                clerk_name: receipts[0].clerk_name.clone(),
                clerk,
                by_authority: by_authority(&receipts),
                totals: Totals::of(&receipts),
                receipts,
            })
            .collect();
        Ok(DailyClose {
            day,
            clerks,
            by_authority: by_authority(&rows),
            totals: Totals::of(&rows),
        })
    }
}

/// The close as CSV (one line per receipt, then the totals per clerk and authority):
/// amounts in pounds with two decimals, names quoted.
pub fn close_csv(close: &DailyClose) -> String {
    fn money(p: i64) -> String {
        format!("{}.{:02}", p / 100, p % 100)
    }
    fn quote(s: &str) -> String {
        // A leading = + - @ would be a formula in a spreadsheet.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    }
    let mut out = String::from(
        "day,clerk,clerk_name,receipt,case,time,service,authority,authority_fee,center_surcharge,total,voided,void_reason\n",
    );
    for k in &close.clerks {
        for r in &k.receipts {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                close.day,
                quote(&r.clerk),
                quote(&r.clerk_name),
                r.receipt_no,
                r.case_no,
                r.at,
                r.service,
                r.authority.as_str(),
                money(r.authority_fee),
                money(r.surcharge),
                money(r.total),
                if r.counts() { "no" } else { "yes" },
                quote(
                    r.void
                        .as_ref()
                        .filter(|v| v.approved())
                        .map_or("", |v| v.reason.as_str())
                ),
            ));
        }
    }
    out.push_str("\nday,clerk,authority,receipts,authority_fee,center_surcharge,total,voided\n");
    for k in &close.clerks {
        for a in &k.by_authority {
            let t = &a.totals;
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                close.day,
                quote(&k.clerk),
                a.authority.as_str(),
                t.receipts,
                money(t.authority_fee),
                money(t.surcharge),
                money(t.total),
                t.voided
            ));
        }
    }
    for a in &close.by_authority {
        let t = &a.totals;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            close.day,
            quote("*"),
            a.authority.as_str(),
            t.receipts,
            money(t.authority_fee),
            money(t.surcharge),
            money(t.total),
            t.voided
        ));
    }
    let t = &close.totals;
    out.push_str(&format!(
        "{},{},{},{},{},{},{},{}\n",
        close.day,
        quote("*"),
        "*",
        t.receipts,
        money(t.authority_fee),
        money(t.surcharge),
        money(t.total),
        t.voided
    ));
    out
}
