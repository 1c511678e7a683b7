//! The maps, and the counters kept in them.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use connect_trace_common::{
    abi::{InFlight, PendingHandshake, RecentAttempt},
    names::{RECENT_SLOTS, counter},
    outcome,
};

use crate::config::config;

/// Records for the daemon. Sized by the loader (`--ring-buffer-size`);
/// this is only the default.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// connect() calls between entry and exit, by thread. A plain preallocated
/// hash map: the exit program removes every entry the entry program adds
/// (the exit tracepoint runs even for a thread killed in the call), and a
/// plain map costs less per call than an LRU one. A full map is counted,
/// not silent.
#[map]
pub static IN_FLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(16384, 0);

/// One-slot scratch space: an `InFlight` is too large to build on the
/// 512-byte BPF stack comfortably, so it is assembled here and copied in.
#[map]
pub static SCRATCH: PerCpuArray<InFlight> = PerCpuArray::with_max_entries(1, 0);

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
