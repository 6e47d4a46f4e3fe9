//! A sync peer's cursors: what the peer acknowledged, where the pull stands, the epochs
//! repaired against.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Lane, Result};

/// A sync peer's cursors as stored (`peer` is `hub` at a center).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCursor {
    /// The peer's epoch the essential documents were last repaired against.
    pub epoch: Option<String>,
    /// Essential lane: every local change up to this sequence is acknowledged.
    pub push_acked: u64,
    pub pull_cursor: u64,
    pub last_sync_ms: Option<i64>,
    pub skew_ms: Option<i64>,
    /// Bulk lane: every local bulk change up to this sequence is acknowledged.
    pub bulk_acked: u64,
    /// The peer's epoch the bulk documents were last repaired against (lags `epoch` while
    /// sessions are metered).
    pub bulk_epoch: Option<String>,
}

impl PeerCursor {
    /// The acknowledged sequence of a lane.
    pub fn acked(&self, lane: Lane) -> u64 {
        match lane {
            Lane::Essential => self.push_acked,
            Lane::Bulk => self.bulk_acked,
        }
    }

    /// Set the acknowledged sequence of a lane.
    pub fn set_acked(&mut self, lane: Lane, acked: u64) {
        match lane {
            Lane::Essential => self.push_acked = acked,
            Lane::Bulk => self.bulk_acked = acked,
        }
    }
}

/// Read a peer's cursors (defaults when never synced).
pub fn peer_cursor(conn: &Connection, peer: &str) -> Result<PeerCursor> {
    Ok(conn
        .query_row(
            "SELECT epoch, push_acked, pull_cursor, last_sync_ms, skew_ms, bulk_acked, bulk_epoch
             FROM peer_cursors WHERE peer=?1",
            [peer],
            |r| {
                Ok(PeerCursor {
                    epoch: r.get(0)?,
                    push_acked: r.get::<_, i64>(1)?.max(0) as u64,
                    pull_cursor: r.get::<_, i64>(2)?.max(0) as u64,
                    last_sync_ms: r.get(3)?,
                    skew_ms: r.get(4)?,
                    bulk_acked: r.get::<_, i64>(5)?.max(0) as u64,
                    bulk_epoch: r.get(6)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Write a peer's cursors.
pub fn set_peer_cursor(conn: &Connection, peer: &str, c: &PeerCursor) -> Result<()> {
    conn.execute(
        "INSERT INTO peer_cursors(peer, epoch, push_acked, pull_cursor, last_sync_ms, skew_ms,
            bulk_acked, bulk_epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(peer) DO UPDATE SET epoch=?2, push_acked=?3, pull_cursor=?4,
            last_sync_ms=?5, skew_ms=?6, bulk_acked=?7, bulk_epoch=?8",
        params![
            peer,
            c.epoch,
            c.push_acked as i64,
            c.pull_cursor as i64,
            c.last_sync_ms,
            c.skew_ms,
            c.bulk_acked as i64,
            c.bulk_epoch
        ],
    )?;
    Ok(())
}
