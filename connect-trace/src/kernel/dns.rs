//! The DNS capture's kernel side: the `dns_ingress` program, loaded from
//! the same object as the connect() programs and attached for ingress at
//! the cgroup v2 root, and what it hands the daemon: its ring buffer of DNS
//! responses ([`DnsRing`]) and its counters ([`DnsKernelStats`]).
//!
//! [`super::Tracer::load`] attaches it when [`super::TracerConfig::dns`]
//! asks. A host without cgroup v2, a process without CAP_NET_ADMIN, or a
//! kernel that refuses the program does not stop tracing: the tracer keeps
//! the reason ([`super::Tracer::dns_problem`]) and records go out without
//! names.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError},
};
use caps::{Capability, CapsHashSet};
use connect_trace_common::{
    config::KernelOffsets,
    dns::{MDNS_PORT, PROGRAM, SOCK_HEAD, counter, map},
};
use thiserror::Error;

use super::mounts;

/// Default size of the DNS ring buffer: about 490 responses of up to
/// 2 KiB between two polls of the daemon.
pub const DEFAULT_DNS_RING_BUFFER_BYTES: u32 = 1024 * 1024;

const PAGE_SIZE: u32 = 4096;

/// How DNS answers are captured ([`super::TracerConfig::dns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Also capture multicast DNS answers (port 5353), for `.local` names.
    /// Off by default: any host on the link can send them.
    pub multicast: bool,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: DEFAULT_DNS_RING_BUFFER_BYTES,
            multicast: false,
        }
    }
}

impl DnsSettings {
    /// Whether the kernel accepts the ring buffer size.
    pub const fn ring_size_ok(&self) -> bool {
        self.ring_buffer_bytes.is_power_of_two() && self.ring_buffer_bytes >= PAGE_SIZE
    }

    /// `Config::dns_extra_port`: 5353 with multicast DNS, else none.
    pub(super) fn extra_port(settings: Option<&Self>) -> u32 {
        match settings {
            Some(Self {
                multicast: true, ..
            }) => u32::from(MDNS_PORT),
            _ => 0,
        }
    }

    /// The DNS ring buffer's size: one page, unused, when the capture is
    /// off (the map is in the object either way).
    pub(super) fn ring_bytes(settings: Option<&Self>) -> u32 {
        settings.map_or(PAGE_SIZE, |settings| settings.ring_buffer_bytes)
    }
}

/// Why the DNS capture could not start. None of these stops tracing.
#[derive(Debug, Error)]
pub enum DnsAttachError {
    /// The process may not load networking programs.
    #[error(
        "attaching the DNS capture needs CAP_NET_ADMIN (or CAP_SYS_ADMIN), which this process lacks"
    )]
    MissingPrivileges,
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup v2 hierarchy is mounted (looked in /proc/self/mounts)")]
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
    /// The program could not be loaded or attached.
    #[error("{action} the DNS capture program failed: {source}")]
    Program {
        /// "finding", "loading", "attaching" or "inspecting".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// A map the object should contain is absent.
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    /// A map has the wrong type.
    #[error("DNS capture map {name}: {source}")]
    Map {
        /// The map name.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
}

/// Whether `effective` may load and attach the DNS program: cgroup skb
/// programs are networking programs, which need CAP_NET_ADMIN (or
/// CAP_SYS_ADMIN) besides what tracing needs.
pub fn may_attach(effective: &CapsHashSet) -> bool {
    effective.contains(&Capability::CAP_NET_ADMIN) || effective.contains(&Capability::CAP_SYS_ADMIN)
}

/// The first cgroup v2 mount point in `/proc/self/mounts`.
pub fn cgroup2_root() -> Result<PathBuf, DnsAttachError> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|_| DnsAttachError::NoCgroup2)?;
    mounts::mount_points(&mounts, "cgroup2")
        .into_iter()
        .next()
        .ok_or(DnsAttachError::NoCgroup2)
}

/// Why answers cannot be told apart by network namespace with these
/// offsets, if so (they are then all filed under namespace 0).
pub fn netns_problem(offsets: &KernelOffsets) -> Option<String> {
    if offsets.can_find_socket_netns() {
        return None;
    }
    let unknown = connect_trace_common::config::OFFSET_UNKNOWN;
    Some(
        if offsets.sock_net == unknown || offsets.net_inum == unknown {
            "kernel BTF does not locate sock.__sk_common.skc_net and net.ns.inum".to_owned()
        } else {
            format!(
                "struct sock's skc_net is at byte {}, beyond the {SOCK_HEAD} bytes the DNS program reads",
                offsets.sock_net
            )
        },
    )
}

/// The DNS program's counters in the kernel, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsKernelCounters {
    /// DNS packets seen (UDP from a DNS port, TCP segments with payload).
    pub seen: u64,
    /// Responses lost because the DNS ring buffer was full.
    pub ringbuf_full: u64,
    /// Packets whose payload could not be read.
    pub unreadable: u64,
    /// UDP packets from a DNS port that were queries, not responses.
    pub not_response: u64,
    /// Payloads cut at the copy limit.
    pub cut: u64,
}

/// The DNS program's counter map, read on demand.
pub struct DnsKernelStats {
    counters: PerCpuArray<MapData, u64>,
}

impl DnsKernelStats {
    /// Reads the counters.
    pub fn read(&self) -> Result<DnsKernelCounters, MapError> {
        let read =
            |slot: u32| -> Result<u64, MapError> { Ok(self.counters.get(&slot, 0)?.iter().sum()) };
        const _: () = assert!(counter::COUNT == 5, "read every counter below");
        Ok(DnsKernelCounters {
            seen: read(counter::SEEN)?,
            ringbuf_full: read(counter::RINGBUF_FULL)?,
            unreadable: read(counter::UNREADABLE)?,
            not_response: read(counter::NOT_RESPONSE)?,
            cut: read(counter::CUT)?,
        })
    }
}

/// What the attached DNS program hands the daemon.
pub struct DnsRing {
    /// The responses, as `connect_trace_common::dns::DnsRecord`s.
    pub ring: RingBuf<MapData>,
    /// The program's counters.
    pub stats: DnsKernelStats,
    /// The program's kernel id.
    pub program_id: u32,
    /// Whether multicast DNS answers are captured too.
    pub multicast: bool,
    /// Why answers cannot be told apart by network namespace, if so: they
    /// are then all filed under namespace 0, and connect() calls must be
    /// named from namespace 0 too.
    pub netns_problem: Option<String>,
}

/// Loads `dns_ingress` from `ebpf` (whose `Config` the loader filled in
/// with `kernel`'s offsets) and attaches it for ingress at the cgroup v2
/// root, alongside any other programs there.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    kernel: &KernelOffsets,
    settings: &DnsSettings,
) -> Result<DnsRing, DnsAttachError> {
    if !may_attach(&super::privileges::effective()) {
        return Err(DnsAttachError::MissingPrivileges);
    }
    let root = cgroup2_root()?;
    let program_id = attach_at(ebpf, &root)?;
    let ring = ebpf
        .take_map(map::DNS_EVENTS)
        .ok_or(DnsAttachError::MissingMap(map::DNS_EVENTS))?;
    let ring = RingBuf::try_from(ring).map_err(|source| DnsAttachError::Map {
        name: map::DNS_EVENTS,
        source,
    })?;
    let counters = ebpf
        .take_map(map::DNS_COUNTERS)
        .ok_or(DnsAttachError::MissingMap(map::DNS_COUNTERS))?;
    let counters = PerCpuArray::try_from(counters).map_err(|source| DnsAttachError::Map {
        name: map::DNS_COUNTERS,
        source,
    })?;
    Ok(DnsRing {
        ring,
        stats: DnsKernelStats { counters },
        program_id,
        multicast: settings.multicast,
        netns_problem: netns_problem(kernel),
    })
}

/// Loads the program and attaches it at `cgroup_root`; returns its id.
fn attach_at(ebpf: &mut Ebpf, cgroup_root: &Path) -> Result<u32, DnsAttachError> {
    let cgroup = File::open(cgroup_root).map_err(|source| DnsAttachError::OpenCgroup {
        path: cgroup_root.to_owned(),
        source,
    })?;
    let program_error = |action| move |source| DnsAttachError::Program { action, source };
    let program: &mut CgroupSkb = ebpf
        .program_mut(PROGRAM)
        .ok_or(DnsAttachError::Program {
            action: "finding",
            source: ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(program_error("loading"))?;
    program.load().map_err(program_error("loading"))?;
    // Several programs may share the root (systemd's accounting, other
    // tools): ours must go next to them, never in their place. On the
    // kernels we support (5.7 and later) aya attaches through a BPF link,
    // which always joins the others (and the kernel refuses any mode flag
    // on a link, so none is passed).
    program
        .attach(
            &cgroup,
            CgroupSkbAttachType::Ingress,
            CgroupAttachMode::Single,
        )
        .map_err(program_error("attaching"))?;
    Ok(program.info().map_err(program_error("inspecting"))?.id())
}

#[cfg(test)]
mod tests {
    use connect_trace_common::config::OFFSET_UNKNOWN;

    use super::*;

    #[test]
    fn settings_fill_the_config() {
        let multicast = DnsSettings {
            multicast: true,
            ..DnsSettings::default()
        };
        assert_eq!(DnsSettings::extra_port(Some(&multicast)), 5353);
        assert_eq!(DnsSettings::extra_port(Some(&DnsSettings::default())), 0);
        assert_eq!(DnsSettings::extra_port(None), 0);
        assert_eq!(DnsSettings::ring_bytes(None), PAGE_SIZE);
        assert!(DnsSettings::default().ring_size_ok());
        let odd = DnsSettings {
            ring_buffer_bytes: 5000,
            ..DnsSettings::default()
        };
        assert!(!odd.ring_size_ok());
    }

    #[test]
    fn namespace_offsets_are_checked() {
        let usual = KernelOffsets {
            sock_net: 48,
            net_inum: 200,
            ..KernelOffsets::UNKNOWN
        };
        assert_eq!(netns_problem(&usual), None);
        let missing = KernelOffsets {
            sock_net: OFFSET_UNKNOWN,
            ..usual
        };
        assert!(netns_problem(&missing).unwrap().contains("BTF"));
        let far = KernelOffsets {
            sock_net: 512,
            ..usual
        };
        assert!(netns_problem(&far).unwrap().contains("byte 512"));
    }

    #[test]
    fn capabilities_for_the_program() {
        let set = |caps: &[Capability]| caps.iter().copied().collect::<CapsHashSet>();
        assert!(may_attach(&set(&[Capability::CAP_NET_ADMIN])));
        assert!(may_attach(&set(&[Capability::CAP_SYS_ADMIN])));
        assert!(!may_attach(&set(&[
            Capability::CAP_BPF,
            Capability::CAP_PERFMON
        ])));
    }
}
