//! connect-trace kernel programs.
//!
//! `enter_connect` saves the arguments of each connect() call (copying the
//! socket address out of user memory while it is still what the caller
//! passed) in a per-thread in-flight map; `exit_connect` joins them with the
//! return value and sends one [`ConnectRecord`] to the daemon.
//!
//! `sock_state` follows TCP handshakes. CLOSE→SYN_SENT fires in the
//! connecting thread inside connect(), so the in-flight entry learns its
//! socket there and the socket goes into `PENDING`. The outcome (→ESTABLISHED
//! or →CLOSE) fires later, often in softirq or timer context where the
//! current task is unrelated, so it is matched by socket address only. If
//! the connecting thread is still inside the call, the outcome rides in its
//! `ConnectRecord`; otherwise an [`OutcomeRecord`] carries it.
//!
//! No kernel struct layout is compiled in: the tracepoint field offsets come
//! from tracefs `format` files, read by the loader and set as globals.
#![no_std]
#![no_main]

mod dns;

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{BPF_ANY, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel, generated,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use connect_trace_common::{
    ConnectRecord, Handshake, IPPROTO_TCP, InFlight, OUTCOME_ERR_UNKNOWN, OutcomeRecord,
    PendingHandshake, SK_ERR_UNKNOWN, SOCKADDR_MAX, addr_flags, connect_flags, counter, layout,
    outcome_count, record_kind, tcp_state,
};

// errno values the programs need to tell a final result from a call that
// leaves its handshake running.
const EINTR: i32 = 4;
const EALREADY: i32 = 114;
const EINPROGRESS: i32 = 115;
const EISCONN: i32 = 106;
const ERESTARTSYS: i32 = 512;
const ERESTARTNOINTR: i32 = 513;
const ERESTARTNOHAND: i32 = 514;
const ERESTART_RESTARTBLOCK: i32 = 516;

#[unsafe(no_mangle)]
static FILTER_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static FAILURES_ONLY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static WAKEUP_BYTES: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static ENTER_FD_OFFSET: Global<u32> = Global::new(layout::ENTER_FD as u32);
#[unsafe(no_mangle)]
static ENTER_ADDR_OFFSET: Global<u32> = Global::new(layout::ENTER_ADDR as u32);
#[unsafe(no_mangle)]
static ENTER_ADDRLEN_OFFSET: Global<u32> = Global::new(layout::ENTER_ADDRLEN as u32);
#[unsafe(no_mangle)]
static EXIT_RET_OFFSET: Global<u32> = Global::new(layout::EXIT_RET as u32);
#[unsafe(no_mangle)]
static STATE_SKADDR_OFFSET: Global<u32> = Global::new(layout::STATE_SKADDR as u32);
#[unsafe(no_mangle)]
static STATE_OLD_OFFSET: Global<u32> = Global::new(layout::STATE_OLD as u32);
#[unsafe(no_mangle)]
static STATE_NEW_OFFSET: Global<u32> = Global::new(layout::STATE_NEW as u32);
#[unsafe(no_mangle)]
static STATE_PROTOCOL_OFFSET: Global<u32> = Global::new(layout::STATE_PROTOCOL as u32);
/// 1 when the running kernel's tracepoint records have the usual layout
/// ([`layout`]), so fields can be loaded straight from the context.
#[unsafe(no_mangle)]
static LAYOUT_USUAL: Global<u32> = Global::new(0);

/// Reads a tracepoint field. On kernels whose record layout is the usual
/// one this is a plain load from the context at a constant offset (the
/// verifier only allows constant offsets there); otherwise a helper call at
/// the offset the loader read from tracefs. `LAYOUT_USUAL` is read-only
/// data, so the verifier knows its value and drops the branch not taken.
#[inline(always)]
fn field<T: Copy, const USUAL: usize>(
    ctx: &TracePointContext,
    offset: &Global<u32>,
) -> Result<T, i64> {
    if LAYOUT_USUAL.load() == 1 {
        Ok(unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(USUAL).cast::<T>()) })
    } else {
        unsafe { ctx.read_at(offset.load() as usize) }.map_err(i64::from)
    }
}
#[unsafe(no_mangle)]
static SK_ERR_OFFSET: Global<u32> = Global::new(SK_ERR_UNKNOWN);

/// Sized by the loader (`--ring-buffer-size`); this is only the default.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// A plain preallocated hash map: the exit program removes every entry the
/// entry program adds (the exit tracepoint runs even for a thread killed in
/// the call), and a plain map costs less per call than an LRU one. A full
/// map is counted, not silent.
#[map]
static IN_FLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(16384, 0);

/// One-slot scratch space: an `InFlight` is too large to build on the
/// 512-byte BPF stack comfortably, so it is assembled here and copied in.
#[map]
static SCRATCH: PerCpuArray<InFlight> = PerCpuArray::with_max_entries(1, 0);

/// Handshakes whose connect() has sent a SYN, by socket. A plain hash map,
/// not LRU: every socket leaves SYN_SENT sooner or later, which removes its
/// entry, and a full map is counted instead of silently evicting.
#[map]
static PENDING: HashMap<u64, PendingHandshake> = HashMap::with_max_entries(65536, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[map]
static OUTCOMES: PerCpuArray<u64> = PerCpuArray::with_max_entries(outcome_count::SLOTS, 0);

#[inline(always)]
fn count_outcome(family_slot: u32, code: u32) {
    if let Some(value) = OUTCOMES.get_ptr_mut(outcome_count::slot(family_slot, code)) {
        // Per-CPU slot; tracepoint programs do not nest on one CPU.
        unsafe { *value += 1 };
    }
}

/// The family slot of the address saved at entry.
fn family_slot_of(in_flight: &InFlight) -> u32 {
    if in_flight.addr_flags != 0 || in_flight.addrlen < 2 {
        return outcome_count::FAMILY_OTHER;
    }
    outcome_count::family_slot(u16::from_ne_bytes([in_flight.addr[0], in_flight.addr[1]]))
}

/// The outcome code of a handshake that ended (`outcome_state` set). A close
/// without an error is a cancel, unless the call itself failed: then the
/// kernel undid the SYN_SENT state on its way out (no source port, say).
fn handshake_code(handshake: &Handshake, errno: i32) -> u32 {
    if handshake.outcome_state == tcp_state::ESTABLISHED {
        return outcome_count::CONNECTED;
    }
    match handshake.outcome_err {
        0 if errno > 0 && !continues(errno) => outcome_count::failed(errno),
        0 => outcome_count::CANCELED,
        err => outcome_count::failed(err),
    }
}

/// The call returned while its handshake goes on.
fn continues(errno: i32) -> bool {
    matches!(
        errno,
        EINPROGRESS | EINTR | ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
    )
}

/// Counts a call at exit, unless its outcome is counted when its handshake
/// ends (or was counted already, if it ended on another CPU first).
fn count_call(in_flight: &InFlight, ret: i64) {
    let errno = if ret < 0 { -(ret as i32) } else { 0 };
    let handshake = &in_flight.handshake;
    let code = if errno == EALREADY || errno == EISCONN {
        outcome_count::REPEAT
    } else if handshake.outcome_state != 0 {
        handshake_code(handshake, errno)
    } else if handshake.sock != 0 && in_flight.flags & connect_flags::UNTRACKED == 0 {
        return;
    } else if errno == 0 {
        outcome_count::CONNECTED
    } else if continues(errno) {
        outcome_count::IN_PROGRESS
    } else {
        outcome_count::failed(errno)
    };
    count_outcome(family_slot_of(in_flight), code);
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(slot) {
        // Per-CPU slot and tracepoint programs do not nest on one CPU, so a
        // plain add cannot race.
        unsafe { *value += 1 };
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let filter = FILTER_TGID.load();
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return 0;
    }
    let _ = save_in_flight(&ctx, pid_tgid);
    0
}

fn save_in_flight(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i64> {
    let fd: u64 = field::<u64, { layout::ENTER_FD }>(ctx, &ENTER_FD_OFFSET)?;
    let uaddr: u64 = field::<u64, { layout::ENTER_ADDR }>(ctx, &ENTER_ADDR_OFFSET)?;
    let addrlen: u64 = field::<u64, { layout::ENTER_ADDRLEN }>(ctx, &ENTER_ADDRLEN_OFFSET)?;
    let Some(slot) = SCRATCH.get_ptr_mut(0) else {
        return Err(-1);
    };
    let slot = unsafe { &mut *slot };
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
    let len = unsafe { core::ptr::read_volatile(core::ptr::from_ref(&slot.addrlen).cast::<u32>()) };
    if len > SOCKADDR_MAX as u32 {
        slot.addr_flags = addr_flags::BAD_LENGTH;
    } else if len > 0 {
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

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let filter = FILTER_TGID.load();
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return 0;
    }
    let _ = emit_record(&ctx, pid_tgid);
    0
}

fn emit_record(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i64> {
    let Some(in_flight) = IN_FLIGHT.get_ptr(&pid_tgid) else {
        count(counter::EXIT_WITHOUT_ENTRY);
        return Ok(());
    };
    let in_flight = unsafe { &*in_flight };
    let ret: i64 = field::<i64, { layout::EXIT_RET }>(ctx, &EXIT_RET_OFFSET)?;
    if ret == 0 && FAILURES_ONLY.load() != 0 {
        let _ = IN_FLIGHT.remove(&pid_tgid);
        return Ok(());
    }
    count(counter::ATTEMPTS);
    count_call(in_flight, ret);
    let Some(mut entry) = EVENTS.reserve::<ConnectRecord>(0) else {
        count(counter::RINGBUF_FULL);
        let _ = IN_FLIGHT.remove(&pid_tgid);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    let uid_gid = bpf_get_current_uid_gid();
    let now = unsafe { bpf_ktime_get_ns() };
    unsafe {
        (*record).kind = record_kind::CONNECT;
        (*record).tgid = (pid_tgid >> 32) as u32;
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
        (*record).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*record).addr = in_flight.addr;
    }
    let _ = IN_FLIGHT.remove(&pid_tgid);
    entry.submit(u64::from(wakeup_flags()));
    Ok(())
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn sock_state(ctx: TracePointContext) -> u32 {
    let _ = follow_handshake(&ctx);
    0
}

fn follow_handshake(ctx: &TracePointContext) -> Result<(), i64> {
    let protocol: u16 = field::<u16, { layout::STATE_PROTOCOL }>(ctx, &STATE_PROTOCOL_OFFSET)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let sock: u64 = field::<u64, { layout::STATE_SKADDR }>(ctx, &STATE_SKADDR_OFFSET)?;
    let old: i32 = field::<i32, { layout::STATE_OLD }>(ctx, &STATE_OLD_OFFSET)?;
    let new: i32 = field::<i32, { layout::STATE_NEW }>(ctx, &STATE_NEW_OFFSET)?;
    on_state_change(sock, old as u32, new as u32);
    Ok(())
}

/// The same hook as a raw tracepoint, which the loader prefers: the kernel
/// then passes `(sk, oldstate, newstate)` as they are instead of building
/// the tracepoint's record (addresses, ports) on every TCP state change on
/// the host. There is no protocol field to check; only TCP (and MPTCP,
/// which is TCP underneath) ever moves a socket from CLOSE to SYN_SENT,
/// and only such sockets are followed.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn sock_state_raw(ctx: RawTracePointContext) -> i32 {
    let sock: u64 = ctx.arg(0);
    let old: u64 = ctx.arg(1);
    let new: u64 = ctx.arg(2);
    on_state_change(sock, old as u32, new as u32);
    0
}

/// Follows one TCP state change of socket `sock`.
fn on_state_change(sock: u64, old: u32, new: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();

    if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        // Only handshakes started by a traced connect() call have an
        // in-flight entry in this thread.
        let Some(in_flight) = IN_FLIGHT.get_ptr_mut(&pid_tgid) else {
            return;
        };
        let in_flight = unsafe { &mut *in_flight };
        let syn_ns = unsafe { bpf_ktime_get_ns() };
        in_flight.handshake.sock = sock;
        in_flight.handshake.syn_ns = syn_ns;
        let pending = PendingHandshake {
            syn_ns,
            pid_tgid,
            family_slot: family_slot_of(in_flight),
            reserved: 0,
        };
        if PENDING.insert(&sock, &pending, u64::from(BPF_ANY)).is_err() {
            in_flight.flags |= connect_flags::UNTRACKED;
            count(counter::PENDING_FULL);
        }
        return;
    }
    if new != tcp_state::ESTABLISHED && new != tcp_state::CLOSE {
        return;
    }
    let Some(pending) = (unsafe { PENDING.get(&sock) }) else {
        return;
    };
    let pending = *pending;
    let _ = PENDING.remove(&sock);
    let outcome = Handshake {
        sock,
        syn_ns: pending.syn_ns,
        outcome_ns: unsafe { bpf_ktime_get_ns() },
        outcome_state: new,
        outcome_err: if new == tcp_state::CLOSE {
            socket_error(sock)
        } else {
            0
        },
    };
    // Still inside the connect() that started it (loopback, or a blocking
    // call woken in its own context): the exit program reports it.
    if pid_tgid == pending.pid_tgid
        && let Some(in_flight) = IN_FLIGHT.get_ptr_mut(&pid_tgid)
    {
        let in_flight = unsafe { &mut *in_flight };
        if in_flight.handshake.sock == sock {
            in_flight.handshake = outcome;
            return;
        }
    }
    count_outcome(pending.family_slot, handshake_code(&outcome, 0));
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
    entry.submit(u64::from(wakeup_flags()));
}

/// `sk->sk_err`: the kernel sets it before moving a failed handshake to
/// CLOSE; it is 0 when the application closed the socket itself.
fn socket_error(sock: u64) -> i32 {
    let offset = SK_ERR_OFFSET.load();
    if offset == SK_ERR_UNKNOWN {
        return OUTCOME_ERR_UNKNOWN;
    }
    let field = (sock + u64::from(offset)) as *const i32;
    unsafe { bpf_probe_read_kernel(field) }.unwrap_or(OUTCOME_ERR_UNKNOWN)
}

/// A wakeup per record costs far more than the record itself (an IPI and a
/// context switch), so records normally go in silently and the daemon
/// polls. Once enough is queued to matter, wake it so the buffer cannot
/// fill while it sleeps.
fn wakeup_flags() -> u32 {
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKEUP_BYTES.load() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
