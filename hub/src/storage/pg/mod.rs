//! The PostgreSQL engine: one database shared by one or more hub processes. Each hub
//! worker thread owns one connection ([`PgHub`]: the blocking `postgres` client, its
//! prepared statements, a document store and the hub's clock); `pool_size` of them make a
//! process's pool ([`open_pool`]).
//!
//! The tables are [`schema`] (versioned migrations), the relay's and the documents' rows
//! [`tables`], the sync log and sessions [`log`], operators, their sessions and tokens,
//! login limits and the audit log `operators`; [`copy`] moves a SQLite hub here
//! (`markaz hub migrate-store`) and checks the result.
//!
//! What several processes writing at once need, and how each is solved (every one has a
//! test in `storage::tests::pg`):
//! - **One document, two writers** (a portal case edited at the hub while its center
//!   pushes): every writer takes a transaction-scoped advisory lock on each document
//!   before loading it ([`HubTables::lock_docs`](markaz_sync::protocol::HubTables)), in
//!   doc-id order; the second waits, then sees the first's rows (READ COMMITTED: every
//!   statement sees what committed before it) and its cached copy is reloaded because the
//!   newest stored change differs. Without it both would mint the same (actor, seq) from
//!   the same heads and one change would be lost when the document is rebuilt.
//! - **No pull skips a change**: a center's feed positions are numbered from
//!   `feed_heads.len`, whose row stays locked until the appending transaction ends, so a
//!   position can only be handed out once every lower one is committed (or rolled back
//!   and reused). A reader never sees position n+1 without n.
//! - **Sessions**: recording a request locks its center's sessions (advisory lock), so
//!   two requests of one session landing on two processes join one row.
//! - **Counters**: one `INSERT … ON CONFLICT DO UPDATE … RETURNING` (row lock).
//! - **Migrations and the first start**: under a session advisory lock, so processes
//!   starting together migrate, mint the hub's actor and seed the catalog once.
//!
//! The connections are plain TCP or TLS verified against the governorate's CA ([`tls`],
//! from `sslmode` and `storage.ca_cert`).
//!
//! A transaction that loses a deadlock (two locks taken in different orders across
//! operations) or a serialization failure is run again from scratch (at most
//! [`MAX_ATTEMPTS`] times). A lost connection fails the request at hand (the center
//! retries) and is opened again for the next one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use markaz_config::PgUrl;
use markaz_sync::hlc::HlcClock;
use markaz_sync::store::DocStore;
use postgres::error::SqlState;
use postgres::{Client, Statement};

use super::{Counters, StorageError, Transactional, TxWork};

pub mod copy;
pub mod log;
mod operators;
pub mod schema;
pub mod tables;
pub mod tls;

use tables::PgTx;
pub use tls::PgTls;

/// How many times a transaction that lost a deadlock or a serialization check is run.
pub const MAX_ATTEMPTS: u32 = 5;

/// The `application_name` of every hub connection (`pg_stat_activity` shows them).
pub const APPLICATION_NAME: &str = "markaz-hub";

/// Documents each worker keeps in memory between requests (several workers per process).
const DOC_CACHE: usize = 1024;

/// Where the database is and how to log in (from `[storage]`).
#[derive(Clone)]
pub struct PgSettings {
    pub url: PgUrl,
    /// The role's password (`storage.password_file`), if any.
    pub password: Option<String>,
    /// Connections (worker threads) of this process.
    pub pool_size: usize,
    /// Plain TCP or TLS, and how the server is verified.
    pub tls: PgTls,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.url.as_str())
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish()
    }
}

impl PgSettings {
    /// Settings from the hub's `[storage]`: reads `password_file` (its first line).
    pub fn from_config(s: &markaz_config::HubStorage) -> Result<PgSettings, StorageError> {
        let url = s.url.clone().ok_or_else(|| {
            StorageError::Invalid("storage.url is required for engine = \"postgres\"".into())
        })?;
        let password = match &s.password_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    StorageError::Invalid(format!(
                        "while reading storage.password_file {}: {e}",
                        p.display()
                    ))
                })?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
        };
        Ok(PgSettings {
            url,
            password,
            pool_size: (s.pool_size as usize).max(1),
            tls: PgTls::from_config(s)?,
        })
    }

    fn config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host(self.url.host())
            .port(self.url.port())
            .user(self.url.user())
            .dbname(self.url.dbname())
            .application_name(APPLICATION_NAME)
            .connect_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(60));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    fn connect(&self) -> Result<Client, StorageError> {
        let mut client = self
            .tls
            .connect(&mut self.config())
            .map_err(|e| self.tls.explain(self.url.host(), self.url.port(), e))?;
        // A hub request never waits for a lock forever: a stuck writer fails it, the
        // center retries.
        client.batch_execute("SET lock_timeout = '30s'; SET statement_timeout = '120s'")?;
        Ok(client)
    }
}

impl From<postgres::Error> for StorageError {
    fn from(e: postgres::Error) -> Self {
        StorageError::Db(Box::new(PgError(e)))
    }
}

/// A PostgreSQL error that says what the server said (`postgres::Error` alone prints
/// only "db error" for everything the server reports: a refused login, a missing table).
#[derive(Debug)]
pub struct PgError(pub postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(
                    f,
                    "{} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                )?;
                if let Some(d) = db.detail() {
                    write!(f, " ({d})")?;
                }
                Ok(())
            }
            None => self.0.fmt(f),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether running the transaction again may succeed.
pub(crate) fn retryable(code: Option<&SqlState>) -> bool {
    code.is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// One worker's connection with its document store and clock.
pub struct PgHub {
    settings: PgSettings,
    client: Client,
    /// Statements prepared on this connection, by their SQL.
    stmts: RefCell<HashMap<&'static str, Statement>>,
    docs: DocStore,
    clock: HlcClock,
}

impl std::fmt::Debug for PgHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHub")
            .field("url", &self.settings.url.as_str())
            .field("docs", &self.docs)
            .finish()
    }
}

/// Open a process's pool: migrate (refusing a schema newer than this program, with the
/// database untouched), mint the hub's actor and seed the catalog on a new database, then
/// connect `pool_size` workers.
pub fn open_pool(settings: &PgSettings) -> Result<Vec<PgHub>, StorageError> {
    let mut first = PgHub::open(settings)?;
    let mut out = Vec::with_capacity(settings.pool_size);
    for _ in 1..settings.pool_size {
        out.push(PgHub::connect(settings, first.docs.actor().clone())?);
    }
    match first.tls_version() {
        Ok(tls) => tracing::info!(
            url = %settings.url.as_str(),
            tls = tls.as_deref().unwrap_or("off"),
            pool_size = settings.pool_size,
            "connected to PostgreSQL"
        ),
        Err(e) => tracing::warn!(error = %e, "could not read pg_stat_ssl"),
    }
    // The first worker also serves.
    first.docs.clear_cache();
    out.insert(0, first);
    Ok(out)
}

impl PgHub {
    /// Migrate and prepare the database (see [`open_pool`]); one worker.
    pub fn open(settings: &PgSettings) -> Result<PgHub, StorageError> {
        let mut client = settings.connect()?;
        // Processes starting together take turns: one migrates, seeds and mints.
        client.execute("SELECT pg_advisory_lock($1)", &[&schema::SETUP_LOCK])?;
        let done = (|| {
            schema::migrate(&mut client)?;
            let now = jiff::Timestamp::now().as_millisecond();
            let actor = schema::incarnation(&mut client, now)?;
            let mut hub = PgHub {
                settings: settings.clone(),
                client,
                stmts: RefCell::new(HashMap::new()),
                docs: DocStore::new(actor, DOC_CACHE),
                clock: HlcClock::new("hub"),
            };
            super::seed_catalog(&mut hub)?;
            Ok::<_, StorageError>(hub)
        })();
        match done {
            Ok(mut hub) => {
                hub.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&schema::SETUP_LOCK])?;
                Ok(hub)
            }
            // The connection (and with it the session lock) is dropped.
            Err(e) => Err(e),
        }
    }

    /// Another worker on a migrated database, minting as `actor`.
    fn connect(settings: &PgSettings, actor: automerge::ActorId) -> Result<PgHub, StorageError> {
        Ok(PgHub {
            settings: settings.clone(),
            client: settings.connect()?,
            stmts: RefCell::new(HashMap::new()),
            docs: DocStore::new(actor, DOC_CACHE),
            clock: HlcClock::new("hub"),
        })
    }

    /// Connections of other hub processes (or other workers) to this database: what
    /// `markaz hub restore` refuses to run beside.
    pub fn other_hub_connections(&mut self) -> Result<i64, StorageError> {
        self.ensure_connected()?;
        let row = self.client.query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = $1 AND datname = current_database()
               AND pid <> pg_backend_pid()",
            &[&APPLICATION_NAME],
        )?;
        Ok(row.get(0))
    }

    /// The TLS version of this worker's connection as the server sees it
    /// (`pg_stat_ssl`), or `None` for plain TCP.
    pub fn tls_version(&mut self) -> Result<Option<String>, StorageError> {
        self.ensure_connected()?;
        let row = self.client.query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )?;
        let ssl: bool = row.get(0);
        Ok(if ssl { row.get(1) } else { None })
    }

    /// Open the connection again if the server closed it (restart, network).
    fn ensure_connected(&mut self) -> Result<(), StorageError> {
        if self.client.is_closed() {
            tracing::warn!(url = %self.settings.url.as_str(), "PostgreSQL connection lost; reconnecting");
            self.client = self.settings.connect()?;
            self.stmts.borrow_mut().clear();
            self.docs.clear_cache();
        }
        Ok(())
    }

    /// Run `f` in a transaction of its own (the sync log), committing when it succeeds;
    /// run again after a deadlock.
    pub(crate) fn with_tx<R>(
        &mut self,
        mut f: impl FnMut(&PgTx<'_>) -> Result<R, postgres::Error>,
    ) -> Result<R, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.ensure_connected()?;
            let tx = PgTx::new(self.client.transaction()?, &self.stmts);
            let r = f(&tx);
            let r = match r {
                Ok(v) => tx.commit().map(|()| v),
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if retryable(e.code()) && attempt < MAX_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Transactional for PgHub {
    fn in_tx<R>(&mut self, work: &mut TxWork<'_, R>) -> Result<R, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.ensure_connected()?;
            let tx = PgTx::new(self.client.transaction()?, &self.stmts);
            let (r, commit) = work(&tx, &mut self.docs, &mut self.clock);
            let failed = tx.take_error();
            if let Some(e) = failed {
                // The transaction is aborted: nothing of it can commit.
                drop(tx);
                self.docs.clear_cache();
                if retryable(e.code.as_ref()) && attempt < MAX_ATTEMPTS {
                    tracing::debug!(attempt, code = ?e.code, "hub transaction lost a lock race; again");
                    continue;
                }
                if commit {
                    // The work went on past a failed statement.
                    return Err(StorageError::Db(Box::new(e)));
                }
                return Ok(r);
            }
            if !commit {
                drop(tx);
                self.docs.clear_cache();
                return Ok(r);
            }
            match tx.commit() {
                Ok(()) => return Ok(r),
                Err(e) => {
                    self.docs.clear_cache();
                    if retryable(e.code()) && attempt < MAX_ATTEMPTS {
                        continue;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    fn clock(&mut self) -> &mut HlcClock {
        &mut self.clock
    }
}

impl Counters for PgHub {
    fn next_counter(&mut self, name: &str) -> Result<u32, StorageError> {
        let v: i64 = self.with_tx(|tx| {
            tx.query_one(
                "INSERT INTO hub_counters(name, value) VALUES ($1, 1)
                 ON CONFLICT(name) DO UPDATE SET value = hub_counters.value + 1 RETURNING value",
                &[&name],
            )
            .map(|r| r.get(0))
        })?;
        u32::try_from(v).map_err(|_| StorageError::Invalid(format!("counter {name} overflow")))
    }
}
