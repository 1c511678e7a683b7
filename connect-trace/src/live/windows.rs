//! Attempts and failures of one key over the last 10 s, 1 min and 5 min,
//! in fixed memory, and the whole host's second by second.

use crate::aggregate::window::Tally;

/// One bucket: the time step it counts ([`UNUSED`]: none yet) and its
/// counts, in 16 bytes. Counts are `u32`: a ten-second bucket would need
/// 400 million attempts a second to overflow, and saturates rather than
/// wraps.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    step: u64,
    attempts: u32,
    failures: u32,
}

/// The step of a bucket never used: no clock reaches it.
const UNUSED: u64 = u64::MAX;

impl Default for Bucket {
    fn default() -> Self {
        Self {
            step: UNUSED,
            attempts: 0,
            failures: 0,
        }
    }
}

impl Bucket {
    fn count(&mut self, step: u64, failed: bool) {
        if self.step != step {
            *self = Self {
                step,
                attempts: 0,
                failures: 0,
            };
        }
        self.attempts = self.attempts.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(failed));
    }

    fn tally_if(&self, keep: impl Fn(u64) -> bool) -> Tally {
        match self.step {
            step if step != UNUSED && keep(step) => Tally {
                attempts: u64::from(self.attempts),
                failures: u64::from(self.failures),
            },
            _ => Tally::default(),
        }
    }
}

/// Ten-second steps kept: the 5-minute window.
const TEN_SECOND_STEPS: usize = 30;

/// A key's attempts and failures: one-second buckets for the last 10 s
/// (exact) and ten-second buckets for the last 5 min. The minute and the
/// five minutes are counted in ten-second steps: the step under way and the
/// 5 (or 29) before it, so they cover between 50 and 60 s (290 and 300 s)
/// and never an attempt older than their name. 640 bytes.
#[derive(Debug, Clone, Default)]
pub struct KeyWindows {
    seconds: [Bucket; 10],
    tens: [Bucket; TEN_SECOND_STEPS],
}

/// The three windows of a key, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tallies {
    /// The last 10 seconds.
    pub last_10s: Tally,
    /// The last minute (in ten-second steps).
    pub last_1m: Tally,
    /// The last 5 minutes (in ten-second steps).
    pub last_5m: Tally,
}

impl KeyWindows {
    /// Counts one attempt at monotonic second `now`.
    pub fn record(&mut self, now: u64, failed: bool) {
        self.seconds[(now % 10) as usize].count(now, failed);
        let step = now / 10;
        self.tens[(step % TEN_SECOND_STEPS as u64) as usize].count(step, failed);
    }

    /// The windows ending at second `now`.
    pub fn tallies(&self, now: u64) -> Tallies {
        let step = now / 10;
        let sum = |buckets: &[Bucket], keep: &dyn Fn(u64) -> bool| {
            buckets.iter().fold(Tally::default(), |mut sum, bucket| {
                let tally = bucket.tally_if(keep);
                sum.attempts += tally.attempts;
                sum.failures += tally.failures;
                sum
            })
        };
        Tallies {
            last_10s: sum(&self.seconds, &|second| second + 10 > now && second <= now),
            last_1m: sum(&self.tens, &|at| at + 6 > step && at <= step),
            last_5m: sum(&self.tens, &|at| at + 30 > step && at <= step),
        }
    }
}

/// The whole host's attempts and failures, one bucket per second for the
/// last [`HISTORY_SECS`] seconds: exact windows and the history a
/// sparkline draws.
#[derive(Debug, Clone)]
pub struct SecondHistory {
    buckets: Vec<Bucket>,
}

/// Seconds of history kept: the longest window.
pub const HISTORY_SECS: u64 = 300;

impl Default for SecondHistory {
    fn default() -> Self {
        Self {
            buckets: vec![Bucket::default(); HISTORY_SECS as usize],
        }
    }
}

impl SecondHistory {
    /// Counts one attempt at monotonic second `now`.
    pub fn record(&mut self, now: u64, failed: bool) {
        self.buckets[(now % HISTORY_SECS) as usize].count(now, failed);
    }

    /// The tally of second `second` (empty when nothing was counted then,
    /// or it is older than the history).
    pub fn at(&self, second: u64) -> Tally {
        self.buckets[(second % HISTORY_SECS) as usize].tally_if(|step| step == second)
    }

    /// The tally of the last `secs` seconds up to and including `now`.
    pub fn last(&self, now: u64, secs: u64) -> Tally {
        let secs = secs.clamp(1, HISTORY_SECS);
        (now + 1 - secs.min(now + 1)..=now).fold(Tally::default(), |mut sum, second| {
            let tally = self.at(second);
            sum.attempts += tally.attempts;
            sum.failures += tally.failures;
            sum
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tally(attempts: u64, failures: u64) -> Tally {
        Tally { attempts, failures }
    }

    #[test]
    fn ten_seconds_are_exact_and_minutes_step_by_ten() {
        let mut windows = KeyWindows::default();
        windows.record(1000, true); // 15 s before 1015: in 1 m and 5 m only
        windows.record(1006, false);
        windows.record(1010, true);
        windows.record(1015, true);
        let now = windows.tallies(1015);
        assert_eq!(now.last_10s, tally(3, 2));
        assert_eq!(now.last_1m, tally(4, 3));
        assert_eq!(now.last_5m, tally(4, 3));
        // At 1060 the steps of 1000 and 1006 are 6 steps ago: out of the minute.
        let later = windows.tallies(1060);
        assert_eq!(later.last_10s, Tally::default());
        assert_eq!(later.last_1m, tally(2, 2));
        assert_eq!(later.last_5m, tally(4, 3));
        assert_eq!(windows.tallies(1309).last_5m, tally(2, 2));
        assert_eq!(windows.tallies(1310).last_5m, tally(0, 0));
    }

    #[test]
    fn buckets_are_reused_after_their_window() {
        let mut windows = KeyWindows::default();
        windows.record(5, true);
        windows.record(305, false);
        assert_eq!(windows.tallies(305).last_5m, tally(1, 0));
        assert_eq!(windows.tallies(305).last_10s, tally(1, 0));
    }

    #[test]
    fn history_is_per_second() {
        let mut history = SecondHistory::default();
        history.record(10, true);
        history.record(10, false);
        history.record(12, true);
        assert_eq!(history.at(10), tally(2, 1));
        assert_eq!(history.at(11), Tally::default());
        assert_eq!(history.last(12, 10), tally(3, 2));
        assert_eq!(history.last(12, 2), tally(1, 1));
        assert_eq!(history.at(310), Tally::default(), "a stale bucket");
        assert_eq!(history.last(2, 300), Tally::default());
    }

    #[test]
    fn a_key_s_windows_take_640_bytes() {
        assert_eq!(size_of::<KeyWindows>(), 640);
    }

    proptest! {
        /// Every window equals a brute-force count of its steps.
        #[test]
        fn windows_match_brute_force(
            mut events in proptest::collection::vec((0u64..2000, any::<bool>()), 0..400),
        ) {
            events.sort_by_key(|(second, _)| *second);
            let mut windows = KeyWindows::default();
            let mut history = SecondHistory::default();
            for (second, failed) in &events {
                windows.record(*second, *failed);
                history.record(*second, *failed);
            }
            let now = events.last().map_or(0, |(second, _)| *second);
            let count = |keep: &dyn Fn(u64) -> bool| {
                let inside: Vec<_> = events.iter().filter(|(second, _)| keep(*second)).collect();
                tally(
                    inside.len() as u64,
                    inside.iter().filter(|(_, failed)| *failed).count() as u64,
                )
            };
            let tallies = windows.tallies(now);
            prop_assert_eq!(tallies.last_10s, count(&|s| s + 10 > now));
            prop_assert_eq!(tallies.last_1m, count(&|s| s / 10 + 6 > now / 10));
            prop_assert_eq!(tallies.last_5m, count(&|s| s / 10 + 30 > now / 10));
            prop_assert_eq!(history.last(now, 60), count(&|s| s + 60 > now));
        }
    }
}
