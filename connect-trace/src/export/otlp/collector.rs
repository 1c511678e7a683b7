//! The OTLP exporter's own counts at `/metrics`, read at each scrape from
//! the delivery ledger (the same counts as the final line and the
//! `stopped` record) and from the exporter.

use std::sync::{Arc, Mutex, atomic::Ordering};

use prometheus::{
    IntCounter, IntCounterVec, IntGauge, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{exporter::ExportStats, queue::Queue};

/// Reads the exporter's counts when Prometheus scrapes.
pub struct OtlpCollector {
    queue: Arc<Queue>,
    stats: Arc<ExportStats>,
    lock: Mutex<()>,
    exported: IntCounter,
    dropped: IntCounter,
    failures: IntCounterVec,
    queued: IntGauge,
}

impl OtlpCollector {
    pub(super) fn new(
        queue: Arc<Queue>,
        stats: Arc<ExportStats>,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            queue,
            stats,
            lock: Mutex::new(()),
            exported: IntCounter::new(
                "connect_trace_otlp_records_exported_total",
                "Log records (one per attempt) the OTLP endpoint accepted.",
            )?,
            dropped: IntCounter::new(
                "connect_trace_otlp_records_dropped_total",
                "Log records never delivered over OTLP: no room in the queue, given up after retries, refused by the endpoint, or still queued at shutdown.",
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "connect_trace_otlp_export_failures_total",
                    "OTLP export requests that failed, each try counted, by signal (logs or metrics).",
                ),
                &["signal"],
            )?,
            queued: IntGauge::new(
                "connect_trace_otlp_queued_records",
                "Log records waiting to be exported over OTLP.",
            )?,
        })
    }
}

impl Collector for OtlpCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.exported.desc();
        descs.extend(self.dropped.desc());
        descs.extend(self.failures.desc());
        descs.extend(self.queued.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(_guard) = self.lock.lock() else {
            return Vec::new();
        };
        let counts = self.queue.ledger().daemon_counts();
        let set = |counter: &IntCounter, value: u64| {
            counter.reset();
            counter.inc_by(value);
        };
        set(&self.exported, counts.otlp_exported);
        set(&self.dropped, counts.otlp_dropped);
        for (signal, count) in [
            ("logs", &self.stats.failed_logs),
            ("metrics", &self.stats.failed_metrics),
        ] {
            let counter = self.failures.with_label_values(&[signal]);
            set(&counter, count.load(Ordering::Relaxed));
        }
        self.queued
            .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        let mut families = self.exported.collect();
        families.extend(self.dropped.collect());
        families.extend(self.failures.collect());
        families.extend(self.queued.collect());
        families
    }
}
