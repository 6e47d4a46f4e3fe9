//! Lanes: the essential and the bulk lane a center's local changes are pushed in.

use crate::docs::DocId;

/// The lane a local change travels in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Cases, citizens, and everything else a center writes: moves on any uplink.
    Essential,
    /// A center's daily statistics and energy summaries: wait for the primary link when
    /// the session is metered.
    Bulk,
}

impl Lane {
    /// Both lanes, in push order.
    pub const ALL: [Lane; 2] = [Lane::Essential, Lane::Bulk];

    /// The lane of a document's local changes.
    pub fn of(doc: &DocId) -> Lane {
        match doc.kind() {
            crate::docs::DocKind::Stats | crate::docs::DocKind::Energy => Lane::Bulk,
            _ => Lane::Essential,
        }
    }

    /// The value stored in `changes.lane`.
    pub fn as_i64(self) -> i64 {
        match self {
            Lane::Essential => 0,
            Lane::Bulk => 1,
        }
    }

    /// A short name for logs and panels.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Essential => "essential",
            Lane::Bulk => "bulk",
        }
    }

    /// The key under which the hub acknowledges this lane's pushes from an incarnation
    /// `actor` (the `actor` of a `push` request): the actor itself for the essential
    /// lane, the actor followed by `#bulk` for the bulk lane. The hub's per-(center,
    /// actor) acknowledgement then works per lane unchanged.
    pub fn ack_key(self, actor: &[u8]) -> Vec<u8> {
        let mut k = actor.to_vec();
        if self == Lane::Bulk {
            k.extend_from_slice(b"#bulk");
        }
        k
    }
}
