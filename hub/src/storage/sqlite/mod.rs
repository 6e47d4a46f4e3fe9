//! The SQLite engine: `<data_dir>/markaz-hub.db` (WAL, `synchronous=FULL`), owned by ONE
//! writer thread with the hub's [`DocStore`] and clock. The relay's tables are
//! `markaz_sync::protocol::sqlite_hub`; the sync log and sessions are [`log`]; operators,
//! their sessions and tokens, login limits and the audit log are `operators`.

use std::path::Path;

use markaz_sync::hlc::HlcClock;
use markaz_sync::protocol::{migrate_hub, restore};
use markaz_sync::store::{self, DocStore};
use rusqlite::Connection;

use super::{Counters, StorageError, Transactional, TxWork};

pub mod log;
mod operators;

/// The hub database file name inside `data_dir`.
pub const DB_FILE: &str = "markaz-hub.db";

/// The SQLite hub store: the write connection, the document store and the hub's clock.
pub struct HubDb {
    conn: Connection,
    docs: DocStore,
    clock: HlcClock,
}

impl std::fmt::Debug for HubDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubDb").field("docs", &self.docs).finish()
    }
}

/// The counters table.
fn migrate_counters(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hub_counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )
}

/// Documents the hub keeps in memory between requests.
const HUB_DOC_CACHE: usize = 4096;

impl HubDb {
    /// Open (creating and migrating) the hub database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<HubDb, StorageError> {
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache (SQLite's default is 2 MB): every pushed change lands at a
        // random place in the unique index of change hashes, and dozens of centers push
        // at once.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The per-change statements of a push (store, route, feed) stay prepared.
        conn.set_prepared_statement_cache_capacity(64);
        store::migrate(&conn)?;
        migrate_hub(&conn)?;
        log::migrate(&conn)?;
        migrate_counters(&conn)?;
        operators::migrate(&conn)?;
        let now = jiff::Timestamp::now().as_millisecond();
        let actor = store::incarnation(&conn, "hub", now)?;
        // Before it serves: this process hands out feed positions no earlier process did
        // (so a database put back without `markaz hub restore` is recognised by the
        // centers' cursors, see `markaz_sync::protocol::restore`).
        restore::start_feeds(&conn, u64::try_from(now).unwrap_or(0)).map_err(StorageError::Db)?;
        let mut db = HubDb {
            conn,
            // Many centers push at once, each interleaving hundreds of open cases; a
            // document evicted between two of its center's requests is rebuilt from its
            // changes. A case document is a few kilobytes in memory.
            docs: DocStore::new(actor, HUB_DOC_CACHE),
            clock: HlcClock::new("hub"),
        };
        super::seed_catalog(&mut db)?;
        Ok(db)
    }
}

impl Transactional for HubDb {
    fn in_tx<R>(&mut self, work: &mut TxWork<'_, R>) -> Result<R, StorageError> {
        let tx = self.conn.transaction()?;
        let (r, commit) = work(&tx, &mut self.docs, &mut self.clock);
        if !commit {
            drop(tx);
            self.docs.clear_cache();
            return Ok(r);
        }
        if let Err(e) = tx.commit() {
            self.docs.clear_cache();
            return Err(e.into());
        }
        Ok(r)
    }

    fn clock(&mut self) -> &mut HlcClock {
        &mut self.clock
    }
}

impl Counters for HubDb {
    fn next_counter(&mut self, name: &str) -> Result<u32, StorageError> {
        let v: i64 = self.conn.query_row(
            "INSERT INTO hub_counters(name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value=value+1 RETURNING value",
            [name],
            |r| r.get(0),
        )?;
        u32::try_from(v).map_err(|_| StorageError::Invalid(format!("counter {name} overflow")))
    }
}
