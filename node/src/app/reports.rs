//! What a supervisor reads: today's queue figures (waiting and service time per group and
//! per counter, no-shows), cases by status and past target, and the logs.

use crate::domain::queue::TicketState;
use rusqlite::params;
use serde::Serialize;

use markaz_sync::model::staff::Capability;

use super::{Actor, App};
use crate::error::AppError;

#[derive(Debug, Clone, Serialize, Default)]
pub struct QueueFigures {
    /// A group id or a counter number, as text.
    pub key: String,
    pub issued: u32,
    pub served: u32,
    pub no_shows: u32,
    pub waiting_now: u32,
    /// Seconds from issue to first call; None while nothing was called.
    pub avg_wait_secs: Option<i64>,
    pub max_wait_secs: Option<i64>,
    /// Seconds from call to finish.
    pub avg_service_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    pub day: String,
    pub by_group: Vec<QueueFigures>,
    pub by_counter: Vec<QueueFigures>,
    pub total: QueueFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub by_status: Vec<(String, u32)>,
    pub overdue: u32,
    pub conflicts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    pub id: i64,
    pub at: String,
    pub who: Option<String>,
    pub terminal: Option<String>,
    pub what: String,
    pub subject: Option<String>,
    pub detail: Option<String>,
}

/// The queue figures of a group of tickets, as SQL columns (states from [`TicketState`]).
fn figures_sql() -> String {
    format!(
        "count(*),
    sum(state = '{done}'),
    sum(state = '{no_show}'),
    sum(state = '{waiting}'),
    avg(CASE WHEN called_ms IS NOT NULL THEN (called_ms - issued_ms) / 1000 END),
    max(CASE WHEN called_ms IS NOT NULL THEN (called_ms - issued_ms) / 1000 END),
    avg(CASE WHEN state = '{done}' THEN (done_ms - called_ms) / 1000 END)",
        done = TicketState::Done.as_str(),
        no_show = TicketState::NoShow.as_str(),
        waiting = TicketState::Waiting.as_str()
    )
}

fn figures(key: String, r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<QueueFigures> {
    Ok(QueueFigures {
        key,
        issued: r.get(offset)?,
        served: r.get::<_, Option<u32>>(offset + 1)?.unwrap_or(0),
        no_shows: r.get::<_, Option<u32>>(offset + 2)?.unwrap_or(0),
        waiting_now: r.get::<_, Option<u32>>(offset + 3)?.unwrap_or(0),
        avg_wait_secs: r
            .get::<_, Option<f64>>(offset + 4)?
            .map(|v| v.round() as i64),
        max_wait_secs: r.get::<_, Option<i64>>(offset + 5)?,
        avg_service_secs: r
            .get::<_, Option<f64>>(offset + 6)?
            .map(|v| v.round() as i64),
    })
}

/// The whole center's queue figures of one local day (`YYYY-MM-DD`), inside any
/// connection (a reader, or the writer's transaction for the daily statistics document).
pub(crate) fn day_total(c: &rusqlite::Connection, day: &str) -> rusqlite::Result<QueueFigures> {
    let columns = figures_sql();
    c.query_row(
        &format!("SELECT {columns} FROM tickets WHERE day = ?1"),
        [day],
        |r| figures("total".into(), r, 0),
    )
}

impl App {
    /// Queue figures for a day (default: today, in the center's time zone).
    pub async fn queue_report(
        &self,
        actor: &Actor,
        day: Option<jiff::civil::Date>,
    ) -> Result<QueueReport, AppError> {
        actor.require(Capability::ViewReports)?;
        let day = day.unwrap_or_else(|| self.today()).to_string();
        self.db
            .readers
            .read(move |c| -> Result<QueueReport, AppError> {
                let columns = figures_sql();
                let by_group = c
                    .prepare(&format!("SELECT original_group, {columns} FROM tickets WHERE day = ?1 GROUP BY original_group ORDER BY original_group"))?
                    .query_map([&day], |r| figures(r.get(0)?, r, 1))?
                    .collect::<Result<Vec<_>, _>>()?;
                let by_counter = c
                    .prepare(&format!(
                        "SELECT counter, {columns} FROM tickets WHERE day = ?1 AND counter IS NOT NULL GROUP BY counter ORDER BY counter"
                    ))?
                    .query_map([&day], |r| figures(r.get::<_, i64>(0)?.to_string(), r, 1))?
                    .collect::<Result<Vec<_>, _>>()?;
                let total = day_total(c, &day)?;
                Ok(QueueReport { day, by_group, by_counter, total })
            })
            .await
    }

    pub async fn case_report(&self, actor: &Actor) -> Result<CaseReport, AppError> {
        actor.require(Capability::ViewReports)?;
        let now = self.now().to_string();
        self.db
            .readers
            .read(move |c| -> Result<CaseReport, AppError> {
                let by_status = c
                    .prepare("SELECT status, count(*) FROM cases GROUP BY status ORDER BY status")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                let overdue = c.query_row(
                    "SELECT count(*) FROM cases WHERE status NOT IN ('delivered','posted','cancelled','rejected') AND target_at < ?1",
                    params![now],
                    |r| r.get(0),
                )?;
                let conflicts = c.query_row("SELECT count(*) FROM cases WHERE conflict IS NOT NULL", [], |r| r.get(0))?;
                Ok(CaseReport { by_status, overdue, conflicts })
            })
            .await
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, actor: &Actor, limit: u32) -> Result<Vec<LogRow>, AppError> {
        if !(actor.can(Capability::ViewTechnical) || actor.can(Capability::ManageStaff)) {
            return Err(AppError::forbidden(
                "role_forbidden",
                "your role cannot read the audit log",
            ));
        }
        self.db
            .readers
            .read(move |c| -> Result<Vec<LogRow>, AppError> {
                Ok(c.prepare("SELECT id, at, actor, terminal, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT ?1")?
                    .query_map([limit.min(1000)], |r| {
                        Ok(LogRow { id: r.get(0)?, at: r.get(1)?, who: r.get(2)?, terminal: r.get(3)?, what: r.get(4)?, subject: r.get(5)?, detail: r.get(6)? })
                    })?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    /// The node's event log (warnings and errors of devices, sync, storage), newest first.
    pub async fn node_events(
        &self,
        actor: &Actor,
        limit: u32,
        errors_only: bool,
    ) -> Result<Vec<LogRow>, AppError> {
        actor.require(Capability::ViewTechnical)?;
        self.db
            .readers
            .read(move |c| -> Result<Vec<LogRow>, AppError> {
                let sql = if errors_only {
                    "SELECT id, at, level, source, message FROM node_log WHERE level IN ('warn','error') ORDER BY id DESC LIMIT ?1"
                } else {
                    "SELECT id, at, level, source, message FROM node_log ORDER BY id DESC LIMIT ?1"
                };
                Ok(c.prepare(sql)?
                    .query_map([limit.min(1000)], |r| {
                        Ok(LogRow { id: r.get(0)?, at: r.get(1)?, who: r.get(2)?, terminal: None, what: r.get(3)?, subject: r.get(4)?, detail: None })
                    })?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }
}
