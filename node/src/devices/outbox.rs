//! The SMS outbox worker: sends the rows of the `outbox` table through the modem, each
//! exactly once across restarts and reconnects.
//!
//! Rows are written by the event that causes them, in its own transaction (a case made
//! ready, a technician alert), so a committed event always has its message queued.
//! The worker then, for one row at a time:
//! 1. marks the attempt — `state = 'sending'`, `attempts + 1` — and waits for that to be
//!    committed, BEFORE anything goes to the modem;
//! 2. sends; on success marks `'sent'` with the modem's message reference(s) (one per
//!    part, comma-separated). A long message keeps one concatenation reference for all
//!    its attempts (`concat_ref`, chosen at the first) and the parts the network
//!    accepted (`parts_sent`): when one part fails, the next attempt sends only the
//!    missing parts under the same reference, so the phone joins them with the parts it
//!    already has — no orphan part, no duplicate;
//! 3. on `+CMS ERROR n` (or another refusal) records `+CMS ERROR: n` in `last_error` and
//!    retries with exponential backoff, up to `max_attempts`, then `'failed'`;
//! 4. when the modem could not even take the message (no SIM, resetting, dead), puts the
//!    row back untouched: that was no attempt.
//!
//! The one ambiguous case — the message may have gone out but we do not know — is a row
//! found in `'sending'` at start-up (the process died between send and mark) or a send
//! that got no answer in time. Such a row is sent again **at most once** (`resends`
//! goes 0 → 1); if it is ambiguous again it is marked `'failed'` instead of being sent a
//! third time. We prefer a rare duplicate "your document is ready" to a lost one, and a
//! lost one to a flood.
//!
//! Nothing waits on the worker: it wakes on its `Notify` (a new alert), on the event
//! bus's "case ready", on a modem state change, and otherwise polls. Backoff is kept on
//! the monotonic clock, so a wall clock that jumps (a box waking up in 1970) never stalls
//! retries; after a restart every pending row is due at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use markaz_hardware::modem::sms::PhoneNumber;
use markaz_hardware::modem::{ModemHandle, ModemState, PartsSent, SmsSendError};
use rusqlite::{OptionalExtension, params};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::app::{App, node_log};
use crate::error::AppError;

/// Retry policy of the worker.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Attempts (sends that reached the modem) before a row is `'failed'`.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub backoff_base: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Poll for new rows (and a modem that came back) at least this often.
    pub poll_every: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30 * 60),
            poll_every: Duration::from_secs(5),
        }
    }
}

impl OutboxSettings {
    /// Wait before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doubled = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.backoff_base
            .saturating_mul(doubled)
            .min(self.backoff_max)
    }
}

/// What to record after one send, decided from its result alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent: the message references, one per part.
    Sent { refs: String },
    /// Refused by the network or module; try again after `after`.
    Retry { error: String, after: Duration },
    /// The modem never took the message: not an attempt, try again later.
    NotAttempted { error: String },
    /// It may have gone out: send once more, and never again after that.
    ResendOnce { error: String, after: Duration },
    /// Give up.
    Failed { error: String },
}

/// The pure retry rule (see the module docs). `attempts` includes the one just made.
pub fn decide(
    result: &Result<Vec<u8>, SmsSendError>,
    attempts: u32,
    resends: u32,
    s: &OutboxSettings,
) -> Outcome {
    let refused = |error: String| {
        if attempts >= s.max_attempts {
            Outcome::Failed {
                error: format!("{error} (gave up after {attempts} attempts)"),
            }
        } else {
            Outcome::Retry {
                error,
                after: s.backoff(attempts),
            }
        }
    };
    match result {
        Ok(refs) => Outcome::Sent {
            refs: refs.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
        },
        Err(SmsSendError::Cms(code)) => refused(format!("+CMS ERROR: {code}")),
        Err(SmsSendError::Rejected(why)) => refused(format!("rejected: {why}")),
        Err(SmsSendError::Encode(e)) => Outcome::Failed {
            error: format!("cannot encode: {e}"),
        },
        Err(SmsSendError::Unavailable(why)) => Outcome::NotAttempted {
            error: format!("modem unavailable: {why}"),
        },
        Err(SmsSendError::Timeout) if resends == 0 => Outcome::ResendOnce {
            error: "no answer from the modem in time; may have been sent, resending once".into(),
            after: s.backoff(attempts),
        },
        Err(SmsSendError::Timeout) => Outcome::Failed {
            error: "no answer from the modem in time, again after a resend; not sent again".into(),
        },
    }
}

/// One queued message.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    kind: String,
    recipient: String,
    body: String,
    attempts: u32,
    resends: u32,
}

/// The parts of a long message accepted so far: (part number, message reference).
pub type Parts = Vec<(u8, u8)>;

fn parse_parts(s: &str) -> Parts {
    s.split(',')
        .filter_map(|p| {
            let (n, mr) = p.split_once(':')?;
            Some((n.trim().parse().ok()?, mr.trim().parse().ok()?))
        })
        .collect()
}

fn format_parts(parts: &Parts) -> String {
    parts
        .iter()
        .map(|(n, mr)| format!("{n}:{mr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What one send did to the row's parts: all of them now, with the modem's answer in
/// the form [`decide`] reads (every reference in part order when nothing is missing).
pub fn merge_parts(
    before: &[(u8, u8)],
    sent: &PartsSent,
) -> (Parts, Result<Vec<u8>, SmsSendError>) {
    let mut all: Parts = before.to_vec();
    for p in &sent.accepted {
        if !all.iter().any(|(n, _)| *n == p.0) {
            all.push(*p);
        }
    }
    all.sort_unstable();
    let result = match &sent.error {
        Some(e) => Err(e.clone()),
        None if all.len() >= usize::from(sent.total) => Ok(all.iter().map(|(_, mr)| *mr).collect()),
        None => Err(SmsSendError::Rejected(
            "parts missing after a complete send".into(),
        )),
    };
    (all, result)
}

/// Rows interrupted between send and mark: each is resent once, or failed if it was
/// already a resend. Returns (requeued, failed).
pub async fn reconcile_interrupted(app: &App) -> Result<(usize, usize), AppError> {
    let at = app.now();
    app.db
        .writer
        .write(move |tx| -> Result<(usize, usize), AppError> {
            let c = tx.conn;
            let requeued = c.execute(
                "UPDATE outbox SET state = 'pending', resends = resends + 1,
                   last_error = 'interrupted between send and mark; resending once'
                 WHERE state = 'sending' AND resends = 0",
                [],
            )?;
            let failed = c.execute(
                "UPDATE outbox SET state = 'failed',
                   last_error = 'interrupted between send and mark after a resend; not sent again'
                 WHERE state = 'sending'",
                [],
            )?;
            if requeued + failed > 0 {
                node_log(
                    c,
                    at,
                    "warn",
                    "outbox",
                    &format!(
                        "{requeued} SMS interrupted at the last stop will be sent once more; \
                         {failed} interrupted twice were marked failed"
                    ),
                )?;
            }
            Ok((requeued, failed))
        })
        .await
        .map_err(AppError::from)
}

async fn pending(app: &App) -> Result<Vec<Row>, AppError> {
    app.db
        .readers
        .read(|c| -> Result<Vec<Row>, AppError> {
            let mut st = c.prepare(
                "SELECT id, kind, recipient, body, attempts, resends FROM outbox
                 WHERE state = 'pending' ORDER BY id LIMIT 500",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok(Row {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        recipient: r.get(2)?,
                        body: r.get(3)?,
                        attempts: r.get(4)?,
                        resends: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

/// Marks the attempt and fixes the row's concatenation reference (at its first
/// attempt); the reference and the parts already sent, or `None` if the row is no longer
/// pending.
async fn mark_sending(app: &App, id: i64) -> Result<Option<(u8, Parts)>, AppError> {
    let at = app.now().to_string();
    let fresh_ref = i64::from(rand::random::<u8>());
    app.db
        .writer
        .write(move |tx| -> Result<Option<(u8, Parts)>, AppError> {
            let c = tx.conn;
            let n = c.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, last_attempt = ?2,
                   concat_ref = coalesce(concat_ref, ?3)
                 WHERE id = ?1 AND state = 'pending'",
                params![id, at, fresh_ref],
            )?;
            if n != 1 {
                return Ok(None);
            }
            let (r, parts): (i64, String) = c.query_row(
                "SELECT concat_ref, parts_sent FROM outbox WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Some((u8::try_from(r).unwrap_or(0), parse_parts(&parts))))
        })
        .await
        .map_err(AppError::from)
}

async fn record(
    app: &App,
    row: &Row,
    outcome: &Outcome,
    parts: Option<&Parts>,
) -> Result<(), AppError> {
    let at = app.now();
    let (id, kind, recipient) = (row.id, row.kind.clone(), row.recipient.clone());
    let outcome = outcome.clone();
    let parts = parts.map(format_parts);
    app.db
        .writer
        .write(move |tx| -> Result<(), AppError> {
            let c = tx.conn;
            if let Some(parts) = &parts {
                c.execute(
                    "UPDATE outbox SET parts_sent = ?2 WHERE id = ?1",
                    params![id, parts],
                )?;
            }
            match &outcome {
                Outcome::Sent { refs } => {
                    c.execute(
                        "UPDATE outbox SET state = 'sent', message_ref = ?2, sent_at = ?3 WHERE id = ?1",
                        params![id, refs, at.to_string()],
                    )?;
                }
                Outcome::Retry { error, .. } => {
                    c.execute(
                        "UPDATE outbox SET state = 'pending', last_error = ?2 WHERE id = ?1",
                        params![id, error],
                    )?;
                }
                Outcome::NotAttempted { error } => {
                    c.execute(
                        "UPDATE outbox SET state = 'pending', attempts = attempts - 1, last_error = ?2 WHERE id = ?1",
                        params![id, error],
                    )?;
                }
                Outcome::ResendOnce { error, .. } => {
                    c.execute(
                        "UPDATE outbox SET state = 'pending', resends = resends + 1, last_error = ?2 WHERE id = ?1",
                        params![id, error],
                    )?;
                }
                Outcome::Failed { error } => {
                    c.execute(
                        "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
                        params![id, error],
                    )?;
                    node_log(
                        c,
                        at,
                        "error",
                        "outbox",
                        &format!("SMS #{id} ({kind}) to {recipient} failed: {error}"),
                    )?;
                }
            }
            Ok(())
        })
        .await
        .map_err(AppError::from)
}

async fn fail_now(app: &App, row: &Row, error: String) -> Result<(), AppError> {
    record(app, row, &Outcome::Failed { error }, None).await
}

/// Runs the worker until `cancel`. `modem` holds the current driver handle (replaced
/// when the driver is restarted); `wake` is notified when a row is queued.
pub async fn run(
    app: App,
    modem: watch::Receiver<ModemHandle>,
    wake: Arc<Notify>,
    settings: OutboxSettings,
    cancel: CancellationToken,
) {
    async move {
        match reconcile_interrupted(&app).await {
            Ok((0, 0)) => {}
            Ok((requeued, failed)) => {
                warn!(requeued, failed, "outbox: interrupted sends reconciled")
            }
            Err(e) => warn!(error = %e, "outbox: cannot reconcile interrupted sends"),
        }
        let mut worker = Worker {
            app,
            modem,
            wake,
            settings,
            cancel,
            not_before: HashMap::new(),
        };
        worker.serve().await;
    }
    .instrument(tracing::info_span!("outbox"))
    .await
}

struct Worker {
    app: App,
    modem: watch::Receiver<ModemHandle>,
    wake: Arc<Notify>,
    settings: OutboxSettings,
    cancel: CancellationToken,
    /// Backoff of rows that failed, on the monotonic clock.
    not_before: HashMap<i64, Instant>,
}

impl Worker {
    /// Waits until something may have changed, or `until`.
    async fn idle(
        &mut self,
        until: Instant,
        status: &mut watch::Receiver<markaz_hardware::modem::ModemStatus>,
    ) {
        let mut bus = self.app.bus.subscribe();
        let case_ready = async move {
            loop {
                match bus.recv().await {
                    Ok(crate::events::LiveEvent::CaseReady { .. }) => return,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        // A closed channel is no news: wait for the other events then.
        let status_changed = async {
            if status.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let modem = &mut self.modem;
        let modem_changed = async {
            if modem.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = self.wake.notified() => {}
            () = case_ready => {}
            () = modem_changed => {}
            () = status_changed => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }

    async fn serve(&mut self) {
        while !self.cancel.is_cancelled() {
            let handle = self.modem.borrow_and_update().clone();
            let mut status = handle.status();
            let state = status.borrow_and_update().state;
            let poll = Instant::now() + self.settings.poll_every;
            if state != ModemState::Ready {
                self.idle(poll, &mut status).await;
                continue;
            }
            let rows = match pending(&self.app).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(error = %e, "outbox: cannot read pending rows");
                    self.idle(poll, &mut status).await;
                    continue;
                }
            };
            let now = Instant::now();
            self.not_before
                .retain(|id, _| rows.iter().any(|r| r.id == *id));
            let due = rows
                .iter()
                .find(|r| self.not_before.get(&r.id).is_none_or(|t| *t <= now))
                .cloned();
            let Some(row) = due else {
                let next = self.not_before.values().min().copied().unwrap_or(poll);
                self.idle(next.min(poll), &mut status).await;
                continue;
            };
            self.send(&handle, row).await;
        }
    }

    async fn send(&mut self, modem: &ModemHandle, row: Row) {
        let span = tracing::info_span!("sms", id = row.id, kind = %row.kind);
        async {
            let to = match PhoneNumber::parse(row.recipient.trim()) {
                Ok(n) => n,
                Err(e) => {
                    if let Err(e) = fail_now(&self.app, &row, format!("bad recipient: {e}")).await {
                        warn!(error = %e, "outbox: cannot record a failure");
                        self.not_before
                            .insert(row.id, Instant::now() + self.settings.poll_every);
                    }
                    return;
                }
            };
            let (concat_ref, before) = match mark_sending(&self.app, row.id).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "outbox: cannot mark the attempt; not sending");
                    self.not_before
                        .insert(row.id, Instant::now() + self.settings.poll_every);
                    return;
                }
            };
            let done: Vec<u8> = before.iter().map(|(n, _)| *n).collect();
            let (parts, result) = match modem
                .send_sms_parts(&to, &row.body, concat_ref, &done)
                .await
            {
                Ok(sent) => {
                    if !done.is_empty() {
                        info!(
                            kept = done.len(),
                            resent = sent.accepted.len(),
                            "SMS: only the missing parts sent again"
                        );
                    }
                    let (all, r) = merge_parts(&before, &sent);
                    (Some(all), r)
                }
                Err(e) => (None, Err(e)),
            };
            let outcome = decide(&result, row.attempts + 1, row.resends, &self.settings);
            match &outcome {
                Outcome::Sent { refs } => info!(refs = %refs, "SMS sent"),
                other => warn!(outcome = ?other, "SMS not sent"),
            }
            let wait = match &outcome {
                Outcome::Retry { after, .. } | Outcome::ResendOnce { after, .. } => Some(*after),
                Outcome::NotAttempted { .. } => Some(self.settings.poll_every),
                Outcome::Sent { .. } | Outcome::Failed { .. } => None,
            };
            if let Some(after) = wait {
                self.not_before.insert(row.id, Instant::now() + after);
            }
            if let Err(e) = record(&self.app, &row, &outcome, parts.as_ref()).await {
                // The row stays 'sending': the next start resends it at most once.
                warn!(error = %e, "outbox: cannot record the outcome of a send");
            }
        }
        .instrument(span)
        .await
    }
}

/// The technician alerts the node sends by SMS (and writes to the node log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The primary link has been down longer than `link.alert_after_down_minutes`.
    LinkDown,
    /// Battery low.
    PowerLow,
    /// Battery critical: the node shuts down.
    PowerCritical,
    /// The generator was asked to start and does not run.
    GeneratorDidNotStart,
    /// The battery monitor stopped reporting.
    MonitorLost,
    /// The data disk is below `storage.min_free_mb` (the disk guard).
    DiskLow,
}

impl AlertKind {
    /// The `outbox.kind` of this alert.
    pub fn outbox_kind(self) -> &'static str {
        match self {
            AlertKind::LinkDown => "alert_link_down",
            AlertKind::PowerLow => "alert_power_low",
            AlertKind::PowerCritical => "alert_power_critical",
            AlertKind::GeneratorDidNotStart => "alert_generator",
            AlertKind::MonitorLost => "alert_monitor_lost",
            AlertKind::DiskLow => "alert_disk_low",
        }
    }

    /// The node log's source for this alert.
    fn source(self) -> &'static str {
        match self {
            AlertKind::LinkDown => "link",
            AlertKind::DiskLow => "disk",
            _ => "power",
        }
    }
}

/// Raises technician alerts: always a node log line, and an SMS to
/// `center.technician_phone` unless one of the same kind was queued within the cooldown
/// (so a flapping condition does not flood the technician's phone).
#[derive(Clone)]
pub struct Alerter {
    app: App,
    phone: Option<String>,
    cooldown: Duration,
    wake: Arc<Notify>,
}

/// What [`Alerter::raise`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// Logged and an SMS queued.
    Queued,
    /// Logged; an SMS of this kind went out within the cooldown.
    CoolingDown,
    /// Logged; no technician phone configured.
    NoPhone,
}

impl Alerter {
    /// An alerter for the technician at `phone` (none: log only).
    pub fn new(app: App, phone: Option<String>, cooldown: Duration, wake: Arc<Notify>) -> Self {
        Self {
            app,
            phone,
            cooldown,
            wake,
        }
    }

    /// Logs the alert and queues its SMS, within one transaction.
    pub async fn raise(&self, kind: AlertKind, text: String) -> Result<Raised, AppError> {
        let at = self.app.now();
        let phone = self.phone.clone();
        let cooldown_ms = i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX);
        let center = self.app.settings.center_id.clone();
        warn!(alert = ?kind, "technician alert: {text}");
        let raised = self
            .app
            .db
            .writer
            .write(move |tx| -> Result<Raised, AppError> {
                let c = tx.conn;
                let level = if kind == AlertKind::PowerCritical { "error" } else { "warn" };
                node_log(c, at, level, kind.source(), &text)?;
                let Some(phone) = phone else {
                    return Ok(Raised::NoPhone);
                };
                let last: Option<String> = c
                    .query_row(
                        "SELECT created_at FROM outbox WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
                        [kind.outbox_kind()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let recent = last
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| {
                        let since = at.as_millisecond() - t.as_millisecond();
                        (0..cooldown_ms).contains(&since)
                    });
                if recent {
                    return Ok(Raised::CoolingDown);
                }
                c.execute(
                    "INSERT INTO outbox(kind, recipient, body, subject, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![kind.outbox_kind(), phone, format!("مركز {center}: {text}"), center.as_str(), at.to_string()],
                )?;
                Ok(Raised::Queued)
            })
            .await?;
        if raised == Raised::Queued {
            self.wake.notify_one();
        }
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> OutboxSettings {
        OutboxSettings {
            max_attempts: 3,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(25),
            poll_every: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = s();
        assert_eq!(s.backoff(1), Duration::from_secs(10));
        assert_eq!(s.backoff(2), Duration::from_secs(20));
        assert_eq!(s.backoff(3), Duration::from_secs(25));
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(25));
    }

    #[test]
    fn sent_keeps_every_part_reference() {
        assert_eq!(
            decide(&Ok(vec![7, 8]), 1, 0, &s()),
            Outcome::Sent { refs: "7,8".into() }
        );
    }

    #[test]
    fn cms_error_is_recorded_with_its_code_and_retried_up_to_the_limit() {
        let r = Err(SmsSendError::Cms(500));
        assert_eq!(
            decide(&r, 1, 0, &s()),
            Outcome::Retry {
                error: "+CMS ERROR: 500".into(),
                after: Duration::from_secs(10)
            }
        );
        match decide(&r, 3, 0, &s()) {
            Outcome::Failed { error } => assert!(error.starts_with("+CMS ERROR: 500"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_ambiguous_send_is_repeated_at_most_once() {
        let r = Err(SmsSendError::Timeout);
        assert!(matches!(decide(&r, 1, 0, &s()), Outcome::ResendOnce { .. }));
        assert!(matches!(decide(&r, 2, 1, &s()), Outcome::Failed { .. }));
    }

    #[test]
    fn a_modem_that_never_took_the_message_is_not_an_attempt() {
        let r = Err(SmsSendError::Unavailable("Resetting".into()));
        assert!(matches!(
            decide(&r, 3, 0, &s()),
            Outcome::NotAttempted { .. }
        ));
    }
}
