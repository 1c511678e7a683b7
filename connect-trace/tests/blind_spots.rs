//! Connects that never pass through a 64-bit connect(2): io_uring
//! requests, 32-bit programs, TCP Fast Open, and handshakes the kernel
//! starts on its own. Each gives exactly one record, with how it was made
//! (`via`) and its true outcome, and is counted in the kernel's exact
//! counts.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    DROPPED_PORT, RawAddr, Traced, closed_port, gettid, in_dropping_netns, listener, socket,
    uring::io_uring_connect,
};
use connect_trace::{
    decode::{
        Via,
        sockaddr::{Address, Family},
    },
    kernel::TracerConfig,
    resolve::{Outcome, ResolvedAttempt},
};
use io_uring::{squeue, types};

const WAIT: Duration = Duration::from_secs(10);

/// Asserts that `attempt` went to 127.0.0.1:`port`.
fn assert_to_loopback(attempt: &ResolvedAttempt, port: u16) {
    let destination = attempt.attempt.destination();
    assert_eq!(destination.family, Some(Family::Inet), "{attempt:?}");
    assert_eq!(
        destination.address,
        Address::V4(Ipv4Addr::LOCALHOST),
        "{attempt:?}"
    );
    assert_eq!(destination.port, Some(port), "{attempt:?}");
}

/// Waits until every attempt matching `wanted` has resolved, then a little
/// longer so that a second record for one of them would be seen too.
fn resolved_matching(
    traced: &mut Traced,
    count: usize,
    wanted: impl Fn(&ResolvedAttempt) -> bool,
) -> Vec<ResolvedAttempt> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found: Vec<_> = traced.resolved().into_iter().filter(&wanted).collect();
        if found.len() >= count {
            std::thread::sleep(Duration::from_millis(200));
            return traced.resolved().into_iter().filter(&wanted).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} attempts: {found:#?}; all: {:#?}",
            found.len(),
            traced.resolved()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The kernel's exact counts and the daemon's agree on what `traced` saw.
fn assert_counts_agree(traced: &mut Traced, resolved: &[ResolvedAttempt]) {
    let mut daemon: Vec<(u32, u64)> = Vec::new();
    for attempt in resolved {
        let slot = attempt.counting_slot();
        match daemon.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, count)) => *count += 1,
            None => daemon.push((slot, 1)),
        }
    }
    daemon.sort_unstable();
    let mut kernel: Vec<(u32, u64)> = traced.kernel_outcomes().nonzero().collect();
    kernel.sort_unstable();
    assert_eq!(kernel, daemon, "the kernel's counts, then the daemon's");
}

fn tcp_socket() -> OwnedFd {
    socket(libc::AF_INET, libc::SOCK_STREAM)
}

fn via_io_uring_from(tid: u32, port: u16) -> impl Fn(&ResolvedAttempt) -> bool {
    move |attempt| {
        attempt.attempt.tid() == tid
            && attempt.attempt.via() == Via::IoUring
            && attempt.attempt.destination().port == Some(port)
    }
}

#[test]
fn io_uring_connects_are_reported_once_with_their_result() {
    let mut traced = Traced::start();
    let tid = gettid();
    let cases = [
        (true, squeue::Flags::empty()),
        (false, squeue::Flags::empty()),
        // Run by an io-wq worker thread, not the submitting one.
        (false, squeue::Flags::ASYNC),
        (true, squeue::Flags::ASYNC),
    ];
    for (listening, flags) in cases {
        // A port of its own, so that no other case's record matches.
        let (server, port) = listener("127.0.0.1");
        let expected = if listening {
            0
        } else {
            drop(server);
            libc::ECONNREFUSED
        };
        let fd = tcp_socket();
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
        let errno = io_uring_connect(types::Fd(fd.as_raw_fd()), None, &addr, flags, None);
        assert_eq!(errno, expected, "{flags:?} to {port}");
        let found = resolved_matching(&mut traced, 1, via_io_uring_from(tid, port));
        assert_eq!(found.len(), 1, "{flags:?} to {port}: {found:#?}");
        let attempt = &found[0];
        assert_to_loopback(attempt, port);
        assert!(attempt.attempt.call_seen(), "{attempt:?}");
        assert_eq!(attempt.attempt.pid(), std::process::id());
        assert_eq!(attempt.attempt.fd(), fd.as_raw_fd());
        assert_eq!(attempt.attempt.errno(), expected, "{attempt:?}");
        let outcome = if expected == 0 {
            Outcome::Connected
        } else {
            Outcome::Failed(Some(expected))
        };
        assert_eq!(attempt.outcome, outcome, "{attempt:?}");
        assert!(attempt.handshake_ns.is_some(), "followed: {attempt:?}");
        assert!(!attempt.repeat, "{attempt:?}");
    }
}

#[test]
fn an_io_uring_connect_canceled_by_its_linked_timeout_is_canceled() {
    let mut traced = Traced::start();
    let (tid, errno) = in_dropping_netns(|| {
        let fd = tcp_socket();
        let silent = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
        let errno = io_uring_connect(
            types::Fd(fd.as_raw_fd()),
            None,
            &silent,
            squeue::Flags::empty(),
            Some(Duration::from_millis(100)),
        );
        (gettid(), errno)
    });
    assert_eq!(errno, libc::ECANCELED);
    let found = resolved_matching(&mut traced, 1, via_io_uring_from(tid, DROPPED_PORT));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].outcome, Outcome::Canceled, "{found:#?}");
    assert_eq!(found[0].attempt.errno(), libc::ECANCELED);
}

/// A registered file run by a worker: the worker cannot tell which request
/// its SYN belongs to, so the handshake reports it, and the request's
/// completion does not report it again.
#[test]
fn an_io_uring_connect_on_a_registered_file_is_reported_once() {
    let mut traced = Traced::start();
    let closed = closed_port("127.0.0.1");
    let fd = tcp_socket();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed);
    let errno = io_uring_connect(types::Fd(-1), Some(&fd), &addr, squeue::Flags::ASYNC, None);
    assert_eq!(errno, libc::ECONNREFUSED);
    let pid = std::process::id();
    let found = resolved_matching(&mut traced, 1, |attempt| {
        attempt.attempt.pid() == pid
            && attempt.attempt.via() == Via::IoUring
            && attempt.attempt.destination().port == Some(closed)
    });
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_to_loopback(&found[0], closed);
    assert_eq!(
        found[0].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED)),
        "{found:#?}"
    );
}

/// Builds the 32-bit client once per test run.
fn compat_client() -> PathBuf {
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/blind_spots/compat_client.c"
    );
    let binary =
        std::env::temp_dir().join(format!("connect-trace-client32-{}", std::process::id()));
    if !binary.exists() {
        let status = Command::new("gcc")
            .args(["-m32", "-static", "-O2", "-o"])
            .arg(&binary)
            .arg(source)
            .status()
            .expect("gcc (cargo xtask setup installs gcc-multilib)");
        assert!(status.success(), "building the 32-bit client: {status}");
    }
    binary
}

#[test]
fn a_32_bit_program_is_seen_through_both_compat_calls() {
    let client = compat_client();
    let (_listener, open) = listener("127.0.0.1");
    let closed = closed_port("127.0.0.1");
    for call in ["connect", "socketcall"] {
        for (port, expected) in [(closed, libc::ECONNREFUSED), (open, 0)] {
            let mut child = Command::new(&client)
                .args([call, &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            // Trace only the client, from before it connects.
            let mut traced = Traced::with_config(TracerConfig {
                pid: Some(child.id()),
                ..TracerConfig::default()
            });
            child.stdin.take().unwrap().write_all(b"x").unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(child.wait().unwrap().success());
            let result: Vec<i32> = line
                .split_whitespace()
                .map(|field| field.parse().unwrap())
                .collect();
            assert_eq!(result[1], expected, "{call} to {port}: {line}");
            let found = resolved_matching(&mut traced, 1, |_| true);
            assert_eq!(found.len(), 1, "{call} to {port}: {found:#?}");
            let attempt = &found[0];
            assert_eq!(attempt.attempt.via(), Via::Compat, "{attempt:?}");
            assert_eq!(attempt.attempt.pid(), child.id(), "{attempt:?}");
            assert_eq!(attempt.attempt.comm(), b"connect-trace-c");
            assert_to_loopback(attempt, port);
            let outcome = if expected == 0 {
                Outcome::Connected
            } else {
                Outcome::Failed(Some(expected))
            };
            assert_eq!(attempt.outcome, outcome, "{call} to {port}: {attempt:?}");
            assert_counts_agree(&mut traced, &found);
        }
    }
}

/// Runs `client` in a thread of its own network namespace with loopback
/// up and TCP Fast Open on for clients and servers.
fn in_fast_open_netns<T: Send + 'static>(client: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let status = Command::new("sh")
            .args([
                "-c",
                "set -e; ip link set lo up; echo 3 > /proc/sys/net/ipv4/tcp_fastopen",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        client()
    })
    .join()
    .unwrap()
}

/// sendto() with `MSG_FASTOPEN` to `port`; its errno (0: sent).
fn send_fast_open(port: u16) -> (OwnedFd, i32) {
    let fd = tcp_socket();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    // SAFETY: valid buffer and address for the call's duration.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            b"hello".as_ptr().cast(),
            5,
            libc::MSG_FASTOPEN,
            addr.as_ptr(),
            addr.len,
        )
    };
    let errno = if sent < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        0
    };
    (fd, errno)
}

/// This thread's network namespace's count of SYNs that carried data
/// with a cookie (`TcpExt: TCPFastOpenActive`).
fn fast_open_active() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
    let mut lines = text.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "TCPFastOpenActive")
        .map(|(_, value)| value.parse().unwrap())
        .unwrap()
}

#[test]
fn tcp_fast_open_is_seen_refused_and_connected_with_and_without_a_cookie() {
    let mut traced = Traced::start();
    let (tid, ports, with_data) = in_fast_open_netns(|| {
        let closed = closed_port("127.0.0.1");
        let (_, refused) = send_fast_open(closed);
        assert_eq!(refused, libc::ECONNREFUSED);
        let server = socket(libc::AF_INET, libc::SOCK_STREAM);
        let queue: libc::c_int = 16;
        // SAFETY: valid option value of the right size.
        let set = unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_FASTOPEN,
                (&raw const queue).cast(),
                4,
            )
        };
        assert_eq!(set, 0);
        // SAFETY: the descriptor is ours; the listener takes it over.
        let listener = unsafe {
            std::net::TcpListener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(server))
        };
        let bound = RawAddr::inet(Ipv4Addr::LOCALHOST, 0);
        // SAFETY: a valid address for the call's duration.
        let bound = unsafe { libc::bind(listener.as_raw_fd(), bound.as_ptr(), bound.len) };
        assert_eq!(bound, 0);
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 16) }, 0);
        let open = listener.local_addr().unwrap().port();
        // The first asks the server for a cookie; the second sends its
        // data in the SYN with it.
        let before = fast_open_active();
        let (_first, errno) = send_fast_open(open);
        assert_eq!(errno, 0);
        let (_second, errno) = send_fast_open(open);
        assert_eq!(errno, 0);
        let with_data = fast_open_active() - before;
        drop(listener);
        (gettid(), [closed, open, open], with_data)
    });
    assert_eq!(with_data, 1, "the second SYN carried data with a cookie");
    let found = resolved_matching(&mut traced, 3, |attempt| {
        attempt.attempt.tid() == tid && attempt.attempt.via() == Via::FastOpen
    });
    assert_eq!(found.len(), 3, "{found:#?}");
    for (attempt, port) in found.iter().zip(ports) {
        assert_to_loopback(attempt, port);
        assert!(!attempt.attempt.call_seen(), "{attempt:?}");
        assert!(attempt.attempt.latency_ns().is_none());
    }
    assert_eq!(found[0].outcome, Outcome::Failed(Some(libc::ECONNREFUSED)));
    assert_eq!(found[1].outcome, Outcome::Connected);
    assert_eq!(found[2].outcome, Outcome::Connected);
}

/// MPTCP's in-kernel path manager opens an extra subflow from a kernel
/// worker thread: a TCP handshake no program started.
#[test]
fn a_handshake_the_kernel_starts_is_reported_as_kernel() {
    let mut traced = Traced::with_config(TracerConfig::default());
    let port = in_mptcp_netns(|| {
        // SAFETY: plain syscalls; results checked.
        let server = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 262) };
        assert!(server >= 0, "MPTCP: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        let server = unsafe { OwnedFd::from_raw_fd(server) };
        let any = RawAddr::inet(Ipv4Addr::LOCALHOST, 0);
        // SAFETY: valid address and descriptor.
        unsafe {
            assert_eq!(libc::bind(server.as_raw_fd(), any.as_ptr(), any.len), 0);
            assert_eq!(libc::listen(server.as_raw_fd(), 4), 0);
        }
        // SAFETY: an owned descriptor; the listener takes it over.
        let listener = unsafe {
            std::net::TcpListener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(server))
        };
        let port = listener.local_addr().unwrap().port();
        // SAFETY: plain syscall; result checked.
        let client = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 262) };
        // SAFETY: a fresh descriptor nothing else owns.
        let client = unsafe { OwnedFd::from_raw_fd(client) };
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
        assert_eq!(
            common::connect_raw(client.as_raw_fd(), addr.as_ptr(), addr.len),
            0
        );
        let (mut accepted, _) = listener.accept().unwrap();
        // The path manager adds the subflow once the connection is fully
        // established, which takes data from the client; hold it open
        // until it has.
        // SAFETY: a valid buffer for the call's duration.
        let written = unsafe { libc::write(client.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(written, 1);
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut accepted, &mut byte).unwrap();
        let deadline = Instant::now() + WAIT;
        while subflows() < 2 {
            assert!(Instant::now() < deadline, "no second subflow");
            std::thread::sleep(Duration::from_millis(10));
        }
        port
    });
    let found = resolved_matching(&mut traced, 1, |attempt| {
        attempt.attempt.via() == Via::Kernel && attempt.attempt.destination().port == Some(port)
    });
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_to_loopback(&found[0], port);
    assert_eq!(found[0].outcome, Outcome::Connected, "{found:#?}");
    assert!(!found[0].attempt.call_seen());
    assert!(
        found[0].attempt.comm().starts_with(b"kworker"),
        "{:?}",
        String::from_utf8_lossy(found[0].attempt.comm())
    );
}

/// Established TCP connections in this thread's network namespace, both
/// directions counted.
fn subflows() -> usize {
    std::fs::read_to_string("/proc/thread-self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(3) == Some("01"))
        .count()
        / 2
}

/// Runs `client` in a thread of its own network namespace where MPTCP
/// opens one extra subflow per connection, from 10.0.0.2.
fn in_mptcp_netns<T: Send + 'static>(client: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let status = Command::new("sh")
            .args([
                "-c",
                "set -e
                 ip link set lo up
                 ip addr add 10.0.0.2/32 dev lo
                 ip mptcp limits set subflow 1 add_addr_accepted 1
                 ip mptcp endpoint add 10.0.0.2 dev lo subflow",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        client()
    })
    .join()
    .unwrap()
}
