//! The SMS outbox against the real modem emulator on a pty and a real node (temp SQLite):
//! a "ready" SMS goes out exactly once, across a restart of the worker; an interrupted
//! send is repeated at most once; a `+CMS ERROR` is recorded with its code and retried.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use markaz_hardware::modem::emulator::{self, EmulatorHandle};
use markaz_hardware::modem::{ModemHandle, ModemSettings, Quectel};
use markaz_node::app::App;
use markaz_node::devices::outbox::{self, OutboxSettings};
use markaz_node::error::AppError;
use serde_json::json;
use support::{TestNode, citizen};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NID: &str = "01234567890";

fn fast() -> OutboxSettings {
    OutboxSettings {
        max_attempts: 3,
        backoff_base: Duration::from_millis(700),
        backoff_max: Duration::from_secs(2),
        poll_every: Duration::from_millis(200),
    }
}

/// A modem driver on the emulator and an outbox worker, stopped together.
struct Worker {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Worker {
    fn start(app: &App, emu: &EmulatorHandle) -> Self {
        let cancel = CancellationToken::new();
        let mut s = ModemSettings::new(emu.path());
        s.poll_interval = Duration::from_millis(500);
        s.command_timeout = Duration::from_secs(2);
        s.sms_timeout = Duration::from_secs(5);
        let (modem, driver) = ModemHandle::spawn(s, Arc::new(Quectel), cancel.clone());
        let (_tx, rx) = watch::channel(modem);
        let worker = tokio::spawn(outbox::run(
            app.clone(),
            rx,
            Arc::new(Notify::new()),
            fast(),
            cancel.clone(),
        ));
        // Keep the sender alive as long as the worker: a closed channel is not a change.
        let keep = tokio::spawn({
            let c = cancel.clone();
            async move {
                c.cancelled().await;
                drop(_tx);
            }
        });
        Self {
            cancel,
            tasks: vec![driver, worker, keep],
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("task stops")
                .expect("task did not panic");
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct OutRow {
    id: i64,
    kind: String,
    state: String,
    attempts: i64,
    resends: i64,
    last_error: Option<String>,
    message_ref: Option<String>,
}

async fn rows(app: &App) -> Vec<OutRow> {
    app.db
        .readers
        .read(|c| -> Result<Vec<OutRow>, AppError> {
            let mut st = c.prepare(
                "SELECT id, kind, state, attempts, resends, last_error, message_ref FROM outbox ORDER BY id",
            )?;
            let v = st
                .query_map([], |r| {
                    Ok(OutRow {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        state: r.get(2)?,
                        attempts: r.get(3)?,
                        resends: r.get(4)?,
                        last_error: r.get(5)?,
                        message_ref: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
        .unwrap()
}

/// Polls until `done` holds for the outbox rows (or fails after 20 s).
async fn wait_rows(app: &App, what: &str, done: impl Fn(&[OutRow]) -> bool) -> Vec<OutRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = rows(app).await;
        if done(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pickup case walked to "ready" through the API; returns its number.
async fn ready_case(node: &TestNode) -> String {
    let clerk = node
        .staff(
            "clerk1",
            &["clerk", "reception"],
            &[("justice", "2027-06-30")],
        )
        .await;
    let (s, b) = clerk.post("/citizens", citizen(NID)).await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, b) = clerk
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record", "fields": {}, "delivery": {"method": "pickup"}}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let case = b["case_no"].as_str().unwrap().to_string();
    let (s, b) = clerk
        .post(&format!("/cases/{case}/payment"), json!({"method": "cash"}))
        .await;
    assert_eq!(s, 200, "{b}");
    for a in ["start", "ready"] {
        let (s, b) = clerk
            .post(&format!("/cases/{case}/transitions"), json!({"action": a}))
            .await;
        assert_eq!(s, 200, "{a}: {b}");
    }
    case
}

/// Inserts a row as if a worker had died after marking it (and maybe after sending).
async fn interrupted_row(app: &App, phone: &str, body: &str, resends: i64) {
    let (phone, body) = (phone.to_owned(), body.to_owned());
    app.db
        .writer
        .write_sql(move |c| {
            c.execute(
                "INSERT INTO outbox(kind, recipient, body, state, attempts, resends, created_at)
                 VALUES ('case_ready', ?1, ?2, 'sending', 1, ?3, '2026-11-29T06:00:00Z')",
                rusqlite::params![phone, body, resends],
            )
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn ready_sms_goes_out_exactly_once_across_worker_restarts() {
    let emu_cancel = CancellationToken::new();
    let (emu, _t) = emulator::start(emu_cancel.clone()).unwrap();
    let node = TestNode::start().await;
    let case = ready_case(&node).await;

    let w = Worker::start(&node.app, &emu);
    let r = wait_rows(&node.app, "the ready SMS sent", |r| {
        r.len() == 1 && r[0].state == "sent"
    })
    .await;
    assert_eq!(r[0].kind, "case_ready");
    assert_eq!(r[0].attempts, 1);
    assert!(r[0].message_ref.is_some(), "{r:?}");
    let sent = emu.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0.to_string(), "+963944123456");
    assert!(
        sent[0].1.contains(&case),
        "text names the case: {}",
        sent[0].1
    );
    assert!(sent[0].1.contains("جاهزة"), "Arabic text: {}", sent[0].1);
    // Keep running a while: nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(emu.sent_messages().len(), 1);
    w.stop().await;

    // Two rows the "crash" left in 'sending': one for the first time, one already a resend.
    interrupted_row(&node.app, "+963944111111", "first interruption", 0).await;
    interrupted_row(&node.app, "+963944222222", "second interruption", 1).await;

    let w = Worker::start(&node.app, &emu);
    let r = wait_rows(&node.app, "interrupted rows reconciled", |r| {
        r.len() == 3 && r[1].state == "sent" && r[2].state == "failed"
    })
    .await;
    assert_eq!(r[0].state, "sent", "the sent row stays sent: {r:?}");
    assert_eq!(r[1].resends, 1, "resent once: {r:?}");
    assert_eq!(r[1].attempts, 2);
    assert!(
        r[2].last_error
            .as_deref()
            .unwrap_or("")
            .contains("not sent again"),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let texts: Vec<String> = emu.sent_messages().into_iter().map(|m| m.1).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.iter().any(|t| t == "first interruption"), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t == "second interruption"),
        "{texts:?}"
    );
    w.stop().await;

    // A third start sends nothing more.
    let w = Worker::start(&node.app, &emu);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(emu.sent_messages().len(), 2);
    w.stop().await;
    emu_cancel.cancel();
}

#[tokio::test]
async fn cms_error_is_recorded_with_its_code_and_retried() {
    let emu_cancel = CancellationToken::new();
    let (emu, _t) = emulator::start(emu_cancel.clone()).unwrap();
    let node = TestNode::start().await;
    emu.fail_next_sms(500);
    let case = ready_case(&node).await;
    let w = Worker::start(&node.app, &emu);
    let r = wait_rows(&node.app, "a failed first attempt", |r| {
        r.first()
            .is_some_and(|r| r.attempts >= 1 && r.last_error.is_some())
    })
    .await;
    assert_eq!(r[0].last_error.as_deref(), Some("+CMS ERROR: 500"), "{r:?}");
    let r = wait_rows(&node.app, "the retry sent", |r| r[0].state == "sent").await;
    assert_eq!(r[0].attempts, 2, "{r:?}");
    assert_eq!(r[0].last_error.as_deref(), Some("+CMS ERROR: 500"));
    let sent = emu.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].1.contains(&case));
    w.stop().await;
    emu_cancel.cancel();
}

#[tokio::test]
async fn a_long_sms_with_one_failed_part_resends_only_that_part_under_the_same_reference() {
    let emu_cancel = CancellationToken::new();
    let (emu, _t) = emulator::start(emu_cancel.clone()).unwrap();
    let node = TestNode::start().await;
    // Three UCS-2 parts (67 characters each).
    let body: String = "مرحبا بكم في مركز خدمة المواطن، وثيقتكم جاهزة للاستلام. "
        .repeat(3)
        .chars()
        .take(180)
        .collect();
    let queued = body.clone();
    node.app
        .db
        .writer
        .write_sql(move |c| {
            c.execute(
                "INSERT INTO outbox(kind, recipient, body, created_at)
                 VALUES ('case_ready', '+963944123456', ?1, '2026-11-29T06:00:00Z')",
                [queued],
            )
        })
        .await
        .unwrap();
    emu.fail_sms_part(2, 332);
    let w = Worker::start(&node.app, &emu);
    let r = wait_rows(&node.app, "a failed first attempt", |r| {
        r[0].attempts >= 1 && r[0].last_error.is_some()
    })
    .await;
    assert_eq!(r[0].last_error.as_deref(), Some("+CMS ERROR: 332"), "{r:?}");
    let r = wait_rows(&node.app, "the message completed", |r| r[0].state == "sent").await;
    assert_eq!(r[0].attempts, 2, "one retry: {r:?}");
    assert_eq!(r.len(), 1, "within the same outbox row: {r:?}");

    let parts = emu.sent_sms();
    let seqs: Vec<(u16, u8, u8)> = parts
        .iter()
        .map(|p| {
            let c = p.decoded.concat.expect("a concatenated part");
            (c.reference, c.total, c.seq)
        })
        .collect();
    // The first attempt sends part 1 and stops at the refused part 2; the second sends
    // only parts 2 and 3: each part accepted exactly once, all under one reference.
    assert_eq!(seqs.len(), 3, "each part accepted exactly once: {seqs:?}");
    let reference = seqs[0].0;
    assert!(
        seqs.iter().all(|s| s.0 == reference && s.1 == 3),
        "{seqs:?}"
    );
    let mut numbers: Vec<u8> = seqs.iter().map(|s| s.2).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3]);
    let messages = emu.sent_messages();
    assert_eq!(
        messages.len(),
        1,
        "the phone joins one message: {messages:?}"
    );
    assert_eq!(messages[0].1, body);
    let refs = r[0].message_ref.clone().unwrap_or_default();
    assert_eq!(refs.split(',').count(), 3, "a reference per part: {refs}");
    w.stop().await;
    emu_cancel.cancel();
}
