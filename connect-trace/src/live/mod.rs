//! The live aggregates behind `connect-trace top` and the daemon's `/live`
//! endpoint.
//!
//! [`LiveSink`] is an [`export::Sink`](crate::export::Sink): the pipeline
//! hands it every attempt, and it keeps, in bounded memory,
//! - per destination, process, container, pod and error, the attempts and
//!   failures of the last 10 s, 1 min and 5 min ([`windows`], [`dimension`]);
//! - the host's attempts and failures second by second;
//! - the most recent failures.
//!
//! A view never sees the events: it asks for a [`LiveSnapshot`] about once
//! a second ([`Live::snapshot`]), which is all it renders. The state sits
//! behind a mutex that only the pipeline's thread and the snapshot take,
//! each briefly; the daemon's HTTP server runs on the pipeline's own
//! single-threaded runtime, so there it is never even contended.

mod aggregates;
pub mod dimension;
mod sink;
pub mod snapshot;
pub mod windows;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

pub use aggregates::{LiveAggregates, SNAPSHOT_HISTORY_SECS};
pub use sink::LiveSink;
pub use snapshot::LiveSnapshot;

use crate::{clock::WallClock, export::prometheus::CountSource, report::AttemptReport};

/// Keys kept per dimension by default.
pub const DEFAULT_CAPACITY: usize = 256;

/// Recent failures kept by default.
pub const DEFAULT_RECENT_FAILURES: usize = 100;

/// Settings of the live aggregates.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Keys kept per dimension (destinations, processes, ...); beyond it
    /// the keys with the fewest recent failures are dropped, and counted.
    pub capacity: usize,
    /// How many of the most recent failures are kept.
    pub recent_failures: usize,
    /// The node name the records of recent failures carry.
    pub node: Option<Arc<str>>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            recent_failures: DEFAULT_RECENT_FAILURES,
            node: None,
        }
    }
}

/// A shared handle on the live aggregates: the sink feeds them, views and
/// the `/live` endpoint take snapshots.
#[derive(Clone)]
pub struct Live {
    aggregates: Arc<Mutex<LiveAggregates>>,
    /// Where the losses a snapshot reports are read, if anywhere.
    counts: Option<Arc<dyn CountSource>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("aggregates", &self.aggregates)
            .field("counts", &self.counts.is_some())
            .finish()
    }
}

impl Live {
    /// Empty aggregates, started now.
    pub fn new(config: &LiveConfig) -> Self {
        Self {
            aggregates: Arc::new(Mutex::new(LiveAggregates::new(config, now_secs()))),
            counts: None,
        }
    }

    /// Snapshots also report the losses `counts` reads (the ledger and the
    /// kernel's counters of the tracer whose attempts these are).
    #[must_use]
    pub fn with_counts(mut self, counts: Arc<dyn CountSource>) -> Self {
        self.counts = Some(counts);
        self
    }

    /// The sink that feeds them.
    pub fn sink(&self) -> LiveSink {
        LiveSink::new(self.clone())
    }

    /// Counts one attempt, now.
    pub fn record(&self, report: &AttemptReport) {
        self.lock().record(report, now_secs());
    }

    /// Everything a view shows, now.
    pub fn snapshot(&self) -> LiveSnapshot {
        let mut snapshot = self.lock().snapshot(now_secs(), SystemTime::now());
        // Read outside the lock: the kernel's maps are not ours to hold
        // the pipeline up for.
        snapshot.losses = self
            .counts
            .as_ref()
            .and_then(|counts| counts.read())
            .map(|(delivery, _)| snapshot::Losses::from(&delivery));
        snapshot
    }

    /// A panic elsewhere while holding the lock leaves counts that are
    /// still counts: keep using them.
    fn lock(&self) -> MutexGuard<'_, LiveAggregates> {
        self.aggregates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The monotonic second, the clock the windows count in.
fn now_secs() -> u64 {
    WallClock::monotonic_now_ns() / 1_000_000_000
}
