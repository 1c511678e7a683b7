//! The binary interface shared by the connect-trace eBPF programs and the
//! daemon: map names, global names, counter slots and the `#[repr(C)]`
//! records that cross the ring buffer.
//!
//! Every record starts with a `u32` kind so that new record types can be
//! added without breaking old readers: the daemon skips kinds it does not
//! know and counts them.
//!
//! Changing a struct here changes the ABI between the kernel program and
//! the daemon. Both are built from the same tree and the program is embedded
//! in the binary, so they never mix versions; the size assertions below catch
//! accidental layout changes.
#![no_std]

/// Length of a task's `comm`, including the terminating NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// The most bytes of a socket address that connect() copies in from user
/// memory: `sizeof(struct sockaddr_storage)`. The kernel rejects a longer
/// `addrlen` with EINVAL, so nothing beyond this can matter.
pub const SOCKADDR_MAX: usize = 128;

/// Names of the maps in the eBPF object.
pub mod map {
    /// The ring buffer that carries records to the daemon.
    pub const EVENTS: &str = "EVENTS";
    /// Per-thread connect() calls between entry and exit, keyed by pid_tgid.
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    /// Per-CPU `u64` counters, indexed by [`crate::counter`].
    pub const COUNTERS: &str = "COUNTERS";
}

/// Names of the read-only globals the loader sets before loading.
pub mod global {
    /// `u32`: trace only this tgid (process id); 0 traces every process.
    pub const FILTER_TGID: &str = "FILTER_TGID";
    /// `u32`: 1 to skip connect() calls that returned 0.
    pub const FAILURES_ONLY: &str = "FAILURES_ONLY";
    /// `u64`: unread bytes in the ring buffer above which a record wakes the
    /// daemon. Below it records are submitted without a wakeup and the daemon
    /// finds them on its next poll, which saves most of the per-event cost.
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// `u32`: offset of `fd` in the `sys_enter_connect` tracepoint record.
    pub const ENTER_FD_OFFSET: &str = "ENTER_FD_OFFSET";
    /// `u32`: offset of `uservaddr` in the `sys_enter_connect` record.
    pub const ENTER_ADDR_OFFSET: &str = "ENTER_ADDR_OFFSET";
    /// `u32`: offset of `addrlen` in the `sys_enter_connect` record.
    pub const ENTER_ADDRLEN_OFFSET: &str = "ENTER_ADDRLEN_OFFSET";
    /// `u32`: offset of `ret` in the `sys_exit_connect` record.
    pub const EXIT_RET_OFFSET: &str = "EXIT_RET_OFFSET";
}

/// Names of the eBPF programs in the object.
pub mod program {
    /// Attached to `syscalls/sys_enter_connect`.
    pub const ENTER_CONNECT: &str = "enter_connect";
    /// Attached to `syscalls/sys_exit_connect`.
    pub const EXIT_CONNECT: &str = "exit_connect";
}

/// Slots of the per-CPU [`map::COUNTERS`] array.
pub mod counter {
    /// A record was dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// A connect() exit had no matching entry (the call began before the
    /// programs were attached, or its in-flight slot was evicted).
    pub const EXIT_WITHOUT_ENTRY: u32 = 1;
    /// The in-flight map refused an entry.
    pub const IN_FLIGHT_FULL: u32 = 2;
    /// connect() calls that passed the filters at exit (a record was
    /// produced, whether or not the ring buffer had room for it).
    pub const ATTEMPTS: u32 = 3;
    /// Number of slots.
    pub const COUNT: u32 = 4;
}

/// Values of [`ConnectRecord::kind`].
pub mod record_kind {
    /// A [`crate::ConnectRecord`].
    pub const CONNECT: u32 = 1;
}

/// Bits of [`ConnectRecord::addr_flags`].
pub mod addr_flags {
    /// The address could not be read from user memory (the call will fail
    /// with EFAULT); `addr` holds no bytes.
    pub const UNREADABLE: u32 = 1 << 0;
    /// `addrlen` was negative or larger than [`crate::SOCKADDR_MAX`], so
    /// nothing was read.
    pub const BAD_LENGTH: u32 = 1 << 1;
}

/// What the entry program saves for the exit program, per thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InFlight {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at entry.
    pub start_ns: u64,
    /// The socket file descriptor argument.
    pub fd: i32,
    /// The `addrlen` argument as the caller passed it.
    pub addrlen: i32,
    /// [`addr_flags`] bits.
    pub addr_flags: u32,
    /// Padding; always zero.
    pub reserved: u32,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

/// One finished connect() call, as sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectRecord {
    /// Always [`record_kind::CONNECT`].
    pub kind: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id of the caller.
    pub uid: u32,
    /// Real group id of the caller.
    pub gid: u32,
    /// The socket file descriptor argument.
    pub fd: i32,
    /// The syscall's return value: 0 or a negated errno.
    pub ret: i32,
    /// The `addrlen` argument as the caller passed it.
    pub addrlen: i32,
    /// [`addr_flags`] bits.
    pub addr_flags: u32,
    /// Padding; always zero.
    pub reserved: u32,
    /// CLOCK_MONOTONIC nanoseconds at syscall entry.
    pub start_ns: u64,
    /// Nanoseconds spent inside the syscall.
    pub latency_ns: u64,
    /// cgroup v2 id of the caller.
    pub cgroup_id: u64,
    /// The thread's `comm`, NUL-padded (not always NUL-terminated).
    pub comm: [u8; COMM_LEN],
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

const _: () = assert!(core::mem::size_of::<InFlight>() == 152);
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 208);
