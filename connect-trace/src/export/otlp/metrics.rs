//! The attempt metrics in OTLP: the same counters and histograms, with the
//! same labels and buckets, as the Prometheus ones (docs/metrics.md), so
//! that a Collector's Prometheus exporter turns them into the same series
//! (`connect_trace.attempts` becomes `connect_trace_attempts_total`).
//!
//! The sink counts each attempt into its own [`AttemptMetrics`] (array
//! and small-map updates, no lock) and adds them to the exporter's totals
//! once per pipeline batch. The totals are cumulative: an export that
//! fails loses nothing, since the next one carries everything.

use std::collections::BTreeMap;

use connect_trace_common::{family, outcome::code};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

use crate::{
    aggregate::FailureKind,
    decode::Via,
    export::prometheus::{CONNECT_BUCKETS, HANDSHAKE_BUCKETS},
    resolve::{Outcome, ResolvedAttempt},
};

/// Outcome labels, by [`outcome_index`].
const OUTCOMES: [&str; 4] = ["connected", "failed", "canceled", "in_progress"];
const FAMILIES: usize = family::SLOTS as usize;
const CODES: usize = code::CODES as usize;
const VIAS: usize = Via::ALL.len();

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Connected => 0,
        Outcome::Failed(_) => 1,
        Outcome::Canceled => 2,
        Outcome::InProgress => 3,
    }
}

const CONNECT_SLOTS: usize = CONNECT_BUCKETS.len() + 1;
const HANDSHAKE_SLOTS: usize = HANDSHAKE_BUCKETS.len() + 1;

/// A histogram over fixed bounds: counts per bucket, sum and count.
#[derive(Debug, Clone, PartialEq)]
struct Buckets<const N: usize> {
    counts: [u64; N],
    sum: f64,
    count: u64,
}

impl<const N: usize> Buckets<N> {
    const fn new() -> Self {
        Self {
            counts: [0; N],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts `value` in the first bucket whose bound is not below it
    /// (upper bounds are inclusive, as Prometheus' `le` and OTLP say).
    fn observe(&mut self, bounds: &[f64], value: f64) {
        let index = bounds.partition_point(|bound| *bound < value);
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn absorb(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Attempt counts and durations, cumulative or as a delta.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptMetrics {
    /// By family slot and outcome index (repeats excluded).
    attempts: [[u64; OUTCOMES.len()]; FAMILIES],
    /// By [`Via::index`] and outcome index (repeats excluded).
    by_via: [[u64; OUTCOMES.len()]; VIAS],
    /// Failures by family slot and counting code (the errno, unknown or
    /// canceled): an array, so that counting one is an index.
    failures: [[u64; CODES]; FAMILIES],
    /// Failures with an errno beyond the counting codes (never seen on
    /// Linux, kept exact all the same).
    other_failures: BTreeMap<(usize, FailureKind), u64>,
    repeats: u64,
    connect: Buckets<CONNECT_SLOTS>,
    /// By outcome index, for connected, failed and canceled.
    handshake: [Buckets<HANDSHAKE_SLOTS>; 3],
    changed: bool,
}

impl Default for AttemptMetrics {
    fn default() -> Self {
        Self {
            attempts: [[0; OUTCOMES.len()]; FAMILIES],
            by_via: [[0; OUTCOMES.len()]; VIAS],
            failures: [[0; CODES]; FAMILIES],
            other_failures: BTreeMap::new(),
            repeats: 0,
            connect: Buckets::new(),
            handshake: [Buckets::new(), Buckets::new(), Buckets::new()],
            changed: false,
        }
    }
}

impl AttemptMetrics {
    /// Counts one attempt, as the Prometheus sink does. Runs once per
    /// event: array updates and, for a failure, a lookup in a small map.
    pub fn record(&mut self, resolved: &ResolvedAttempt) {
        self.changed = true;
        let attempt = &resolved.attempt;
        if let Some(latency_ns) = attempt.latency_ns() {
            self.connect
                .observe(CONNECT_BUCKETS, latency_ns as f64 / 1e9);
        }
        if resolved.repeat {
            self.repeats += 1;
            return;
        }
        let family = (attempt.family_slot() as usize).min(FAMILIES - 1);
        let outcome = resolved.outcome;
        self.attempts[family][outcome_index(outcome)] += 1;
        self.by_via[attempt.via().index()][outcome_index(outcome)] += 1;
        if let Some(kind) = FailureKind::of(outcome) {
            let slot = outcome.code() as usize;
            match (kind, self.failures[family].get_mut(slot)) {
                (FailureKind::Errno(_), Some(count)) if slot != code::FAILED_OTHER as usize => {
                    *count += 1;
                }
                (FailureKind::Errno(_), _) => {
                    *self.other_failures.entry((family, kind)).or_default() += 1;
                }
                (_, Some(count)) => *count += 1,
                (_, None) => {}
            }
        }
        if let Some(ns) = resolved.handshake_ns
            && let Some(buckets) = self.handshake.get_mut(outcome_index(outcome))
        {
            buckets.observe(HANDSHAKE_BUCKETS, ns as f64 / 1e9);
        }
    }

    /// Whether anything was counted since the last [`AttemptMetrics::take`].
    pub const fn changed(&self) -> bool {
        self.changed
    }

    /// Adds `delta` to these totals.
    pub fn absorb(&mut self, delta: &Self) {
        for (mine, theirs) in self.attempts.iter_mut().zip(&delta.attempts) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine += theirs;
            }
        }
        for (mine, theirs) in self.by_via.iter_mut().zip(&delta.by_via) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine += theirs;
            }
        }
        for (mine, theirs) in self.failures.iter_mut().zip(&delta.failures) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine += theirs;
            }
        }
        for (key, count) in &delta.other_failures {
            *self.other_failures.entry(*key).or_default() += count;
        }
        self.repeats += delta.repeats;
        self.connect.absorb(&delta.connect);
        for (mine, theirs) in self.handshake.iter_mut().zip(&delta.handshake) {
            mine.absorb(theirs);
        }
        self.changed |= delta.changed;
    }

    /// Takes what was counted, leaving these counts at zero.
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }

    /// The export request for these totals: counted from `start_unix_nano`
    /// to `now_unix_nano`. Series never counted are left out.
    pub fn request(
        &self,
        resource: Resource,
        scope: InstrumentationScope,
        start_unix_nano: u64,
        now_unix_nano: u64,
    ) -> ExportMetricsServiceRequest {
        let point = |attributes: Vec<KeyValue>, value: u64| NumberDataPoint {
            attributes,
            start_time_unix_nano: start_unix_nano,
            time_unix_nano: now_unix_nano,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
            ..NumberDataPoint::default()
        };
        let histogram_point =
            |attributes: Vec<KeyValue>, buckets: &[u64], bounds: &[f64], sum: f64, count: u64| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start_unix_nano,
                    time_unix_nano: now_unix_nano,
                    count,
                    sum: Some(sum),
                    bucket_counts: buckets.to_vec(),
                    explicit_bounds: bounds.to_vec(),
                    ..HistogramDataPoint::default()
                }
            };
        let mut metrics = Vec::new();

        let attempts: Vec<NumberDataPoint> = self
            .attempts
            .iter()
            .enumerate()
            .flat_map(|(family, counts)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count > 0)
                    .map(move |(outcome, count)| (family, outcome, *count))
            })
            .map(|(family, outcome, count)| {
                point(
                    vec![
                        label("family", family::LABELS[family]),
                        label("outcome", OUTCOMES[outcome]),
                    ],
                    count,
                )
            })
            .collect();
        metrics.push(counter(
            "connect_trace.attempts",
            "connect() attempts by address family and final outcome (repeats excluded).",
            "{attempt}",
            attempts,
        ));

        let by_via: Vec<NumberDataPoint> = self
            .by_via
            .iter()
            .zip(Via::ALL)
            .flat_map(|(counts, via)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count > 0)
                    .map(move |(outcome, count)| {
                        point(
                            vec![
                                label("via", via.name()),
                                label("outcome", OUTCOMES[outcome]),
                            ],
                            *count,
                        )
                    })
            })
            .collect();
        metrics.push(counter(
            "connect_trace.attempts_by_via",
            "connect() attempts by how they were made (syscall, io_uring, compat, fastopen, kernel, other) and final outcome (repeats excluded).",
            "{attempt}",
            by_via,
        ));

        let by_code = self
            .failures
            .iter()
            .enumerate()
            .flat_map(|(family, counts)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count > 0)
                    .filter_map(move |(slot, count)| {
                        let outcome = Outcome::of_code(u32::try_from(slot).ok()?)?;
                        Some(((family, FailureKind::of(outcome)?), *count))
                    })
            });
        let others = self
            .other_failures
            .iter()
            .map(|(key, count)| (*key, *count));
        let failures: Vec<NumberDataPoint> = by_code
            .chain(others)
            .map(|((family, kind), count)| {
                point(
                    vec![
                        label("family", family::LABELS[family]),
                        label("error", &kind.label()),
                        label("class", kind.class().unwrap_or("unknown")),
                    ],
                    count,
                )
            })
            .collect();
        metrics.push(counter(
            "connect_trace.failures",
            "Failed or canceled connect() attempts by family, error (errno name, canceled or unknown) and its class.",
            "{attempt}",
            failures,
        ));

        let repeats = if self.repeats > 0 {
            vec![point(Vec::new(), self.repeats)]
        } else {
            Vec::new()
        };
        metrics.push(counter(
            "connect_trace.repeats",
            "Repeated connect() calls on a socket already connecting or connected.",
            "{call}",
            repeats,
        ));

        let connect = if self.connect.count > 0 {
            vec![histogram_point(
                Vec::new(),
                &self.connect.counts,
                CONNECT_BUCKETS,
                self.connect.sum,
                self.connect.count,
            )]
        } else {
            Vec::new()
        };
        metrics.push(histogram(
            "connect_trace.connect.duration",
            "Time spent inside the connect() syscall.",
            connect,
        ));

        let handshake: Vec<HistogramDataPoint> = self
            .handshake
            .iter()
            .enumerate()
            .filter(|(_, buckets)| buckets.count > 0)
            .map(|(outcome, buckets)| {
                histogram_point(
                    vec![label("outcome", OUTCOMES[outcome])],
                    &buckets.counts,
                    HANDSHAKE_BUCKETS,
                    buckets.sum,
                    buckets.count,
                )
            })
            .collect();
        metrics.push(histogram(
            "connect_trace.handshake.duration",
            "Time from the SYN to the end of the TCP handshake, by outcome.",
            handshake,
        ));

        metrics.retain(has_points);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }
}

fn has_points(metric: &Metric) -> bool {
    match &metric.data {
        Some(Data::Sum(sum)) => !sum.data_points.is_empty(),
        Some(Data::Histogram(histogram)) => !histogram.data_points.is_empty(),
        _ => false,
    }
}

fn counter(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }
}

fn histogram(name: &str, description: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Metric::default()
    }
}

fn label(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use connect_trace_common::abi::ConnectRecord;

    use super::*;
    use crate::decode::{ConnectAttempt, attempt::tests::sample_record};

    fn resolved(
        record: ConnectRecord,
        outcome: Outcome,
        handshake_ns: Option<u64>,
        repeat: bool,
    ) -> ResolvedAttempt {
        ResolvedAttempt {
            attempt: ConnectAttempt::from_record(record),
            outcome,
            handshake_ns,
            repeat,
        }
    }

    fn points(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(Vec<String>, u64)> {
        let metric = request.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|metric| metric.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let labels = |attributes: &[KeyValue]| {
            attributes
                .iter()
                .map(|kv| match &kv.value.as_ref().unwrap().value {
                    Some(Value::StringValue(text)) => format!("{}={text}", kv.key),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        match metric.data.as_ref().unwrap() {
            Data::Sum(sum) => sum
                .data_points
                .iter()
                .map(|point| {
                    let Some(number_data_point::Value::AsInt(value)) = point.value else {
                        panic!()
                    };
                    (labels(&point.attributes), value as u64)
                })
                .collect(),
            Data::Histogram(histogram) => histogram
                .data_points
                .iter()
                .map(|point| (labels(&point.attributes), point.count))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deltas_add_up_to_the_same_series_as_prometheus() {
        let mut totals = AttemptMetrics::default();
        let mut delta = AttemptMetrics::default();
        let record = sample_record();
        delta.record(&resolved(
            record,
            Outcome::Failed(Some(111)),
            Some(50_000),
            false,
        ));
        delta.record(&resolved(record, Outcome::Failed(Some(111)), None, false));
        delta.record(&resolved(
            record,
            Outcome::Canceled,
            Some(3_000_000_000),
            false,
        ));
        totals.absorb(&delta.take());
        assert!(!delta.changed());
        delta.record(&resolved(record, Outcome::Connected, Some(20_000), false));
        delta.record(&resolved(record, Outcome::Connected, None, true));
        // Seen only by its handshake: no call, so no connect() duration.
        let mut kernel = record;
        kernel.via = connect_trace_common::abi::via::KERNEL;
        kernel.flags |= connect_trace_common::abi::connect_flags::NO_CALL;
        delta.record(&resolved(kernel, Outcome::Connected, None, false));
        totals.absorb(&delta.take());
        let request = totals.request(Resource::default(), InstrumentationScope::default(), 1, 2);
        assert_eq!(
            points(&request, "connect_trace.attempts"),
            vec![
                (vec!["family=inet".into(), "outcome=connected".into()], 2),
                (vec!["family=inet".into(), "outcome=failed".into()], 2),
                (vec!["family=inet".into(), "outcome=canceled".into()], 1),
            ]
        );
        assert_eq!(
            points(&request, "connect_trace.attempts_by_via"),
            vec![
                (vec!["via=syscall".into(), "outcome=connected".into()], 1),
                (vec!["via=syscall".into(), "outcome=failed".into()], 2),
                (vec!["via=syscall".into(), "outcome=canceled".into()], 1),
                (vec!["via=kernel".into(), "outcome=connected".into()], 1),
            ]
        );
        assert_eq!(
            points(&request, "connect_trace.failures"),
            vec![
                (
                    vec![
                        "family=inet".into(),
                        "error=ECONNREFUSED".into(),
                        "class=refused".into()
                    ],
                    2
                ),
                (
                    vec![
                        "family=inet".into(),
                        "error=canceled".into(),
                        "class=canceled".into()
                    ],
                    1
                ),
            ]
        );
        assert_eq!(points(&request, "connect_trace.repeats"), vec![(vec![], 1)]);
        assert_eq!(
            points(&request, "connect_trace.connect.duration"),
            vec![(vec![], 5)]
        );
        assert_eq!(
            points(&request, "connect_trace.handshake.duration"),
            vec![
                (vec!["outcome=connected".into()], 1),
                (vec!["outcome=failed".into()], 1),
                (vec!["outcome=canceled".into()], 1),
            ]
        );
    }

    #[test]
    fn unknown_and_unnamed_errors_keep_their_labels() {
        let mut totals = AttemptMetrics::default();
        let record = sample_record();
        totals.record(&resolved(record, Outcome::Failed(None), None, false));
        totals.record(&resolved(record, Outcome::Failed(Some(600)), None, false));
        totals.record(&resolved(record, Outcome::Failed(Some(600)), None, false));
        let request = totals.request(Resource::default(), InstrumentationScope::default(), 1, 2);
        assert_eq!(
            points(&request, "connect_trace.failures"),
            vec![
                (
                    vec![
                        "family=inet".into(),
                        "error=unknown".into(),
                        "class=unknown".into()
                    ],
                    1
                ),
                (
                    vec![
                        "family=inet".into(),
                        "error=600".into(),
                        "class=unknown".into()
                    ],
                    2
                ),
            ]
        );
    }

    #[test]
    fn buckets_count_inclusive_upper_bounds() {
        let mut buckets = Buckets::<3>::new();
        for value in [0.5, 1.0, 1.5, 2.0, 9.0] {
            buckets.observe(&[1.0, 2.0], value);
        }
        assert_eq!(buckets.counts, [2, 2, 1]);
        assert_eq!(buckets.count, 5);
    }

    #[test]
    fn nothing_counted_exports_no_metric() {
        let request = AttemptMetrics::default().request(
            Resource::default(),
            InstrumentationScope::default(),
            1,
            2,
        );
        assert!(
            request.resource_metrics[0].scope_metrics[0]
                .metrics
                .is_empty()
        );
    }
}
