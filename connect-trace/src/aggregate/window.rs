//! Attempts and failures over sliding windows (10 s, 1 min, 5 min), in
//! fixed memory: one bucket per second for the longest window.

/// The longest window kept, in seconds.
pub const LONGEST_WINDOW_SECS: u64 = 300;

/// Attempts and failures in some span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Attempts counted.
    pub attempts: u64,
    /// Failed attempts among them.
    pub failures: u64,
}

impl Tally {
    /// failures / attempts; 0 when there were no attempts.
    pub fn failure_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.failures as f64 / self.attempts as f64
        }
    }

    fn add(&mut self, other: Self) {
        self.attempts += other.attempts;
        self.failures += other.failures;
    }
}

/// Per-second buckets over the last [`LONGEST_WINDOW_SECS`] seconds.
#[derive(Debug, Clone)]
pub struct RateWindows {
    buckets: Vec<(u64, Tally)>,
}

impl Default for RateWindows {
    fn default() -> Self {
        Self::new()
    }
}

impl RateWindows {
    /// Empty windows.
    pub fn new() -> Self {
        Self {
            buckets: vec![(u64::MAX, Tally::default()); LONGEST_WINDOW_SECS as usize],
        }
    }

    /// Counts one attempt at second `now_secs` (any monotonic clock).
    pub fn record(&mut self, now_secs: u64, failed: bool) {
        let slot = &mut self.buckets[(now_secs % LONGEST_WINDOW_SECS) as usize];
        if slot.0 != now_secs {
            *slot = (now_secs, Tally::default());
        }
        slot.1.attempts += 1;
        slot.1.failures += u64::from(failed);
    }

    /// The tally of the last `secs` seconds up to and including `now_secs`
    /// (`secs` is capped at [`LONGEST_WINDOW_SECS`]).
    pub fn last(&self, now_secs: u64, secs: u64) -> Tally {
        let secs = secs.min(LONGEST_WINDOW_SECS);
        let oldest = now_secs.saturating_sub(secs - 1);
        let mut tally = Tally::default();
        for (second, bucket) in &self.buckets {
            if *second != u64::MAX && *second >= oldest && *second <= now_secs {
                tally.add(*bucket);
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn windows_cover_the_last_seconds_only() {
        let mut windows = RateWindows::new();
        windows.record(100, true);
        windows.record(105, false);
        windows.record(109, true);
        windows.record(109, false);
        assert_eq!(
            windows.last(109, 10),
            Tally {
                attempts: 4,
                failures: 2
            }
        );
        assert_eq!(
            windows.last(110, 10),
            Tally {
                attempts: 3,
                failures: 1
            }
        );
        assert_eq!(
            windows.last(109, 1),
            Tally {
                attempts: 2,
                failures: 1
            }
        );
        assert_eq!(windows.last(500, 300), Tally::default());
        assert!((windows.last(109, 10).failure_rate() - 0.5).abs() < 1e-9);
        assert_eq!(Tally::default().failure_rate(), 0.0);
    }

    #[test]
    fn old_buckets_are_reused() {
        let mut windows = RateWindows::new();
        windows.record(1, true);
        windows.record(301, false);
        assert_eq!(
            windows.last(301, 300),
            Tally {
                attempts: 1,
                failures: 0
            }
        );
    }

    proptest! {
        /// Every window equals a brute-force count over the raw events.
        #[test]
        fn windows_match_brute_force(
            mut events in proptest::collection::vec((0u64..1000, any::<bool>()), 0..500),
            secs in 1u64..=300,
        ) {
            events.sort_by_key(|(second, _)| *second);
            let mut windows = RateWindows::new();
            for (second, failed) in &events {
                windows.record(*second, *failed);
            }
            let now = events.last().map_or(0, |(second, _)| *second);
            let inside: Vec<_> = events.iter().filter(|(s, _)| *s + secs > now).collect();
            let expected = Tally {
                attempts: inside.len() as u64,
                failures: inside.iter().filter(|(_, failed)| *failed).count() as u64,
            };
            prop_assert_eq!(windows.last(now, secs), expected);
        }
    }
}
