//! The connect() syscall: entry saves the arguments, exit reports the call.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use connect_trace_common::{
    abi::{
        ConnectRecord, Handshake, InFlight, SOCKADDR_MAX, addr_flags, connect_flags, record_kind,
    },
    config::layout,
    family,
    names::counter,
    outcome::{self, Earlier, HandshakeEnd, Outcome, code},
};

use crate::{
    config::{config, field},
    maps::{EVENTS, IN_FLIGHT, PENDING, SCRATCH, count, count_outcome, wakeup_flags},
    recent, task,
};

/// Whether calls of this thread are traced (`--pid`, `--cgroup`). The
/// verifier knows the configuration, so an unset filter costs nothing.
#[inline(always)]
fn traced(pid_tgid: u64) -> bool {
    let filter = config!(filter_tgid);
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return false;
    }
    let level = config!(filter_cgroup_level);
    if level != 0 {
        // SAFETY: the helper takes a plain integer.
        let ancestor = unsafe { generated::bpf_get_current_ancestor_cgroup_id(level as i32) };
        return ancestor == config!(filter_cgroup_id);
    }
    true
}

/// Attached to `syscalls/sys_enter_connect`.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
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
    let Some(slot) = SCRATCH.get_ptr_mut(0) else {
        return Err(-1);
    };
    // SAFETY: this CPU's scratch slot; programs do not nest on one CPU.
    let slot = unsafe { &mut *slot };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    slot.start_ns = unsafe { bpf_ktime_get_ns() };
    slot.fd = fd as i32;
    slot.addrlen = addrlen as i32;
    slot.addr_flags = 0;
    slot.flags = 0;
    slot.handshake = Handshake::default();
    // Scratch is reused: clear the family so a failed read is not mistaken
    // for the previous call's address.
    slot.addr[0] = 0;
    slot.addr[1] = 0;
    // The length is read back from map memory with a volatile load so that
    // the register bounded by the check below is the one passed to the
    // helper; otherwise LLVM checks a shifted copy, which the verifier
    // cannot relate to the argument. As unsigned, negative lengths are
    // larger than SOCKADDR_MAX too.
    // SAFETY: a valid field of the scratch slot.
    let len = unsafe { core::ptr::read_volatile(core::ptr::from_ref(&slot.addrlen).cast::<u32>()) };
    if len > SOCKADDR_MAX as u32 {
        slot.addr_flags = addr_flags::BAD_LENGTH;
    } else if len > 0 {
        // SAFETY: the destination holds SOCKADDR_MAX >= len bytes; the
        // helper checks the user address and fails cleanly.
        let ret = unsafe {
            generated::bpf_probe_read_user(
                slot.addr.as_mut_ptr().cast(),
                len,
                uaddr as *const core::ffi::c_void,
            )
        };
        if ret != 0 {
            slot.addr_flags = addr_flags::UNREADABLE;
        }
    }
    if IN_FLIGHT
        .insert(&pid_tgid, slot, u64::from(BPF_ANY))
        .is_err()
    {
        count(counter::IN_FLIGHT_FULL);
    }
    Ok(())
}

/// Attached to `syscalls/sys_exit_connect`.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if traced(pid_tgid) {
        let _ = report_call(&ctx, pid_tgid);
    }
    0
}

/// The family slot of the address saved at entry.
#[inline(always)]
pub fn family_slot_of(in_flight: &InFlight) -> u32 {
    family::slot_of_address(&in_flight.addr, in_flight.addrlen, in_flight.addr_flags)
}

fn report_call(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i64> {
    let ret: i64 = field::<i64, { layout::EXIT_RET }>(ctx, config!(tracepoints.exit_ret))?;
    if ret == 0 && config!(failures_only) != 0 {
        let _ = IN_FLIGHT.remove(&pid_tgid);
        return Ok(());
    }
    let (in_flight, seen) = match IN_FLIGHT.get_ptr_mut(&pid_tgid) {
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
    // (or it is this CPU's scratch slot, filled just above).
    let in_flight = unsafe { &mut *in_flight };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let tgid = (pid_tgid >> 32) as u32;
    let errno = outcome::user_errno(ret);
    let sock = in_flight.handshake.sock;
    let sent_syn = sock != 0;
    let earlier = if sent_syn || errno == outcome::EALREADY || errno == outcome::EISCONN {
        Earlier::None
    } else {
        recent::earlier(tgid, in_flight.fd, now)
    };
    if outcome::is_repeat(errno, sent_syn, earlier) {
        in_flight.flags |= connect_flags::REPEAT;
    }
    count(counter::ATTEMPTS);
    count_call(in_flight, errno);

    let Some(mut entry) = EVENTS.reserve::<ConnectRecord>(0) else {
        count(counter::RINGBUF_FULL);
        if seen {
            let _ = IN_FLIGHT.remove(&pid_tgid);
        }
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `record` points to a reserved ring buffer entry of the right
    // size, written field by field before it is submitted.
    unsafe {
        (*record).kind = record_kind::CONNECT;
        (*record).tgid = tgid;
        (*record).tid = pid_tgid as u32;
        (*record).uid = uid_gid as u32;
        (*record).gid = (uid_gid >> 32) as u32;
        (*record).fd = in_flight.fd;
        (*record).ret = ret as i32;
        (*record).addrlen = in_flight.addrlen;
        (*record).addr_flags = in_flight.addr_flags;
        (*record).flags = in_flight.flags;
        (*record).handshake = in_flight.handshake;
        (*record).start_ns = in_flight.start_ns;
        (*record).latency_ns = now.wrapping_sub(in_flight.start_ns);
        (*record).cgroup_id = bpf_get_current_cgroup_id();
        (*record).netns = task::netns();
        (*record).reserved = 0;
        (*record).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*record).addr = in_flight.addr;
    }
    if seen {
        let _ = IN_FLIGHT.remove(&pid_tgid);
    }
    entry.submit(wakeup_flags());
    Ok(())
}

/// This CPU's scratch slot, filled in for a call whose start was not seen:
/// no address, no descriptor, started now.
#[inline(always)]
fn unseen_start() -> Result<*mut InFlight, i64> {
    let Some(slot) = SCRATCH.get_ptr_mut(0) else {
        return Err(-1);
    };
    // SAFETY: this CPU's scratch slot, not in use by the entry program on
    // this CPU while the exit program runs here.
    let unseen = unsafe { &mut *slot };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unseen.start_ns = unsafe { bpf_ktime_get_ns() };
    unseen.handshake = Handshake::default();
    unseen.fd = -1;
    unseen.addrlen = 0;
    unseen.addr_flags = addr_flags::NOT_SEEN;
    unseen.flags = 0;
    unseen.addr[0] = 0;
    unseen.addr[1] = 0;
    Ok(slot)
}

/// Counts a call at exit, unless the end of its handshake counts it (it
/// goes on past the call and is followed). The same rules as the daemon's
/// resolver: `connect_trace_common::outcome`.
#[inline(always)]
fn count_call(in_flight: &InFlight, errno: i32) {
    let handshake = &in_flight.handshake;
    let end = HandshakeEnd::of(handshake);
    let followed = handshake.sock != 0 && in_flight.flags & connect_flags::UNTRACKED == 0;
    let code = if in_flight.flags & connect_flags::REPEAT != 0 {
        code::REPEAT
    } else if let Some(end) = end {
        Outcome::of_handshake(end, errno).code()
    } else if outcome::awaits_handshake(errno, followed, false) {
        return;
    } else {
        if followed {
            // A followed handshake the call did not wait for and did not
            // see end: the call's result stands, so its end must not be
            // counted again.
            let _ = PENDING.remove(&handshake.sock);
        }
        Outcome::of_return(errno).code()
    };
    count_outcome(family_slot_of(in_flight), code);
}
