//! The true outcome of connects that do not finish inside the syscall:
//! real kernel programs, real sockets, and network namespaces of our own
//! where SYNs are dropped so that handshakes time out in seconds.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    sync::mpsc::channel,
    time::{Duration, Instant},
};

use common::{
    DROPPED_PORT, RawAddr, Traced, closed_port, connect_raw, gettid, in_dropping_netns,
    install_interrupting_handler, listener, socket, wait_blocked_in_connect, wait_writable,
};
use connect_trace::resolve::{Outcome, ResolvedAttempt};

/// A handshake in such a namespace times out after about 3 s.
const TIMEOUT_WAIT: Duration = Duration::from_secs(15);
const QUICK: Duration = Duration::from_secs(5);

fn nonblocking_tcp() -> OwnedFd {
    socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
}

fn dropped_addr() -> RawAddr {
    RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT)
}

/// Every resolved attempt of `tid`, after the resolver was told to give up
/// on anything pending, so that an extra or missing record shows.
fn all_of(traced: &mut Traced, tid: u32) -> Vec<ResolvedAttempt> {
    let mut all = traced.resolved_of(tid, 0, QUICK);
    all.extend(
        traced
            .finish()
            .into_iter()
            .filter(|r| r.attempt.tid() == tid),
    );
    all
}

#[test]
fn nonblocking_connect_to_a_listener_is_connected_with_a_handshake_time() {
    let mut traced = Traced::start();
    assert_eq!(
        traced.tracer.handshake_hook(),
        "raw tracepoint inet_sock_set_state"
    );
    let (_listener, port) = listener("127.0.0.1");
    let fd = nonblocking_tcp();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::EINPROGRESS
    );
    let resolved = traced.resolved_of(gettid(), 1, QUICK);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let attempt = &resolved[0];
    assert_eq!(attempt.attempt.errno(), libc::EINPROGRESS);
    assert_eq!(attempt.outcome, Outcome::Connected);
    assert!(attempt.handshake_ns.is_some_and(|ns| ns > 0), "{attempt:?}");
    assert!(!attempt.repeat);
    assert_eq!(all_of(&mut traced, gettid()).len(), 1);
}

#[test]
fn nonblocking_connect_to_a_closed_port_is_refused() {
    let mut traced = Traced::start();
    let fd = nonblocking_tcp();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port("127.0.0.1"));
    let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
    assert!(
        matches!(errno, libc::EINPROGRESS | libc::ECONNREFUSED),
        "{errno}"
    );
    let resolved = traced.resolved_of(gettid(), 1, QUICK);
    assert_eq!(
        resolved[0].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED))
    );
    assert!(resolved[0].handshake_ns.is_some());
    assert_eq!(all_of(&mut traced, gettid()).len(), 1);
}

#[test]
fn a_handshake_that_times_out_is_reported_once_as_etimedout() {
    let mut traced = Traced::start();
    let started = Instant::now();
    let (tid, _fd) = in_dropping_netns(|| {
        let fd = nonblocking_tcp();
        let addr = dropped_addr();
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EINPROGRESS
        );
        (gettid(), fd)
    });
    let resolved = traced.resolved_of(tid, 1, TIMEOUT_WAIT);
    let attempt = &resolved[0];
    assert_eq!(attempt.attempt.errno(), libc::EINPROGRESS);
    assert_eq!(attempt.outcome, Outcome::Failed(Some(libc::ETIMEDOUT)));
    let handshake = Duration::from_nanos(attempt.handshake_ns.unwrap());
    assert!(handshake >= Duration::from_secs(2), "{handshake:?}");
    assert!(handshake <= started.elapsed());
    assert_eq!(all_of(&mut traced, tid).len(), 1);
}

#[test]
fn closing_the_socket_during_syn_sent_is_canceled() {
    let mut traced = Traced::start();
    let tid = in_dropping_netns(|| {
        let fd = nonblocking_tcp();
        let addr = dropped_addr();
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EINPROGRESS
        );
        drop(fd);
        gettid()
    });
    let resolved = traced.resolved_of(tid, 1, QUICK);
    assert_eq!(resolved[0].outcome, Outcome::Canceled);
    assert_eq!(resolved[0].outcome.final_errno(), None);
    assert_eq!(all_of(&mut traced, tid).len(), 1);
}

#[test]
fn a_second_connect_while_connecting_is_a_repeat() {
    let mut traced = Traced::start();
    let tid = in_dropping_netns(|| {
        let fd = nonblocking_tcp();
        let addr = dropped_addr();
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EINPROGRESS
        );
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EALREADY
        );
        drop(fd);
        gettid()
    });
    let resolved = traced.resolved_of(tid, 2, QUICK);
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    let repeat = resolved
        .iter()
        .find(|r| r.attempt.errno() == libc::EALREADY)
        .unwrap();
    assert!(repeat.repeat);
    let first = resolved
        .iter()
        .find(|r| r.attempt.errno() == libc::EINPROGRESS)
        .unwrap();
    assert!(!first.repeat);
    assert_eq!(first.outcome, Outcome::Canceled);
    assert_eq!(all_of(&mut traced, tid).len(), 2);
}

#[test]
fn connecting_a_connected_socket_again_is_a_repeat() {
    let mut traced = Traced::start();
    let (_listener, port) = listener("127.0.0.1");
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), 0);
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::EISCONN
    );
    let resolved = traced.resolved_of(gettid(), 2, QUICK);
    assert_eq!(resolved[0].outcome, Outcome::Connected);
    assert!(!resolved[0].repeat);
    assert!(resolved[0].handshake_ns.is_some());
    assert!(resolved[1].repeat);
    assert_eq!(resolved[1].attempt.errno(), libc::EISCONN);
}

/// The C way to learn a non-blocking connect's result: call connect()
/// again once the socket is writable. That call is the same attempt.
#[test]
fn connect_again_to_check_the_result_is_a_repeat() {
    let mut traced = Traced::start();
    let (_listener, open) = listener("127.0.0.1");
    let closed = closed_port("127.0.0.1");
    for (port, second) in [(open, 0), (closed, libc::ECONNREFUSED)] {
        let fd = nonblocking_tcp();
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
        let first = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
        if first != libc::EINPROGRESS {
            // Refused at once: nothing to check later.
            assert_eq!(first, second);
            continue;
        }
        wait_writable(&fd);
        assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), second);
    }
    let resolved = all_of(&mut traced, gettid());
    let attempts: Vec<_> = resolved.iter().filter(|r| !r.repeat).collect();
    assert_eq!(attempts.len(), 2, "{resolved:?}");
    assert_eq!(attempts[0].outcome, Outcome::Connected);
    assert_eq!(
        attempts[1].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED))
    );
    assert!(
        resolved
            .iter()
            .filter(|r| r.repeat)
            .all(|r| r.attempt.errno() == 0 || r.attempt.errno() == libc::ECONNREFUSED)
    );
}

#[test]
fn an_interrupted_blocking_connect_goes_on_to_its_outcome() {
    let mut traced = Traced::start();
    install_interrupting_handler();
    let (ready, blocked) = channel();
    let client = std::thread::spawn(move || {
        in_dropping_netns(move || {
            // SAFETY: pthread_self has no preconditions.
            ready
                .send((gettid(), unsafe { libc::pthread_self() }))
                .unwrap();
            let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
            let addr = dropped_addr();
            let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
            (errno, fd)
        })
    });
    let (tid, thread) = blocked.recv().unwrap();
    wait_blocked_in_connect(tid);
    // SAFETY: the thread is alive: it is blocked in connect().
    assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
    let (errno, _fd) = client.join().unwrap();
    assert_eq!(errno, libc::EINTR);
    let resolved = traced.resolved_of(tid, 1, TIMEOUT_WAIT);
    assert_eq!(resolved[0].attempt.errno(), libc::EINTR);
    assert_eq!(resolved[0].outcome, Outcome::Failed(Some(libc::ETIMEDOUT)));
    assert_eq!(all_of(&mut traced, tid).len(), 1);
}

#[test]
fn a_tokio_client_with_a_timeout_is_reported_correctly() {
    let mut traced = Traced::start();
    let (_listener, port) = listener("127.0.0.1");
    let closed = closed_port("127.0.0.1");
    let tid = in_dropping_netns(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let connect = |port: u16| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                tokio::time::timeout(
                    Duration::from_millis(300),
                    tokio::net::TcpStream::connect(addr),
                )
            };
            // The listener lives in the root namespace; in this one the
            // same port is closed. The dropped port never answers, so the
            // timeout drops (closes) the socket mid-handshake.
            assert!(connect(port).await.unwrap().is_err());
            assert!(connect(closed).await.unwrap().is_err());
            assert!(connect(DROPPED_PORT).await.is_err(), "should time out");
        });
        gettid()
    });
    let mut resolved = traced.resolved_of(tid, 3, QUICK);
    resolved.sort_by_key(|r| r.attempt.start_monotonic_ns());
    let outcomes: Vec<Outcome> = resolved.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failed(Some(libc::ECONNREFUSED)),
            Outcome::Failed(Some(libc::ECONNREFUSED)),
            Outcome::Canceled
        ]
    );
    assert_eq!(all_of(&mut traced, tid).len(), 3);
    // And a tokio connect that succeeds, in the root namespace.
    let tid = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
                .unwrap()
                .unwrap();
        });
        gettid()
    })
    .join()
    .unwrap();
    let resolved = traced.resolved_of(tid, 1, QUICK);
    assert_eq!(resolved[0].attempt.errno(), libc::EINPROGRESS);
    assert_eq!(resolved[0].outcome, Outcome::Connected);
    assert_eq!(all_of(&mut traced, tid).len(), 1);
}

#[test]
fn a_plain_blocking_client_is_reported_once() {
    let mut traced = Traced::start();
    let (_listener, port) = listener("127.0.0.1");
    let _stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let refused = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, closed_port("127.0.0.1")));
    assert!(refused.is_err());
    let resolved = traced.resolved_of(gettid(), 2, QUICK);
    assert_eq!(resolved[0].attempt.errno(), 0);
    assert_eq!(resolved[0].outcome, Outcome::Connected);
    assert!(resolved[0].handshake_ns.is_some());
    assert_eq!(
        resolved[1].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED))
    );
    assert_eq!(all_of(&mut traced, gettid()).len(), 2);
}

/// On kernels with an unusual tracepoint layout or no raw tracepoints the
/// programs read fields at tracefs's offsets and follow handshakes on the
/// classic tracepoint; force those paths and check that a refused handshake
/// and a unix call still come out right.
#[test]
fn the_fallback_paths_give_the_same_records() {
    let mut traced = Traced::with_config(connect_trace::kernel::TracerConfig {
        pid: Some(std::process::id()),
        fallback_paths_only: true,
        ..connect_trace::kernel::TracerConfig::default()
    });
    assert_eq!(
        traced.tracer.handshake_hook(),
        "tracepoint sock/inet_sock_set_state"
    );
    let fd = nonblocking_tcp();
    let port = closed_port("127.0.0.1");
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
    assert!(matches!(errno, libc::EINPROGRESS | libc::ECONNREFUSED));
    let unix = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let path = RawAddr::unix(b"/nonexistent/connect-trace.sock");
    assert_eq!(
        connect_raw(unix.as_raw_fd(), path.as_ptr(), path.len),
        libc::ENOENT
    );
    let resolved = traced.resolved_of(gettid(), 2, QUICK);
    assert_eq!(
        resolved[0].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED))
    );
    assert_eq!(resolved[0].attempt.fd(), fd.as_raw_fd());
    assert_eq!(resolved[0].attempt.destination().port, Some(port));
    assert!(resolved[0].handshake_ns.is_some());
    assert_eq!(resolved[1].outcome, Outcome::Failed(Some(libc::ENOENT)));
    assert_caller_is_this_thread(&resolved[1]);
}

/// The caller's ids, cgroup, network namespace and name come either from
/// loads through the kernel's typed task pointer or, on kernels without it
/// and on the fallback paths, from one helper each: both must give this
/// thread's own.
#[test]
fn the_caller_is_the_thread_that_called() {
    let mut traced = Traced::start();
    let unix = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let path = RawAddr::unix(b"/nonexistent/connect-trace.sock");
    assert_eq!(
        connect_raw(unix.as_raw_fd(), path.as_ptr(), path.len),
        libc::ENOENT
    );
    let resolved = traced.resolved_of(gettid(), 1, QUICK);
    assert_caller_is_this_thread(&resolved[0]);
}

/// Asserts that `resolved` carries the calling thread's identity.
fn assert_caller_is_this_thread(resolved: &ResolvedAttempt) {
    let attempt = &resolved.attempt;
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!((attempt.uid(), attempt.gid()), (uid, gid));
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    assert_eq!(attempt.comm(), comm.trim_end().as_bytes());
    let netns = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_eq!(
        format!("net:[{}]", attempt.netns().unwrap()),
        netns.to_string_lossy()
    );
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap();
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|root| std::path::Path::new(root).join("cgroup.procs").exists())
        .unwrap();
    let directory = std::fs::metadata(format!("{root}{path}")).unwrap();
    assert_eq!(
        attempt.cgroup_id(),
        std::os::unix::fs::MetadataExt::ino(&directory)
    );
}

#[test]
fn udp_and_unix_connects_resolve_from_their_return_value() {
    let mut traced = Traced::start();
    let udp = socket(libc::AF_INET, libc::SOCK_DGRAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port("127.0.0.1"));
    assert_eq!(connect_raw(udp.as_raw_fd(), addr.as_ptr(), addr.len), 0);
    let unix = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let path = RawAddr::unix(b"/nonexistent/connect-trace.sock");
    assert_eq!(
        connect_raw(unix.as_raw_fd(), path.as_ptr(), path.len),
        libc::ENOENT
    );
    let resolved = traced.resolved_of(gettid(), 2, QUICK);
    assert_eq!(resolved[0].outcome, Outcome::Connected);
    assert_eq!(resolved[0].handshake_ns, None);
    assert_eq!(resolved[1].outcome, Outcome::Failed(Some(libc::ENOENT)));
}

/// An MPTCP connect moves two sockets to SYN_SENT in the calling thread:
/// the connection's own and its first subflow. Only the connection's is
/// followed, so each call is one attempt with the right outcome (the
/// kernel's counts of it are checked in `counts_agree.rs`).
#[test]
fn mptcp_connects_are_followed_like_tcp() {
    const IPPROTO_MPTCP: libc::c_int = 262;
    let mut traced = Traced::start();
    let (_listener, open) = listener("127.0.0.1");
    let closed = closed_port("127.0.0.1");
    for (port, expected) in [(open, 0), (closed, libc::ECONNREFUSED)] {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, IPPROTO_MPTCP) };
        assert!(
            fd >= 0,
            "MPTCP sockets: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            expected
        );
    }
    let resolved = all_of(&mut traced, gettid());
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert_eq!(resolved[0].outcome, Outcome::Connected);
    assert!(resolved[0].handshake_ns.is_some(), "{resolved:?}");
    assert_eq!(
        resolved[1].outcome,
        Outcome::Failed(Some(libc::ECONNREFUSED))
    );
}

/// Handshakes whose ends arrive while no call waits for them (the pending
/// set was full) must not resolve a later attempt on a socket that reuses
/// the same kernel address: attempts are named by socket and SYN time.
#[test]
fn a_new_socket_at_a_reused_address_never_takes_an_old_outcome() {
    const HELD: usize = 40;
    let mut traced = Traced::with_resolver(
        connect_trace::kernel::TracerConfig {
            pid: Some(std::process::id()),
            ..connect_trace::kernel::TracerConfig::default()
        },
        connect_trace::resolve::ResolverConfig {
            max_pending: 4,
            ..connect_trace::resolve::ResolverConfig::default()
        },
    );
    let (tid, second) = in_dropping_netns(|| {
        let connect_silent = || {
            let fd = nonblocking_tcp();
            let addr = dropped_addr();
            assert_eq!(
                connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
                libc::EINPROGRESS
            );
            fd
        };
        // Held in SYN_SENT, then closed: canceled, mostly with no call
        // waiting for the outcome.
        let first: Vec<OwnedFd> = (0..HELD).map(|_| connect_silent()).collect();
        drop(first);
        // At once, new sockets, most of them at the addresses just freed.
        let second: Vec<i32> = (0..HELD)
            .map(|_| {
                let fd = connect_silent();
                let number = fd.as_raw_fd();
                std::mem::forget(fd);
                number
            })
            .collect();
        (gettid(), second)
    });
    let mut resolved = all_of(&mut traced, tid);
    assert_eq!(resolved.len(), 2 * HELD, "{resolved:?}");
    resolved.sort_by_key(|r| r.attempt.start_monotonic_ns());
    let late = &resolved[HELD..];
    for fd in &second {
        // SAFETY: these descriptors were forgotten above and are ours.
        unsafe { libc::close(*fd) };
    }
    assert!(
        late.iter().all(|r| r.outcome != Outcome::Canceled),
        "a new attempt took an old socket's cancel: {late:?}"
    );
}

/// The kernel's entry for a handshake whose end it never saw (the kernel
/// did not report it) is removed once older than any handshake lasts, and
/// counted; it can then never resolve a later socket at that address.
/// The kernel does not always report a handshake's end as a state change
/// (seen under bursts of SYN timeouts). Such an end is caught as the
/// socket is freed, and told apart as it was: a timeout by its error, a
/// handshake that succeeded by its acknowledged SYN, and one whose error
/// the application already read as a failure of unknown cause. Here the
/// end program is left unattached, so that every end is one of those.
#[test]
fn an_end_the_kernel_did_not_report_is_caught_as_the_socket_closes() {
    let mut traced = Traced::with_config(connect_trace::kernel::TracerConfig {
        pid: Some(std::process::id()),
        handshake_ends_at_close_only: true,
        ..connect_trace::kernel::TracerConfig::default()
    });
    let (tid, timed_out, error_read) = in_dropping_netns(|| {
        let connecting = || {
            let fd = nonblocking_tcp();
            let addr = dropped_addr();
            assert_eq!(
                connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
                libc::EINPROGRESS
            );
            fd
        };
        (gettid(), connecting(), connecting())
    });
    let (_listener, port) = listener("127.0.0.1");
    let connected = nonblocking_tcp();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    assert_eq!(
        connect_raw(connected.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::EINPROGRESS
    );
    wait_writable(&connected);
    // Both time out after about 3 s, unreported: still pending.
    std::thread::sleep(Duration::from_secs(5));
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int option into an int of the given length.
    let ret = unsafe {
        libc::getsockopt(
            error_read.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut error).cast(),
            &raw mut len,
        )
    };
    assert_eq!((ret, error), (0, libc::ETIMEDOUT));
    drop((timed_out, error_read, connected));

    let netns = traced.resolved_of(tid, 2, QUICK);
    let outcomes: Vec<Outcome> = netns.iter().map(|r| r.outcome).collect();
    assert!(
        outcomes.contains(&Outcome::Failed(Some(libc::ETIMEDOUT)))
            && outcomes.contains(&Outcome::Failed(None)),
        "{netns:?}"
    );
    let here = traced.resolved_of(gettid(), 1, QUICK);
    assert_eq!(here[0].outcome, Outcome::Connected, "{here:?}");
    // At least these three: this tracer follows the whole process, where
    // other tests may be connecting at the same time.
    let caught = traced.tracer.stats().counters().unwrap().ends_at_close;
    assert!(caught >= 3, "{caught}");
}

#[test]
fn kernel_entries_whose_end_was_never_seen_expire_and_are_counted() {
    let mut traced = Traced::start();
    let now = connect_trace::clock::WallClock::monotonic_now_ns();
    let minutes = |n: u64| n * 60 * 1_000_000_000;
    let stale = 0xdead_0000_0000_1000;
    traced
        .tracer
        .follow_for_test(stale, now.saturating_sub(minutes(10)))
        .unwrap();
    traced.tracer.follow_for_test(stale + 8, now).unwrap();
    let swept = traced.tracer.sweep_pending(now, minutes(3)).unwrap();
    assert_eq!(swept.expired, 1, "{swept:?}");
    assert!(swept.followed >= 1, "{swept:?}");
    let again = traced.tracer.sweep_pending(now, minutes(3)).unwrap();
    assert_eq!(again.expired, 0, "{again:?}");
}
