//! The names answers gave to addresses, per network namespace, for as long
//! as their TTLs allow (within bounds), in a cache of fixed capacity.
//!
//! Times are the kernel's monotonic clock in nanoseconds
//! (`bpf_ktime_get_ns`), as carried by both DNS and connect records, so
//! that an answer is judged against the moment of the call, not against
//! when the daemon got round to it.

use std::{net::IpAddr, num::NonZeroUsize, time::Duration};

use lru::LruCache;

use super::name::ServerName;

/// Default capacity: (namespace, address) pairs remembered at once.
/// At most about 7 MiB when full (measured with every pair holding a
/// 30-byte name of its own and a previous answer with another).
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Default lower bound on how long an answer is used. TTLs of 0 to a few
/// seconds are common in service discovery, and programs connect shortly
/// after resolving (sometimes to a second address after the first failed,
/// or from their own cache: the JVM keeps answers 30 s by default).
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(10);

/// Default upper bound: after an hour an address may well belong to
/// someone else, and a forged huge TTL must not pin a name for ever.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);

/// How the cache is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// The most (namespace, address) pairs kept; the least recently
    /// answered is evicted to make room, and counted.
    pub capacity: NonZeroUsize,
    /// Answers are used at least this long, whatever their TTL.
    pub min_ttl: Duration,
    /// And at most this long.
    pub max_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            min_ttl: DEFAULT_MIN_TTL,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }
}

/// What the cache did, since it was made. For metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Answers stored for a (namespace, address) pair not in the cache.
    pub inserted: u64,
    /// Answers that replaced the name of a pair already in the cache with
    /// another name (two names sharing an address).
    pub replaced: u64,
    /// Answers that renewed a pair with the name it already had.
    pub renewed: u64,
    /// Pairs whose answer was still valid, dropped to make room: a name
    /// may be missing from a later record because of it. Size the cache
    /// so that this stays at 0.
    pub evicted: u64,
    /// Expired pairs removed (to make room, or by
    /// [`NameCache::remove_expired`]).
    pub expired: u64,
    /// Lookups that found a name.
    pub hits: u64,
    /// Lookups that found none (never answered, expired, or answered only
    /// after the call).
    pub misses: u64,
}

/// Where a name comes from: a network namespace (its inode number, as in
/// `/proc/PID/ns/net`) and an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    netns: u32,
    addr: IpAddr,
}

/// One answer for a key.
#[derive(Debug, Clone)]
struct Answered {
    name: ServerName,
    answered_ns: u64,
    expires_ns: u64,
}

/// The latest answer for a key, and the one before it: a call made before
/// the latest answer arrived (its record can reach the daemon later, when
/// its handshake ends) is named by the answer it could have used.
#[derive(Debug, Clone)]
struct Entry {
    latest: Answered,
    previous: Option<Answered>,
}

impl Entry {
    fn name_at(&self, at_ns: u64) -> Option<&ServerName> {
        [Some(&self.latest), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|answered| answered.answered_ns <= at_ns)
            .filter(|answered| at_ns < answered.expires_ns)
            .map(|answered| &answered.name)
    }

    fn expired_at(&self, now_ns: u64) -> bool {
        // The latest answer expires last (TTL bounds aside, a previous
        // answer that outlives it is not worth keeping the entry for).
        self.latest.expires_ns <= now_ns
    }
}

/// Names by (network namespace, address), bounded.
///
/// A lookup is one hash of a 24-byte key and one probe; it never allocates.
pub struct NameCache {
    entries: LruCache<Key, Entry>,
    config: CacheConfig,
    counters: CacheCounters,
}

impl NameCache {
    /// An empty cache; the configuration's TTL bounds are put in order if
    /// given the wrong way round.
    pub fn new(config: CacheConfig) -> Self {
        let config = CacheConfig {
            min_ttl: config.min_ttl.min(config.max_ttl),
            ..config
        };
        Self {
            // Not preallocated: most hosts never fill it.
            entries: LruCache::sparse(config.capacity),
            config,
            counters: CacheCounters::default(),
        }
    }

    /// Remembers that in namespace `netns` an answer received at
    /// `answered_ns` gave `addr` to `name` for `ttl_secs` seconds (clamped to
    /// the configured bounds). The most recent answer for an address wins.
    pub fn insert(
        &mut self,
        netns: u32,
        addr: IpAddr,
        name: ServerName,
        answered_ns: u64,
        ttl_secs: u32,
    ) {
        let ttl = Duration::from_secs(u64::from(ttl_secs))
            .clamp(self.config.min_ttl, self.config.max_ttl);
        let ttl_ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let answered = Answered {
            name,
            answered_ns,
            expires_ns: answered_ns.saturating_add(ttl_ns),
        };
        let key = Key {
            netns,
            addr: addr.to_canonical(),
        };
        if let Some(entry) = self.entries.get_mut(&key) {
            if answered.answered_ns < entry.latest.answered_ns {
                // Older than what is known: it can only be the previous.
                if entry
                    .previous
                    .as_ref()
                    .is_none_or(|previous| previous.answered_ns <= answered.answered_ns)
                {
                    entry.previous = Some(answered);
                }
                return;
            }
            if entry.latest.name == answered.name {
                self.counters.renewed += 1;
            } else {
                self.counters.replaced += 1;
            }
            entry.previous = Some(std::mem::replace(&mut entry.latest, answered));
            return;
        }
        if self.entries.len() == self.entries.cap().get()
            && let Some((_, oldest)) = self.entries.pop_lru()
        {
            if oldest.expired_at(answered_ns) {
                self.counters.expired += 1;
            } else {
                self.counters.evicted += 1;
            }
        }
        self.counters.inserted += 1;
        self.entries.put(
            key,
            Entry {
                latest: answered,
                previous: None,
            },
        );
    }

    /// The name of `addr` for a call made in namespace `netns` at `at_ns`:
    /// the latest answer received before the call whose TTL had not run
    /// out. IPv4-mapped IPv6 addresses match their IPv4 answers.
    pub fn lookup(&mut self, netns: u32, addr: IpAddr, at_ns: u64) -> Option<&ServerName> {
        let key = Key {
            netns,
            addr: addr.to_canonical(),
        };
        let name = self
            .entries
            .peek(&key)
            .and_then(|entry| entry.name_at(at_ns));
        if name.is_some() {
            self.counters.hits += 1;
        } else {
            self.counters.misses += 1;
        }
        name
    }

    /// Drops every entry whose answers have all expired at `now_ns`, and
    /// returns how many. Lookups ignore expired entries anyway; this frees
    /// their memory (call it now and then, e.g. once a second).
    pub fn remove_expired(&mut self, now_ns: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, entry| !entry.expired_at(now_ns));
        let removed = before - self.entries.len();
        self.counters.expired += removed as u64;
        removed
    }

    /// Every (namespace, address, latest name) held, expired ones
    /// included until removed; least recently answered first. For
    /// inspection and tests, not for the per-event path.
    pub fn iter(&self) -> impl Iterator<Item = (u32, IpAddr, &ServerName)> {
        self.entries
            .iter()
            .rev()
            .map(|(key, entry)| (key.netns, key.addr, &entry.latest.name))
    }

    /// Pairs held now (expired ones included until removed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// What the cache did so far.
    pub fn counters(&self) -> CacheCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn name(text: &str) -> ServerName {
        ServerName::from_text(text).unwrap()
    }

    fn cache(capacity: usize, min_ttl: u64, max_ttl: u64) -> NameCache {
        NameCache::new(CacheConfig {
            capacity: NonZeroUsize::new(capacity).unwrap(),
            min_ttl: Duration::from_secs(min_ttl),
            max_ttl: Duration::from_secs(max_ttl),
        })
    }

    fn found(cache: &mut NameCache, netns: u32, addr: IpAddr, at: u64) -> Option<String> {
        cache
            .lookup(netns, addr, at)
            .map(|name| name.as_str().to_owned())
    }

    const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn names_until_the_ttl_runs_out() {
        let mut cache = cache(8, 0, 3600);
        cache.insert(1, ADDR, name("svc.example.test"), 100 * S, 30);
        assert_eq!(
            found(&mut cache, 1, ADDR, 100 * S).as_deref(),
            Some("svc.example.test")
        );
        assert_eq!(
            found(&mut cache, 1, ADDR, 129 * S).as_deref(),
            Some("svc.example.test")
        );
        assert_eq!(found(&mut cache, 1, ADDR, 130 * S), None);
        assert_eq!(cache.counters().hits, 2);
        assert_eq!(cache.counters().misses, 1);
    }

    #[test]
    fn ttl_is_clamped_to_the_bounds() {
        let mut cache = cache(8, 10, 60);
        cache.insert(1, ADDR, name("zero.test"), 0, 0);
        assert!(found(&mut cache, 1, ADDR, 9 * S).is_some());
        assert!(found(&mut cache, 1, ADDR, 10 * S).is_none());
        cache.insert(1, ADDR, name("huge.test"), 100 * S, u32::MAX);
        assert!(found(&mut cache, 1, ADDR, 159 * S).is_some());
        assert!(found(&mut cache, 1, ADDR, 160 * S).is_none());
    }

    #[test]
    fn namespaces_are_separate() {
        let mut cache = cache(8, 0, 3600);
        cache.insert(1, ADDR, name("one.test"), 0, 60);
        assert_eq!(found(&mut cache, 2, ADDR, S), None);
        cache.insert(2, ADDR, name("two.test"), 0, 60);
        assert_eq!(found(&mut cache, 1, ADDR, S).as_deref(), Some("one.test"));
        assert_eq!(found(&mut cache, 2, ADDR, S).as_deref(), Some("two.test"));
    }

    #[test]
    fn the_latest_answer_before_the_call_wins() {
        let mut cache = cache(8, 0, 3600);
        cache.insert(1, ADDR, name("first.test"), 10 * S, 60);
        cache.insert(1, ADDR, name("second.test"), 20 * S, 60);
        assert_eq!(cache.counters().replaced, 1);
        // After the second answer: the second name.
        assert_eq!(
            found(&mut cache, 1, ADDR, 21 * S).as_deref(),
            Some("second.test")
        );
        // A call made between the answers is named by the first.
        assert_eq!(
            found(&mut cache, 1, ADDR, 15 * S).as_deref(),
            Some("first.test")
        );
        // A call before any answer has no name.
        assert_eq!(found(&mut cache, 1, ADDR, 5 * S), None);
        // An answer older than the latest, arriving late, does not win.
        cache.insert(1, ADDR, name("late.test"), 18 * S, 60);
        assert_eq!(
            found(&mut cache, 1, ADDR, 21 * S).as_deref(),
            Some("second.test")
        );
        assert_eq!(
            found(&mut cache, 1, ADDR, 19 * S).as_deref(),
            Some("late.test")
        );
    }

    #[test]
    fn renewing_the_same_name_is_counted_apart() {
        let mut cache = cache(8, 0, 3600);
        cache.insert(1, ADDR, name("svc.test"), 0, 5);
        cache.insert(1, ADDR, name("SVC.test"), 4 * S, 5);
        assert_eq!(cache.counters().renewed, 1);
        assert_eq!(cache.counters().replaced, 0);
        assert_eq!(
            found(&mut cache, 1, ADDR, 8 * S).as_deref(),
            Some("svc.test")
        );
    }

    #[test]
    fn mapped_ipv6_matches_ipv4() {
        let mut cache = cache(8, 0, 3600);
        cache.insert(1, ADDR, name("v4.test"), 0, 60);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(found(&mut cache, 1, mapped, S).as_deref(), Some("v4.test"));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(found(&mut cache, 1, v6, S), None);
    }

    #[test]
    fn capacity_is_kept_and_evictions_counted() {
        let mut cache = cache(4, 0, 3600);
        for i in 0..10u8 {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i));
            cache.insert(1, addr, name(&format!("n{i}.test")), u64::from(i) * S, 60);
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.counters().inserted, 10);
        assert_eq!(cache.counters().evicted, 6);
        // The most recently answered are kept.
        let kept = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 9));
        assert_eq!(
            found(&mut cache, 1, kept, 10 * S).as_deref(),
            Some("n9.test")
        );
        let gone = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(found(&mut cache, 1, gone, 10 * S), None);
    }

    #[test]
    fn expired_entries_make_room_without_counting_as_evictions() {
        let mut cache = cache(2, 0, 3600);
        cache.insert(
            1,
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)),
            name("a.test"),
            0,
            1,
        );
        cache.insert(
            1,
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
            name("b.test"),
            0,
            100,
        );
        cache.insert(
            1,
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)),
            name("c.test"),
            5 * S,
            100,
        );
        assert_eq!(cache.counters().expired, 1);
        assert_eq!(cache.counters().evicted, 0);
        assert_eq!(cache.remove_expired(200 * S), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn swapped_bounds_are_put_in_order() {
        let cache = cache(1, 100, 10);
        assert!(cache.config().min_ttl <= cache.config().max_ttl);
    }

    /// The per-event cost, for docs/performance.md: `cargo +1.99.1 test
    /// --release -p connect-trace --lib lookup_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement for the docs, not a check"]
    fn lookup_cost() {
        const LOOKUPS: u32 = 2_000_000;
        let resident = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
                * 4096
        };
        let before = resident();
        let mut cache = NameCache::new(CacheConfig::default());
        let capacity = DEFAULT_CAPACITY as u32;
        // The worst case for memory: every entry with a name of its own,
        // 30 bytes long, and a previous answer with another.
        for round in 0..2u64 {
            for i in 0..capacity {
                let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
                let text = format!("r{round}-service-{i:05}.example.test");
                cache.insert(1, addr, name(&text), round, 300);
            }
        }
        println!(
            "full cache: {:.1} MiB resident",
            (resident() - before) as f64 / (1024.0 * 1024.0)
        );
        // Hits spread over the whole cache (cold memory), hits on the 64
        // busiest destinations (a typical host's hot set), and misses.
        for (label, offset, spread) in [
            ("hit, all entries", 0, capacity),
            ("hit, 64 destinations", 0, 64),
            ("miss", capacity, capacity),
        ] {
            let start = std::time::Instant::now();
            let mut found = 0usize;
            for i in 0..LOOKUPS {
                let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + offset + (i * 7919) % spread));
                found += usize::from(std::hint::black_box(cache.lookup(1, addr, S)).is_some());
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(LOOKUPS);
            println!(
                "{label}: {ns:.1} ns per lookup with {} entries ({found} found)",
                cache.len()
            );
        }
    }
}
