//! The self-service kiosk and the public status of a ticket (issue #15.7).
//!
//! A kiosk issues tickets as the actor [`kiosk_actor`]; its pages only ever call
//! [`App::issue_ticket`] with it. Every ticket printed at the kiosk carries a link
//! (a QR code) to a public, read-only status page: the link's token is 128 random bits
//! kept in `ticket_links` (schema v8), never the sequential ticket id, so a link cannot
//! be guessed from another. What the page may show is [`PublicTicket`]: the number, the
//! group, the state, the place in line and the estimated wait, and later the state of
//! the case opened for it — no national id, no name, no case number.

use base64::Engine;
use rusqlite::{OptionalExtension, params};

use markaz_sync::model::staff::Role;

use super::queue::{TicketView, get_ticket};
use super::{Actor, App};
use crate::domain::queue::{PriorityClass, TicketState};
use crate::domain::wait::{self, Served, WaitEstimate};
use crate::error::AppError;

/// The username the kiosk's tickets are issued under (in ticket events and the audit).
pub const KIOSK_USER: &str = "kiosk";

/// The actor of a kiosk's requests: it issues tickets (the reception role's right); the
/// kiosk's handlers call nothing else with it.
pub fn kiosk_actor(terminal: Option<String>) -> Actor {
    Actor {
        username: KIOSK_USER.into(),
        full_name: KIOSK_USER.into(),
        roles: vec![Role::Reception],
        terminal,
        language: String::new(),
    }
}

/// A new status-link token: 16 random bytes, URL-safe base64 (22 characters).
fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// A token as the status page's URL may carry it: 22 URL-safe base64 characters.
pub fn is_token_shaped(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the public status page of a ticket shows. Nothing here names the citizen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicTicket {
    pub token: String,
    pub number: String,
    pub group: String,
    pub priority: PriorityClass,
    pub state: TicketState,
    /// The counter that called it, once called.
    pub counter: Option<u32>,
    pub issued_at: String,
    /// Waiting tickets of its group before it (only while it waits, today).
    pub ahead: Option<u32>,
    #[serde(skip)]
    pub wait: WaitEstimate,
    /// The state of the case opened for the ticket (`created`, `paid`, …), once one is.
    pub case_status: Option<String>,
}

impl PublicTicket {
    fn from_view(
        token: String,
        t: &TicketView,
        ahead: Option<u32>,
        wait: WaitEstimate,
        case_status: Option<String>,
    ) -> Self {
        PublicTicket {
            token,
            number: t.number.clone(),
            group: t.group.clone(),
            priority: t.priority,
            state: t.state,
            counter: t.counter,
            issued_at: t.issued_at.clone(),
            ahead,
            wait,
            case_status,
        }
    }
}

/// Place in line and wait of a waiting ticket, read in one connection.
fn ahead_and_wait(
    c: &rusqlite::Connection,
    t: &TicketView,
    today: &str,
) -> Result<(Option<u32>, WaitEstimate), AppError> {
    if t.state != TicketState::Waiting || t.day != today {
        return Ok((None, WaitEstimate::Unknown));
    }
    let ahead: u32 = c
        .prepare_cached(
            "SELECT count(*) FROM tickets WHERE day = ?1 AND group_id = ?2 AND state = 'waiting'
               AND (COALESCE(turn, issued_ms * 1000), id) < (?3, ?4)",
        )?
        .query_row(params![t.day, t.group, t.turn, t.id], |r| r.get(0))?;
    let recent: Vec<Served> = c
        .prepare_cached(
            "SELECT called_ms, done_ms, counter FROM tickets
              WHERE day = ?1 AND group_id = ?2 AND state = 'done'
                AND called_ms IS NOT NULL AND done_ms IS NOT NULL
              ORDER BY done_ms DESC LIMIT ?3",
        )?
        .query_map(params![t.day, t.group, wait::RECENT_SERVED as i64], |r| {
            let called: i64 = r.get(0)?;
            let done: i64 = r.get(1)?;
            Ok(Served {
                service_ms: done - called,
                counter: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((Some(ahead), wait::estimate(ahead, &recent)))
}

impl App {
    /// The status-link token of a ticket, made on first use.
    pub async fn ticket_link(&self, ticket_id: i64) -> Result<String, AppError> {
        let token = new_token();
        let now = self.now_ms();
        self.db
            .writer
            .write(move |tx| -> Result<String, AppError> {
                let c = tx.conn;
                if get_ticket(c, ticket_id)?.is_none() {
                    return Err(AppError::not_found(format!("ticket {ticket_id}")));
                }
                c.prepare_cached(
                    "INSERT OR IGNORE INTO ticket_links(token, ticket_id, created_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![token, ticket_id, now])?;
                Ok(c.prepare_cached("SELECT token FROM ticket_links WHERE ticket_id = ?1")?
                    .query_row([ticket_id], |r| r.get(0))?)
            })
            .await
            .map_err(AppError::from)
    }

    /// Today's waiting tickets per group (group id, count), for the kiosk's buttons.
    pub async fn waiting_counts(&self) -> Result<Vec<(String, u32)>, AppError> {
        let day = self.today().to_string();
        self.db
            .readers
            .read(move |c| -> Result<Vec<(String, u32)>, AppError> {
                Ok(
                    c.prepare_cached(
                        "SELECT group_id, waiting FROM ticket_waiting WHERE day = ?1",
                    )?
                    .query_map([day], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?,
                )
            })
            .await
    }

    /// The public view of the ticket a status link names; `None` for an unknown token.
    pub async fn public_ticket(&self, token: &str) -> Result<Option<PublicTicket>, AppError> {
        if !is_token_shaped(token) {
            return Ok(None);
        }
        let token = token.to_string();
        let today = self.today().to_string();
        self.db
            .readers
            .read(move |c| -> Result<Option<PublicTicket>, AppError> {
                let id: Option<i64> = c
                    .prepare_cached("SELECT ticket_id FROM ticket_links WHERE token = ?1")?
                    .query_row([&token], |r| r.get(0))
                    .optional()?;
                let Some(t) = id.map(|id| get_ticket(c, id)).transpose()?.flatten() else {
                    return Ok(None);
                };
                let (ahead, wait) = ahead_and_wait(c, &t, &today)?;
                let case_status: Option<String> = c
                    .prepare_cached(
                        "SELECT status FROM cases WHERE ticket_id = ?1 OR case_no = ?2
                          ORDER BY created_at DESC LIMIT 1",
                    )?
                    .query_row(params![t.id, t.case_no], |r| r.get(0))
                    .optional()?;
                Ok(Some(PublicTicket::from_view(
                    token,
                    &t,
                    ahead,
                    wait,
                    case_status,
                )))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(is_token_shaped(&a), "{a}");
        assert!(!is_token_shaped("1"));
        assert!(!is_token_shaped("../../../../etc/passwd.x"));
        assert!(!is_token_shaped(&format!("{}=", &a[..21])));
    }
}
