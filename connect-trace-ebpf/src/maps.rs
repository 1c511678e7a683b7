//! The maps, and the counters kept in them.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use connect_trace_common::{
    abi::{InFlight, IoUringCall, PendingHandshake, RecentAttempt},
    names::{RECENT_SLOTS, counter},
    outcome,
};

use crate::config::config;

/// Records for the daemon. Sized by the loader (`--ring-buffer-size`);
/// this is only the default.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// connect() calls between entry and exit, by thread. Each thread keeps
/// its entry from one call to the next, marked idle (`caller_tid == 0`) when a
/// call returns: after its first call a thread's entry is only looked up,
/// which the verifier inlines, instead of inserted and deleted on every
/// call. Those two were the costliest steps of the syscall programs: per
/// refused connect on the bench VM, `enter_connect` went from 876 to 574 ns
/// and `exit_connect` from 1,102 to 743 ns.
///
/// LRU, so the entries of threads that are gone make way for new ones. The
/// kernel evicts only once the map is nearly full (each CPU keeps a small
/// cache of free entries), so an entry is lost mid-call only when some
/// 16,000 other threads connect during that call; the call is then
/// reported without its address, counted as an exit without entry.
#[map]
pub static IN_FLIGHT: LruHashMap<u64, InFlight> = LruHashMap::with_max_entries(16384, 0);

/// Scratch space: an `InFlight` is too large to build on the 512-byte BPF
/// stack comfortably, so it is assembled here and copied in. One slot per
/// program that uses it ([`scratch`]): on a preemptible kernel a program
/// can be interrupted by another task running a different one on the same
/// CPU (never the same one: the kernel skips that run).
#[map]
pub static SCRATCH: PerCpuArray<InFlight> = PerCpuArray::with_max_entries(scratch::SLOTS, 0);

/// The slots of [`SCRATCH`].
pub mod scratch {
    /// `enter_connect`.
    pub const ENTER: u32 = 0;
    /// `exit_connect`, for a call whose entry was not seen.
    pub const EXIT: u32 = 1;
    /// `handshake_start`, for a handshake no call was seen for.
    pub const HANDSHAKE: u32 = 2;
    /// How many.
    pub const SLOTS: u32 = 3;
}

/// Scratch space for `io_uring_submit`, as [`SCRATCH`] is for the others.
#[map]
pub static IO_URING_SCRATCH: PerCpuArray<IoUringCall> = PerCpuArray::with_max_entries(1, 0);

/// io_uring connect requests between submission and completion, by
/// request (see `io_uring.rs`). Every submitted request completes, which
/// removes its entry; the daemon's sweep removes any left by a ring torn
/// down mid-flight. A full map is counted.
#[map]
pub static IO_URING_CALLS: HashMap<u64, IoUringCall> = HashMap::with_max_entries(4096, 0);

/// The io_uring request connecting each socket, by socket, between
/// submission and the handshake's start: how a SYN sent by an io-wq worker
/// thread finds its request. LRU: an entry whose request sent no SYN (UDP,
/// unix, an early failure) only waits to be displaced.
#[map]
pub static IO_URING_SOCKETS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Sockets whose handshake an io-wq worker started without finding its
/// request (a registered file): already reported, so the request's
/// completion must not report them again.
#[map]
pub static IO_URING_UNTIED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// Threads that submitted a connect request on a registered file, whose
/// socket cannot be found at submission: a SYN they send is io_uring's.
#[map]
pub static IO_URING_THREADS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// Handshakes whose connect() has sent a SYN, by socket. A plain hash map,
/// not LRU: every socket leaves SYN_SENT sooner or later, which removes its
/// entry, and a full map is counted instead of silently evicting.
#[map]
pub static PENDING: HashMap<u64, PendingHandshake> = HashMap::with_max_entries(65536, 0);

/// The latest TCP attempt per (process, descriptor); see `recent.rs`.
#[map]
pub static RECENT: Array<RecentAttempt> = Array::with_max_entries(RECENT_SLOTS, 0);

/// Per-CPU counters, by `counter` slot.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU exact counts of attempts, by `outcome::slot`.
#[map]
pub static OUTCOMES: PerCpuArray<u64> = PerCpuArray::with_max_entries(outcome::SLOTS, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(slot: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a valid per-CPU slot; tracepoint programs do not nest on
        // one CPU, so a plain add cannot race.
        unsafe { *value += 1 };
    }
}

/// Counts one attempt of family slot `family_slot` with counting code `code`.
#[inline(always)]
pub fn count_outcome(family_slot: u32, code: u32) {
    if let Some(value) = OUTCOMES.get_ptr_mut(outcome::slot(family_slot, code)) {
        // SAFETY: as in `count`.
        unsafe { *value += 1 };
    }
}

/// A wakeup per record costs far more than the record itself (an IPI and a
/// context switch), so records normally go in silently and the daemon
/// polls. Once enough is queued to matter, wake it so the buffer cannot
/// fill while it sleeps.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= config!(wakeup_bytes) {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}
