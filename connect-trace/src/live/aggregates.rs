//! What the live view needs, kept up to date attempt by attempt in bounded
//! memory, and made into a [`LiveSnapshot`] on demand.

use std::{sync::Arc, time::SystemTime};

use super::{
    LiveConfig,
    dimension::{Dimension, Tracked},
    snapshot::{self, Dropped, History, LiveSnapshot, Row, Windows},
    windows::{KeyWindows, SecondHistory, Tallies},
};
use crate::{
    aggregate::{FailureKind, destination_key, window::Tally},
    clock::WallClock,
    decode::sockaddr::{Address, Family, SockAddr},
    export::json::JsonLines,
    report::AttemptReport,
    workload::{Pod, Workload},
};

/// Seconds of per-second history a snapshot carries: enough for a
/// sparkline across a wide terminal.
pub const SNAPSHOT_HISTORY_SECS: u64 = 120;

/// A destination as it is shown.
#[derive(Debug, Clone)]
pub struct Destination {
    key: String,
    server_name: Option<Arc<str>>,
}

/// A process name, the last process seen with it and that process's
/// container or pod.
#[derive(Debug, Clone)]
pub struct Process {
    name: String,
    pid: u32,
    workload: Option<Arc<Workload>>,
}

/// The live aggregates of every attempt taken.
#[derive(Debug)]
pub struct LiveAggregates {
    started: u64,
    history: SecondHistory,
    /// Every attempt in the ten-second steps of the keys' windows: the
    /// attempts of the error rows.
    overall: KeyWindows,
    total: Tally,
    destinations: Dimension<Box<[u8]>, Destination>,
    processes: Dimension<Box<[u8]>, Process>,
    /// The latest workload seen for each container id and pod, so that a
    /// name learned after the first attempt still shows.
    containers: Dimension<Arc<str>, Arc<Workload>>,
    pods: Dimension<Box<[u8]>, Arc<Workload>>,
    errors: Dimension<FailureKind, FailureKind>,
    /// The most recent failures, a ring: `recent_next` is where the next
    /// one goes (and, once full, the oldest). Kept as they came (a copy of
    /// the attempt and a reference count), written over in place, rendered
    /// only for a snapshot.
    recent: Vec<AttemptReport>,
    recent_next: usize,
    recent_capacity: usize,
    json: JsonLines,
    node: Option<Arc<str>>,
    capacity: usize,
    /// Reused to build keys, so a kept key costs no allocation.
    scratch: Vec<u8>,
}

impl LiveAggregates {
    /// Empty aggregates, started at monotonic second `now`.
    pub fn new(config: &LiveConfig, now: u64) -> Self {
        let capacity = config.capacity;
        Self {
            started: now,
            history: SecondHistory::default(),
            overall: KeyWindows::default(),
            total: Tally::default(),
            destinations: Dimension::new(capacity),
            processes: Dimension::new(capacity),
            containers: Dimension::new(capacity),
            pods: Dimension::new(capacity),
            errors: Dimension::new(capacity),
            recent: Vec::with_capacity(config.recent_failures),
            recent_next: 0,
            recent_capacity: config.recent_failures,
            json: JsonLines::new(WallClock::new(), config.node.clone()),
            node: config.node.clone(),
            capacity,
            scratch: Vec::with_capacity(160),
        }
    }

    /// Counts one attempt at monotonic second `now`. Repeats are not
    /// attempts, as in the summaries.
    pub fn record(&mut self, report: &AttemptReport, now: u64) {
        let resolved = &report.resolved;
        if resolved.repeat {
            return;
        }
        let failure = FailureKind::of(resolved.outcome);
        let failed = failure.is_some();
        self.history.record(now, failed);
        self.overall.record(now, failed);
        self.total.attempts += 1;
        self.total.failures += u64::from(failed);

        let attempt = &resolved.attempt;
        let to = attempt.destination();
        destination_identity(&mut self.scratch, &to);
        let server = server_name(report);
        self.destinations.record(
            self.scratch.as_slice(),
            now,
            failure,
            |identity| {
                let mut key = String::new();
                destination_key(&mut key, attempt);
                let about = Destination {
                    key,
                    server_name: server.map(Arc::from),
                };
                (Box::from(identity), about)
            },
            |destination| {
                if destination.server_name.is_none()
                    && let Some(name) = server
                {
                    destination.server_name = Some(Arc::from(name));
                }
            },
        );
        let pid = attempt.pid();
        self.processes.record(
            attempt.comm(),
            now,
            failure,
            |comm| {
                let name = String::from_utf8_lossy(comm).into_owned();
                let workload = report.workload.clone();
                (
                    Box::from(comm),
                    Process {
                        name,
                        pid,
                        workload,
                    },
                )
            },
            |process| {
                process.pid = pid;
                // Most processes stay in one workload: no reference count
                // is touched then.
                match (&mut process.workload, &report.workload) {
                    (Some(latest), Some(workload)) => follow(latest, workload),
                    (latest, workload) => latest.clone_from(workload),
                }
            },
        );
        if let Some(workload) = &report.workload {
            if let Some(container) = &workload.container {
                self.containers.record(
                    &*container.id,
                    now,
                    failure,
                    |_| (Arc::clone(&container.id), Arc::clone(workload)),
                    |latest| follow(latest, workload),
                );
            }
            if let Some(pod) = &workload.pod {
                pod_identity(&mut self.scratch, pod);
                self.pods.record(
                    self.scratch.as_slice(),
                    now,
                    failure,
                    |identity| (Box::from(identity), Arc::clone(workload)),
                    |latest| follow(latest, workload),
                );
            }
        }
        if let Some(kind) = failure {
            self.errors
                .record(&kind, now, failure, |kind| (*kind, *kind), |_| {});
            if self.recent.len() < self.recent_capacity {
                self.recent.push(report.clone());
            } else if let Some(slot) = self.recent.get_mut(self.recent_next) {
                slot.clone_from(report);
            }
            if self.recent_capacity > 0 {
                self.recent_next = (self.recent_next + 1) % self.recent_capacity;
            }
        }
    }

    /// Everything at monotonic second `now` (wall-clock time `wall`); keys
    /// quiet for 5 minutes are forgotten.
    pub fn snapshot(&mut self, now: u64, wall: SystemTime) -> LiveSnapshot {
        let overall = self.overall.tallies(now);
        let mut errors: Vec<Row> = self
            .errors
            .live_keys(now)
            .map(|tracked| Row {
                // Its failures out of every attempt of the window.
                windows: windows(of_all(tracked.windows.tallies(now), overall)),
                ..row(tracked, now, tracked.about.label().into_owned())
            })
            .collect();
        let mut destinations: Vec<Row> = self
            .destinations
            .live_keys(now)
            .map(|tracked| Row {
                server_name: tracked.about.server_name.as_deref().map(str::to_owned),
                ..row(tracked, now, tracked.about.key.clone())
            })
            .collect();
        let mut processes: Vec<Row> = self
            .processes
            .live_keys(now)
            .map(|tracked| {
                let workload = tracked.about.workload.as_deref();
                Row {
                    pid: Some(tracked.about.pid),
                    container: workload.and_then(container_label),
                    pod: workload.and_then(pod_label),
                    ..row(tracked, now, tracked.about.name.clone())
                }
            })
            .collect();
        let mut containers: Vec<Row> = self
            .containers
            .live_keys(now)
            .filter_map(|tracked| {
                let container = tracked.about.container.as_ref()?;
                Some(Row {
                    container_id: Some(container.id.to_string()),
                    image: container.image.as_deref().map(str::to_owned),
                    pod: pod_label(&tracked.about),
                    ..row(tracked, now, container_label(&tracked.about)?)
                })
            })
            .collect();
        let mut pods: Vec<Row> = self
            .pods
            .live_keys(now)
            .filter_map(|tracked| Some(row(tracked, now, pod_label(&tracked.about)?)))
            .collect();
        for rows in [
            &mut destinations,
            &mut processes,
            &mut containers,
            &mut pods,
            &mut errors,
        ] {
            rows.sort_by(|a, b| {
                b.windows
                    .last_1m
                    .failures
                    .cmp(&a.windows.last_1m.failures)
                    .then(b.windows.last_5m.failures.cmp(&a.windows.last_5m.failures))
                    .then_with(|| a.key.cmp(&b.key))
            });
        }
        self.json.resync_clock();
        // Newest first: backwards from the slot before the next one.
        let (older, newer) = self
            .recent
            .split_at(self.recent_next.min(self.recent.len()));
        let recent_failures = newer
            .iter()
            .chain(older)
            .rev()
            .filter_map(|report| {
                let mut line = Vec::with_capacity(768);
                self.json.write_attempt(&mut line, report).ok()?;
                serde_json::from_slice(&line).ok()
            })
            .collect();
        let history_start = now.saturating_sub(SNAPSHOT_HISTORY_SECS);
        let (attempts, failures) = (history_start..now)
            .map(|second| {
                let tally = self.history.at(second);
                (tally.attempts, tally.failures)
            })
            .unzip();
        LiveSnapshot {
            kind: snapshot::KIND.to_owned(),
            ts: humantime::format_rfc3339_millis(wall).to_string(),
            node: self.node.as_deref().map(str::to_owned),
            uptime_s: now.saturating_sub(self.started),
            rates: Windows {
                last_10s: self.history.last(now, 10).into(),
                last_1m: self.history.last(now, 60).into(),
                last_5m: self.history.last(now, 300).into(),
            },
            total: self.total.into(),
            history: History { attempts, failures },
            destinations,
            processes,
            containers,
            pods,
            errors,
            recent_failures,
            capacity: self.capacity,
            dropped: Dropped {
                destinations: self.destinations.dropped(),
                processes: self.processes.dropped(),
                containers: self.containers.dropped(),
                pods: self.pods.dropped(),
            },
            losses: None,
        }
    }
}

/// The server name the attempt was made for. Always `None` until the
/// attempt report carries one (issue #14); this is the one place to read it.
fn server_name(_report: &AttemptReport) -> Option<&str> {
    None
}

/// Keeps the newest workload of a key, whose names may have been learned
/// since.
fn follow(latest: &mut Arc<Workload>, workload: &Arc<Workload>) {
    if !Arc::ptr_eq(latest, workload) {
        *latest = Arc::clone(workload);
    }
}

/// What identifies a destination, as bytes: its family, port and address,
/// as [`destination_key`] names them (the scope id is not part of it).
fn destination_identity(out: &mut Vec<u8>, to: &SockAddr<'_>) {
    out.clear();
    let family = match to.family {
        None => [0, 0, 0],
        Some(Family::Other(number)) => {
            let [high, low] = number.to_be_bytes();
            [1, high, low]
        }
        Some(family) => [2, family_tag(family), 0],
    };
    out.extend_from_slice(&family);
    out.extend_from_slice(&to.port.unwrap_or(0).to_be_bytes());
    match to.address {
        Address::None => out.push(0),
        Address::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Address::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
        Address::UnixPath(path) => {
            out.push(b'p');
            out.extend_from_slice(path);
        }
        Address::UnixAbstract(name) => {
            out.push(b'@');
            out.extend_from_slice(name);
        }
    }
}

const fn family_tag(family: Family) -> u8 {
    match family {
        Family::Unspec => 0,
        Family::Unix => 1,
        Family::Inet => 2,
        Family::Inet6 => 3,
        Family::Other(_) => 4,
    }
}

/// What identifies a pod, as bytes: its uid, which comes from the cgroup
/// path before any runtime answers, or else its namespace and name.
fn pod_identity(out: &mut Vec<u8>, pod: &Pod) {
    out.clear();
    match &pod.uid {
        Some(uid) => {
            out.push(b'u');
            out.extend_from_slice(uid.as_bytes());
        }
        None => {
            out.push(b'n');
            out.extend_from_slice(pod.namespace.as_deref().unwrap_or_default().as_bytes());
            out.push(0);
            out.extend_from_slice(pod.name.as_deref().unwrap_or_default().as_bytes());
        }
    }
}

/// A row with the key's windows and last error.
fn row<T>(tracked: &Tracked<T>, now: u64, key: String) -> Row {
    let error = tracked.last_error;
    Row {
        key,
        windows: windows(tracked.windows.tallies(now)),
        error: error.map(|kind| kind.label().into_owned()),
        class: error.and_then(FailureKind::class).map(str::to_owned),
        errno: error.and_then(|kind| match kind {
            FailureKind::Errno(errno) => Some(errno),
            FailureKind::Canceled | FailureKind::Unknown => None,
        }),
        server_name: None,
        pid: None,
        container_id: None,
        image: None,
        container: None,
        pod: None,
    }
}

fn windows(tallies: Tallies) -> Windows {
    Windows {
        last_10s: tallies.last_10s.into(),
        last_1m: tallies.last_1m.into(),
        last_5m: tallies.last_5m.into(),
    }
}

/// `own`'s failures out of `all`'s attempts.
fn of_all(own: Tallies, all: Tallies) -> Tallies {
    let of = |own: Tally, all: Tally| Tally {
        attempts: all.attempts,
        failures: own.failures,
    };
    Tallies {
        last_10s: of(own.last_10s, all.last_10s),
        last_1m: of(own.last_1m, all.last_1m),
        last_5m: of(own.last_5m, all.last_5m),
    }
}

/// As the summaries name a container: its name in its pod, its name, or
/// the first 12 digits of its id.
fn container_label(workload: &Workload) -> Option<String> {
    let container = workload.container.as_ref()?;
    let in_pod = workload.pod.as_ref().and_then(|pod| pod.container.as_ref());
    Some(match (in_pod, &container.name) {
        (Some(name), _) | (None, Some(name)) => name.to_string(),
        (None, None) => container.id.chars().take(12).collect(),
    })
}

/// `namespace/name`, as the summaries name a pod.
fn pod_label(workload: &Workload) -> Option<String> {
    let pod = workload.pod.as_ref()?;
    Some(format!(
        "{}/{}",
        pod.namespace.as_deref().unwrap_or("?"),
        pod.name.as_deref().or(pod.uid.as_deref()).unwrap_or("?")
    ))
}

#[cfg(test)]
mod tests {
    use connect_trace_common::abi::ConnectRecord;

    use super::*;
    use crate::{
        decode::{ConnectAttempt, attempt::tests::sample_record},
        resolve::{Outcome, ResolvedAttempt},
        workload::{Container, Metadata, Pod},
    };

    const REFUSED: Outcome = Outcome::Failed(Some(libc::ECONNREFUSED));

    fn report(port: u16, comm: &[u8], outcome: Outcome) -> AttemptReport {
        let mut raw: ConnectRecord = sample_record();
        raw.addr[2..4].copy_from_slice(&port.to_be_bytes());
        raw.comm = [0; 16];
        raw.comm[..comm.len()].copy_from_slice(comm);
        AttemptReport::new(ResolvedAttempt {
            attempt: ConnectAttempt::from_record(raw),
            outcome,
            handshake_ns: None,
            repeat: false,
        })
    }

    fn aggregates(recent_failures: usize) -> LiveAggregates {
        let config = LiveConfig {
            recent_failures,
            ..LiveConfig::default()
        };
        LiveAggregates::new(&config, 1000)
    }

    #[test]
    fn rows_rank_by_failures_in_the_last_minute_with_their_rates() {
        let mut live = aggregates(10);
        // Port 9: 4 failures long ago and none since; port 7: 3 failures now.
        for _ in 0..4 {
            live.record(&report(9, b"old", REFUSED), 1000);
        }
        for _ in 0..3 {
            live.record(&report(7, b"new", REFUSED), 1100);
        }
        live.record(&report(7, b"new", Outcome::Connected), 1100);
        live.record(&report(80, b"web", Outcome::Connected), 1100);
        live.record(&report(81, b"web", Outcome::InProgress), 1100);
        let snapshot = live.snapshot(1105, SystemTime::UNIX_EPOCH);
        let keys: Vec<_> = snapshot.destinations.iter().map(|r| &*r.key).collect();
        assert_eq!(
            keys,
            ["127.0.0.1:7", "127.0.0.1:9", "127.0.0.1:80", "127.0.0.1:81"]
        );
        let top = &snapshot.destinations[0];
        assert_eq!(
            (top.windows.last_10s.attempts, top.windows.last_10s.failures),
            (4, 3)
        );
        assert!((top.windows.last_10s.failure_rate - 0.75).abs() < 1e-9);
        assert_eq!(top.error.as_deref(), Some("ECONNREFUSED"));
        assert_eq!(top.class.as_deref(), Some("refused"));
        assert_eq!(top.errno, Some(libc::ECONNREFUSED));
        let old = &snapshot.destinations[1];
        assert_eq!(old.windows.last_1m.failures, 0);
        assert_eq!(old.windows.last_5m.failures, 4);
        assert_eq!(snapshot.destinations[2].error, None);

        assert_eq!(snapshot.rates.last_10s.attempts, 6);
        assert_eq!(snapshot.rates.last_10s.failures, 3);
        assert_eq!(snapshot.rates.last_5m.attempts, 10);
        assert_eq!(snapshot.total.attempts, 10);
        assert_eq!(snapshot.uptime_s, 105);
        assert_eq!(snapshot.history.attempts.len(), 120);
        assert_eq!(snapshot.history.attempts[120 - 5], 6, "second 1100");
        assert_eq!(snapshot.history.failures[120 - 5], 3);

        // The error's rate is its share of every attempt in the window.
        let error = &snapshot.errors[0];
        assert_eq!(error.key, "ECONNREFUSED");
        assert_eq!(error.class.as_deref(), Some("refused"));
        assert_eq!(
            (
                error.windows.last_10s.failures,
                error.windows.last_10s.attempts
            ),
            (3, 6)
        );
        assert_eq!(error.windows.last_5m.failures, 7);
        let processes: Vec<_> = snapshot.processes.iter().map(|r| &*r.key).collect();
        assert_eq!(processes, ["new", "old", "web"]);
        assert_eq!(snapshot.processes[0].pid, Some(42));
    }

    #[test]
    fn repeats_are_not_attempts() {
        let mut live = aggregates(10);
        let mut repeat = report(7, b"x", REFUSED);
        repeat.resolved.repeat = true;
        live.record(&repeat, 1000);
        let snapshot = live.snapshot(1000, SystemTime::UNIX_EPOCH);
        assert_eq!(snapshot.total.attempts, 0);
        assert!(snapshot.destinations.is_empty());
        assert!(snapshot.recent_failures.is_empty());
    }

    #[test]
    fn recent_failures_are_json_records_newest_first_and_bounded() {
        let mut live = aggregates(3);
        for port in 1..=5 {
            live.record(&report(port, b"\x1b]2;pwned\x07", REFUSED), 1000);
            live.record(&report(port, b"ok", Outcome::Connected), 1000);
        }
        let snapshot = live.snapshot(1001, SystemTime::UNIX_EPOCH);
        let ports: Vec<_> = snapshot
            .recent_failures
            .iter()
            .map(|record| record["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [5, 4, 3]);
        let record = &snapshot.recent_failures[0];
        assert_eq!(record["type"], "connect");
        assert_eq!(record["outcome"], "failed");
        assert_eq!(record["errno_name"], "ECONNREFUSED");
        // Kept exactly: escaping is the view's job, for its own output.
        assert_eq!(record["comm"], "\u{1b}]2;pwned\u{7}");
    }

    #[test]
    fn snapshots_survive_json() {
        let mut live = aggregates(10);
        live.record(&report(7, b"x", REFUSED), 1000);
        live.record(&report(8, b"x", Outcome::Canceled), 1000);
        let snapshot = live.snapshot(1001, SystemTime::UNIX_EPOCH);
        let text = serde_json::to_string(&snapshot).unwrap();
        let back: LiveSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snapshot);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "live");
        assert_eq!(value["destinations"][0]["10s"]["failures"], 1);
        assert_eq!(value["errors"][1]["key"], "canceled");
        assert_eq!(value["errors"][1]["class"], "canceled");
        assert_eq!(value["errors"][1]["errno"], serde_json::Value::Null);
    }

    #[test]
    fn containers_and_pods_take_names_learned_later() {
        let mut live = aggregates(10);
        let id: Arc<str> = Arc::from("ab".repeat(32));
        let workload = |name: Option<&str>, pod_name: Option<&str>| {
            Arc::new(Workload {
                cgroup_id: 7,
                cgroup: None,
                cgroup_v1: false,
                container: Some(Container {
                    id: Arc::clone(&id),
                    name: None,
                    image: name.map(|_| Arc::from("busybox")),
                    runtime: None,
                }),
                pod: Some(Pod {
                    name: pod_name.map(Arc::from),
                    namespace: pod_name.map(|_| Arc::from("shop")),
                    uid: Some(Arc::from("uid-1")),
                    container: name.map(Arc::from),
                }),
                metadata: Metadata::Known,
            })
        };
        let mut first = report(7, b"x", REFUSED);
        first.workload = Some(workload(None, None));
        live.record(&first, 1000);
        let snapshot = live.snapshot(1000, SystemTime::UNIX_EPOCH);
        assert_eq!(snapshot.containers[0].key, "abababababab");
        assert_eq!(snapshot.pods[0].key, "?/uid-1");
        let mut later = report(7, b"x", Outcome::Connected);
        later.workload = Some(workload(Some("cart"), Some("cart-0")));
        live.record(&later, 1001);
        let snapshot = live.snapshot(1001, SystemTime::UNIX_EPOCH);
        assert_eq!(snapshot.containers.len(), 1);
        assert_eq!(snapshot.containers[0].key, "cart");
        assert_eq!(snapshot.containers[0].image.as_deref(), Some("busybox"));
        assert_eq!(snapshot.containers[0].windows.last_10s.attempts, 2);
        assert_eq!(snapshot.pods.len(), 1);
        assert_eq!(snapshot.pods[0].key, "shop/cart-0");
        // Processes and containers say where they ran.
        assert_eq!(snapshot.containers[0].pod.as_deref(), Some("shop/cart-0"));
        assert_eq!(snapshot.processes[0].container.as_deref(), Some("cart"));
        assert_eq!(snapshot.processes[0].pod.as_deref(), Some("shop/cart-0"));
        // A process of the same name outside any workload takes over.
        live.record(&report(7, b"x", REFUSED), 1002);
        let snapshot = live.snapshot(1002, SystemTime::UNIX_EPOCH);
        assert_eq!(snapshot.processes[0].container, None);
        assert_eq!(snapshot.processes[0].pod, None);
    }

    /// What the sink costs per attempt (run with `--ignored --nocapture`
    /// in release to measure; the figure is in the report of #16).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_per_attempt() {
        let mut live = aggregates(100);
        let reports: Vec<_> = (0..64u16)
            .map(|port| report(port, b"load", REFUSED))
            .collect();
        let rounds = 2_000_000;
        let start = std::time::Instant::now();
        for round in 0..rounds {
            live.record(
                &reports[round % reports.len()],
                1000 + (round / 50_000) as u64,
            );
        }
        let each = start.elapsed() / u32::try_from(rounds).unwrap();
        // Next to the summaries' aggregator, which every daemon runs.
        let mut aggregator = crate::aggregate::Aggregator::new(256, SystemTime::UNIX_EPOCH);
        let start = std::time::Instant::now();
        for round in 0..rounds {
            aggregator.record(
                &reports[round % reports.len()],
                1000 + (round / 50_000) as u64,
            );
        }
        let summaries = start.elapsed() / u32::try_from(rounds).unwrap();
        println!("{each:?} per attempt; the summaries' aggregator: {summaries:?}");
    }
}
