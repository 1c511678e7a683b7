//! connect-trace kernel programs.
//!
//! - [`syscall`]: `enter_connect` saves each connect() call's arguments
//!   (copying the socket address out of user memory while it is still what
//!   the caller passed) per thread; `exit_connect` joins them with the
//!   return value, decides whether the call is a repeat, counts it, and
//!   sends one `ConnectRecord` to the daemon.
//! - [`handshake`]: follows TCP handshakes. CLOSE→SYN_SENT fires in the
//!   connecting thread inside connect(), so the call learns its socket
//!   there and the socket goes into `PENDING`. The outcome (→ESTABLISHED or
//!   →CLOSE) often fires in softirq or timer context where the current task
//!   is unrelated, so it is matched by socket. If the connecting thread is
//!   still inside the call, the outcome rides in its `ConnectRecord`;
//!   otherwise an `OutcomeRecord` carries it.
//! - [`io_uring`]: io_uring connect requests, saved at submission and
//!   reported at completion, their handshakes found through their sockets.
//! - [`without_call`]: a TCP handshake that starts without any call the
//!   programs saw (a kernel socket, a 32-bit program, TCP Fast Open) is
//!   reported from the handshake itself, so every one is counted.
//! - [`call`]: what every kind of call shares once it returns: repeat
//!   decision, counting, the record.
//! - [`recent`]: the latest TCP attempt per (process, descriptor), which
//!   tells a status check from a new attempt.
//! - [`task`] and [`sock`]: what is read from the current task and from a
//!   socket, at BTF offsets.
//! - [`dns`]: a cgroup skb ingress program, attached at the cgroup v2 root
//!   when DNS names are on, that passes DNS responses reaching any socket
//!   on the host to the daemon in a ring buffer of its own.
//! - [`maps`] and [`config`]: the maps, counters and the loader's settings;
//!   [`words`]: copies a word at a time, where LLVM would loop on bytes.
//!
//! What an outcome is, and what is a repeat, is decided by
//! `connect_trace_common::outcome`, the same code the daemon runs. No
//! kernel struct layout is compiled in: tracepoint field offsets come from
//! tracefs and struct member offsets from BTF, both read by the loader.
#![no_std]
#![no_main]

mod call;
mod config;
mod dns;
mod handshake;
mod io_uring;
mod maps;
mod recent;
mod sock;
mod syscall;
mod task;
mod without_call;
mod words;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The programs use GPL-only helpers (`bpf_probe_read_user` and kin).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
