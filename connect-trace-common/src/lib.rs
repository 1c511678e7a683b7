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

pub mod dns;

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
    /// TCP handshakes under way, keyed by socket address (`skaddr`).
    pub const PENDING: &str = "PENDING";
    /// Per-CPU `u64` counts of attempts by family and final outcome,
    /// indexed by [`crate::outcome_count::slot`].
    pub const OUTCOMES: &str = "OUTCOMES";
}

/// Exact kernel counts of attempts by address family and final outcome.
///
/// Every call that passes the filters is counted once, when its outcome is
/// known: at syscall exit, or when the handshake it started ends. These
/// counts do not depend on the ring buffer, so they stay exact when records
/// are lost.
pub mod outcome_count {
    /// Family slots: unspec, unix, inet, inet6, anything else (or unreadable).
    pub const FAMILIES: u32 = 5;
    /// Family slot for families other than the four named ones.
    pub const FAMILY_OTHER: u32 = 4;
    /// Code: connected.
    pub const CONNECTED: u32 = 0;
    /// Codes 1..=`MAX_ERRNO`: failed with that errno.
    pub const MAX_ERRNO: u32 = 133;
    /// Code: failed with an errno above `MAX_ERRNO` or not known.
    pub const FAILED_OTHER: u32 = 134;
    /// Code: the application closed the socket during the handshake.
    pub const CANCELED: u32 = 135;
    /// Code: still connecting and not followed (not TCP, or no room).
    pub const IN_PROGRESS: u32 = 136;
    /// Code: a repeat on a socket already connecting or connected
    /// (EALREADY, EISCONN): not a new attempt.
    pub const REPEAT: u32 = 137;
    /// Codes per family.
    pub const CODES: u32 = 138;
    /// Slots in the map.
    pub const SLOTS: u32 = FAMILIES * CODES;

    /// The family slot of an `sa_family` value.
    pub const fn family_slot(family: u16) -> u32 {
        match family {
            0 => 0,
            1 => 1,
            2 => 2,
            10 => 3,
            _ => FAMILY_OTHER,
        }
    }

    /// The code for a failure with `errno`.
    pub const fn failed(errno: i32) -> u32 {
        if errno > 0 && errno as u32 <= MAX_ERRNO {
            errno as u32
        } else {
            FAILED_OTHER
        }
    }

    /// The map index of a family slot and a code.
    pub const fn slot(family_slot: u32, code: u32) -> u32 {
        family_slot * CODES + code
    }
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
    /// `u32`: offset of `skaddr` in the `sock/inet_sock_set_state` record.
    pub const STATE_SKADDR_OFFSET: &str = "STATE_SKADDR_OFFSET";
    /// `u32`: offset of `oldstate` in the `inet_sock_set_state` record.
    pub const STATE_OLD_OFFSET: &str = "STATE_OLD_OFFSET";
    /// `u32`: offset of `newstate` in the `inet_sock_set_state` record.
    pub const STATE_NEW_OFFSET: &str = "STATE_NEW_OFFSET";
    /// `u32`: offset of `protocol` in the `inet_sock_set_state` record.
    pub const STATE_PROTOCOL_OFFSET: &str = "STATE_PROTOCOL_OFFSET";
    /// `u32`: 1 when every tracepoint offset equals [`crate::layout`]'s.
    pub const LAYOUT_USUAL: &str = "LAYOUT_USUAL";
    /// `u32`: offset of `sk_err` in `struct sock`, from the running kernel's
    /// BTF; [`crate::SK_ERR_UNKNOWN`] when BTF is unavailable.
    pub const SK_ERR_OFFSET: &str = "SK_ERR_OFFSET";
}

/// [`global::SK_ERR_OFFSET`] value meaning "not known": failed handshakes are
/// then reported with error [`OUTCOME_ERR_UNKNOWN`].
pub const SK_ERR_UNKNOWN: u32 = u32::MAX;

/// `outcome_err` value when the socket's error could not be read.
pub const OUTCOME_ERR_UNKNOWN: i32 = -1;

/// The usual byte offsets of the tracepoint fields the programs read: those
/// of every kernel since the tracepoints appeared (the syscall records are
/// generic, `inet_sock_set_state` has kept its layout since 4.16). The
/// loader compares them with the running kernel's tracefs formats and, if
/// any differs, the programs read the fields at the formats' offsets
/// instead, through a slower helper.
pub mod layout {
    /// `sys_enter_connect.fd`.
    pub const ENTER_FD: usize = 16;
    /// `sys_enter_connect.uservaddr`.
    pub const ENTER_ADDR: usize = 24;
    /// `sys_enter_connect.addrlen`.
    pub const ENTER_ADDRLEN: usize = 32;
    /// `sys_exit_connect.ret`.
    pub const EXIT_RET: usize = 16;
    /// `inet_sock_set_state.skaddr`.
    pub const STATE_SKADDR: usize = 8;
    /// `inet_sock_set_state.oldstate`.
    pub const STATE_OLD: usize = 16;
    /// `inet_sock_set_state.newstate`.
    pub const STATE_NEW: usize = 20;
    /// `inet_sock_set_state.protocol`.
    pub const STATE_PROTOCOL: usize = 30;
}

/// TCP states, as `inet_sock_set_state` reports them (include/net/tcp_states.h).
pub mod tcp_state {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: u32 = 1;
    /// `TCP_SYN_SENT`.
    pub const SYN_SENT: u32 = 2;
    /// `TCP_CLOSE`.
    pub const CLOSE: u32 = 7;
}

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

/// Names of the eBPF programs in the object.
pub mod program {
    /// Attached to `syscalls/sys_enter_connect`.
    pub const ENTER_CONNECT: &str = "enter_connect";
    /// Attached to `syscalls/sys_exit_connect`.
    pub const EXIT_CONNECT: &str = "exit_connect";
    /// Attached to `sock/inet_sock_set_state` (classic tracepoint).
    pub const SOCK_STATE: &str = "sock_state";
    /// Attached to the raw tracepoint `inet_sock_set_state` (preferred).
    pub const SOCK_STATE_RAW: &str = "sock_state_raw";
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
    /// A handshake could not be followed: the pending map was full.
    pub const PENDING_FULL: u32 = 4;
    /// A handshake outcome was dropped because the ring buffer was full.
    pub const OUTCOME_RINGBUF_FULL: u32 = 5;
    /// Number of slots.
    pub const COUNT: u32 = 6;
}

/// Values of [`ConnectRecord::kind`].
pub mod record_kind {
    /// A [`crate::ConnectRecord`].
    pub const CONNECT: u32 = 1;
    /// A [`crate::OutcomeRecord`].
    pub const OUTCOME: u32 = 2;
}

/// Bits of [`ConnectRecord::flags`].
pub mod connect_flags {
    /// The call sent a SYN but the pending map was full, so its outcome
    /// will not be reported.
    pub const UNTRACKED: u32 = 1 << 0;
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
    /// Handshake fields, filled in by the state program during the call.
    pub handshake: Handshake,
    /// The socket file descriptor argument.
    pub fd: i32,
    /// The `addrlen` argument as the caller passed it.
    pub addrlen: i32,
    /// [`addr_flags`] bits.
    pub addr_flags: u32,
    /// [`connect_flags`] bits.
    pub flags: u32,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

/// What became of a TCP handshake started by a connect() call, as far as it
/// was known when the record was written.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Handshake {
    /// The socket (`skaddr`), or 0 when the call sent no SYN.
    pub sock: u64,
    /// CLOCK_MONOTONIC nanoseconds when the SYN went out (CLOSE→SYN_SENT).
    pub syn_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds of the outcome, or 0 if not known yet.
    pub outcome_ns: u64,
    /// The state the socket left SYN_SENT for ([`tcp_state`]), or 0.
    pub outcome_state: u32,
    /// `sk_err` when it went to CLOSE (0: closed by the application), or
    /// [`OUTCOME_ERR_UNKNOWN`].
    pub outcome_err: i32,
}

/// A handshake under way after its connect() returned, in [`map::PENDING`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingHandshake {
    /// CLOCK_MONOTONIC nanoseconds when the SYN went out.
    pub syn_ns: u64,
    /// The connecting thread (`pid_tgid`).
    pub pid_tgid: u64,
    /// [`outcome_count::family_slot`] of the destination.
    pub family_slot: u32,
    /// Padding; always zero.
    pub reserved: u32,
}

/// The outcome of a handshake that ended after its connect() returned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OutcomeRecord {
    /// Always [`record_kind::OUTCOME`].
    pub kind: u32,
    /// Padding; always zero.
    pub reserved: u32,
    /// The connecting thread (`pid_tgid`), from when the SYN went out. The
    /// outcome itself usually arrives in softirq or timer context, where
    /// the current task means nothing.
    pub pid_tgid: u64,
    /// The handshake; `sock` says which attempt this resolves.
    pub handshake: Handshake,
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
    /// [`connect_flags`] bits.
    pub flags: u32,
    /// CLOCK_MONOTONIC nanoseconds at syscall entry.
    pub start_ns: u64,
    /// Nanoseconds spent inside the syscall.
    pub latency_ns: u64,
    /// cgroup v2 id of the caller.
    pub cgroup_id: u64,
    /// The handshake this call started, if it sent a SYN.
    pub handshake: Handshake,
    /// The thread's `comm`, NUL-padded (not always NUL-terminated).
    pub comm: [u8; COMM_LEN],
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

const _: () = assert!(core::mem::size_of::<Handshake>() == 32);
const _: () = assert!(core::mem::size_of::<InFlight>() == 184);
const _: () = assert!(core::mem::size_of::<OutcomeRecord>() == 48);
const _: () = assert!(core::mem::size_of::<PendingHandshake>() == 24);
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 240);
