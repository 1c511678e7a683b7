//! Failure rates end to end: a child process makes a known mix of real
//! connects; the daemon's summary and `/metrics` must count it exactly, a
//! real Prometheus server must scrape it and compute the failure rate, and
//! `promtool` must accept the exposition.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    DROPPED_PORT, RawAddr, closed_port, connect_raw, daemon::records_in, free_port,
    in_dropping_netns, listener, require_root, socket,
};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_connect-trace");
const TIMEOUT: Duration = Duration::from_secs(20);
const CHILD_ENV: &str = "CONNECT_TRACE_TEST_MIX_CHILD";

/// The mix, as the child makes it.
const CONNECTED_TCP: usize = 4;
const REFUSED: usize = 3;
const MISSING_UNIX: usize = 2;
const UDP: usize = 1;
const CANCELED: usize = 2;
const REPEATS: usize = 1;
const ATTEMPTS: u64 = (CONNECTED_TCP + REFUSED + MISSING_UNIX + UDP + CANCELED) as u64;
const FAILURES: u64 = (REFUSED + MISSING_UNIX + CANCELED) as u64;

/// Not a test on its own: the body of the child process that makes the
/// mix. It waits for a line on stdin (the daemon is attached by then).
#[test]
fn mix_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let (_listener, open) = listener("127.0.0.1");
    for _ in 0..CONNECTED_TCP {
        TcpStream::connect((Ipv4Addr::LOCALHOST, open)).unwrap();
    }
    let closed = closed_port("127.0.0.1");
    for _ in 0..REFUSED {
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, closed)).is_err());
    }
    for _ in 0..MISSING_UNIX {
        let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        let addr = RawAddr::unix(b"/nonexistent/connect-trace-mix.sock");
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::ENOENT
        );
    }
    for _ in 0..UDP {
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM);
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed);
        assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), 0);
    }
    in_dropping_netns(|| {
        for index in 0..CANCELED {
            let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
            let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
            assert_eq!(
                connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
                libc::EINPROGRESS
            );
            if index < REPEATS {
                assert_eq!(
                    connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
                    libc::EALREADY
                );
            }
            drop(fd);
        }
    });
}

struct Run {
    daemon: Child,
    metrics_port: u16,
    output: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Starts the child, the daemon filtered to it, lets the child run its mix
/// and waits for it to finish.
fn run_mix(name: &str) -> Run {
    require_root();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "mix_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("connect-trace-agg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&output);
    let metrics_port = free_port();
    let daemon = Command::new(BINARY)
        .args(["run", "--pid", &child.id().to_string(), "--interval", "1"])
        .args(["--metrics", &metrics_port.to_string()])
        .args(["--summary-only", "--output", output.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !records_in(&output)
        .iter()
        .any(|record| record["type"] == "started")
    {
        assert!(Instant::now() < deadline, "connect-trace did not start");
        // Polling the file the daemon appends to; nothing to wait on.
        std::thread::sleep(Duration::from_millis(10));
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success(), "the mix child failed");
    Run {
        daemon,
        metrics_port,
        output,
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// `name{labels} value` lines of an exposition, by `name{labels}`.
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Polls `/metrics` until the kernel and the daemon have counted the whole
/// mix.
fn metrics_with_mix(port: u16) -> HashMap<String, f64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = http_get(port, "/metrics");
        assert_eq!(status, 200);
        let samples = samples(&body);
        let kernel: f64 = samples
            .iter()
            .filter(|(series, _)| series.starts_with("connect_trace_kernel_attempts_total{"))
            .map(|(_, value)| value)
            .sum();
        let daemon: f64 = samples
            .iter()
            .filter(|(series, _)| series.starts_with("connect_trace_attempts_total{"))
            .map(|(_, value)| value)
            .sum();
        if kernel >= (ATTEMPTS + REPEATS as u64) as f64 && daemon >= ATTEMPTS as f64 {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the mix:\n{body}"
        );
        // The mix child's records reach the daemon within its poll interval.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn summary_and_metrics_count_a_known_mix_exactly() {
    let mut run = run_mix("exact");
    let samples = metrics_with_mix(run.metrics_port);
    let expect = [
        (
            "connect_trace_attempts_total{family=\"inet\",outcome=\"connected\"}",
            CONNECTED_TCP + UDP,
        ),
        (
            "connect_trace_attempts_total{family=\"inet\",outcome=\"failed\"}",
            REFUSED,
        ),
        (
            "connect_trace_attempts_total{family=\"inet\",outcome=\"canceled\"}",
            CANCELED,
        ),
        (
            "connect_trace_attempts_total{family=\"unix\",outcome=\"failed\"}",
            MISSING_UNIX,
        ),
        (
            "connect_trace_failures_total{class=\"refused\",error=\"ECONNREFUSED\",family=\"inet\"}",
            REFUSED,
        ),
        (
            "connect_trace_failures_total{class=\"not-found\",error=\"ENOENT\",family=\"unix\"}",
            MISSING_UNIX,
        ),
        (
            "connect_trace_failures_total{class=\"canceled\",error=\"canceled\",family=\"inet\"}",
            CANCELED,
        ),
        ("connect_trace_repeats_total", REPEATS),
        (
            "connect_trace_kernel_attempts_total{error=\"none\",family=\"inet\",outcome=\"connected\"}",
            CONNECTED_TCP + UDP,
        ),
        (
            "connect_trace_kernel_attempts_total{error=\"ECONNREFUSED\",family=\"inet\",outcome=\"failed\"}",
            REFUSED,
        ),
        (
            "connect_trace_kernel_attempts_total{error=\"ENOENT\",family=\"unix\",outcome=\"failed\"}",
            MISSING_UNIX,
        ),
        (
            "connect_trace_kernel_attempts_total{error=\"canceled\",family=\"inet\",outcome=\"canceled\"}",
            CANCELED,
        ),
        (
            "connect_trace_kernel_attempts_total{error=\"none\",family=\"inet\",outcome=\"repeat\"}",
            REPEATS,
        ),
        ("connect_trace_records_lost_total{record=\"call\"}", 0),
        ("connect_trace_programs_attached", 1),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&samples, series), value as f64, "{series}");
    }
    assert_eq!(
        sample(
            &samples,
            "connect_trace_handshake_duration_seconds_count{outcome=\"canceled\"}"
        ),
        CANCELED as f64
    );
    assert_eq!(
        http_get(run.metrics_port, "/healthz"),
        (200, "ok\n".to_owned())
    );
    dashboard_names_only_exported_metrics(run.metrics_port);
    every_exported_metric_is_documented(run.metrics_port);

    // SIGTERM writes a final summary; its totals cover the whole mix.
    let pid = libc::pid_t::try_from(run.daemon.id()).unwrap();
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(run.daemon.wait().unwrap().success());
    let records = records_in(&run.output);
    let types: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"started"), "{types:?}");
    assert_eq!(types.last(), Some(&"stopped"), "{types:?}");
    assert!(
        types[1..types.len() - 1]
            .iter()
            .all(|kind| *kind == "summary"),
        "--summary-only: {types:?}"
    );
    let summaries = &records[1..records.len() - 1];
    let last = summaries.last().unwrap();
    assert_eq!(last["total"]["attempts"], ATTEMPTS);
    assert_eq!(last["total"]["failures"], FAILURES);
    let rate = last["total"]["failure_rate"].as_f64().unwrap();
    assert!((rate - FAILURES as f64 / ATTEMPTS as f64).abs() < 1e-9);
    let outcomes = &last["total_outcomes"];
    assert_eq!(outcomes["connected"], CONNECTED_TCP + UDP);
    assert_eq!(outcomes["failed"], REFUSED + MISSING_UNIX);
    assert_eq!(outcomes["canceled"], CANCELED);
    assert_eq!(outcomes["repeats"], REPEATS);
    let delivery = &last["delivery"];
    assert_eq!(delivery["attempts_counted"], ATTEMPTS + REPEATS as u64);
    assert_eq!(delivery["records_delivered"], ATTEMPTS + REPEATS as u64);
    assert_eq!(delivery["failures_counted"], FAILURES);
    assert_eq!(delivery["records_lost"], 0);
    // The stopped record's counts are the last summary's, and then some.
    let stopped = &records[records.len() - 1]["delivery"];
    assert_eq!(stopped["records_delivered"], delivery["records_delivered"]);
    assert_eq!(stopped["attempts_counted"], delivery["attempts_counted"]);
    assert_eq!(stopped["records_written"], summaries.len() as u64 + 1);
    // The interval tables add up to the totals.
    let failures_listed: u64 = summaries
        .iter()
        .flat_map(|s| s["top"]["errors"].as_array().unwrap().clone())
        .map(|e| e["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(failures_listed, FAILURES);
    let refused_dest: u64 = summaries
        .iter()
        .flat_map(|s| s["top"]["destinations"].as_array().unwrap().clone())
        .filter(|d| d["key"] == "/nonexistent/connect-trace-mix.sock")
        .map(|d| d["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(refused_dest, MISSING_UNIX as u64);
}

/// Every query of the Grafana dashboard (panels and variables) parses as
/// PromQL, and every metric it names is in the live exposition. The top-K
/// gauges appear with the first summary, so wait for them.
fn dashboard_names_only_exported_metrics(port: u16) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/connect-trace.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap().iter();
    let queries = panels
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap())
        .chain(
            dashboard["templating"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|variable| variable["type"] == "query")
                .map(|variable| variable["definition"].as_str().unwrap()),
        );
    let mut names = Vec::new();
    for query in queries {
        // Grafana's variables are what Grafana gives Prometheus.
        if let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(',').map(|(selector, _)| selector))
        {
            promql_parser::parser::parse(inner).unwrap_or_else(|e| panic!("{inner}: {e}"));
        } else {
            let promql = query.replace("$__rate_interval", "5m");
            promql_parser::parser::parse(&promql).unwrap_or_else(|e| panic!("{query}: {e}"));
        }
        let mut rest = query;
        while let Some(start) = rest.find("connect_trace_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, exposition) = http_get(port, "/metrics");
        let exported: Vec<&str> = exposition
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect();
        let missing: Vec<_> = names
            .iter()
            .filter(|name| !exported.contains(&name.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries unknown metrics {missing:?}"
        );
        // Summaries come once a second (--interval 1); nothing to wait on.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every metric family in the exposition has a row in docs/metrics.md.
fn every_exported_metric_is_documented(port: u16) {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .unwrap();
    let (_, exposition) = http_get(port, "/metrics");
    let undocumented: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
}

/// A real Prometheus server on loopback scrapes the daemon; the failure
/// rate expression a dashboard uses must come out as the mix says, and
/// promtool must accept the exposition.
#[test]
fn prometheus_scrapes_and_computes_the_failure_rate() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "prometheus is installed by `cargo xtask setup`"
    );
    let run = run_mix("prometheus");
    let _ = metrics_with_mix(run.metrics_port);

    let (_, exposition) = http_get(run.metrics_port, "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let dir = run.output.with_extension("prom");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: connect-trace\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            run.metrics_port
        ),
    )
    .unwrap();
    let web_port = free_port();
    let mut server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = "sum(connect_trace_failures_total) / sum(connect_trace_attempts_total)";
    let deadline = Instant::now() + Duration::from_secs(60);
    let rate = loop {
        let path = format!("/api/v1/query?query={}", urlencode(query));
        if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, web_port)) {
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if let Some((_, body)) = response.split_once("\r\n\r\n")
                && let Some(value) = query_value(body)
            {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never returned the rate"
        );
        // Waiting for Prometheus to start and scrape; it has no readiness
        // signal cheaper than asking.
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        (rate - FAILURES as f64 / ATTEMPTS as f64).abs() < 1e-9,
        "rate {rate}"
    );
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The single value of an instant-vector answer, if it has one. The body
/// may be chunked; the JSON object is found by its braces.
fn query_value(body: &str) -> Option<f64> {
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let value: Value = serde_json::from_str(json).ok()?;
    value["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// The daemon's resident memory once it has taken in every record so far.
fn settled_rss_kib(daemon_pid: u32, port: u16, delivered_at_least: f64) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, body) = http_get(port, "/metrics");
        if sample(&samples(&body), "connect_trace_records_delivered_total") >= delivered_at_least {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon fell behind");
        // Records are drained every 10 ms; nothing cheaper to wait on.
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 100,000 failing connects to 100,000 distinct destinations (every
/// 127.a.b.c is loopback): the per-destination tables stay bounded, so the
/// daemon's memory after 100,000 is what it was after 10,000.
#[test]
fn memory_stays_flat_with_100000_distinct_destinations() {
    use common::daemon::Daemon;
    let dir = std::env::temp_dir().join(format!("connect-trace-flat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("summaries.jsonl");
    let _ = std::fs::remove_file(&output);
    let port = free_port();
    let daemon = Daemon::start(&[
        "--pid",
        &std::process::id().to_string(),
        "--summary-only",
        "--interval",
        "1",
        "--metrics",
        &port.to_string(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let closed = closed_port("127.0.0.1");
    let refused_to = |index: u32| {
        let ip = Ipv4Addr::from(0x7f00_0000 | (index + 2));
        let (_fd, errno) = common::tcp_connect(&RawAddr::inet(ip, closed), libc::AF_INET);
        assert_eq!(errno, libc::ECONNREFUSED, "{ip}");
    };
    for index in 0..10_000 {
        refused_to(index);
    }
    let pid = daemon.child.id();
    let early = settled_rss_kib(pid, port, 10_000.0);
    for index in 10_000..100_000 {
        refused_to(index);
    }
    let late = settled_rss_kib(pid, port, 100_000.0);
    eprintln!("daemon RSS: {early} KiB after 10,000 destinations, {late} KiB after 100,000");
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.count("records_lost"), 0);
    assert!(
        late <= early + 2 * 1024,
        "RSS grew from {early} KiB to {late} KiB over 90,000 new destinations"
    );
    let last = records_in(&output)
        .into_iter()
        .rfind(|record| record["type"] == "summary")
        .expect("a summary");
    assert!(last["other"]["destinations"]["keys_kept"].as_u64().unwrap() <= 256);
    assert!(last["total"]["failures"].as_u64().unwrap() >= 100_000);
}
