//! The DNS capture's counts as `connect_trace_dns_*` metrics (docs/metrics.md),
//! read from [`DnsStats`] at each scrape, so that they agree with the
//! `delivery` object. No label carries a name or an address: every label
//! value comes from a small closed set.

use std::sync::{Arc, Mutex};

use prometheus::{
    IntCounter, IntCounterVec, IntGauge, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::dns::{DnsCounters, DnsStats};

/// Reads one count out of all of them.
type Read = fn(&DnsCounters) -> u64;

/// Reads the DNS counts when Prometheus scrapes.
pub struct DnsCollector {
    stats: Arc<DnsStats>,
    lock: Mutex<()>,
    attached: IntGauge,
    names: IntGauge,
    counters: Vec<(IntCounter, Read)>,
    vecs: Vec<(IntCounterVec, Vec<(&'static str, Read)>)>,
}

impl DnsCollector {
    /// Reads `stats` at each scrape.
    pub fn new(stats: Arc<DnsStats>) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, read: Read| {
            Ok::<_, prometheus::Error>((IntCounter::new(name, help)?, read))
        };
        let counters = vec![
            counter(
                "connect_trace_dns_packets_total",
                "DNS packets that reached a socket on this host, as the DNS capture saw them: UDP from a DNS port, TCP segments with payload from one.",
                |c| c.kernel.seen,
            )?,
            counter(
                "connect_trace_dns_packets_cut_total",
                "DNS payloads longer than the 2,048 bytes the kernel program copies: read up to the cut.",
                |c| c.kernel.cut,
            )?,
            counter(
                "connect_trace_dns_responses_lost_total",
                "DNS responses dropped in the kernel because the DNS ring buffer was full: the names they gave are missing.",
                |c| c.kernel.ringbuf_full,
            )?,
            counter(
                "connect_trace_dns_responses_total",
                "DNS responses the daemon read (UDP datagrams, DNS-over-TCP messages).",
                |c| c.capture.responses,
            )?,
            counter(
                "connect_trace_dns_responses_malformed_total",
                "Payloads from a DNS port that were no usable DNS response: hostile or foreign traffic.",
                |c| c.capture.malformed,
            )?,
            counter(
                "connect_trace_dns_responses_incomplete_total",
                "DNS responses read only in part (cut, or malformed after some records); the addresses before that point were used.",
                |c| c.capture.incomplete,
            )?,
            counter(
                "connect_trace_dns_records_undecodable_total",
                "Records of the DNS ring buffer that did not decode (a kernel and daemon mismatch; never expected).",
                |c| c.capture.undecodable,
            )?,
            counter(
                "connect_trace_dns_namespace_unknown_total",
                "DNS responses whose network namespace the kernel could not read: filed under namespace 0.",
                |c| c.capture.netns_unknown,
            )?,
            counter(
                "connect_trace_dns_addresses_total",
                "(name, address) pairs learned from DNS answers.",
                |c| c.capture.addresses,
            )?,
            counter(
                "connect_trace_dns_names_replaced_total",
                "Answers that gave an address already named in that namespace another name (two names, one address: the latest wins).",
                |c| c.cache.replaced,
            )?,
            counter(
                "connect_trace_dns_names_evicted_total",
                "Names dropped from the full name cache while still valid: raise --dns-cache-size when this grows.",
                |c| c.cache.evicted,
            )?,
            counter(
                "connect_trace_dns_names_expired_total",
                "Names removed from the cache once their TTL (within the bounds) ran out.",
                |c| c.cache.expired,
            )?,
        ];
        let vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let vecs = vec![
            (
                vec(
                    "connect_trace_dns_packets_skipped_total",
                    "Packets from a DNS port the kernel program did not pass on, by reason: query (not a response) or unreadable.",
                    "reason",
                )?,
                vec![
                    ("query", (|c| c.kernel.not_response) as Read),
                    ("unreadable", |c| c.kernel.unreadable),
                ],
            ),
            (
                vec(
                    "connect_trace_dns_tcp_messages_dropped_total",
                    "DNS-over-TCP messages not joined whole, by reason: gap (a segment was missing), evicted (too many streams at once), cut (longer than the buffer or the copy).",
                    "reason",
                )?,
                vec![
                    ("gap", (|c| c.streams.gaps) as Read),
                    ("evicted", |c| c.streams.evicted),
                    ("cut", |c| c.streams.cut),
                ],
            ),
            (
                vec(
                    "connect_trace_dns_lookups_total",
                    "Attempts to an IP address looked up in the name cache, by result: named (server_name set) or unnamed (null).",
                    "result",
                )?,
                vec![
                    ("named", (|c| c.cache.hits) as Read),
                    ("unnamed", |c| c.cache.misses),
                ],
            ),
        ];
        Ok(Self {
            stats,
            lock: Mutex::new(()),
            attached: IntGauge::new(
                "connect_trace_dns_capture_attached",
                "1 while DNS answers are captured (records can carry server_name); 0 with --no-dns or when the capture could not start.",
            )?,
            names: IntGauge::new(
                "connect_trace_dns_names",
                "(network namespace, address) pairs in the name cache now.",
            )?,
            counters,
            vecs,
        })
    }
}

impl Collector for DnsCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self.attached.desc();
        descs.extend(self.names.desc());
        descs.extend(self.counters.iter().flat_map(|(c, _)| c.desc()));
        descs.extend(self.vecs.iter().flat_map(|(v, _)| v.desc()));
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(counts) = self.stats.read() else {
            return Vec::new();
        };
        let Ok(_guard) = self.lock.lock() else {
            return Vec::new();
        };
        self.attached.set(i64::from(counts.capturing));
        self.names
            .set(i64::try_from(counts.names).unwrap_or(i64::MAX));
        let mut families = self.attached.collect();
        families.extend(self.names.collect());
        for (counter, read) in &self.counters {
            counter.reset();
            counter.inc_by(read(&counts));
            families.extend(counter.collect());
        }
        for (vec, labels) in &self.vecs {
            vec.reset();
            for (label, read) in labels {
                vec.with_label_values(&[*label]).inc_by(read(&counts));
            }
            families.extend(vec.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, Registry, TextEncoder};

    use super::*;

    #[test]
    fn every_series_is_exported_when_nothing_is_captured() {
        let registry = Registry::new();
        let collector = DnsCollector::new(Arc::new(DnsStats::new(None))).unwrap();
        registry.register(Box::new(collector)).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "connect_trace_dns_capture_attached 0",
            "connect_trace_dns_names 0",
            "connect_trace_dns_responses_lost_total 0",
            "connect_trace_dns_names_evicted_total 0",
            "connect_trace_dns_lookups_total{result=\"named\"} 0",
            "connect_trace_dns_packets_skipped_total{reason=\"query\"} 0",
            "connect_trace_dns_tcp_messages_dropped_total{reason=\"gap\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
