//! Heavy hitters in bounded memory: the Space-Saving algorithm (Metwally,
//! Agrawal and El Abbadi, 2005), ranked by failures.
//!
//! At most `capacity` keys are kept. A failing key that is not kept takes
//! the place of the kept key with the fewest failures and inherits its count
//! as an over-estimate (`error`). Every key whose true failure count is above
//! `total_failures / capacity` is guaranteed to be kept, and the count of a
//! kept key is exact up to its `error`. Attempts are counted for kept keys
//! from the moment they were admitted; successes never admit a key, so a
//! flood of distinct healthy destinations cannot push out failing ones.

use rustc_hash::FxHashMap;
use std::{borrow::Borrow, collections::BTreeMap, hash::Hash};

/// A kept key's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Failures attributed to the key (an over-estimate by at most `error`).
    pub failures: u64,
    /// Attempts seen since the key was admitted.
    pub attempts: u64,
    /// How much of `failures` may belong to keys it displaced.
    pub error: u64,
}

/// A bounded top-K of failing keys.
#[derive(Debug, Clone)]
pub struct TopK<K> {
    capacity: usize,
    /// Fx hashing: this is looked up for every event. Keys can be chosen by
    /// traced programs (unix paths, names), but the map never holds more
    /// than `capacity` keys, so colliding keys cannot make it slow.
    counts: FxHashMap<K, (Counts, u64)>,
    /// (failures, admission sequence) → key, where `failures` is the count
    /// when the entry was made and may have grown since: a failure of a kept
    /// key touches only `counts`, and an entry is brought up to date only
    /// when it comes first, on displacement. Moving it on every failure (a
    /// remove and an insert, in each of the three top-Ks of destinations,
    /// processes and cgroups) and formatting keys with `core::fmt` (see
    /// `destination_key`) cost together about 130 ns per failing event: the
    /// aggregator's stage took 270 to 330 ns before, 130 to 200 ns after
    /// (`examples/pipeline_cost.rs unix`, alternating runs on the 2-core
    /// bench machine).
    /// Keyed without the key itself so that moving a key up needs no clone
    /// of it.
    order: BTreeMap<(u64, u64), K>,
    sequence: u64,
    total_failures: u64,
    total_attempts: u64,
    displaced: u64,
}

impl<K: Hash + Ord + Clone> TopK<K> {
    /// An empty top-K keeping at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counts: FxHashMap::default(),
            order: BTreeMap::new(),
            sequence: 0,
            total_failures: 0,
            total_attempts: 0,
            displaced: 0,
        }
    }

    /// Counts one attempt of `key`, and says whether the key is kept now.
    /// `make_key` builds the owned key, only when the key must be
    /// admitted, so that looking up a kept key costs no allocation.
    pub fn record<Q>(&mut self, key: &Q, failed: bool, make_key: impl FnOnce(&Q) -> K) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.total_attempts += 1;
        if failed {
            self.total_failures += 1;
        }
        if let Some((counts, _)) = self.counts.get_mut(key) {
            counts.attempts += 1;
            counts.failures += u64::from(failed);
            return true;
        }
        if !failed {
            return false;
        }
        let mut counts = Counts {
            failures: 1,
            attempts: 1,
            error: 0,
        };
        if self.counts.len() >= self.capacity
            && let Some((min, victim)) = self.pop_fewest_failures()
        {
            self.counts.remove::<K>(&victim);
            self.displaced += 1;
            counts.failures = min + 1;
            counts.error = min;
        }
        self.sequence += 1;
        let owned = make_key(key);
        self.order
            .insert((counts.failures, self.sequence), owned.clone());
        self.counts.insert(owned, (counts, self.sequence));
        true
    }

    /// Takes out of `order` the kept key with the fewest failures (the
    /// oldest of those), with its failures. Entries that fell behind their
    /// key's count are put back up to date on the way: each failure causes
    /// at most one such move, later and only if the key comes first.
    fn pop_fewest_failures(&mut self) -> Option<(u64, K)> {
        while let Some(((failures, sequence), key)) = self.order.pop_first() {
            let Some((counts, _)) = self.counts.get(&key) else {
                continue;
            };
            if counts.failures == failures {
                return Some((failures, key));
            }
            self.order.insert((counts.failures, sequence), key);
        }
        None
    }

    /// The kept keys with the most failures, most first (the latest admitted
    /// first among equals), at most `n`.
    pub fn top(&self, n: usize) -> Vec<(&K, Counts)> {
        let mut kept: Vec<(&K, Counts, u64)> = self
            .counts
            .iter()
            .map(|(key, (counts, sequence))| (key, *counts, *sequence))
            .collect();
        kept.sort_unstable_by_key(|(_, counts, sequence)| {
            std::cmp::Reverse((counts.failures, *sequence))
        });
        kept.truncate(n);
        kept.into_iter()
            .map(|(key, counts, _)| (key, counts))
            .collect()
    }

    /// The counts of `key`, if kept.
    pub fn get<Q>(&self, key: &Q) -> Option<Counts>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counts.get(key).map(|(counts, _)| *counts)
    }

    /// Keys kept now.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Failures not attributed with certainty to a kept key: the `other`
    /// bucket.
    pub fn other_failures(&self) -> u64 {
        let certain: u64 = self
            .counts
            .values()
            .map(|(counts, _)| counts.failures - counts.error)
            .sum();
        self.total_failures.saturating_sub(certain)
    }

    /// Keys that were displaced to make room.
    pub const fn displaced(&self) -> u64 {
        self.displaced
    }

    /// All failures counted.
    pub const fn total_failures(&self) -> u64 {
        self.total_failures
    }

    /// Forgets everything (start of a new interval).
    pub fn clear(&mut self) {
        self.counts.clear();
        self.order.clear();
        self.total_failures = 0;
        self.total_attempts = 0;
        self.displaced = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn record(top: &mut TopK<String>, key: &str, failed: bool) {
        let kept = top.record(key, failed, str::to_owned);
        assert_eq!(kept, top.get(key).is_some());
    }

    #[test]
    fn keeps_exact_counts_while_there_is_room() {
        let mut top = TopK::new(3);
        for (key, failed) in [
            ("a", true),
            ("b", true),
            ("a", true),
            ("a", false),
            ("c", false),
        ] {
            record(&mut top, key, failed);
        }
        let listed: Vec<_> = top
            .top(10)
            .into_iter()
            .map(|(k, c)| (k.clone(), c))
            .collect();
        assert_eq!(listed[0].0, "a");
        assert_eq!(
            listed[0].1,
            Counts {
                failures: 2,
                attempts: 3,
                error: 0
            }
        );
        assert_eq!(listed[1].0, "b");
        assert_eq!(top.get("c"), None, "successes do not admit a key");
        assert_eq!(top.other_failures(), 0);
    }

    #[test]
    fn displaces_the_smallest_and_inherits_its_count() {
        let mut top = TopK::new(2);
        for key in ["a", "a", "a", "b", "c"] {
            record(&mut top, key, true);
        }
        assert_eq!(top.get("b"), None);
        assert_eq!(
            top.get("c"),
            Some(Counts {
                failures: 2,
                attempts: 1,
                error: 1
            })
        );
        assert_eq!(top.displaced(), 1);
        assert_eq!(top.other_failures(), 1);
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded() {
        let mut top = TopK::new(100);
        for i in 0..100_000 {
            record(
                &mut top,
                &format!("10.0.{}.{}:80", i / 256, i % 256),
                i % 3 == 0,
            );
            record(&mut top, "db:5432", true);
        }
        assert_eq!(top.len(), 100);
        assert_eq!(top.top(1)[0].0, "db:5432");
        assert_eq!(top.get("db:5432").unwrap().error, 0);
    }

    proptest! {
        /// Space-Saving's guarantees: bounded size, counts never under the
        /// truth, over by at most `error`, and every key with more than
        /// total/capacity failures is kept.
        #[test]
        fn space_saving_guarantees(
            events in proptest::collection::vec((0u8..40, any::<bool>()), 0..2000),
            capacity in 1usize..20,
        ) {
            let mut top = TopK::new(capacity);
            let mut truth: HashMap<String, u64> = HashMap::new();
            for (key, failed) in &events {
                let key = format!("k{key}");
                record(&mut top, &key, *failed);
                if *failed {
                    *truth.entry(key).or_default() += 1;
                }
            }
            prop_assert!(top.len() <= capacity);
            let listed = top.top(capacity);
            prop_assert!(listed.windows(2).all(|pair| pair[0].1.failures >= pair[1].1.failures));
            let total: u64 = truth.values().sum();
            prop_assert_eq!(top.total_failures(), total);
            for (key, counts) in top.top(capacity) {
                let real = truth.get(key).copied().unwrap_or(0);
                prop_assert!(counts.failures >= real);
                prop_assert!(counts.failures - counts.error <= real);
            }
            for (key, real) in &truth {
                if *real * capacity as u64 > total {
                    prop_assert!(top.get(key.as_str()).is_some(), "{} with {} of {}", key, real, total);
                }
            }
        }
    }
}
