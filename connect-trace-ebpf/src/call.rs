//! What every call has in common once it returns, however it was made (a
//! connect() syscall, an io_uring request): reading the address it passed,
//! deciding whether it is a repeat, counting it, and writing its record.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_uid_gid, bpf_ktime_get_ns, generated,
};
use connect_trace_common::{
    abi::{ConnectRecord, InFlight, SOCKADDR_MAX, addr_flags, connect_flags, record_kind},
    family,
    names::counter,
    outcome::{self, Earlier, HandshakeEnd, Outcome, code},
};

use crate::{
    config::config,
    maps::{EVENTS, PENDING, count, count_outcome, wakeup_flags},
    recent, task, words,
};

/// The family slot of the address a call passed.
#[inline(always)]
pub fn family_slot_of(call: &InFlight) -> u32 {
    family::slot_of_address(&call.addr, call.addrlen, call.addr_flags)
}

/// Copies the `addrlen` bytes at user address `uaddr` into `call` (at most
/// [`SOCKADDR_MAX`]), flagging a length or pointer the kernel will refuse.
/// `call.addrlen` must already hold the caller's length.
#[inline(always)]
pub fn read_address(call: &mut InFlight, uaddr: u64) {
    call.addr_flags = 0;
    // Scratch is reused: clear the family so a failed read is not mistaken
    // for the previous call's address.
    call.addr[0] = 0;
    call.addr[1] = 0;
    // The length is read back from map memory with a volatile load so that
    // the register bounded by the check below is the one passed to the
    // helper; otherwise LLVM checks a shifted copy, which the verifier
    // cannot relate to the argument. As unsigned, negative lengths are
    // larger than SOCKADDR_MAX too.
    // SAFETY: a valid field of the scratch slot.
    let len = unsafe { core::ptr::read_volatile(core::ptr::from_ref(&call.addrlen).cast::<u32>()) };
    if len > SOCKADDR_MAX as u32 {
        call.addr_flags = addr_flags::BAD_LENGTH;
    } else if len > 0 {
        // SAFETY: the destination holds SOCKADDR_MAX >= len bytes; the
        // helper checks the user address and fails cleanly.
        let ret = unsafe {
            generated::bpf_probe_read_user(
                call.addr.as_mut_ptr().cast(),
                len,
                uaddr as *const core::ffi::c_void,
            )
        };
        if ret != 0 {
            call.addr_flags = addr_flags::UNREADABLE;
        }
    }
}

/// Reports a call of process `tgid` that returned `ret`: decides whether
/// it repeats an earlier attempt, counts it, and sends its record, whose
/// caller fields `caller` writes. Returns without a record when the ring
/// buffer is full (counted).
#[inline(always)]
pub fn report(
    call: &mut InFlight,
    ret: i64,
    tgid: u32,
    caller: impl FnOnce(*mut ConnectRecord),
) -> Result<(), i64> {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let errno = outcome::user_errno(ret);
    let sock = call.handshake.sock;
    let sent_syn = sock != 0;
    let earlier = if sent_syn || errno == outcome::EALREADY || errno == outcome::EISCONN {
        Earlier::None
    } else {
        recent::earlier(tgid, call.fd, now)
    };
    if outcome::is_repeat(errno, sent_syn, earlier) {
        call.flags |= connect_flags::REPEAT;
    }
    count(counter::ATTEMPTS);
    count_call(call, errno);

    let Some(mut entry) = EVENTS.reserve::<ConnectRecord>(0) else {
        count(counter::RINGBUF_FULL);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points to a reserved ring buffer entry of the right
    // size, written field by field (here and by `caller`) before it is
    // submitted.
    unsafe {
        (*record).kind = record_kind::CONNECT;
        (*record).tgid = tgid;
        (*record).fd = call.fd;
        (*record).ret = ret as i32;
        (*record).addrlen = call.addrlen;
        (*record).addr_flags = call.addr_flags;
        (*record).flags = call.flags;
        (*record).via = call.via;
        words::copy(&raw mut (*record).handshake, &raw const call.handshake);
        (*record).start_ns = call.start_ns;
        (*record).latency_ns = now.wrapping_sub(call.start_ns);
        words::address(&raw mut (*record).addr, &raw const call.addr);
    }
    caller(record);
    entry.submit(wakeup_flags());
    Ok(())
}

/// Writes the current task into a record as its caller (`tid`, ids,
/// cgroup, network namespace, `comm`).
#[inline(always)]
pub fn current_caller(record: *mut ConnectRecord, pid_tgid: u64) {
    // SAFETY: as in `report`, which hands over the reserved record.
    unsafe { (*record).tid = pid_tgid as u32 };
    if config!(task_btf) != 0 && config!(kernel).can_load_caller() {
        // SAFETY: as above.
        unsafe { task::load_caller(record) };
        return;
    }
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: as above; the helpers have no preconditions.
    unsafe {
        (*record).uid = uid_gid as u32;
        (*record).gid = (uid_gid >> 32) as u32;
        (*record).cgroup_id = bpf_get_current_cgroup_id();
        (*record).netns = task::netns();
        // Straight into the record; on failure the helper zeroes it.
        let _ = generated::bpf_get_current_comm((&raw mut (*record).comm).cast(), 16);
    }
}

/// Counts a call as it returns, unless the end of its handshake counts it
/// (it goes on past the call and is followed). The same rules as the
/// daemon's resolver: `connect_trace_common::outcome`.
#[inline(always)]
fn count_call(call: &InFlight, errno: i32) {
    let handshake = &call.handshake;
    let end = HandshakeEnd::of(handshake);
    let followed = handshake.sock != 0 && call.flags & connect_flags::UNTRACKED == 0;
    let code = if call.flags & connect_flags::REPEAT != 0 {
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
    count_outcome(family_slot_of(call), code);
}
