//! Following TCP handshakes on `inet_sock_set_state`.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use connect_trace_common::{
    abi::{
        Handshake, IPPROTO_TCP, InFlight, OutcomeRecord, PendingHandshake, connect_flags,
        record_kind, tcp_state, via,
    },
    config::layout,
    names::counter,
    outcome::{HandshakeEnd, Outcome},
};

use crate::{
    call::family_slot_of,
    config::{config, field},
    io_uring,
    maps::{EVENTS, IN_FLIGHT, PENDING, count, count_outcome, wakeup_flags},
    recent, sock,
    task::traced,
    without_call, words,
};

/// Attached to the classic tracepoint `sock/inet_sock_set_state`, where the
/// raw one is not available.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn sock_state(ctx: TracePointContext) -> u32 {
    if crate::config::empty() {
        return 0;
    }
    let _ = follow_handshake(&ctx);
    0
}

fn follow_handshake(ctx: &TracePointContext) -> Result<(), i64> {
    let offsets = config!(tracepoints);
    let protocol: u16 = field::<u16, { layout::STATE_PROTOCOL }>(ctx, offsets.state_protocol)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let sock: u64 = field::<u64, { layout::STATE_SKADDR }>(ctx, offsets.state_skaddr)?;
    let old: i32 = field::<i32, { layout::STATE_OLD }>(ctx, offsets.state_old)?;
    let new: i32 = field::<i32, { layout::STATE_NEW }>(ctx, offsets.state_new)?;
    on_state_change(sock, old as u32, new as u32);
    Ok(())
}

/// The same hook as raw tracepoints, which the loader prefers: the kernel
/// then passes `(sk, oldstate, newstate)` as they are instead of building
/// the tracepoint's record (addresses, ports) on every TCP state change on
/// the host. There is no protocol field to check; only TCP (and MPTCP,
/// which is TCP underneath) ever moves a socket from CLOSE to SYN_SENT,
/// and only such sockets are followed.
///
/// Two programs, not one: the kernel never lets a program run on a CPU
/// where it is already running, and skips the event instead (it counts a
/// "recursion miss"). A handshake starts in the connecting task and most
/// end in softirq, which can interrupt that task on the same CPU; with one
/// program, every end that a softirq delivered while the program was
/// busy with a start was lost, thousands at a time under a burst of
/// timeouts. Starts happen only in task context and ends only in softirq
/// or a task's own call, so neither program can be interrupted by itself.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn handshake_start(ctx: RawTracePointContext) -> i32 {
    if crate::config::empty() {
        return 0;
    }
    let old: u64 = ctx.arg(1);
    let new: u64 = ctx.arg(2);
    if old as u32 == tcp_state::CLOSE && new as u32 == tcp_state::SYN_SENT {
        on_syn(ctx.arg(0));
    }
    0
}

/// The other half: a handshake's end (see [`handshake_start`]).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn handshake_end(ctx: RawTracePointContext) -> i32 {
    if crate::config::empty() {
        return 0;
    }
    let old: u64 = ctx.arg(1);
    let new = ctx.arg::<u64>(2) as u32;
    if old as u32 == tcp_state::SYN_SENT
        && (new == tcp_state::ESTABLISHED || new == tcp_state::CLOSE)
    {
        let _ = state_end(ctx.arg(0), new);
    }
    0
}

/// Attached to the raw tracepoint `tcp_destroy_sock`, which fires as a TCP
/// socket is freed, always in CLOSE. A followed handshake still pending
/// then ended without the kernel reporting its last state change. That
/// happens: under a burst of SYN timeouts on Linux 6.18, some sockets went
/// SYN_SENT→CLOSE with `sk_err` set and neither `inet_sock_set_state` nor
/// `inet_sk_error_report` reached any BPF program (ours, or bpftrace's on
/// the classic tracepoint), with no recursion miss counted; the burst test
/// caught 931 and 1,363 of 9,000 this way. Their end is reported here
/// instead ([`sock::end_at_close`]). Costs one map lookup per TCP socket
/// freed: about 150 ns per refused connect on the test VM, where the whole
/// of a refused connect's programs take about 2,800 ns.
#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub fn handshake_gone(ctx: RawTracePointContext) -> i32 {
    if crate::config::empty() {
        return 0;
    }
    let sock = ctx.arg(0);
    let ended = on_end(sock, |pending| {
        sock::end_at_close(sock, pending.via == via::FASTOPEN)
    });
    if ended {
        count(counter::ENDS_AT_CLOSE);
    }
    0
}

/// Follows one TCP state change of socket `sock`.
#[inline(always)]
fn on_state_change(sock: u64, old: u32, new: u32) {
    if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        on_syn(sock);
    } else if old == tcp_state::SYN_SENT
        && (new == tcp_state::ESTABLISHED || new == tcp_state::CLOSE)
    {
        // Only a handshake's own end: a socket at an address that once
        // held a followed one (a server's child socket, say) going to
        // ESTABLISHED from SYN_RECV is not it.
        let _ = state_end(sock, new);
    }
}

/// CLOSE→SYN_SENT fires in the connecting thread, inside the call: a
/// connect() syscall has an in-flight entry for the thread there, and an
/// io_uring request is found by its socket. A handshake no call was seen
/// for is reported from here ([`without_call`]).
#[inline(always)]
fn on_syn(sock: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(call) = IN_FLIGHT.get_ptr_mut(&pid_tgid) {
        // SAFETY: the entry belongs to this thread, which is inside
        // connect() if the entry names it.
        let call = unsafe { &mut *call };
        if call.caller_tid == pid_tgid as u32 {
            tie(call, sock, pid_tgid, pid_tgid);
            return;
        }
    }
    if let Some((call, request)) = io_uring::call_of(sock) {
        // SAFETY: a request between submission and completion; only this
        // socket's handshake and the request's completion touch it.
        let call = unsafe { &mut *call };
        tie(&mut call.call, sock, call.pid_tgid, request);
        return;
    }
    // An entry left at this address by an earlier socket whose end was
    // never seen must not take this handshake's outcome.
    let _ = PENDING.remove(&sock);
    if traced(pid_tgid) {
        without_call::report_start(sock, pid_tgid);
    }
}

/// Ties the handshake on `sock` to `call` (made by `pid_tgid`, found under
/// key `key`), and starts following it.
#[inline(always)]
fn tie(call: &mut InFlight, sock: u64, pid_tgid: u64, key: u64) {
    if call.handshake.sock != 0 {
        // The call's socket went first; a second SYN in the same call is
        // an MPTCP subflow, whose end the connection's own socket reports.
        return;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let syn_ns = unsafe { bpf_ktime_get_ns() };
    call.handshake.sock = sock;
    call.handshake.syn_ns = syn_ns;
    let pending = PendingHandshake {
        syn_ns,
        pid_tgid,
        call: key,
        family_slot: family_slot_of(call),
        fd: call.fd,
        via: call.via,
        reserved: 0,
    };
    if PENDING.insert(&sock, &pending, u64::from(BPF_ANY)).is_err() {
        call.flags |= connect_flags::UNTRACKED;
        count(counter::PENDING_FULL);
        return;
    }
    recent::begin((pid_tgid >> 32) as u32, call.fd, sock, syn_ns);
}

/// The call a handshake's end joins if the call has not returned yet.
#[inline(always)]
fn unreturned_call(pending: &PendingHandshake, sock: u64) -> Option<*mut InFlight> {
    let call = match pending.via {
        via::SYSCALL if pending.call != 0 => IN_FLIGHT.get_ptr_mut(&pending.call)?,
        via::IO_URING if pending.call != 0 => io_uring::call(pending.call)?,
        _ => return None,
    };
    // SAFETY: a live map entry; only read here.
    let (caller, handshake) = unsafe { ((*call).caller_tid, &(*call).handshake) };
    (caller != 0 && handshake.sock == sock && handshake.syn_ns == pending.syn_ns).then_some(call)
}

/// SYN_SENT→ESTABLISHED or →CLOSE: the end of a handshake, if followed
/// (then true).
#[inline(always)]
fn state_end(sock: u64, new: u32) -> bool {
    on_end(sock, |_| {
        let error = if new == tcp_state::CLOSE {
            sock::error(sock)
        } else {
            0
        };
        Some((new, error))
    })
}

/// The end of the handshake on `sock`, if followed (then true): `end`
/// gives its state and error, or `None` if it cannot tell, when the
/// handshake is left to the daemon's timeout.
#[inline(always)]
fn on_end(sock: u64, end: impl FnOnce(&PendingHandshake) -> Option<(u32, i32)>) -> bool {
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING.get(&sock) }).copied() else {
        return false;
    };
    let Some((state, error)) = end(&pending) else {
        return false;
    };
    let _ = PENDING.remove(&sock);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let outcome = Handshake {
        sock,
        syn_ns: pending.syn_ns,
        outcome_ns: now,
        outcome_state: state,
        outcome_err: error,
    };
    let code = match HandshakeEnd::of(&outcome) {
        Some(end) => Outcome::of_handshake(end, 0).code(),
        None => Outcome::Failed(None).code(),
    };
    let tgid = (pending.pid_tgid >> 32) as u32;
    if pending.fd >= 0 {
        recent::end(tgid, pending.fd, sock, code, now);
    }
    // Still inside the call that started it (loopback, a blocking call
    // woken in its own context, an io_uring request not yet completed):
    // the call's record reports and counts it.
    if let Some(call) = unreturned_call(&pending, sock) {
        // SAFETY: a live map entry of a call that has not returned, whose
        // handshake only this socket's end writes.
        unsafe { words::copy(&raw mut (*call).handshake, &raw const outcome) };
        return true;
    }
    count_outcome(pending.family_slot, code);
    let Some(mut entry) = EVENTS.reserve::<OutcomeRecord>(0) else {
        count(counter::OUTCOME_RINGBUF_FULL);
        return true;
    };
    entry.write(OutcomeRecord {
        kind: record_kind::OUTCOME,
        reserved: 0,
        pid_tgid: pending.pid_tgid,
        handshake: outcome,
    });
    entry.submit(wakeup_flags());
    true
}
