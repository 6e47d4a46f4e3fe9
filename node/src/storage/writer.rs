//! The single writer thread, its group commit, and its supervision.
//!
//! Guarantees:
//! - An `Ok` from [`Writer::write`] means the work's transaction committed (on disk).
//! - Every job is answered: with its result after the commit, with the commit's error,
//!   or — when the batch it was in could not begin or the thread panicked — with an error
//!   saying nothing of it was saved. No job is acknowledged and then lost.
//! - A job that panics (a bug) is rolled back alone, like a job that fails: its caller
//!   gets [`StorageError::NotCommitted`], the rest of the batch commits.
//! - The thread is supervised: a panic anywhere else in the commit loop rolls the batch
//!   back (its callers get `NotCommitted`), reopens the connection, clears the document
//!   cache and goes on with the jobs still queued. The thread ends only when every
//!   handle is dropped.
//! - [`Writer::health`] says whether writes are succeeding; [`Writer::probe`] finds out
//!   with a one-row write (used by `/healthz` while writes are failing, so it turns
//!   healthy again as soon as the disk has room, without waiting for a clerk's write).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use markaz_sync::store::DocStore;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// What a request's work returns to the writer: a completion to call once the batch's
/// commit is known, so the request is answered only after its data is durable.
type Completion = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
/// A queued request: run with the batch's transaction, or told why there is none (then
/// it answers at once and returns no completion).
type Job = Box<dyn FnOnce(Result<&mut WriteTx<'_>, Refusal>) -> Option<Completion> + Send>;
/// Opens a fresh write connection (after a panic left the old one in doubt).
pub(super) type Reopen = Box<dyn FnMut() -> Result<Connection, rusqlite::Error> + Send>;

/// Why a batch's jobs were not run.
#[derive(Debug, Clone)]
enum Refusal {
    /// The transaction could not begin.
    Begin(Arc<rusqlite::Error>),
    /// Writes are refused (a corrupt database, see [`Writer::refuse`]).
    Refused(Arc<str>),
}

/// What a write job may touch, inside its savepoint of the group-commit transaction: the
/// write connection and the writer's document store (a document's new change commits
/// with the projection rows the job rewrites).
pub struct WriteTx<'a> {
    pub conn: &'a Connection,
    pub docs: &'a mut DocStore,
}

/// An error from [`Writer::write`]: either the work's own error (its savepoint was rolled
/// back, the rest of the batch committed), or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    #[error(transparent)]
    Work(E),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether writes succeed, as the writer last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    /// The last batch committed (or nothing was written yet).
    Ok,
    /// The last batch failed to commit (a full disk, an I/O error…) or the thread panicked.
    Failing,
    /// One batch has been running for longer than [`STALLED_AFTER`].
    Stalled,
    /// Writes are refused on purpose (a corrupt database); see `refused`.
    Refusing,
    /// The thread is gone: every write fails until the process restarts.
    Stopped,
}

impl WriterState {
    pub fn as_str(self) -> &'static str {
        match self {
            WriterState::Ok => "ok",
            WriterState::Failing => "failing",
            WriterState::Stalled => "stalled",
            WriterState::Refusing => "refusing",
            WriterState::Stopped => "stopped",
        }
    }
}

/// A batch running longer than this makes the writer unhealthy.
pub const STALLED_AFTER: Duration = Duration::from_secs(15);

/// The writer's health: a snapshot from [`Writer::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterHealth {
    pub state: WriterState,
    /// Batches that failed in a row (0 after a commit).
    pub consecutive_failures: u64,
    /// The error of the last failure of the current streak.
    pub last_error: Option<String>,
    /// Times the thread recovered from a panic since start.
    pub restarts: u64,
    /// Batches committed since start.
    pub commits: u64,
    /// Why writes are refused, when they are.
    pub refused: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    consecutive_failures: u64,
    last_error: Option<String>,
    restarts: u64,
    commits: u64,
    busy_since: Option<Instant>,
    refused: Option<Arc<str>>,
    /// Why low-value writes are refused (the disk guard), when they are.
    low_value_refused: Option<Arc<str>>,
}

/// What the writer measures of its batches (registered by `crate::metrics`).
#[derive(Clone, Debug)]
pub struct WriterMetrics {
    /// Jobs per group-commit transaction.
    pub batch_size: Histogram,
    /// Time from `BEGIN` to the end of `COMMIT` (the fsync included), in seconds.
    pub commit_seconds: Histogram,
    /// Time each job ran inside its transaction, in seconds: a long one (a sync applying
    /// a batch, say) is what every other job of the batch and the queue waits behind.
    pub job_seconds: Histogram,
    /// The longest job since [`WriterMetrics::take_longest_job`] was last called.
    longest_job: Arc<Mutex<Duration>>,
}

impl WriterMetrics {
    fn new() -> Self {
        Self {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            job_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            longest_job: Arc::default(),
        }
    }

    fn observe_job(&self, took: Duration) {
        self.job_seconds.observe(took.as_secs_f64());
        let mut longest = self.longest_job.lock().unwrap_or_else(|p| p.into_inner());
        *longest = (*longest).max(took);
    }

    /// The longest single job since the last call (or since start), and starts again.
    pub fn take_longest_job(&self) -> Duration {
        let mut longest = self.longest_job.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *longest)
    }
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    shared: Arc<Mutex<Shared>>,
    metrics: WriterMetrics,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        reopen: Reopen,
        max_batch: usize,
        docs: DocStore,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Job>(max_batch * 4);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let metrics = WriterMetrics::new();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || supervise(conn, reopen, docs, rx, max_batch, &s, &m))?;
        Ok(Self {
            tx,
            shared,
            metrics,
        })
    }

    /// The batch-size and commit-time histograms.
    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// Write jobs waiting for the writer thread.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Runs `work` in its own savepoint inside the next group-commit transaction and
    /// returns its result once the transaction is durably committed.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, WriteError<E>>>();
        let job: Job = Box::new(move |tx: Result<&mut WriteTx<'_>, Refusal>| {
            let tx = match tx {
                Ok(tx) => tx,
                Err(refusal) => {
                    let e = match refusal {
                        Refusal::Begin(e) => StorageError::Sqlite(clone_err(&e)),
                        Refusal::Refused(why) => StorageError::Refused(why.to_string()),
                    };
                    let _ = reply_tx.send(Err(WriteError::Storage(e)));
                    return None;
                }
            };
            let result = in_savepoint(tx, work);
            let done: Completion = Box::new(move |commit: Result<(), Arc<rusqlite::Error>>| {
                let answer = match (commit, result) {
                    (_, Err(SavepointError::Work(e))) => Err(WriteError::Work(e)),
                    (_, Err(SavepointError::Sqlite(e))) => {
                        Err(WriteError::Storage(StorageError::Sqlite(e)))
                    }
                    (_, Err(SavepointError::Panicked)) => {
                        Err(WriteError::Storage(StorageError::NotCommitted))
                    }
                    (Err(e), Ok(_)) => {
                        Err(WriteError::Storage(StorageError::Sqlite(clone_err(&e))))
                    }
                    (Ok(()), Ok(v)) => Ok(v),
                };
                let _ = reply_tx.send(answer);
            });
            Some(done)
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StorageError::WriterGone)?;
        // A dropped reply: the thread panicked with this job in its batch, which was
        // rolled back.
        reply_rx.await.map_err(|_| StorageError::NotCommitted)?
    }

    /// Like [`Writer::write`] for work whose error type is the storage error itself.
    pub async fn write_sql<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        match self.write(move |tx| work(tx.conn)).await {
            Ok(v) => Ok(v),
            Err(WriteError::Work(e)) => Err(StorageError::Sqlite(e)),
            Err(WriteError::Storage(e)) => Err(e),
        }
    }

    /// Whether writes are succeeding, from what the thread last saw.
    pub fn health(&self) -> WriterHealth {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let state = if self.tx.is_closed() {
            WriterState::Stopped
        } else if s.refused.is_some() {
            WriterState::Refusing
        } else if s.busy_since.is_some_and(|t| t.elapsed() > STALLED_AFTER) {
            WriterState::Stalled
        } else if s.consecutive_failures > 0 {
            WriterState::Failing
        } else {
            WriterState::Ok
        };
        WriterHealth {
            state,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
            restarts: s.restarts,
            commits: s.commits,
            refused: s.refused.as_deref().map(str::to_string),
        }
    }

    /// Writes one row of `writer_probe` through the writer and reports whether it
    /// committed within `timeout`; the writer's health follows the outcome.
    pub async fn probe(&self, timeout: Duration) -> Result<(), StorageError> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let write = self.write_sql(move |c| {
            c.execute(
                "INSERT INTO writer_probe(id, at_ms) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET at_ms = excluded.at_ms",
                [now_ms],
            )
            .map(drop)
        });
        match tokio::time::timeout(timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Timeout(timeout)),
        }
    }

    /// From now on every write is answered with [`StorageError::Refused`] and `why`,
    /// without touching the database (a corrupt file must not be written to).
    pub fn refuse(&self, why: &str) {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused = Some(why.into());
    }

    /// Like [`Writer::write`] for data the center can do without (power samples,
    /// statistics): refused with [`StorageError::Refused`] at once, without queueing,
    /// while [`Writer::refuse_low_value`] is in force — so the disk's last room goes to
    /// citizens' cases.
    pub async fn write_low_value<T, E, F>(&self, work: F) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        if let Some(why) = self.low_value_refused() {
            return Err(WriteError::Storage(StorageError::Refused(why)));
        }
        self.write(work).await
    }

    /// Refuses (`Some(why)`) or accepts again (`None`) the writes made with
    /// [`Writer::write_low_value`].
    pub fn refuse_low_value(&self, why: Option<&str>) {
        lock(&self.shared).low_value_refused = why.map(Arc::from);
    }

    /// Why low-value writes are refused now, if they are.
    pub fn low_value_refused(&self) -> Option<String> {
        lock(&self.shared)
            .low_value_refused
            .as_deref()
            .map(str::to_string)
    }
}

enum SavepointError<E> {
    Work(E),
    Sqlite(rusqlite::Error),
    Panicked,
}

fn in_savepoint<T, E>(
    tx: &mut WriteTx<'_>,
    work: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
) -> Result<T, SavepointError<E>> {
    let conn = tx.conn;
    // Cached statements: every request runs these two on the writer thread.
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    exec("SAVEPOINT request").map_err(SavepointError::Sqlite)?;
    // A panicking job (a bug) rolls back alone, like a failing one: the rest of the
    // batch commits and the thread goes on.
    match std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut *tx))) {
        Ok(Ok(v)) => {
            exec("RELEASE request").map_err(SavepointError::Sqlite)?;
            Ok(v)
        }
        Ok(Err(e)) => {
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
                .map_err(SavepointError::Sqlite)?;
            Err(SavepointError::Work(e))
        }
        Err(panic) => {
            // What the job did to cached documents was rolled back with its rows.
            tx.docs.clear_cache();
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
                .map_err(SavepointError::Sqlite)?;
            let message = panic_message(&*panic);
            tracing::error!(panic = %message, "a write job panicked; it was rolled back alone");
            Err(SavepointError::Panicked)
        }
    }
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(e.sqlite_error_code().map(|c| c as i32).unwrap_or(1)),
        Some(format!("commit failed: {e}")),
    )
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the commit loop; after a panic, starts it again on a fresh connection with the
/// jobs still queued. Returns when every [`Writer`] is dropped.
fn supervise(
    mut conn: Connection,
    mut reopen: Reopen,
    mut docs: DocStore,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    shared: &Mutex<Shared>,
    metrics: &WriterMetrics,
) {
    let mut panics_in_a_row: u32 = 0;
    loop {
        let commits_before = lock(shared).commits;
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run(&mut conn, &mut docs, &mut rx, max_batch, shared, metrics)
        }));
        let Err(panic) = ran else {
            tracing::debug!("storage writer stopped: all handles dropped");
            return;
        };
        // Unwinding dropped the batch's transaction (rolled back) and its jobs' reply
        // channels (each caller got `NotCommitted`).
        let message = panic_message(&*panic);
        docs.clear_cache();
        match reopen() {
            Ok(fresh) => conn = fresh,
            Err(error) => {
                tracing::error!(%error, "storage writer: cannot reopen its connection; keeping the old one");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        }
        {
            let mut s = lock(shared);
            s.restarts += 1;
            s.consecutive_failures += 1;
            s.last_error = Some(format!("the writer panicked: {message}"));
            s.busy_since = None;
            panics_in_a_row = if s.commits > commits_before {
                1
            } else {
                panics_in_a_row.saturating_add(1)
            };
        }
        tracing::error!(panic = %message, "storage writer panicked; its batch was rolled back and it restarted");
        // A panic that repeats at once must not spin a core.
        std::thread::sleep(Duration::from_millis(
            (50 * u64::from(panics_in_a_row)).min(2000),
        ));
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

fn run(
    conn: &mut Connection,
    docs: &mut DocStore,
    rx: &mut mpsc::Receiver<Job>,
    max_batch: usize,
    shared: &Mutex<Shared>,
    metrics: &WriterMetrics,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let refused = {
            let mut s = lock(shared);
            s.busy_since = Some(Instant::now());
            s.refused.clone()
        };
        match refused {
            Some(why) => {
                lock(shared).busy_since = None;
                for job in batch.drain(..) {
                    job(Err(Refusal::Refused(why.clone())));
                }
            }
            None => commit_batch(conn, docs, &mut batch, shared, metrics),
        }
    }
}

/// Records a batch's outcome; called before its jobs are answered, so a caller that got
/// its answer sees the health that goes with it.
fn record(shared: &Mutex<Shared>, outcome: Result<(), &rusqlite::Error>) {
    let mut s = lock(shared);
    s.busy_since = None;
    match outcome {
        Ok(()) => {
            s.commits += 1;
            s.consecutive_failures = 0;
            s.last_error = None;
        }
        Err(e) => {
            s.consecutive_failures += 1;
            s.last_error = Some(e.to_string());
        }
    }
}

/// Runs the batch's jobs in one transaction and commits it; answers every job, after
/// the batch's size and commit time are observed, so a caller that got its answer finds
/// its batch in the metrics.
fn commit_batch(
    conn: &mut Connection,
    docs: &mut DocStore,
    batch: &mut Vec<Job>,
    shared: &Mutex<Shared>,
    metrics: &WriterMetrics,
) {
    let (jobs, started) = (batch.len(), Instant::now());
    let observe_batch = || {
        metrics.batch_size.observe(jobs as f64);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
    };
    let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, refused = batch.len(), "cannot begin write transaction");
            record(shared, Err(&e));
            observe_batch();
            let e = Arc::new(e);
            for job in batch.drain(..) {
                job(Err(Refusal::Begin(e.clone())));
            }
            return;
        }
    };
    let completions: Vec<Completion> = {
        let mut tx = WriteTx {
            conn: &txn,
            docs: &mut *docs,
        };
        batch
            .drain(..)
            .filter_map(|job| {
                let started = Instant::now();
                let done = job(Ok(&mut tx));
                metrics.observe_job(started.elapsed());
                done
            })
            .collect()
    };
    let committed = txn.commit().map_err(|e| {
        tracing::error!(error = %e, "group commit failed");
        // What the documents cached of this batch was not committed.
        docs.clear_cache();
        Arc::new(e)
    });
    record(shared, committed.as_ref().map(|_| ()).map_err(|e| &**e));
    observe_batch();
    for done in completions {
        done(committed.clone());
    }
}
