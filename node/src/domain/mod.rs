//! Center-local domain logic (pure: no IO, no SQL, no axum): the turn system's rules and
//! the per-center numbering of receipts and cases. The shared value types (ids, catalog,
//! fees, cases, staff) live in `markaz_sync::model`.

pub mod queue;
pub mod receipts;
pub mod wait;
