//! A center's local changes as they are pushed: per lane, after the acknowledged sequence,
//! bounded in bytes; the backlog of what is not acknowledged yet.

use rusqlite::{Connection, params};

use super::{Lane, Result, WireChange, peer_cursor};

/// Highest change sequence in this database (0 when empty).
pub fn max_seq(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get::<_, i64>(0)
        })?
        .max(0) as u64)
}

/// Highest sequence of a local change in `lane` (0 when none).
pub fn max_lane_seq(conn: &Connection, lane: Lane) -> Result<u64> {
    Ok(conn
        .query_row(
            "SELECT coalesce(max(seq), 0) FROM changes WHERE local=1 AND lane=?1",
            [lane.as_i64()],
            |r| r.get::<_, i64>(0),
        )?
        .max(0) as u64)
}

/// Local changes of every lane after `after_seq`, in order, until `max_bytes` of change
/// bytes (at least one change if any). Returns (seq, change) pairs.
pub fn local_changes_after(
    conn: &Connection,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    changes_after(conn, None, after_seq, max_bytes)
}

/// Local changes of `lane` after `after_seq`, in order, until `max_bytes` of change bytes
/// (at least one change if any). Returns (seq, change) pairs.
pub fn lane_changes_after(
    conn: &Connection,
    lane: Lane,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    changes_after(conn, Some(lane), after_seq, max_bytes)
}

/// Local changes of `lane` not yet acknowledged by `peer`: (documents, changes).
pub fn lane_backlog(conn: &Connection, peer: &str, lane: Lane) -> Result<(u64, u64)> {
    let after = peer_cursor(conn, peer)?.acked(lane);
    Ok(conn.query_row(
        "SELECT count(DISTINCT doc_id), count(*) FROM changes WHERE local=1 AND lane=?1 AND seq>?2",
        params![lane.as_i64(), after as i64],
        |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        },
    )?)
}

fn changes_after(
    conn: &Connection,
    lane: Option<Lane>,
    after_seq: u64,
    max_bytes: usize,
) -> Result<Vec<(u64, WireChange)>> {
    let mut stmt;
    let mut rows = match lane {
        None => {
            stmt = conn.prepare_cached(
                "SELECT seq, doc_id, bytes FROM changes WHERE local=1 AND seq>?1
                 ORDER BY seq LIMIT 10000",
            )?;
            stmt.query([after_seq as i64])?
        }
        Some(lane) => {
            stmt = conn.prepare_cached(
                "SELECT seq, doc_id, bytes FROM changes WHERE local=1 AND lane=?2 AND seq>?1
                 ORDER BY seq LIMIT 10000",
            )?;
            stmt.query(params![after_seq as i64, lane.as_i64()])?
        }
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(2)?;
        if !out.is_empty() && total + bytes.len() > max_bytes {
            break;
        }
        total += bytes.len();
        let doc: String = r.get(1)?;
        out.push((
            r.get::<_, i64>(0)? as u64,
            WireChange {
                doc_id: doc.parse()?,
                bytes,
            },
        ));
    }
    Ok(out)
}
