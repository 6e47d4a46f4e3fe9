//! The actor id of each database incarnation (never reused after a restore).

use automerge::ActorId;
use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// The actor id of this database incarnation: created on first use as the center id's
/// bytes, `/`, and 16 random bytes, and recorded. A restored or replaced database that has
/// no row mints a new one, so its changes never reuse an (actor, seq) pair.
pub fn incarnation(conn: &Connection, center: &str, now_ms: i64) -> Result<ActorId> {
    let existing: Option<Vec<u8>> = conn
        .query_row(
            "SELECT actor_id FROM incarnation ORDER BY created_at_ms DESC, rowid DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(a) = existing {
        return Ok(ActorId::from(a));
    }
    new_incarnation(conn, center, now_ms)
}

/// Whether `actor` is one of this database's own incarnations.
pub fn is_own_actor(conn: &Connection, actor: &[u8]) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM incarnation WHERE actor_id=?1",
            [actor],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Record and return a fresh actor id (call when the database was restored from a copy).
pub fn new_incarnation(conn: &Connection, center: &str, now_ms: i64) -> Result<ActorId> {
    let mut bytes = center.as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(&rand::random::<[u8; 16]>());
    conn.execute(
        "INSERT INTO incarnation(actor_id, center, created_at_ms) VALUES (?1, ?2, ?3)",
        params![bytes, center, now_ms],
    )?;
    // A new incarnation knows nothing the hub acknowledged to the old one: forget the
    // hub's epoch so the next session repairs.
    conn.execute(
        "UPDATE peer_cursors SET epoch=NULL, push_acked=0, bulk_epoch=NULL, bulk_acked=0",
        [],
    )?;
    Ok(ActorId::from(bytes))
}
