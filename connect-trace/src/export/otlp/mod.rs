//! OpenTelemetry: each attempt as an OTLP log record, and the attempt
//! metrics, sent to a Collector over gRPC or OTLP/HTTP (docs/otlp.md).
//!
//! - [`settings`]: the `--otlp-*` options and the standard `OTEL_*`
//!   variables, checked at start-up;
//! - [`mapping`]: an attempt as a log record (semantic-convention
//!   attributes, `connect_trace.*` for our own facts, a sentence for
//!   people), and the resource;
//! - [`metrics`]: the attempt counters and duration histograms, with the
//!   Prometheus metrics' labels and buckets;
//! - [`queue`]: the bounded hand-off between the pipeline's thread and the
//!   exporter's, which counts every record exported or dropped;
//! - [`exporter`]: the exporter's thread (batches, retries with backoff,
//!   the log lines when an endpoint goes away and comes back);
//! - [`transport`]: the gRPC (tonic) and OTLP/HTTP (hyper) clients;
//! - [`collector`]: the exporter's counts at `/metrics`.
//!
//! The wire format is the official OTLP protobuf definitions, as the
//! `opentelemetry-proto` crate generates them. The OpenTelemetry SDK's log
//! and metric pipelines are not used: building an SDK log record costs
//! more per event than the rest of the daemon together, and its queue's
//! drops cannot be counted where users see the others (docs/otlp.md has
//! the measurements).
//!
//! What [`OtlpSink`] does per attempt is bounded and never waits: a count
//! in its own metrics and a copy of the report into a vector it owns (or a
//! count of one more dropped record when the queue has no room). Once per
//! pipeline batch it hands both to the exporter under one short lock.

pub mod collector;
pub mod encode;
pub mod exporter;
pub mod mapping;
pub mod metrics;
pub mod queue;
pub mod settings;
pub mod transport;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use thiserror::Error;

use self::{
    collector::OtlpCollector,
    exporter::{CLOSE_BUDGET, ExportStats, Plan, Signal, Worker},
    metrics::AttemptMetrics,
    queue::{Chunk, Queue, QueuedAttempt, unix_nanos},
    settings::OtlpSettings,
    transport::{Kind, Transport},
};
use super::{Sink, SinkError};
use crate::{clock::WallClock, delivery::Ledger, report::AttemptReport};

/// How long closing waits for the exporter: its own budget, and a margin.
const CLOSE_WAIT: Duration = Duration::from_millis(CLOSE_BUDGET.as_millis() as u64 + 1000);

/// The exporter could not start.
#[derive(Debug, Error)]
pub enum OtlpError {
    /// Its runtime or thread could not be made.
    #[error("starting the OTLP exporter: {0}")]
    Start(#[from] std::io::Error),
    /// A client could not be made for an endpoint.
    #[error("OTLP endpoint {0}")]
    Endpoint(String),
}

/// Sends every attempt as an OTLP log record, and the attempt metrics.
pub struct OtlpSink {
    queue: Arc<Queue>,
    totals: Arc<Mutex<AttemptMetrics>>,
    stats: Arc<ExportStats>,
    worker: Option<Worker>,
    /// Attempts of this pipeline batch, not yet handed over.
    staged: Vec<QueuedAttempt>,
    /// How many may be staged: the queue's room when last asked.
    room: usize,
    /// Attempts of this batch that had no room.
    dropped: u64,
    /// This batch's metric counts.
    delta: AttemptMetrics,
    clock: WallClock,
    logs: bool,
    metrics: bool,
    max_queue: usize,
    /// Records are being dropped for want of room (logged once).
    overflowing: bool,
}

impl OtlpSink {
    /// Starts the exporter's thread for `settings`, counting into
    /// `ledger`. Start it once the daemon's capabilities are dropped:
    /// threads keep those they start with.
    pub fn start(settings: OtlpSettings, ledger: Arc<Ledger>) -> Result<Self, OtlpError> {
        let OtlpSettings {
            logs,
            metrics,
            headers,
            resource,
            timeout,
            metric_interval,
            schedule_delay,
            max_queue,
            max_batch,
        } = settings;
        let queue = Arc::new(Queue::new(max_queue, max_batch, ledger));
        let totals = Arc::new(Mutex::new(AttemptMetrics::default()));
        let stats = Arc::new(ExportStats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The gRPC channel starts its connection task in the runtime it is
        // made in: the exporter's.
        let signal = |kind, destination: &Option<settings::Destination>| {
            let _entered = runtime.enter();
            destination
                .as_ref()
                .map(|destination| {
                    Transport::new(kind, destination, &headers, timeout)
                        .map(|transport| Signal {
                            transport,
                            url: destination.display_url(),
                        })
                        .map_err(OtlpError::Endpoint)
                })
                .transpose()
        };
        let (logs_signal, metrics_signal) =
            (signal(Kind::Logs, &logs)?, signal(Kind::Metrics, &metrics)?);
        let worker = Worker::spawn(
            runtime,
            Plan {
                logs: logs_signal,
                metrics: metrics_signal,
                queue: Arc::clone(&queue),
                totals: Arc::clone(&totals),
                stats: Arc::clone(&stats),
                resource: mapping::resource(&resource),
                timeout,
                max_batch,
                schedule_delay,
                metric_interval,
                start_unix_nano: unix_nanos(SystemTime::now()),
            },
        )?;
        Ok(Self {
            queue,
            totals,
            stats,
            worker: Some(worker),
            staged: Vec::new(),
            room: max_queue,
            dropped: 0,
            delta: AttemptMetrics::default(),
            clock: WallClock::new(),
            logs: logs.is_some(),
            metrics: metrics.is_some(),
            max_queue,
            overflowing: false,
        })
    }

    /// The exporter's counts for `/metrics`.
    pub fn collector(&self) -> Result<OtlpCollector, prometheus::Error> {
        OtlpCollector::new(Arc::clone(&self.queue), Arc::clone(&self.stats))
    }

    /// Hands this batch's records and counts to the exporter.
    fn hand_off(&mut self) {
        if self.delta.changed() {
            let delta = self.delta.take();
            match self.totals.lock() {
                Ok(mut totals) => totals.absorb(&delta),
                Err(poisoned) => poisoned.into_inner().absorb(&delta),
            }
        }
        if self.staged.is_empty() && self.dropped == 0 {
            return;
        }
        let chunk = Chunk {
            observed_unix_nano: unix_nanos(SystemTime::now()),
            attempts: std::mem::take(&mut self.staged),
        };
        let dropped = std::mem::take(&mut self.dropped);
        let (room, spare) = self.queue.push(chunk, dropped);
        self.room = room;
        self.staged = spare;
        if dropped > 0 && !self.overflowing {
            self.overflowing = true;
            tracing::warn!(
                "OTLP: {} log records wait to be exported already (the endpoint is slow or unreachable); new ones are dropped and counted (otlp_dropped) until there is room",
                self.max_queue
            );
        } else if dropped == 0 && self.overflowing {
            self.overflowing = false;
            tracing::info!("OTLP: the queue of log records has room again");
        }
        self.clock.resync();
    }
}

impl Sink for OtlpSink {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        if self.metrics {
            self.delta.record(&report.resolved);
        }
        if self.logs {
            if self.staged.len() >= self.room {
                // The exporter may have made room since the last hand-off.
                self.room = self.queue.room();
            }
            if self.worker.is_none() {
                // Settled: the exporter is gone, nothing more is sent.
                self.dropped += 1;
            } else if self.staged.len() < self.room {
                self.staged.push(QueuedAttempt::new(report, &self.clock));
            } else {
                self.dropped += 1;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.hand_off();
        Ok(())
    }

    /// Called once, when the daemon stops: nothing more will come, so the
    /// exporter sends what is still queued and the last metrics, within
    /// its closing budget, and what it could not send is counted as
    /// dropped, all before the `stopped` record reads the counts.
    fn settle(&mut self) {
        self.hand_off();
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        if !worker.close(CLOSE_WAIT) {
            let given_up = self.queue.abandon();
            tracing::warn!(
                "OTLP: the exporter did not finish within {CLOSE_WAIT:?}; {given_up} log records were not delivered (otlp_dropped)"
            );
        } else if !self.queue.is_empty() {
            self.queue.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::{
        settings::{Destination, Protocol},
        *,
    };
    use crate::{
        decode::{ConnectAttempt, attempt::tests::sample_record},
        resolve::{Outcome, ResolvedAttempt},
        workload::{Container, Metadata, Workload},
    };

    fn reports() -> Vec<AttemptReport> {
        let workload = Arc::new(Workload {
            cgroup_id: 7,
            cgroup: Some(Arc::from("/docker/abc")),
            cgroup_v1: false,
            container: Some(Container {
                id: Arc::from("abc"),
                name: Some(Arc::from("web")),
                image: Some(Arc::from("nginx:1")),
                runtime: None,
            }),
            pod: None,
            metadata: Metadata::Known,
        });
        [
            Outcome::Failed(Some(111)),
            Outcome::Connected,
            Outcome::Canceled,
            Outcome::Failed(Some(110)),
        ]
        .into_iter()
        .map(|outcome| AttemptReport {
            resolved: ResolvedAttempt {
                attempt: ConnectAttempt::from_record(sample_record()),
                outcome,
                handshake_ns: Some(40_000),
                repeat: false,
            },
            workload: Some(Arc::clone(&workload)),
        })
        .collect()
    }

    /// What the sink costs per attempt on the pipeline's thread, and what
    /// turning attempts into an encoded request costs on the exporter's.
    /// A measurement, not a check: `cargo +1.99.1 test --release -p
    /// connect-trace --lib export::otlp::tests::cost -- --ignored
    /// --nocapture` (docs/otlp.md has the figures).
    #[test]
    #[ignore = "a measurement: run it by hand, in release mode"]
    fn cost() {
        let closed = Destination {
            protocol: Protocol::Grpc,
            url: "http://127.0.0.1:1".parse().unwrap(),
        };
        let settings = |max_queue| OtlpSettings {
            logs: Some(closed.clone()),
            metrics: Some(closed.clone()),
            headers: Vec::new(),
            resource: vec![("service.name".into(), "bench".into())],
            timeout: Duration::from_secs(1),
            metric_interval: Duration::from_secs(3600),
            schedule_delay: Duration::from_secs(1),
            max_queue,
            max_batch: 512,
        };
        let reports = reports();
        let events = 400_000;
        // Pipeline batches of 64 attempts, as under a steady load.
        let batch = 64;
        // The harness alone: the same loop and clock reads, no sink.
        for round in 0..3 {
            let mut spent = Duration::ZERO;
            for first in (0..events).step_by(batch) {
                let started = thread_cpu_time();
                for index in first..first + batch {
                    black_box(&reports[index % reports.len()]);
                }
                spent += thread_cpu_time().saturating_sub(started);
            }
            let per_event = spent.as_nanos() as f64 / events as f64;
            println!("harness alone, round {round}: {per_event:.0} ns of CPU per attempt");
        }
        for (what, max_queue, drained) in
            [("queued", 8192, true), ("dropped (queue full)", 1, false)]
        {
            for round in 0..3 {
                let ledger = Arc::new(Ledger::default());
                let mut sink = OtlpSink::start(settings(max_queue), Arc::clone(&ledger)).unwrap();
                let mut spent = Duration::ZERO;
                for first in (0..events).step_by(batch) {
                    let started = thread_cpu_time();
                    for index in first..first + batch {
                        sink.attempt(black_box(&reports[index % reports.len()]))
                            .unwrap();
                    }
                    sink.flush().unwrap();
                    spent += thread_cpu_time().saturating_sub(started);
                    // Stands for an exporter that keeps up (the real one
                    // finds the endpoint closed), unmeasured, so that
                    // vectors are reused as in a steady state.
                    while drained && let Some(taken) = sink.queue.take(512) {
                        sink.queue.settle(taken, 0, 0);
                    }
                }
                let per_event = spent.as_nanos() as f64 / events as f64;
                println!(
                    "sink, {what}, round {round}: {per_event:.0} ns of CPU per attempt ({} of {events} dropped)",
                    ledger.daemon_counts().otlp_dropped
                );
                // Abandon, do not wait for the exporter.
                sink.queue.abandon();
            }
        }
        let clock = WallClock::new();
        let chunk = Chunk {
            observed_unix_nano: 1,
            attempts: (0..512)
                .map(|index| QueuedAttempt::new(&reports[index % reports.len()], &clock))
                .collect(),
        };
        let resource = mapping::resource(&[("service.name".into(), "bench".into())]);
        let mut encoder = encode::LogEncoder::new(&resource, &mapping::scope());
        let batch = [chunk];
        for round in 0..3 {
            let started = thread_cpu_time();
            let mut bytes = 0;
            for _ in 0..100 {
                bytes += black_box(encoder.request(black_box(&batch))).len();
            }
            let spent = thread_cpu_time().saturating_sub(started);
            let per_record = spent.as_nanos() as f64 / (100.0 * 512.0);
            println!(
                "exporter, round {round}: {per_record:.0} ns of CPU per log record encoded ({} bytes each)",
                bytes / (100 * 512)
            );
        }
    }

    /// CPU time this thread has used: unlike the wall clock, it does not
    /// count the time other processes on a busy machine take.
    fn thread_cpu_time() -> Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid out-pointer; the clock always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        Duration::new(
            u64::try_from(now.tv_sec).unwrap(),
            u32::try_from(now.tv_nsec).unwrap(),
        )
    }
}
