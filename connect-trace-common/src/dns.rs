//! The binary interface of the DNS capture: the cgroup `skb` ingress program
//! passes DNS responses that reach a socket on this host to the daemon,
//! through a ring buffer of their own, as [`DnsRecord`]s. Its settings are
//! in the one [`crate::config::Config`] (`dns_extra_port`,
//! `dns_wakeup_bytes`, and the BTF offsets `kernel.sock_net` and
//! `kernel.net_inum`).
//!
//! The kernel side only finds DNS responses and copies them; every byte of
//! the payload is interpreted (as hostile input) by the daemon.

/// Names of the DNS capture's maps in the eBPF object.
pub mod map {
    /// The ring buffer that carries [`super::DnsRecord`]s.
    pub const DNS_EVENTS: &str = "DNS_EVENTS";
    /// Per-CPU `u64` counters, indexed by [`super::counter`].
    pub const DNS_COUNTERS: &str = "DNS_COUNTERS";
}

/// The name of the program (`cgroup_skb`, attached for ingress).
pub const PROGRAM: &str = "dns_ingress";

/// The standard DNS port: responses come from it.
pub const DNS_PORT: u16 = 53;

/// Multicast DNS (RFC 6762): answers come from this port too.
pub const MDNS_PORT: u16 = 5353;

/// How many bytes of `struct sock` the program reads to find `skc_net`
/// (byte 48 on every kernel since 4.x). The verifier forbids adding an
/// offset to a socket pointer, so the program reads the head of the struct
/// and picks the field out; `struct sock_common` alone is longer than this.
pub const SOCK_HEAD: usize = 64;

/// How many payload bytes a record carries at most. UDP answers larger than
/// this (beyond the 1232 bytes that EDNS clients usually accept) and long
/// TCP segments are cut here; the daemon still reads the records that fit.
pub const PAYLOAD_MAX: usize = 2048;

/// The kind of a [`DnsRecord`] (distinct from the connect records' kinds).
pub const RECORD_KIND: u32 = 0x444e_5301;

/// IP protocol numbers in [`DnsRecord::protocol`].
pub mod protocol {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Bits of [`DnsRecord::flags`].
pub mod flags {
    /// The network namespace could not be read: [`super::DnsRecord::netns`]
    /// is 0.
    pub const NETNS_UNKNOWN: u8 = 1 << 0;
}

/// Slots of the per-CPU `DNS_COUNTERS` map.
pub mod counter {
    /// DNS packets seen (UDP responses, TCP segments with payload).
    pub const SEEN: u32 = 0;
    /// Records dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 1;
    /// Packets from a DNS port whose payload could not be copied.
    pub const UNREADABLE: u32 = 2;
    /// UDP packets from a DNS port that were not responses (QR bit clear).
    pub const NOT_RESPONSE: u32 = 3;
    /// Records whose payload was cut at [`super::PAYLOAD_MAX`].
    pub const CUT: u32 = 4;
    /// Number of slots.
    pub const COUNT: u32 = 5;
}

/// One DNS response (UDP) or TCP segment from a DNS port, as it reached a
/// socket.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsRecord {
    /// [`RECORD_KIND`].
    pub kind: u32,
    /// The receiving socket's network namespace (`net->ns.inum`, the inode
    /// of `/proc/PID/ns/net`); 0 when unknown.
    pub netns: u32,
    /// `bpf_ktime_get_ns()` when the packet reached the socket.
    pub ktime_ns: u64,
    /// 4 or 6.
    pub ip_version: u8,
    /// [`protocol::UDP`] or [`protocol::TCP`].
    pub protocol: u8,
    /// [`flags`].
    pub flags: u8,
    /// Zero.
    pub reserved: u8,
    /// Source port (the server's), host byte order.
    pub sport: u16,
    /// Destination port (the client's), host byte order.
    pub dport: u16,
    /// TCP sequence number of the first payload byte (host byte order); 0
    /// for UDP.
    pub tcp_seq: u32,
    /// Payload bytes in the packet (DNS message, or TCP segment payload).
    pub payload_len: u32,
    /// Of those, how many are in [`DnsRecord::payload`].
    pub copied: u32,
    /// Zero.
    pub reserved2: u32,
    /// Source address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Destination address (IPv4 in the first 4 bytes).
    pub daddr: [u8; 16],
    /// The first [`DnsRecord::copied`] payload bytes.
    pub payload: [u8; PAYLOAD_MAX],
}

/// Bytes before the payload in a [`DnsRecord`].
pub const HEADER_LEN: usize = 72;

const _: () = assert!(core::mem::size_of::<DnsRecord>() == HEADER_LEN + PAYLOAD_MAX);
const _: () = assert!(core::mem::offset_of!(DnsRecord, payload) == HEADER_LEN);
