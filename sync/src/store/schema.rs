//! The tables of the document store (`changes`, `snapshots`, `doc_meta`, `peer_cursors`,
//! `incarnation`, `refused_changes`) and their versioned migration (`sync_schema`).

use rusqlite::{Connection, OptionalExtension};

use super::{Result, StoreError};

/// Current version of this module's schema.
pub const SCHEMA_VERSION: i64 = 2;

/// The tables of schema version 1 (before lanes).
pub(super) const SCHEMA_V1: &str = "CREATE TABLE changes(
                seq INTEGER PRIMARY KEY,
                doc_id TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                actor BLOB NOT NULL,
                local INTEGER NOT NULL,
                origin TEXT,
                bytes BLOB NOT NULL);
             CREATE INDEX changes_doc ON changes(doc_id, seq);
             CREATE INDEX changes_local ON changes(local, seq);
             CREATE TABLE snapshots(
                doc_id TEXT PRIMARY KEY,
                bytes BLOB NOT NULL,
                heads BLOB NOT NULL,
                upto_seq INTEGER NOT NULL);
             CREATE TABLE doc_meta(
                doc_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                owner TEXT NOT NULL,
                heads BLOB NOT NULL,
                bucket INTEGER NOT NULL,
                last_seq INTEGER NOT NULL);
             CREATE INDEX doc_meta_bucket ON doc_meta(bucket);
             CREATE TABLE peer_cursors(
                peer TEXT PRIMARY KEY,
                epoch TEXT,
                push_acked INTEGER NOT NULL DEFAULT 0,
                pull_cursor INTEGER NOT NULL DEFAULT 0,
                last_sync_ms INTEGER,
                skew_ms INTEGER);
             CREATE TABLE incarnation(
                actor_id BLOB PRIMARY KEY,
                center TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL);
             CREATE TABLE refused_changes(
                hash BLOB PRIMARY KEY,
                doc_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                at_ms INTEGER NOT NULL);
             INSERT INTO sync_schema(version) VALUES (1);";

/// Create or upgrade this module's tables (call inside the caller's migration
/// transaction; idempotent).
pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS sync_schema(version INTEGER NOT NULL);")?;
    let found: Option<i64> = conn
        .query_row("SELECT max(version) FROM sync_schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            ours: SCHEMA_VERSION,
        });
    }
    if found < 1 {
        conn.execute_batch(SCHEMA_V1)?;
    }
    if found < 2 {
        // Lanes. Existing rows stay in the essential lane (they were pushed after the one
        // cursor already); bulk repair is as current as the repair of everything else.
        conn.execute_batch(
            "ALTER TABLE changes ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
             CREATE INDEX changes_lane ON changes(local, lane, seq);
             ALTER TABLE peer_cursors ADD COLUMN bulk_acked INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE peer_cursors ADD COLUMN bulk_epoch TEXT;
             UPDATE peer_cursors SET bulk_epoch = epoch;
             INSERT INTO sync_schema(version) VALUES (2);",
        )?;
    }
    Ok(())
}
