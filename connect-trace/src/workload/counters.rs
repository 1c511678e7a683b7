//! Counters of everything workload identity did, dropped or could not do,
//! for the daemon to export as metrics.
//!
//! They are shared between the per-event path and the background lookups,
//! so they are atomics; each is only ever added to.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The live counters.
#[derive(Debug, Default)]
pub struct WorkloadCounters {
    /// Cgroup ids looked up and not found in the cache.
    pub cache_misses: AtomicU64,
    /// Misses whose cgroup could not be found (gone before it was seen).
    pub unresolved_cgroups: AtomicU64,
    /// Cgroups found removed; their identity is kept for a while.
    pub departed_cgroups: AtomicU64,
    /// Removed cgroups forgotten because too many were kept.
    pub departed_evicted: AtomicU64,
    /// Live cgroups forgotten because the cache was full (found again on
    /// their next record).
    pub live_evicted: AtomicU64,
    /// Walks of the cgroup tree.
    pub cgroup_walks: AtomicU64,
    /// Walks that stopped at their limit.
    pub cgroup_walks_truncated: AtomicU64,
    /// `/proc/PID/cgroup` reads for the v1 paths.
    pub v1_reads: AtomicU64,
    /// New cgroups learned from the watcher as they were made.
    pub watch_learned: AtomicU64,
    /// New cgroups the watcher could not pass on (its queue was full).
    pub watch_dropped: AtomicU64,
    /// Times the kernel's inotify queue overflowed and the tree was looked
    /// at again.
    pub watch_overflows: AtomicU64,
    /// Directories the watcher could not watch (`max_user_watches`).
    pub watch_errors: AtomicU64,
    /// Runtime lookups started.
    pub lookups: AtomicU64,
    /// Lookups a runtime answered.
    pub lookups_found: AtomicU64,
    /// Lookups no reachable runtime knew.
    pub lookups_not_found: AtomicU64,
    /// Lookups no runtime could be asked for (missing, failing or slow).
    pub lookups_unavailable: AtomicU64,
    /// Lookups not queued because the queue was full; tried again later.
    pub lookups_dropped: AtomicU64,
    /// Failed calls to the Docker Engine API (refused, timed out, bad
    /// answer).
    pub docker_errors: AtomicU64,
    /// Failed calls to containerd's API.
    pub containerd_errors: AtomicU64,
    /// Records let go by [`super::hold::Hold`] before their lookup ended,
    /// because their wait was over.
    pub held_timed_out: AtomicU64,
    /// Records let go by [`super::hold::Hold`] early because it was full.
    pub held_overflowed: AtomicU64,
}

impl WorkloadCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> WorkloadCountersSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let Self {
            cache_misses,
            unresolved_cgroups,
            departed_cgroups,
            departed_evicted,
            live_evicted,
            cgroup_walks,
            cgroup_walks_truncated,
            v1_reads,
            watch_learned,
            watch_dropped,
            watch_overflows,
            watch_errors,
            lookups,
            lookups_found,
            lookups_not_found,
            lookups_unavailable,
            lookups_dropped,
            docker_errors,
            containerd_errors,
            held_timed_out,
            held_overflowed,
        } = self;
        WorkloadCountersSnapshot {
            cache_misses: get(cache_misses),
            unresolved_cgroups: get(unresolved_cgroups),
            departed_cgroups: get(departed_cgroups),
            departed_evicted: get(departed_evicted),
            live_evicted: get(live_evicted),
            cgroup_walks: get(cgroup_walks),
            cgroup_walks_truncated: get(cgroup_walks_truncated),
            v1_reads: get(v1_reads),
            watch_learned: get(watch_learned),
            watch_dropped: get(watch_dropped),
            watch_overflows: get(watch_overflows),
            watch_errors: get(watch_errors),
            lookups: get(lookups),
            lookups_found: get(lookups_found),
            lookups_not_found: get(lookups_not_found),
            lookups_unavailable: get(lookups_unavailable),
            lookups_dropped: get(lookups_dropped),
            docker_errors: get(docker_errors),
            containerd_errors: get(containerd_errors),
            held_timed_out: get(held_timed_out),
            held_overflowed: get(held_overflowed),
        }
    }
}

/// A copy of [`WorkloadCounters`] at one moment; the fields mean the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[expect(missing_docs, reason = "each field is documented on WorkloadCounters")]
pub struct WorkloadCountersSnapshot {
    pub cache_misses: u64,
    pub unresolved_cgroups: u64,
    pub departed_cgroups: u64,
    pub departed_evicted: u64,
    pub live_evicted: u64,
    pub cgroup_walks: u64,
    pub cgroup_walks_truncated: u64,
    pub v1_reads: u64,
    pub watch_learned: u64,
    pub watch_dropped: u64,
    pub watch_overflows: u64,
    pub watch_errors: u64,
    pub lookups: u64,
    pub lookups_found: u64,
    pub lookups_not_found: u64,
    pub lookups_unavailable: u64,
    pub lookups_dropped: u64,
    pub docker_errors: u64,
    pub containerd_errors: u64,
    pub held_timed_out: u64,
    pub held_overflowed: u64,
}
