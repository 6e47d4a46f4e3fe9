//! Hybrid logical clock: wall milliseconds + a logical counter + the node that stamped it.
//!
//! Guarantees: stamps from one [`HlcClock`] strictly increase, even when the wall clock jumps
//! back (a box without an RTC battery wakes up in 1970); [`HlcClock::observe`] moves the clock
//! past any stamp it has seen; the text form ([`HlcStamp::encode`]) sorts in the same order as
//! the values, so it can be compared as a string in SQL and in case events. The clock is
//! pure: the caller passes the wall time in, and persists [`HlcClock::last`] to restart from.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Largest logical counter; past it the clock borrows one millisecond from the future.
pub const MAX_LOGICAL: u32 = 99_999;
/// Largest wall time the 13-digit text form holds (year 2286).
pub const MAX_WALL_MS: u64 = 9_999_999_999_999;
/// Longest node name in a stamp.
pub const MAX_NODE_LEN: usize = 64;

/// Why a stamp could not be read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HlcError {
    #[error("malformed clock stamp {0:?}: expected <13 digits>.<5 digits>.<node>")]
    Malformed(String),
    #[error("clock stamp {remote} is {ahead_ms} ms ahead of our wall clock (limit {limit_ms} ms)")]
    TooFarAhead {
        remote: String,
        ahead_ms: u64,
        limit_ms: u64,
    },
}

/// One clock stamp. Ordered by (wall, logical, node): a total order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HlcStamp {
    pub wall_ms: u64,
    pub logical: u32,
    pub node: String,
}

impl Ord for HlcStamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.logical, &self.node).cmp(&(other.wall_ms, other.logical, &other.node))
    }
}

impl PartialOrd for HlcStamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl HlcStamp {
    /// The zero stamp of a node (before anything happened).
    pub fn zero(node: &str) -> HlcStamp {
        HlcStamp {
            wall_ms: 0,
            logical: 0,
            node: node.to_string(),
        }
    }

    /// Fixed-width text `0001764400000000.00000.midan` whose byte order is the value order.
    pub fn encode(&self) -> String {
        format!("{:013}.{:05}.{}", self.wall_ms, self.logical, self.node)
    }

    /// Parse the text form; rejects anything not produced by [`HlcStamp::encode`].
    pub fn parse(s: &str) -> Result<HlcStamp, HlcError> {
        let bad = || HlcError::Malformed(s.chars().take(100).collect());
        let b = s.as_bytes();
        if b.len() < 13 + 1 + 5 + 1 + 1 || b.len() > 13 + 1 + 5 + 1 + MAX_NODE_LEN {
            return Err(bad());
        }
        if b[13] != b'.' || b[19] != b'.' {
            return Err(bad());
        }
        let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
        if !digits(&b[..13]) || !digits(&b[14..19]) {
            return Err(bad());
        }
        let node = &s[20..];
        if !node
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(bad());
        }
        let wall_ms = s[..13].parse().map_err(|_| bad())?;
        let logical = s[14..19].parse().map_err(|_| bad())?;
        Ok(HlcStamp {
            wall_ms,
            logical,
            node: node.to_string(),
        })
    }
}

impl fmt::Display for HlcStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for HlcStamp {
    type Err = HlcError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HlcStamp::parse(s)
    }
}

/// A node's clock. Restart it from the last persisted stamp with [`HlcClock::resume`].
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: HlcStamp,
    /// A remote stamp further ahead of our wall clock than this is refused by `observe`
    /// (a peer with a broken clock must not drag ours into the future).
    max_ahead_ms: u64,
}

impl HlcClock {
    /// A fresh clock for `node` (node names are ASCII letters, digits, `-` and `_`).
    pub fn new(node: &str) -> HlcClock {
        HlcClock::resume(HlcStamp::zero(node))
    }

    /// Continue after `last` (the highest stamp persisted by this node).
    pub fn resume(last: HlcStamp) -> HlcClock {
        HlcClock {
            last,
            max_ahead_ms: 7 * 24 * 3600 * 1000,
        }
    }

    /// Change how far ahead of our wall clock an observed stamp may be.
    pub fn with_max_ahead(mut self, ms: u64) -> HlcClock {
        self.max_ahead_ms = ms;
        self
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> &HlcStamp {
        &self.last
    }

    /// A new stamp for a local event at wall time `wall_now_ms`; strictly greater than
    /// every stamp before it, whatever the wall clock says.
    pub fn tick(&mut self, wall_now_ms: u64) -> HlcStamp {
        let wall = wall_now_ms.min(MAX_WALL_MS);
        if wall > self.last.wall_ms {
            self.last.wall_ms = wall;
            self.last.logical = 0;
        } else {
            self.bump();
        }
        self.last.clone()
    }

    /// Take a remote stamp into account (at our wall time `wall_now_ms`) and return a
    /// stamp greater than both it and everything before.
    pub fn observe(&mut self, remote: &HlcStamp, wall_now_ms: u64) -> Result<HlcStamp, HlcError> {
        let wall = wall_now_ms.min(MAX_WALL_MS);
        // Only refuse a far-future stamp when our own wall clock looks sane; a box that
        // woke up in 1970 must accept the hub's time.
        if wall > self.last.wall_ms && remote.wall_ms > wall.saturating_add(self.max_ahead_ms) {
            return Err(HlcError::TooFarAhead {
                remote: remote.encode(),
                ahead_ms: remote.wall_ms - wall,
                limit_ms: self.max_ahead_ms,
            });
        }
        let top = wall
            .max(self.last.wall_ms)
            .max(remote.wall_ms.min(MAX_WALL_MS));
        let logical = if top == self.last.wall_ms && top == remote.wall_ms {
            self.last.logical.max(remote.logical)
        } else if top == self.last.wall_ms {
            self.last.logical
        } else if top == remote.wall_ms {
            remote.logical
        } else {
            self.last.wall_ms = top;
            self.last.logical = 0;
            return Ok(self.last.clone());
        };
        self.last.wall_ms = top;
        self.last.logical = logical;
        self.bump();
        Ok(self.last.clone())
    }

    fn bump(&mut self) {
        if self.last.logical >= MAX_LOGICAL {
            self.last.wall_ms = (self.last.wall_ms + 1).min(MAX_WALL_MS);
            self.last.logical = 0;
        } else {
            self.last.logical += 1;
        }
    }
}

/// Estimated clock offset of a peer (positive: the peer is ahead), NTP style: we sent at
/// `sent_ms`, the peer stamped `peer_ms`, we received at `received_ms` (all wall ms).
pub fn skew_ms(sent_ms: u64, peer_ms: u64, received_ms: u64) -> i64 {
    let rtt = received_ms.saturating_sub(sent_ms) as i128;
    let midpoint = sent_ms as i128 + rtt / 2;
    (peer_ms as i128 - midpoint).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wall_clock_jump_back_to_1970_does_not_go_backwards() {
        let mut c = HlcClock::new("midan");
        let a = c.tick(1_764_400_000_000);
        let b = c.tick(5_000); // power cut, no RTC battery
        assert!(b > a);
        assert_eq!(b.wall_ms, a.wall_ms);
        let mut resumed = HlcClock::resume(b.clone());
        assert!(resumed.tick(0) > b);
    }

    #[test]
    fn observe_moves_past_remote_and_sorts_as_text() {
        let mut c = HlcClock::new("midan");
        c.tick(1_000);
        let remote = HlcStamp {
            wall_ms: 50_000,
            logical: 7,
            node: "hub".into(),
        };
        let o = c.observe(&remote, 2_000).unwrap();
        assert!(o > remote);
        assert!(o.encode() > remote.encode());
        assert_eq!(o.wall_ms, 50_000);
        assert_eq!(o.logical, 8);
    }

    #[test]
    fn far_future_stamp_refused_when_our_clock_is_sane() {
        let mut c = HlcClock::new("midan").with_max_ahead(1_000);
        c.tick(1_764_400_000_000);
        let remote = HlcStamp {
            wall_ms: 1_764_400_000_000 + 10_000_000,
            logical: 0,
            node: "hub".into(),
        };
        assert!(matches!(
            c.observe(&remote, 1_764_400_000_001),
            Err(HlcError::TooFarAhead { .. })
        ));
        // …but a box that woke in 1970 accepts the hub's time.
        let mut c = HlcClock::new("midan").with_max_ahead(1_000);
        assert!(c.observe(&remote, 0).is_ok());
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut c = HlcClock::resume(HlcStamp {
            wall_ms: 10,
            logical: MAX_LOGICAL,
            node: "a".into(),
        });
        let t = c.tick(10);
        assert_eq!((t.wall_ms, t.logical), (11, 0));
    }

    #[test]
    fn skew_estimate() {
        assert_eq!(skew_ms(1_000, 1_600, 1_200), 500);
        assert_eq!(skew_ms(1_000, 900, 1_200), -200);
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "1.2.3",
            "000000000000a.00000.x",
            "0000000000000.00000.",
            "0000000000000-00000.x",
        ] {
            assert!(HlcStamp::parse(s).is_err(), "{s}");
        }
    }

    fn arb_hlc() -> impl Strategy<Value = HlcStamp> {
        (0..=MAX_WALL_MS, 0..=MAX_LOGICAL, "[a-z][a-z0-9-]{0,10}").prop_map(
            |(wall_ms, logical, node)| HlcStamp {
                wall_ms,
                logical,
                node,
            },
        )
    }

    proptest! {
        #[test]
        fn text_order_is_value_order(a in arb_hlc(), b in arb_hlc()) {
            // Same-length node names keep the property exact; differing lengths only
            // matter when wall and logical are equal, where both orders still agree
            // because '.' never appears in a node name and names compare bytewise.
            prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
            prop_assert_eq!(HlcStamp::parse(&a.encode()).unwrap(), a);
        }

        #[test]
        fn stamps_strictly_increase(walls in proptest::collection::vec(0u64..3_000_000_000_000, 1..50),
                                    remotes in proptest::collection::vec(arb_hlc(), 0..20)) {
            let mut c = HlcClock::new("n").with_max_ahead(u64::MAX / 4);
            let mut prev = c.last().clone();
            let mut ri = remotes.into_iter();
            for (i, w) in walls.into_iter().enumerate() {
                let next = if i % 3 == 2 {
                    match ri.next() {
                        Some(r) => match c.observe(&r, w) {
                            Ok(s) => { prop_assert!(s > r || r.wall_ms >= MAX_WALL_MS); s }
                            Err(_) => continue,
                        },
                        None => c.tick(w),
                    }
                } else {
                    c.tick(w)
                };
                prop_assert!(next > prev || prev.wall_ms >= MAX_WALL_MS);
                prev = next;
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,100}") {
            let _ = HlcStamp::parse(&s);
        }
    }
}
