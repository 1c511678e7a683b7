//! TCP handshakes that start without a call the programs saw: kernel
//! sockets (NFS, iSCSI, SMB, MPTCP's extra subflows), 32-bit programs
//! (whose system calls the syscall tracepoints skip), sendto() or sendmsg()
//! with `MSG_FASTOPEN`, io_uring requests on registered files. Each is
//! reported when its SYN goes out, in the task that sends it, with the
//! destination read from the socket, and followed to its end like any
//! other: every TCP handshake on the host is counted.

use aya_ebpf::{bindings::BPF_ANY, helpers::bpf_ktime_get_ns};
use connect_trace_common::{
    abi::{Handshake, PendingHandshake, connect_flags, via},
    names::counter,
    outcome::EINPROGRESS,
};

use crate::{
    call,
    maps::{IO_URING_THREADS, IO_URING_UNTIED, PENDING, SCRATCH, count, scratch},
    sock,
    task::{self, Kind},
};

/// How the handshake on `sock`, started by the current task of `kind`,
/// was made.
#[inline(always)]
fn how(sock: u64, pid_tgid: u64, kind: Kind) -> u32 {
    match kind {
        Kind::Kernel => via::KERNEL,
        Kind::IoUringWorker => via::IO_URING,
        // SAFETY: the value is only tested for presence.
        _ if unsafe { IO_URING_THREADS.get(&pid_tgid) }.is_some() => via::IO_URING,
        _ if sock::fast_open(sock) => via::FASTOPEN,
        Kind::Compat => via::COMPAT,
        _ => via::OTHER,
    }
}

/// Reports the handshake starting on `sock` in the current task, and
/// follows it.
#[inline(always)]
pub fn report_start(sock: u64, pid_tgid: u64) {
    let Some(slot) = SCRATCH.get_ptr_mut(scratch::HANDSHAKE) else {
        return;
    };
    // SAFETY: this program's scratch slot on this CPU, where it never runs
    // twice at once.
    let attempt = unsafe { &mut *slot };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let syn_ns = unsafe { bpf_ktime_get_ns() };
    attempt.start_ns = syn_ns;
    attempt.fd = -1;
    attempt.addrlen = 0;
    attempt.addr_flags = 0;
    attempt.flags = connect_flags::NO_CALL;
    let kind = task::kind();
    attempt.via = how(sock, pid_tgid, kind);
    if attempt.via == via::IO_URING {
        // Its request's completion must not report it again.
        let _ = IO_URING_UNTIED.insert(&sock, &syn_ns, u64::from(BPF_ANY));
    }
    attempt.handshake = Handshake {
        sock,
        syn_ns,
        ..Handshake::default()
    };
    sock::destination(sock, attempt);
    let pending = PendingHandshake {
        syn_ns,
        pid_tgid,
        call: 0,
        family_slot: call::family_slot_of(attempt),
        fd: -1,
        via: attempt.via,
        reserved: 0,
    };
    if PENDING.insert(&sock, &pending, u64::from(BPF_ANY)).is_err() {
        attempt.flags |= connect_flags::UNTRACKED;
        count(counter::PENDING_FULL);
    }
    // Reported as a call still connecting: its handshake's end resolves
    // and counts it, exactly as for a non-blocking connect().
    let _ = call::report(
        attempt,
        -i64::from(EINPROGRESS),
        (pid_tgid >> 32) as u32,
        |record| {
            call::current_caller(record, pid_tgid);
            // An io-wq worker is named after its ring, not the program it
            // works for: name the program.
            if kind == Kind::IoUringWorker
                // SAFETY: as in `call::report`, which hands over the
                // reserved record; its `comm` holds 16 bytes.
                && !unsafe { task::copy_process_comm(&raw mut (*record).comm) }
            {
                // A failed read may have cleared it: the thread's own name.
                call::current_caller(record, pid_tgid);
            }
        },
    );
}
