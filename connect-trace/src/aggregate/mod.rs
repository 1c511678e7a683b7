//! Failure rates for people and dashboards: per interval, over sliding
//! windows and since start, overall and for the heaviest failing
//! destinations, processes, errors and cgroups, in bounded memory.
//!
//! Repeats (a second call on a socket already connecting) are not
//! attempts and are only counted as repeats. `failed` and `canceled`
//! outcomes are failures; `in_progress` ones are attempts whose outcome is
//! unknown and count as neither.

use std::{collections::BTreeMap, fmt::Write as _, time::SystemTime};

use rustc_hash::FxHashMap;

use serde::Serialize;

pub mod topk;
pub mod window;

use crate::{
    decode::{
        ConnectAttempt, Via,
        sockaddr::{Address, Family},
    },
    delivery::Delivery,
    dns::ServerName,
    errno,
    report::AttemptReport,
    resolve::Outcome,
};
use topk::{Counts, TopK};
use window::{RateWindows, Tally};

/// Keys kept per dimension; every key with more than 1/`DEFAULT_CAPACITY`
/// of an interval's failures is guaranteed to be among them.
pub const DEFAULT_CAPACITY: usize = 256;

/// Counts of resolved attempts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Attempts that connected.
    pub connected: u64,
    /// Attempts that failed with an error.
    pub failed: u64,
    /// Attempts the application canceled.
    pub canceled: u64,
    /// Attempts whose outcome is unknown.
    pub in_progress: u64,
    /// Repeated calls on one attempt (not counted as attempts).
    pub repeats: u64,
}

/// What one interval saw.
#[derive(Debug, Clone)]
struct Interval {
    started: SystemTime,
    tally: Tally,
    outcomes: OutcomeCounts,
    /// Attempts and failures by how they were made, by [`Via::index`].
    via: [Tally; Via::ALL.len()],
    errors: FxHashMap<FailureKind, u64>,
    destinations: TopK<String>,
    processes: TopK<String>,
    cgroups: TopK<u64>,
    containers: TopK<String>,
    pods: TopK<String>,
    /// The last pid seen for each kept process name, to name its executable.
    pids: FxHashMap<String, u32>,
    /// The latest DNS name seen for each kept destination.
    server_names: FxHashMap<String, ServerName>,
}

/// What a failure was, for grouping: a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// Failed with this errno.
    Errno(i32),
    /// Canceled by the application.
    Canceled,
    /// Failed with an error the kernel did not tell.
    Unknown,
}

impl FailureKind {
    /// The label: the errno's name, `canceled` or `unknown`.
    pub fn label(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Errno(number) => {
                errno::name(number).map_or_else(|| number.to_string().into(), Into::into)
            }
            Self::Canceled => "canceled".into(),
            Self::Unknown => "unknown".into(),
        }
    }

    /// The class: the catalog's for an errno, `canceled` for a cancel.
    pub fn class(self) -> Option<&'static str> {
        match self {
            Self::Errno(number) => errno::class_name(number),
            Self::Canceled => Some("canceled"),
            Self::Unknown => None,
        }
    }

    /// The failure kind of an outcome, if it is a failure.
    pub const fn of(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Failed(Some(errno)) => Some(Self::Errno(errno)),
            Outcome::Failed(None) => Some(Self::Unknown),
            Outcome::Canceled => Some(Self::Canceled),
            Outcome::Connected | Outcome::InProgress => None,
        }
    }
}

impl Interval {
    fn new(capacity: usize, started: SystemTime) -> Self {
        Self {
            started,
            tally: Tally::default(),
            outcomes: OutcomeCounts::default(),
            via: [Tally::default(); Via::ALL.len()],
            errors: FxHashMap::default(),
            destinations: TopK::new(capacity),
            processes: TopK::new(capacity),
            cgroups: TopK::new(capacity),
            containers: TopK::new(capacity),
            pods: TopK::new(capacity),
            pids: FxHashMap::default(),
            server_names: FxHashMap::default(),
        }
    }
}

/// Aggregates resolved attempts.
pub struct Aggregator {
    capacity: usize,
    interval: Interval,
    windows: RateWindows,
    total: Tally,
    total_outcomes: OutcomeCounts,
    /// Reused for building keys, so a kept key costs no allocation.
    scratch: String,
}

/// A `{"type":"summary"}` record.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always "summary".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// End of the interval.
    #[serde(serialize_with = "crate::clock::rfc3339")]
    pub ts: SystemTime,
    /// Start of the interval.
    #[serde(serialize_with = "crate::clock::rfc3339")]
    pub interval_start: SystemTime,
    /// Seconds the interval lasted.
    pub interval_s: f64,
    /// Attempts, failures and failure rate in the interval.
    #[serde(flatten)]
    pub window: RateJson,
    /// The interval's attempts by outcome.
    pub outcomes: OutcomeCounts,
    /// The interval's attempts and failures by how they were made (only
    /// the ways seen): `syscall`, `io_uring`, `compat`, `fastopen`,
    /// `kernel`, `other`.
    pub via: BTreeMap<&'static str, RateJson>,
    /// Sliding windows ending now: `10s`, `1m`, `5m`.
    pub rates: Rates,
    /// Since the daemon started.
    pub total: RateJson,
    /// Since the daemon started, by outcome.
    pub total_outcomes: OutcomeCounts,
    /// The kernel's counts next to what was delivered.
    pub delivery: Delivery,
    /// The heaviest failing keys of the interval.
    pub top: Top,
    /// Failures not attributed to a listed key, per dimension.
    pub other: Others,
}

/// Attempts, failures and their rate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateJson {
    /// Attempts.
    pub attempts: u64,
    /// Failed or canceled attempts.
    pub failures: u64,
    /// failures / attempts (0 when there were none).
    pub failure_rate: f64,
}

impl From<Tally> for RateJson {
    fn from(tally: Tally) -> Self {
        Self {
            attempts: tally.attempts,
            failures: tally.failures,
            failure_rate: tally.failure_rate(),
        }
    }
}

/// Sliding windows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    /// The last 10 seconds.
    #[serde(rename = "10s")]
    pub last_10s: RateJson,
    /// The last minute.
    #[serde(rename = "1m")]
    pub last_1m: RateJson,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    pub last_5m: RateJson,
}

/// One listed key.
#[derive(Debug, Clone, Serialize)]
pub struct TopEntry {
    /// The key: `addr:port` or a unix path, a process name, a cgroup id.
    pub key: serde_json::Value,
    /// Failures attributed to it (over-estimated by at most `error`).
    pub failures: u64,
    /// Attempts seen since it was first tracked in the interval.
    pub attempts: u64,
    /// failures / attempts.
    pub failure_rate: f64,
    /// Upper bound of failures that may belong to keys it displaced; 0 means
    /// the counts are exact.
    pub error: u64,
    /// For processes: the executable of the last process seen with that
    /// name, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// For destinations (always present there, else absent): the DNS name
    /// the latest attempt to it in the interval was named by, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<Option<String>>,
}

/// A failure kind and its count.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    /// The errno name, `canceled` or `unknown`.
    pub error: String,
    /// Its catalog class (`refused`, `timeout`, ...); `canceled` for
    /// cancels; `null` when unknown.
    pub class: Option<&'static str>,
    /// Failures of that kind.
    pub failures: u64,
    /// Their share of all failures in the interval.
    pub share: f64,
}

/// The listed keys per dimension.
#[derive(Debug, Clone, Serialize)]
pub struct Top {
    /// Destinations (`addr:port`, `[v6]:port`, a unix path, `@name`).
    pub destinations: Vec<TopEntry>,
    /// Process names (comm).
    pub processes: Vec<TopEntry>,
    /// Errors.
    pub errors: Vec<ErrorEntry>,
    /// cgroup ids.
    pub cgroups: Vec<TopEntry>,
    /// Containers, by name (or short id when unnamed); with workload
    /// identity only.
    pub containers: Vec<TopEntry>,
    /// Kubernetes pods, as `namespace/name`; with workload identity only.
    pub pods: Vec<TopEntry>,
}

/// The `other` bucket of one dimension.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Other {
    /// Failures not attributed with certainty to a kept key.
    pub failures: u64,
    /// Keys kept in memory.
    pub keys_kept: usize,
    /// Keys displaced to make room during the interval.
    pub keys_displaced: u64,
}

/// The `other` buckets.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Others {
    /// Destinations.
    pub destinations: Other,
    /// Processes.
    pub processes: Other,
    /// cgroups.
    pub cgroups: Other,
    /// Containers.
    pub containers: Other,
    /// Pods.
    pub pods: Other,
}

impl Aggregator {
    /// An aggregator keeping `capacity` keys per dimension, starting at
    /// `now`.
    pub fn new(capacity: usize, now: SystemTime) -> Self {
        Self {
            capacity,
            interval: Interval::new(capacity, now),
            windows: RateWindows::new(),
            total: Tally::default(),
            total_outcomes: OutcomeCounts::default(),
            scratch: String::new(),
        }
    }

    /// Counts one attempt, at monotonic second `now_secs`.
    pub fn record(&mut self, report: &AttemptReport, now_secs: u64) {
        let resolved = &report.resolved;
        let interval = &mut self.interval;
        if resolved.repeat {
            interval.outcomes.repeats += 1;
            self.total_outcomes.repeats += 1;
            return;
        }
        let outcome = resolved.outcome;
        let failed = outcome.is_failure();
        for counts in [&mut interval.outcomes, &mut self.total_outcomes] {
            match outcome {
                Outcome::Connected => counts.connected += 1,
                Outcome::Failed(_) => counts.failed += 1,
                Outcome::Canceled => counts.canceled += 1,
                Outcome::InProgress => counts.in_progress += 1,
            }
        }
        for tally in [&mut interval.tally, &mut self.total] {
            tally.attempts += 1;
            tally.failures += u64::from(failed);
        }
        self.windows.record(now_secs, failed);
        let via = &mut interval.via[resolved.attempt.via().index()];
        via.attempts += 1;
        via.failures += u64::from(failed);
        if let Some(kind) = FailureKind::of(outcome) {
            *interval.errors.entry(kind).or_default() += 1;
        }

        let attempt = &resolved.attempt;
        self.scratch.clear();
        named_destination_key(&mut self.scratch, attempt, report.server_name.as_ref());
        interval
            .destinations
            .record(self.scratch.as_str(), failed, str::to_owned);
        if let Some(name) = &report.server_name
            && interval.destinations.get(self.scratch.as_str()).is_some()
        {
            match interval.server_names.get_mut(self.scratch.as_str()) {
                Some(kept) => kept.clone_from(name),
                None => {
                    interval
                        .server_names
                        .insert(self.scratch.clone(), name.clone());
                    // Keys the top-K displaced keep their entry until here:
                    // bounded at twice its capacity, at amortized O(1).
                    if interval.server_names.len() > 2 * self.capacity {
                        let kept = &interval.destinations;
                        interval
                            .server_names
                            .retain(|key, _| kept.get(key.as_str()).is_some());
                    }
                }
            }
        }

        self.scratch.clear();
        self.scratch
            .push_str(&String::from_utf8_lossy(attempt.comm()));
        // The answer saves a second lookup of the comm.
        if interval
            .processes
            .record(self.scratch.as_str(), failed, str::to_owned)
        {
            match interval.pids.get_mut(self.scratch.as_str()) {
                Some(pid) => *pid = attempt.pid(),
                None => {
                    interval.pids.insert(self.scratch.clone(), attempt.pid());
                }
            }
        }
        interval
            .cgroups
            .record(&attempt.cgroup_id(), failed, |id| *id);
        let Some(workload) = &report.workload else {
            return;
        };
        if let Some(container) = &workload.container {
            self.scratch.clear();
            match (
                &container.name,
                workload.pod.as_ref().and_then(|pod| pod.container.as_ref()),
            ) {
                (_, Some(name)) | (Some(name), None) => self.scratch.push_str(name),
                (None, None) => self
                    .scratch
                    .push_str(&container.id[..container.id.len().min(12)]),
            }
            interval
                .containers
                .record(self.scratch.as_str(), failed, str::to_owned);
        }
        if let Some(pod) = &workload.pod {
            self.scratch.clear();
            self.scratch
                .push_str(pod.namespace.as_deref().unwrap_or("?"));
            self.scratch.push('/');
            self.scratch
                .push_str(pod.name.as_deref().or(pod.uid.as_deref()).unwrap_or("?"));
            interval
                .pods
                .record(self.scratch.as_str(), failed, str::to_owned);
        }
    }

    /// Closes the interval at `now` (monotonic second `now_secs`), returns
    /// its summary with the `top` heaviest keys, and starts the next.
    pub fn summarize(
        &mut self,
        now: SystemTime,
        now_secs: u64,
        top: usize,
        delivery: Delivery,
    ) -> Summary {
        let next = Interval::new(self.capacity, now);
        let interval = std::mem::replace(&mut self.interval, next);
        let failures = interval.tally.failures;
        let mut errors: Vec<ErrorEntry> = interval
            .errors
            .iter()
            .map(|(kind, count)| ErrorEntry {
                error: kind.label().into_owned(),
                class: kind.class(),
                failures: *count,
                share: share(*count, failures),
            })
            .collect();
        errors.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.error.cmp(&b.error))
        });
        errors.truncate(top);
        let processes = entries(&interval.processes, top, |name| {
            let exe = interval
                .pids
                .get(name)
                .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
                .map(|path| path.display().to_string());
            Described {
                exe,
                ..Described::key(name.as_str())
            }
        });
        Summary {
            kind: "summary",
            ts: now,
            interval_start: interval.started,
            interval_s: now
                .duration_since(interval.started)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64()),
            window: interval.tally.into(),
            outcomes: interval.outcomes,
            via: Via::ALL
                .iter()
                .zip(interval.via)
                .filter(|(_, tally)| tally.attempts > 0)
                .map(|(via, tally)| (via.name(), tally.into()))
                .collect(),
            rates: Rates {
                last_10s: self.windows.last(now_secs, 10).into(),
                last_1m: self.windows.last(now_secs, 60).into(),
                last_5m: self.windows.last(now_secs, 300).into(),
            },
            total: self.total.into(),
            total_outcomes: self.total_outcomes,
            delivery,
            top: Top {
                destinations: entries(&interval.destinations, top, |key| Described {
                    server_name: Some(
                        interval
                            .server_names
                            .get(key)
                            .map(|name| name.as_str().to_owned()),
                    ),
                    ..Described::key(key.as_str())
                }),
                processes,
                errors,
                cgroups: entries(&interval.cgroups, top, |id| Described::key(*id)),
                containers: entries(&interval.containers, top, |key| {
                    Described::key(key.as_str())
                }),
                pods: entries(&interval.pods, top, |key| Described::key(key.as_str())),
            },
            other: Others {
                destinations: other(&interval.destinations),
                processes: other(&interval.processes),
                cgroups: other(&interval.cgroups),
                containers: other(&interval.containers),
                pods: other(&interval.pods),
            },
        }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A listed key and what is shown with it.
struct Described {
    key: serde_json::Value,
    exe: Option<String>,
    server_name: Option<Option<String>>,
}

impl Described {
    fn key(key: impl Into<serde_json::Value>) -> Self {
        Self {
            key: key.into(),
            exe: None,
            server_name: None,
        }
    }
}

fn entries<K: std::hash::Hash + Ord + Clone>(
    top: &TopK<K>,
    n: usize,
    describe: impl Fn(&K) -> Described,
) -> Vec<TopEntry> {
    top.top(n)
        .into_iter()
        .map(
            |(
                key,
                Counts {
                    failures,
                    attempts,
                    error,
                },
            )| {
                let Described {
                    key,
                    exe,
                    server_name,
                } = describe(key);
                TopEntry {
                    key,
                    failures,
                    attempts,
                    failure_rate: share(failures, attempts),
                    error,
                    exe,
                    server_name,
                }
            },
        )
        .collect()
}

fn other<K: std::hash::Hash + Ord + Clone>(top: &TopK<K>) -> Other {
    Other {
        failures: top.other_failures(),
        keys_kept: top.len(),
        keys_displaced: top.displaced(),
    }
}

/// Writes the key summaries and metrics count a destination under: the
/// DNS name and port (`name:port`) when the attempt was named, so that a
/// name's addresses add up to one destination, else [`destination_key`].
pub fn named_destination_key(
    out: &mut String,
    attempt: &ConnectAttempt,
    server_name: Option<&ServerName>,
) {
    let destination = attempt.destination();
    match (server_name, destination.address) {
        (Some(name), Address::V4(_) | Address::V6(_)) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "{}:{}", name.as_str(), destination.port.unwrap_or(0));
        }
        _ => destination_key(out, attempt),
    }
}

/// Writes the destination of `attempt` as a key: `1.2.3.4:80`, `[::1]:80`,
/// a unix path or `@name`, `unspec`, `family:N`, or `unknown`.
pub fn destination_key(out: &mut String, attempt: &ConnectAttempt) {
    let destination = attempt.destination();
    let port = destination.port.unwrap_or(0);
    // Writing to a String cannot fail.
    let _ = match (destination.family, destination.address) {
        // The common keys are written without `core::fmt`: part of the
        // 130 ns per event saved with the top-K change (see `TopK::order`).
        (_, Address::V4(ip)) => {
            let mut number = itoa::Buffer::new();
            let [a, b, c, d] = ip.octets();
            for (octet, separator) in [(a, '.'), (b, '.'), (c, '.'), (d, ':')] {
                out.push_str(number.format(octet));
                out.push(separator);
            }
            out.push_str(number.format(port));
            Ok(())
        }
        (_, Address::V6(ip)) => write!(out, "[{ip}]:{port}"),
        (_, Address::UnixPath(path)) => {
            push_lossy(out, path);
            Ok(())
        }
        (_, Address::UnixAbstract(name)) => {
            out.push('@');
            push_lossy(out, name);
            Ok(())
        }
        (Some(Family::Unspec), Address::None) => write!(out, "unspec"),
        (Some(Family::Other(number)), Address::None) => write!(out, "family:{number}"),
        (_, Address::None) => write!(out, "unknown"),
    };
}

/// Appends `bytes` as text, invalid UTF-8 as U+FFFD: checked first, since
/// `String::from_utf8_lossy` walks even valid text more slowly.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connect_trace_common::abi::ConnectRecord;

    use super::*;
    use crate::{
        decode::{ConnectAttempt, attempt::tests::sample_record},
        resolve::ResolvedAttempt,
    };

    fn resolved(port: u16, comm: &[u8], outcome: Outcome, repeat: bool) -> AttemptReport {
        let mut raw: ConnectRecord = sample_record();
        raw.addr[2..4].copy_from_slice(&port.to_be_bytes());
        raw.comm = [0; 16];
        raw.comm[..comm.len()].copy_from_slice(comm);
        AttemptReport::new(ResolvedAttempt {
            attempt: ConnectAttempt::from_record(raw),
            outcome,
            handshake_ns: None,
            repeat,
        })
    }

    #[test]
    fn a_known_mix_gives_exact_numbers() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut aggregator = Aggregator::new(16, start);
        let refused = Outcome::Failed(Some(libc::ECONNREFUSED));
        for _ in 0..6 {
            aggregator.record(&resolved(80, b"curl", Outcome::Connected, false), 100);
        }
        for _ in 0..3 {
            aggregator.record(&resolved(9, b"curl", refused, false), 100);
        }
        aggregator.record(&resolved(9, b"app", Outcome::Canceled, false), 101);
        aggregator.record(&resolved(9, b"app", Outcome::InProgress, true), 101);
        let summary =
            aggregator.summarize(start + Duration::from_secs(10), 101, 5, Delivery::default());
        assert_eq!(summary.window.attempts, 10);
        assert_eq!(summary.window.failures, 4);
        assert!((summary.window.failure_rate - 0.4).abs() < 1e-9);
        assert_eq!(summary.outcomes.connected, 6);
        assert_eq!(summary.outcomes.failed, 3);
        assert_eq!(summary.outcomes.canceled, 1);
        assert_eq!(summary.outcomes.repeats, 1);
        assert_eq!(summary.interval_s, 10.0);
        let top = &summary.top.destinations[0];
        assert_eq!(top.key, "127.0.0.1:9");
        assert_eq!((top.failures, top.attempts, top.error), (4, 4, 0));
        assert_eq!(summary.top.errors[0].error, "ECONNREFUSED");
        assert_eq!(summary.top.errors[0].class, Some("refused"));
        assert_eq!(summary.top.errors[0].failures, 3);
        assert_eq!(summary.top.errors[1].error, "canceled");
        assert_eq!(summary.top.processes[0].key, "curl");
        assert_eq!(summary.top.processes[0].failures, 3);
        assert_eq!(
            summary.top.processes[0].attempts, 3,
            "counted from admission"
        );
        assert_eq!(summary.rates.last_10s.attempts, 10);
        assert_eq!(summary.total.attempts, 10);

        let next =
            aggregator.summarize(start + Duration::from_secs(20), 111, 5, Delivery::default());
        assert_eq!(next.window.attempts, 0);
        assert_eq!(next.total.attempts, 10);
        assert_eq!(next.rates.last_10s.attempts, 0);
        assert_eq!(next.rates.last_1m.attempts, 10);
    }

    #[test]
    fn memory_stays_bounded_with_many_destinations() {
        let start = SystemTime::UNIX_EPOCH;
        let mut aggregator = Aggregator::new(32, start);
        for port in 0..50_000u16 {
            let outcome = Outcome::Failed(Some(libc::ETIMEDOUT));
            aggregator.record(&resolved(port, b"scan", outcome, false), 1);
        }
        assert_eq!(aggregator.interval.server_names.len(), 0);
        for port in 0..5_000u16 {
            let outcome = Outcome::Failed(Some(libc::ETIMEDOUT));
            let report = AttemptReport {
                server_name: crate::dns::ServerName::from_text(&format!("n{port}.test")),
                ..resolved(port, b"scan", outcome, false)
            };
            aggregator.record(&report, 1);
            assert!(aggregator.interval.server_names.len() <= 64);
        }
        let summary = aggregator.summarize(start, 1, 10, Delivery::default());
        assert_eq!(summary.other.destinations.keys_kept, 32);
        assert_eq!(summary.window.failures, 55_000);
        assert!(summary.other.destinations.failures >= 55_000 - 32 * 2);
    }

    #[test]
    fn named_destinations_are_counted_by_name_and_port() {
        let start = SystemTime::UNIX_EPOCH;
        let mut aggregator = Aggregator::new(16, start);
        let refused = Outcome::Failed(Some(libc::ECONNREFUSED));
        let named = |name: &str, port: u16| AttemptReport {
            server_name: crate::dns::ServerName::from_text(name),
            ..resolved(port, b"curl", refused, false)
        };
        // The same address under two names, and unnamed: three keys.
        aggregator.record(&named("api.example.test", 443), 1);
        aggregator.record(&named("api.example.test", 443), 1);
        aggregator.record(&named("api.example.test", 443), 1);
        aggregator.record(&named("other.example.test", 443), 1);
        aggregator.record(&named("other.example.test", 443), 1);
        aggregator.record(&resolved(443, b"curl", refused, false), 1);
        let summary = aggregator.summarize(start, 1, 5, Delivery::default());
        let json = serde_json::to_value(&summary.top).unwrap();
        let destinations = json["destinations"].as_array().unwrap();
        assert_eq!(destinations[0]["key"], "api.example.test:443");
        assert_eq!(destinations[0]["failures"], 3);
        assert_eq!(destinations[0]["server_name"], "api.example.test");
        assert_eq!(destinations[1]["key"], "other.example.test:443");
        assert_eq!(destinations[2]["key"], "127.0.0.1:443");
        assert_eq!(destinations[2]["server_name"], serde_json::Value::Null);
        assert!(json["processes"][0].get("server_name").is_none());
    }

    #[test]
    fn destination_keys() {
        let mut key = String::new();
        destination_key(
            &mut key,
            &resolved(443, b"x", Outcome::Connected, false)
                .resolved
                .attempt,
        );
        assert_eq!(key, "127.0.0.1:443");
    }

    #[test]
    fn destination_keys_of_every_kind() {
        let key_of = |addr: &[u8], addrlen: i32| {
            let mut raw: ConnectRecord = sample_record();
            raw.addr = [0; 128];
            raw.addr[..addr.len()].copy_from_slice(addr);
            raw.addrlen = addrlen;
            let mut key = String::new();
            destination_key(&mut key, &ConnectAttempt::from_record(raw));
            key
        };
        let inet = [
            &crate::decode::sockaddr::AF_INET.to_ne_bytes()[..],
            &[0, 0, 10, 200, 0, 255],
        ]
        .concat();
        assert_eq!(key_of(&inet, 16), "10.200.0.255:0");
        let unix = [
            &crate::decode::sockaddr::AF_UNIX.to_ne_bytes()[..],
            b"/run/\xff.sock",
        ]
        .concat();
        assert_eq!(key_of(&unix, 13), "/run/\u{fffd}.sock");
        let abstract_name = [
            &crate::decode::sockaddr::AF_UNIX.to_ne_bytes()[..],
            b"\0name\xff",
        ]
        .concat();
        assert_eq!(key_of(&abstract_name, 8), "@name\u{fffd}");
    }
}
