//! Work the hub does on cases that exist: the electronic services center's stages of a
//! portal case (start, ready, hand to the post with a tracking number, cancel with a
//! reason) and an operator's resolution of a conflict.
//!
//! Every action is an event appended to the case document at the hub, checked first with
//! the same transition function the centers use (`model::case::apply`, or
//! `model::case::check_resolution` for a resolution), and routed like any hub change: a
//! portal case to its pickup center, a center's case back to that center. So a
//! resolution reaches the center at its next sync and both ends read the same status.
//! The hub works the stages of a portal case sent by post; one for pickup is processed
//! at its center, and the hub may only cancel it.

use markaz_sync::docs::{self, CaseView, DocId};
use markaz_sync::model::case::{self, CaseEvent, CaseEventKind, CaseStatus, Delivery};
use serde::{Deserialize, Serialize};

use crate::portal::PortalError;
use crate::storage::HubEngine;

/// An action on a case at the hub (`POST /api/v1/cases/{case_no}/actions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum HubAction {
    /// Start processing a portal case sent by post.
    Start,
    /// The document of a portal case sent by post is ready.
    Ready,
    /// Handed to the post, with its tracking number.
    Post { tracking: String },
    /// Cancel a portal case, with a reason.
    Cancel { reason: String },
    /// Resolve the case's conflict: which terminal status stands, and why.
    Resolve { outcome: CaseStatus, reason: String },
}

/// Why an action was refused beyond bad input: the case's state does not allow it.
#[derive(Debug, thiserror::Error)]
pub enum CaseworkError {
    #[error(transparent)]
    Portal(#[from] PortalError),
    /// 409: the case's state (or delivery mode) does not allow the action.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
}

fn invalid(field: &str, message: impl ToString) -> CaseworkError {
    CaseworkError::Portal(PortalError::Invalid {
        field: field.into(),
        message: message.to_string(),
    })
}

/// The document of a case by its number: a center's (`case:<center>:<no>`) or a portal
/// case (`case:hub:<no>`).
pub fn find_case(e: &mut dyn HubEngine, case_no: &str) -> Result<(DocId, CaseView), PortalError> {
    let no: markaz_sync::model::CaseNo = case_no.trim().to_ascii_uppercase().parse().map_err(
        |err: markaz_sync::model::IdError| PortalError::Invalid {
            field: "case_no".into(),
            message: err.to_string(),
        },
    )?;
    let suffix = format!(":{}", no.as_str());
    for id in e.doc_ids("case")? {
        if !id.as_str().ends_with(&suffix) {
            continue;
        }
        let mut view = None;
        e.read_doc(&id, &mut |d| {
            view = Some(docs::read_case(d)?);
            Ok(serde_json::Value::Null)
        })?;
        if let Some(v) = view {
            return Ok((id, v));
        }
    }
    Err(PortalError::NotFound(format!("case {}", no.as_str())))
}

/// Carry out `action` on a case as operator `by`; returns the case as it now reads.
pub fn act(
    e: &mut dyn HubEngine,
    case_no: &str,
    action: &HubAction,
    by: &str,
    now: jiff::Timestamp,
) -> Result<CaseView, CaseworkError> {
    let (id, view) = find_case(e, case_no)?;
    let status = view.derived.status;
    let portal = view.center.is_none();
    let by_post = matches!(view.delivery, Delivery::Post { .. });
    let kind = match action {
        HubAction::Resolve { outcome, reason } => {
            case::check_resolution(view.derived.conflict.as_ref(), status, *outcome, reason)
                .map_err(|t| refused(t.code(), t.message_en()))?;
            if view
                .derived
                .conflict
                .as_ref()
                .is_some_and(|c| c.is_resolved())
            {
                tracing::info!(case = %view.case_no, "a resolved conflict resolved again");
            }
            CaseEventKind::Resolved {
                outcome: *outcome,
                reason: reason.trim().to_string(),
            }
        }
        _ if !portal => {
            return Err(refused(
                "not_a_portal_case",
                format!(
                    "{} is a case of a center: it is processed there",
                    view.case_no
                ),
            ));
        }
        HubAction::Cancel { reason } => {
            if reason.trim().is_empty() {
                return Err(invalid("reason", "a reason is required"));
            }
            CaseEventKind::Cancelled {
                reason: reason.trim().to_string(),
            }
        }
        _ if !by_post => {
            return Err(refused(
                "not_for_post",
                format!(
                    "{} is for pickup at a center: its center processes it",
                    view.case_no
                ),
            ));
        }
        HubAction::Start => CaseEventKind::Started,
        HubAction::Ready => CaseEventKind::Ready,
        HubAction::Post { tracking } => {
            let t = tracking.trim();
            if t.len() < 4 || t.len() > 40 {
                return Err(invalid(
                    "tracking",
                    "the tracking number is 4–40 characters",
                ));
            }
            CaseEventKind::Posted {
                tracking: t.to_string(),
            }
        }
    };
    if !matches!(kind, CaseEventKind::Resolved { .. }) {
        case::apply(status, &kind, &view.delivery)
            .map_err(|t| refused(t.code(), t.message_en()))?;
    }
    let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let event = CaseEvent {
        kind,
        actor: by.to_string(),
        desk: None,
        at: now,
        hlc: e.tick_hlc(now_ms),
    };
    e.hub_edit(&id, &mut |d| docs::append_case_event(d, &event))
        .map_err(PortalError::from)?;
    tracing::info!(case = %view.case_no, event = event.kind.name(), by, "case action at the hub");
    let (_, after) = find_case(e, case_no)?;
    Ok(after)
}

fn refused(code: &'static str, message: String) -> CaseworkError {
    CaseworkError::Refused { code, message }
}

/// One portal case as the electronic services center follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortalCaseRow {
    pub case_no: String,
    pub service: String,
    pub citizen: String,
    pub delivery: Delivery,
    pub status: CaseStatus,
    /// The postal tracking number once handed to the post.
    pub tracking: Option<String>,
    pub created_at: Option<jiff::Timestamp>,
    pub updated_at: Option<jiff::Timestamp>,
    /// A conflict, unresolved or resolved (see `/api/v1/conflicts`).
    pub conflict: bool,
    pub resolved: bool,
    pub events: Vec<CaseEvent>,
}

impl PortalCaseRow {
    pub fn of(v: &CaseView) -> PortalCaseRow {
        let tracking = v.events.iter().rev().find_map(|e| match &e.kind {
            CaseEventKind::Posted { tracking } => Some(tracking.clone()),
            _ => None,
        });
        PortalCaseRow {
            case_no: v.case_no.to_string(),
            service: v.service.clone(),
            citizen: v.citizen.to_string(),
            delivery: v.delivery.clone(),
            status: v.derived.status,
            tracking,
            created_at: v.events.first().map(|e| e.at),
            updated_at: v.events.iter().map(|e| e.at).max(),
            conflict: v.derived.conflict.is_some(),
            resolved: v.derived.conflict.as_ref().is_some_and(|c| c.is_resolved()),
            events: v.events.clone(),
        }
    }
}

/// Every portal case, newest first, optionally only those in `status`.
pub fn portal_cases(
    e: &mut dyn HubEngine,
    status: Option<CaseStatus>,
) -> Result<Vec<PortalCaseRow>, PortalError> {
    let mut out: Vec<PortalCaseRow> = crate::oversight::case_views(e)?
        .iter()
        .filter(|v| v.center.is_none())
        .filter(|v| status.is_none_or(|s| v.derived.status == s))
        .map(PortalCaseRow::of)
        .collect();
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.case_no.cmp(&a.case_no))
    });
    Ok(out)
}
