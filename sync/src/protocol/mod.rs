//! The sync protocol between a center and the hub, both sides sans-IO.
//!
//! The center's [`client::ClientSession`] says which request to send next and takes the
//! responses; the hub's [`server::handle_request`] answers one request against a
//! [`server::HubStore`] — in the hub, [`relay::Relay`] over an engine's
//! [`relay::HubTables`] (SQLite: [`sqlite_hub`]). Neither side touches a socket or a
//! timer: node and hub carry the bytes over HTTPS (mutual TLS) and run each step inside
//! one database transaction.
//!
//! The common path is log shipping: Push (center → hub, after the hub's ack) and Pull (the
//! center's feed, after its cursor). Repair (bucketed heads, then automerge sync messages
//! for the documents that differ) runs when the hub's epoch is new to the center — hub
//! restored from backup, or the center's database replaced. See `docs/PROTOCOL.md`.

pub mod client;
pub mod contract;
pub mod message;
mod pack;
pub mod relay;
pub mod restore;
pub mod server;
pub mod sqlite_hub;

#[cfg(test)]
mod tests;

pub use client::{ClientError, ClientSession, Limits, Reply, SessionReport, decode_reply};
pub use contract::{
    ErrorCode, RequestKind, SESSION_HEADER, SYNC_PATH, SessionResult, UPLINK_HEADER, Uplink,
};
pub use message::{MessageError, PROTOCOL_VERSION, PushForm, Refusal, Request, Response};
pub use relay::{FeedEntry, FeedRow, HubTables, Relay, SNAPSHOT_MIN_CHANGES};
pub use restore::{RestoreSign, Restored, after_restore, new_epoch};
pub use server::{HubStore, RequestLog, SyncAnswer, handle_decoded, handle_request};
pub use sqlite_hub::{SqliteHub, migrate_hub};

use crate::docs::{DocId, DocKind, Owner};
use crate::model::ids::CenterId;
use crate::store::WireChange;

/// Errors of a hub store (boxed so another engine can bring its own).
pub type HubError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What storing a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Highest center sequence now durably stored (refused changes are acked too, so a
    /// refusal never wedges the center's push).
    pub acked: u64,
    pub refused: Vec<Refusal>,
}

/// A slice of a center's feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedBatch {
    pub changes: Vec<WireChange>,
    /// Whole-document snapshots (`save()`), for documents that newly entered the scope.
    pub snapshots: Vec<WireChange>,
    pub next_cursor: u64,
    pub more: bool,
}

/// Whether `center` may write `doc` (`routed`: the document is routed to it). A center
/// writes its own cases, statistics and energy, citizen profiles (shared by national id),
/// cases routed to it, and its own staff (only the fields it owns, checked per change
/// by the relay); never the catalog, fees, another center's staff or cases.
pub fn may_write(center: &CenterId, doc: &DocId, routed: bool) -> Result<(), String> {
    match (doc.kind(), doc.owner()) {
        (DocKind::Catalog, _) => Err("the catalog and fees are written at the hub".into()),
        // Its own staff: which fields it may write is checked per change
        // (`docs::check_center_staff_change`).
        (DocKind::Staff, Owner::Center(c)) if &c == center => Ok(()),
        (DocKind::Staff, _) => Err("another center's staff".into()),
        (DocKind::Citizen, _) => Ok(()),
        (DocKind::Case, Owner::Center(c)) if &c == center => Ok(()),
        (DocKind::Case, _) if routed => Ok(()),
        (DocKind::Case, _) => Err("a case of another center".into()),
        (DocKind::Stats | DocKind::Energy, Owner::Center(c)) if &c == center => Ok(()),
        (DocKind::Stats | DocKind::Energy, _) => Err("another center's figures".into()),
    }
}
