//! A hub restored from a backup. Centers may have seen more of the hub than its database
//! now holds: an actor's sequence numbers, feed positions, an epoch. This module decides,
//! sans-IO, when what a center reports proves it ([`at_hello`], [`at_pull`]), and is the
//! recovery itself ([`after_restore`]) — run explicitly by `markaz hub restore`, and by
//! the relay on its own when a center shows a [`RestoreSign`].
//!
//! Feed positions are never reused: every hub start and every restore moves all feeds
//! beyond anything handed out so far ([`start_feeds`]: a recorded *floor*, at least the
//! wall clock in microseconds), so the positions a process hands out lie above its floor
//! and below the next process's. A cursor a center reports is therefore 0, a position of
//! its feed or a floor — or proof that a hub this database does not remember handed it
//! out ([`RestoreSign::UnknownCursor`]).
//!
//! Guarantees after [`after_restore`], over any engine's [`HubTables`]:
//! - a new epoch, recorded among the epochs this database has had: every center repairs
//!   at its next session (a full re-offer: the heads of every document routed to it are
//!   compared, and the documents that differ are synced both ways), then continues from
//!   the hub's feed length;
//! - a new actor id for the hub's own edits, so the hub never mints an (actor, seq) the
//!   lost hub may have used after the backup;
//! - every center's feed continues beyond any position the lost hub may have handed out,
//!   so a center that pulls with an old cursor still gets every entry made after the
//!   restore.

use std::fmt;

use super::HubError;
use super::relay::HubTables;

/// The gap left after the highest feed position the restored database holds: more than
/// any center's feed grows between a backup and the loss of the hub.
pub const FEED_GAP: u64 = 1 << 32;

/// What shows that the hub's database is older than what a center has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreSign {
    /// The center has seen an epoch this database never had (a later one of the lost hub).
    UnknownEpoch { seen: String },
    /// The center's pull cursor is a position this database never handed to it.
    UnknownCursor { cursor: u64 },
}

impl fmt::Display for RestoreSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreSign::UnknownEpoch { seen } => {
                write!(
                    f,
                    "the center has seen hub epoch {seen}, unknown to this database"
                )
            }
            RestoreSign::UnknownCursor { cursor } => write!(
                f,
                "the center has read its feed up to {cursor}, a position this database never \
                 handed to it"
            ),
        }
    }
}

/// A Hello: `epoch_seen` is the center's stored hub epoch, `epoch_known` whether this
/// database ever had it, `done_at` the center's pull cursor (sent when it is idle), and
/// `handed_out` answers whether a position is one this database gave the center (see
/// [`at_pull`]).
pub fn at_hello<E>(
    hub_epoch: &str,
    epoch_seen: Option<&str>,
    epoch_known: bool,
    done_at: Option<u64>,
    handed_out: impl FnOnce(u64) -> Result<bool, E>,
) -> Result<Option<RestoreSign>, E> {
    match (epoch_seen, done_at) {
        (None, _) => Ok(None),
        (Some(seen), _) if seen != hub_epoch && !epoch_known => {
            Ok(Some(RestoreSign::UnknownEpoch {
                seen: seen.to_string(),
            }))
        }
        // A cursor is a position in the feed of the epoch the center has; only the
        // current epoch's can be checked against this database.
        (Some(seen), Some(cursor)) if seen == hub_epoch => at_pull(cursor, handed_out),
        _ => Ok(None),
    }
}

/// A Pull from `cursor` (always a position of the current epoch's feed: a center with
/// another epoch repairs, and takes the Welcome's feed length, before it pulls). A
/// cursor the hub handed out is 0, a position of the center's feed, or a feed floor (where
/// a pull that reached the end of the feed leaves it); anything else was handed out by a
/// hub whose database this one does not hold.
pub fn at_pull<E>(
    cursor: u64,
    handed_out: impl FnOnce(u64) -> Result<bool, E>,
) -> Result<Option<RestoreSign>, E> {
    if cursor == 0 || handed_out(cursor)? {
        return Ok(None);
    }
    Ok(Some(RestoreSign::UnknownCursor { cursor }))
}

/// The position every feed continues after, following a restore at `now_ms`: beyond the
/// highest position held (`top`, floor included) by [`FEED_GAP`], and at least the wall
/// clock in microseconds — so a second restore from the same backup still moves past
/// what the first restored hub handed out (a feed grows by less than one entry per
/// microsecond). Never below `top`.
pub fn next_floor(top: u64, now_ms: u64) -> u64 {
    top.saturating_add(FEED_GAP)
        .max(now_ms.saturating_mul(1000))
}

/// A fresh random epoch id.
pub fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// What [`after_restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub epoch: String,
    /// The hub's new actor id (bytes): give it to the hub's document store.
    pub actor: Vec<u8>,
    /// Every center's feed continues after this position.
    pub feed_floor: u64,
}

/// The after-restore step, inside the caller's transaction: a new epoch (remembered), a
/// new actor id for the hub, and the feed floor raised beyond anything handed out (see
/// the module docs). The caller hands [`Restored::actor`] to its document store.
pub fn after_restore(tables: &dyn HubTables, now_ms: u64) -> Result<Restored, HubError> {
    let epoch = new_epoch();
    tables.remember_epoch(&epoch)?;
    tables.set_epoch(&epoch)?;
    let actor = tables.new_actor(now_ms)?;
    let feed_floor = start_feeds(tables, now_ms)?;
    Ok(Restored {
        epoch,
        actor,
        feed_floor,
    })
}

/// Move every feed beyond anything handed out so far ([`next_floor`]) and record the new
/// floor; returns it. A hub process does this when it starts (with one writer, before
/// it serves), so a database put back from a backup without `markaz hub restore` never
/// hands out a position the lost hub used, and a center's cursor from the lost hub is
/// recognised as one this database never handed out ([`at_pull`]).
pub fn start_feeds(tables: &dyn HubTables, now_ms: u64) -> Result<u64, HubError> {
    let mut top = tables.feed_floor()?;
    for c in tables.centers()? {
        top = top.max(tables.feed_len(&c)?);
    }
    let floor = next_floor(top, now_ms);
    tables.raise_feed_floor(floor)?;
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<Option<RestoreSign>, ()>;

    /// This database handed out positions 0..=10 and the floor 100.
    fn ours(p: u64) -> Result<bool, ()> {
        Ok(p <= 10 || p == 100)
    }

    #[test]
    fn a_hello_with_the_current_epoch_and_a_cursor_handed_out_is_no_sign() {
        let none: R = Ok(None);
        assert_eq!(at_hello("e1", Some("e1"), true, Some(10), ours), none);
        assert_eq!(at_hello("e1", Some("e1"), true, Some(100), ours), none);
        assert_eq!(at_hello("e1", Some("e1"), true, Some(0), ours), none);
        assert_eq!(at_hello("e1", Some("e1"), true, None, ours), none);
    }

    #[test]
    fn a_new_center_or_a_replaced_database_is_no_sign() {
        // No epoch stored: a first contact or a new incarnation; it repairs anyway.
        assert_eq!(at_hello("e1", None, false, None, ours), Ok(None));
        assert_eq!(at_hello("e1", None, false, Some(55), ours), Ok(None));
    }

    #[test]
    fn an_earlier_epoch_of_this_database_is_no_sign() {
        // The hub was restored with `markaz hub restore` since: the center repairs, and
        // its cursor belongs to the old epoch's feed, so it is not checked.
        assert_eq!(at_hello("e2", Some("e1"), true, Some(55), ours), Ok(None));
    }

    #[test]
    fn an_epoch_this_database_never_had_is_a_sign() {
        assert_eq!(
            at_hello("e1", Some("e9"), false, None, ours),
            Ok(Some(RestoreSign::UnknownEpoch { seen: "e9".into() }))
        );
    }

    #[test]
    fn an_idle_cursor_never_handed_out_is_a_sign() {
        // Beyond the feed, and inside the gap before a floor.
        for cursor in [11, 55, 101] {
            assert_eq!(
                at_hello("e1", Some("e1"), true, Some(cursor), ours),
                Ok(Some(RestoreSign::UnknownCursor { cursor }))
            );
        }
    }

    #[test]
    fn a_pull_from_a_cursor_never_handed_out_is_a_sign() {
        assert_eq!(at_pull(10, ours), Ok(None));
        assert_eq!(at_pull(0, |_| Err(())), Ok(None), "0 is every feed's start");
        assert_eq!(
            at_pull(12, ours),
            Ok(Some(RestoreSign::UnknownCursor { cursor: 12 }))
        );
        assert_eq!(at_pull(12, |_| Err::<bool, _>("db")), Err("db"));
    }

    #[test]
    fn the_floor_moves_past_the_gap_and_the_clock_and_never_back() {
        let now_ms = 1_780_000_000_000;
        assert_eq!(next_floor(5, now_ms), now_ms * 1000);
        let big = now_ms * 1000 + 7;
        assert_eq!(next_floor(big, now_ms), big + FEED_GAP);
        // A hub clock back in 1970 still moves past everything held.
        assert_eq!(next_floor(40, 0), 40 + FEED_GAP);
        // Two restores from one backup, a second apart: the second floor is beyond
        // anything the first restored hub could hand out in that second.
        let first = next_floor(100, now_ms);
        let second = next_floor(100, now_ms + 1000);
        assert!(second >= first + 1_000_000);
    }
}
