//! The real kernel programs, real connect() calls, exact records.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use common::{RawAddr, Traced, closed_port, connect_raw, gettid, listener, socket, tcp_connect};
use connect_trace::{
    decode::{
        ConnectAttempt,
        sockaddr::{AddrProblem, Address, Family},
    },
    kernel::TracerConfig,
};

fn assert_inet(record: &ConnectAttempt, family: Family, address: Address<'_>, port: u16) {
    let destination = record.destination();
    assert_eq!(destination.family, Some(family), "{record:?}");
    assert_eq!(destination.address, address, "{record:?}");
    assert_eq!(destination.port, Some(port), "{record:?}");
    assert_eq!(destination.problem, None, "{record:?}");
}

#[test]
fn tcp4_to_a_listener_succeeds() {
    let mut traced = Traced::start();
    let (_listener, port) = listener("127.0.0.1");
    let (fd, errno) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, port), libc::AF_INET);
    assert_eq!(errno, 0);
    let record = traced.record_of(gettid());
    assert_eq!(record.pid(), std::process::id());
    assert_eq!(record.fd(), fd.as_raw_fd());
    assert_eq!(record.ret(), 0);
    assert_eq!(record.errno(), 0);
    assert_inet(
        &record,
        Family::Inet,
        Address::V4(Ipv4Addr::LOCALHOST),
        port,
    );
    // SAFETY: getuid has no preconditions.
    assert_eq!(record.uid(), unsafe { libc::getuid() });
    // SAFETY: getgid has no preconditions.
    assert_eq!(record.gid(), unsafe { libc::getgid() });
    assert!(record.latency_ns().unwrap() > 0);
    assert!(record.cgroup_id() > 0);
    assert_eq!(record.addrlen(), 16);
}

#[test]
fn tcp4_to_a_closed_port_is_refused() {
    let mut traced = Traced::start();
    let port = closed_port("127.0.0.1");
    let (_fd, errno) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, port), libc::AF_INET);
    assert_eq!(errno, libc::ECONNREFUSED);
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::ECONNREFUSED);
    assert_eq!(record.ret(), -libc::ECONNREFUSED);
    assert_inet(
        &record,
        Family::Inet,
        Address::V4(Ipv4Addr::LOCALHOST),
        port,
    );
}

#[test]
fn tcp6_to_a_listener_and_to_a_closed_port() {
    let mut traced = Traced::start();
    let (_listener, open) = listener("::1");
    let closed = closed_port("::1");
    let (_a, ok) = tcp_connect(
        &RawAddr::inet6(Ipv6Addr::LOCALHOST, open, 0),
        libc::AF_INET6,
    );
    let (_b, refused) = tcp_connect(
        &RawAddr::inet6(Ipv6Addr::LOCALHOST, closed, 0),
        libc::AF_INET6,
    );
    assert_eq!((ok, refused), (0, libc::ECONNREFUSED));
    let records = traced.records_of(gettid(), 2);
    assert_inet(
        &records[0],
        Family::Inet6,
        Address::V6(Ipv6Addr::LOCALHOST),
        open,
    );
    assert_eq!(records[0].errno(), 0);
    assert_eq!(records[0].destination().scope_id, Some(0));
    assert_inet(
        &records[1],
        Family::Inet6,
        Address::V6(Ipv6Addr::LOCALHOST),
        closed,
    );
    assert_eq!(records[1].errno(), libc::ECONNREFUSED);
}

#[test]
fn ipv4_mapped_ipv6_is_reported_as_given() {
    let mut traced = Traced::start();
    let (_listener, port) = listener("127.0.0.1");
    let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    let (_fd, errno) = tcp_connect(&RawAddr::inet6(mapped, port, 0), libc::AF_INET6);
    assert_eq!(errno, 0);
    let record = traced.record_of(gettid());
    assert_inet(&record, Family::Inet6, Address::V6(mapped), port);
}

#[test]
fn udp_connect_succeeds_without_traffic() {
    let mut traced = Traced::start();
    let port = closed_port("127.0.0.1");
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len), 0);
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), 0);
    assert_inet(
        &record,
        Family::Inet,
        Address::V4(Ipv4Addr::LOCALHOST),
        port,
    );
}

#[test]
fn unix_socket_to_a_missing_path() {
    let mut traced = Traced::start();
    let path = format!("/tmp/connect-trace-missing-{}.sock", std::process::id());
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let addr = RawAddr::unix(path.as_bytes());
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::ENOENT
    );
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::ENOENT);
    let destination = record.destination();
    assert_eq!(destination.family, Some(Family::Unix));
    assert_eq!(destination.address, Address::UnixPath(path.as_bytes()));
    assert_eq!(destination.port, None);
}

/// Linux refuses a unix address with no path byte or more than `sun_path`
/// holds; the record says why, and never shows more than 108 path bytes.
#[test]
fn unix_addresses_too_short_or_too_long_are_flagged() {
    let mut traced = Traced::start();
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let mut raw = RawAddr::unix(&[b'p'; 126]);
    for (addrlen, problem) in [
        (2, AddrProblem::Truncated),
        (111, AddrProblem::BadLength),
        (127, AddrProblem::BadLength),
        (128, AddrProblem::BadLength),
    ] {
        raw.len = addrlen;
        assert_eq!(
            connect_raw(fd.as_raw_fd(), raw.as_ptr(), raw.len),
            libc::EINVAL,
            "{addrlen}"
        );
        let record = traced.records_of(gettid(), 1).pop().unwrap();
        traced.forget_seen();
        let destination = record.destination();
        assert_eq!(destination.family, Some(Family::Unix), "{addrlen}");
        assert_eq!(destination.problem, Some(problem), "{addrlen}");
        match destination.address {
            Address::UnixPath(path) => assert!(path.len() <= 108, "{addrlen}: {}", path.len()),
            other => panic!("{addrlen}: {other:?}"),
        }
    }
}

#[test]
fn unix_abstract_name_keeps_its_bytes() {
    let mut traced = Traced::start();
    let name = format!("\0connect-trace-missing\n{}", std::process::id());
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    let addr = RawAddr::unix(name.as_bytes());
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::ECONNREFUSED
    );
    let record = traced.record_of(gettid());
    assert_eq!(
        record.destination().address,
        Address::UnixAbstract(&name.as_bytes()[1..])
    );
}

#[test]
fn bad_descriptor_is_ebadf() {
    let mut traced = Traced::start();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, 9);
    assert_eq!(connect_raw(-1, addr.as_ptr(), addr.len), libc::EBADF);
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::EBADF);
    assert_eq!(record.fd(), -1);
    assert_inet(&record, Family::Inet, Address::V4(Ipv4Addr::LOCALHOST), 9);
}

#[test]
fn a_file_is_not_a_socket() {
    let mut traced = Traced::start();
    let file = std::fs::File::open("/dev/null").unwrap();
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, 9);
    assert_eq!(
        connect_raw(file.as_raw_fd(), addr.as_ptr(), addr.len),
        libc::ENOTSOCK
    );
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::ENOTSOCK);
    assert_eq!(record.fd(), file.as_raw_fd());
}

#[test]
fn bad_pointer_is_efault_and_the_address_unreadable() {
    let mut traced = Traced::start();
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let bogus = 8 as *const libc::sockaddr;
    assert_eq!(connect_raw(fd.as_raw_fd(), bogus, 16), libc::EFAULT);
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::EFAULT);
    let destination = record.destination();
    assert_eq!(destination.problem, Some(AddrProblem::Unreadable));
    assert_eq!(destination.family, None);
}

#[test]
fn short_addrlen_is_einval_and_truncated() {
    let mut traced = Traced::start();
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, 80);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), 1), libc::EINVAL);
    assert_eq!(connect_raw(fd.as_raw_fd(), addr.as_ptr(), 8), libc::EINVAL);
    let records = traced.records_of(gettid(), 2);
    assert_eq!(records[0].errno(), libc::EINVAL);
    assert_eq!(records[0].addrlen(), 1);
    assert_eq!(
        records[0].destination().problem,
        Some(AddrProblem::Truncated)
    );
    assert_eq!(records[0].destination().family, None);
    assert_eq!(records[1].addrlen(), 8);
    assert_eq!(records[1].destination().family, Some(Family::Inet));
    assert_eq!(
        records[1].destination().problem,
        Some(AddrProblem::Truncated)
    );
}

#[test]
fn oversized_addrlen_is_einval_and_not_read() {
    let mut traced = Traced::start();
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
    let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, 80);
    assert_eq!(
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), 4096),
        libc::EINVAL
    );
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), libc::EINVAL);
    assert_eq!(record.addrlen(), 4096);
    assert_eq!(record.destination().problem, Some(AddrProblem::BadLength));
}

#[test]
fn unknown_family_is_kept_by_number() {
    let mut traced = Traced::start();
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM);
    let mut addr = RawAddr::inet(Ipv4Addr::LOCALHOST, 80);
    // SAFETY: the storage is at least as large as sockaddr.
    unsafe { (*addr.as_ptr().cast_mut()).sa_family = 0x1234 };
    addr.len = 16;
    let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
    assert_ne!(errno, 0);
    let record = traced.record_of(gettid());
    assert_eq!(record.errno(), errno);
    assert_eq!(record.destination().family, Some(Family::Other(0x1234)));
}

#[test]
fn every_thread_gets_its_own_tid() {
    let mut traced = Traced::start();
    let port = closed_port("127.0.0.1");
    let tids: Vec<u32> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
                let (_fd, errno) = tcp_connect(&addr, libc::AF_INET);
                assert_eq!(errno, libc::ECONNREFUSED);
                gettid()
            })
        })
        .map(|handle| handle.join().unwrap())
        .collect();
    for tid in tids {
        let record = traced.record_of(tid);
        assert_eq!(record.tid(), tid);
        assert_eq!(record.pid(), std::process::id());
        assert_ne!(record.tid(), record.pid());
        assert_eq!(record.errno(), libc::ECONNREFUSED);
    }
}

#[test]
fn hostile_thread_name_is_recorded_byte_for_byte() {
    let mut traced = Traced::start();
    let name = b"a\"b\\c\n\xff\0";
    let tid = std::thread::spawn(move || {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, closed_port("127.0.0.1"));
        let _ = tcp_connect(&addr, libc::AF_INET);
        gettid()
    })
    .join()
    .unwrap();
    let record = traced.record_of(tid);
    assert_eq!(record.comm(), &name[..name.len() - 1]);
}

#[test]
fn failures_only_skips_successes_in_the_kernel() {
    let mut traced = Traced::with_config(TracerConfig {
        pid: Some(std::process::id()),
        failures_only: true,
        ..TracerConfig::default()
    });
    let (_listener, open) = listener("127.0.0.1");
    let closed = closed_port("127.0.0.1");
    let (_a, ok) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, open), libc::AF_INET);
    let (_b, refused) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, closed), libc::AF_INET);
    assert_eq!((ok, refused), (0, libc::ECONNREFUSED));
    let record = traced.record_of(gettid());
    assert_eq!(record.destination().port, Some(closed));
}

#[test]
fn pid_filter_drops_other_processes_in_the_kernel() {
    let mut traced = Traced::start();
    // A child process connects; with the filter on our pid it must not show.
    let port = closed_port("127.0.0.1");
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
        .status()
        .unwrap();
    assert!(!status.success());
    // Then one of our own, as a marker that the child's would have arrived.
    let (_fd, _) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, port), libc::AF_INET);
    let _ = traced.record_of(gettid());
    let pids: Vec<u32> = traced.seen().iter().map(ConnectAttempt::pid).collect();
    assert!(
        pids.iter().all(|&pid| pid == std::process::id()),
        "{pids:?}"
    );
}

/// A call already inside connect() when tracing starts is still reported
/// when it returns, marked as one whose start (address, descriptor,
/// latency) was not seen, and counted alike on both sides.
#[test]
fn a_call_already_blocked_when_tracing_starts_is_reported_as_not_seen() {
    let dir = std::env::temp_dir().join(format!("connect-trace-unseen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("busy.sock");
    // A listener with a backlog of 0 takes one connection; the next
    // blocking connect() waits until that one is accepted.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // SAFETY: listen(2) on a socket we own.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let first = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let blocked_path = path.clone();
    let (tid_of, client_tid) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        let addr = RawAddr::unix(blocked_path.as_os_str().as_encoded_bytes());
        tid_of.send(gettid()).unwrap();
        connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len)
    });
    let tid = client_tid.recv().unwrap();
    common::wait_blocked_in_connect(tid);
    let mut traced = Traced::start();
    let (_accepted, _) = listener.accept().unwrap();
    assert_eq!(client.join().unwrap(), 0);
    let record = traced.record_of(tid);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(record.errno(), 0);
    assert_eq!(record.fd(), -1);
    assert_eq!(record.latency_ns(), None);
    let destination = record.destination();
    assert_eq!(destination.problem, Some(AddrProblem::NotSeen));
    assert_eq!(destination.family, None);
    // Other tests of this process run meanwhile, and their calls count
    // too: at least this one.
    let delivery = traced.delivery();
    assert!(delivery.calls_unseen >= 1, "{delivery:?}");
}
