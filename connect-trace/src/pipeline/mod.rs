//! Everything after the kernel, in the order a record travels it:
//! [`reader`] drains the ring buffer and decodes each record
//! ([`crate::decode`]), the [`Resolver`] joins each call with the end of
//! its handshake, [`identify`] names the workload that made it (and keeps
//! only the one asked for), and every attempt goes to the [`Aggregator`]
//! (failure rates, summaries) and to each [`Sink`] (JSON Lines,
//! Prometheus, ...). The pipeline also keeps the delivery [`Ledger`].
//!
//! It knows nothing of signals, timers or outputs: `connect-trace run`
//! drives it from its event loop, and the integration tests drive the same
//! pipeline directly.

pub mod identify;
pub mod reader;

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use aya::maps::MapError;
use thiserror::Error;

use crate::{
    aggregate::{Aggregator, DEFAULT_CAPACITY},
    clock::WallClock,
    decode::Record,
    delivery::{Delivery, Ledger},
    export::{Sink, SinkError, Started, Stopped},
    kernel::KernelStats,
    report::AttemptReport,
    resolve::{ResolvedAttempt, Resolver, ResolverConfig},
};
use identify::Identity;
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

/// The record pipeline: resolve, identify, aggregate, hand to the sinks,
/// count.
pub struct Pipeline {
    resolver: Resolver,
    downstream: Downstream,
    ledger: Arc<Ledger>,
    kernel: Arc<KernelStats>,
    top: usize,
}

/// Everything after the resolver.
struct Downstream {
    identity: Option<Identity>,
    aggregator: Aggregator,
    sinks: Vec<Box<dyn Sink>>,
}

impl Downstream {
    /// Takes one resolved attempt on: through the workload stage (which may
    /// hold it briefly, or leave it out), to the aggregator and every sink.
    fn take(&mut self, resolved: &ResolvedAttempt, now_ns: u64) -> Result<(), SinkError> {
        let report = match &mut self.identity {
            Some(identity) => match identity.admit(*resolved, Instant::now()) {
                Some(report) => report,
                None => return Ok(()),
            },
            None => AttemptReport::new(*resolved),
        };
        self.report(&report, now_ns)
    }

    fn report(&mut self, report: &AttemptReport, now_ns: u64) -> Result<(), SinkError> {
        self.aggregator.record(report, now_ns / 1_000_000_000);
        for sink in &mut self.sinks {
            sink.attempt(report)?;
        }
        Ok(())
    }

    /// Takes on what the workload stage held and may now let go (`all`:
    /// everything, at shutdown).
    fn release(&mut self, now_ns: u64, all: bool) -> Result<(), SinkError> {
        let Some(identity) = &mut self.identity else {
            return Ok(());
        };
        let now = Instant::now();
        identity.apply_lookups(now);
        let released = if all {
            identity.finish(now)
        } else {
            identity.release(now)
        };
        for report in &released {
            self.report(report, now_ns)?;
        }
        Ok(())
    }
}

impl Pipeline {
    /// A pipeline feeding `sinks`, counting into `ledger`, next to the
    /// kernel's counters in `kernel`; with `identity`, every attempt is
    /// named by its workload (and filtered by it).
    pub fn new(
        config: PipelineConfig,
        kernel: Arc<KernelStats>,
        ledger: Arc<Ledger>,
        sinks: Vec<Box<dyn Sink>>,
        identity: Option<Identity>,
    ) -> Self {
        if let Some(identity) = &identity {
            ledger.watch_filtered(identity.filtered());
        }
        Self {
            resolver: Resolver::new(config.resolver),
            downstream: Downstream {
                identity,
                aggregator: Aggregator::new(DEFAULT_CAPACITY, SystemTime::now()),
                sinks,
            },
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
        let now = Instant::now();
        let Self {
            resolver,
            downstream,
            ..
        } = self;
        let mut calls = 0;
        let drained = reader.drain(|record| {
            observe(record);
            if let Record::Connect(attempt) = record {
                calls += 1;
                if let Some(identity) = &mut downstream.identity {
                    identity.notice(attempt.cgroup_id(), attempt.pid(), now);
                }
            }
            resolver.on_record(record, now_ns, &mut |resolved| {
                downstream.take(resolved, now_ns)
            })
        })?;
        self.ledger.delivered(calls, drained.undecodable);
        self.downstream.release(now_ns, false)?;
        self.end_batch()
    }

    /// Reports attempts whose resolution timeout passed as `in_progress`.
    /// Call about once a second.
    pub fn expire(&mut self) -> Result<(), PipelineError> {
        let now_ns = WallClock::monotonic_now_ns();
        let Self {
            resolver,
            downstream,
            ..
        } = self;
        resolver.expire(now_ns, &mut |resolved| downstream.take(resolved, now_ns))?;
        if resolver.shrink() {
            give_back_free_memory();
        }
        downstream.release(now_ns, false)?;
        for sink in &mut downstream.sinks {
            sink.housekeeping();
        }
        self.end_batch()
    }

    /// Closes the summary interval and hands its summary to the sinks.
    pub fn summarize(&mut self) -> Result<(), PipelineError> {
        let delivery = self.delivery()?;
        let now_secs = WallClock::monotonic_now_ns() / 1_000_000_000;
        let summary =
            self.downstream
                .aggregator
                .summarize(SystemTime::now(), now_secs, self.top, delivery);
        for sink in &mut self.downstream.sinks {
            sink.summary(&summary)?;
        }
        self.end_batch()
    }

    /// Tells the sinks that tracing is live.
    pub fn started(&mut self, started: &Started) -> Result<(), PipelineError> {
        for sink in &mut self.downstream.sinks {
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
            downstream,
            ..
        } = self;
        resolver.finish(&mut |resolved| downstream.take(resolved, now_ns))?;
        downstream.release(now_ns, true)?;
        self.end_batch()?;
        if summaries {
            self.summarize()?;
        }
        // The stopped record's counts include every line before it.
        for sink in &mut self.downstream.sinks {
            sink.settle();
        }
        let stopped = Stopped {
            kind: "stopped",
            ts: SystemTime::now(),
            delivery: self.delivery()?,
        };
        for sink in &mut self.downstream.sinks {
            sink.stopped(&stopped)?;
        }
        // The stopped line itself is written now: count it too.
        self.delivery().map_err(PipelineError::from)
    }

    /// Reopens the sinks' files (SIGHUP).
    pub fn reopen(&mut self) -> Result<(), PipelineError> {
        for sink in &mut self.downstream.sinks {
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
        for sink in &mut self.downstream.sinks {
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
