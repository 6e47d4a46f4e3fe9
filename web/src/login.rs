//! The login limit. Failures are counted per (username, client address): a wrong
//! password from one address slows down only that address's attempts at that name, so
//! an attacker on the LAN cannot keep the real user out from another machine. After a
//! few free attempts each further failure doubles the wait before the next attempt,
//! up to a ceiling; there is no hard lock. A success clears the count of its pair.
//!
//! Pure: the servers store the counts (`count`, `last failure`) and ask
//! [`LoginPolicy::wait_ms`] before checking a password.

/// Failures recorded for one (username, address) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// Failed attempts since the last success (or since they were forgotten).
    pub count: u32,
    /// When the last one happened (ms since the epoch).
    pub last_ms: i64,
}

/// How many attempts are free, how the wait grows, when failures are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failures allowed before any wait.
    pub free_attempts: u32,
    /// The wait after the first failure beyond the free ones; it doubles with each one.
    pub first_delay_ms: i64,
    /// The longest wait.
    pub max_delay_ms: i64,
    /// Failures this old are forgotten.
    pub forget_after_ms: i64,
}

impl Default for LoginPolicy {
    /// Five free attempts, then 2 s, 4 s, 8 s, … up to 5 minutes; forgotten after a day.
    fn default() -> Self {
        LoginPolicy {
            free_attempts: 5,
            first_delay_ms: 2_000,
            max_delay_ms: 300_000,
            forget_after_ms: 86_400_000,
        }
    }
}

impl LoginPolicy {
    /// `None` when an attempt may be made now; otherwise how long to wait (ms, ≥ 1).
    pub fn wait_ms(&self, f: Failures, now_ms: i64) -> Option<i64> {
        if f.count < self.free_attempts || now_ms - f.last_ms >= self.forget_after_ms {
            return None;
        }
        let extra = (f.count - self.free_attempts).min(40);
        let delay = self
            .first_delay_ms
            .saturating_mul(1i64 << extra.min(30))
            .min(self.max_delay_ms);
        let wait = f.last_ms + delay - now_ms;
        (wait > 0).then_some(wait)
    }

    /// The count after one more failure at `now_ms` (old failures forgotten first).
    pub fn after_failure(&self, f: Failures, now_ms: i64) -> Failures {
        let count = if now_ms - f.last_ms >= self.forget_after_ms {
            1
        } else {
            f.count.saturating_add(1)
        };
        Failures {
            count,
            last_ms: now_ms,
        }
    }
}

/// Whole seconds to announce in `Retry-After` for a wait of `ms`.
pub fn retry_after_secs(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_attempts_then_a_doubling_wait_with_a_ceiling() {
        let p = LoginPolicy::default();
        let mut f = Failures::default();
        for i in 0..5 {
            assert_eq!(p.wait_ms(f, i), None, "attempt {i} is free");
            f = p.after_failure(f, i);
        }
        // Five failures at t=4: the sixth attempt waits 2 s, then 4 s, 8 s…
        assert_eq!(p.wait_ms(f, 4), Some(2_000));
        assert_eq!(p.wait_ms(f, 2_004), None);
        f = p.after_failure(f, 2_004);
        assert_eq!(p.wait_ms(f, 2_004), Some(4_000));
        for _ in 0..50 {
            f = p.after_failure(f, 10_000);
        }
        assert_eq!(p.wait_ms(f, 10_000), Some(300_000), "capped");
        assert_eq!(p.wait_ms(f, 10_000 + 86_400_000), None, "forgotten");
        assert_eq!(p.after_failure(f, 10_000 + 86_400_000).count, 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(2_001), 3);
    }
}
