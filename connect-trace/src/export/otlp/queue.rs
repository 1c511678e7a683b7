//! The hand-off from the pipeline's thread to the exporter's: a bounded
//! queue of attempts, filled once per pipeline batch (one lock and at most
//! one wake-up per batch, never one per event), emptied in export batches.
//!
//! Every attempt that enters the sink ends counted exactly once in the
//! delivery ledger: exported (the endpoint accepted it) or dropped (no
//! room, given up, refused, or still here at shutdown).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

use crate::{
    clock::WallClock, delivery::Ledger, report::AttemptReport, resolve::ResolvedAttempt,
    workload::Workload,
};

/// One attempt waiting to be exported: a copy of the report, taken in
/// constant time (the attempt is a plain copy, the workload a reference
/// count). Formatting waits for the exporter's thread.
#[derive(Debug, Clone)]
pub struct QueuedAttempt {
    /// The call and its outcome.
    pub resolved: ResolvedAttempt,
    /// Who made it, when known.
    pub workload: Option<Arc<Workload>>,
    /// The DNS name the program connected to, when known (#14).
    pub server_name: Option<Arc<str>>,
    /// When the call began, in nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
}

impl QueuedAttempt {
    /// Copies `report`; `clock` maps the kernel's time to the wall clock.
    pub fn new(report: &AttemptReport, clock: &WallClock) -> Self {
        let start = clock.to_system_time(report.resolved.attempt.start_monotonic_ns());
        Self {
            resolved: report.resolved,
            workload: report.workload.clone(),
            // The report gains the name the program asked for with #14.
            server_name: None,
            time_unix_nano: unix_nanos(start),
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Attempts handed over together, and when.
#[derive(Debug, Default)]
pub struct Chunk {
    /// When the pipeline handed them over (the records' observed time).
    pub observed_unix_nano: u64,
    /// The attempts, oldest first.
    pub attempts: Vec<QueuedAttempt>,
}

/// The queue both threads share.
pub struct Queue {
    state: Mutex<State>,
    /// The most attempts queued at once.
    max: usize,
    /// The size of a full export batch: reaching it wakes the exporter.
    batch: usize,
    /// Wakes the exporter.
    pub ready: Notify,
    ledger: Arc<Ledger>,
    /// How many attempts are queued, as of the last change: read without
    /// the lock by the sink when the room it was given runs out.
    queued: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Attempts in `chunks`.
    queued: usize,
    /// Attempts taken by the exporter and not yet counted.
    in_flight: usize,
    /// Emptied vectors, given back to the sink so that a steady flow does
    /// not allocate.
    spare: Vec<Vec<QueuedAttempt>>,
    /// The sink stopped waiting for the exporter: everything left was
    /// counted as dropped, and nothing the exporter does is counted again.
    abandoned: bool,
}

/// Emptied vectors kept for reuse.
const SPARE: usize = 4;

impl Queue {
    /// A queue of at most `max` attempts that wakes the exporter once
    /// `batch` are waiting, counting into `ledger`.
    pub fn new(max: usize, batch: usize, ledger: Arc<Ledger>) -> Self {
        Self {
            state: Mutex::default(),
            max,
            batch,
            ready: Notify::new(),
            ledger,
            queued: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts, not broken
        // invariants: go on with them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `chunk` (the sink never stages more than the queue's room, so
    /// it always fits: only the exporter takes from the queue), counts `dropped` attempts that had no
    /// room, and returns the room now left and an empty vector to stage
    /// the next ones in.
    pub fn push(&self, chunk: Chunk, dropped: u64) -> (usize, Vec<QueuedAttempt>) {
        if dropped > 0 {
            self.ledger.otlp_dropped(dropped);
        }
        let mut state = self.state();
        let wake = if chunk.attempts.is_empty() {
            false
        } else {
            state.queued += chunk.attempts.len();
            state.chunks.push_back(chunk);
            state.queued >= self.batch
        };
        self.queued.store(state.queued, Ordering::Relaxed);
        let room = self.max.saturating_sub(state.queued);
        let spare = state.spare.pop().unwrap_or_default();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        (room, spare)
    }

    /// How many more attempts fit now (one atomic load, no lock).
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.queued.load(Ordering::Relaxed))
    }

    /// Attempts waiting now.
    pub fn len(&self) -> usize {
        self.state().queued
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `max` attempts, oldest first, as chunks; `None` when
    /// the queue is empty. Call [`Queue::settle`] with their fate.
    pub fn take(&self, max: usize) -> Option<Vec<Chunk>> {
        let mut state = self.state();
        let mut taken = Vec::new();
        let mut count = 0;
        while count < max {
            let Some(mut chunk) = state.chunks.pop_front() else {
                break;
            };
            let want = max - count;
            if chunk.attempts.len() > want {
                let rest = chunk.attempts.split_off(want);
                state.chunks.push_front(Chunk {
                    observed_unix_nano: chunk.observed_unix_nano,
                    attempts: rest,
                });
            }
            count += chunk.attempts.len();
            taken.push(chunk);
        }
        if count == 0 {
            return None;
        }
        state.queued -= count;
        state.in_flight += count;
        self.queued.store(state.queued, Ordering::Relaxed);
        Some(taken)
    }

    /// Counts what became of attempts taken with [`Queue::take`], and keeps
    /// their emptied vectors for reuse.
    pub fn settle(&self, chunks: Vec<Chunk>, exported: u64, dropped: u64) {
        let count: usize = chunks.iter().map(|chunk| chunk.attempts.len()).sum();
        // The reports are let go here, on the exporter's thread.
        let mut emptied: Vec<Vec<QueuedAttempt>> = chunks
            .into_iter()
            .map(|mut chunk| {
                chunk.attempts.clear();
                chunk.attempts
            })
            .collect();
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(count);
        while state.spare.len() < SPARE
            && let Some(vector) = emptied.pop()
        {
            state.spare.push(vector);
        }
        if !state.abandoned {
            self.ledger.otlp_exported(exported);
            self.ledger.otlp_dropped(dropped);
        }
    }

    /// Drops everything waiting, counted; returns how many.
    pub fn drop_all(&self) -> u64 {
        let mut state = self.state();
        let count = state.queued as u64;
        state.chunks.clear();
        state.queued = 0;
        self.queued.store(0, Ordering::Relaxed);
        if !state.abandoned {
            self.ledger.otlp_dropped(count);
        }
        count
    }

    /// The sink gives up waiting for the exporter: what is queued or in
    /// flight is counted as dropped now, and nothing after is counted.
    /// Returns how many.
    pub fn abandon(&self) -> u64 {
        let mut state = self.state();
        if state.abandoned {
            return 0;
        }
        let count = (state.queued + state.in_flight) as u64;
        state.chunks.clear();
        state.queued = 0;
        self.queued.store(0, Ordering::Relaxed);
        state.abandoned = true;
        self.ledger.otlp_dropped(count);
        count
    }

    /// The delivery ledger the queue counts into.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{ConnectAttempt, attempt::tests::sample_record};
    use crate::resolve::Outcome;

    fn attempt() -> QueuedAttempt {
        QueuedAttempt {
            resolved: ResolvedAttempt {
                attempt: ConnectAttempt::from_record(sample_record()),
                outcome: Outcome::Connected,
                handshake_ns: None,
                repeat: false,
            },
            workload: None,
            server_name: None,
            time_unix_nano: 0,
        }
    }

    fn chunk(n: usize) -> Chunk {
        Chunk {
            observed_unix_nano: 5,
            attempts: (0..n).map(|_| attempt()).collect(),
        }
    }

    #[test]
    fn batches_split_chunks_and_every_attempt_is_counted_once() {
        let ledger = Arc::new(Ledger::default());
        let queue = Queue::new(10, 4, Arc::clone(&ledger));
        let (room, _) = queue.push(chunk(3), 0);
        assert_eq!(room, 7);
        let (room, _) = queue.push(chunk(5), 2);
        assert_eq!(room, 2);
        assert_eq!(queue.room(), 2);
        let first = queue.take(4).unwrap();
        assert_eq!(first.iter().map(|c| c.attempts.len()).sum::<usize>(), 4);
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.room(), 6);
        queue.settle(first, 4, 0);
        let second = queue.take(4).unwrap();
        assert_eq!(queue.take(4).map(|c| c.len()), None);
        queue.settle(second, 3, 1);
        let counts = ledger.daemon_counts();
        assert_eq!(counts.otlp_exported, 7);
        assert_eq!(counts.otlp_dropped, 3);
    }

    #[test]
    fn abandoning_counts_the_rest_once() {
        let ledger = Arc::new(Ledger::default());
        let queue = Queue::new(10, 4, Arc::clone(&ledger));
        queue.push(chunk(6), 0);
        let taken = queue.take(4).unwrap();
        assert_eq!(queue.abandon(), 6);
        queue.settle(taken, 4, 0);
        assert_eq!(queue.abandon(), 0);
        let counts = ledger.daemon_counts();
        assert_eq!((counts.otlp_exported, counts.otlp_dropped), (0, 6));
    }
}
