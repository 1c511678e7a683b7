//! What a TCP socket (`struct sock *`) tells, read from kernel memory at
//! the member offsets the loader found in BTF.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use connect_trace_common::{
    abi::{InFlight, OUTCOME_ERR_UNKNOWN, addr_flags, tcp_state},
    config::OFFSET_UNKNOWN,
};

use crate::{config::config, task::read};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `sizeof(struct sockaddr_in)`.
const SOCKADDR_IN_LEN: i32 = 16;
/// `sizeof(struct sockaddr_in6)`.
const SOCKADDR_IN6_LEN: i32 = 28;

/// `sk->sk_err`: the kernel sets it before moving a failed handshake to
/// CLOSE; it is 0 when the application closed the socket itself.
#[inline(always)]
pub fn error(sock: u64) -> i32 {
    let offset = config!(kernel.sock_sk_err);
    if offset == OFFSET_UNKNOWN {
        return OUTCOME_ERR_UNKNOWN;
    }
    let field = (sock + u64::from(offset)) as *const i32;
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(field) }.unwrap_or(OUTCOME_ERR_UNKNOWN)
}

/// How the handshake of `sock`, a socket being freed (always in CLOSE),
/// ended, as `(state, error)` for a `Handshake`: ESTABLISHED if its SYN
/// was ever acknowledged (a SYN in flight is the one byte between
/// `snd_una` and `write_seq`), else CLOSE with `sk_err`, or with an
/// unknown error once the application has read it. `None` when BTF did
/// not locate the sequence numbers; `fast_open` too, as data sent with
/// the SYN also lies between them.
#[inline(always)]
pub fn end_at_close(sock: u64, fast_open: bool) -> Option<(u32, i32)> {
    let offsets = config!(kernel);
    if fast_open || offsets.tcp_snd_una == OFFSET_UNKNOWN || offsets.tcp_write_seq == OFFSET_UNKNOWN
    {
        return None;
    }
    let unacknowledged = read::<u32>(sock, offsets.tcp_write_seq)?
        .wrapping_sub(read::<u32>(sock, offsets.tcp_snd_una)?);
    if unacknowledged != 1 {
        return Some((tcp_state::ESTABLISHED, 0));
    }
    Some(match error(sock) {
        0 => (tcp_state::CLOSE, OUTCOME_ERR_UNKNOWN),
        error => (tcp_state::CLOSE, error),
    })
}

/// Whether the socket is connecting on behalf of sendto()/sendmsg() with
/// `MSG_FASTOPEN` (`tcp_sk(sk)->fastopen_req` is set only then).
#[inline(always)]
pub fn fast_open(sock: u64) -> bool {
    let offset = config!(kernel.tcp_fastopen_req);
    offset != OFFSET_UNKNOWN && read::<u64>(sock, offset).is_some_and(|request| request != 0)
}

/// Writes the socket's destination into `call` as the `sockaddr_in` or
/// `sockaddr_in6` a connect() call would have passed. The kernel sets the
/// destination before the socket enters SYN_SENT, so it is there when a
/// handshake starts. Marks the address unread when it cannot be.
#[inline(always)]
pub fn destination(sock: u64, call: &mut InFlight) {
    let offsets = config!(kernel);
    call.addr = [0; 128];
    if !offsets.can_find_destination() {
        call.addr_flags = addr_flags::NOT_SEEN;
        return;
    }
    let (Some(family), Some(port)) = (
        read::<u16>(sock, offsets.sock_family),
        read::<[u8; 2]>(sock, offsets.sock_dport),
    ) else {
        call.addr_flags = addr_flags::UNREADABLE;
        return;
    };
    call.addr[..2].copy_from_slice(&family.to_ne_bytes());
    // Both keep the port in network order, at the same place.
    call.addr[2..4].copy_from_slice(&port);
    let read_ok = match family {
        AF_INET => {
            call.addrlen = SOCKADDR_IN_LEN;
            read::<[u8; 4]>(sock, offsets.sock_daddr)
                .map(|address| call.addr[4..8].copy_from_slice(&address))
                .is_some()
        }
        AF_INET6 if offsets.sock_v6_daddr != OFFSET_UNKNOWN => {
            call.addrlen = SOCKADDR_IN6_LEN;
            // sin6_flowinfo (4 bytes) comes first, left 0.
            read::<[u8; 16]>(sock, offsets.sock_v6_daddr)
                .map(|address| call.addr[8..24].copy_from_slice(&address))
                .is_some()
        }
        _ => false,
    };
    if !read_ok {
        call.addr_flags = addr_flags::UNREADABLE;
    }
}
