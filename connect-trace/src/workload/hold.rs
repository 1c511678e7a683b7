//! A short, bounded wait for records whose container is being looked up.
//!
//! The first record of a new container arrives before any runtime could be
//! asked about it. Written at once, it would carry the container's id but
//! not its name, image or pod, and for a job that connects once and exits
//! that first record is the only one. So such a record waits in a [`Hold`]
//! until the lookup ends or a deadline passes, whichever comes first; a
//! runtime answers a lookup in a few milliseconds. Records of known
//! workloads, of hosts' processes, and of containers whose runtime is known
//! to be missing or failing never wait. The hold is bounded: when it is
//! full the oldest record leaves early, and that is counted, as is every
//! record whose wait ran out.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Workload, Workloads, counters::WorkloadCounters};

/// The default longest wait. A lookup that takes longer is a slow runtime;
/// records must keep flowing.
pub const DEFAULT_WAIT: Duration = Duration::from_millis(250);
/// The default number of records held at most.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Debug)]
struct Held<T> {
    item: T,
    cgroup_id: u64,
    deadline: Instant,
}

/// Records waiting for their workload's lookup; see the module docs.
#[derive(Debug)]
pub struct Hold<T> {
    waiting: VecDeque<Held<T>>,
    capacity: usize,
    wait: Duration,
    counters: Arc<WorkloadCounters>,
}

impl<T> Hold<T> {
    /// Holds up to `capacity` records, each for at most `wait`.
    pub fn new(capacity: usize, wait: Duration, counters: Arc<WorkloadCounters>) -> Self {
        Self {
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
            wait,
            counters,
        }
    }

    /// Offers a record of `workload`: it comes straight back when it need
    /// not wait. When the hold is full, the oldest record comes back
    /// instead, early.
    pub fn admit(&mut self, item: T, workload: &Workload, now: Instant) -> Option<T> {
        if !workload.is_pending() || self.wait.is_zero() {
            return Some(item);
        }
        let early = if self.waiting.len() >= self.capacity {
            WorkloadCounters::bump(&self.counters.held_overflowed);
            self.waiting.pop_front().map(|held| held.item)
        } else {
            None
        };
        self.waiting.push_back(Held {
            item,
            cgroup_id: workload.cgroup_id,
            deadline: now + self.wait,
        });
        early
    }

    /// Lets go, in arrival order, every record whose lookup has ended or
    /// whose wait ran out. Call it after [`Workloads::apply_lookups`]. An
    /// empty hold returns an empty vector, which does not allocate.
    pub fn release(&mut self, workloads: &Workloads, now: Instant) -> Vec<T> {
        let mut released = Vec::new();
        if self.waiting.is_empty() {
            return released;
        }
        let mut still = VecDeque::with_capacity(self.waiting.len());
        for held in self.waiting.drain(..) {
            if !workloads.is_pending(held.cgroup_id) {
                released.push(held.item);
            } else if now >= held.deadline {
                WorkloadCounters::bump(&self.counters.held_timed_out);
                released.push(held.item);
            } else {
                still.push_back(held);
            }
        }
        self.waiting = still;
        released
    }

    /// Lets every record go (the daemon is stopping).
    pub fn drain(&mut self, emit: impl FnMut(T)) {
        self.waiting.drain(..).map(|held| held.item).for_each(emit);
    }

    /// When the next wait runs out, to sleep until then at most.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|held| held.deadline).min()
    }

    /// How many records wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Metadata, WorkloadConfig};

    fn pending(cgroup_id: u64) -> Workload {
        Workload {
            metadata: Metadata::Pending,
            ..Workload::unresolved(cgroup_id)
        }
    }

    fn no_lookups() -> Workloads {
        Workloads::with_cgroups(
            None,
            false,
            WorkloadConfig {
                lookups: None,
                ..WorkloadConfig::default()
            },
        )
    }

    #[test]
    fn known_workloads_pass_straight_through() {
        let counters = Arc::new(WorkloadCounters::default());
        let mut hold = Hold::new(4, DEFAULT_WAIT, counters);
        let now = Instant::now();
        assert_eq!(hold.admit(1, &Workload::unresolved(7), now), Some(1));
        assert!(hold.is_empty());
    }

    #[test]
    fn pending_records_wait_until_their_deadline_and_are_counted() {
        let counters = Arc::new(WorkloadCounters::default());
        let mut hold = Hold::new(4, Duration::from_millis(100), Arc::clone(&counters));
        let start = Instant::now();
        assert_eq!(hold.admit("a", &pending(7), start), None);
        assert_eq!(
            hold.next_deadline(),
            Some(start + Duration::from_millis(100))
        );
        // The workloads do not know cgroup 7 as pending (not cached): it
        // goes at once, not counted as timed out.
        let workloads = no_lookups();
        assert_eq!(hold.release(&workloads, start), ["a"]);
        assert_eq!(counters.snapshot().held_timed_out, 0);
    }

    #[test]
    fn a_full_hold_lets_the_oldest_go_early() {
        let counters = Arc::new(WorkloadCounters::default());
        let mut hold = Hold::new(2, DEFAULT_WAIT, Arc::clone(&counters));
        let now = Instant::now();
        assert_eq!(hold.admit(1, &pending(7), now), None);
        assert_eq!(hold.admit(2, &pending(7), now), None);
        assert_eq!(hold.admit(3, &pending(7), now), Some(1));
        assert_eq!(counters.snapshot().held_overflowed, 1);
        let mut out = Vec::new();
        hold.drain(|item| out.push(item));
        assert_eq!(out, [2, 3]);
    }
}
