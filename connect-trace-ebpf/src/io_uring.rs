//! io_uring connect requests (`IORING_OP_CONNECT`), which never pass
//! through the connect() syscall: submission saves the request like
//! `enter_connect` saves a call, completion reports it like
//! `exit_connect`, with the request's result as the return value.
//!
//! A request is found again at completion by its address, which both
//! tracepoints give since Linux 6.0 (the loader attaches these programs
//! only then). Its handshake may
//! start in the submitting thread or in an io-wq worker; it finds its
//! request through the socket, looked up from the request's descriptor at
//! submission, or, for registered files, through the submitting thread.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use connect_trace_common::{
    abi::{Handshake, IoUringCall, addr_flags, via},
    config::OFFSET_UNKNOWN,
    names::counter,
};

use crate::{
    call,
    config::config,
    maps::{
        IO_URING_CALLS, IO_URING_SCRATCH, IO_URING_SOCKETS, IO_URING_THREADS, IO_URING_UNTIED,
        count,
    },
    task::{self, read, traced},
};

/// `IORING_OP_CONNECT`.
const IORING_OP_CONNECT: u8 = 16;
/// `REQ_F_FIXED_FILE`: the request's descriptor indexes the ring's
/// registered files, not the process's descriptor table.
const REQ_F_FIXED_FILE: u8 = 1;

/// Attached to `io_uring/io_uring_submit_req` (`io_uring_submit_sqe` on
/// older kernels, such as 6.1).
#[tracepoint(category = "io_uring", name = "io_uring_submit_req")]
pub fn io_uring_submit(ctx: TracePointContext) -> u32 {
    if crate::config::empty() {
        return 0;
    }
    let _ = on_submit(&ctx);
    0
}

/// Attached to `io_uring/io_uring_complete`.
#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if crate::config::empty() {
        return 0;
    }
    let _ = on_complete(&ctx);
    0
}

/// The request under way on `sock`, if an io_uring request is connecting
/// it: found by the socket, or by the current thread for a registered
/// file.
#[inline(always)]
pub fn call_of(sock: u64) -> Option<(*mut IoUringCall, u64)> {
    // SAFETY: the value is copied out.
    let request = match unsafe { IO_URING_SOCKETS.get(&sock) } {
        Some(&request) => {
            let _ = IO_URING_SOCKETS.remove(&sock);
            request
        }
        None => {
            let pid_tgid = bpf_get_current_pid_tgid();
            // SAFETY: the value is copied out.
            let request = *unsafe { IO_URING_THREADS.get(&pid_tgid) }?;
            let _ = IO_URING_THREADS.remove(&pid_tgid);
            request
        }
    };
    Some((IO_URING_CALLS.get_ptr_mut(&request)?, request))
}

/// The call of request `request`, if it has not completed.
#[inline(always)]
pub fn call(request: u64) -> Option<*mut connect_trace_common::abi::InFlight> {
    let entry = IO_URING_CALLS.get_ptr_mut(&request)?;
    // SAFETY: a live map entry; only its address is taken.
    Some(unsafe { core::ptr::addr_of_mut!((*entry).call) })
}

/// Reads a tracepoint field at the offset tracefs gave, if it has one.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, offset: u32) -> Result<T, i64> {
    if offset == OFFSET_UNKNOWN {
        return Err(-1);
    }
    // SAFETY: `read_at` goes through bpf_probe_read_kernel, which checks
    // the address; the offset is tracefs's for this field.
    unsafe { ctx.read_at(offset as usize) }.map_err(i64::from)
}

fn on_submit(ctx: &TracePointContext) -> Result<(), i64> {
    let offsets = config!(io_uring);
    let opcode: u8 = field(ctx, offsets.submit_opcode)?;
    if opcode != IORING_OP_CONNECT {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return Ok(());
    }
    let request: u64 = field(ctx, offsets.submit_req)?;
    let key = request;
    let Some(slot) = IO_URING_SCRATCH.get_ptr_mut(0) else {
        return Err(-1);
    };
    // SAFETY: this program's scratch slot on this CPU.
    let entry = unsafe { &mut *slot };
    let kernel = config!(kernel);
    let call = &mut entry.call;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    call.start_ns = unsafe { bpf_ktime_get_ns() };
    call.flags = 0;
    call.via = via::IO_URING;
    // Under way until it completes, when its entry is removed.
    call.caller_tid = pid_tgid as u32;
    call.handshake = Handshake::default();
    // The request was prepared before this tracepoint: its descriptor and
    // address pointer are in place, and the address is still the caller's.
    call.fd = if kernel.io_request_fd == OFFSET_UNKNOWN {
        -1
    } else {
        read::<i32>(request, kernel.io_request_fd).unwrap_or(-1)
    };
    let address = (kernel.io_connect_addr != OFFSET_UNKNOWN
        && kernel.io_connect_addr_len != OFFSET_UNKNOWN)
        .then(|| {
            Some((
                read::<u64>(request, kernel.io_connect_addr)?,
                read::<i32>(request, kernel.io_connect_addr_len)?,
            ))
        })
        .flatten();
    match address {
        Some((uaddr, addrlen)) => {
            call.addrlen = addrlen;
            call::read_address(call, uaddr);
        }
        None => {
            call.addrlen = 0;
            call.addr_flags = addr_flags::NOT_SEEN;
            call.addr[0] = 0;
            call.addr[1] = 0;
        }
    }
    entry.pid_tgid = pid_tgid;
    entry.uid_gid = bpf_get_current_uid_gid();
    // SAFETY: bpf_get_current_cgroup_id has no preconditions.
    entry.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    entry.netns = task::netns();
    entry.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    if IO_URING_CALLS
        .insert(&key, entry, u64::from(BPF_ANY))
        .is_err()
    {
        count(counter::IO_URING_FULL);
        return Ok(());
    }
    // Only the lowest byte of the flags matters (the field is 32 or 64
    // bits wide, little-endian).
    let fixed =
        field::<u8>(ctx, offsets.submit_flags).is_ok_and(|flags| flags & REQ_F_FIXED_FILE != 0);
    let sock = if fixed {
        None
    } else {
        task::socket_of(entry.call.fd)
    };
    match sock {
        Some(sock) => {
            let _ = IO_URING_SOCKETS.insert(&sock, &key, u64::from(BPF_ANY));
        }
        // Issued inline, the request sends its SYN in this thread, next.
        None => {
            let _ = IO_URING_THREADS.insert(&pid_tgid, &key, u64::from(BPF_ANY));
        }
    }
    Ok(())
}

fn on_complete(ctx: &TracePointContext) -> Result<(), i64> {
    let offsets = config!(io_uring);
    let key: u64 = field(ctx, offsets.complete_req)?;
    let Some(entry) = IO_URING_CALLS.get_ptr_mut(&key) else {
        return Ok(());
    };
    // SAFETY: a live entry of a request completing now; its handshake's
    // end may write `call.handshake` from softirq, a whole field at once.
    let entry = unsafe { &mut *entry };
    let result: i32 = field(ctx, offsets.complete_res).unwrap_or(0);
    let pid_tgid = entry.pid_tgid;
    let untied_syn = entry.call.handshake.sock == 0 && reported_by_handshake(key);
    if !untied_syn && !(result == 0 && config!(failures_only) != 0) {
        let _ = call::report(
            &mut entry.call,
            i64::from(result),
            (pid_tgid >> 32) as u32,
            |record| {
                // SAFETY: as in `call::report`, which hands over the
                // reserved record.
                unsafe {
                    (*record).tid = pid_tgid as u32;
                    (*record).uid = entry.uid_gid as u32;
                    (*record).gid = (entry.uid_gid >> 32) as u32;
                    (*record).cgroup_id = entry.cgroup_id;
                    (*record).netns = entry.netns;
                    (*record).comm = entry.comm;
                }
            },
        );
    }
    let _ = IO_URING_CALLS.remove(&key);
    // SAFETY: the value is copied out.
    if unsafe { IO_URING_THREADS.get(&pid_tgid) }.is_some_and(|&request| request == key) {
        let _ = IO_URING_THREADS.remove(&pid_tgid);
    }
    Ok(())
}

/// Whether this request's handshake was already reported without its
/// call: an io-wq worker sent the SYN on a socket the request could not
/// be tied to (a registered file). Its socket is the request's file's, known by now.
#[inline(always)]
fn reported_by_handshake(request: u64) -> bool {
    let kernel = config!(kernel);
    let sock = read::<u64>(request, kernel.io_request_file)
        .and_then(|file| read::<u64>(file, kernel.file_private_data))
        .and_then(|socket| read::<u64>(socket, kernel.socket_sk));
    // SAFETY: the value is only tested for presence.
    sock.is_some_and(|sock| unsafe { IO_URING_UNTIED.get(&sock) }.is_some())
}
