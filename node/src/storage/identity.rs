//! Whether the database file is the one this node last opened, or a copy of it (a backup
//! put back, a data directory copied from another disk).
//!
//! A copy may be older than what the hub already holds of the center, and while the hub
//! is unreachable nothing else can tell: numbering in the main series from a copy could
//! hand out again a number the lost original gave a citizen. So the database records the
//! identity of its own file (inode and birth time) in `db_file`; when the file it is opened
//! from has another identity, the database is a copy, and it becomes a new incarnation
//! (new actor id, numbers unconfirmed until a sync of the copy with the hub: letter
//! series, see `app::numbering`). A false alarm (the file moved to a new disk by hand)
//! costs a letter series until the next sync; a missed copy would cost reused numbers.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

/// The identity of the file at `path`: its inode and, where the file system keeps one,
/// its birth time (an inode number alone is reused by a file made after a delete).
pub fn file_identity(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(|| "-".to_string(), |d| d.as_nanos().to_string());
    Ok(format!("{}:{born}", m.ino()))
}

/// What opening the file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// The file this database was last opened from (or a database that never recorded
    /// one: new, or made before this check; its identity is recorded now).
    Same,
    /// Another file than the one this database recorded: a copy.
    Copy { recorded: String, found: String },
}

/// Compares the recorded identity with `found` and records `found`.
pub fn check(conn: &Connection, found: &str) -> rusqlite::Result<FileCheck> {
    let recorded: Option<String> = conn
        .query_row("SELECT identity FROM db_file WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    conn.execute(
        "INSERT INTO db_file(id, identity) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET identity = excluded.identity",
        [found],
    )?;
    Ok(match recorded {
        Some(r) if r != found => FileCheck::Copy {
            recorded: r,
            found: found.to_string(),
        },
        _ => FileCheck::Same,
    })
}
