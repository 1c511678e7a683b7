//! Prometheus metrics (names and labels: `docs/metrics.md`).
//!
//! Per-attempt counters and histograms are updated by [`PrometheusSink`]
//! as attempts resolve. Everything counted elsewhere (the kernel's exact
//! counts and losses, the daemon's delivery counts) is read when Prometheus
//! scrapes, by a collector over the same [`Ledger`] and kernel maps that
//! the summaries and the final line report, so no copy can drift.
//!
//! Label values come from small closed sets (families, outcomes, errno
//! names), except the two `top_*` gauges, whose series are capped at the
//! summary's top-K and replaced every interval, so cardinality cannot grow
//! with traffic.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use connect_trace_common::family;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use rustc_hash::FxHashMap;
use thiserror::Error;

use super::{
    Sink, SinkError,
    dns_metrics::DnsCollector,
    workload_series::{WorkloadEventsCollector, WorkloadSeries},
};
use crate::{
    aggregate::{FailureKind, Summary},
    decode::Via,
    delivery::{Delivery, Ledger},
    dns::DnsStats,
    kernel::{KernelStats, OutcomeTally},
    report::AttemptReport,
    resolve::Outcome,
    workload::WorkloadCounters,
};

/// A metric could not be created or encoded.
#[derive(Debug, Error)]
#[error("prometheus metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Buckets for connect() syscall time: 1 µs to 10 s.
pub(crate) const CONNECT_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1, 1.0,
    10.0,
];
/// Buckets for handshake time: 10 µs to 2 min (SYN retries take minutes).
pub(crate) const HANDSHAKE_BUCKETS: &[f64] = &[
    1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 130.0,
];

/// Everything the daemon exports.
pub struct Metrics {
    registry: Registry,
    failures: IntCounterVec,
    repeats: IntCounter,
    connect_duration: Histogram,
    handshake_duration: HistogramVec,
    top_destinations: IntGaugeVec,
    top_processes: IntGaugeVec,
    attached: IntGauge,
    /// `attempts` children by family and outcome index, fetched once:
    /// looking a child up by its label strings costs a hash per event.
    attempt_children: Vec<IntCounter>,
    /// `attempts_by_via` children by via and outcome index, fetched once.
    via_children: Vec<IntCounter>,
    /// `failures` children fetched so far (a bounded set: families × errors).
    /// Fx hashing: looked up once per failure, and the keys are a handful
    /// of small values no traced program chooses.
    failure_children: Mutex<FxHashMap<(usize, FailureKind), IntCounter>>,
    /// Attempts and failures per workload, bounded.
    workloads: WorkloadSeries,
}

/// Outcome labels, by [`outcome_index`].
const OUTCOME_LABELS: [&str; 4] = ["connected", "failed", "canceled", "in_progress"];

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Connected => 0,
        Outcome::Failed(_) => 1,
        Outcome::Canceled => 2,
        Outcome::InProgress => 3,
    }
}

impl Metrics {
    /// Creates and registers every metric; the delivery counts and the
    /// kernel's exact counts are read from `counts` at each scrape. `node`
    /// is the node (host) name for `connect_trace_info`.
    pub fn new(counts: Arc<dyn CountSource>, node: Option<&str>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new(
                "connect_trace_info",
                "Always 1: the daemon's version and the node it traces (empty when not named).",
            ),
            &["version", "node"],
        )?;
        registry.register(Box::new(info.clone()))?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), node.unwrap_or("")])
            .set(1);
        let workloads = WorkloadSeries::new(&registry)?;
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let attempts = counter_vec(
            "connect_trace_attempts_total",
            "connect() attempts by address family and final outcome (repeats excluded).",
            &["family", "outcome"],
        )?;
        let attempts_by_via = counter_vec(
            "connect_trace_attempts_by_via_total",
            "connect() attempts by how they were made (syscall, io_uring, compat, fastopen, kernel, other) and final outcome (repeats excluded).",
            &["via", "outcome"],
        )?;
        let failures = counter_vec(
            "connect_trace_failures_total",
            "Failed or canceled connect() attempts by family, error (errno name, canceled or unknown) and its class (refused, timeout, unreachable, ...).",
            &["family", "error", "class"],
        )?;
        let repeats = IntCounter::new(
            "connect_trace_repeats_total",
            "Repeated connect() calls on a socket already connecting or connected.",
        )?;
        let attached = IntGauge::new(
            "connect_trace_programs_attached",
            "1 while the kernel programs are attached.",
        )?;
        let connect_duration = Histogram::with_opts(
            HistogramOpts::new(
                "connect_trace_connect_duration_seconds",
                "Time spent inside the connect() syscall.",
            )
            .buckets(CONNECT_BUCKETS.to_vec()),
        )?;
        let handshake_duration = HistogramVec::new(
            HistogramOpts::new(
                "connect_trace_handshake_duration_seconds",
                "Time from the SYN to the end of the TCP handshake, by outcome.",
            )
            .buckets(HANDSHAKE_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let top_destinations = IntGaugeVec::new(
            Opts::new(
                "connect_trace_top_destination_failures",
                "Failures in the last summary interval of the top failing destinations (at most --top series), with the DNS name the latest attempt to each was named by (empty when none).",
            ),
            &["destination", "server_name"],
        )?;
        let top_processes = IntGaugeVec::new(
            Opts::new(
                "connect_trace_top_process_failures",
                "Failures in the last summary interval of the top failing process names (at most --top series).",
            ),
            &["process"],
        )?;
        for metric in [
            Box::new(repeats.clone()) as Box<dyn Collector>,
            Box::new(attached.clone()),
            Box::new(connect_duration.clone()),
            Box::new(handshake_duration.clone()),
            Box::new(top_destinations.clone()),
            Box::new(top_processes.clone()),
            Box::new(DeliveryCollector::new(counts)?),
        ] {
            registry.register(metric)?;
        }
        let attempt_children = family::LABELS
            .iter()
            .flat_map(|family| {
                OUTCOME_LABELS
                    .iter()
                    .map(|outcome| attempts.with_label_values(&[*family, *outcome]))
            })
            .collect();
        let via_children = Via::ALL
            .iter()
            .flat_map(|via| {
                OUTCOME_LABELS
                    .iter()
                    .map(|outcome| attempts_by_via.with_label_values(&[via.name(), *outcome]))
            })
            .collect();
        Ok(Self {
            attempt_children,
            via_children,
            failure_children: Mutex::default(),
            registry,
            failures,
            repeats,
            connect_duration,
            handshake_duration,
            top_destinations,
            top_processes,
            attached,
            workloads,
        })
    }

    /// Counts one attempt. Runs once per event: no allocation and no label
    /// lookups once each series has been seen.
    pub fn record(&self, report: &AttemptReport) {
        let resolved = &report.resolved;
        let attempt = &resolved.attempt;
        if let Some(latency_ns) = attempt.latency_ns() {
            self.connect_duration.observe(latency_ns as f64 / 1e9);
        }
        if resolved.repeat {
            self.repeats.inc();
            return;
        }
        let family = attempt.family_slot() as usize;
        let outcome = resolved.outcome;
        if let Some(counter) = self
            .attempt_children
            .get(family * OUTCOME_LABELS.len() + outcome_index(outcome))
        {
            counter.inc();
        }
        if let Some(counter) = self
            .via_children
            .get(attempt.via().index() * OUTCOME_LABELS.len() + outcome_index(outcome))
        {
            counter.inc();
        }
        if let Some(kind) = FailureKind::of(outcome)
            && let Ok(mut children) = self.failure_children.lock()
        {
            children
                .entry((family, kind))
                .or_insert_with(|| {
                    self.failures.with_label_values(&[
                        family::LABELS[family],
                        &kind.label(),
                        kind.class().unwrap_or("unknown"),
                    ])
                })
                .inc();
        }
        if let Some(ns) = resolved.handshake_ns
            && outcome != Outcome::InProgress
        {
            self.handshake_duration
                .with_label_values(&[outcome.name()])
                .observe(ns as f64 / 1e9);
        }
        if let Some(workload) = &report.workload {
            self.workloads.record(workload, outcome, Instant::now());
        }
    }

    /// Exports workload identity's counters, read at each scrape.
    pub fn watch_workloads(&self, counters: Arc<WorkloadCounters>) -> Result<(), MetricsError> {
        self.registry
            .register(Box::new(WorkloadEventsCollector::new(counters)?))?;
        Ok(())
    }

    /// Exports the DNS capture's counts, read from `stats` at each scrape.
    pub fn watch_dns(&self, stats: Arc<DnsStats>) -> Result<(), MetricsError> {
        self.registry
            .register(Box::new(DnsCollector::new(stats)?))?;
        Ok(())
    }

    /// Drops the series of workloads not seen for a while. Call about once
    /// a second.
    pub fn housekeeping(&self) {
        self.workloads.forget_stale(Instant::now());
    }

    /// Replaces the top-K gauges with the interval's heaviest keys.
    pub fn publish_top(&self, summary: &Summary) {
        self.top_destinations.reset();
        for entry in &summary.top.destinations {
            let key = entry
                .key
                .as_str()
                .map_or_else(|| entry.key.to_string(), str::to_owned);
            let name = entry.server_name.as_ref().and_then(Option::as_deref);
            self.top_destinations
                .with_label_values(&[&key, name.unwrap_or("")])
                .set(i64::try_from(entry.failures).unwrap_or(i64::MAX));
        }
        self.top_processes.reset();
        for entry in &summary.top.processes {
            let key = entry
                .key
                .as_str()
                .map_or_else(|| entry.key.to_string(), str::to_owned);
            self.top_processes
                .with_label_values(&[&key])
                .set(i64::try_from(entry.failures).unwrap_or(i64::MAX));
        }
    }

    /// Whether the programs are attached (also drives `/healthz`).
    pub fn set_attached(&self, attached: bool) {
        self.attached.set(i64::from(attached));
    }

    /// Adds a collector that reads its values at scrape time, such as
    /// [`super::program_stats::ProgramStatsCollector`].
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), MetricsError> {
        self.registry.register(collector)?;
        Ok(())
    }

    /// The exposition in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<Vec<u8>, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// Where the counts that are not per attempt come from at scrape time.
pub trait CountSource: Send + Sync {
    /// The delivery counts and the kernel's exact counts, read now; `None`
    /// when they cannot be read (the metrics then leave them out).
    fn read(&self) -> Option<(Delivery, OutcomeTally)>;
}

/// The delivery ledger and the kernel's maps, read together.
pub struct LedgerCounts {
    /// The daemon-side counts.
    pub ledger: Arc<Ledger>,
    /// The kernel's counters.
    pub kernel: Arc<KernelStats>,
}

impl CountSource for LedgerCounts {
    fn read(&self) -> Option<(Delivery, OutcomeTally)> {
        let delivery = self.ledger.snapshot(&self.kernel).ok()?;
        let outcomes = self.kernel.outcomes().ok()?;
        Some((delivery, outcomes))
    }
}

/// Reads the counts kept elsewhere when Prometheus scrapes. Its metrics
/// are filled in from one [`CountSource::read`] per scrape and collected
/// at once, under a lock, so concurrent scrapes cannot mix.
struct DeliveryCollector {
    counts: Arc<dyn CountSource>,
    lock: Mutex<()>,
    kernel_attempts: IntCounterVec,
    records_lost: IntCounterVec,
    unresolved: IntCounterVec,
    records_delivered: IntCounter,
    records_written: IntCounter,
    records_unwritten: IntCounter,
    records_undecodable: IntCounter,
    outcomes_unmatched: IntCounter,
    calls_unseen: IntCounter,
    status_checks_unmatched: IntCounter,
    handshakes_expired: IntCounter,
    handshake_ends_at_close: IntCounter,
    events_missed: IntCounter,
    pending: IntGauge,
}

impl DeliveryCollector {
    fn new(counts: Arc<dyn CountSource>) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Self {
            counts,
            lock: Mutex::new(()),
            kernel_attempts: counter_vec(
                "connect_trace_kernel_attempts_total",
                "connect() attempts counted in the kernel by family, final outcome and error; exact even when records are lost.",
                &["family", "outcome", "error"],
            )?,
            records_lost: counter_vec(
                "connect_trace_records_lost_total",
                "Records dropped in the kernel because the ring buffer was full, by record kind (call or outcome).",
                &["record"],
            )?,
            unresolved: counter_vec(
                "connect_trace_unresolved_total",
                "Attempts reported as in_progress without waiting for their handshake, by reason: timeout (--resolve-timeout passed) or capacity (the kernel's or the daemon's set of pending handshakes was full).",
                &["reason"],
            )?,
            records_delivered: counter(
                "connect_trace_records_delivered_total",
                "Call records that reached the daemon from the ring buffer.",
            )?,
            records_written: counter(
                "connect_trace_records_written_total",
                "JSON lines written whole to the output.",
            )?,
            records_unwritten: counter(
                "connect_trace_records_unwritten_total",
                "Records the daemon could not write to its output (disk full, permissions).",
            )?,
            records_undecodable: counter(
                "connect_trace_records_undecodable_total",
                "Ring buffer records that did not decode (a kernel and daemon mismatch; never expected).",
            )?,
            outcomes_unmatched: counter(
                "connect_trace_outcomes_unmatched_total",
                "Handshake outcomes whose connect() call never reached the daemon (its record was lost).",
            )?,
            calls_unseen: counter(
                "connect_trace_calls_unseen_total",
                "connect() calls whose start the kernel programs did not see or could not keep (already inside connect() at start, or no room); not reported.",
            )?,
            status_checks_unmatched: counter(
                "connect_trace_status_checks_unmatched_total",
                "Recent attempts displaced from the kernel's table while a status check (connect() called again to learn the result) could still come for them; such a check would count as an attempt.",
            )?,
            handshakes_expired: counter(
                "connect_trace_handshakes_expired_total",
                "Handshakes the kernel followed but never saw end, removed from its table once older than --resolve-timeout.",
            )?,
            handshake_ends_at_close: counter(
                "connect_trace_handshake_ends_at_close_total",
                "Handshake ends the kernel never reported as a state change, caught as the socket was freed: reported then, from the socket's error.",
            )?,
            events_missed: counter(
                "connect_trace_events_missed_total",
                "Runs of connect-trace's BPF programs the kernel skipped because one was already running on that CPU (recursion misses): calls or handshake events not seen.",
            )?,
            pending: IntGauge::new(
                "connect_trace_pending_attempts",
                "Attempts waiting for their handshake to end.",
            )?,
        })
    }

    fn counters(&self) -> [&IntCounter; 10] {
        [
            &self.events_missed,
            &self.handshakes_expired,
            &self.handshake_ends_at_close,
            &self.records_delivered,
            &self.records_written,
            &self.records_unwritten,
            &self.records_undecodable,
            &self.outcomes_unmatched,
            &self.calls_unseen,
            &self.status_checks_unmatched,
        ]
    }

    fn vecs(&self) -> [&IntCounterVec; 3] {
        [&self.kernel_attempts, &self.records_lost, &self.unresolved]
    }
}

impl Collector for DeliveryCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self.counters().iter().flat_map(|c| c.desc()).collect();
        descs.extend(self.vecs().iter().flat_map(|v| v.desc()));
        descs.extend(self.pending.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some((delivery, outcomes)) = self.counts.read() else {
            return Vec::new();
        };
        let Ok(_guard) = self.lock.lock() else {
            return Vec::new();
        };
        let set = |counter: &IntCounter, value: u64| {
            counter.reset();
            counter.inc_by(value);
        };
        set(&self.records_delivered, delivery.records_delivered);
        set(&self.records_written, delivery.records_written);
        set(&self.records_unwritten, delivery.records_unwritten);
        set(&self.records_undecodable, delivery.records_undecodable);
        set(&self.outcomes_unmatched, delivery.outcomes_unmatched);
        set(&self.calls_unseen, delivery.calls_unseen);
        set(
            &self.status_checks_unmatched,
            delivery.status_checks_unmatched,
        );
        set(&self.handshakes_expired, delivery.handshakes_expired);
        set(
            &self.handshake_ends_at_close,
            delivery.handshake_ends_at_close,
        );
        set(&self.events_missed, delivery.events_missed);
        self.pending
            .set(i64::try_from(delivery.pending).unwrap_or(i64::MAX));
        for vec in self.vecs() {
            vec.reset();
        }
        for (slot, count) in outcomes.nonzero() {
            let (family, outcome, error) = OutcomeTally::labels(slot);
            self.kernel_attempts
                .with_label_values(&[family, outcome, &error])
                .inc_by(count);
        }
        for (record, lost) in [
            ("call", delivery.records_lost),
            ("outcome", delivery.outcomes_lost),
        ] {
            self.records_lost.with_label_values(&[record]).inc_by(lost);
        }
        for (reason, count) in [
            ("timeout", delivery.unresolved_timeout),
            ("capacity", delivery.unresolved_capacity),
        ] {
            self.unresolved.with_label_values(&[reason]).inc_by(count);
        }
        let mut families: Vec<MetricFamily> =
            self.counters().iter().flat_map(|c| c.collect()).collect();
        families.extend(self.vecs().iter().flat_map(|v| v.collect()));
        families.extend(self.pending.collect());
        families
    }
}

/// Feeds resolved attempts and summaries to the [`Metrics`].
pub struct PrometheusSink {
    metrics: Arc<Metrics>,
}

impl PrometheusSink {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl Sink for PrometheusSink {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        self.metrics.record(report);
        Ok(())
    }

    fn summary(&mut self, summary: &Summary) -> Result<(), SinkError> {
        self.metrics.publish_top(summary);
        Ok(())
    }

    fn housekeeping(&mut self) {
        self.metrics.housekeeping();
    }
}

#[cfg(test)]
mod tests {
    use connect_trace_common::outcome::{code, slot};

    use super::*;

    /// Counts that never change.
    struct Fixed;

    impl CountSource for Fixed {
        fn read(&self) -> Option<(Delivery, OutcomeTally)> {
            let mut slots = vec![0; connect_trace_common::outcome::SLOTS as usize];
            slots[slot(2, 111) as usize] = 3;
            slots[slot(2, code::REPEAT) as usize] = 1;
            let delivery = Delivery {
                records_delivered: 4,
                records_lost: 2,
                unresolved_capacity: 5,
                pending: 6,
                handshakes_expired: 7,
                handshake_ends_at_close: 8,
                events_missed: 9,
                ..Delivery::default()
            };
            Some((delivery, OutcomeTally::from_slots(slots)))
        }
    }

    #[test]
    fn counts_kept_elsewhere_are_read_at_each_scrape() {
        let metrics = Metrics::new(Arc::new(Fixed), Some("node-1")).unwrap();
        for _ in 0..2 {
            let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
            for line in [
                "connect_trace_records_delivered_total 4",
                "connect_trace_records_lost_total{record=\"call\"} 2",
                "connect_trace_records_lost_total{record=\"outcome\"} 0",
                "connect_trace_unresolved_total{reason=\"capacity\"} 5",
                "connect_trace_pending_attempts 6",
                "connect_trace_handshakes_expired_total 7",
                "connect_trace_handshake_ends_at_close_total 8",
                "connect_trace_events_missed_total 9",
                "connect_trace_kernel_attempts_total{error=\"ECONNREFUSED\",family=\"inet\",outcome=\"failed\"} 3",
                "connect_trace_kernel_attempts_total{error=\"none\",family=\"inet\",outcome=\"repeat\"} 1",
            ] {
                assert!(text.contains(line), "{line} in\n{text}");
            }
        }
    }

    #[test]
    fn exposition_is_prometheus_text() {
        let metrics = Metrics::new(Arc::new(Fixed), Some("node-1")).unwrap();
        metrics.set_attached(true);
        let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
        assert!(
            text.contains("# TYPE connect_trace_programs_attached gauge"),
            "{text}"
        );
        assert!(text.contains("connect_trace_programs_attached 1"), "{text}");
    }
}
