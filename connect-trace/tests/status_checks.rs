//! A status check (connect() called again to learn a non-blocking
//! attempt's result) stays a repeat however many attempts ended just
//! before it, and every entry the kernel's table of recent attempts
//! displaced while it still mattered is counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic to fail"
)]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::Ipv4Addr,
    os::fd::{AsRawFd, OwnedFd},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{RawAddr, Traced, closed_port, connect_raw, gettid, socket, wait_writable};
use connect_trace::kernel::TracerConfig;

const ENDED: usize = 100_000;
/// Processes that make the attempts: a process may hold only so many
/// descriptors (RLIMIT_NOFILE), and raising it needs CAP_SYS_RESOURCE.
const CHILDREN: usize = 8;
const CHILD_ENV: &str = "CONNECT_TRACE_STATUS_CHECK_CHILD";

fn refused_nonblocking(addr: &RawAddr) -> OwnedFd {
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
    assert!(
        errno == libc::EINPROGRESS || errno == libc::ECONNREFUSED,
        "{errno}"
    );
    fd
}

/// In a child: refused attempts on descriptors of their own, all kept open
/// until the parent closes our stdin.
#[test]
fn attempts_child() {
    let Ok(port) = std::env::var(CHILD_ENV) else {
        return;
    };
    let closed = RawAddr::inet(Ipv4Addr::LOCALHOST, port.parse().unwrap());
    let held: Vec<OwnedFd> = (0..ENDED / CHILDREN)
        .map(|_| refused_nonblocking(&closed))
        .collect();
    println!("done {}", held.len());
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

#[test]
fn a_status_check_after_100000_ended_attempts_is_still_a_repeat() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // Traces every process: the attempts come from children.
    let mut traced = Traced::with_config(TracerConfig {
        ring_buffer_bytes: 64 * 1024 * 1024,
        ..TracerConfig::default()
    });
    let port = closed_port("127.0.0.1");
    let closed = RawAddr::inet(Ipv4Addr::LOCALHOST, port);
    let started = Instant::now();
    // 100,000 distinct (process, descriptor) keys, more than the table's
    // 65,536 slots, all ended moments ago.
    let mut children: Vec<Child> = (0..CHILDREN)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "attempts_child",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_ENV, port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let done = lines_of_children(&mut children);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = 0;
    while finished < CHILDREN {
        // Keep the ring buffer drained as the daemon would.
        let _ = traced.resolved();
        while let Ok(line) = done.recv_timeout(Duration::from_millis(20)) {
            assert!(line.contains("done"), "{line}");
            finished += 1;
        }
        assert!(Instant::now() < deadline, "{finished} children done");
    }
    eprintln!("{ENDED} refused connects in {:?}", started.elapsed());
    // Perl's IO::Socket::INET: a non-blocking connect, then connect()
    // again once the socket is writable.
    let fd = refused_nonblocking(&closed);
    wait_writable(&fd);
    assert_eq!(
        connect_raw(fd.as_raw_fd(), closed.as_ptr(), closed.len),
        libc::ECONNREFUSED
    );
    let tid = gettid();
    let mine = traced.resolved_of(tid, 2, Duration::from_secs(10));
    let check = mine.last().unwrap();
    assert_eq!(check.attempt.fd(), fd.as_raw_fd());
    assert!(check.repeat, "the status check: {mine:?}");
    assert!(!mine[0].repeat, "the attempt: {mine:?}");
    let delivery = traced.delivery();
    assert_eq!(delivery.records_lost, 0, "{delivery:?}");
    // More keys than slots: what was displaced is counted.
    assert!(
        delivery.status_checks_unmatched > 0,
        "nothing counted: {delivery:?}"
    );
    eprintln!(
        "{} entries displaced while a status check could still come",
        delivery.status_checks_unmatched
    );
    for mut child in children {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}

/// Every stdout line of the children, on one channel.
fn lines_of_children(children: &mut [Child]) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    for child in children {
        let stdout = child.stdout.take().unwrap();
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("done ") && sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    receiver
}
