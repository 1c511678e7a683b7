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
    transport::Transport,
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
        let signal = |destination: &Option<settings::Destination>| {
            let _entered = runtime.enter();
            destination
                .as_ref()
                .map(|destination| {
                    Transport::new(destination, &headers, timeout)
                        .map(|transport| Signal {
                            transport,
                            url: destination.display_url(),
                        })
                        .map_err(OtlpError::Endpoint)
                })
                .transpose()
        };
        let (logs_signal, metrics_signal) = (signal(&logs)?, signal(&metrics)?);
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
            if self.staged.len() < self.room {
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

    fn close(&mut self) -> Result<(), SinkError> {
        self.hand_off();
        let Some(mut worker) = self.worker.take() else {
            return Ok(());
        };
        if !worker.close(CLOSE_WAIT) {
            let given_up = self.queue.abandon();
            tracing::warn!(
                "OTLP: the exporter did not finish within {CLOSE_WAIT:?}; {given_up} log records were not delivered (otlp_dropped)"
            );
        } else if !self.queue.is_empty() {
            self.queue.abandon();
        }
        Ok(())
    }
}
