//! Running as a real daemon: systemd's readiness protocol, log rotation
//! with SIGHUP, a full disk, capabilities dropped after attaching, and the
//! kernel's statistics of its programs (`--bpf-stats`).
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    collections::HashSet,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{
    daemon::{self, BINARY, Daemon, Ready, TIMEOUT, own_pid, refused_connect, sample},
    free_port, gettid,
};
use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("connect-trace-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn records_of(path: &Path, tid: u32) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["tid"] == tid)
        .collect()
}

#[test]
fn tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = temp_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let variable = format!("NOTIFY_SOCKET={}", socket_path.display());
    let daemon = Daemon::start_with(&["env", &variable], &["--pid", &own_pid()]);
    let mut message = [0u8; 256];
    let len = socket
        .recv(&mut message)
        .expect("READY=1 within the timeout");
    let ready = String::from_utf8_lossy(&message[..len]).into_owned();
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    // Ready means attached: a connect now is traced.
    refused_connect();
    let _ = daemon.record_of(gettid());
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    let len = socket
        .recv(&mut message)
        .expect("STOPPING=1 within the timeout");
    assert_eq!(&message[..len], b"STOPPING=1");
}

#[test]
fn sighup_reopens_the_output_without_losing_or_duplicating_a_record() {
    let dir = temp_dir("rotate");
    let output = dir.join("connects.jsonl");
    let rotated = dir.join("connects.jsonl.1");
    let daemon = Daemon::start(&["--pid", &own_pid(), "--output", output.to_str().unwrap()]);
    const CALLS: usize = 300;
    let (halfway, rotate) = std::sync::mpsc::channel();
    let (reopened, resume) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        for call in 0..CALLS {
            if call == CALLS / 2 {
                halfway.send(gettid()).unwrap();
            }
            // Keep connecting during the rotation, and finish after it.
            if call == CALLS * 3 / 4 {
                resume.recv().unwrap();
            }
            refused_connect();
        }
        gettid()
    });
    // Rotate the way logrotate does while the client keeps connecting,
    // once the first records are out (the daemon collects them from the
    // ring buffer in batches).
    let client_tid = rotate.recv().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while records_of(&output, client_tid).is_empty() {
        assert!(Instant::now() < deadline, "no record before the rotation");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::rename(&output, &rotated).unwrap();
    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + TIMEOUT;
    while !output.exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never reopened its output"
        );
        // The reopen creates the file; there is nothing else to wait on.
        std::thread::sleep(Duration::from_millis(5));
    }
    reopened.send(()).unwrap();
    let tid = client.join().unwrap();
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("reopened"), "{stderr}");
    let before = records_of(&rotated, tid);
    let after = records_of(&output, tid);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{} / {}",
        before.len(),
        after.len()
    );
    let stamps: HashSet<String> = before
        .iter()
        .chain(&after)
        .map(|record| record["ts"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(before.len() + after.len(), CALLS, "every record once");
    assert_eq!(stamps.len(), CALLS, "no record twice");
}

fn scrape(port: u16, series: &str) -> f64 {
    daemon::scrape(port, series).expect("metrics answer")
}

#[test]
fn a_full_disk_is_survived_and_every_record_accounted_for() {
    let dir = temp_dir("full");
    let port = free_port();
    // A 16 KiB tmpfs, mounted in a mount namespace of the daemon's own.
    let script = format!(
        "mount -t tmpfs -o size=16k connect-trace-test {dir} && exec {BINARY} run --pid {pid} --interval 0 --metrics {port} --output {dir}/connects.jsonl",
        dir = dir.display(),
        pid = std::process::id(),
    );
    let daemon = Daemon::start_in_private_mounts(&script, Ready::Metrics(port));
    let deadline = Instant::now() + TIMEOUT;
    let mut calls = 0;
    while scrape(port, "connect_trace_records_unwritten_total") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the disk never filled after {calls} calls"
        );
        refused_connect();
        calls += 1;
    }
    // Still tracing, counting and serving while the disk is full.
    let counted = scrape(port, "connect_trace_kernel_attempts_total");
    for _ in 0..20 {
        refused_connect();
    }
    // Every record delivered was written or counted as not written; the
    // one more line is the `started` record. One scrape gives one snapshot;
    // the scrape's own connect() may not have reached the daemon yet.
    let deadline = Instant::now() + TIMEOUT;
    let text = loop {
        let text = daemon::metrics(port).expect("metrics answer");
        let delivered = sample(&text, "connect_trace_records_delivered_total");
        if delivered + 1.0 >= sample(&text, "connect_trace_kernel_attempts_total") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "records stopped arriving: {text}"
        );
        // Records reach the daemon within its 10 ms poll interval.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(sample(&text, "connect_trace_kernel_attempts_total") >= counted + 20.0);
    let delivered = sample(&text, "connect_trace_records_delivered_total");
    let written = sample(&text, "connect_trace_records_written_total");
    let unwritten = sample(&text, "connect_trace_records_unwritten_total");
    assert!(unwritten > 0.0, "{text}");
    assert_eq!(delivered + 1.0, written + unwritten, "{text}");
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("cannot write to"), "{stderr}");
}

fn capabilities(pid: u32) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for line in status.lines() {
            if let Some(value) = line
                .strip_prefix("CapEff:")
                .or_else(|| line.strip_prefix("CapPrm:"))
            {
                found.push((line[..6].to_owned(), value.trim().to_owned()));
            }
        }
    }
    found
}

#[test]
fn capabilities_are_dropped_once_attached() {
    let daemon = Daemon::start(&["--pid", &own_pid()]);
    let pid = daemon.child.id();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let caps = capabilities(pid);
        if caps
            .iter()
            .all(|(_, value)| u64::from_str_radix(value, 16) == Ok(0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "still holding {caps:?}");
        // The drop follows attaching by microseconds; nothing to wait on.
        std::thread::sleep(Duration::from_millis(10));
    }
    // Without any capability it still reads the ring buffer and counters.
    refused_connect();
    let record = daemon.record_of(gettid());
    assert_eq!(record["errno_name"], "ECONNREFUSED");
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.count("records_lost"), 0);
}

fn bpf_stats_sysctl() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap()
        .trim()
        .to_owned()
}

/// `--bpf-stats` exports what each program costs, read after the daemon
/// has dropped its capabilities, and leaves the kernel's setting as it
/// found it: the statistics are held on by a descriptor, not the sysctl.
#[test]
fn bpf_stats_are_exported_while_running_and_the_sysctl_left_alone() {
    let before = bpf_stats_sysctl();
    let port = free_port();
    let daemon = Daemon::start(&[
        "--pid",
        &own_pid(),
        "--interval",
        "0",
        "--bpf-stats",
        "--metrics",
        &port.to_string(),
    ]);
    const CONNECTS: usize = 20;
    for _ in 0..CONNECTS {
        refused_connect();
    }
    let text = daemon::metrics(port).expect("metrics answer");
    // The syscall programs run for every connect() on the host, filtered
    // to this process inside them: at least once per connect made here.
    for program in ["enter_connect", "exit_connect"] {
        let label = format!("{{program=\"{program}\"}}");
        let runs = sample(
            &text,
            &format!("connect_trace_bpf_program_runs_total{label}"),
        );
        assert!(
            runs >= CONNECTS as f64,
            "{program} ran {runs} times\n{text}"
        );
        let seconds = sample(
            &text,
            &format!("connect_trace_bpf_program_run_time_seconds_total{label}"),
        );
        assert!(seconds > 0.0, "{program} ran for {seconds} s\n{text}");
    }
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .unwrap();
    for name in [
        "connect_trace_bpf_program_runs_total",
        "connect_trace_bpf_program_run_time_seconds_total",
    ] {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not in docs/metrics.md"
        );
    }
    assert_eq!(bpf_stats_sysctl(), before, "while running");
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert_eq!(bpf_stats_sysctl(), before, "after stopping");
}
