//! Following TCP handshakes on `inet_sock_set_state`.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use connect_trace_common::{
    abi::{
        Handshake, IPPROTO_TCP, OUTCOME_ERR_UNKNOWN, OutcomeRecord, PendingHandshake,
        connect_flags, record_kind, tcp_state,
    },
    config::{OFFSET_UNKNOWN, layout},
    names::counter,
    outcome::{HandshakeEnd, Outcome},
};

use crate::{
    config::{config, field},
    maps::{EVENTS, IN_FLIGHT, PENDING, count, count_outcome, wakeup_flags},
    recent,
    syscall::family_slot_of,
};

/// Attached to the classic tracepoint `sock/inet_sock_set_state`, where the
/// raw one is not available.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn sock_state(ctx: TracePointContext) -> u32 {
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
    let old: u64 = ctx.arg(1);
    let new = ctx.arg::<u64>(2) as u32;
    if old as u32 == tcp_state::SYN_SENT
        && (new == tcp_state::ESTABLISHED || new == tcp_state::CLOSE)
    {
        on_end(ctx.arg(0), new);
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
        on_end(sock, new);
    }
}

/// CLOSE→SYN_SENT fires in the connecting thread, inside connect(): only
/// handshakes started by a traced call have an in-flight entry there.
#[inline(always)]
fn on_syn(sock: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(in_flight) = IN_FLIGHT.get_ptr_mut(&pid_tgid) else {
        // A handshake nobody traced. An entry left at this address by an
        // earlier socket whose end was never seen must not take its
        // outcome.
        let _ = PENDING.remove(&sock);
        return;
    };
    // SAFETY: the entry belongs to this thread, which is inside connect().
    let in_flight = unsafe { &mut *in_flight };
    if in_flight.handshake.sock != 0 {
        // The call's socket went first; a second SYN in the same call is
        // an MPTCP subflow, whose end the connection's own socket reports.
        return;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let syn_ns = unsafe { bpf_ktime_get_ns() };
    in_flight.handshake.sock = sock;
    in_flight.handshake.syn_ns = syn_ns;
    let pending = PendingHandshake {
        syn_ns,
        pid_tgid,
        family_slot: family_slot_of(in_flight),
        fd: in_flight.fd,
    };
    if PENDING.insert(&sock, &pending, u64::from(BPF_ANY)).is_err() {
        in_flight.flags |= connect_flags::UNTRACKED;
        count(counter::PENDING_FULL);
        return;
    }
    recent::begin((pid_tgid >> 32) as u32, in_flight.fd, sock, syn_ns);
}

/// SYN_SENT→ESTABLISHED or →CLOSE: the end of a handshake, if followed.
#[inline(always)]
fn on_end(sock: u64, new: u32) {
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING.get(&sock) }).copied() else {
        return;
    };
    let _ = PENDING.remove(&sock);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let outcome = Handshake {
        sock,
        syn_ns: pending.syn_ns,
        outcome_ns: now,
        outcome_state: new,
        outcome_err: if new == tcp_state::CLOSE {
            socket_error(sock)
        } else {
            0
        },
    };
    let code = match HandshakeEnd::of(&outcome) {
        Some(end) => Outcome::of_handshake(end, 0).code(),
        None => Outcome::Failed(None).code(),
    };
    let tgid = (pending.pid_tgid >> 32) as u32;
    recent::end(tgid, pending.fd, sock, code, now);
    // Still inside the connect() that started it (loopback, or a blocking
    // call woken in its own context): the exit program reports and counts
    // it with the call.
    if bpf_get_current_pid_tgid() == pending.pid_tgid
        && let Some(in_flight) = IN_FLIGHT.get_ptr_mut(&pending.pid_tgid)
    {
        // SAFETY: the entry belongs to this thread, inside connect().
        let in_flight = unsafe { &mut *in_flight };
        if in_flight.handshake.sock == sock {
            in_flight.handshake = outcome;
            return;
        }
    }
    count_outcome(pending.family_slot, code);
    let Some(mut entry) = EVENTS.reserve::<OutcomeRecord>(0) else {
        count(counter::OUTCOME_RINGBUF_FULL);
        return;
    };
    entry.write(OutcomeRecord {
        kind: record_kind::OUTCOME,
        reserved: 0,
        pid_tgid: pending.pid_tgid,
        handshake: outcome,
    });
    entry.submit(wakeup_flags());
}

/// `sk->sk_err`: the kernel sets it before moving a failed handshake to
/// CLOSE; it is 0 when the application closed the socket itself.
#[inline(always)]
fn socket_error(sock: u64) -> i32 {
    let offset = config!(kernel.sock_sk_err);
    if offset == OFFSET_UNKNOWN {
        return OUTCOME_ERR_UNKNOWN;
    }
    let field = (sock + u64::from(offset)) as *const i32;
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(field) }.unwrap_or(OUTCOME_ERR_UNKNOWN)
}
