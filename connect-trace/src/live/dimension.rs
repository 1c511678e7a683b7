//! The keys of one dimension (destinations, processes, ...) and their
//! windows, in bounded memory.

use std::{borrow::Borrow, hash::Hash};

use rustc_hash::FxHashMap;

use super::windows::KeyWindows;
use crate::aggregate::FailureKind;

/// One kept key.
#[derive(Debug, Clone)]
pub struct Tracked<T> {
    /// What names it (its text, the workload behind it).
    pub about: T,
    /// Its attempts and failures.
    pub windows: KeyWindows,
    /// What its most recent failure was.
    pub last_error: Option<FailureKind>,
    /// The monotonic second of its most recent failure.
    pub last_failure: u64,
}

impl<T> Tracked<T> {
    fn count(&mut self, now: u64, failure: Option<FailureKind>) {
        self.windows.record(now, failure.is_some());
        if let Some(kind) = failure {
            self.last_error = Some(kind);
            self.last_failure = now;
        }
    }
}

/// Up to `capacity` keys. A key is what identifies it in a compact form
/// (address bytes, a name's bytes), looked up by reference, so the
/// per-event path builds no text and allocates nothing for a key already
/// kept; the owned key and the text are made once, when a key is first
/// seen.
#[derive(Debug)]
pub struct Dimension<K, T> {
    /// Fx hashing: this is looked up for every event. Keys can be chosen by
    /// traced programs (unix paths, names), but the map never holds more
    /// than `capacity` keys and compares keys whole, so colliding keys can
    /// neither be merged nor make it slow.
    keys: FxHashMap<K, Tracked<T>>,
    capacity: usize,
    dropped: u64,
}

impl<K: Hash + Eq + Clone, T> Dimension<K, T> {
    /// An empty dimension keeping at most `capacity` keys (at least 4).
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: FxHashMap::default(),
            capacity: capacity.max(4),
            dropped: 0,
        }
    }

    /// Counts one attempt of `key` at monotonic second `now`; `failure`
    /// says how it failed, if it did. A kept key is found with one lookup
    /// and `refresh` may update what names it (a name learned since); a
    /// new key's owned form and name are made by `make`.
    pub fn record<Q>(
        &mut self,
        key: &Q,
        now: u64,
        failure: Option<FailureKind>,
        make: impl FnOnce(&Q) -> (K, T),
        refresh: impl FnOnce(&mut T),
    ) where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(tracked) = self.keys.get_mut(key) {
            tracked.count(now, failure);
            refresh(&mut tracked.about);
            return;
        }
        if self.keys.len() >= self.capacity {
            self.make_room(now);
        }
        let (owned, about) = make(key);
        let mut tracked = Tracked {
            about,
            windows: KeyWindows::default(),
            last_error: None,
            last_failure: 0,
        };
        tracked.count(now, failure);
        self.keys.insert(owned, tracked);
    }

    /// Drops the quarter of the keys with the fewest failures in the last 5
    /// minutes (the least recently failed first among equals), and counts
    /// them. A quarter at a time, so that the sort is paid once per
    /// `capacity / 4` new keys, not for each.
    fn make_room(&mut self, now: u64) {
        let mut ranked: Vec<(u64, u64, &K)> = self
            .keys
            .iter()
            .map(|(key, tracked)| {
                let failures = tracked.windows.tallies(now).last_5m.failures;
                (failures, tracked.last_failure, key)
            })
            .collect();
        let drop = (self.capacity / 4).max(1);
        ranked.select_nth_unstable_by_key(drop - 1, |(failures, last, _)| (*failures, *last));
        let victims: Vec<K> = ranked[..drop]
            .iter()
            .map(|(.., key)| (*key).clone())
            .collect();
        for key in &victims {
            self.keys.remove(key);
        }
        self.dropped += drop as u64;
    }

    /// Forgets keys with no attempt in the last 5 minutes at `now`, and
    /// returns the others.
    pub fn live_keys(&mut self, now: u64) -> impl Iterator<Item = &Tracked<T>> {
        self.keys
            .retain(|_, tracked| tracked.windows.tallies(now).last_5m.attempts > 0);
        self.keys.values()
    }

    /// Keys dropped so far to stay within the capacity.
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keys kept now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_apart_and_named_once() {
        let mut dimension: Dimension<Box<str>, String> = Dimension::new(8);
        let mut named = 0;
        for _ in 0..3 {
            dimension.record(
                "a",
                10,
                None,
                |key| {
                    named += 1;
                    (Box::from(key), key.to_owned())
                },
                |_| {},
            );
        }
        let refused = Some(FailureKind::Errno(libc::ECONNREFUSED));
        dimension.record(
            "b",
            11,
            refused,
            |key| (Box::from(key), key.to_owned()),
            |_| {},
        );
        assert_eq!(named, 1);
        assert_eq!(dimension.len(), 2);
        let mut keys: Vec<_> = dimension
            .live_keys(11)
            .map(|tracked| {
                let tally = tracked.windows.tallies(11).last_10s;
                (
                    tracked.about.clone(),
                    tally.attempts,
                    tally.failures,
                    tracked.last_error,
                )
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            keys,
            [
                ("a".to_owned(), 3, 0, None),
                ("b".to_owned(), 1, 1, refused)
            ]
        );
    }

    #[test]
    fn full_dimensions_drop_the_least_failing_and_count_them() {
        let mut dimension: Dimension<u32, u32> = Dimension::new(8);
        let refused = Some(FailureKind::Errno(libc::ECONNREFUSED));
        for _ in 0..5 {
            dimension.record(&0, 1, refused, |key| (*key, *key), |_| {});
        }
        // A flood of keys that never fail cannot push out the failing one.
        for key in 1..1000u32 {
            dimension.record(&key, 2, None, |key| (*key, *key), |_| {});
        }
        assert!(dimension.len() <= 8);
        assert!(dimension.dropped() >= 990, "{}", dimension.dropped());
        assert!(dimension.live_keys(2).any(|tracked| tracked.about == 0));
    }

    #[test]
    fn quiet_keys_are_forgotten_after_five_minutes() {
        let mut dimension: Dimension<u32, u32> = Dimension::new(8);
        dimension.record(&1, 100, None, |key| (*key, *key), |_| {});
        assert_eq!(dimension.live_keys(399).count(), 1);
        assert_eq!(dimension.live_keys(400).count(), 0);
        assert!(dimension.is_empty());
    }
}
