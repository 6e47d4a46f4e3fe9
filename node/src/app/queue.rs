//! The turn system at the center: issue tickets per service group (daily letter series),
//! call them at counters with the priority ratio, recall, no-show, transfer, finish.
//! Every step is a timestamped ticket event, so waiting and service times can be queried.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use markaz_sync::model::staff::Capability;

use crate::domain::queue::{self, PriorityClass, RatioState, TicketState, WaitingTicket, Weights};
use crate::events::LiveEvent;

use super::{Actor, App, audit, next_seq};
use crate::error::AppError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueTicket {
    pub group: String,
    #[serde(default)]
    pub priority: Option<PriorityClass>,
    #[serde(default)]
    pub national_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub id: i64,
    pub number: String,
    pub day: String,
    pub group: String,
    pub original_group: String,
    pub priority: PriorityClass,
    pub state: TicketState,
    pub national_id: Option<String>,
    pub counter: Option<u32>,
    pub case_no: Option<String>,
    pub recalls: u32,
    pub issued_at: String,
    pub called_at: Option<String>,
    pub done_at: Option<String>,
    #[serde(skip)]
    pub issued_ms: i64,
    #[serde(skip)]
    pub done_ms: Option<i64>,
    /// Its place in line ([`queue::turn_of_issue`] unless a serve-later moved it).
    #[serde(skip)]
    pub turn: i64,
    /// Tickets of the same group issued earlier and still waiting (set on issue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_ahead: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CounterView {
    pub number: u32,
    pub groups: Vec<String>,
    pub current: Option<TicketView>,
    pub waiting: u32,
    /// The ticket this counter marked no-show lately, while it may still be undone.
    pub undoable: Option<TicketView>,
}

/// "Serve later": where the current ticket goes back in its group's line (1 = next).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLater {
    pub position: u32,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FinishTicket {
    #[serde(default)]
    pub case_no: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferTicket {
    pub group: String,
}

/// The columns [`from_row`] reads, as a literal so statements can be `concat!`ed.
macro_rules! columns {
    () => {
        "id, number, day, group_id, original_group, priority, state, national_id, counter, case_no, recalls, issued_ms, called_ms, done_ms, COALESCE(turn, issued_ms * 1000)"
    };
}
const COLUMNS: &str = columns!();

fn ms_to_string(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.to_string())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<TicketView> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let priority: PriorityClass = serde_json::from_value(serde_json::Value::String(text(5)?))
        .unwrap_or(PriorityClass::Normal);
    let state: TicketState =
        serde_json::from_value(serde_json::Value::String(text(6)?)).unwrap_or(TicketState::Waiting);
    Ok(TicketView {
        id: r.get(0)?,
        number: text(1)?,
        day: text(2)?,
        group: text(3)?,
        original_group: text(4)?,
        priority,
        state,
        national_id: r.get(7)?,
        counter: r.get(8)?,
        case_no: r.get(9)?,
        recalls: r.get(10)?,
        issued_ms: r.get(11)?,
        issued_at: ms_to_string(Some(r.get(11)?)).unwrap_or_default(),
        called_at: ms_to_string(r.get(12)?),
        done_at: ms_to_string(r.get(13)?),
        turn: r.get(14)?,
        done_ms: r.get(13)?,
        waiting_ahead: None,
    })
}

fn enum_key<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn event(
    conn: &Connection,
    ticket: i64,
    at_ms: i64,
    action: &str,
    counter: Option<u32>,
    actor: Option<&str>,
    detail: Option<String>,
) -> Result<(), AppError> {
    // Cached: it runs on every queue write, on the writer thread.
    conn.prepare_cached(
        "INSERT INTO ticket_events(ticket_id, at_ms, action, counter, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![ticket, at_ms, action, counter, actor, detail])?;
    Ok(())
}

pub(crate) fn get_ticket(conn: &Connection, id: i64) -> Result<Option<TicketView>, AppError> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM tickets WHERE id = ?1"
        ))?
        .query_row([id], from_row)
        .optional()?)
}

/// Tickets of `group` waiting on `day`, from the `ticket_waiting` counts that triggers on
/// `tickets` keep (schema v4): one row read, however long the queue.
pub(crate) fn waiting_in(conn: &Connection, day: &str, group: &str) -> Result<u32, AppError> {
    Ok(conn
        .prepare_cached("SELECT waiting FROM ticket_waiting WHERE day = ?1 AND group_id = ?2")?
        .query_row(params![day, group], |r| r.get::<_, u32>(0))
        .optional()?
        .unwrap_or(0))
}

/// A ticket to issue: everything [`issue_in`] needs, decided before the write.
pub struct NewTicket<'a> {
    pub day: &'a str,
    pub group: &'a str,
    pub letter: char,
    pub priority: PriorityClass,
    pub national_id: Option<&'a str>,
    pub at: jiff::Timestamp,
}

/// The statements of issuing a ticket, inside the caller's write: the next number of the
/// group's daily series, the row, its event, the audit entry, and the tickets ahead.
/// [`App::issue_ticket`] runs it in the group-commit writer; the group-commit bench's
/// baseline runs the very same function one transaction per write.
pub fn issue_in(
    c: &Connection,
    new: &NewTicket<'_>,
    actor: &Actor,
) -> Result<TicketView, AppError> {
    let now = new.at.as_millisecond();
    let seq = next_seq(c, &format!("ticket:{}:{}", new.day, new.letter))?;
    let number = queue::ticket_number(new.letter, seq as u32);
    c.prepare_cached(
        &format!("INSERT INTO tickets(day, group_id, original_group, number, priority, state, national_id, issued_ms)
         VALUES (?1, ?2, ?2, ?3, ?4, '{waiting}', ?5, ?6)", waiting = TicketState::Waiting.as_str()),
    )?
    .execute(params![new.day, new.group, number, enum_key(&new.priority), new.national_id, now])?;
    let id = c.last_insert_rowid();
    event(c, id, now, "issued", None, Some(&actor.username), None)?;
    audit(
        c,
        new.at,
        actor,
        "ticket.issue",
        &number,
        serde_json::json!({"group": new.group, "priority": new.priority}),
    )?;
    // The new ticket is counted among the waiting already.
    let ahead = waiting_in(c, new.day, new.group)?.saturating_sub(1);
    let mut t = get_ticket(c, id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))?;
    t.waiting_ahead = Some(ahead);
    Ok(t)
}

/// The ticket a counter is serving now (called and not yet finished), if any.
fn current_at(conn: &Connection, day: &str, counter: u32) -> Result<Option<TicketView>, AppError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM tickets WHERE day = ?1 AND counter = ?2 AND state = '{called}' ORDER BY called_ms DESC LIMIT 1", called = TicketState::Called.as_str()),
            params![day, counter],
            from_row,
        )
        .optional()?)
}

/// The ticket a counter marked no-show last today, if any.
fn last_no_show(
    conn: &Connection,
    day: &str,
    counter: u32,
) -> Result<Option<TicketView>, AppError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM tickets WHERE day = ?1 AND counter = ?2 AND state = '{no_show}' ORDER BY done_ms DESC, id DESC LIMIT 1", no_show = TicketState::NoShow.as_str()),
            params![day, counter],
            from_row,
        )
        .optional()?)
}

fn transition(t: &TicketView, to: TicketState) -> Result<(), AppError> {
    queue::check_transition(t.state, to).map_err(|e| AppError::Conflict {
        code: "illegal_ticket_transition",
        message: format!("ticket {}: {e}", t.number),
    })
}

impl App {
    fn weights(&self) -> Weights {
        Weights {
            priority: self.settings.priority_weight,
            normal: self.settings.normal_weight,
        }
    }

    /// Issues the next ticket of a group's daily series.
    pub async fn issue_ticket(
        &self,
        actor: &Actor,
        input: IssueTicket,
    ) -> Result<TicketView, AppError> {
        actor.require(Capability::IssueTicket)?;
        let group = self
            .group(&input.group)
            .ok_or_else(|| {
                AppError::field(
                    "group",
                    "unknown_group",
                    format!("no service group '{}' at this center", input.group),
                    "مجموعة خدمات غير معروفة",
                )
            })?
            .clone();
        let nid = match input
            .national_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(n) => Some(
                n.parse::<markaz_sync::model::ids::NationalId>()
                    .map_err(|e| {
                        AppError::field(
                            "national_id",
                            "invalid_national_id",
                            e.to_string(),
                            "الرقم الوطني غير صالح",
                        )
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let priority = input.priority.unwrap_or(PriorityClass::Normal);
        let day = self.today().to_string();
        let at = self.now();
        let actor2 = actor.clone();
        let ticket = self
            .db
            .writer
            .write(move |tx| -> Result<TicketView, AppError> {
                let c = tx.conn;
                let new = NewTicket {
                    day: &day,
                    group: &group.id,
                    letter: group.letter,
                    priority,
                    national_id: nid.as_deref(),
                    at,
                };
                issue_in(c, &new, &actor2)
            })
            .await?;
        self.bus.publish(LiveEvent::TicketIssued {
            ticket: ticket.number.clone(),
            group: ticket.group.clone(),
            waiting: ticket.waiting_ahead.unwrap_or(0) + 1,
        });
        Ok(ticket)
    }

    pub async fn ticket(&self, id: i64) -> Result<TicketView, AppError> {
        self.db
            .readers
            .read(move |c| get_ticket(c, id))
            .await?
            .ok_or_else(|| AppError::not_found(format!("ticket {id}")))
    }

    /// Today's waiting tickets, in the order they would be served within each class.
    pub async fn waiting_tickets(&self, actor: &Actor) -> Result<Vec<TicketView>, AppError> {
        if !(actor.can(Capability::IssueTicket)
            || actor.can(Capability::ServeCounter)
            || actor.can(Capability::ViewReports))
        {
            return Err(AppError::forbidden(
                "role_forbidden",
                "your role cannot see the queue",
            ));
        }
        let day = self.today().to_string();
        self.db
            .readers
            .read(move |c| -> Result<Vec<TicketView>, AppError> {
                let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM tickets WHERE day = ?1 AND state = '{waiting}' ORDER BY COALESCE(turn, issued_ms * 1000), id", waiting = TicketState::Waiting.as_str()))?;
                Ok(stmt.query_map([day], from_row)?.collect::<Result<_, _>>()?)
            })
            .await
    }

    pub async fn counter_view(&self, number: u32) -> Result<CounterView, AppError> {
        let counter = self.counter(number)?.clone();
        let day = self.today().to_string();
        let now = self.now_ms();
        self.db
            .readers
            .read(move |c| -> Result<CounterView, AppError> {
                let current = current_at(c, &day, counter.number)?;
                let mut waiting = 0u32;
                for g in &counter.groups {
                    waiting += waiting_in(c, &day, g)?;
                }
                let undoable = match current {
                    Some(_) => None,
                    None => last_no_show(c, &day, counter.number)?
                        .filter(|t| t.done_ms.is_some_and(|d| queue::may_undo_no_show(d, now))),
                };
                Ok(CounterView {
                    number: counter.number,
                    groups: counter.groups.clone(),
                    current,
                    waiting,
                    undoable,
                })
            })
            .await
    }

    /// Calls the next ticket for a counter by the priority ratio. The counter must have
    /// finished (or marked no-show) its current ticket first.
    pub async fn call_next(
        &self,
        actor: &Actor,
        counter: u32,
    ) -> Result<Option<TicketView>, AppError> {
        actor.require(Capability::ServeCounter)?;
        let settings = self.counter(counter)?.clone();
        let day = self.today().to_string();
        let now = self.now_ms();
        let at = self.now();
        let weights = self.weights();
        let actor2 = actor.clone();
        let called = self
            .db
            .writer
            .write(move |tx| -> Result<Option<TicketView>, AppError> {
                let c = tx.conn;
                if let Some(cur) = current_at(c, &day, counter)? {
                    return Err(AppError::Conflict {
                        code: "counter_busy",
                        message: format!("counter {counter} is still serving {}; finish it or mark it no-show first", cur.number),
                    });
                }
                let placeholders = settings.groups.iter().map(|_| "?").collect::<Vec<_>>().join(",");
                let sql = format!("SELECT {COLUMNS} FROM tickets WHERE day = ? AND state = '{waiting}' AND group_id IN ({placeholders}) ORDER BY COALESCE(turn, issued_ms * 1000), id", waiting = TicketState::Waiting.as_str());
                let mut values: Vec<String> = vec![day.clone()];
                values.extend(settings.groups.iter().cloned());
                let waiting: Vec<TicketView> = c.prepare(&sql)?.query_map(rusqlite::params_from_iter(values.iter()), from_row)?.collect::<Result<_, _>>()?;
                let candidates: Vec<WaitingTicket> = waiting
                    .iter()
                    .map(|t| WaitingTicket { id: t.id, priority: t.priority, turn: t.turn })
                    .collect();
                let mut ratio: RatioState = c
                    .query_row("SELECT state FROM queue_ratio WHERE day = ?1 AND counter = ?2", params![day, counter], |r| r.get::<_, String>(0))
                    .optional()?
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                let Some(id) = queue::pick_next(&candidates, &mut ratio, weights) else { return Ok(None) };
                c.execute(
                    "INSERT INTO queue_ratio(day, counter, state) VALUES (?1, ?2, ?3) ON CONFLICT(day, counter) DO UPDATE SET state = excluded.state",
                    params![day, counter, serde_json::to_string(&ratio)?],
                )?;
                c.execute(&format!("UPDATE tickets SET state = '{called}', counter = ?2, called_ms = ?3 WHERE id = ?1", called = TicketState::Called.as_str()), params![id, counter, now])?;
                event(c, id, now, "called", Some(counter), Some(&actor2.username), None)?;
                let t = get_ticket(c, id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))?;
                audit(c, at, &actor2, "ticket.call", &t.number, serde_json::json!({"counter": counter}))?;
                Ok(Some(t))
            })
            .await?;
        if let Some(t) = &called {
            self.bus.publish(LiveEvent::TicketCalled {
                ticket: t.number.clone(),
                counter,
                group: t.group.clone(),
                recall: false,
                at: at.to_string(),
            });
        }
        Ok(called)
    }

    /// Runs `f` on the counter's current ticket inside one write; errors when idle.
    async fn with_current<T, F>(
        &self,
        actor: &Actor,
        counter: u32,
        action: &'static str,
        f: F,
    ) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &TicketView, i64) -> Result<T, AppError> + Send + 'static,
    {
        actor.require(Capability::ServeCounter)?;
        self.counter(counter)?;
        let day = self.today().to_string();
        let now = self.now_ms();
        let at = self.now();
        let actor2 = actor.clone();
        self.db
            .writer
            .write(move |tx| -> Result<T, AppError> {
                let c = tx.conn;
                let cur = current_at(c, &day, counter)?.ok_or_else(|| AppError::Conflict {
                    code: "counter_idle",
                    message: format!(
                        "counter {counter} has no called ticket; call the next one first"
                    ),
                })?;
                let out = f(c, &cur, now)?;
                event(
                    c,
                    cur.id,
                    now,
                    action,
                    Some(counter),
                    Some(&actor2.username),
                    None,
                )?;
                audit(
                    c,
                    at,
                    &actor2,
                    &format!("ticket.{action}"),
                    &cur.number,
                    serde_json::json!({"counter": counter}),
                )?;
                Ok(out)
            })
            .await
            .map_err(AppError::from)
    }

    pub async fn recall(&self, actor: &Actor, counter: u32) -> Result<TicketView, AppError> {
        let t = self
            .with_current(actor, counter, "recalled", |c, cur, _| {
                c.execute(
                    "UPDATE tickets SET recalls = recalls + 1 WHERE id = ?1",
                    [cur.id],
                )?;
                get_ticket(c, cur.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
            })
            .await?;
        self.bus.publish(LiveEvent::TicketCalled {
            ticket: t.number.clone(),
            counter,
            group: t.group.clone(),
            recall: true,
            at: self.now().to_string(),
        });
        Ok(t)
    }

    pub async fn no_show(&self, actor: &Actor, counter: u32) -> Result<TicketView, AppError> {
        self.with_current(actor, counter, "no_show", |c, cur, now| {
            transition(cur, TicketState::NoShow)?;
            c.execute(
                &format!(
                    "UPDATE tickets SET state = '{no_show}', done_ms = ?2 WHERE id = ?1",
                    no_show = TicketState::NoShow.as_str()
                ),
                params![cur.id, now],
            )?;
            get_ticket(c, cur.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
        })
        .await
    }

    /// Undoes the counter's last no-show (the citizen came after all) within
    /// [`queue::UNDO_NO_SHOW_MS`]: the ticket is the counter's current one again.
    pub async fn undo_no_show(&self, actor: &Actor, counter: u32) -> Result<TicketView, AppError> {
        actor.require(Capability::ServeCounter)?;
        self.counter(counter)?;
        let day = self.today().to_string();
        let now = self.now_ms();
        let at = self.now();
        let actor2 = actor.clone();
        let t = self
            .db
            .writer
            .write(move |tx| -> Result<TicketView, AppError> {
                let c = tx.conn;
                if let Some(cur) = current_at(c, &day, counter)? {
                    return Err(AppError::Conflict {
                        code: "counter_busy",
                        message: format!(
                            "counter {counter} is serving {}; finish it first",
                            cur.number
                        ),
                    });
                }
                let t = last_no_show(c, &day, counter)?.ok_or_else(|| AppError::Conflict {
                    code: "nothing_to_undo",
                    message: format!("counter {counter} marked no ticket no-show today"),
                })?;
                if !t.done_ms.is_some_and(|d| queue::may_undo_no_show(d, now)) {
                    return Err(AppError::Conflict {
                        code: "undo_too_late",
                        message: format!(
                            "ticket {} was marked no-show more than {} minutes ago",
                            t.number,
                            queue::UNDO_NO_SHOW_MS / 60_000
                        ),
                    });
                }
                transition(&t, TicketState::Called)?;
                c.execute(
                    &format!(
                        "UPDATE tickets SET state = '{called}', done_ms = NULL WHERE id = ?1",
                        called = TicketState::Called.as_str()
                    ),
                    [t.id],
                )?;
                event(
                    c,
                    t.id,
                    now,
                    "no_show_undone",
                    Some(counter),
                    Some(&actor2.username),
                    None,
                )?;
                audit(
                    c,
                    at,
                    &actor2,
                    "ticket.undo_no_show",
                    &t.number,
                    serde_json::json!({"counter": counter}),
                )?;
                get_ticket(c, t.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
            })
            .await?;
        self.publish_queue_changed(&t.group).await;
        Ok(t)
    }

    /// Puts the current ticket back in its group's line at `position` (1 = next): the
    /// citizen steps aside (to fetch a paper) and is called again later.
    pub async fn serve_later(
        &self,
        actor: &Actor,
        counter: u32,
        input: ServeLater,
    ) -> Result<TicketView, AppError> {
        if !(1..=999).contains(&input.position) {
            return Err(AppError::field(
                "position",
                "invalid_position",
                "the position in line is a number from 1 to 999",
                "الدور في الانتظار رقم من 1 إلى 999",
            ));
        }
        let position = input.position as usize;
        let t = self
            .with_current(actor, counter, "served_later", move |c, cur, _| {
                transition(cur, TicketState::Waiting)?;
                let line: Vec<(i64, i64)> = c
                    .prepare_cached(&format!("SELECT id, COALESCE(turn, issued_ms * 1000) FROM tickets WHERE day = ?1 AND group_id = ?2 AND state = '{waiting}' ORDER BY 2, id", waiting = TicketState::Waiting.as_str()))?
                    .query_map(params![cur.day, cur.group], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                c.execute(
                    &format!("UPDATE tickets SET state = '{waiting}', counter = NULL, called_ms = NULL WHERE id = ?1", waiting = TicketState::Waiting.as_str()),
                    [cur.id],
                )?;
                let mut set_turn = c.prepare_cached("UPDATE tickets SET turn = ?2 WHERE id = ?1")?;
                for (id, turn) in queue::requeue(&line, cur.id, cur.turn, position) {
                    set_turn.execute(params![id, turn])?;
                }
                get_ticket(c, cur.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
            })
            .await?;
        self.publish_queue_changed(&t.group).await;
        Ok(t)
    }

    /// Tells live pages that a group's line changed (other than by an issue or a call).
    async fn publish_queue_changed(&self, group: &str) {
        let day = self.today().to_string();
        let g = group.to_string();
        let waiting = self
            .db
            .readers
            .read(move |c| waiting_in(c, &day, &g))
            .await
            .unwrap_or_default();
        self.bus.publish(LiveEvent::QueueChanged {
            group: group.to_string(),
            waiting,
        });
    }

    /// Sends the current ticket to another group's queue; it keeps its place by issue time.
    pub async fn transfer(
        &self,
        actor: &Actor,
        counter: u32,
        to: TransferTicket,
    ) -> Result<TicketView, AppError> {
        let group = self
            .group(&to.group)
            .ok_or_else(|| {
                AppError::field(
                    "group",
                    "unknown_group",
                    format!("no service group '{}' at this center", to.group),
                    "مجموعة خدمات غير معروفة",
                )
            })?
            .id
            .clone();
        let t = self.with_current(actor, counter, "transferred", move |c, cur, _| {
            if cur.group == group {
                return Err(AppError::field("group", "same_group", "the ticket is already in that group", "البطاقة في هذه المجموعة أصلاً"));
            }
            transition(cur, TicketState::Waiting)?;
            c.execute(&format!("UPDATE tickets SET state = '{waiting}', group_id = ?2, counter = NULL, called_ms = NULL WHERE id = ?1", waiting = TicketState::Waiting.as_str()), params![cur.id, group])?;
            get_ticket(c, cur.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
        })
        .await?;
        self.publish_queue_changed(&t.group).await;
        Ok(t)
    }

    /// Finishes the current ticket, optionally linking the case the visit produced.
    pub async fn finish(
        &self,
        actor: &Actor,
        counter: u32,
        input: FinishTicket,
    ) -> Result<TicketView, AppError> {
        let case_no = match input
            .case_no
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(n) => Some(
                n.parse::<markaz_sync::model::ids::CaseNo>()
                    .map_err(|e| {
                        AppError::field(
                            "case_no",
                            "invalid_case_no",
                            e.to_string(),
                            "رقم المعاملة غير صالح",
                        )
                    })?
                    .to_string(),
            ),
            None => None,
        };
        self.with_current(actor, counter, "finished", move |c, cur, now| {
            transition(cur, TicketState::Done)?;
            if let Some(n) = &case_no {
                let exists: bool = c.query_row("SELECT count(*) > 0 FROM cases WHERE case_no = ?1", [n], |r| r.get(0))?;
                if !exists {
                    return Err(AppError::field("case_no", "unknown_case", format!("no case {n}"), "لا توجد معاملة بهذا الرقم"));
                }
            }
            c.execute(&format!("UPDATE tickets SET state = '{done}', done_ms = ?2, case_no = COALESCE(?3, case_no) WHERE id = ?1", done = TicketState::Done.as_str()), params![cur.id, now, case_no])?;
            get_ticket(c, cur.id)?.ok_or_else(|| AppError::Internal("ticket vanished".into()))
        })
        .await
    }

    /// The latest calls per counter today, for the waiting-room display.
    pub async fn latest_calls(&self, limit: u32) -> Result<Vec<TicketView>, AppError> {
        let day = self.today().to_string();
        self.db
            .readers
            .read(move |c| -> Result<Vec<TicketView>, AppError> {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM tickets WHERE day = ?1 AND called_ms IS NOT NULL ORDER BY called_ms DESC LIMIT ?2"
                ))?;
                Ok(stmt.query_map(params![day, limit], from_row)?.collect::<Result<_, _>>()?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Clock;
    use crate::storage::{Db, StorageOptions};
    use markaz_sync::model::staff::Role;
    use proptest::prelude::*;

    /// One step a center's staff can take on the queue, or the night passing.
    #[derive(Debug, Clone)]
    enum Step {
        Issue { group: usize, priority: bool },
        CallNext { counter: u32 },
        Recall { counter: u32 },
        NoShow { counter: u32 },
        Transfer { counter: u32, group: usize },
        Finish { counter: u32 },
        UndoNoShow { counter: u32 },
        ServeLater { counter: u32, position: u32 },
        NextDay,
    }

    const GROUPS: usize = 3;
    const COUNTERS: u32 = 3;

    fn step() -> impl Strategy<Value = Step> {
        let counter = 1..=COUNTERS;
        prop_oneof![
            4 => (0..GROUPS, any::<bool>()).prop_map(|(group, priority)| Step::Issue { group, priority }),
            3 => counter.clone().prop_map(|counter| Step::CallNext { counter }),
            1 => counter.clone().prop_map(|counter| Step::Recall { counter }),
            1 => counter.clone().prop_map(|counter| Step::NoShow { counter }),
            1 => (counter.clone(), 0..GROUPS).prop_map(|(counter, group)| Step::Transfer { counter, group }),
            2 => counter.clone().prop_map(|counter| Step::Finish { counter }),
            1 => counter.clone().prop_map(|counter| Step::UndoNoShow { counter }),
            1 => (counter, 1..5u32).prop_map(|(counter, position)| Step::ServeLater { counter, position }),
            1 => Just(Step::NextDay),
        ]
    }

    fn actor() -> Actor {
        Actor {
            username: "staff".into(),
            full_name: "Staff".into(),
            roles: vec![Role::Reception, Role::Clerk],
            terminal: None,
            language: "en".into(),
        }
    }

    /// The waiting tickets per (day, group), counted from the tickets themselves and
    /// as the `ticket_waiting` table has them (zero rows left out).
    async fn both_counts(app: &App) -> (Vec<(String, String, u32)>, Vec<(String, String, u32)>) {
        app.db
            .readers
            .read(|c| -> Result<_, AppError> {
                let rows = |sql: &str| -> Result<Vec<(String, String, u32)>, AppError> {
                    Ok(c.prepare(sql)?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<Result<_, _>>()?)
                };
                Ok((
                    rows(&format!("SELECT day, group_id, count(*) FROM tickets WHERE state = '{waiting}' GROUP BY 1, 2 ORDER BY 1, 2", waiting = TicketState::Waiting.as_str()))?,
                    rows("SELECT day, group_id, waiting FROM ticket_waiting WHERE waiting <> 0 ORDER BY 1, 2")?,
                ))
            })
            .await
            .unwrap()
    }

    async fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("node.db"), &StorageOptions::default()).unwrap();
        let mut cfg = markaz_config::NodeConfig::default();
        cfg.queue.groups.truncate(GROUPS);
        cfg.counters.clear();
        cfg.fill_defaults();
        cfg.counters.truncate(COUNTERS as usize);
        // Counters serving different sets of groups.
        cfg.counters[0].groups.truncate(1);
        cfg.counters[1].groups.remove(0);
        let settings = crate::center::settings_from(&cfg).unwrap();
        let groups: Vec<String> = settings.groups.iter().map(|g| g.id.clone()).collect();
        let clock = Clock::manual("2026-11-29T07:00:00Z".parse().unwrap());
        let app = App::new(db, settings, clock.clone());
        let actor = actor();
        for step in steps {
            match step.clone() {
                Step::Issue { group, priority } => {
                    let day = app.today().to_string();
                    let before = both_counts(&app).await.0;
                    let ahead_expected = before
                        .iter()
                        .find(|(d, g, _)| *d == day && *g == groups[group])
                        .map_or(0, |r| r.2);
                    let input = IssueTicket {
                        group: groups[group].clone(),
                        priority: priority.then_some(PriorityClass::Elderly),
                        national_id: None,
                    };
                    let t = app.issue_ticket(&actor, input).await.unwrap();
                    prop_assert_eq!(t.waiting_ahead, Some(ahead_expected), "{:?}", step);
                }
                Step::CallNext { counter } => {
                    let _ = app.call_next(&actor, counter).await;
                }
                Step::Recall { counter } => {
                    let _ = app.recall(&actor, counter).await;
                }
                Step::NoShow { counter } => {
                    let _ = app.no_show(&actor, counter).await;
                }
                Step::Transfer { counter, group } => {
                    let to = TransferTicket {
                        group: groups[group].clone(),
                    };
                    let _ = app.transfer(&actor, counter, to).await;
                }
                Step::Finish { counter } => {
                    let _ = app.finish(&actor, counter, FinishTicket::default()).await;
                }
                Step::UndoNoShow { counter } => {
                    let _ = app.undo_no_show(&actor, counter).await;
                }
                Step::ServeLater { counter, position } => {
                    let _ = app
                        .serve_later(&actor, counter, ServeLater { position })
                        .await;
                }
                Step::NextDay => {
                    if let Clock::Manual(ms) = &clock {
                        ms.fetch_add(24 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            let (counted, kept) = both_counts(&app).await;
            prop_assert_eq!(&counted, &kept, "after {:?}", step);
            let day = app.today().to_string();
            for number in 1..=COUNTERS {
                let view = app.counter_view(number).await.unwrap();
                let expected: u32 = counted
                    .iter()
                    .filter(|(d, g, _)| *d == day && view.groups.contains(g))
                    .map(|r| r.2)
                    .sum();
                prop_assert_eq!(
                    view.waiting,
                    expected,
                    "counter {} after {:?}",
                    number,
                    step
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the staff do, in any order, the waiting counts the triggers keep
        /// equal a `count(*)` of the waiting tickets, the ahead-count of each issued
        /// ticket is right, and each counter shows the waiting of its groups today.
        #[test]
        fn waiting_counts_follow_every_queue_step(steps in prop::collection::vec(step(), 1..40)) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run_steps(steps))?;
        }
    }
}
