//! Cases (معاملات): intake at a desk with the service's required fields and a fee frozen
//! at intake, then the lifecycle created → paid → in_progress → ready → notified →
//! delivered | posted, or cancelled / rejected with a reason. Every transition is an
//! event with who, when and at which desk; the status is derived from the events by the
//! shared rule in `markaz_sync::model::case`.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use markaz_sync::model::case::{
    self, Bank, CaseEvent, CaseEventKind, CaseStatus, Delivery, Payment,
};
use markaz_sync::model::catalog::{Authority, validate_fields};
use markaz_sync::model::citizen::CitizenProfile;
use markaz_sync::model::fees::Fee;
use markaz_sync::model::ids::{CaseNo, CenterId, NationalId};
use markaz_sync::model::staff::Capability;

use markaz_sync::docs::{self as sync_docs, DocId};

use super::citizens::find_by_nid;
use super::staff::field_error;
use super::{Actor, App, audit, next_hlc, numbering, wallclock};
use crate::error::AppError;
use crate::events::LiveEvent;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub national_id: String,
    pub service: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub delivery: DeliveryInput,
    #[serde(default)]
    pub ticket_id: Option<i64>,
}

/// How the document reaches the citizen: pickup here (default) or by post.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeliveryInput {
    #[default]
    Pickup,
    Post {
        address: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentInput {
    /// Cash at the center: the receipt number is issued by the node.
    Cash,
    /// Syrian Electronic Payments through a bank.
    Epayment { reference: String, bank: Bank },
}

/// One step of a case's lifecycle, as the desk asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CaseAction {
    Start,
    Ready,
    Notify,
    Deliver { receiver_national_id: String },
    Post { tracking: String },
    Cancel { reason: String },
    Reject { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub case_no: String,
    pub national_id: String,
    /// The citizen's name as the case recorded it at intake (the current profile's only
    /// for a case that recorded none: made before v5, or at the portal).
    pub citizen_name: Option<String>,
    /// The citizen's profile as at intake, kept by the case like its fee.
    pub citizen: Option<CitizenProfile>,
    pub service: String,
    pub service_name_ar: String,
    pub service_name_en: String,
    pub authority: Authority,
    pub fields: BTreeMap<String, String>,
    pub delivery: Delivery,
    pub fee: Fee,
    pub status: CaseStatus,
    pub conflict: Option<serde_json::Value>,
    pub payment: Option<Payment>,
    pub ticket_id: Option<i64>,
    pub target_at: String,
    pub overdue: bool,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<CaseEvent>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct CaseQuery {
    /// A case number, or a national id.
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub overdue: Option<bool>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A case summary for lists.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    pub case_no: String,
    pub national_id: String,
    pub service: String,
    pub status: String,
    pub fee_total: i64,
    pub target_at: String,
    pub overdue: bool,
    pub conflict: bool,
    pub created_at: String,
}

fn status_key(s: CaseStatus) -> String {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(k)) => k,
        _ => format!("{s:?}").to_lowercase(),
    }
}

fn load_events(conn: &Connection, case_no: &str) -> Result<Vec<CaseEvent>, AppError> {
    let mut stmt =
        conn.prepare_cached("SELECT json FROM case_events WHERE case_no = ?1 ORDER BY idx")?;
    let rows: Vec<String> = stmt
        .query_map([case_no], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    rows.iter()
        .map(|j| serde_json::from_str(j).map_err(AppError::from))
        .collect()
}

/// The event's name as stored in `case_events.kind` (`paid`, `delivered`, …): the
/// `kind` tag of its JSON form.
pub(crate) fn event_name(kind: &CaseEventKind) -> Result<String, serde_json::Error> {
    Ok(match serde_json::to_value(kind)? {
        serde_json::Value::Object(m) => match m.get("kind") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::new(),
        },
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// The document of a case here: the center's own (`case:<center>:<no>`), or a portal
/// case the hub routed here for pickup (`case:hub:<no>`), which the center works on too.
fn case_doc_id(
    conn: &Connection,
    docs: &mut markaz_sync::store::DocStore,
    center: &CenterId,
    no: &CaseNo,
) -> Result<DocId, AppError> {
    let own = DocId::case(Some(center), no);
    if docs.heads(conn, &own)?.is_empty() {
        let portal = DocId::case(None, no);
        if !docs.heads(conn, &portal)?.is_empty() {
            return Ok(portal);
        }
    }
    Ok(own)
}

fn append_event(conn: &Connection, case_no: &str, ev: &CaseEvent) -> Result<(), AppError> {
    let kind = event_name(&ev.kind)?;
    conn.execute(
        "INSERT INTO case_events(case_no, idx, at, actor, desk, kind, json)
         VALUES (?1, (SELECT coalesce(max(idx), -1) + 1 FROM case_events WHERE case_no = ?1), ?2, ?3, ?4, ?5, ?6)",
        params![case_no, ev.at.to_string(), ev.actor, ev.desk, kind, serde_json::to_string(ev)?],
    )?;
    Ok(())
}

impl App {
    fn case_view_from(
        &self,
        conn: &Connection,
        case_no: &str,
    ) -> Result<Option<CaseView>, AppError> {
        let row = conn
            .query_row(
                "SELECT case_no, national_id, service_code, fields, delivery, fee, status, conflict, payment, ticket_id,
                        target_at, created_by, created_at, updated_at, authority, citizen
                 FROM cases WHERE case_no = ?1",
                [case_no],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, String>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, String>(13)?,
                        r.get::<_, Option<String>>(15)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            case_no,
            nid,
            service,
            fields,
            delivery,
            fee,
            stored_conflict,
            _payment,
            ticket_id,
            target_at,
            created_by,
            created_at,
            updated_at,
            citizen,
        )) = row
        else {
            return Ok(None);
        };
        let events = load_events(conn, &case_no)?;
        let delivery: Delivery = serde_json::from_str(&delivery)?;
        let derived = case::derive(&events, &delivery);
        let svc = self.service(&service)?;
        let citizen: Option<CitizenProfile> = citizen.and_then(|j| serde_json::from_str(&j).ok());
        let citizen_name = match &citizen {
            Some(p) => Some(p.full_name.clone()),
            None => nid
                .parse::<NationalId>()
                .ok()
                .and_then(|n| find_by_nid(conn, &n).ok().flatten())
                .map(|c| c.profile.full_name),
        };
        let overdue = !derived.status.is_terminal()
            && target_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t < self.now());
        Ok(Some(CaseView {
            case_no,
            national_id: nid,
            citizen_name,
            citizen,
            service,
            service_name_ar: svc.name_ar.clone(),
            service_name_en: svc.name_en.clone(),
            authority: svc.authority,
            fields: serde_json::from_str(&fields)?,
            delivery,
            fee: serde_json::from_str(&fee)?,
            status: derived.status,
            // A conflict the events here cannot show (two cases created under this
            // number, the other one whole in `twins`) is kept in the row.
            conflict: match derived.conflict.as_ref() {
                Some(c) => Some(serde_json::to_value(c)?),
                None => stored_conflict
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()?,
            },
            payment: derived.payment.clone(),
            ticket_id,
            target_at,
            overdue,
            created_by,
            created_at,
            updated_at,
            events,
        }))
    }

    pub async fn get_case(&self, actor: &Actor, case_no: &str) -> Result<CaseView, AppError> {
        actor
            .require(Capability::ViewCases)
            .or_else(|_| actor.require(Capability::AdvanceCase))?;
        let no: CaseNo = case_no.parse().map_err(|e| {
            AppError::field(
                "case_no",
                "invalid_case_no",
                format!("{e}"),
                "رقم المعاملة غير صالح",
            )
        })?;
        let app = self.clone();
        self.db
            .readers
            .read(move |c| app.case_view_from(c, no.as_str()))
            .await?
            .ok_or_else(|| AppError::not_found(format!("case {case_no}")))
    }

    /// Creates a case at a desk for a registered citizen. The fee is computed from the
    /// schedule in force today and frozen on the case.
    pub async fn create_case(&self, actor: &Actor, input: NewCase) -> Result<CaseView, AppError> {
        actor.require(Capability::CreateCase)?;
        let service = self.service(input.service.trim())?;
        self.require_permission(actor, service.authority).await?;
        let mut errs = Vec::new();
        let nid = match input.national_id.trim().parse::<NationalId>() {
            Ok(n) => Some(n),
            Err(e) => {
                errs.push(field_error(
                    "national_id",
                    "invalid_national_id",
                    &e.to_string(),
                    &e.message_ar(),
                ));
                None
            }
        };
        let fields = match validate_fields(&service, &input.fields) {
            Ok(f) => f,
            Err(mut fe) => {
                errs.append(&mut fe);
                BTreeMap::new()
            }
        };
        let delivery = match &input.delivery {
            DeliveryInput::Pickup => Delivery::Pickup {
                center: self.settings.center_id.clone(),
            },
            DeliveryInput::Post { address } if address.trim().chars().count() >= 5 => {
                Delivery::Post {
                    address: address.trim().to_string(),
                }
            }
            DeliveryInput::Post { .. } => {
                errs.push(field_error(
                    "delivery.address",
                    "required",
                    "a postal address is required for delivery by post",
                    "العنوان البريدي مطلوب للتسليم بالبريد",
                ));
                Delivery::Pickup {
                    center: self.settings.center_id.clone(),
                }
            }
        };
        if !errs.is_empty() {
            return Err(AppError::Invalid(errs));
        }
        let nid = nid.ok_or_else(|| AppError::Internal("national id vanished".into()))?;
        // A clock that was never set (1970) would fail below for a reason nobody can act
        // on (no fee in force that day): say what is wrong first.
        let unset = wallclock::judge(
            &wallclock::Evidence {
                wall: self.now(),
                ..wallclock::Evidence::default()
            },
            &self.settings.timezone,
        );
        if unset.not_set {
            return Err(AppError::Conflict {
                code: "clock_not_set",
                message: format!(
                    "{}; {}",
                    unset.problem.unwrap_or_default(),
                    unset.numbering_refused.unwrap_or_default()
                ),
            });
        }
        let today = self.today();
        let fee =
            self.fees()
                .fee_for(&service.code, today)
                .map_err(|e| AppError::Unprocessable {
                    code: "no_fee_in_force",
                    message: e.to_string(),
                })?;
        let at = self.now();
        let target_at = at + jiff::SignedDuration::from_hours(i64::from(service.target_hours));
        let prefix = self.settings.receipt_prefix.clone();
        let year = self.local_now().year();
        let gate = self.numbering_gate().await;
        let network = self.network_time_now();
        let tz = self.settings.timezone.clone();
        let actor2 = actor.clone();
        let app = self.clone();
        let view = self
            .db
            .writer
            .write(move |tx| -> Result<CaseView, AppError> {
                let c = tx.conn;
                let Some(citizen) = find_by_nid(c, &nid)? else {
                    return Err(AppError::field(
                        "national_id",
                        "citizen_not_registered",
                        format!("no citizen with national id {nid} is registered here; register the profile first"),
                        "لا يوجد مواطن مسجل بهذا الرقم الوطني؛ سجّل بياناته أولاً",
                    ));
                };
                // The case keeps the citizen as at intake, like its fee.
                let citizen = citizen.profile;
                if let Some(t) = input.ticket_id {
                    let exists: bool = c.query_row("SELECT count(*) > 0 FROM tickets WHERE id = ?1", [t], |r| r.get(0))?;
                    if !exists {
                        return Err(AppError::field("ticket_id", "unknown_ticket", format!("no ticket {t}"), "لا توجد بطاقة بهذا الرقم"));
                    }
                }
                let center = app.settings.center_id.clone();
                // The year goes on the citizen's receipt: not from a clock that is wrong.
                let clock = wallclock::judge(&wallclock::evidence(c, at, network)?, &tz);
                if let Some(why) = clock.numbering_refused {
                    tracing::warn!(problem = ?clock.problem, "a case was not numbered: the clock looks wrong");
                    return Err(AppError::Conflict {
                        code: if clock.not_set { "clock_not_set" } else { "clock_unconfirmed" },
                        message: format!("{}; {why}", clock.problem.unwrap_or_default()),
                    });
                }
                let series = numbering::current_series(c, tx.docs.actor().to_bytes(), gate, at)?;
                let case_no = numbering::next_case_no(c, &center, &prefix, year, series)?;
                let ev = CaseEvent { kind: CaseEventKind::Created, actor: actor2.username.clone(), desk: actor2.terminal.clone(), at, hlc: next_hlc(c, app.settings.center_id.as_str(), at)? };
                c.execute(
                    "INSERT INTO cases(case_no, national_id, service_code, authority, fields, delivery, fee, fee_total, status, ticket_id, target_at, created_by, created_at, updated_at, citizen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'created', ?9, ?10, ?11, ?12, ?12, ?13)",
                    params![
                        case_no.as_str(),
                        nid.as_str(),
                        service.code,
                        serde_json::to_value(service.authority)?.as_str().unwrap_or_default(),
                        serde_json::to_string(&fields)?,
                        serde_json::to_string(&delivery)?,
                        serde_json::to_string(&fee)?,
                        fee.total.piastres(),
                        input.ticket_id,
                        target_at.to_string(),
                        actor2.username,
                        at.to_string(),
                        serde_json::to_string(&citizen)?
                    ],
                )?;
                append_event(c, case_no.as_str(), &ev)?;
                // The case document, in the same transaction as its projection rows.
                let new_doc = sync_docs::NewCase {
                    case_no: case_no.clone(),
                    center: Some(center.clone()),
                    service: service.code.clone(),
                    citizen: nid.clone(),
                    delivery: delivery.clone(),
                    fields: fields.clone(),
                    fee: Some(fee.clone()),
                    created: ev.clone(),
                };
                tx.docs.create(c, &DocId::case(Some(&center), &case_no), |d| {
                    sync_docs::create_case(d, &new_doc)?;
                    sync_docs::set_case_citizen(d, &citizen)
                })?;
                if let Some(t) = input.ticket_id {
                    c.execute("UPDATE tickets SET case_no = ?2 WHERE id = ?1 AND case_no IS NULL", params![t, case_no.as_str()])?;
                }
                audit(c, at, &actor2, "case.create", case_no.as_str(), serde_json::json!({"service": service.code, "fee_total": fee.total.piastres()}))?;
                app.case_view_from(c, case_no.as_str())?.ok_or_else(|| AppError::Internal("case vanished".into()))
            })
            .await?;
        self.bus.publish(LiveEvent::CaseUpdated {
            case_no: view.case_no.clone(),
            status: status_key(view.status),
        });
        Ok(view)
    }

    /// Records payment: cash (a receipt number is issued) or an e-payment reference.
    pub async fn pay_case(
        &self,
        actor: &Actor,
        case_no: &str,
        input: PaymentInput,
    ) -> Result<CaseView, AppError> {
        actor.require(Capability::TakePayment)?;
        if let PaymentInput::Epayment { reference, .. } = &input {
            let r = reference.trim();
            if r.len() < 6
                || r.len() > 40
                || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(AppError::field(
                    "reference",
                    "invalid_reference",
                    "the e-payment reference is 6–40 letters, digits or '-'",
                    "مرجع الدفع الإلكتروني غير صالح",
                ));
            }
        }
        let prefix = self.settings.receipt_prefix.clone();
        let gate = match input {
            PaymentInput::Cash => self.numbering_gate().await,
            PaymentInput::Epayment { .. } => numbering::Gate::Open,
        };
        let at = self.now();
        self.transition(actor, case_no, move |c, actor| {
            let payment = match input {
                PaymentInput::Cash => {
                    let series = numbering::current_series(c, actor, gate, at)?;
                    Payment::Cash {
                        receipt: numbering::next_receipt_no(c, &prefix, series)?,
                    }
                }
                PaymentInput::Epayment { reference, bank } => Payment::EPayment {
                    reference: reference.trim().to_string(),
                    bank,
                },
            };
            Ok(CaseEventKind::Paid(payment))
        })
        .await
    }

    /// Moves a case one step along its lifecycle.
    pub async fn advance_case(
        &self,
        actor: &Actor,
        case_no: &str,
        action: CaseAction,
    ) -> Result<CaseView, AppError> {
        actor.require(Capability::AdvanceCase)?;
        let kind = match action {
            CaseAction::Start => CaseEventKind::Started,
            CaseAction::Ready => CaseEventKind::Ready,
            CaseAction::Notify => CaseEventKind::Notified,
            CaseAction::Deliver {
                receiver_national_id,
            } => {
                let receiver: NationalId = receiver_national_id.trim().parse().map_err(
                    |e: markaz_sync::model::ids::IdError| {
                        AppError::field(
                            "receiver_national_id",
                            "invalid_national_id",
                            e.to_string(),
                            e.message_ar(),
                        )
                    },
                )?;
                CaseEventKind::Delivered { receiver }
            }
            CaseAction::Post { tracking } => {
                let t = tracking.trim();
                if t.len() < 4 || t.len() > 40 {
                    return Err(AppError::field(
                        "tracking",
                        "invalid_tracking",
                        "the postal tracking number is 4–40 characters",
                        "رقم التتبع البريدي غير صالح",
                    ));
                }
                CaseEventKind::Posted {
                    tracking: t.to_string(),
                }
            }
            CaseAction::Cancel { reason } | CaseAction::Reject { reason }
                if reason.trim().is_empty() =>
            {
                return Err(AppError::field(
                    "reason",
                    "required",
                    "a reason is required",
                    "السبب مطلوب",
                ));
            }
            CaseAction::Cancel { reason } => CaseEventKind::Cancelled {
                reason: reason.trim().to_string(),
            },
            CaseAction::Reject { reason } => CaseEventKind::Rejected {
                reason: reason.trim().to_string(),
            },
        };
        self.transition(actor, case_no, move |_, _| Ok(kind)).await
    }

    /// The shared path of every transition: permission for the service's authority, the
    /// domain rule (409 naming the current state), the event, the projection, the outbox.
    async fn transition<F>(
        &self,
        actor: &Actor,
        case_no: &str,
        make: F,
    ) -> Result<CaseView, AppError>
    where
        F: FnOnce(&Connection, &[u8]) -> Result<CaseEventKind, AppError> + Send + 'static,
    {
        let current = self.get_case(actor, case_no).await?;
        self.require_permission(actor, current.authority).await?;
        let at = self.now();
        let actor2 = actor.clone();
        let app = self.clone();
        let no = current.case_no.clone();
        let center_name_ar = self.settings.center_name_ar.clone();
        let view = self
            .db
            .writer
            .write(move |tx| -> Result<CaseView, AppError> {
                let c = tx.conn;
                // Re-read inside the write: another desk may have moved the case meanwhile.
                let now = app.case_view_from(c, &no)?.ok_or_else(|| AppError::not_found(format!("case {no}")))?;
                let kind = make(c, tx.docs.actor().to_bytes())?;
                if let CaseEventKind::Delivered { receiver } = &kind
                    && receiver.as_str() != now.national_id
                {
                    return Err(AppError::field(
                        "receiver_national_id",
                        "receiver_mismatch",
                        "the receiver's national id does not match the citizen of this case",
                        "الرقم الوطني للمستلم لا يطابق صاحب المعاملة",
                    ));
                }
                case::apply(now.status, &kind, &now.delivery)
                    .map_err(|e| AppError::Conflict { code: "illegal_transition", message: e.message_en() })?;
                let ev = CaseEvent { kind: kind.clone(), actor: actor2.username.clone(), desk: actor2.terminal.clone(), at, hlc: next_hlc(c, app.settings.center_id.as_str(), at)? };
                append_event(c, &no, &ev)?;
                let case_no: CaseNo = no.parse().map_err(|e| AppError::Internal(format!("stored case number: {e}")))?;
                let doc_id = case_doc_id(c, tx.docs, &app.settings.center_id, &case_no)?;
                tx.docs.edit(c, &doc_id, |d| sync_docs::append_case_event(d, &ev))?;
                // The projection row is rewritten from the events, the one source of truth.
                let derived = case::derive(&load_events(c, &no)?, &now.delivery);
                let next = derived.status;
                c.execute(
                    "UPDATE cases SET status = ?2, payment = ?3, updated_at = ?5,
                       conflict = CASE WHEN ?4 IS NOT NULL THEN ?4
                                       WHEN json_extract(conflict, '$.twins') IS NOT NULL THEN conflict END
                     WHERE case_no = ?1",
                    params![
                        no,
                        status_key(next),
                        derived.payment.as_ref().map(serde_json::to_string).transpose()?,
                        derived.conflict.as_ref().map(serde_json::to_string).transpose()?,
                        at.to_string()
                    ],
                )?;
                if matches!(kind, CaseEventKind::Ready) && matches!(now.delivery, Delivery::Pickup { .. }) {
                    enqueue_ready_sms(c, &no, &now.national_id, &center_name_ar, at)?;
                }
                audit(c, at, &actor2, &format!("case.{}", status_key(next)), &no, serde_json::to_value(&kind)?)?;
                app.case_view_from(c, &no)?.ok_or_else(|| AppError::Internal("case vanished".into()))
            })
            .await?;
        self.bus.publish(LiveEvent::CaseUpdated {
            case_no: view.case_no.clone(),
            status: status_key(view.status),
        });
        if view.status == CaseStatus::Ready {
            self.bus.publish(LiveEvent::CaseReady {
                case_no: view.case_no.clone(),
                service: view.service.clone(),
            });
        }
        Ok(view)
    }

    /// Searches cases by case number or national id, and by status.
    pub async fn search_cases(
        &self,
        actor: &Actor,
        query: CaseQuery,
    ) -> Result<Vec<CaseRow>, AppError> {
        actor
            .require(Capability::ViewCases)
            .or_else(|_| actor.require(Capability::AdvanceCase))?;
        let mut sql = String::from(
            "SELECT case_no, national_id, service_code, status, fee_total, target_at, conflict IS NOT NULL, created_at FROM cases WHERE 1=1",
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(no) = q.to_ascii_uppercase().parse::<CaseNo>() {
                sql.push_str(" AND case_no = ?");
                args.push(no.to_string());
            } else if let Ok(nid) = q.parse::<NationalId>() {
                sql.push_str(" AND national_id = ?");
                args.push(nid.to_string());
            } else {
                return Err(AppError::field(
                    "q",
                    "invalid_query",
                    "search by a case number (e.g. MID-2026-000123) or an 11-digit national id",
                    "ابحث برقم المعاملة أو بالرقم الوطني",
                ));
            }
        }
        if let Some(s) = query.status.as_deref().filter(|s| !s.is_empty()) {
            let status: CaseStatus =
                serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
                    AppError::field(
                        "status",
                        "unknown_status",
                        format!("unknown status '{s}'"),
                        "حالة غير معروفة",
                    )
                })?;
            sql.push_str(" AND status = ?");
            args.push(status_key(status));
        }
        let now = self.now();
        if query.overdue == Some(true) {
            sql.push_str(" AND status NOT IN ('delivered','posted','cancelled','rejected') AND target_at < ?");
            args.push(now.to_string());
        }
        sql.push_str(" ORDER BY created_at DESC LIMIT ?");
        args.push(query.limit.unwrap_or(100).min(500).to_string());
        self.db
            .readers
            .read(move |c| -> Result<Vec<CaseRow>, AppError> {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    let status: String = r.get(3)?;
                    let target_at: String = r.get(5)?;
                    let terminal = matches!(
                        status.as_str(),
                        "delivered" | "posted" | "cancelled" | "rejected"
                    );
                    let overdue =
                        !terminal && target_at.parse::<jiff::Timestamp>().is_ok_and(|t| t < now);
                    Ok(CaseRow {
                        case_no: r.get(0)?,
                        national_id: r.get(1)?,
                        service: r.get(2)?,
                        status,
                        fee_total: r.get(4)?,
                        target_at,
                        overdue,
                        conflict: r.get(6)?,
                        created_at: r.get(7)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}

/// Queues "your document is ready" for the citizen's phone, in the same transaction as
/// the ready event, so it is sent exactly once by the outbox.
fn enqueue_ready_sms(
    conn: &Connection,
    case_no: &str,
    nid: &str,
    center_name_ar: &str,
    at: jiff::Timestamp,
) -> Result<(), AppError> {
    let phone: Option<String> = conn
        .query_row(
            "SELECT phone FROM citizens WHERE national_id = ?1",
            [nid],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let Some(phone) = phone else { return Ok(()) };
    let body = format!(
        "وثيقتكم في المعاملة {case_no} جاهزة للاستلام في {center_name_ar}. يرجى إحضار البطاقة الشخصية."
    );
    conn.execute(
        "INSERT INTO outbox(kind, recipient, body, subject, created_at) VALUES ('case_ready', ?1, ?2, ?3, ?4)",
        params![phone, body, case_no, at.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_the_kind_tags() {
        let receiver: NationalId = "01234567890".parse().expect("nid");
        let cases = [
            (CaseEventKind::Created, "created"),
            (CaseEventKind::Ready, "ready"),
            (CaseEventKind::Delivered { receiver }, "delivered"),
            (CaseEventKind::Cancelled { reason: "x".into() }, "cancelled"),
        ];
        for (kind, name) in cases {
            assert_eq!(event_name(&kind).expect("serializable"), name);
        }
    }
}
