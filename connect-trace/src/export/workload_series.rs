//! Attempts and failures per workload (namespace, pod, container), with a
//! bound on the number of series.
//!
//! A node may run thousands of short-lived pods over a day; a series per
//! workload ever seen would grow without end. So at most
//! [`MAX_WORKLOADS`] workloads have series of their own at once; attempts
//! of any other go to one `other` series (namespace, pod and container all
//! `other`), and the workloads sent there are counted. A workload not seen
//! for [`FORGET_AFTER`] loses its series, which makes room for new ones.

use std::{
    collections::hash_map::Entry,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{
    IntCounter, IntCounterVec, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use rustc_hash::FxHashMap;

use crate::{
    aggregate::FailureKind,
    resolve::Outcome,
    workload::{Workload, WorkloadCounters},
};

/// The most workloads with series of their own at once.
pub const MAX_WORKLOADS: usize = 500;
/// How long a workload keeps its series after its last attempt.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Labels of one workload: Kubernetes namespace, pod, container name (or
/// the container's short id when it has no name); empty where they do not
/// apply (a host process has all three empty).
type Key = (Arc<str>, Arc<str>, Arc<str>);

struct Series {
    last_seen: Instant,
    attempts: IntCounter,
    /// Failure counters by class, fetched once each.
    failures: FxHashMap<&'static str, IntCounter>,
    /// The series' key, for the labels of a class's first failure.
    labels: Key,
}

/// The per-workload counters.
pub struct WorkloadSeries {
    attempts: IntCounterVec,
    failures: IntCounterVec,
    overflow: IntCounter,
    series: Mutex<FxHashMap<Key, Series>>,
    /// The empty label and `other`, shared: a host process's key is three
    /// clones of `empty`, not three new allocations per event.
    empty: Arc<str>,
    other: Arc<str>,
}

const OTHER: &str = "other";

impl WorkloadSeries {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = ["namespace", "pod", "container"];
        let attempts = IntCounterVec::new(
            Opts::new(
                "connect_trace_workload_attempts_total",
                "connect() attempts by Kubernetes namespace, pod and container (repeats excluded); at most 500 workloads, the rest under \"other\".",
            ),
            &labels,
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "connect_trace_workload_failures_total",
                "Failed or canceled connect() attempts by namespace, pod, container and error class.",
            ),
            &["namespace", "pod", "container", "class"],
        )?;
        let overflow = IntCounter::new(
            "connect_trace_workload_series_overflow_total",
            "Attempts counted under the \"other\" workload because 500 workloads already had series.",
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(overflow.clone()))?;
        Ok(Self {
            attempts,
            failures,
            overflow,
            series: Mutex::new(FxHashMap::default()),
            empty: Arc::from(""),
            other: Arc::from(OTHER),
        })
    }

    /// Counts one attempt (not a repeat) of `workload`.
    pub fn record(&self, workload: &Workload, outcome: Outcome, now: Instant) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let mut key = key_of(workload, &self.empty);
        if series.len() >= MAX_WORKLOADS && !series.contains_key(&key) {
            self.overflow.inc();
            key = (
                Arc::clone(&self.other),
                Arc::clone(&self.other),
                Arc::clone(&self.other),
            );
        }
        // One hash of the key per event (it was three: two `contains_key`
        // and a `get_mut`). With the shared empty label, the Prometheus
        // stage went from 750 to 1,000 ns per event to under 300 ns
        // (`examples/pipeline_cost.rs unix`, alternating runs).
        let entry = match series.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let key = entry.key();
                let attempts = self.attempts.with_label_values(&[&key.0, &key.1, &key.2]);
                let labels = key.clone();
                entry.insert(Series {
                    last_seen: now,
                    attempts,
                    failures: FxHashMap::default(),
                    labels,
                })
            }
        };
        entry.last_seen = now;
        entry.attempts.inc();
        let Some(kind) = FailureKind::of(outcome) else {
            return;
        };
        let class = kind.class().unwrap_or("unknown");
        let failures = &self.failures;
        let labels = &entry.labels;
        entry
            .failures
            .entry(class)
            .or_insert_with(|| {
                failures.with_label_values(&[&labels.0, &labels.1, &labels.2, class])
            })
            .inc();
    }

    /// Removes the series of workloads not seen for [`FORGET_AFTER`].
    pub fn forget_stale(&self, now: Instant) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        series.retain(|(namespace, pod, container), series| {
            let keep = now.duration_since(series.last_seen) < FORGET_AFTER;
            if !keep {
                let _ = self
                    .attempts
                    .remove_label_values(&[&**namespace, &**pod, &**container]);
                for class in series.failures.keys() {
                    let _ = self.failures.remove_label_values(&[
                        &**namespace,
                        &**pod,
                        &**container,
                        *class,
                    ]);
                }
            }
            keep
        });
    }
}

/// Workload identity's own counters (cache misses, runtime lookups and
/// their failures, records held or let go early), read at each scrape as
/// `connect_trace_workload_events_total{event}`.
pub struct WorkloadEventsCollector {
    counters: Arc<WorkloadCounters>,
    events: IntCounterVec,
    lock: Mutex<()>,
}

impl WorkloadEventsCollector {
    /// Reads `counters` at each scrape.
    pub fn new(counters: Arc<WorkloadCounters>) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "connect_trace_workload_events_total",
                "What naming containers and pods did, by event: cache misses, cgroups not found, runtime lookups (found, not found, unavailable, dropped), runtime errors, records held or let go early (see docs/containers.md).",
            ),
            &["event"],
        )?;
        Ok(Self {
            counters,
            events,
            lock: Mutex::new(()),
        })
    }
}

impl Collector for WorkloadEventsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.events.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(_guard) = self.lock.lock() else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Object(counts)) = serde_json::to_value(self.counters.snapshot())
        else {
            return Vec::new();
        };
        self.events.reset();
        for (event, count) in counts {
            if let Some(count) = count.as_u64() {
                self.events.with_label_values(&[&event]).inc_by(count);
            }
        }
        self.events.collect()
    }
}

fn key_of(workload: &Workload, empty: &Arc<str>) -> Key {
    let empty = || Arc::clone(empty);
    let pod = workload.pod.as_ref();
    let namespace = pod
        .and_then(|pod| pod.namespace.clone())
        .unwrap_or_else(empty);
    let pod_name = pod.and_then(|pod| pod.name.clone()).unwrap_or_else(empty);
    let container = pod
        .and_then(|pod| pod.container.clone())
        .or_else(|| workload.container.as_ref().and_then(|c| c.name.clone()))
        .or_else(|| {
            workload
                .container
                .as_ref()
                .map(|c| Arc::from(&c.id[..c.id.len().min(12)]))
        })
        .unwrap_or_else(empty);
    (namespace, pod_name, container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Container, Metadata, Pod};

    fn pod(namespace: &str, name: &str, container: &str) -> Workload {
        Workload {
            cgroup_id: 9,
            cgroup: Some(Arc::from("/kubepods/x")),
            cgroup_v1: false,
            container: Some(Container {
                id: Arc::from("0123456789abcdef0123"),
                name: Some(Arc::from(container)),
                image: None,
                runtime: None,
            }),
            pod: Some(Pod {
                name: Some(Arc::from(name)),
                namespace: Some(Arc::from(namespace)),
                uid: None,
                container: Some(Arc::from(container)),
            }),
            metadata: Metadata::Known,
        }
    }

    #[test]
    fn series_are_bounded_and_forgotten() {
        let registry = Registry::new();
        let series = WorkloadSeries::new(&registry).unwrap();
        let now = Instant::now();
        let refused = Outcome::Failed(Some(libc::ECONNREFUSED));
        for index in 0..MAX_WORKLOADS + 10 {
            series.record(&pod("shop", &format!("web-{index}"), "app"), refused, now);
        }
        assert_eq!(series.overflow.get(), 10);
        assert_eq!(
            series
                .attempts
                .with_label_values(&["other", "other", "other"])
                .get(),
            10
        );
        assert_eq!(
            series
                .failures
                .with_label_values(&["shop", "web-3", "app", "refused"])
                .get(),
            1
        );
        series.forget_stale(now + FORGET_AFTER);
        let families = registry.gather();
        let attempts = families
            .iter()
            .find(|family| family.name() == "connect_trace_workload_attempts_total")
            .map_or(0, |family| family.get_metric().len());
        assert_eq!(attempts, 0, "every series forgotten");
    }
}
