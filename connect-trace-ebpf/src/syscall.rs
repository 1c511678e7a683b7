//! The connect() syscall of 64-bit programs: entry saves the arguments,
//! exit reports the call.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use connect_trace_common::{
    abi::{InFlight, addr_flags, via},
    config::layout,
    names::counter,
};

use crate::{
    call,
    config::{config, field},
    maps::{IN_FLIGHT, SCRATCH, count, scratch},
    task::traced,
    words,
};

/// Attached to `syscalls/sys_enter_connect`.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    if crate::config::empty() {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if traced(pid_tgid) {
        let _ = save_in_flight(&ctx, pid_tgid);
    }
    0
}

fn save_in_flight(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i64> {
    let offsets = config!(tracepoints);
    let fd: u64 = field::<u64, { layout::ENTER_FD }>(ctx, offsets.enter_fd)?;
    let uaddr: u64 = field::<u64, { layout::ENTER_ADDR }>(ctx, offsets.enter_addr)?;
    let addrlen: u64 = field::<u64, { layout::ENTER_ADDRLEN }>(ctx, offsets.enter_addrlen)?;
    let Some(slot) = thread_entry(pid_tgid) else {
        count(counter::IN_FLIGHT_FULL);
        return Ok(());
    };
    // SAFETY: this thread's own entry; the thread is entering connect(), so
    // nothing else writes it (a handshake end only joins a call under way).
    let slot = unsafe { &mut *slot };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    slot.start_ns = unsafe { bpf_ktime_get_ns() };
    slot.fd = fd as i32;
    slot.addrlen = addrlen as i32;
    slot.flags = 0;
    slot.via = via::SYSCALL;
    // SAFETY: the slot's own field; all zeroes is `Handshake::default()`.
    unsafe { words::zero(&raw mut slot.handshake) };
    call::read_address(slot, uaddr);
    slot.caller_tid = pid_tgid as u32;
    Ok(())
}

/// The calling thread's entry in [`IN_FLIGHT`], added on its first call.
#[inline(always)]
fn thread_entry(pid_tgid: u64) -> Option<*mut InFlight> {
    if let Some(entry) = IN_FLIGHT.get_ptr_mut(&pid_tgid) {
        return Some(entry);
    }
    let blank = SCRATCH.get_ptr_mut(scratch::ENTER)?;
    // SAFETY: this program's scratch slot on this CPU, where it never runs
    // twice at once; only its `caller_tid` matters (0: idle).
    unsafe { (*blank).caller_tid = 0 };
    // SAFETY: as above.
    let blank = unsafe { &*blank };
    IN_FLIGHT
        .insert(&pid_tgid, blank, u64::from(BPF_NOEXIST))
        .ok()?;
    IN_FLIGHT.get_ptr_mut(&pid_tgid)
}

/// Attached to `syscalls/sys_exit_connect`.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn exit_connect(ctx: TracePointContext) -> u32 {
    if crate::config::empty() {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if traced(pid_tgid) {
        let _ = report_call(&ctx, pid_tgid);
    }
    0
}

fn report_call(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i64> {
    let ret: i64 = field::<i64, { layout::EXIT_RET }>(ctx, config!(tracepoints.exit_ret))?;
    let entry = IN_FLIGHT
        .get_ptr_mut(&pid_tgid)
        // SAFETY: a live map entry; only its caller is read.
        .filter(|&entry| unsafe { (*entry).caller_tid } == pid_tgid as u32);
    if ret == 0 && config!(failures_only) != 0 {
        if let Some(entry) = entry {
            // SAFETY: this thread's own entry, which it is leaving.
            unsafe { (*entry).caller_tid = 0 };
        }
        return Ok(());
    }
    let (in_flight, seen) = match entry {
        Some(in_flight) => (in_flight, true),
        None => {
            // The call's start was not seen: it began before tracing did,
            // or the kernel skipped the entry program (it does when the
            // program is already running on this CPU). Its result is still
            // reported, without an address.
            count(counter::EXIT_WITHOUT_ENTRY);
            (unseen_start()?, false)
        }
    };
    // SAFETY: the entry belongs to this thread, which is leaving connect()
    // (or it is this program's scratch slot, filled just above).
    let in_flight = unsafe { &mut *in_flight };
    let reported = call::report(in_flight, ret, (pid_tgid >> 32) as u32, |record| {
        call::current_caller(record, pid_tgid);
    });
    if seen {
        in_flight.caller_tid = 0;
    }
    reported
}

/// This program's scratch slot, filled in for a call whose start was not
/// seen: no address, no descriptor, started now.
#[inline(always)]
fn unseen_start() -> Result<*mut InFlight, i64> {
    let Some(slot) = SCRATCH.get_ptr_mut(scratch::EXIT) else {
        return Err(-1);
    };
    // SAFETY: this program's scratch slot on this CPU.
    let unseen = unsafe { &mut *slot };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unseen.start_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: as in `save_in_flight`.
    unsafe { words::zero(&raw mut unseen.handshake) };
    unseen.fd = -1;
    unseen.addrlen = 0;
    unseen.addr_flags = addr_flags::NOT_SEEN;
    unseen.flags = 0;
    unseen.via = via::SYSCALL;
    unseen.caller_tid = 0;
    unseen.addr[0] = 0;
    unseen.addr[1] = 0;
    Ok(slot)
}
