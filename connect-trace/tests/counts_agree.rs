//! The kernel's exact counts and the daemon's resolved attempts count the
//! same traffic the same way, repeats and status checks included: both
//! apply `connect_trace_common::outcome`.
//!
//! A test binary of its own, so that no other test's calls reach this
//! tracer (it traces this whole process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic to fail"
)]

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::fd::{AsRawFd, OwnedFd},
    sync::mpsc::channel,
    time::Duration,
};

use common::{
    DROPPED_PORT, RawAddr, Traced, closed_port, connect_raw, gettid, in_dropping_netns,
    install_interrupting_handler, listener, socket, uring, wait_blocked_in_connect, wait_writable,
};
use connect_trace::kernel::OutcomeTally;
use io_uring::{squeue, types};

fn nonblocking_tcp() -> OwnedFd {
    socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
}

/// Makes a mix of every kind of call the outcome model distinguishes and
/// returns how many calls it made, and the UDP socket's descriptor.
fn mix() -> (usize, i32) {
    let mut calls = 0;
    let mut call = |fd: &OwnedFd, addr: &RawAddr| {
        calls += 1;
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len)
    };
    let (_listener, open) = listener("127.0.0.1");
    let open = RawAddr::inet(Ipv4Addr::LOCALHOST, open);
    let closed = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port("127.0.0.1"));

    // A non-blocking connect, checked with connect() again, then EISCONN.
    let fd = nonblocking_tcp();
    if call(&fd, &open) == libc::EINPROGRESS {
        wait_writable(&fd);
        assert_eq!(call(&fd, &open), 0);
    }
    assert_eq!(call(&fd, &open), libc::EISCONN);
    // Refused, and the status check repeating the error (Perl's way).
    let fd = nonblocking_tcp();
    if call(&fd, &closed) == libc::EINPROGRESS {
        wait_writable(&fd);
        assert_eq!(call(&fd, &closed), libc::ECONNREFUSED);
    }
    // A status check that passes another address reports the same result.
    let fd = nonblocking_tcp();
    if call(&fd, &closed) == libc::EINPROGRESS {
        wait_writable(&fd);
        assert_eq!(call(&fd, &open), libc::ECONNREFUSED);
    }
    // Blocking: refused, connected.
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    assert_eq!(call(&fd, &closed), libc::ECONNREFUSED);
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    assert_eq!(call(&fd, &open), 0);
    // A UDP socket on the descriptor a connected TCP socket just left, to
    // the same address: a new attempt, not a status check.
    let number = fd.as_raw_fd();
    drop(fd);
    let udp = socket(libc::AF_INET, libc::SOCK_DGRAM);
    assert_eq!(udp.as_raw_fd(), number, "the descriptor is reused");
    assert_eq!(call(&udp, &open), 0);
    // MPTCP, connected and refused: two sockets go to SYN_SENT per call.
    // Kernels built without MPTCP (some in the kernel matrix) refuse the
    // protocol; the host CI runs on has it.
    for (addr, expected) in [(&open, 0), (&closed, libc::ECONNREFUSED)] {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 262) };
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(
                error.raw_os_error(),
                Some(libc::EPROTONOSUPPORT),
                "MPTCP: {error}"
            );
            break;
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        assert_eq!(call(&fd, addr), expected);
    }
    // A unix path that does not exist.
    let unix = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let missing = RawAddr::unix(b"/nonexistent/connect-trace-counts.sock");
    assert_eq!(call(&unix, &missing), libc::ENOENT);
    (calls, number)
}

/// EALREADY and a cancel, then an interrupted blocking connect canceled by
/// closing it, in a namespace whose SYNs to DROPPED_PORT vanish.
fn mix_in_a_silent_namespace() -> usize {
    install_interrupting_handler();
    let (ready, blocked) = channel();
    let (interrupted, go_on) = channel::<()>();
    let client = std::thread::spawn(move || {
        in_dropping_netns(move || {
            let silent = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
            let fd = nonblocking_tcp();
            let raw = |fd: &OwnedFd| connect_raw(fd.as_raw_fd(), silent.as_ptr(), silent.len);
            assert_eq!(raw(&fd), libc::EINPROGRESS);
            assert_eq!(raw(&fd), libc::EALREADY);
            drop(fd);
            // SAFETY: pthread_self has no preconditions.
            ready
                .send((gettid(), unsafe { libc::pthread_self() }))
                .unwrap();
            let blocking = socket(libc::AF_INET, libc::SOCK_STREAM);
            assert_eq!(raw(&blocking), libc::EINTR);
            go_on.recv().unwrap();
            drop(blocking);
        });
    });
    let (tid, thread) = blocked.recv().unwrap();
    wait_blocked_in_connect(tid);
    // SAFETY: the thread is alive: it is blocked in connect().
    assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
    interrupted.send(()).unwrap();
    client.join().unwrap();
    3
}

/// Attempts made without connect(2): io_uring requests (connected, a
/// repeat, refused) and TCP Fast Open to a closed port. Where the kernel
/// cannot trace io_uring requests (before 6.0), only their handshakes are
/// seen, and the repeat, which sends none, is not.
fn mix_of_other_paths(io_uring_traced: bool) -> usize {
    let (_listener, open) = listener("127.0.0.1");
    let open = RawAddr::inet(Ipv4Addr::LOCALHOST, open);
    let closed_port = closed_port("127.0.0.1");
    let closed = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port);
    let ring = |fd: &OwnedFd, addr: &RawAddr| {
        uring::io_uring_connect(
            types::Fd(fd.as_raw_fd()),
            None,
            addr,
            squeue::Flags::empty(),
            None,
        )
    };
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    assert_eq!(ring(&fd, &open), 0);
    assert_eq!(ring(&fd, &open), libc::EISCONN);
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    assert_eq!(ring(&fd, &closed), libc::ECONNREFUSED);
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    // SAFETY: valid buffer and address for the call's duration.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            b"x".as_ptr().cast(),
            1,
            libc::MSG_FASTOPEN,
            closed.as_ptr(),
            closed.len,
        )
    };
    assert_eq!(sent, -1);
    if io_uring_traced { 4 } else { 3 }
}

/// A blocking connect that times out: its end comes from a timer, in
/// whatever task the CPU runs, while the caller still waits in connect().
fn timed_out_blocking_call() -> usize {
    in_dropping_netns(|| {
        let silent = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
        assert_eq!(
            connect_raw(fd.as_raw_fd(), silent.as_ptr(), silent.len),
            libc::ETIMEDOUT
        );
    });
    1
}

/// Counts by (family, outcome, error), leaving out empty slots.
fn by_label(
    counts: impl IntoIterator<Item = (u32, u64)>,
) -> BTreeMap<(String, String, String), u64> {
    let mut map = BTreeMap::new();
    for (slot, count) in counts {
        let (family, outcome, error) = OutcomeTally::labels(slot);
        *map.entry((family.to_owned(), outcome.to_owned(), error))
            .or_default() += count;
    }
    map
}

#[test]
fn the_kernel_and_the_daemon_count_the_same_mix_the_same_way() {
    let mut traced = Traced::start();
    let timing_out = std::thread::spawn(timed_out_blocking_call);
    let (calls, udp_fd) = mix();
    let calls = calls
        + mix_in_a_silent_namespace()
        + mix_of_other_paths(traced.tracer.io_uring_problem().is_none());
    let calls = calls + timing_out.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        let resolved = traced.resolved();
        if resolved.len() >= calls {
            break resolved;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {calls} calls resolved: {resolved:#?}",
            resolved.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // A preemptible kernel (all of 7.x) may skip a program run when a task
    // preempted inside the same program on that CPU (in the kernel matrix
    // the guests have one) connects too; the skip is counted. A skipped
    // entry still gives the call's record, without an address, and its
    // handshake one of its own; a skipped exit loses the call's record.
    // The kernel's counts and the daemon's must agree either way.
    let missed = usize::try_from(traced.delivery().events_missed).unwrap();
    if missed == 0 {
        assert_eq!(resolved.len(), calls, "{resolved:#?}");
    } else {
        assert!(
            (calls.saturating_sub(missed)..=calls + missed).contains(&resolved.len()),
            "{} resolved of {calls} calls, {missed} program runs skipped: {resolved:#?}",
            resolved.len()
        );
    }
    let daemon = by_label(resolved.iter().map(|r| (r.counting_slot(), 1)));
    let kernel = by_label(traced.kernel_outcomes().nonzero());
    assert_eq!(kernel, daemon, "kernel counts, then the daemon's");
    let repeats = resolved.iter().filter(|r| r.repeat).count();
    assert!(
        repeats >= 3,
        "EISCONN, EALREADY and status checks: {resolved:#?}"
    );
    let udp = resolved
        .iter()
        .find(|r| r.attempt.fd() == udp_fd && r.handshake_ns.is_none())
        .expect("the UDP connect");
    assert!(!udp.repeat, "a UDP connect on a reused descriptor: {udp:?}");
    let delivery = traced.delivery();
    assert_eq!(delivery.records_lost, 0);
    assert_eq!(delivery.outcomes_unmatched, 0, "no phantom outcome");
    assert_eq!(delivery.status_checks_unmatched, 0);
}
