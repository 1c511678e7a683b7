//! `connect-trace run --otlp-endpoint` against a real OTLP receiver
//! (`receiver`: the official OTLP protobuf definitions, over gRPC and over
//! OTLP/HTTP), with real connects made by this process:
//!
//! - a refused, a canceled and a connected attempt arrive as log records
//!   with exactly the attributes docs/otlp.md lists, under the resource it
//!   lists, and the metric points count that mix, over both protocols;
//! - a receiver absent at start-up: records flow once it appears, and what
//!   was dropped meanwhile is counted;
//! - a receiver killed mid-run: no crash and no hang, the JSON output goes
//!   on, and what could not be delivered is counted.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

#[path = "../common/mod.rs"]
mod common;
mod receiver;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use common::{
    DROPPED_PORT, RawAddr, closed_port, connect_raw,
    daemon::{Daemon, metrics, own_pid, scrape},
    free_port, in_dropping_netns, listener, socket,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{AggregationTemporality, Metric, metric::Data, number_data_point},
};
use receiver::{Receiver, Wire};
use serde_json::Value as Json;

/// How long a test waits for what the daemon sends.
const WAIT: Duration = Duration::from_secs(10);

/// Each test's daemon traces this whole process, so the tests take turns:
/// one's connects must not show up in another's metrics.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the daemon on this process, exporting to `url` over `wire`,
/// with the `OTEL_*` variables `vars` (short intervals, so the test is
/// quick).
fn daemon(wire: Wire, url: &str, vars: &[&str]) -> Daemon {
    daemon_with(wire, url, vars, &[])
}

/// [`daemon`], with more options `args`.
fn daemon_with(wire: Wire, url: &str, vars: &[&str], args: &[&str]) -> Daemon {
    let mut wrapper = vec![
        "env",
        "OTEL_BLRP_SCHEDULE_DELAY=50",
        "OTEL_METRIC_EXPORT_INTERVAL=200",
        "OTEL_EXPORTER_OTLP_TIMEOUT=2000",
    ];
    wrapper.extend_from_slice(vars);
    let pid = own_pid();
    let mut options = vec![
        "--pid",
        &pid,
        "--interval",
        "0",
        "--otlp-endpoint",
        url,
        "--otlp-protocol",
        wire.protocol(),
    ];
    options.extend_from_slice(args);
    Daemon::start_with(&wrapper, &options)
}

/// A blocking connect to a closed loopback port; returns the port.
fn refused() -> u16 {
    let port = closed_port("127.0.0.1");
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::ECONNREFUSED
    );
    port
}

/// The next JSON `connect` record to `port`.
fn json_record_to(daemon: &Daemon, port: u16) -> Json {
    let stdout = daemon.stdout.as_ref().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stdout
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("no JSON record to port {port}: {error}"));
        let record: Json = serde_json::from_str(&line).unwrap();
        if record["type"] == "connect" && record["port"] == port {
            return record;
        }
    }
}

/// The line of the daemon's log that contains `words`.
fn log_line(daemon: &Daemon, words: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = daemon
            .stderr
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("no log line with `{words}`: {error}"));
        if line.contains(words) {
            return line;
        }
    }
}

fn value(value: &Option<AnyValue>) -> Value {
    value.as_ref().unwrap().value.clone().unwrap()
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    let map: BTreeMap<String, Value> = list
        .iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect();
    assert_eq!(map.len(), list.len(), "a key twice in {list:?}");
    map
}

fn text(value: &str) -> Value {
    Value::StringValue(value.to_owned())
}

fn int(value: &Json) -> Value {
    Value::IntValue(value.as_i64().unwrap())
}

/// The attributes docs/otlp.md says an attempt's log record has, worked
/// out from its JSON record.
fn expected_attributes(json: &Json) -> BTreeMap<String, Value> {
    let mut expected = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        expected.insert(key.to_owned(), value);
    };
    put("network.peer.address", text(json["addr"].as_str().unwrap()));
    put("network.peer.port", int(&json["port"]));
    put("network.transport", text("tcp"));
    put("network.type", text("ipv4"));
    match json["outcome"].as_str().unwrap() {
        "failed" => put(
            "error.type",
            text(json["final_errno_name"].as_str().unwrap()),
        ),
        "canceled" => put("error.type", text("canceled")),
        _ => {}
    }
    put("process.pid", int(&json["pid"]));
    put("thread.id", int(&json["tid"]));
    put(
        "process.executable.name",
        text(json["comm"].as_str().unwrap()),
    );
    put("process.real_user.id", int(&json["uid"]));
    if let Some(cgroup) = json["cgroup"].as_str() {
        put("connect_trace.cgroup", text(cgroup));
    }
    put(
        "connect_trace.outcome",
        text(json["outcome"].as_str().unwrap()),
    );
    put("connect_trace.via", text(json["via"].as_str().unwrap()));
    if !json["errno"].is_null() {
        put("connect_trace.errno", int(&json["errno"]));
    }
    if let Some(name) = json["errno_name"].as_str() {
        put("connect_trace.errno_name", text(name));
    }
    if !json["final_errno"].is_null() {
        put("connect_trace.final_errno", int(&json["final_errno"]));
    }
    match (json["final_errno_class"].as_str(), json["outcome"].as_str()) {
        (Some(class), _) => put("connect_trace.error_class", text(class)),
        (None, Some("canceled")) => put("connect_trace.error_class", text("canceled")),
        _ => {}
    }
    put("connect_trace.repeat", Value::BoolValue(false));
    if let Some(ns) = json["latency_ns"].as_u64() {
        put(
            "connect_trace.syscall.duration",
            Value::DoubleValue(ns as f64 / 1e9),
        );
    }
    if let Some(ns) = json["handshake_ns"].as_u64() {
        put(
            "connect_trace.handshake.duration",
            Value::DoubleValue(ns as f64 / 1e9),
        );
    }
    put("connect_trace.family", text("inet"));
    put("connect_trace.cgroup_id", int(&json["cgroup_id"]));
    if !json["netns"].is_null() {
        put("connect_trace.netns", int(&json["netns"]));
    }
    expected
}

/// Checks one attempt's log record against its JSON record.
fn check_record(record: &LogRecord, json: &Json, severity: &str, sentence: &str) {
    assert_eq!(
        attributes(&record.attributes),
        expected_attributes(json),
        "{json}"
    );
    assert_eq!(record.severity_text, severity);
    assert_eq!(record.event_name, "connect_trace.attempt");
    let Value::StringValue(body) = value(&record.body) else {
        panic!("{:?}", record.body)
    };
    assert!(body.contains(sentence), "{body:?} should say {sentence:?}");
    let ts = humantime::parse_rfc3339(json["ts"].as_str().unwrap()).unwrap();
    let ts = ts
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        record.time_unix_nano.abs_diff(ts) < 1_000_000,
        "time {} vs the JSON's {ts}",
        record.time_unix_nano
    );
    assert!(record.observed_time_unix_nano >= record.time_unix_nano);
}

/// The data points of `metric` as (labels, count), labels as `key=value`.
fn points(metric: &Metric) -> BTreeMap<Vec<String>, u64> {
    let labels = |list: &[KeyValue]| -> Vec<String> {
        list.iter()
            .map(|kv| match value(&kv.value) {
                Value::StringValue(text) => format!("{}={text}", kv.key),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    match metric.data.as_ref().unwrap() {
        Data::Sum(sum) => {
            assert!(sum.is_monotonic);
            assert_eq!(
                sum.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            sum.data_points
                .iter()
                .map(|point| {
                    let Some(number_data_point::Value::AsInt(count)) = point.value else {
                        panic!("{point:?}")
                    };
                    (labels(&point.attributes), count as u64)
                })
                .collect()
        }
        Data::Histogram(histogram) => histogram
            .data_points
            .iter()
            .map(|point| {
                assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
                assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
                (labels(&point.attributes), point.count)
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn series(pairs: &[(&[&str], u64)]) -> BTreeMap<Vec<String>, u64> {
    pairs
        .iter()
        .map(|(labels, count)| (labels.iter().map(|l| (*l).to_owned()).collect(), *count))
        .collect()
}

fn exports_the_mix(wire: Wire) {
    let _turn = one_at_a_time();
    let receiver = Receiver::start(wire, 0);
    let daemon = daemon(
        wire,
        &receiver.url(),
        &[
            "OTEL_SERVICE_NAME=edge-tracer",
            "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test",
            "OTEL_EXPORTER_OTLP_HEADERS=x-tenant=acme%20corp",
        ],
    );
    // Make the mix: one refused, one canceled, one connected.
    let refused_port = refused();
    in_dropping_netns(|| {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EINPROGRESS
        );
        drop(fd);
    });
    let (_listener, open_port) = listener("127.0.0.1");
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, open_port);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), 0);

    let refused_json = json_record_to(&daemon, refused_port);
    let canceled_json = json_record_to(&daemon, DROPPED_PORT);
    let connected_json = json_record_to(&daemon, open_port);
    assert_eq!(canceled_json["outcome"], "canceled", "{canceled_json}");

    receiver.wait_for(WAIT, "three log records", |r| r.log_records().len() >= 3);
    let records = receiver.log_records();
    assert_eq!(records.len(), 3, "{records:?}");
    let by_port = |port: u16| {
        records
            .iter()
            .map(|(_, record)| record)
            .find(|record| {
                attributes(&record.attributes).get("network.peer.port")
                    == Some(&Value::IntValue(i64::from(port)))
            })
            .unwrap_or_else(|| panic!("no log record to port {port}"))
    };
    check_record(
        by_port(refused_port),
        &refused_json,
        "WARN",
        &format!("could not connect to 127.0.0.1:{refused_port}: ECONNREFUSED"),
    );
    check_record(
        by_port(DROPPED_PORT),
        &canceled_json,
        "WARN",
        "canceled its connect to 127.0.0.1:9 before it completed",
    );
    check_record(
        by_port(open_port),
        &connected_json,
        "INFO",
        &format!("connected to 127.0.0.1:{open_port}"),
    );

    // The resource.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let resource = attributes(&records[0].0.attributes);
    let expected: BTreeMap<String, Value> = [
        ("service.name", "edge-tracer"),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("host.name", host.trim()),
        ("deployment.environment.name", "test"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), text(value)))
    .collect();
    assert_eq!(resource, expected);

    // The metrics, once they count the whole mix.
    let latest = || {
        receiver.with(|received| {
            received
                .metrics
                .last()
                .map(|request| request.resource_metrics[0].clone())
        })
    };
    let attempts = |metrics: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics| {
        metrics.scope_metrics[0]
            .metrics
            .iter()
            .find(|metric| metric.name == "connect_trace.attempts")
            .map_or(0, |metric| points(metric).values().sum::<u64>())
    };
    receiver.wait_for(WAIT, "metrics counting three attempts", |_| {
        latest().is_some_and(|metrics| attempts(&metrics) == 3)
    });
    let metrics = latest().unwrap();
    assert_eq!(attributes(&metrics.resource.unwrap().attributes), expected);
    assert_eq!(
        metrics.scope_metrics[0].scope.as_ref().unwrap().name,
        "connect-trace"
    );
    let by_name: BTreeMap<&str, &Metric> = metrics.scope_metrics[0]
        .metrics
        .iter()
        .map(|metric| (metric.name.as_str(), metric))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        [
            "connect_trace.attempts",
            "connect_trace.attempts_by_via",
            "connect_trace.connect.duration",
            "connect_trace.failures",
            "connect_trace.handshake.duration",
        ]
    );
    assert_eq!(
        points(by_name["connect_trace.attempts"]),
        series(&[
            (&["family=inet", "outcome=connected"], 1),
            (&["family=inet", "outcome=failed"], 1),
            (&["family=inet", "outcome=canceled"], 1),
        ])
    );
    assert_eq!(
        points(by_name["connect_trace.attempts_by_via"]),
        series(&[
            (&["via=syscall", "outcome=connected"], 1),
            (&["via=syscall", "outcome=failed"], 1),
            (&["via=syscall", "outcome=canceled"], 1),
        ])
    );
    assert_eq!(
        points(by_name["connect_trace.failures"]),
        series(&[
            (&["family=inet", "error=ECONNREFUSED", "class=refused"], 1),
            (&["family=inet", "error=canceled", "class=canceled"], 1),
        ])
    );
    assert_eq!(
        points(by_name["connect_trace.connect.duration"]),
        series(&[(&[], 3)])
    );
    let mut handshakes = vec![
        (&["outcome=connected"][..], 1),
        (&["outcome=failed"][..], 1),
    ];
    if !canceled_json["handshake_ns"].is_null() {
        handshakes.push((&["outcome=canceled"][..], 1));
    }
    assert_eq!(
        points(by_name["connect_trace.handshake.duration"]),
        series(&handshakes)
    );
    assert_eq!(by_name["connect_trace.connect.duration"].unit, "s");
    assert_eq!(by_name["connect_trace.attempts"].unit, "{attempt}");

    // Every request carried the header.
    receiver.with(|received| {
        assert!(
            received
                .tenants
                .iter()
                .all(|tenant| tenant.as_deref() == Some("acme corp")),
            "{:?}",
            received.tenants
        );
        if wire == Wire::Http {
            assert!(
                received
                    .content_types
                    .iter()
                    .all(|kind| kind.as_deref() == Some("application/x-protobuf"))
            );
        }
    });
    drop(fd);
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.count("otlp_exported"), 3, "{}", stopped.delivery);
    assert_eq!(stopped.count("otlp_dropped"), 0, "{}", stopped.delivery);
    assert!(
        stopped.stderr.contains("3 exported over OTLP"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_refused_a_canceled_and_a_connected_attempt_over_grpc() {
    exports_the_mix(Wire::Grpc);
}

#[test]
fn a_refused_a_canceled_and_a_connected_attempt_over_http() {
    exports_the_mix(Wire::Http);
}

/// The receiver is absent when the daemon starts; it appears later.
fn records_flow_once_the_receiver_appears(wire: Wire) {
    let _turn = one_at_a_time();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let metrics_port = free_port().to_string();
    let daemon = daemon_with(
        wire,
        &url,
        &[
            "OTEL_BLRP_MAX_QUEUE_SIZE=4",
            "OTEL_METRIC_EXPORT_INTERVAL=60000",
        ],
        &["--metrics", &metrics_port],
    );
    // More attempts than the queue holds, while nothing listens.
    let early: Vec<u16> = (0..10).map(|_| refused()).collect();
    let line = log_line(&daemon, "is unreachable");
    assert!(line.contains(&url), "{line}");
    for port in &early {
        json_record_to(&daemon, *port);
    }
    // The drops show at /metrics while the daemon runs: the queue holds
    // four, so at least six of the ten had no room.
    let metrics_port: u16 = metrics_port.parse().unwrap();
    let scraped = |series: &str| scrape(metrics_port, series).unwrap();
    let deadline = Instant::now() + WAIT;
    while scraped("connect_trace_otlp_records_dropped_total") < 6.0 {
        assert!(Instant::now() < deadline, "{:?}", metrics(metrics_port));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        scraped("connect_trace_otlp_export_failures_total{signal=\"logs\"}") >= 1.0,
        "{:?}",
        metrics(metrics_port)
    );
    assert!(scraped("connect_trace_otlp_queued_records") <= 4.0);
    let receiver = Receiver::start(wire, port);
    let line = log_line(&daemon, "takes data again");
    assert!(line.contains("dropped meanwhile"), "{line}");
    let late = refused();
    json_record_to(&daemon, late);
    receiver.wait_for(WAIT, "the record made after it appeared", |r| {
        r.log_records().iter().any(|(_, record)| {
            attributes(&record.attributes).get("network.peer.port")
                == Some(&Value::IntValue(i64::from(late)))
        })
    });
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let (exported, dropped) = (
        stopped.count("otlp_exported"),
        stopped.count("otlp_dropped"),
    );
    assert_eq!(exported, receiver.log_records().len() as u64);
    assert!(dropped > 0, "{}", stopped.delivery);
    assert!(
        exported >= 5,
        "the queue's four and the late one: {}",
        stopped.delivery
    );
    assert_eq!(
        exported + dropped,
        stopped.count("records_delivered"),
        "every attempt exported or counted as dropped: {}",
        stopped.delivery
    );
}

#[test]
fn records_flow_once_a_grpc_receiver_appears() {
    records_flow_once_the_receiver_appears(Wire::Grpc);
}

#[test]
fn records_flow_once_an_http_receiver_appears() {
    records_flow_once_the_receiver_appears(Wire::Http);
}

/// The receiver dies while the daemon runs.
fn survives_a_receiver_killed_mid_run(wire: Wire) {
    let _turn = one_at_a_time();
    let receiver = Receiver::start(wire, 0);
    let daemon = daemon(wire, &receiver.url(), &[]);
    let before: Vec<u16> = (0..2).map(|_| refused()).collect();
    receiver.wait_for(WAIT, "the first two records", |r| {
        r.log_records().len() >= 2
    });
    receiver.kill();
    // The JSON output does not wait for the exporter.
    for _ in 0..3 {
        let made = Instant::now();
        let port = refused();
        json_record_to(&daemon, port);
        assert!(
            made.elapsed() < Duration::from_secs(1),
            "a JSON record took {:?}",
            made.elapsed()
        );
    }
    log_line(&daemon, "is unreachable");
    let stopping = Instant::now();
    let stopped = daemon.stop_counted(libc::SIGTERM);
    let took = stopping.elapsed();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(took < Duration::from_secs(6), "stopping took {took:?}");
    assert_eq!(stopped.count("otlp_exported"), before.len() as u64);
    assert_eq!(stopped.count("otlp_dropped"), 3, "{}", stopped.delivery);
    assert_eq!(stopped.count("records_delivered"), 5);
    assert_eq!(stopped.count("records_unwritten"), 0);
}

#[test]
fn survives_a_grpc_receiver_killed_mid_run() {
    survives_a_receiver_killed_mid_run(Wire::Grpc);
}

#[test]
fn survives_an_http_receiver_killed_mid_run() {
    survives_a_receiver_killed_mid_run(Wire::Http);
}

/// `--failures-only` applies to the log records as to the JSON output: a
/// connected attempt sends none (one protocol suffices: the filter runs
/// before every sink). The endpoint and protocol come from the standard
/// variables alone here.
#[test]
fn failures_only_sends_only_failures() {
    let _turn = one_at_a_time();
    let receiver = Receiver::start(Wire::Http, 0);
    let endpoint = format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", receiver.url());
    let daemon = Daemon::start_with(
        &[
            "env",
            "OTEL_BLRP_SCHEDULE_DELAY=50",
            &endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        ],
        &["--pid", &own_pid(), "--interval", "0", "--failures-only"],
    );
    let (_listener, open_port) = listener("127.0.0.1");
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, open_port);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), 0);
    let refused_port = refused();
    json_record_to(&daemon, refused_port);
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let records = receiver.log_records();
    let ports: Vec<Option<Value>> = records
        .iter()
        .map(|(_, record)| {
            attributes(&record.attributes)
                .get("network.peer.port")
                .cloned()
        })
        .collect();
    assert_eq!(
        ports,
        [Some(Value::IntValue(i64::from(refused_port)))],
        "only the refused attempt"
    );
    assert_eq!(stopped.count("otlp_exported"), 1, "{}", stopped.delivery);
    drop(fd);
}

/// The receiver refuses everything (a missing token): the log says so,
/// nothing is retried forever, the refused records are counted as
/// dropped, and the JSON output is whole.
fn counts_what_a_refusing_receiver_refuses(wire: Wire) {
    let _turn = one_at_a_time();
    let receiver = Receiver::start_refusing(wire);
    let daemon = daemon(wire, &receiver.url(), &[]);
    let ports: Vec<u16> = (0..3).map(|_| refused()).collect();
    for port in &ports {
        json_record_to(&daemon, *port);
    }
    let line = log_line(&daemon, "refused the data");
    assert!(line.contains(&receiver.url()), "{line}");
    receiver.wait_for(WAIT, "the records refused", |r| {
        r.with(|received| received.refused) >= 1
    });
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.count("otlp_exported"), 0, "{}", stopped.delivery);
    assert_eq!(stopped.count("otlp_dropped"), 3, "{}", stopped.delivery);
    assert_eq!(stopped.count("records_unwritten"), 0);
    assert!(receiver.log_records().is_empty());
}

#[test]
fn counts_what_a_refusing_grpc_receiver_refuses() {
    counts_what_a_refusing_receiver_refuses(Wire::Grpc);
}

#[test]
fn counts_what_a_refusing_http_receiver_refuses() {
    counts_what_a_refusing_receiver_refuses(Wire::Http);
}

/// The endpoint takes connections and never answers (a hung collector:
/// the kernel completes the TCP handshake for a listener that never
/// accepts): each request times out, the JSON output keeps its pace,
/// and stopping is bounded and counts what was not delivered.
#[test]
fn a_receiver_that_never_answers_costs_only_its_records() {
    let _turn = one_at_a_time();
    let hung = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("http://127.0.0.1:{}", hung.local_addr().unwrap().port());
    let daemon = daemon(Wire::Grpc, &url, &["OTEL_EXPORTER_OTLP_TIMEOUT=300"]);
    for _ in 0..3 {
        let made = Instant::now();
        json_record_to(&daemon, refused());
        assert!(
            made.elapsed() < Duration::from_secs(1),
            "a JSON record took {:?}",
            made.elapsed()
        );
    }
    let line = log_line(&daemon, "is unreachable");
    assert!(line.contains(&url), "{line}");
    let stopping = Instant::now();
    let stopped = daemon.stop_counted(libc::SIGTERM);
    let took = stopping.elapsed();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(took < Duration::from_secs(6), "stopping took {took:?}");
    assert_eq!(stopped.count("otlp_exported"), 0, "{}", stopped.delivery);
    assert_eq!(stopped.count("otlp_dropped"), 3, "{}", stopped.delivery);
    drop(hung);
}
