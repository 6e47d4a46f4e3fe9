//! The single writer thread and its group commit.

use std::sync::Arc;

use markaz_sync::store::DocStore;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// What a request's work returns to the writer: a completion to call once the batch's
/// commit is known, so the request is answered only after its data is durable.
type Completion = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
type Job = Box<dyn FnOnce(&mut WriteTx<'_>) -> Completion + Send>;

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

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        max_batch: usize,
        docs: DocStore,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Job>(max_batch * 4);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, docs, rx, max_batch))?;
        Ok(Self { tx })
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
        let job: Job = Box::new(move |tx: &mut WriteTx<'_>| {
            let result = in_savepoint(tx, work);
            Box::new(move |commit: Result<(), Arc<rusqlite::Error>>| {
                let answer = match (commit, result) {
                    (_, Err(SavepointError::Work(e))) => Err(WriteError::Work(e)),
                    (_, Err(SavepointError::Sqlite(e))) => {
                        Err(WriteError::Storage(StorageError::Sqlite(e)))
                    }
                    (Err(e), Ok(_)) => {
                        Err(WriteError::Storage(StorageError::Sqlite(clone_err(&e))))
                    }
                    (Ok(()), Ok(v)) => Ok(v),
                };
                let _ = reply_tx.send(answer);
            })
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StorageError::WriterGone)?;
        reply_rx.await.map_err(|_| StorageError::WriterGone)?
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
}

enum SavepointError<E> {
    Work(E),
    Sqlite(rusqlite::Error),
}

fn in_savepoint<T, E>(
    tx: &mut WriteTx<'_>,
    work: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
) -> Result<T, SavepointError<E>> {
    let conn = tx.conn;
    // Cached statements: every request runs these two on the writer thread.
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    exec("SAVEPOINT request").map_err(SavepointError::Sqlite)?;
    match work(tx) {
        Ok(v) => {
            exec("RELEASE request").map_err(SavepointError::Sqlite)?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
                .map_err(SavepointError::Sqlite)?;
            Err(SavepointError::Work(e))
        }
    }
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(e.sqlite_error_code().map(|c| c as i32).unwrap_or(1)),
        Some(format!("commit failed: {e}")),
    )
}

fn run(mut conn: Connection, mut docs: DocStore, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut docs, &mut batch);
    }
    tracing::debug!("storage writer stopped: all handles dropped");
}

fn commit_batch(conn: &mut Connection, docs: &mut DocStore, batch: &mut Vec<Job>) {
    let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(t) => t,
        Err(e) => {
            // The jobs never ran; dropping them drops their reply channels, so each
            // caller gets `WriterGone` and nothing is claimed durable.
            tracing::error!(error = %e, dropped = batch.len(), "cannot begin write transaction");
            batch.clear();
            return;
        }
    };
    let completions: Vec<Completion> = {
        let mut tx = WriteTx {
            conn: &txn,
            docs: &mut *docs,
        };
        batch.drain(..).map(|job| job(&mut tx)).collect()
    };
    let committed = txn.commit().map_err(|e| {
        tracing::error!(error = %e, "group commit failed");
        // What the documents cached of this batch was not committed.
        docs.clear_cache();
        Arc::new(e)
    });
    for done in completions {
        done(committed.clone());
    }
}
