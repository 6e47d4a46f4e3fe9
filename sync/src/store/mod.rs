//! SQLite storage of documents as changes plus compacted snapshots, and [`DocStore`].
//!
//! Every change a database ever holds is a row of `changes` (its `raw_bytes()`, stored
//! once, shipped as is); `snapshots` are only a cache that makes loading fast. Node and
//! hub call [`migrate`] inside their own migration transaction and every `DocStore`
//! method inside their own write transaction, so a document's new changes, its
//! projection and a sync cursor commit together.
//!
//! Guarantees: a change is stored once (unique hash); a remote batch never wedges (changes
//! are applied one by one, known hashes skipped, rejects reported); a document in the LRU is
//! checked against the last stored change before use, so a rolled-back transaction never
//! leaves a stale document in memory; each database incarnation mints a fresh actor id.
//!
//! Lanes: every local change is minted into a [`Lane`] fixed by its document's kind —
//! [`Lane::Bulk`] for a center's daily statistics and energy summaries, [`Lane::Essential`]
//! for everything else — and recorded in `changes.lane`. Each lane is pushed after its own
//! contiguous cursor (`peer_cursors.push_acked` / `bulk_acked`), so bulk changes can wait
//! for the primary link without holding back essential ones. Rows stored before lanes
//! existed (schema 1) stay in the essential lane, where they were already being pushed.

use thiserror::Error;

use crate::docs::DocError;

mod apply;
mod cursor;
mod docstore;
mod incarnation;
mod lane;
mod local;
mod repair;
mod rows;
mod schema;
#[cfg(test)]
pub(crate) mod tests;

pub use cursor::{PeerCursor, peer_cursor, set_peer_cursor};
pub use docstore::{ApplyReport, DocStore, StoredChange, SyncReceive, WireChange};
pub use incarnation::{incarnation, is_own_actor, new_incarnation};
pub use lane::Lane;
pub use local::{lane_backlog, lane_changes_after, local_changes_after, max_lane_seq, max_seq};
pub use repair::{
    BUCKETS, bucket_hashes, bucket_of, decode_heads, docs_in_buckets, encode_heads,
    local_bucket_hashes,
};
pub use rows::{ChangeRow, DocMeta, DocRows, StoredDoc, owner_column};
pub use schema::{SCHEMA_VERSION, migrate};

/// Storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// An error of another database engine (the hub's PostgreSQL).
    #[error("database: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("document {0} does not exist")]
    NoSuchDoc(String),
    #[error("document {0} already exists")]
    Exists(String),
    #[error("database schema version {found} is newer than this program's {ours}")]
    SchemaTooNew { found: i64, ours: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;
