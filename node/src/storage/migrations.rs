//! Versioned schema migrations, applied in order at start; `PRAGMA user_version` records
//! the last one applied. Migrations only ever get appended.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[include_str!("schema_v1.sql"), include_str!("schema_v2.sql")];

/// The schema version this binary writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn run(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let txn = conn.transaction()?;
        txn.execute_batch(sql)?;
        txn.pragma_update(None, "user_version", (i + 1) as i64)?;
        txn.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}
