//! Everything after the kernel, in the order a record travels it:
//! [`reader`] drains the ring buffer and decodes each record
//! ([`crate::decode`]), the [`Resolver`] joins each call with the end of
//! its handshake, and every resolved attempt goes to the [`Aggregator`]
//! (failure rates, summaries) and to each [`Sink`] (JSON Lines,
//! Prometheus, ...). The pipeline also keeps the delivery [`Ledger`].
//!
//! It knows nothing of signals, timers or outputs: `connect-trace run`
//! drives it from its event loop, and the integration tests drive the same
//! pipeline directly.

pub mod reader;

use std::{sync::Arc, time::SystemTime};

use aya::maps::MapError;
use thiserror::Error;

use crate::{
    aggregate::{Aggregator, DEFAULT_CAPACITY},
    clock::WallClock,
    decode::Record,
    delivery::{Delivery, Ledger},
    export::{Sink, SinkError, Started, Stopped},
    kernel::KernelStats,
    resolve::{ResolvedAttempt, Resolver, ResolverConfig},
};
use reader::EventReader;

/// What stops the pipeline.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// A sink failed, or its output was closed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The kernel's counters could not be read.
    #[error("reading the kernel's counters: {0}")]
    Kernel(#[from] MapError),
}

/// Settings of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How attempts are resolved.
    pub resolver: ResolverConfig,
    /// Keys listed per dimension in summaries.
    pub top: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            resolver: ResolverConfig::default(),
            top: 10,
        }
    }
}

/// The record pipeline: resolve, aggregate, hand to the sinks, count.
pub struct Pipeline {
    resolver: Resolver,
    aggregator: Aggregator,
    sinks: Vec<Box<dyn Sink>>,
    ledger: Arc<Ledger>,
    kernel: Arc<KernelStats>,
    top: usize,
}

impl Pipeline {
    /// A pipeline feeding `sinks`, counting into `ledger`, next to the
    /// kernel's counters in `kernel`.
    pub fn new(
        config: PipelineConfig,
        kernel: Arc<KernelStats>,
        ledger: Arc<Ledger>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Self {
        Self {
            resolver: Resolver::new(config.resolver),
            aggregator: Aggregator::new(DEFAULT_CAPACITY, SystemTime::now()),
            sinks,
            ledger,
            kernel,
            top: config.top,
        }
    }

    /// Takes every record waiting in `reader` through the pipeline, shows
    /// each to `observe` first (tests look at the raw calls there), and
    /// flushes the sinks.
    pub fn drain(
        &mut self,
        reader: &mut EventReader,
        mut observe: impl FnMut(&Record),
    ) -> Result<(), PipelineError> {
        let now_ns = WallClock::monotonic_now_ns();
        let Self {
            resolver,
            aggregator,
            sinks,
            ..
        } = self;
        let mut calls = 0;
        let drained = reader.drain(|record| {
            observe(record);
            if matches!(record, Record::Connect(_)) {
                calls += 1;
            }
            resolver.on_record(record, now_ns, &mut |resolved| {
                consume(resolved, now_ns, aggregator, sinks)
            })
        })?;
        self.ledger.delivered(calls, drained.undecodable);
        self.end_batch()
    }

    /// Reports attempts whose resolution timeout passed as `in_progress`.
    /// Call about once a second.
    pub fn expire(&mut self) -> Result<(), PipelineError> {
        let now_ns = WallClock::monotonic_now_ns();
        let Self {
            resolver,
            aggregator,
            sinks,
            ..
        } = self;
        resolver.expire(now_ns, &mut |resolved| {
            consume(resolved, now_ns, aggregator, sinks)
        })?;
        if resolver.shrink() {
            give_back_free_memory();
        }
        self.end_batch()
    }

    /// Closes the summary interval and hands its summary to the sinks.
    pub fn summarize(&mut self) -> Result<(), PipelineError> {
        let delivery = self.delivery()?;
        let now_secs = WallClock::monotonic_now_ns() / 1_000_000_000;
        let summary = self
            .aggregator
            .summarize(SystemTime::now(), now_secs, self.top, delivery);
        for sink in &mut self.sinks {
            sink.summary(&summary)?;
        }
        self.end_batch()
    }

    /// Tells the sinks that tracing is live.
    pub fn started(&mut self, started: &Started) -> Result<(), PipelineError> {
        for sink in &mut self.sinks {
            sink.started(started)?;
        }
        Ok(())
    }

    /// Ends the pipeline: what is still in `reader` is taken, attempts
    /// still waiting are reported as `in_progress`, a last summary is made
    /// when `summaries` is set, and the sinks get the `stopped` record.
    /// Returns the final counts.
    pub fn stop(
        &mut self,
        reader: &mut EventReader,
        summaries: bool,
    ) -> Result<Delivery, PipelineError> {
        self.drain(reader, |_| {})?;
        let now_ns = WallClock::monotonic_now_ns();
        let Self {
            resolver,
            aggregator,
            sinks,
            ..
        } = self;
        resolver.finish(&mut |resolved| consume(resolved, now_ns, aggregator, sinks))?;
        self.end_batch()?;
        if summaries {
            self.summarize()?;
        }
        let stopped = Stopped {
            kind: "stopped",
            ts: SystemTime::now(),
            delivery: self.delivery()?,
        };
        for sink in &mut self.sinks {
            sink.stopped(&stopped)?;
        }
        // The stopped line itself is written now: count it too.
        self.delivery().map_err(PipelineError::from)
    }

    /// Reopens the sinks' files (SIGHUP).
    pub fn reopen(&mut self) -> Result<(), PipelineError> {
        for sink in &mut self.sinks {
            sink.reopen()?;
        }
        Ok(())
    }

    /// Every count, now.
    pub fn delivery(&self) -> Result<Delivery, MapError> {
        self.ledger.snapshot(&self.kernel)
    }

    /// Flushes the sinks and brings the ledger up to date.
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        self.ledger.resolver(self.resolver.stats());
        Ok(())
    }
}

/// Returns freed heap memory to the system: glibc keeps what a burst freed
/// for later use, so the RSS a burst raised would otherwise never fall.
fn give_back_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's free
    // memory; it takes no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes one resolved attempt to the aggregator and every sink.
fn consume(
    resolved: &ResolvedAttempt,
    now_ns: u64,
    aggregator: &mut Aggregator,
    sinks: &mut [Box<dyn Sink>],
) -> Result<(), SinkError> {
    aggregator.record(resolved, now_ns / 1_000_000_000);
    for sink in sinks {
        sink.attempt(resolved)?;
    }
    Ok(())
}
