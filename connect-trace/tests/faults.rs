//! What hosts do to daemons: a reader that stops reading, a FIFO with no
//! reader, a flood of idle connections at the descriptor limit. The daemon
//! keeps tracing, counting, answering and stopping on time.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    daemon::{self, BINARY, TIMEOUT, lines_of, own_pid, refused_connect, wait_timeout},
    free_port, require_root,
};

/// GET `path` on `port`: the status, or `None` when nothing answers within
/// `limit`.
fn http_status(port: u16, path: &str, limit: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Waits until the daemon on `port` says its programs are attached.
fn wait_attached(child: &mut Child, port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while daemon::scrape(port, "connect_trace_programs_attached") != Some(1.0) {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "not attached");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let status = wait_timeout(child, limit + Duration::from_secs(2))
        .unwrap_or_else(|| panic!("SIGTERM did not stop it within {limit:?}"));
    assert!(
        started.elapsed() <= limit + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    status
}

/// `connect-trace run | slow-consumer`: the consumer never reads. The pipe
/// fills; the daemon keeps draining the ring buffer, answers /metrics at
/// once, says in /healthz that its output is stuck, counts what it cannot
/// write, and stops on SIGTERM in its documented time.
#[test]
fn a_reader_that_stops_reading_stops_nothing_else() {
    require_root();
    let port = free_port();
    let mut child = Command::new(BINARY)
        .args(["run", "--pid", &own_pid(), "--interval", "0"])
        .args(["--metrics", &port.to_string()])
        .stdin(Stdio::null())
        // Piped and never read: a full 64 KiB pipe blocks every write.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    wait_attached(&mut child, port);
    // Several hundred records are far more than the pipe holds.
    for _ in 0..2_000 {
        refused_connect();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let (status, body) = loop {
        let answer = http_status(port, "/healthz", Duration::from_secs(2))
            .expect("/healthz answers while the output is stuck");
        if answer.0 == 503 {
            break answer;
        }
        assert!(Instant::now() < deadline, "healthz stayed {answer:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503);
    assert!(body.contains("output has not taken a write"), "{body}");
    // Metrics answer at once, and the kernel's counts go on.
    let started = Instant::now();
    let text = daemon::metrics(port).expect("metrics answer");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let counted = daemon::sample(&text, "connect_trace_kernel_attempts_total");
    assert!(counted >= 2_000.0, "{text}");
    for _ in 0..100 {
        refused_connect();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon::sample(
        &daemon::metrics(port).unwrap(),
        "connect_trace_records_delivered_total",
    ) < counted + 100.0
    {
        assert!(
            Instant::now() < deadline,
            "the ring buffer is no longer drained"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stops within the 5 s it gives the output, plus a margin.
    let status = stop_within(&mut child, Duration::from_secs(6));
    assert!(status.success(), "{status}");
    let log: Vec<String> = stderr.try_iter().collect();
    let last = log.last().unwrap();
    assert!(last.contains("stopped;"), "{log:?}");
    assert!(
        log.iter().any(|line| line.contains("giving up on them")),
        "{log:?}"
    );
}

/// `--output FIFO` with nothing reading it: start-up fails at once with
/// a message saying so, instead of hanging in open().
#[test]
fn a_fifo_without_a_reader_fails_at_start() {
    require_root();
    let fifo =
        std::env::temp_dir().join(format!("connect-trace-faults-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let output = Command::new(BINARY)
        .args([
            "run",
            "--pid",
            &own_pid(),
            "--output",
            fifo.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("FIFO with no reader"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let _ = std::fs::remove_file(fifo);
}

/// CPU time (user + system, in clock ticks) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// At its descriptor limit, accept() fails with EMFILE. The metrics server
/// waits and retries (never in a busy loop), logs it, and serves again once
/// connections go away.
#[test]
fn the_descriptor_limit_is_survived_without_spinning() {
    require_root();
    let port = free_port();
    let mut child = Command::new("prlimit")
        // About 50 descriptors are the daemon's own (maps, programs,
        // links); the idle connections below take the rest.
        .args(["--nofile=64:64", BINARY, "run", "--pid", &own_pid()])
        .args(["--interval", "0", "--metrics", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    wait_attached(&mut child, port);
    // Idle connections: each one the server takes costs it a descriptor;
    // the rest wait in the listen backlog (128 deep).
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok())
        .collect();
    assert_eq!(idle.len(), 100);
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(child.id()) - before;
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    assert!(
        spent * 100 / (2 * per_second) < 20,
        "{spent} ticks in 2 s: a busy loop"
    );
    drop(idle);
    // The idle connections are closed; it serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, _)) = http_status(port, "/healthz", Duration::from_secs(2)) {
            break;
        }
        assert!(Instant::now() < deadline, "it never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = stop_within(&mut child, Duration::from_secs(6));
    assert!(status.success(), "{status}");
    let log: Vec<String> = stderr.try_iter().collect();
    let failures = log
        .iter()
        .filter(|line| line.contains("accepting a metrics connection failed"))
        .count();
    // At most one line per 10 s, however often accept() failed.
    assert!(
        (1..=2).contains(&failures),
        "logged {failures} times: {log:?}"
    );
}
