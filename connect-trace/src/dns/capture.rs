//! Turning what the DNS program sends into cache entries: each record from
//! its ring buffer ([`DnsPacket`]) is read as a DNS response (hostile
//! input), TCP segments are joined into messages, and every (name,
//! address) the answer gives is filed in the [`NameCache`].
//!
//! Loading and attaching the program is the kernel module's job
//! (`crate::kernel::dns`); this takes the ring buffer it hands over.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
};

use aya::maps::{MapData, RingBuf};
use connect_trace_common::dns::{
    DnsRecord, HEADER_LEN, MDNS_PORT, PAYLOAD_MAX, RECORD_KIND, flags, protocol,
};

use super::{
    cache::NameCache,
    message::{Transport, parse_response},
    tcp::{Flow, StreamCounters, TcpStreams},
};

/// Counts kept by the daemon's side, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCaptureCounters {
    /// Records taken from the ring buffer.
    pub records: u64,
    /// Records that did not decode (an ABI mismatch; never expected).
    pub undecodable: u64,
    /// DNS responses read (UDP datagrams, whole or partial TCP messages).
    pub responses: u64,
    /// Payloads that were not a usable DNS response (malformed, a query,
    /// no question): hostile or foreign traffic from a DNS port.
    pub malformed: u64,
    /// Responses of which only a part could be read (cut or malformed
    /// after some records); the addresses before that point were kept.
    pub incomplete: u64,
    /// (name, address) pairs learned.
    pub addresses: u64,
    /// Responses whose network namespace was not known (filed under 0).
    pub netns_unknown: u64,
}

/// Reads the DNS program's ring buffer into a [`NameCache`].
///
/// It implements [`AsRawFd`] (the ring buffer's descriptor), so that the
/// daemon can wait on it in a `tokio::io::unix::AsyncFd` and wake when the
/// kernel signals a filling buffer.
pub struct DnsCapture {
    ring: RingBuf<MapData>,
    streams: TcpStreams,
    multicast: bool,
    counters: DnsCaptureCounters,
}

impl DnsCapture {
    /// Reads `ring`, whose records include multicast DNS answers when
    /// `multicast`.
    pub fn new(ring: RingBuf<MapData>, multicast: bool) -> Self {
        Self {
            ring,
            streams: TcpStreams::new(),
            multicast,
            counters: DnsCaptureCounters::default(),
        }
    }

    /// Reads every waiting DNS record and files the answers in `cache`;
    /// returns how many records there were.
    ///
    /// Every answer a program received before a moment is in the ring
    /// buffer by then (the kernel program runs before the packet reaches
    /// the socket), so a call that began before this drain started finds
    /// its answer in `cache` after it.
    pub fn drain(&mut self, cache: &mut NameCache) -> usize {
        let mut records = 0;
        while let Some(item) = self.ring.next() {
            records += 1;
            self.counters.records += 1;
            match DnsPacket::decode(&item) {
                Some(packet) => {
                    handle_packet(
                        &packet,
                        self.multicast,
                        &mut self.streams,
                        &mut self.counters,
                        cache,
                    );
                }
                None => self.counters.undecodable += 1,
            }
        }
        records
    }

    /// What the daemon's side counted so far.
    pub fn counters(&self) -> DnsCaptureCounters {
        self.counters
    }

    /// What DNS-over-TCP reassembly counted so far.
    pub fn stream_counters(&self) -> StreamCounters {
        self.streams.counters()
    }
}

impl AsRawFd for DnsCapture {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// A [`DnsRecord`] read from the ring buffer, payload borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsPacket<'a> {
    /// Network namespace inode (0 when unknown).
    pub netns: u32,
    /// Whether the kernel could not read the namespace.
    pub netns_unknown: bool,
    /// Kernel monotonic time of arrival, ns.
    pub ktime_ns: u64,
    /// UDP or TCP.
    pub protocol: u8,
    /// Server address.
    pub saddr: IpAddr,
    /// Client address.
    pub daddr: IpAddr,
    /// Server port.
    pub sport: u16,
    /// Client port.
    pub dport: u16,
    /// TCP sequence number of the payload's first byte.
    pub tcp_seq: u32,
    /// Payload bytes in the packet.
    pub payload_len: u32,
    /// The copied payload (all of it, unless cut).
    pub payload: &'a [u8],
}

impl<'a> DnsPacket<'a> {
    /// Decodes a record; `None` when it is not a whole [`DnsRecord`] of
    /// this build (wrong kind, size, or an inconsistent length).
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        use std::mem::offset_of;
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let u16_at = |at: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
        };
        let byte_at = |at: usize| bytes.get(at).copied();
        let addr_at = |at: usize, version: u8| -> Option<IpAddr> {
            let raw: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
            match version {
                4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
                6 => Some(IpAddr::V6(Ipv6Addr::from(raw))),
                _ => None,
            }
        };
        if u32_at(offset_of!(DnsRecord, kind))? != RECORD_KIND {
            return None;
        }
        let version = byte_at(offset_of!(DnsRecord, ip_version))?;
        let protocol = byte_at(offset_of!(DnsRecord, protocol))?;
        if protocol != protocol::UDP && protocol != protocol::TCP {
            return None;
        }
        let copied = u32_at(offset_of!(DnsRecord, copied))? as usize;
        let payload_len = u32_at(offset_of!(DnsRecord, payload_len))?;
        if copied > PAYLOAD_MAX || copied > payload_len as usize {
            return None;
        }
        let ktime =
            bytes.get(offset_of!(DnsRecord, ktime_ns)..offset_of!(DnsRecord, ktime_ns) + 8)?;
        Some(Self {
            netns: u32_at(offset_of!(DnsRecord, netns))?,
            netns_unknown: byte_at(offset_of!(DnsRecord, flags))? & flags::NETNS_UNKNOWN != 0,
            ktime_ns: u64::from_ne_bytes(ktime.try_into().ok()?),
            protocol,
            saddr: addr_at(offset_of!(DnsRecord, saddr), version)?,
            daddr: addr_at(offset_of!(DnsRecord, daddr), version)?,
            sport: u16_at(offset_of!(DnsRecord, sport))?,
            dport: u16_at(offset_of!(DnsRecord, dport))?,
            tcp_seq: u32_at(offset_of!(DnsRecord, tcp_seq))?,
            payload_len,
            payload: bytes.get(HEADER_LEN..HEADER_LEN + copied)?,
        })
    }
}

/// Reads one captured packet and files its answers.
pub fn handle_packet(
    packet: &DnsPacket<'_>,
    multicast: bool,
    streams: &mut TcpStreams,
    counters: &mut DnsCaptureCounters,
    cache: &mut NameCache,
) {
    let transport = if multicast && packet.sport == MDNS_PORT {
        Transport::Multicast
    } else {
        Transport::Unicast
    };
    if packet.netns_unknown {
        counters.netns_unknown += 1;
    }
    let whole = packet.payload.len() == packet.payload_len as usize;
    let mut on_message = |message: &[u8], complete: bool| {
        counters.responses += 1;
        match parse_response(message, transport) {
            Ok(answer) => {
                if answer.incomplete || !complete {
                    counters.incomplete += 1;
                }
                for named in answer.addresses {
                    counters.addresses += 1;
                    cache.insert(
                        packet.netns,
                        named.addr,
                        named.name,
                        packet.ktime_ns,
                        named.ttl,
                    );
                }
            }
            Err(_) => counters.malformed += 1,
        }
    };
    if packet.protocol == protocol::TCP {
        let flow = Flow {
            netns: packet.netns,
            saddr: packet.saddr,
            sport: packet.sport,
            daddr: packet.daddr,
            dport: packet.dport,
        };
        streams.segment(flow, packet.tcp_seq, packet.payload, whole, on_message);
    } else {
        on_message(packet.payload, whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_foreign_records_do_not_decode() {
        assert!(DnsPacket::decode(&[0; 10]).is_none());
        let record = vec![0u8; HEADER_LEN + 4];
        assert!(DnsPacket::decode(&record).is_none());
    }

    /// A record as the kernel program writes it: a UDP response from
    /// 127.0.0.53:53 in namespace 7 carrying `payload`.
    fn record(payload: &[u8], payload_len: u32) -> Vec<u8> {
        use std::mem::offset_of;
        let mut bytes = vec![0u8; HEADER_LEN + payload.len()];
        let mut put = |at: usize, value: &[u8]| bytes[at..at + value.len()].copy_from_slice(value);
        put(offset_of!(DnsRecord, kind), &RECORD_KIND.to_ne_bytes());
        put(offset_of!(DnsRecord, netns), &7u32.to_ne_bytes());
        put(
            offset_of!(DnsRecord, ktime_ns),
            &5_000_000_000u64.to_ne_bytes(),
        );
        put(offset_of!(DnsRecord, ip_version), &[4, protocol::UDP]);
        put(offset_of!(DnsRecord, sport), &53u16.to_ne_bytes());
        put(offset_of!(DnsRecord, dport), &40000u16.to_ne_bytes());
        put(
            offset_of!(DnsRecord, payload_len),
            &payload_len.to_ne_bytes(),
        );
        put(
            offset_of!(DnsRecord, copied),
            &(payload.len() as u32).to_ne_bytes(),
        );
        put(offset_of!(DnsRecord, saddr), &[127, 0, 0, 53]);
        put(offset_of!(DnsRecord, daddr), &[127, 0, 0, 1]);
        put(HEADER_LEN, payload);
        bytes
    }

    /// `svc.test A 10.0.0.9`, TTL 60.
    const ANSWER: &[u8] = b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\
        \x03svc\x04test\x00\x00\x01\x00\x01\
        \xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x09";

    #[test]
    fn a_record_becomes_a_cache_entry() {
        let bytes = record(ANSWER, ANSWER.len() as u32);
        let packet = DnsPacket::decode(&bytes).unwrap();
        assert_eq!(packet.netns, 7);
        assert_eq!(packet.saddr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)));
        assert_eq!((packet.sport, packet.dport), (53, 40000));
        let mut cache = NameCache::new(super::super::CacheConfig::default());
        let mut counters = DnsCaptureCounters::default();
        handle_packet(
            &packet,
            false,
            &mut TcpStreams::new(),
            &mut counters,
            &mut cache,
        );
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(
            cache.lookup(7, addr, 6_000_000_000).unwrap().as_str(),
            "svc.test"
        );
        assert_eq!(cache.lookup(8, addr, 6_000_000_000), None);
        assert_eq!((counters.responses, counters.addresses), (1, 1));
    }

    #[test]
    fn a_copied_length_beyond_the_packet_does_not_decode() {
        let bytes = record(ANSWER, 3);
        assert!(DnsPacket::decode(&bytes).is_none());
    }
}
