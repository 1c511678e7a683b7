//! DNS capture: a cgroup `skb` ingress program, attached at the cgroup v2
//! root, that sees every packet as it is delivered to a socket on the host
//! and passes DNS responses (UDP and TCP from source port 53, and from
//! 5353 when multicast DNS is asked for) to the daemon in `DNS_EVENTS`,
//! with the receiving socket's network namespace.
//!
//! Every other packet pays for the early check only: a few loads from the
//! packet's linear head and two compares, no helper call and no map access.
//! Interpreting the payload is left to the daemon: it is hostile input.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, generated},
    macros::{cgroup_skb, map},
    maps::{PerCpuArray, RingBuf},
    programs::SkBuffContext,
};
use connect_trace_common::dns::{
    DNS_PORT, DnsRecord, PAYLOAD_MAX, SOCK_HEAD, counter, flags, protocol,
};

use crate::config::config;

/// Sized by the loader (`run --no-dns` leaves it at this one page, so that
/// the unused map costs next to nothing).
#[map]
static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map]
static DNS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const TCP_HEADER: usize = 20;
/// The DNS header's third byte holds the QR bit (set in responses).
const DNS_FLAGS_BYTE: usize = 2;
const DNS_QR: u8 = 0x80;

// The length mask in `capture` needs a power of two.
const _: () = assert!(PAYLOAD_MAX.is_power_of_two());

#[inline(always)]
fn count(slot: u32) {
    if let Some(value) = DNS_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, and cgroup skb programs do not nest on one
        // CPU, so a plain add cannot race.
        unsafe { *value += 1 };
    }
}

/// Always lets the packet through (returns 1): the program only watches.
#[cgroup_skb]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    // The benchmark's floor (`run --empty-programs`): every packet passes
    // untouched.
    if crate::config::empty() {
        return 1;
    }
    // SAFETY: `ctx` is the program's context, a `__sk_buff` the verifier
    // rewrites loads from.
    unsafe { watch(ctx.as_ptr().cast::<__sk_buff>()) };
    1
}

/// Where a DNS packet's transport header and payload are.
struct Found {
    ip_version: u8,
    protocol: u8,
    /// Offset of the transport header from the network header.
    l4: usize,
}

/// The early check, on every packet: is it UDP or TCP from a DNS port?
/// cgroup skb programs see the packet from its network header, and the
/// IP and transport headers are in the linear part by the time a socket
/// receives it, so direct packet access suffices.
///
/// # Safety
/// `skb` must be the program's context.
#[inline(always)]
unsafe fn watch(skb: *mut __sk_buff) {
    // SAFETY: context loads, rewritten by the verifier.
    let (data, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if data + IPV4_HEADER > end {
        return;
    }
    // SAFETY: bounds checked against data_end just above (and below for
    // every later load), as the verifier insists.
    let first = unsafe { *(data as *const u8) };
    let (ip_version, l4, proto) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < IPV4_HEADER {
                return;
            }
            // SAFETY: byte 9 of the 20 checked above.
            (4, ihl, unsafe { *((data + 9) as *const u8) })
        }
        6 => {
            if data + IPV6_HEADER > end {
                return;
            }
            // Extension headers before UDP or TCP are not followed.
            // SAFETY: byte 6 of the 40 checked just above.
            (6, IPV6_HEADER, unsafe { *((data + 6) as *const u8) })
        }
        _ => return,
    };
    if proto != protocol::UDP && proto != protocol::TCP {
        return;
    }
    // Both ports: the capture needs the destination port too.
    if data + l4 + 4 > end {
        return;
    }
    // SAFETY: within the 4 bytes checked just above.
    let sport = u16::from_be(unsafe { core::ptr::read_unaligned((data + l4) as *const u16) });
    if sport != DNS_PORT && u32::from(sport) != config!(dns_extra_port) {
        return;
    }
    let found = Found {
        ip_version,
        protocol: proto,
        l4,
    };
    // SAFETY: as above.
    unsafe { capture(skb, data, end, &found) };
}

/// The rare path: copy a DNS packet into the ring buffer.
///
/// # Safety
/// `skb` must be the program's context, `data..end` its packet bounds.
#[inline(always)]
unsafe fn capture(skb: *mut __sk_buff, data: usize, end: usize, found: &Found) {
    let l4 = found.l4;
    let (payload_off, tcp_seq) = if found.protocol == protocol::UDP {
        (l4 + UDP_HEADER, 0)
    } else {
        if data + l4 + TCP_HEADER > end {
            count(counter::UNREADABLE);
            return;
        }
        // SAFETY: within the bounds checked just above.
        let (seq, doff) = unsafe {
            (
                u32::from_be(core::ptr::read_unaligned((data + l4 + 4) as *const u32)),
                usize::from(*((data + l4 + 12) as *const u8) >> 4) * 4,
            )
        };
        (l4 + doff, seq)
    };
    // SAFETY: a context load.
    let len = unsafe { (*skb).len } as usize;
    if payload_off >= len {
        // A TCP segment without payload (handshake, ACK, FIN).
        return;
    }
    let payload_len = len - payload_off;
    count(counter::SEEN);
    let Some(mut entry) = DNS_EVENTS.reserve::<DnsRecord>(0) else {
        count(counter::RINGBUF_FULL);
        return;
    };
    let record = entry.as_mut_ptr();
    let copy = if payload_len > PAYLOAD_MAX {
        count(counter::CUT);
        PAYLOAD_MAX
    } else {
        payload_len
    };
    // The helper needs a length the verifier knows is within 1..=PAYLOAD_MAX.
    // The length goes through memory with a volatile load, so that LLVM
    // cannot see its range and fold the mask below away, and the mask then
    // proves the range in a form every verifier follows (5.10's cannot
    // use a `!= 0` check as a lower bound). For 1..=PAYLOAD_MAX, which
    // `copy` always is, the mask changes nothing.
    // SAFETY: `record` points at reserved ring buffer memory.
    unsafe { (*record).copied = copy as u32 };
    // SAFETY: the field just written, in reserved ring buffer memory.
    let copy = unsafe { core::ptr::read_volatile(core::ptr::from_ref(&(*record).copied)) };
    let copy = (copy.wrapping_sub(1) & (PAYLOAD_MAX as u32 - 1)) + 1;
    // SAFETY: the helper writes at most `copy` (≤ PAYLOAD_MAX) bytes into
    // the record's payload array.
    let loaded = unsafe {
        generated::bpf_skb_load_bytes(
            skb.cast(),
            payload_off as u32,
            (*record).payload.as_mut_ptr().cast(),
            copy,
        )
    };
    if loaded != 0 {
        count(counter::UNREADABLE);
        entry.discard(0);
        return;
    }
    if found.protocol == protocol::UDP
        && (copy as usize <= DNS_FLAGS_BYTE
            // SAFETY: `copy` ≥ 1 bytes were just written, and
            // DNS_FLAGS_BYTE is checked against it.
            || unsafe { (*record).payload[DNS_FLAGS_BYTE] } & DNS_QR == 0)
    {
        count(counter::NOT_RESPONSE);
        entry.discard(0);
        return;
    }
    let netns = netns_of(skb);
    // SAFETY: `record` points at reserved ring buffer memory; every header
    // field is written (the memory is not zeroed).
    unsafe {
        (*record).kind = connect_trace_common::dns::RECORD_KIND;
        (*record).netns = netns.unwrap_or(0);
        (*record).ktime_ns = bpf_ktime_get_ns();
        (*record).ip_version = found.ip_version;
        (*record).protocol = found.protocol;
        (*record).flags = if netns.is_some() {
            0
        } else {
            flags::NETNS_UNKNOWN
        };
        (*record).reserved = 0;
        (*record).sport = u16::from_be(core::ptr::read_unaligned((data + l4) as *const u16));
        (*record).dport = u16::from_be(core::ptr::read_unaligned((data + l4 + 2) as *const u16));
        (*record).tcp_seq = tcp_seq;
        (*record).payload_len = payload_len as u32;
        (*record).reserved2 = 0;
        (*record).saddr = [0; 16];
        (*record).daddr = [0; 16];
        if found.ip_version == 4 {
            core::ptr::copy_nonoverlapping(
                (data + 12) as *const u8,
                (*record).saddr.as_mut_ptr(),
                4,
            );
            core::ptr::copy_nonoverlapping(
                (data + 16) as *const u8,
                (*record).daddr.as_mut_ptr(),
                4,
            );
        } else if data + IPV6_HEADER <= end {
            core::ptr::copy_nonoverlapping(
                (data + 8) as *const u8,
                (*record).saddr.as_mut_ptr(),
                16,
            );
            core::ptr::copy_nonoverlapping(
                (data + 24) as *const u8,
                (*record).daddr.as_mut_ptr(),
                16,
            );
        }
    }
    entry.submit(u64::from(wakeup_flags()));
}

/// The receiving socket's network namespace: `sk->__sk_common.skc_net` then
/// `net->ns.inum`, at offsets the loader read from kernel BTF. The verifier
/// forbids adding an offset to a socket pointer, so the head of the socket
/// is read whole and the `struct net *` picked out of it.
#[inline(always)]
fn netns_of(skb: *mut __sk_buff) -> Option<u32> {
    let net_offset = config!(kernel.sock_net);
    let inum_offset = config!(kernel.net_inum);
    // The loader leaves `sock_net` unknown unless it is usable; the bounds
    // are checked again here because the verifier needs them.
    let net_offset = net_offset as usize;
    if net_offset + 8 > SOCK_HEAD
        || !net_offset.is_multiple_of(8)
        || inum_offset == connect_trace_common::config::OFFSET_UNKNOWN
    {
        return None;
    }
    // SAFETY: a context load.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let mut head = [0u64; SOCK_HEAD / 8];
    // SAFETY: the helper writes at most size_of_val(head) bytes into it and
    // reads kernel memory safely (a fault returns an error).
    let read = unsafe {
        generated::bpf_probe_read_kernel(
            head.as_mut_ptr().cast(),
            core::mem::size_of_val(&head) as u32,
            sk.cast_const().cast(),
        )
    };
    if read != 0 {
        return None;
    }
    let net = *head.get(net_offset / 8)?;
    if net == 0 {
        return None;
    }
    let mut inum = 0u32;
    // SAFETY: as above; `net` is only a number to the helper.
    let read = unsafe {
        generated::bpf_probe_read_kernel(
            core::ptr::from_mut(&mut inum).cast(),
            4,
            (net + u64::from(inum_offset)) as *const core::ffi::c_void,
        )
    };
    (read == 0 && inum != 0).then_some(inum)
}

/// As for connect records: wake the daemon only once enough is queued.
fn wakeup_flags() -> u32 {
    if DNS_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= config!(dns_wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
