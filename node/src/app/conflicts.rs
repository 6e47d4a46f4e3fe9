//! The center's list of cases in conflict (`GET /api/v1/conflicts`): cases whose history
//! holds incompatible terminal events (handed over and cancelled), or two cases created
//! under one number. A conflict is resolved at the hub by an operator; the resolution is
//! an event in the case document, so it arrives here with the case and the case page
//! shows it. The list shows the unresolved ones, or all with `?all=true`.

use markaz_sync::model::case::{CaseStatus, Conflict, Resolution};
use markaz_sync::model::staff::Capability;
use serde::{Deserialize, Serialize};

use super::{Actor, App};
use crate::error::AppError;

/// `GET /api/v1/conflicts` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictQuery {
    /// Resolved ones too.
    #[serde(default)]
    pub all: Option<bool>,
}

/// One case in conflict.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictRow {
    pub case_no: String,
    pub service: String,
    pub status: String,
    pub message_ar: String,
    pub message_en: String,
    /// Two different cases under this number (resolved by a supervisor's check, not by
    /// choosing a status).
    pub double_creation: bool,
    /// The statuses the hub's operator chooses between.
    pub outcomes: Vec<CaseStatus>,
    pub resolution: Option<Resolution>,
}

impl App {
    /// Cases in conflict, newest first: unresolved only unless `all`.
    pub async fn list_conflicts(
        &self,
        actor: &Actor,
        q: ConflictQuery,
    ) -> Result<Vec<ConflictRow>, AppError> {
        actor
            .require(Capability::ViewCases)
            .or_else(|_| actor.require(Capability::AdvanceCase))?;
        let all = q.all.unwrap_or(false);
        self.db
            .readers
            .read(move |c| -> Result<Vec<ConflictRow>, AppError> {
                let mut stmt = c.prepare(
                    "SELECT case_no, service_code, status, conflict FROM cases
                     WHERE conflict IS NOT NULL ORDER BY updated_at DESC, case_no",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (case_no, service, status, json) = row?;
                    let conflict: Conflict = match serde_json::from_str(&json) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(case = %case_no, error = %e, "unreadable stored conflict");
                            continue;
                        }
                    };
                    if conflict.is_resolved() && !all {
                        continue;
                    }
                    out.push(ConflictRow {
                        case_no,
                        service,
                        status,
                        message_ar: conflict.message_ar(),
                        message_en: conflict.message_en(),
                        double_creation: conflict.is_double_creation(),
                        outcomes: conflict.outcomes(),
                        resolution: conflict.resolution,
                    });
                }
                Ok(out)
            })
            .await
    }
}
