//! Names of the maps and programs in the eBPF object, and the slots of its
//! counters.

/// Names of the maps in the eBPF object.
pub mod map {
    /// The ring buffer that carries records to the daemon.
    pub const EVENTS: &str = "EVENTS";
    /// Per-thread connect() calls between entry and exit, keyed by pid_tgid.
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    /// Per-CPU `u64` counters, indexed by [`super::counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// TCP handshakes under way, keyed by socket address (`skaddr`).
    pub const PENDING: &str = "PENDING";
    /// The latest TCP attempt per (process, descriptor), to recognise
    /// status checks.
    pub const RECENT: &str = "RECENT";
    /// Per-CPU `u64` counts of attempts by family and final outcome,
    /// indexed by [`crate::outcome::slot`].
    pub const OUTCOMES: &str = "OUTCOMES";
    /// io_uring connect requests between submission and completion, keyed
    /// by request.
    pub const IO_URING_CALLS: &str = "IO_URING_CALLS";
}

/// Names of the eBPF programs in the object.
pub mod program {
    /// Attached to `syscalls/sys_enter_connect`.
    pub const ENTER_CONNECT: &str = "enter_connect";
    /// Attached to `syscalls/sys_exit_connect`.
    pub const EXIT_CONNECT: &str = "exit_connect";
    /// Attached to `sock/inet_sock_set_state` (classic tracepoint), where
    /// raw tracepoints are not available.
    pub const SOCK_STATE: &str = "sock_state";
    /// Attached to the raw tracepoint `inet_sock_set_state` (preferred):
    /// handshake starts.
    pub const HANDSHAKE_START: &str = "handshake_start";
    /// Attached to the raw tracepoint `inet_sock_set_state` (preferred):
    /// handshake ends.
    pub const HANDSHAKE_END: &str = "handshake_end";
    /// Attached to the raw tracepoint `tcp_destroy_sock`: the end of a
    /// followed handshake whose state change the kernel did not report,
    /// caught as its socket is freed.
    pub const HANDSHAKE_GONE: &str = "handshake_gone";
    /// Attached to `io_uring/io_uring_submit_req` (`io_uring_submit_sqe`
    /// on older kernels, such as 6.1): connect requests as they are
    /// submitted.
    pub const IO_URING_SUBMIT: &str = "io_uring_submit";
    /// Attached to `io_uring/io_uring_complete`: their results.
    pub const IO_URING_COMPLETE: &str = "io_uring_complete";
}

/// Slots of the per-CPU [`map::COUNTERS`] array.
pub mod counter {
    /// A record was dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// A connect() exit had no matching entry (the call began before the
    /// programs were attached, or its in-flight entry was refused or
    /// evicted while the call was inside connect()).
    pub const EXIT_WITHOUT_ENTRY: u32 = 1;
    /// The in-flight map refused an entry.
    pub const IN_FLIGHT_FULL: u32 = 2;
    /// connect() calls that passed the filters at exit (a record was
    /// produced, whether or not the ring buffer had room for it).
    pub const ATTEMPTS: u32 = 3;
    /// A handshake could not be followed: the pending map was full.
    pub const PENDING_FULL: u32 = 4;
    /// A handshake outcome was dropped because the ring buffer was full.
    pub const OUTCOME_RINGBUF_FULL: u32 = 5;
    /// A recent attempt was displaced from the `RECENT` table while a
    /// status check could still have come for it (pending, or ended less
    /// than [`crate::outcome::STATUS_CHECK_WINDOW_NS`] ago).
    pub const RECENT_EVICTED: u32 = 6;
    /// The io_uring request map refused an entry: that connect request is
    /// not reported (a TCP one is still counted by its handshake).
    pub const IO_URING_FULL: u32 = 7;
    /// A followed handshake's end was caught only as its socket was freed:
    /// the kernel never reported its last state change.
    pub const ENDS_AT_CLOSE: u32 = 8;
    /// Number of slots.
    pub const COUNT: u32 = 9;
}

/// Entries of the `RECENT` table: a direct-mapped table, one slot per hash
/// of (process, descriptor). A new attempt takes its slot whatever was
/// there, so the newest attempt is always found; a displaced one that could
/// still matter is counted ([`counter::RECENT_EVICTED`]). 65,536 slots of 32
/// bytes take 2 MiB.
pub const RECENT_SLOTS: u32 = 65_536;

/// The `RECENT` slot of a (process, descriptor) owner key.
pub const fn recent_slot(owner: u64) -> u32 {
    // Fibonacci hashing: the top bits of a multiplication by 2^64/phi
    // spread consecutive descriptors and pids over the whole table.
    (owner.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u32 & (RECENT_SLOTS - 1)
}

/// The `RECENT` owner key of a descriptor of a process.
pub const fn recent_owner(tgid: u32, fd: i32) -> u64 {
    ((tgid as u64) << 32) | fd as u32 as u64
}
