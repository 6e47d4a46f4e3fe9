//! When a session is alive: an absolute lifetime from login and an idle timeout since
//! it was last used. Both servers store a session as (token hash, who, created, last
//! seen) and ask [`SessionPolicy::alive`]; the rule lives here once.

/// Session lifetimes (node: config `[auth]`; hub: its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Longest life of a session from login, in milliseconds.
    pub ttl_ms: i64,
    /// A session unused for this long ends, in milliseconds.
    pub idle_ms: i64,
}

impl Default for SessionPolicy {
    /// Twelve hours, idle for thirty minutes.
    fn default() -> Self {
        SessionPolicy {
            ttl_ms: 12 * 3_600_000,
            idle_ms: 30 * 60_000,
        }
    }
}

impl SessionPolicy {
    /// Whether a session created at `created_ms` and last used at `last_seen_ms` is
    /// still alive at `now_ms`. A clock that went back before the session began ends it
    /// too: a session never outlives a clock correction.
    pub fn alive(&self, created_ms: i64, last_seen_ms: i64, now_ms: i64) -> bool {
        now_ms >= created_ms
            && now_ms - created_ms < self.ttl_ms
            && now_ms - last_seen_ms < self.idle_ms
    }

    /// Refresh the stored "last seen" at most this often, so reads are not each a write.
    pub fn touch_every_ms(&self) -> i64 {
        (self.idle_ms / 30).clamp(1_000, 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_and_idle_timeout() {
        let p = SessionPolicy {
            ttl_ms: 1000,
            idle_ms: 100,
        };
        assert!(p.alive(0, 0, 50));
        assert!(!p.alive(0, 0, 100), "idle");
        assert!(p.alive(0, 950, 999));
        assert!(!p.alive(0, 999, 1000), "absolute");
        assert!(!p.alive(500, 500, 400), "clock went back");
    }
}
