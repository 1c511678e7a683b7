//! `connect-trace run` as a user runs it: a child process, JSON Lines on
//! stdout or in a file, signals to stop it.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    DROPPED_PORT, RawAddr, closed_port, connect_raw,
    daemon::{
        BINARY, Daemon, Ready, TIMEOUT, loaded_program_ids, own_pid, refused_connect, wait_timeout,
    },
    gettid, in_dropping_netns, require_root, socket,
};
use serde_json::Value;

#[test]
fn streams_a_json_line_per_connect_promptly() {
    let daemon = Daemon::start(&["--pid", &own_pid()]);
    let sent = Instant::now();
    let port = refused_connect();
    let record = daemon.record_of(gettid());
    let delay = sent.elapsed();
    assert!(delay < Duration::from_millis(500), "record took {delay:?}");
    assert_eq!(record["type"], "connect");
    assert_eq!(record["pid"], std::process::id());
    assert_eq!(record["family"], "inet");
    assert_eq!(record["addr"], "127.0.0.1");
    assert_eq!(record["port"], port);
    assert_eq!(record["ret"], -libc::ECONNREFUSED);
    assert_eq!(record["errno"], libc::ECONNREFUSED);
    assert_eq!(record["errno_name"], "ECONNREFUSED");
    assert!(record["latency_ns"].as_u64().unwrap() > 0);
    let ts = humantime::parse_rfc3339(record["ts"].as_str().unwrap()).unwrap();
    let age = std::time::SystemTime::now().duration_since(ts).unwrap();
    assert!(age < Duration::from_secs(5), "ts is {age:?} old");
}

#[test]
fn a_nonblocking_connect_is_written_with_its_true_outcome() {
    let daemon = Daemon::start(&["--pid", &own_pid()]);
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port("127.0.0.1"));
    let errno = connect_raw(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        addr.as_ptr(),
        addr.len,
    );
    assert!(matches!(errno, libc::EINPROGRESS | libc::ECONNREFUSED));
    let record = daemon.record_of(gettid());
    assert_eq!(record["outcome"], "failed");
    assert_eq!(record["final_errno"], libc::ECONNREFUSED);
    assert_eq!(record["final_errno_name"], "ECONNREFUSED");
    assert!(record["handshake_ns"].as_u64().is_some(), "{record}");
    assert_eq!(record["repeat"], false);
}

#[test]
fn attempts_still_pending_at_shutdown_are_written_as_in_progress() {
    let dir = std::env::temp_dir().join(format!("connect-trace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("pending.jsonl");
    let _ = std::fs::remove_file(&output);
    let daemon = Daemon::start(&["--pid", &own_pid(), "--output", output.to_str().unwrap()]);
    // The SYN is dropped and the socket kept open, so the handshake is
    // still under way when the daemon stops.
    let (tid, fd) = in_dropping_netns(|| {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
        let errno = connect_raw(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            addr.as_ptr(),
            addr.len,
        );
        assert_eq!(errno, libc::EINPROGRESS);
        (gettid(), fd)
    });
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    drop(fd);
    assert!(status.success(), "{stderr}");
    let records: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|record: &Value| record["tid"] == tid)
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "in_progress");
    assert_eq!(records[0]["errno_name"], "EINPROGRESS");
    assert_eq!(records[0]["final_errno"], Value::Null);
}

#[test]
fn hostile_comm_stays_inside_its_json_string() {
    let daemon = Daemon::start(&["--pid", &own_pid()]);
    let tid = std::thread::spawn(|| {
        let name = b"a\"b\\c\n\0";
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        refused_connect();
        gettid()
    })
    .join()
    .unwrap();
    let record = daemon.record_of(tid);
    assert_eq!(record["comm"], "a\"b\\c\n");
    assert!(record.get("comm_hex").is_none());
}

#[test]
fn sigterm_flushes_every_pending_record_and_detaches() {
    let dir = std::env::temp_dir().join(format!("connect-trace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("sigterm.jsonl");
    let _ = std::fs::remove_file(&output);
    // A long poll interval leaves the records in the ring buffer until the
    // shutdown drains it.
    let daemon = Daemon::start(&[
        "--pid",
        &own_pid(),
        "--poll-interval-ms",
        "1000",
        "--output",
        output.to_str().unwrap(),
    ]);
    let ids = daemon.program_ids.clone();
    assert!(ids.iter().all(|id| loaded_program_ids().contains(id)));
    for _ in 0..50 {
        refused_connect();
    }
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(stopped.count("records_lost"), 0);
    let mine = count_records_of(&output, gettid());
    assert_eq!(mine, 50, "records of this thread in {}", output.display());
    // The kernel may finish releasing a program shortly after its last
    // holder exits (deferred puts), so wait for the ids to go.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let loaded = loaded_program_ids();
        let still_loaded: Vec<_> = ids.iter().filter(|id| loaded.contains(id)).collect();
        if still_loaded.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs left behind: {still_loaded:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count_records_of(path: &Path, tid: u32) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["tid"] == tid)
        .count()
}

#[test]
fn sigint_stops_cleanly_too() {
    let daemon = Daemon::start(&["--pid", &own_pid()]);
    refused_connect();
    let _ = daemon.record_of(gettid());
    let stopped = daemon.stop_counted(libc::SIGINT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped.count("records_delivered") >= 1,
        "{}",
        stopped.delivery
    );
}

#[test]
fn a_closed_stdout_ends_the_daemon_quietly() {
    let mut daemon = Daemon::start(&["--pid", &own_pid()]);
    // Closing our end of the pipe is what `| head -1` does after one line.
    drop(daemon.stdout.take());
    let _ = daemon.stdout.take();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        refused_connect();
        if let Some(status) = wait_timeout(&mut daemon.child, Duration::from_millis(100)) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its stdout closed"
        );
    };
    let stderr: Vec<String> = daemon.stderr.try_iter().collect();
    assert!(status.success(), "{status}: {stderr:?}");
    assert!(
        !stderr.iter().any(|line| line.contains("error")),
        "{stderr:?}"
    );
}

#[test]
fn mounts_tracefs_when_it_is_missing() {
    // In a private mount namespace with tracefs unmounted, the daemon has to
    // mount it itself to find the tracepoints.
    let script = format!(
        "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug/tracing 2>/dev/null; \
         if grep -q ' tracefs ' /proc/self/mounts; then echo 'tracefs still mounted' >&2; exit 97; fi; \
         exec {BINARY} run --pid {}",
        std::process::id()
    );
    let daemon = Daemon::start_in_private_mounts(&script, Ready::Started);
    refused_connect();
    let record = daemon.record_of(gettid());
    assert_eq!(record["errno_name"], "ECONNREFUSED");
}

#[test]
fn without_privileges_it_says_what_is_missing_in_one_line() {
    require_root();
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BINARY,
            "run",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_bad_ring_buffer_size_is_refused_clearly() {
    require_root();
    let output = Command::new(BINARY)
        .args(["run", "--ring-buffer-size", "1000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("power of two"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
