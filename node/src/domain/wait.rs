//! The estimated wait printed on a kiosk ticket and shown on its public status page
//! (issue #15.7): the people ahead in the ticket's group times the median service time
//! of the group's recent tickets, shared among the counters that served them.
//!
//! Guarantees: no estimate ([`WaitEstimate::Unknown`]) until a ticket of the group was
//! served today — a number made up from nothing would be a promise the center cannot
//! keep; the median, not the mean, so one long case does not double everybody's wait;
//! a wait of a few seconds still reads as one minute, never zero, while people are ahead.

/// How many of the group's latest served tickets the estimate looks at.
pub const RECENT_SERVED: usize = 20;

/// One served ticket of the group: how long its service took and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// From the call to the end of service, ms.
    pub service_ms: i64,
    pub counter: Option<u32>,
}

/// What a ticket says about the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEstimate {
    /// Nobody ahead: the next call is this ticket's.
    Next,
    /// About this many minutes (at least 1).
    Minutes(u32),
    /// People are ahead but nothing was served in this group yet today.
    Unknown,
}

/// The median of some durations (the lower middle of an even count); `None` if empty.
pub fn median_ms(durations: &[i64]) -> Option<i64> {
    let mut v: Vec<i64> = durations.iter().map(|d| (*d).max(0)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// The wait of a ticket with `ahead` people before it, from the group's recent services
/// (newest first; only the first [`RECENT_SERVED`] count).
pub fn estimate(ahead: u32, recent: &[Served]) -> WaitEstimate {
    if ahead == 0 {
        return WaitEstimate::Next;
    }
    let recent = &recent[..recent.len().min(RECENT_SERVED)];
    let durations: Vec<i64> = recent.iter().map(|s| s.service_ms).collect();
    let Some(median) = median_ms(&durations) else {
        return WaitEstimate::Unknown;
    };
    let mut counters: Vec<u32> = recent.iter().filter_map(|s| s.counter).collect();
    counters.sort_unstable();
    counters.dedup();
    let parallel = counters.len().max(1) as i64;
    let total_ms = i64::from(ahead).saturating_mul(median) / parallel;
    let minutes = (total_ms + 59_999) / 60_000;
    WaitEstimate::Minutes(minutes.clamp(1, i64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(counter: u32, minutes: i64) -> Served {
        Served {
            service_ms: minutes * 60_000,
            counter: Some(counter),
        }
    }

    #[test]
    fn median_is_robust_to_one_long_case() {
        assert_eq!(median_ms(&[]), None);
        assert_eq!(median_ms(&[5]), Some(5));
        assert_eq!(median_ms(&[4, 1, 100]), Some(4));
        assert_eq!(median_ms(&[1, 2, 3, 4]), Some(2));
        assert_eq!(median_ms(&[-5, 3]), Some(0), "a clock step counts as zero");
    }

    #[test]
    fn people_ahead_times_the_median_shared_by_the_counters() {
        // Nobody ahead: next, whatever is known.
        assert_eq!(estimate(0, &[]), WaitEstimate::Next);
        // People ahead and nothing served yet: unknown, not zero.
        assert_eq!(estimate(3, &[]), WaitEstimate::Unknown);
        // One counter, 4-minute services (one 60-minute case does not count): 3 × 4.
        let one = [at(1, 4), at(1, 60), at(1, 4), at(1, 3), at(1, 5)];
        assert_eq!(estimate(3, &one), WaitEstimate::Minutes(12));
        // Two counters serve the group: half of it.
        let two = [at(1, 4), at(2, 4), at(1, 4)];
        assert_eq!(estimate(3, &two), WaitEstimate::Minutes(6));
        // Seconds round up to a minute while someone is ahead.
        let quick = [Served {
            service_ms: 5_000,
            counter: Some(1),
        }];
        assert_eq!(estimate(1, &quick), WaitEstimate::Minutes(1));
        // Only the latest RECENT_SERVED count: old slow services are forgotten.
        let mut long = vec![at(1, 2); RECENT_SERVED];
        long.extend(vec![at(1, 30); 40]);
        assert_eq!(estimate(2, &long), WaitEstimate::Minutes(4));
    }
}
