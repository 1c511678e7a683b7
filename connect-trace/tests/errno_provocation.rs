//! Makes every errno that Linux returns from connect() happen for real, and
//! checks that the tracer's record carries it, with the right name and
//! catalog class.
//!
//! Needs root (`cargo xtask test` runs it so in CI). Every case runs on a
//! worker thread that first moves into a network namespace of its own
//! (`unshare(CLONE_NEWNET)` moves only the calling thread), with nothing in
//! it but `lo`; routes, nftables rules and sysctls are set there by `ip` and
//! `nft` children of that thread and by writes to /proc/sys from it. No
//! packet can leave the machine: the only addresses used are loopback and
//! documentation ranges routed nowhere inside those namespaces.
//! `docs/errno-catalog.md` lists which test provokes which errno.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{
    fs,
    io::Write as _,
    mem::size_of,
    net::{Ipv4Addr, Ipv6Addr, TcpListener},
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::fs::{PermissionsExt, symlink},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Once,
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use common::{RawAddr, Traced, connect_raw, gettid, socket};
use connect_trace::{
    decode::ConnectAttempt,
    errno::{
        self,
        catalog::{self, Class, Reach},
    },
};

/// How long a worker may take, set-up included.
const WORKER_LIMIT: Duration = Duration::from_secs(20);

/// The TCP port that listeners use inside a namespace; the namespace is
/// ours alone, so a fixed number cannot collide.
const PORT: u16 = 5000;

/// A port whose SYNs the nftables rules below drop.
const SILENT_PORT: u16 = 5001;

/// Drops every SYN to [`SILENT_PORT`] on arrival: the peer seems silent.
const DROP_INPUT: &str = "table inet connect_trace {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 5001 drop
    }
}";

/// Drops every SYN to [`SILENT_PORT`] before it leaves this host's stack.
const DROP_OUTPUT: &str = "table inet connect_trace {
    chain output {
        type filter hook output priority 0; policy accept;
        tcp dport 5001 drop
    }
}";

/// Sysctls that make a SYN-to-nowhere give up after about 3 s: one
/// retransmission, with the classic doubling timeouts (1 s, then 2 s).
const FAST_SYN_TIMEOUT: [(&str, &str); 2] = [
    ("net.ipv4.tcp_syn_retries", "1"),
    ("net.ipv4.tcp_syn_linear_timeouts", "0"),
];

// ---------------------------------------------------------------------------
// Network namespaces and worker threads

/// The set-up of a worker's private network namespace.
#[derive(Default)]
struct Netns {
    /// `ip` command lines, split on whitespace.
    ip: Vec<&'static str>,
    /// An nftables ruleset, fed to `nft -f -`.
    nft: Option<&'static str>,
    /// `(key, value)` pairs written under /proc/sys.
    sysctls: Vec<(&'static str, &'static str)>,
}

impl Netns {
    fn ip(mut self, line: &'static str) -> Self {
        self.ip.push(line);
        self
    }

    fn nft(mut self, ruleset: &'static str) -> Self {
        self.nft = Some(ruleset);
        self
    }

    fn sysctls(mut self, pairs: &[(&'static str, &'static str)]) -> Self {
        self.sysctls.extend_from_slice(pairs);
        self
    }

    /// Moves the calling thread into a new network namespace and sets it up.
    fn enter(&self) {
        let before = fs::read_link("/proc/thread-self/ns/net").unwrap();
        // SAFETY: no memory is involved; CLONE_NEWNET moves only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        let after = fs::read_link("/proc/thread-self/ns/net").unwrap();
        // Everything below would change the host otherwise.
        assert_ne!(before, after, "still in the original network namespace");

        run(Command::new("ip").args(["link", "set", "lo", "up"]), None);
        for line in &self.ip {
            run(Command::new("ip").args(line.split_whitespace()), None);
        }
        if let Some(ruleset) = self.nft {
            run(Command::new("nft").args(["-f", "-"]), Some(ruleset));
        }
        for (key, value) in &self.sysctls {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            // Kernels without tcp_syn_linear_timeouts (Debian's 5.10 and
            // 6.1) always double the SYN timeouts, which is what setting
            // it to 0 asks for.
            if key.ends_with("tcp_syn_linear_timeouts") && !path.exists() {
                continue;
            }
            fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let read = fs::read_to_string(&path).unwrap();
            assert!(
                read.split_whitespace().eq(value.split_whitespace()),
                "{}: {read:?}",
                path.display()
            );
        }
    }
}

/// Runs a set-up command (a child of the calling thread, so in its network
/// namespace) and fails the test with its stderr if it fails.
fn run(command: &mut Command, stdin: Option<&str>) {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A thread in a network namespace of its own, running one test body.
struct Worker<T> {
    tid: u32,
    result: Receiver<T>,
    handle: JoinHandle<()>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts the thread, sets up its namespace, and returns once `body` is
    /// about to run.
    fn spawn(netns: Netns, body: impl FnOnce() -> T + Send + 'static) -> Self {
        let (tid_sender, tid_receiver) = channel();
        let (result_sender, result) = channel();
        let handle = thread::Builder::new()
            .name("errno-worker".into())
            .spawn(move || {
                netns.enter();
                tid_sender.send(gettid()).unwrap();
                let _ = result_sender.send(body());
            })
            .unwrap();
        let tid = match tid_receiver.recv_timeout(WORKER_LIMIT) {
            Ok(tid) => tid,
            Err(RecvTimeoutError::Disconnected) => rethrow(handle),
            Err(RecvTimeoutError::Timeout) => {
                panic!("namespace set-up took longer than {WORKER_LIMIT:?}")
            }
        };
        Self {
            tid,
            result,
            handle,
        }
    }

    /// Waits for the body's result, at most [`WORKER_LIMIT`].
    fn finish(self) -> T {
        match self.result.recv_timeout(WORKER_LIMIT) {
            Ok(value) => value,
            Err(RecvTimeoutError::Disconnected) => rethrow(self.handle),
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "worker {} still busy after {WORKER_LIMIT:?}: {}",
                    self.tid,
                    fs::read_to_string(format!("/proc/self/task/{}/syscall", self.tid))
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// Re-raises the panic of a worker that died.
fn rethrow(handle: JoinHandle<()>) -> ! {
    match handle.join() {
        Err(payload) => std::panic::resume_unwind(payload),
        Ok(()) => panic!("worker ended without a result"),
    }
}

/// Starts a tracer, runs `body` in a fresh network namespace, and returns
/// the records of its connect() calls. `body` returns the errno (or 0) each
/// of its calls gave the program, in order; each record must say the same.
fn provoke(netns: Netns, body: impl FnOnce() -> Vec<i32> + Send + 'static) -> Vec<ConnectAttempt> {
    let mut traced = Traced::start();
    let worker = Worker::spawn(netns, body);
    let tid = worker.tid;
    let seen = worker.finish();
    let records = traced.records_of(tid, seen.len());
    assert_eq!(records.len(), seen.len(), "{records:?}");
    for (record, errno) in records.iter().zip(&seen) {
        assert_eq!(record.errno(), *errno, "{record:?}");
    }
    records
}

/// Checks that `record` failed with `name`, that the tracer's name table and
/// the catalog agree, and that the catalog calls it reachable.
fn assert_failed_with(record: &ConnectAttempt, name: &str, class: Class) {
    let number = errno::number(name).unwrap();
    assert_eq!(record.errno(), number, "expected {name}: {record:?}");
    assert_eq!(record.ret(), -number, "{record:?}");
    assert_eq!(errno::name(record.errno()), Some(name));
    let entry = catalog::lookup(record.errno()).unwrap();
    assert_eq!(entry.name, name);
    assert_eq!(catalog::class_of(record.errno()), Some(class), "{name}");
    assert_eq!(
        entry.linux,
        Reach::Yes,
        "{name} happened, so the catalog must call it reachable"
    );
}

// ---------------------------------------------------------------------------
// Small socket helpers

fn bind(fd: &OwnedFd, addr: &RawAddr) {
    // SAFETY: `addr` points to `addr.len` valid bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
}

fn listen(fd: &OwnedFd, backlog: i32) {
    // SAFETY: plain syscall on a descriptor we own.
    let rc = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
}

fn connect(fd: &OwnedFd, addr: &RawAddr) -> i32 {
    connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len)
}

/// A unix stream listener on `addr`.
fn unix_listener(addr: &RawAddr, backlog: i32) -> OwnedFd {
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM);
    bind(&fd, addr);
    listen(&fd, backlog);
    fd
}

/// One connect() from a fresh socket; returns its errno (0 on success) and
/// the socket, so a connection can be kept open.
fn connect_new(domain: libc::c_int, kind: libc::c_int, addr: &RawAddr) -> (i32, OwnedFd) {
    let fd = socket(domain, kind);
    (connect(&fd, addr), fd)
}

fn loopback(port: u16) -> RawAddr {
    RawAddr::inet(Ipv4Addr::LOCALHOST, port)
}

/// A directory of our own under the temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ct-errno-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap();
        Self(path)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Thread-local privileges: capabilities and Landlock

/// Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling thread's
/// effective set (capset(2) with pid 0 changes only the calling thread), so
/// file modes apply to it although it runs as root.
fn drop_file_override_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_OVERRIDE: u32 = 1;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and two data structs, as version 3 expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH));
    // SAFETY: as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// `struct landlock_ruleset_attr`.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
const LANDLOCK_ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
const LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;

fn landlock_abi() -> i64 {
    // SAFETY: a null attribute with size 0 and the VERSION flag only
    // queries the ABI version.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    }
}

/// Restricts the calling thread (only it: landlock_restrict_self(2) applies
/// to the caller and its future children) with a ruleset that handles
/// `attr`'s rights and grants none of them.
fn landlock_restrict_thread(attr: &RulesetAttr, min_abi: i64) {
    let abi = landlock_abi();
    assert!(
        abi >= min_abi,
        "this test needs Landlock ABI {min_abi} or newer; the kernel has {abi}"
    );
    // SAFETY: `attr` is a valid ruleset attribute of the given size.
    let ruleset = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::from_ref(attr),
            size_of::<RulesetAttr>(),
            0u32,
        )
    };
    assert!(
        ruleset >= 0,
        "landlock_create_ruleset: {}",
        std::io::Error::last_os_error()
    );
    let ruleset = RawFd::try_from(ruleset).unwrap();
    // SAFETY: `ruleset` is the descriptor just created; root has
    // CAP_SYS_ADMIN, so no_new_privs is not required.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
    let error = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor we own.
    unsafe { libc::close(ruleset) };
    assert_eq!(rc, 0, "landlock_restrict_self: {error}");
}

// ---------------------------------------------------------------------------
// refused

#[test]
fn econnrefused_from_a_closed_tcp_port() {
    let records = provoke(Netns::default(), || {
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT)).0]
    });
    assert_failed_with(&records[0], "ECONNREFUSED", Class::Refused);
}

#[test]
fn econnrefused_from_a_unix_name_without_listener() {
    let records = provoke(Netns::default(), || {
        let nobody = RawAddr::unix(b"\0connect-trace-nobody");
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &nobody).0]
    });
    assert_failed_with(&records[0], "ECONNREFUSED", Class::Refused);
}

// ---------------------------------------------------------------------------
// not-found

#[test]
fn enoent_from_a_missing_unix_path() {
    let dir = TempDir::new("enoent");
    let path = dir.path("missing.sock");
    let records = provoke(Netns::default(), move || {
        let addr = RawAddr::unix(path.as_bytes());
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "ENOENT", Class::NotFound);
}

#[test]
fn enotdir_from_a_file_in_the_unix_path() {
    let dir = TempDir::new("enotdir");
    fs::write(dir.path("file"), b"").unwrap();
    let path = dir.path("file/server.sock");
    let records = provoke(Netns::default(), move || {
        let addr = RawAddr::unix(path.as_bytes());
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "ENOTDIR", Class::NotFound);
}

#[test]
fn eloop_from_a_symlink_cycle() {
    let dir = TempDir::new("eloop");
    symlink(dir.path("b"), dir.path("a")).unwrap();
    symlink(dir.path("a"), dir.path("b")).unwrap();
    let path = dir.path("a");
    let records = provoke(Netns::default(), move || {
        let addr = RawAddr::unix(path.as_bytes());
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "ELOOP", Class::NotFound);
}

#[test]
fn enametoolong_from_a_long_symlink_target() {
    let dir = TempDir::new("enametoolong");
    // sun_path cannot hold a long name, but a symbolic link on the path can
    // lead to one: a 300-byte component, longer than NAME_MAX.
    let target = format!("{}/{}/server.sock", dir.0.display(), "n".repeat(300));
    symlink(target, dir.path("link")).unwrap();
    let path = dir.path("link");
    let records = provoke(Netns::default(), move || {
        let addr = RawAddr::unix(path.as_bytes());
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "ENAMETOOLONG", Class::NotFound);
}

// ---------------------------------------------------------------------------
// caller-bug

#[test]
fn ebadf_from_an_invalid_descriptor() {
    let records = provoke(Netns::default(), || {
        let addr = loopback(PORT);
        vec![connect_raw(-1, addr.as_ptr(), addr.len)]
    });
    assert_failed_with(&records[0], "EBADF", Class::CallerBug);
    assert_eq!(records[0].fd(), -1);
}

#[test]
fn enotsock_from_a_file_descriptor() {
    let records = provoke(Netns::default(), || {
        let file = fs::File::open("/dev/null").unwrap();
        let addr = loopback(PORT);
        vec![connect_raw(file.as_raw_fd(), addr.as_ptr(), addr.len)]
    });
    assert_failed_with(&records[0], "ENOTSOCK", Class::CallerBug);
}

#[test]
fn efault_from_a_bad_address_pointer() {
    let records = provoke(Netns::default(), || {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
        vec![connect_raw(fd.as_raw_fd(), 8 as *const libc::sockaddr, 16)]
    });
    assert_failed_with(&records[0], "EFAULT", Class::CallerBug);
}

#[test]
fn einval_from_a_short_length_and_a_listening_unix_socket() {
    let records = provoke(Netns::default(), || {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM);
        let addr = loopback(PORT);
        let short = connect_raw(fd.as_raw_fd(), addr.as_ptr(), 8);
        // A unix socket that listens cannot connect (POSIX would say
        // EOPNOTSUPP here).
        let listening = unix_listener(&RawAddr::unix(b"\0connect-trace-listening"), 1);
        let _other = unix_listener(&RawAddr::unix(b"\0connect-trace-other"), 1);
        let again = connect(&listening, &RawAddr::unix(b"\0connect-trace-other"));
        vec![short, again]
    });
    assert_failed_with(&records[0], "EINVAL", Class::CallerBug);
    assert_eq!(records[0].addrlen(), 8);
    assert_failed_with(&records[1], "EINVAL", Class::CallerBug);
}

#[test]
fn eafnosupport_from_an_ipv6_address_on_an_ipv4_socket() {
    let records = provoke(Netns::default(), || {
        let addr = RawAddr::inet6(Ipv6Addr::LOCALHOST, PORT, 0);
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "EAFNOSUPPORT", Class::CallerBug);
}

#[test]
fn eprototype_from_a_datagram_socket_to_a_stream_listener() {
    let dir = TempDir::new("eprototype");
    let path = dir.path("stream.sock");
    let records = provoke(Netns::default(), move || {
        let file = RawAddr::unix(path.as_bytes());
        let _listener = unix_listener(&file, 1);
        let mismatched = connect_new(libc::AF_UNIX, libc::SOCK_DGRAM, &file).0;
        // Abstract names are looked up by type too: a datagram socket finds
        // no stream listener there at all.
        let abstract_name = RawAddr::unix(b"\0connect-trace-stream");
        let _abstract_listener = unix_listener(&abstract_name, 1);
        let not_found = connect_new(libc::AF_UNIX, libc::SOCK_DGRAM, &abstract_name).0;
        vec![mismatched, not_found]
    });
    assert_failed_with(&records[0], "EPROTOTYPE", Class::CallerBug);
    assert_failed_with(&records[1], "ECONNREFUSED", Class::Refused);
}

#[test]
fn eopnotsupp_from_a_packet_socket() {
    // Packet sockets have no connect operation at all. Nothing is sent.
    let records = provoke(Netns::default(), || {
        vec![connect_new(libc::AF_PACKET, libc::SOCK_DGRAM, &loopback(PORT)).0]
    });
    assert_failed_with(&records[0], "EOPNOTSUPP", Class::CallerBug);
}

// ---------------------------------------------------------------------------
// repeat, in-progress, interrupted

#[test]
fn eisconn_from_connecting_twice() {
    let records = provoke(Netns::default(), || {
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, PORT)).unwrap();
        let (first, fd) = connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT));
        vec![first, connect(&fd, &loopback(PORT))]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EISCONN", Class::Repeat);
}

#[test]
fn einprogress_from_a_nonblocking_connect() {
    let records = provoke(Netns::default().nft(DROP_INPUT), || {
        let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
        vec![connect_new(libc::AF_INET, kind, &loopback(SILENT_PORT)).0]
    });
    assert_failed_with(&records[0], "EINPROGRESS", Class::InProgress);
}

#[test]
fn ealready_from_a_second_nonblocking_attempt() {
    let records = provoke(Netns::default().nft(DROP_INPUT), || {
        let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
        let (first, fd) = connect_new(libc::AF_INET, kind, &loopback(SILENT_PORT));
        vec![first, connect(&fd, &loopback(SILENT_PORT))]
    });
    assert_failed_with(&records[0], "EINPROGRESS", Class::InProgress);
    assert_failed_with(&records[1], "EALREADY", Class::Repeat);
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Installs a SIGUSR1 handler without SA_RESTART, once per process.
fn install_interrupting_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = 0;
            libc::sigemptyset(&raw mut action.sa_mask);
            let rc = libc::sigaction(libc::SIGUSR1, &raw const action, std::ptr::null_mut());
            assert_eq!(rc, 0, "sigaction: {}", std::io::Error::last_os_error());
        }
    });
}

/// Waits until thread `tid` of this process is blocked inside connect():
/// /proc shows the syscall number only while the thread sleeps in a call.
fn wait_until_blocked_in_connect(tid: u32) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let prefix = format!("{} ", libc::SYS_connect);
    let deadline = Instant::now() + WORKER_LIMIT;
    loop {
        let state = fs::read_to_string(&path).unwrap();
        if state.starts_with(&prefix) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "thread {tid} never blocked in connect(): {state}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn eintr_from_a_signal_during_a_blocking_connect() {
    install_interrupting_handler();
    let mut traced = Traced::start();
    // SYNs vanish, so the connect blocks; should the signal be lost, it
    // still ends (ETIMEDOUT, after about 7 s) and the test fails cleanly.
    let netns = Netns::default().nft(DROP_INPUT).sysctls(&[
        ("net.ipv4.tcp_syn_retries", "2"),
        ("net.ipv4.tcp_syn_linear_timeouts", "0"),
    ]);
    let worker = Worker::spawn(netns, || {
        connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(SILENT_PORT)).0
    });
    wait_until_blocked_in_connect(worker.tid);
    // SAFETY: plain syscall; the thread exists until it has sent its result.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::pid_t::try_from(worker.tid).unwrap(),
            libc::SIGUSR1,
        )
    };
    assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
    let tid = worker.tid;
    assert_eq!(worker.finish(), libc::EINTR);
    // The kernel returned a restart code, the program saw EINTR, and so
    // does the record.
    let record = traced.record_of(tid);
    assert_failed_with(&record, "EINTR", Class::Interrupted);
    assert!(record.latency_ns().unwrap() > 0);
}

// ---------------------------------------------------------------------------
// local-resource

#[test]
fn eagain_from_a_full_unix_backlog() {
    let records = provoke(Netns::default(), || {
        let name = RawAddr::unix(b"\0connect-trace-backlog");
        // Backlog 0: one pending connection fills the queue.
        let _listener = unix_listener(&name, 0);
        let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
        let (first, _queued) = connect_new(libc::AF_UNIX, kind, &name);
        let (second, _) = connect_new(libc::AF_UNIX, kind, &name);
        vec![first, second]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EAGAIN", Class::LocalResource);
}

#[test]
fn eagain_when_udp_ports_run_out() {
    let netns = Netns::default().sysctls(&[("net.ipv4.ip_local_port_range", "40000 40000")]);
    let records = provoke(netns, || {
        // connect() binds a UDP socket to a free local port first; the only
        // one goes to the first socket. UDP connect() sends nothing.
        let (first, _bound) = connect_new(libc::AF_INET, libc::SOCK_DGRAM, &loopback(9));
        let (second, _) = connect_new(libc::AF_INET, libc::SOCK_DGRAM, &loopback(9));
        vec![first, second]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EAGAIN", Class::LocalResource);
}

#[test]
fn eaddrnotavail_when_ephemeral_ports_run_out() {
    let netns = Netns::default().sysctls(&[("net.ipv4.ip_local_port_range", "40000 40000")]);
    let records = provoke(netns, || {
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, PORT)).unwrap();
        // The only ephemeral port goes to the first connection, which stays
        // open; the second to the same destination finds none.
        let (first, _open) = connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT));
        let (second, _) = connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT));
        vec![first, second]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EADDRNOTAVAIL", Class::LocalResource);
}

// ---------------------------------------------------------------------------
// permission

#[test]
fn eacces_from_broadcast_without_so_broadcast() {
    // A route makes the limited broadcast address routable (to lo); UDP
    // connect() sends nothing.
    let netns = Netns::default().ip("route add 255.255.255.255/32 dev lo");
    let records = provoke(netns, || {
        let broadcast = RawAddr::inet(Ipv4Addr::BROADCAST, 9);
        let (refused, _) = connect_new(libc::AF_INET, libc::SOCK_DGRAM, &broadcast);
        let allowed = socket(libc::AF_INET, libc::SOCK_DGRAM);
        let on: libc::c_int = 1;
        // SAFETY: SO_BROADCAST takes an int.
        let rc = unsafe {
            libc::setsockopt(
                allowed.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BROADCAST,
                std::ptr::from_ref(&on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        vec![refused, connect(&allowed, &broadcast)]
    });
    assert_failed_with(&records[0], "EACCES", Class::Permission);
    assert_eq!(records[1].errno(), 0, "SO_BROADCAST lifts it");
}

#[test]
fn eacces_from_a_prohibit_route() {
    let netns = Netns::default().ip("route add prohibit 198.51.100.8/32");
    let records = provoke(netns, || {
        let addr = RawAddr::inet(Ipv4Addr::new(198, 51, 100, 8), 80);
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "EACCES", Class::Permission);
}

#[test]
fn eacces_from_a_unix_socket_file_without_write_permission() {
    let dir = TempDir::new("eacces");
    let path = dir.path("server.sock");
    let records = provoke(Netns::default(), move || {
        let addr = RawAddr::unix(path.as_bytes());
        let _listener = unix_listener(&addr, 1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        drop_file_override_capabilities();
        vec![connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "EACCES", Class::Permission);
}

#[test]
fn eacces_from_a_landlock_tcp_rule() {
    let records = provoke(Netns::default(), || {
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, PORT)).unwrap();
        let (before, _) = connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT));
        // Handle TCP connect and allow no port: every TCP connect is denied.
        let attr = RulesetAttr {
            handled_access_fs: 0,
            handled_access_net: LANDLOCK_ACCESS_NET_CONNECT_TCP,
            scoped: 0,
        };
        landlock_restrict_thread(&attr, 4);
        let (after, _) = connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(PORT));
        vec![before, after]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EACCES", Class::Permission);
}

#[test]
fn eperm_from_a_landlock_unix_scope() {
    let records = provoke(Netns::default(), || {
        let name = RawAddr::unix(b"\0connect-trace-scoped");
        let _listener = unix_listener(&name, 4);
        let (before, _) = connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &name);
        // Scope abstract unix sockets: the listener was made outside the
        // new domain, so connecting to it is now forbidden.
        let attr = RulesetAttr {
            handled_access_fs: 0,
            handled_access_net: 0,
            scoped: LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET,
        };
        landlock_restrict_thread(&attr, 6);
        let (after, _) = connect_new(libc::AF_UNIX, libc::SOCK_STREAM, &name);
        vec![before, after]
    });
    assert_eq!(records[0].errno(), 0);
    assert_failed_with(&records[1], "EPERM", Class::Permission);
}

// ---------------------------------------------------------------------------
// unreachable and timeout

#[test]
fn enetunreach_without_a_route() {
    // The namespace routes nothing but loopback.
    let records = provoke(Netns::default(), || {
        let addr = RawAddr::inet(Ipv4Addr::new(192, 0, 2, 1), 80);
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "ENETUNREACH", Class::Unreachable);
}

#[test]
fn ehostunreach_from_an_unreachable_route() {
    let netns = Netns::default().ip("route add unreachable 198.51.100.7/32");
    let records = provoke(netns, || {
        let addr = RawAddr::inet(Ipv4Addr::new(198, 51, 100, 7), 80);
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &addr).0]
    });
    assert_failed_with(&records[0], "EHOSTUNREACH", Class::Unreachable);
}

/// A blocking connect to [`SILENT_PORT`] under `ruleset`, with the SYN
/// timeout shortened to about 3 s.
fn connect_to_silence(ruleset: &'static str) -> ConnectAttempt {
    let netns = Netns::default().nft(ruleset).sysctls(&FAST_SYN_TIMEOUT);
    let records = provoke(netns, || {
        vec![connect_new(libc::AF_INET, libc::SOCK_STREAM, &loopback(SILENT_PORT)).0]
    });
    let record = records[0];
    let waited = Duration::from_nanos(record.latency_ns().unwrap());
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(15)).contains(&waited),
        "waited {waited:?}: {record:?}"
    );
    record
}

#[test]
fn etimedout_when_syns_are_dropped() {
    let record = connect_to_silence(DROP_INPUT);
    assert_failed_with(&record, "ETIMEDOUT", Class::Timeout);
}

/// The Linux pages blame "a local firewall rule" for EPERM, but a netfilter
/// drop on output does not fail connect(): TCP takes the lost SYN for a lost
/// packet, retries, and times out.
#[test]
fn an_output_drop_rule_times_out_instead_of_eperm() {
    let record = connect_to_silence(DROP_OUTPUT);
    assert_failed_with(&record, "ETIMEDOUT", Class::Timeout);
}
