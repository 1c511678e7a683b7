//! Loading the DNS capture program, attaching it at the cgroup v2 root, and
//! turning what it sends into cache entries.

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError},
};
use connect_trace_common::{
    dns::{
        DnsRecord, HEADER_LEN, MDNS_PORT, OFFSET_UNKNOWN, PAYLOAD_MAX, RECORD_KIND, SOCK_HEAD,
        counter, flags, global, map, protocol,
    },
    names::map as connect_map,
};
use thiserror::Error;

use super::{
    cache::{CacheConfig, NameCache},
    message::{Transport, parse_response},
    tcp::{Flow, StreamCounters, TcpStreams},
};
use crate::kernel::btf::{self, Btf, BtfError};

/// Default size of the DNS ring buffer: about 500 responses between two
/// polls of the daemon.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 1024 * 1024;

const PAGE_SIZE: u32 = 4096;

/// Whether and how DNS answers are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Capture DNS answers to name destinations. When false nothing is
    /// attached and no packet pays anything.
    pub enabled: bool,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Also capture multicast DNS (port 5353), for `.local` names. Off by
    /// default: any host on the link can send multicast DNS answers.
    pub multicast: bool,
    /// How names are kept.
    pub cache: CacheConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            multicast: false,
            cache: CacheConfig::default(),
        }
    }
}

/// Why the DNS capture could not start.
#[derive(Debug, Error)]
pub enum DnsError {
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup v2 hierarchy is mounted (looked in /proc/self/mounts); DNS names need one")]
    NoCgroup2,
    /// The cgroup v2 root could not be opened.
    #[error("opening the cgroup v2 root {path}: {source}")]
    OpenCgroup {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The ring buffer size is not one the kernel accepts.
    #[error("DNS ring buffer size {bytes} must be a power of two and at least {PAGE_SIZE} bytes")]
    RingBufferSize {
        /// The size asked for.
        bytes: u32,
    },
    /// The kernel refused the object.
    #[error("loading the eBPF object for the DNS capture failed: {0}")]
    Load(#[source] EbpfError),
    /// The program could not be loaded or attached.
    #[error("{action} the DNS capture program failed: {source}")]
    Program {
        /// "finding", "loading", "attaching" or "inspecting".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// A map is missing or has the wrong type.
    #[error("DNS capture map {name}: {source}")]
    Map {
        /// The map name.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
    /// A map the object should contain is absent.
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
}

/// Where the network namespace of a socket is, from kernel BTF:
/// `sock.__sk_common.skc_net` and `net.ns.inum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetnsOffsets {
    /// Offset of `skc_net` in `struct sock`.
    pub sock_net: u32,
    /// Offset of `ns.inum` in `struct net`.
    pub net_inum: u32,
}

impl NetnsOffsets {
    /// Reads the offsets from the running kernel's BTF.
    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        Ok(Self {
            sock_net: btf.member_offset("sock", "__sk_common")?
                + btf.member_offset("sock_common", "skc_net")?,
            net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        })
    }

    /// Reads the offsets from `/sys/kernel/btf/vmlinux`.
    pub fn from_kernel() -> Result<Self, BtfError> {
        Self::from_btf(&Btf::from_file(Path::new(btf::VMLINUX))?)
    }
}

/// The values the DNS program's globals get, and its ring buffer size.
/// They must outlive the [`EbpfLoader`] they are applied to.
#[derive(Debug, Clone)]
pub struct DnsGlobals {
    sock_net: u32,
    net_inum: u32,
    wakeup_bytes: u64,
    extra_port: u32,
    ring_buffer_bytes: u32,
    netns_problem: Option<String>,
}

impl DnsGlobals {
    /// The globals for `config`, with the namespace offsets from `offsets`
    /// (when they could not be found, every answer is filed under
    /// namespace 0 and [`DnsGlobals::netns_problem`] says why). Fails when
    /// the ring buffer size is not one the kernel accepts.
    pub fn new(
        config: &DnsConfig,
        offsets: Result<NetnsOffsets, BtfError>,
    ) -> Result<Self, DnsError> {
        let bytes = config.ring_buffer_bytes;
        if config.enabled && (!bytes.is_power_of_two() || bytes < PAGE_SIZE) {
            return Err(DnsError::RingBufferSize { bytes });
        }
        let (sock_net, net_inum, netns_problem) = match offsets {
            // The program reads the socket's head in 8-byte words.
            Ok(offsets)
                if offsets.sock_net.is_multiple_of(8)
                    && offsets.sock_net as usize + 8 <= SOCK_HEAD =>
            {
                (offsets.sock_net, offsets.net_inum, None)
            }
            Ok(offsets) => (
                OFFSET_UNKNOWN,
                OFFSET_UNKNOWN,
                Some(format!(
                    "struct sock's skc_net is at byte {}, beyond the {SOCK_HEAD} bytes the program reads",
                    offsets.sock_net
                )),
            ),
            Err(error) => (OFFSET_UNKNOWN, OFFSET_UNKNOWN, Some(error.to_string())),
        };
        Ok(Self {
            sock_net,
            net_inum,
            // Wake the reader once a quarter of the buffer is queued.
            wakeup_bytes: u64::from(config.ring_buffer_bytes / 4),
            extra_port: if config.multicast {
                u32::from(MDNS_PORT)
            } else {
                0
            },
            // Disabled: the map still exists in the object; keep it tiny.
            ring_buffer_bytes: if config.enabled {
                config.ring_buffer_bytes
            } else {
                PAGE_SIZE
            },
            netns_problem,
        })
    }

    /// Sets the DNS program's globals and ring buffer size on `loader`;
    /// call before [`EbpfLoader::load`].
    pub fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global(global::DNS_SK_NET_OFFSET, &self.sock_net, true)
            .override_global(global::DNS_NET_INUM_OFFSET, &self.net_inum, true)
            .override_global(global::DNS_WAKEUP_BYTES, &self.wakeup_bytes, true)
            .override_global(global::DNS_EXTRA_PORT, &self.extra_port, true)
            .map_max_entries(map::DNS_EVENTS, self.ring_buffer_bytes);
    }

    /// Why answers cannot be told apart by network namespace, if so.
    pub fn netns_problem(&self) -> Option<&str> {
        self.netns_problem.as_deref()
    }
}

/// Counts kept by the kernel program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsKernelCounters {
    /// DNS packets seen (UDP responses, TCP segments with payload).
    pub seen: u64,
    /// Records lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Packets whose payload could not be read.
    pub unreadable: u64,
    /// UDP packets from port 53 that were queries, not responses.
    pub not_response: u64,
    /// Payloads cut at the copy limit.
    pub cut: u64,
}

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

/// All DNS capture counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// In the kernel.
    pub kernel: DnsKernelCounters,
    /// In the daemon.
    pub capture: DnsCaptureCounters,
    /// DNS over TCP reassembly.
    pub streams: StreamCounters,
}

/// The attached DNS capture: its ring buffer, counters and TCP streams.
///
/// The daemon drains it into a [`NameCache`] with [`DnsCapture::drain`].
/// It implements [`AsRawFd`] (the ring buffer's descriptor), so it can sit
/// in a `tokio::io::unix::AsyncFd` and wake the daemon when the kernel
/// signals a filling buffer.
pub struct DnsCapture {
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    program_id: u32,
    streams: TcpStreams,
    multicast: bool,
    capture_counters: DnsCaptureCounters,
    netns_problem: Option<String>,
    /// The object, when this capture loaded its own ([`DnsCapture::load`]);
    /// dropping it detaches the program.
    _own: Option<Ebpf>,
}

/// The first cgroup v2 mount in `/proc/self/mounts`.
pub fn cgroup2_root() -> Result<PathBuf, DnsError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|_| DnsError::NoCgroup2)?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
        })
        .next()
        .ok_or(DnsError::NoCgroup2)
}

/// `/proc/self/mounts` writes spaces, tabs, newlines and backslashes in
/// paths as octal escapes.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|d| (d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DnsCapture {
    /// Loads the DNS program from `ebpf` (an object whose loader had
    /// [`DnsGlobals::apply`] applied) and attaches it for ingress at the
    /// cgroup v2 root, alongside any other programs there. `None` when
    /// `config.enabled` is false: nothing is attached.
    pub fn attach(
        ebpf: &mut Ebpf,
        config: &DnsConfig,
        globals: &DnsGlobals,
    ) -> Result<Option<Self>, DnsError> {
        if !config.enabled {
            return Ok(None);
        }
        Self::attach_to(ebpf, config, globals, &cgroup2_root()?).map(Some)
    }

    /// Loads its own copy of the eBPF object (with the connect() tracing
    /// maps shrunk to nothing, and no connect() program loaded) and
    /// attaches the DNS program. For tests and tools that need names but
    /// no connect() tracing. `None` when `config.enabled` is false.
    pub fn load(config: &DnsConfig) -> Result<Option<Self>, DnsError> {
        if !config.enabled {
            return Ok(None);
        }
        let globals = DnsGlobals::new(config, NetnsOffsets::from_kernel())?;
        let mut loader = EbpfLoader::new();
        globals.apply(&mut loader);
        loader
            .map_max_entries(connect_map::EVENTS, PAGE_SIZE)
            .map_max_entries(connect_map::IN_FLIGHT, 1)
            .map_max_entries(connect_map::PENDING, 1);
        let mut ebpf = loader.load(super::PROGRAMS).map_err(DnsError::Load)?;
        let mut capture = Self::attach_to(&mut ebpf, config, &globals, &cgroup2_root()?)?;
        capture._own = Some(ebpf);
        Ok(Some(capture))
    }

    fn attach_to(
        ebpf: &mut Ebpf,
        config: &DnsConfig,
        globals: &DnsGlobals,
        cgroup_root: &Path,
    ) -> Result<Self, DnsError> {
        let bytes = config.ring_buffer_bytes;
        if !bytes.is_power_of_two() || bytes < PAGE_SIZE {
            return Err(DnsError::RingBufferSize { bytes });
        }
        let cgroup = File::open(cgroup_root).map_err(|source| DnsError::OpenCgroup {
            path: cgroup_root.to_owned(),
            source,
        })?;
        let program_error = |action| move |source| DnsError::Program { action, source };
        let program: &mut CgroupSkb = ebpf
            .program_mut(connect_trace_common::dns::PROGRAM)
            .ok_or(DnsError::Program {
                action: "finding",
                source: ProgramError::NotLoaded,
            })?
            .try_into()
            .map_err(program_error("loading"))?;
        program.load().map_err(program_error("loading"))?;
        // Several programs may share the root (systemd's accounting, other
        // tools): ours must go next to them, never in their place. On the
        // kernels we support (5.7 and later) aya attaches through a BPF
        // link, which always joins the others (and the kernel refuses any
        // mode flag on a link, so none is passed).
        program
            .attach(
                &cgroup,
                CgroupSkbAttachType::Ingress,
                CgroupAttachMode::Single,
            )
            .map_err(program_error("attaching"))?;
        let program_id = program.info().map_err(program_error("inspecting"))?.id();
        let ring = ebpf
            .take_map(map::DNS_EVENTS)
            .ok_or(DnsError::MissingMap(map::DNS_EVENTS))?;
        let ring = RingBuf::try_from(ring).map_err(|source| DnsError::Map {
            name: map::DNS_EVENTS,
            source,
        })?;
        let counters = ebpf
            .take_map(map::DNS_COUNTERS)
            .ok_or(DnsError::MissingMap(map::DNS_COUNTERS))?;
        let counters = PerCpuArray::try_from(counters).map_err(|source| DnsError::Map {
            name: map::DNS_COUNTERS,
            source,
        })?;
        Ok(Self {
            ring,
            counters,
            program_id,
            streams: TcpStreams::new(),
            multicast: config.multicast,
            capture_counters: DnsCaptureCounters::default(),
            netns_problem: globals.netns_problem.clone(),
            _own: None,
        })
    }

    /// Reads every waiting DNS record and files the answers in `cache`;
    /// returns how many records there were.
    ///
    /// Call it after taking a poll's connect records from their ring
    /// buffer and before naming them: every answer a program received
    /// before its connect() call is then in the cache.
    pub fn drain(&mut self, cache: &mut NameCache) -> usize {
        let mut records = 0;
        while let Some(item) = self.ring.next() {
            records += 1;
            self.capture_counters.records += 1;
            match DnsPacket::decode(&item) {
                Some(packet) => {
                    handle_packet(
                        &packet,
                        self.multicast,
                        &mut self.streams,
                        &mut self.capture_counters,
                        cache,
                    );
                }
                None => self.capture_counters.undecodable += 1,
            }
        }
        records
    }

    /// The program's kernel id (as `bpftool prog show` lists it), for its
    /// run time and run count.
    pub fn program_id(&self) -> u32 {
        self.program_id
    }

    /// Why answers cannot be told apart by network namespace on this
    /// kernel (they are all filed under namespace 0), if so.
    pub fn netns_problem(&self) -> Option<&str> {
        self.netns_problem.as_deref()
    }

    /// Reads the kernel's counters and adds the daemon's own.
    pub fn counters(&self) -> Result<DnsCounters, MapError> {
        let read =
            |slot: u32| -> Result<u64, MapError> { Ok(self.counters.get(&slot, 0)?.iter().sum()) };
        debug_assert_eq!(counter::COUNT, 5);
        Ok(DnsCounters {
            kernel: DnsKernelCounters {
                seen: read(counter::SEEN)?,
                ringbuf_full: read(counter::RINGBUF_FULL)?,
                unreadable: read(counter::UNREADABLE)?,
                not_response: read(counter::NOT_RESPONSE)?,
                cut: read(counter::CUT)?,
            },
            capture: self.capture_counters,
            streams: self.streams.counters(),
        })
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
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path(r"/sys/fs/cgroup/a\040b"),
            "/sys/fs/cgroup/a b"
        );
        assert_eq!(unescape_mount_path(r"/x\\y"), r"/x\\y");
        assert_eq!(unescape_mount_path(r"/end\04"), r"/end\04");
    }

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
        let mut cache = NameCache::new(CacheConfig::default());
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

    #[test]
    fn globals_check_the_ring_size_and_report_missing_offsets() {
        let odd = DnsConfig {
            ring_buffer_bytes: 5000,
            ..DnsConfig::default()
        };
        let offsets = || {
            Ok(NetnsOffsets {
                sock_net: 48,
                net_inum: 200,
            })
        };
        assert!(matches!(
            DnsGlobals::new(&odd, offsets()),
            Err(DnsError::RingBufferSize { bytes: 5000 })
        ));
        let off = DnsConfig {
            enabled: false,
            ..odd
        };
        let globals = DnsGlobals::new(&off, offsets()).unwrap();
        assert_eq!(globals.ring_buffer_bytes, PAGE_SIZE);
        assert_eq!(globals.netns_problem(), None);
        let missing = Err(BtfError::Malformed("test"));
        let globals = DnsGlobals::new(&DnsConfig::default(), missing).unwrap();
        assert_eq!(globals.sock_net, OFFSET_UNKNOWN);
        assert!(globals.netns_problem().is_some());
        let far = Ok(NetnsOffsets {
            sock_net: 512,
            net_inum: 200,
        });
        assert!(
            DnsGlobals::new(&DnsConfig::default(), far)
                .unwrap()
                .netns_problem()
                .is_some()
        );
    }

    #[test]
    fn this_kernel_has_the_namespace_offsets() {
        // Every kernel with BTF has these fields; skc_net has sat at byte
        // 48 for years.
        if std::path::Path::new(btf::VMLINUX).exists() {
            let offsets = NetnsOffsets::from_kernel().unwrap();
            assert_eq!(offsets.sock_net, 48);
        }
    }
}
