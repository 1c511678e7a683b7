//! The records that cross the ring buffer, and the state the programs keep
//! per thread and per socket.
//!
//! Every ring buffer record starts with a `u32` kind so that new record
//! types can be added without breaking old readers: the daemon skips kinds
//! it does not know and counts them.

use bytemuck::{Pod, Zeroable};

/// Length of a task's `comm`, including the terminating NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// The most bytes of a socket address that connect() copies in from user
/// memory: `sizeof(struct sockaddr_storage)`. The kernel rejects a longer
/// `addrlen` with EINVAL, so nothing beyond this can matter.
pub const SOCKADDR_MAX: usize = 128;

/// `outcome_err` value when the socket's error could not be read.
pub const OUTCOME_ERR_UNKNOWN: i32 = -1;

/// Values of [`ConnectRecord::kind`] and [`OutcomeRecord::kind`].
pub mod record_kind {
    /// A [`super::ConnectRecord`].
    pub const CONNECT: u32 = 1;
    /// A [`super::OutcomeRecord`].
    pub const OUTCOME: u32 = 2;
}

/// Bits of [`ConnectRecord::flags`].
pub mod connect_flags {
    /// The call sent a SYN but the pending map was full, so its outcome
    /// will not be reported.
    pub const UNTRACKED: u32 = 1 << 0;
    /// The call was made on a socket whose attempt was already under way or
    /// had just ended: the same attempt seen again, not a new one. Decided
    /// in the kernel by [`crate::outcome::is_repeat`].
    pub const REPEAT: u32 = 1 << 1;
    /// No call was seen for this attempt: the record was made when a TCP
    /// handshake started without one (a kernel socket, a 32-bit program,
    /// TCP Fast Open, ...). It has no return value, descriptor or
    /// latency; the handshake's end gives its outcome.
    pub const NO_CALL: u32 = 1 << 2;
}

/// How an attempt was made: [`ConnectRecord::via`].
pub mod via {
    /// connect(2) from a 64-bit program.
    pub const SYSCALL: u32 = 0;
    /// An io_uring `IORING_OP_CONNECT` request.
    pub const IO_URING: u32 = 1;
    /// connect(2) or socketcall(2) from a 32-bit program.
    pub const COMPAT: u32 = 2;
    /// sendto(2) or sendmsg(2) with `MSG_FASTOPEN`: TCP Fast Open.
    pub const FASTOPEN: u32 = 3;
    /// A socket of the kernel's own (NFS, iSCSI, SMB...): no user task.
    pub const KERNEL: u32 = 4;
    /// A user task by a path not recognized above.
    pub const OTHER: u32 = 5;
}

/// Bits of [`ConnectRecord::addr_flags`].
pub mod addr_flags {
    /// The address could not be read from user memory (the call will fail
    /// with EFAULT); `addr` holds no bytes.
    pub const UNREADABLE: u32 = 1 << 0;
    /// `addrlen` was negative or larger than [`super::SOCKADDR_MAX`], so
    /// nothing was read.
    pub const BAD_LENGTH: u32 = 1 << 1;
    /// The call's start was not seen (it began before tracing did, or the
    /// kernel skipped the entry program): only its result is known, not
    /// its address or descriptor.
    pub const NOT_SEEN: u32 = 1 << 2;
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

/// What the entry program saves for the exit program, per thread (or, for
/// io_uring, per request).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
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
    /// [`via`]: how the call was made.
    pub via: u32,
    /// The calling thread's id while the call is inside connect() (or an
    /// io_uring request is under way), 0 once it has returned: a thread's
    /// entry in `IN_FLIGHT` outlives its calls (see the map), and an entry
    /// the map gave to another thread is never taken for this one's.
    pub caller_tid: u32,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

/// An io_uring connect request between submission and completion, in the
/// `IO_URING_CALLS` map by request: the call, and who submitted it (the
/// completion may run in another thread of the process).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct IoUringCall {
    /// The call, as for a connect() syscall.
    pub call: InFlight,
    /// The submitting thread (`pid_tgid`).
    pub pid_tgid: u64,
    /// Its real user and group ids (`uid | gid << 32`).
    pub uid_gid: u64,
    /// Its cgroup v2 id.
    pub cgroup_id: u64,
    /// Its network namespace's inode number (0: not known).
    pub netns: u32,
    /// Padding; always zero.
    pub reserved: u32,
    /// Its `comm`.
    pub comm: [u8; COMM_LEN],
}

/// What became of a TCP handshake started by a connect() call, as far as it
/// was known when the record was written.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct Handshake {
    /// The socket (`skaddr`), or 0 when the call sent no SYN.
    pub sock: u64,
    /// CLOCK_MONOTONIC nanoseconds when the SYN went out (CLOSE→SYN_SENT).
    /// With `sock` it names the attempt: a socket's address can be reused
    /// by a later socket, never at the same instant.
    pub syn_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds of the outcome, or 0 if not known yet.
    pub outcome_ns: u64,
    /// The state the socket left SYN_SENT for ([`tcp_state`]), or 0.
    pub outcome_state: u32,
    /// `sk_err` when it went to CLOSE (0: closed by the application), or
    /// [`OUTCOME_ERR_UNKNOWN`].
    pub outcome_err: i32,
}

/// A handshake under way after its connect() returned, in the `PENDING`
/// map, keyed by socket.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct PendingHandshake {
    /// CLOCK_MONOTONIC nanoseconds when the SYN went out.
    pub syn_ns: u64,
    /// The connecting thread (`pid_tgid`).
    pub pid_tgid: u64,
    /// The call whose record the end joins if it comes before the call
    /// returns: the key of its entry in `IN_FLIGHT` (a `pid_tgid`) or,
    /// with `via` [`via::IO_URING`], in `IO_URING_CALLS` (a request); 0
    /// when no call was seen.
    pub call: u64,
    /// [`crate::family::slot`] of the destination.
    pub family_slot: u32,
    /// The socket descriptor the connect() call was made on (-1: none).
    pub fd: i32,
    /// [`via`]: how the attempt was made.
    pub via: u32,
    /// Padding; always zero.
    pub reserved: u32,
}

/// The latest TCP attempt made on one (process, descriptor), in the
/// `RECENT` table: what tells a status check (connect() called again on the
/// same socket) from a new attempt. See [`crate::outcome::is_repeat`].
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct RecentAttempt {
    /// `tgid << 32 | fd`; 0 for an empty slot.
    pub owner: u64,
    /// The socket (`skaddr`).
    pub sock: u64,
    /// CLOCK_MONOTONIC nanoseconds of the SYN while pending, of the end
    /// once ended.
    pub since_ns: u64,
    /// [`crate::outcome::recent::PENDING`] or [`crate::outcome::recent::ENDED`].
    pub state: u32,
    /// When ended: the counting code of how it ended ([`crate::outcome::code`]).
    pub code: u32,
}

/// The outcome of a handshake that ended after its connect() returned.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct OutcomeRecord {
    /// Always [`record_kind::OUTCOME`].
    pub kind: u32,
    /// Padding; always zero.
    pub reserved: u32,
    /// The connecting thread (`pid_tgid`), from when the SYN went out. The
    /// outcome itself usually arrives in softirq or timer context, where
    /// the current task means nothing.
    pub pid_tgid: u64,
    /// The handshake; `sock` and `syn_ns` say which attempt this resolves.
    pub handshake: Handshake,
}

/// One finished connect() call, as sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
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
    /// The syscall's return value: 0 or a negated errno, as the kernel
    /// returned it (restart codes included).
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
    /// The inode number of the caller's network namespace; 0 when not known
    /// (no BTF).
    pub netns: u32,
    /// [`via`]: how the attempt was made.
    pub via: u32,
    /// The handshake this call started, if it sent a SYN.
    pub handshake: Handshake,
    /// The thread's `comm`, NUL-padded (not always NUL-terminated).
    pub comm: [u8; COMM_LEN],
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the address.
    pub addr: [u8; SOCKADDR_MAX],
}

const _: () = assert!(core::mem::size_of::<Handshake>() == 32);
const _: () = assert!(core::mem::size_of::<InFlight>() == 192);
const _: () = assert!(core::mem::size_of::<IoUringCall>() == 240);
const _: () = assert!(core::mem::size_of::<OutcomeRecord>() == 48);
const _: () = assert!(core::mem::size_of::<PendingHandshake>() == 40);
const _: () = assert!(core::mem::size_of::<RecentAttempt>() == 32);
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 248);
