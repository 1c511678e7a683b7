//! Prometheus metrics (names and labels: `docs/metrics.md`).
//!
//! Label values come from small closed sets (families, outcomes, errno
//! names), except the two `top_*` gauges, whose series are capped at the
//! summary's top-K and replaced every interval, so cardinality cannot grow
//! with traffic.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use thiserror::Error;

use crate::{
    aggregate::{FailureKind, Summary},
    kernel_counts::OutcomeTally,
    probe::KernelCounters,
    resolve::{Outcome, ResolvedAttempt, ResolverStats},
    sockaddr::Family,
};

/// A metric could not be created or encoded.
#[derive(Debug, Error)]
#[error("prometheus metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Buckets for connect() syscall time: 1 µs to 10 s.
const CONNECT_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1, 1.0,
    10.0,
];
/// Buckets for handshake time: 10 µs to 2 min (SYN retries take minutes).
const HANDSHAKE_BUCKETS: &[f64] = &[
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
    kernel_attempts: IntCounterVec,
    records_delivered: IntCounter,
    records_lost: IntCounterVec,
    records_unwritten: IntCounter,
    unresolved: IntCounterVec,
    pending: IntGauge,
    top_destinations: IntGaugeVec,
    top_processes: IntGaugeVec,
    attached: IntGauge,
    /// Kernel counts already added to the counters, to add only the delta.
    seen_kernel: std::sync::Mutex<KernelSeen>,
    /// `attempts` children by family and outcome index, fetched once:
    /// looking a child up by its label strings costs a hash per event.
    attempt_children: Vec<IntCounter>,
    /// `failures` children fetched so far (a bounded set: families × errors).
    failure_children: std::sync::Mutex<std::collections::HashMap<(usize, FailureKind), IntCounter>>,
}

#[derive(Default)]
struct KernelSeen {
    outcomes: OutcomeTally,
    ringbuf_full: u64,
    outcome_ringbuf_full: u64,
    timed_out: u64,
    evicted: u64,
}

/// Family labels, by [`family_index`].
const FAMILY_LABELS: [&str; 5] = ["unspec", "unix", "inet", "inet6", "other"];

/// Outcome labels, by [`outcome_index`].
const OUTCOME_LABELS: [&str; 4] = ["connected", "failed", "canceled", "in_progress"];

/// The index of a family's label in [`FAMILY_LABELS`].
const fn family_index(family: Option<Family>) -> usize {
    match family {
        Some(Family::Unspec) => 0,
        Some(Family::Unix) => 1,
        Some(Family::Inet) => 2,
        Some(Family::Inet6) => 3,
        Some(Family::Other(_)) | None => 4,
    }
}

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Connected => 0,
        Outcome::Failed(_) => 1,
        Outcome::Canceled => 2,
        Outcome::InProgress => 3,
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
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
        let failures = counter_vec(
            "connect_trace_failures_total",
            "Failed or canceled connect() attempts by family, error (errno name, canceled or unknown) and its class (refused, timeout, unreachable, ...).",
            &["family", "error", "class"],
        )?;
        let kernel_attempts = counter_vec(
            "connect_trace_kernel_attempts_total",
            "connect() attempts counted in the kernel by family, final outcome and error; exact even when records are lost.",
            &["family", "outcome", "error"],
        )?;
        let records_lost = counter_vec(
            "connect_trace_records_lost_total",
            "Records dropped in the kernel because the ring buffer was full, by record kind (call or outcome).",
            &["record"],
        )?;
        let unresolved = counter_vec(
            "connect_trace_unresolved_total",
            "Attempts reported as in_progress without waiting for their handshake, by reason (timeout or capacity).",
            &["reason"],
        )?;
        let repeats = IntCounter::new(
            "connect_trace_repeats_total",
            "Repeated connect() calls on a socket already connecting or connected.",
        )?;
        let records_unwritten = IntCounter::new(
            "connect_trace_records_unwritten_total",
            "Records the daemon could not write to its output (disk full, permissions).",
        )?;
        let records_delivered = IntCounter::new(
            "connect_trace_records_delivered_total",
            "Call records that reached the daemon from the ring buffer.",
        )?;
        let pending = IntGauge::new(
            "connect_trace_pending_attempts",
            "Attempts waiting for their handshake to end.",
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
                "Failures in the last summary interval of the top failing destinations (at most --top series).",
            ),
            &["destination"],
        )?;
        let top_processes = IntGaugeVec::new(
            Opts::new(
                "connect_trace_top_process_failures",
                "Failures in the last summary interval of the top failing process names (at most --top series).",
            ),
            &["process"],
        )?;
        for metric in [
            Box::new(repeats.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(records_delivered.clone()),
            Box::new(records_unwritten.clone()),
            Box::new(pending.clone()),
            Box::new(attached.clone()),
            Box::new(connect_duration.clone()),
            Box::new(handshake_duration.clone()),
            Box::new(top_destinations.clone()),
            Box::new(top_processes.clone()),
        ] {
            registry.register(metric)?;
        }
        let attempt_children = FAMILY_LABELS
            .iter()
            .flat_map(|family| {
                OUTCOME_LABELS
                    .iter()
                    .map(|outcome| attempts.with_label_values(&[*family, *outcome]))
            })
            .collect();
        Ok(Self {
            attempt_children,
            failure_children: std::sync::Mutex::default(),
            registry,
            failures,
            repeats,
            connect_duration,
            handshake_duration,
            kernel_attempts,
            records_delivered,
            records_lost,
            records_unwritten,
            unresolved,
            pending,
            top_destinations,
            top_processes,
            attached,
            seen_kernel: std::sync::Mutex::new(KernelSeen::default()),
        })
    }

    /// Counts one resolved attempt. Runs once per event: no allocation and
    /// no label lookups once each series has been seen.
    pub fn record(&self, resolved: &ResolvedAttempt) {
        let attempt = &resolved.attempt;
        self.connect_duration
            .observe(attempt.latency_ns() as f64 / 1e9);
        if resolved.repeat {
            self.repeats.inc();
            return;
        }
        let family = family_index(attempt.destination().family);
        let outcome = resolved.outcome;
        if let Some(counter) = self
            .attempt_children
            .get(family * OUTCOME_LABELS.len() + outcome_index(outcome))
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
                        FAMILY_LABELS[family],
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
    }

    /// Counts records that could not be written.
    pub fn unwritten(&self, records: u64) {
        self.records_unwritten.inc_by(records);
    }

    /// Counts records taken from the ring buffer.
    pub fn delivered(&self, records: u64) {
        self.records_delivered.inc_by(records);
    }

    /// Brings the kernel-side counters and the resolver's up to date.
    pub fn update(
        &self,
        kernel: &KernelCounters,
        outcomes: &OutcomeTally,
        resolver: ResolverStats,
    ) {
        let Ok(mut seen) = self.seen_kernel.lock() else {
            return;
        };
        for (slot, count) in outcomes.nonzero() {
            let before = seen.outcomes.count(slot);
            if count > before {
                let (family, outcome, error) = OutcomeTally::labels(slot);
                self.kernel_attempts
                    .with_label_values(&[family, outcome, &error])
                    .inc_by(count - before);
            }
        }
        seen.outcomes = outcomes.clone();
        let lost_calls = kernel.ringbuf_full.saturating_sub(seen.ringbuf_full);
        let lost_outcomes = kernel
            .outcome_ringbuf_full
            .saturating_sub(seen.outcome_ringbuf_full);
        self.records_lost
            .with_label_values(&["call"])
            .inc_by(lost_calls);
        self.records_lost
            .with_label_values(&["outcome"])
            .inc_by(lost_outcomes);
        seen.ringbuf_full = kernel.ringbuf_full;
        seen.outcome_ringbuf_full = kernel.outcome_ringbuf_full;
        self.unresolved
            .with_label_values(&["timeout"])
            .inc_by(resolver.timed_out.saturating_sub(seen.timed_out));
        self.unresolved
            .with_label_values(&["capacity"])
            .inc_by(resolver.evicted.saturating_sub(seen.evicted));
        seen.timed_out = resolver.timed_out;
        seen.evicted = resolver.evicted;
        self.pending
            .set(i64::try_from(resolver.pending).unwrap_or(i64::MAX));
    }

    /// Replaces the top-K gauges with the interval's heaviest keys.
    pub fn publish_top(&self, summary: &Summary) {
        self.top_destinations.reset();
        for entry in &summary.top.destinations {
            let key = entry
                .key
                .as_str()
                .map_or_else(|| entry.key.to_string(), str::to_owned);
            self.top_destinations
                .with_label_values(&[&key])
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

    /// The exposition in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<Vec<u8>, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// What `/healthz` reports: the programs are attached and the ring buffer is
/// being drained.
#[derive(Debug, Default)]
pub struct Health {
    attached: AtomicBool,
    last_drain_ns: AtomicU64,
}

impl Health {
    /// Marks the programs attached or detached.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
    }

    /// Notes that the ring buffer was drained at monotonic `now_ns`.
    pub fn drained(&self, now_ns: u64) {
        self.last_drain_ns.store(now_ns, Ordering::Relaxed);
    }

    /// `Ok` when healthy at `now_ns`, or why not.
    pub fn check(&self, now_ns: u64, stale_after_ns: u64) -> Result<(), String> {
        if !self.attached.load(Ordering::Relaxed) {
            return Err("the kernel programs are not attached".to_owned());
        }
        let last = self.last_drain_ns.load(Ordering::Relaxed);
        let idle = now_ns.saturating_sub(last);
        if idle > stale_after_ns {
            return Err(format!(
                "the ring buffer has not been drained for {:.1} s",
                idle as f64 / 1e9
            ));
        }
        Ok(())
    }
}

/// Shared between the run loop and the HTTP server.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_attached_programs_and_a_recent_drain() {
        let health = Health::default();
        assert!(health.check(0, 5).unwrap_err().contains("not attached"));
        health.set_attached(true);
        health.drained(100);
        assert_eq!(health.check(103, 5), Ok(()));
        assert!(
            health
                .check(200, 5)
                .unwrap_err()
                .contains("not been drained")
        );
        health.set_attached(false);
        assert!(health.check(101, 5).unwrap_err().contains("not attached"));
    }

    #[test]
    fn exposition_is_prometheus_text() {
        let metrics = Metrics::new().unwrap();
        metrics.set_attached(true);
        let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
        assert!(
            text.contains("# TYPE connect_trace_programs_attached gauge"),
            "{text}"
        );
        assert!(text.contains("connect_trace_programs_attached 1"), "{text}");
    }
}
