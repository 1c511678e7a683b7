//! Helpers for tests that load the real kernel programs (they need root) and
//! make real connect() calls.
//!
//! Tests in one binary run in parallel threads of one process, and each test
//! loads its own tracer filtered to this process, so every test picks out
//! its own records by thread id.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod daemon;
pub mod uring;

use std::{
    cell::RefCell,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use connect_trace::{
    decode::{ConnectAttempt, Record},
    delivery::{Delivery, Ledger},
    export::{Sink, SinkError},
    kernel::{Tracer, TracerConfig},
    pipeline::{Pipeline, PipelineConfig, reader::EventReader},
    report::AttemptReport,
    resolve::{ResolvedAttempt, ResolverConfig},
};

/// How long a test waits for a record before it fails.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(5);

/// Fails the test early, with the reason, when not run as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs and must run as root: use `cargo xtask test`"
    );
}

/// The calling thread's id, as the kernel records it.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("thread ids are positive")
}

/// A sink that keeps every resolved attempt, for tests to look at.
struct Keep(Rc<RefCell<Vec<ResolvedAttempt>>>);

impl Sink for Keep {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        self.0.borrow_mut().push(report.resolved);
        Ok(())
    }
}

/// A tracer on this process with the daemon's own pipeline and a runtime
/// to wait in. It keeps both the raw calls and the resolved attempts.
pub struct Traced {
    runtime: tokio::runtime::Runtime,
    pub tracer: Tracer,
    reader: EventReader,
    pipeline: Pipeline,
    seen: Vec<ConnectAttempt>,
    resolved: Rc<RefCell<Vec<ResolvedAttempt>>>,
}

impl Traced {
    /// Loads and attaches the programs, filtered to this process.
    pub fn start() -> Self {
        Self::with_config(TracerConfig {
            pid: Some(std::process::id()),
            ..TracerConfig::default()
        })
    }

    /// Loads and attaches the programs with `config`.
    pub fn with_config(config: TracerConfig) -> Self {
        Self::with_resolver(config, ResolverConfig::default())
    }

    /// Loads and attaches the programs with `config`, resolving with
    /// `resolver`.
    pub fn with_resolver(config: TracerConfig, resolver: ResolverConfig) -> Self {
        require_root();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut tracer = Tracer::load(&config).expect("loading the tracer");
        let ring = tracer.take_events().expect("ring buffer");
        let reader = runtime
            .block_on(async { EventReader::new(ring, Duration::from_millis(5)) })
            .expect("reader");
        let resolved = Rc::new(RefCell::new(Vec::new()));
        let pipeline = Pipeline::new(
            PipelineConfig {
                resolver,
                ..PipelineConfig::default()
            },
            tracer.stats(),
            Arc::new(Ledger::default()),
            vec![Box::new(Keep(Rc::clone(&resolved)))],
            None,
        );
        Self {
            runtime,
            tracer,
            reader,
            pipeline,
            seen: Vec::new(),
            resolved,
        }
    }

    /// Takes whatever is waiting in the ring buffer through the pipeline.
    fn collect(&mut self) {
        let seen = &mut self.seen;
        self.pipeline
            .drain(&mut self.reader, |record| {
                if let Record::Connect(attempt) = record {
                    seen.push(*attempt);
                }
            })
            .expect("drain");
        self.pipeline.expire().expect("expire");
    }

    /// Every count the daemon would report now.
    pub fn delivery(&self) -> Delivery {
        self.pipeline.delivery().expect("reading the counts")
    }

    /// The kernel's exact counts of attempts.
    pub fn kernel_outcomes(&self) -> connect_trace::kernel::OutcomeTally {
        self.tracer
            .stats()
            .outcomes()
            .expect("reading the kernel's counts")
    }

    /// Every resolved attempt so far, from any thread.
    pub fn resolved(&mut self) -> Vec<ResolvedAttempt> {
        self.collect();
        self.resolved.borrow().clone()
    }

    /// Waits until `count` resolved attempts from thread `tid` are in and
    /// returns them in the order they resolved; panics after `timeout`.
    pub fn resolved_of(
        &mut self,
        tid: u32,
        count: usize,
        timeout: Duration,
    ) -> Vec<ResolvedAttempt> {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect();
            let mine: Vec<_> = self
                .resolved
                .borrow()
                .iter()
                .filter(|r| r.attempt.tid() == tid)
                .copied()
                .collect();
            if mine.len() >= count {
                return mine;
            }
            self.wait_until(deadline, || {
                format!("expected {count} resolved attempts from tid {tid}, got {mine:?}")
            });
        }
    }

    /// Reports everything still pending as in progress (as at shutdown),
    /// and returns what that resolved.
    pub fn finish(&mut self) -> Vec<ResolvedAttempt> {
        self.collect();
        let before = self.resolved.borrow().len();
        self.pipeline
            .stop(&mut self.reader, false)
            .expect("stopping the pipeline");
        self.resolved.borrow()[before..].to_vec()
    }

    fn wait_until(&mut self, deadline: Instant, failure: impl FnOnce() -> String) {
        let left = deadline.saturating_duration_since(Instant::now());
        // The kernel's counters say whether a record was dropped there.
        assert!(
            !left.is_zero(),
            "{}; kernel counters: {:?}",
            failure(),
            self.tracer.stats().counters()
        );
        let reader = &mut self.reader;
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(left, reader.wait()).await });
    }

    /// Waits until `count` records from thread `tid` have arrived and
    /// returns them in order; panics after [`RECORD_TIMEOUT`].
    pub fn records_of(&mut self, tid: u32, count: usize) -> Vec<ConnectAttempt> {
        let deadline = Instant::now() + RECORD_TIMEOUT;
        loop {
            self.collect();
            let mine: Vec<_> = self
                .seen
                .iter()
                .filter(|a| a.tid() == tid)
                .copied()
                .collect();
            if mine.len() >= count {
                return mine;
            }
            self.wait_until(deadline, || {
                format!(
                    "expected {count} records from tid {tid}, got {}: {mine:?}",
                    mine.len()
                )
            });
        }
    }

    /// Forgets the records seen so far, so the next wait sees only new ones.
    pub fn forget_seen(&mut self) {
        self.seen.clear();
    }

    /// Every record received so far, from any thread.
    pub fn seen(&self) -> &[ConnectAttempt] {
        &self.seen
    }

    /// The one record from thread `tid`.
    pub fn record_of(&mut self, tid: u32) -> ConnectAttempt {
        let mut records = self.records_of(tid, 1);
        assert_eq!(records.len(), 1, "one record from tid {tid}: {records:?}");
        records.remove(0)
    }
}

/// A socket of `domain` and `kind`, closed on drop.
pub fn socket(domain: libc::c_int, kind: libc::c_int) -> OwnedFd {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// connect(2) with raw arguments; returns 0 or the errno.
pub fn connect_raw(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> i32 {
    // SAFETY: the kernel validates every argument; bad pointers give EFAULT.
    let ret = unsafe { libc::connect(fd, addr, len) };
    if ret == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// A socket address as raw bytes, ready for connect(2).
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl RawAddr {
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        std::ptr::from_ref(&self.storage).cast()
    }

    fn zeroed() -> Self {
        Self {
            // SAFETY: sockaddr_storage is plain old data.
            storage: unsafe { zeroed() },
            len: 0,
        }
    }

    pub fn inet(ip: Ipv4Addr, port: u16) -> Self {
        let mut raw = Self::zeroed();
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in.
        unsafe {
            std::ptr::from_mut(&mut raw.storage)
                .cast::<libc::sockaddr_in>()
                .write(sin)
        };
        raw.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        raw
    }

    pub fn inet6(ip: Ipv6Addr, port: u16, scope_id: u32) -> Self {
        let mut raw = Self::zeroed();
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: port.to_be(),
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            sin6_scope_id: scope_id,
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in6.
        unsafe {
            std::ptr::from_mut(&mut raw.storage)
                .cast::<libc::sockaddr_in6>()
                .write(sin6)
        };
        raw.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        raw
    }

    /// A unix address; a leading NUL in `path` makes it abstract. `len`
    /// covers exactly the path bytes, as abstract names require.
    pub fn unix(path: &[u8]) -> Self {
        let mut raw = Self::zeroed();
        // SAFETY: sockaddr_storage is larger than sockaddr_un.
        let sun = unsafe { &mut *std::ptr::from_mut(&mut raw.storage).cast::<libc::sockaddr_un>() };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, byte) in sun.sun_path.iter_mut().zip(path) {
            *slot = *byte as libc::c_char;
        }
        raw.len = (size_of::<libc::sa_family_t>() + path.len()) as libc::socklen_t;
        raw
    }
}

/// A listener on loopback and its port.
pub fn listener(ip: &str) -> (TcpListener, u16) {
    let listener = TcpListener::bind((ip, 0)).expect("bind listener");
    let port = listener.local_addr().expect("local addr").port();
    (listener, port)
}

/// A free loopback TCP port for a server of the test's (bound, then
/// released).
pub fn free_port() -> u16 {
    listener("127.0.0.1").1
}

/// A loopback port with nothing listening (bound, then released).
pub fn closed_port(ip: &str) -> u16 {
    listener(ip).1
}

/// Makes one TCP connect from a fresh socket and returns (fd, errno).
pub fn tcp_connect(addr: &RawAddr, domain: libc::c_int) -> (OwnedFd, i32) {
    let fd = socket(domain, libc::SOCK_STREAM);
    let errno = connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len);
    (fd, errno)
}

/// The text of an address as the JSON records print it.
pub fn addr_text(addr: SocketAddr) -> String {
    addr.ip().to_string()
}

/// The port whose SYNs are dropped inside [`in_dropping_netns`].
pub const DROPPED_PORT: u16 = 9;

/// Runs `client` in a new thread inside a fresh network namespace where
/// loopback is up, SYNs to port 9 are dropped, and a lost SYN gives up after
/// one retry (about 3 s). Returns what `client` returned.
pub fn in_dropping_netns<T: Send + 'static>(client: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on this thread only; it stays in the namespace
        // until it ends.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let script = format!(
            "set -e
             ip link set lo up
             echo 1 > /proc/sys/net/ipv4/tcp_syn_retries
             if [ -e /proc/sys/net/ipv4/tcp_syn_linear_timeouts ]; then
               echo 0 > /proc/sys/net/ipv4/tcp_syn_linear_timeouts
             fi
             nft add table inet connect_trace_test
             nft add chain inet connect_trace_test input '{{ type filter hook input priority 0; }}'
             nft add rule inet connect_trace_test input tcp dport {DROPPED_PORT} tcp flags syn drop"
        );
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success(), "namespace set-up failed: {status}");
        client()
    })
    .join()
    .unwrap()
}

/// Waits until `fd` is writable (its non-blocking connect has ended).
pub fn wait_writable(fd: &OwnedFd) {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; bounded wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 5_000) };
    assert_eq!(ready, 1, "the connect never ended");
}

pub extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs a SIGUSR1 handler without SA_RESTART, so a blocking call that
/// it interrupts returns EINTR.
pub fn install_interrupting_handler() {
    // SAFETY: a valid handler that does nothing; flags 0 (no SA_RESTART).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// Waits until thread `tid` of this process is blocked in connect(2).
pub fn wait_blocked_in_connect(tid: u32) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let prefix = format!("{} ", libc::SYS_connect);
    let deadline = Instant::now() + RECORD_TIMEOUT;
    while !std::fs::read_to_string(&path).is_ok_and(|text| text.starts_with(&prefix)) {
        assert!(
            Instant::now() < deadline,
            "thread {tid} never blocked in connect"
        );
        // Nothing to wait on: the kernel publishes this state only here.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A refused TCP connect to 127.0.0.1:`port`, on which nothing listens.
pub fn refused_connect_to(port: u16) {
    let (_fd, errno) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, port), libc::AF_INET);
    assert_eq!(errno, libc::ECONNREFUSED);
}
