//! Loading the kernel programs and attaching them to the connect() syscall
//! tracepoints.
//!
//! Dropping a [`Tracer`] detaches and unloads everything it loaded.

use std::sync::Arc;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, RawTracePoint, TracePoint},
};
use connect_trace_common::{
    abi::{InFlight, IoUringCall, PendingHandshake},
    config::{self, Config, IoUringOffsets, TracepointOffsets},
    names::{map, program},
};
use thiserror::Error;

use super::{
    btf::{self, Btf},
    counters::KernelStats,
    dns::{self, DnsRing, DnsSettings},
    memlock::{self, Memlock},
    privileges,
    requirements::{
        self, BtfMember, INET_SOCK_SET_STATE, IO_URING_COMPLETE, SYS_ENTER_CONNECT,
        SYS_EXIT_CONNECT, TCP_DESTROY_SOCK, Tracepoint,
    },
    tracefs::{Tracefs, TracefsError},
};

/// The compiled kernel programs, built from `connect-trace-ebpf` by
/// `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connect-trace"));

/// Default ring buffer size: about 16,000 call records of 248 bytes, or
/// 160 ms of a 100,000 connects/s burst between two polls.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 4 * 1024 * 1024;

/// The largest ring buffer accepted: 256 MiB of kernel memory that cannot
/// be swapped out, more than a second of the fastest burst measured here.
pub const MAX_RING_BUFFER_BYTES: u32 = 256 * 1024 * 1024;

const PAGE_SIZE: u32 = 4096;

/// What to trace.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    /// Trace only this process (tgid); `None` traces every process.
    pub pid: Option<u32>,
    /// Skip calls that returned 0, in the kernel.
    pub failures_only: bool,
    /// Trace only callers in this cgroup v2 or below it: its id and its
    /// depth in the hierarchy (the root is 0), tested in the kernel.
    pub cgroup: Option<CgroupFilter>,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Take only the fallback paths: tracepoint fields read at the offsets
    /// found in tracefs (never at the usual compiled-in ones), and the
    /// classic `inet_sock_set_state` tracepoint instead of the raw one.
    /// Kernels with an unusual layout or no raw tracepoints take these
    /// paths; this forces them so that tests cover them.
    pub fallback_paths_only: bool,
    /// Capture DNS answers to name destinations (`server_name`); `None`
    /// attaches nothing, and no packet pays anything.
    pub dns: Option<DnsSettings>,
    /// Attach programs that return at once: what the hooks alone cost, for
    /// the benchmark. Nothing is recorded.
    pub empty_programs: bool,
    /// For tests: leave the program that sees handshakes end as state
    /// changes unattached, so that every end must be caught as its socket
    /// is freed, as it is when the kernel does not report one.
    #[doc(hidden)]
    pub handshake_ends_at_close_only: bool,
}

/// A cgroup v2 that callers must be in or below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupFilter {
    /// The cgroup's id (the inode number of its directory).
    pub id: u64,
    /// Its depth: 1 for a child of the root.
    pub level: u32,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            pid: None,
            failures_only: false,
            cgroup: None,
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            fallback_paths_only: false,
            dns: None,
            empty_programs: false,
            handshake_ends_at_close_only: false,
        }
    }
}

/// Why the tracer could not start.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The process lacks the capabilities to load eBPF programs.
    #[error("connect-trace needs root, or {}; this process lacks {}", "CAP_BPF and CAP_PERFMON (and CAP_DAC_READ_SEARCH when not uid 0)", .missing.join(" and "))]
    MissingPrivileges {
        /// Names of the missing capabilities.
        missing: Vec<String>,
    },
    /// The ring buffer size is not one the kernel accepts.
    #[error(
        "ring buffer size {bytes} must be a power of two from {PAGE_SIZE} to {MAX_RING_BUFFER_BYTES} bytes"
    )]
    RingBufferSize {
        /// The size asked for.
        bytes: u32,
    },
    /// tracefs is missing or a tracepoint does not exist.
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    /// The kernel refused the object (no BPF support, verifier, limits).
    #[error("loading the eBPF programs failed (is BPF enabled in this kernel?): {0}")]
    Load(#[source] EbpfError),
    /// A program could not be loaded or attached.
    #[error("{action} {name} failed: {source}")]
    Program {
        /// "loading" or "attaching".
        action: &'static str,
        /// The program or tracepoint.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// A map the object should contain is missing or has the wrong type.
    #[error("map {name}: {source}")]
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

/// The loaded and attached kernel programs.
pub struct Tracer {
    ebpf: Ebpf,
    stats: Arc<KernelStats>,
    pending: HashMap<MapData, u64, PendingHandshake>,
    in_flight: HashMap<MapData, u64, InFlight>,
    io_uring_calls: HashMap<MapData, u64, IoUringCall>,
    program_ids: Vec<u32>,
    btf_problems: Vec<(BtfMember, String)>,
    handshake_hook: &'static str,
    io_uring_problem: Option<String>,
    dns: Option<DnsRing>,
    dns_problem: Option<String>,
}

/// The syscall programs and the tracepoints they attach to.
const SYSCALL_PROGRAMS: [(&str, requirements::Tracepoint); 2] = [
    (program::ENTER_CONNECT, SYS_ENTER_CONNECT),
    (program::EXIT_CONNECT, SYS_EXIT_CONNECT),
];

fn program_error(
    action: &'static str,
    name: &'static str,
) -> impl FnOnce(ProgramError) -> LoadError {
    move |source| LoadError::Program {
        action,
        name,
        source,
    }
}

/// Attaches the io_uring programs, the submission one to `submit`; their
/// ids.
fn attach_io_uring(ebpf: &mut Ebpf, submit: Tracepoint) -> Result<[u32; 2], LoadError> {
    let submit = attach_tracepoint(ebpf, program::IO_URING_SUBMIT, submit.category, submit.name)?;
    let complete = attach_tracepoint(
        ebpf,
        program::IO_URING_COMPLETE,
        IO_URING_COMPLETE.category,
        IO_URING_COMPLETE.name,
    )?;
    Ok([submit, complete])
}

/// What loading and attaching have in common across program types.
trait Attachable {
    fn load_program(&mut self) -> Result<(), ProgramError>;
    fn id(&self) -> Result<u32, ProgramError>;
}

impl Attachable for TracePoint {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn id(&self) -> Result<u32, ProgramError> {
        Ok(self.info()?.id())
    }
}

impl Attachable for RawTracePoint {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn id(&self) -> Result<u32, ProgramError> {
        Ok(self.info()?.id())
    }
}

/// Loads program `name` as a `P`, attaches it with `attach`, and returns
/// its kernel id.
fn load_and_attach<P: Attachable>(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<u32, LoadError>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program: &mut P = ebpf
        .program_mut(name)
        .ok_or(LoadError::Program {
            action: "finding",
            name,
            source: ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(program_error("loading", name))?;
    program
        .load_program()
        .map_err(program_error("loading", name))?;
    attach(program).map_err(program_error("attaching", name))?;
    program.id().map_err(program_error("inspecting", name))
}

/// Loads program `name` and attaches it to tracepoint `category/tracepoint`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<u32, LoadError> {
    load_and_attach(ebpf, name, |program: &mut TracePoint| {
        program.attach(category, tracepoint).map(drop)
    })
}

/// Loads program `name` and attaches it to raw tracepoint `tracepoint`.
fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
) -> Result<u32, LoadError> {
    load_and_attach(ebpf, name, |program: &mut RawTracePoint| {
        program.attach(tracepoint).map(drop)
    })
}

impl Tracer {
    /// Loads the programs with `config` baked in and attaches them.
    pub fn load(config: &TracerConfig) -> Result<Self, LoadError> {
        let missing = privileges::missing_for_tracing();
        if !missing.is_empty() {
            return Err(LoadError::MissingPrivileges {
                missing: missing.iter().map(ToString::to_string).collect(),
            });
        }
        let memlock = memlock::raise_for_bpf();
        if let Memlock::Stuck { .. } = memlock {
            tracing::warn!("{memlock}");
        }
        let bytes = config.ring_buffer_bytes;
        if !bytes.is_power_of_two() || !(PAGE_SIZE..=MAX_RING_BUFFER_BYTES).contains(&bytes) {
            return Err(LoadError::RingBufferSize { bytes });
        }
        if let Some(dns) = config.dns.filter(|dns| !dns.ring_size_ok()) {
            return Err(LoadError::RingBufferSize {
                bytes: dns.ring_buffer_bytes,
            });
        }
        let tracefs = Tracefs::find_or_mount()?;
        let tracepoints = requirements::tracepoint_offsets(&tracefs)?;
        let layout_usual =
            u32::from(tracepoints == TracepointOffsets::USUAL && !config.fallback_paths_only);
        // Without BTF the handshakes are still followed, but a failed one
        // cannot say why; `Tracer::btf_problems` says what is lost.
        let btf = Btf::from_file(std::path::Path::new(btf::VMLINUX));
        let (kernel, btf_problems) = requirements::kernel_offsets(btf.as_ref());
        let io_uring = requirements::io_uring_tracepoints(&tracefs);
        let settings = Config {
            filter_tgid: config.pid.unwrap_or(0),
            failures_only: u32::from(config.failures_only),
            // Wake the reader early once a quarter of the buffer is queued.
            wakeup_bytes: u64::from(bytes / 4),
            layout_usual,
            filter_cgroup_level: config.cgroup.map_or(0, |cgroup| cgroup.level),
            filter_cgroup_id: config.cgroup.map_or(0, |cgroup| cgroup.id),
            tracepoints,
            kernel,
            io_uring: io_uring
                .as_ref()
                .map_or(IoUringOffsets::UNKNOWN, |found| found.offsets),
            dns_extra_port: DnsSettings::extra_port(config.dns.as_ref()),
            dns_wakeup_bytes: u64::from(DnsSettings::ring_bytes(config.dns.as_ref()) / 4),
            empty_programs: u32::from(config.empty_programs),
            task_btf: u32::from(!config.fallback_paths_only && requirements::task_btf_available()),
        };

        let mut ebpf = EbpfLoader::new()
            .override_global(config::GLOBAL, &settings, true)
            .map_max_entries(map::EVENTS, bytes)
            .map_max_entries(
                connect_trace_common::dns::map::DNS_EVENTS,
                DnsSettings::ring_bytes(config.dns.as_ref()),
            )
            .load(PROGRAMS)
            .map_err(LoadError::Load)?;

        let mut program_ids = Vec::new();
        for (name, tracepoint) in SYSCALL_PROGRAMS {
            program_ids.push(attach_tracepoint(
                &mut ebpf,
                name,
                tracepoint.category,
                tracepoint.name,
            )?);
        }
        // Raw tracepoints spare the kernel building a record on every TCP
        // state change, and the two programs (starts, ends) never make each
        // other miss an event; the classic tracepoint is the fallback.
        let raw = if config.fallback_paths_only {
            Err(LoadError::Program {
                action: "attaching",
                name: program::HANDSHAKE_START,
                source: ProgramError::NotLoaded,
            })
        } else {
            attach_raw_tracepoint(
                &mut ebpf,
                program::HANDSHAKE_START,
                INET_SOCK_SET_STATE.name,
            )
            .and_then(|start| {
                if config.handshake_ends_at_close_only {
                    return Ok(vec![start]);
                }
                let end = attach_raw_tracepoint(
                    &mut ebpf,
                    program::HANDSHAKE_END,
                    INET_SOCK_SET_STATE.name,
                )?;
                Ok(vec![start, end])
            })
        };
        let handshake_hook = match raw {
            Ok(ids) => {
                program_ids.extend(ids);
                // A backstop for handshake ends the kernel does not report
                // (see the program). Without it they wait for the
                // resolver's timeout, as before.
                match attach_raw_tracepoint(&mut ebpf, program::HANDSHAKE_GONE, TCP_DESTROY_SOCK) {
                    Ok(id) => program_ids.push(id),
                    Err(error) => tracing::debug!(
                        "handshake ends the kernel does not report wait for the timeout: {error}"
                    ),
                }
                "raw tracepoint inet_sock_set_state"
            }
            Err(error) => {
                tracing::debug!("raw tracepoint unavailable ({error}); using the classic one");
                program_ids.push(attach_tracepoint(
                    &mut ebpf,
                    program::SOCK_STATE,
                    INET_SOCK_SET_STATE.category,
                    INET_SOCK_SET_STATE.name,
                )?);
                "tracepoint sock/inet_sock_set_state"
            }
        };

        // io_uring requests never pass through connect(); without these
        // programs their TCP handshakes are still reported, by the
        // handshake programs, without the requests' results.
        let io_uring_problem = match io_uring {
            Ok(found) => attach_io_uring(&mut ebpf, found.submit)
                .map(|ids| program_ids.extend(ids))
                .err()
                .map(|error| error.to_string()),
            Err(error) => Some(error.to_string()),
        };

        // Names are a bonus: without them, tracing goes on.
        let (dns, dns_problem) = match &config.dns {
            None => (None, None),
            Some(settings) => match dns::attach(&mut ebpf, &kernel, settings) {
                Ok(ring) => {
                    program_ids.push(ring.program_id);
                    (Some(ring), None)
                }
                Err(error) => (None, Some(error.to_string())),
            },
        };

        let counters = take_per_cpu_array(&mut ebpf, map::COUNTERS)?;
        let outcomes = take_per_cpu_array(&mut ebpf, map::OUTCOMES)?;
        let programs = ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok()?.try_clone().ok())
            .collect();
        let pending = ebpf
            .take_map(map::PENDING)
            .ok_or(LoadError::MissingMap(map::PENDING))?;
        let pending = HashMap::try_from(pending).map_err(|source| LoadError::Map {
            name: map::PENDING,
            source,
        })?;
        let in_flight = ebpf
            .take_map(map::IN_FLIGHT)
            .ok_or(LoadError::MissingMap(map::IN_FLIGHT))?;
        let in_flight = HashMap::try_from(in_flight).map_err(|source| LoadError::Map {
            name: map::IN_FLIGHT,
            source,
        })?;
        let io_uring_calls = ebpf
            .take_map(map::IO_URING_CALLS)
            .ok_or(LoadError::MissingMap(map::IO_URING_CALLS))?;
        let io_uring_calls =
            HashMap::try_from(io_uring_calls).map_err(|source| LoadError::Map {
                name: map::IO_URING_CALLS,
                source,
            })?;
        Ok(Self {
            ebpf,
            stats: Arc::new(KernelStats::new(counters, outcomes, programs)),
            pending,
            in_flight,
            io_uring_calls,
            program_ids,
            btf_problems,
            handshake_hook,
            io_uring_problem,
            dns,
            dns_problem,
        })
    }

    /// Why io_uring connect requests are not traced here (their TCP
    /// handshakes still are); `None` when they are.
    pub fn io_uring_problem(&self) -> Option<&str> {
        self.io_uring_problem.as_deref()
    }

    /// Takes the ring buffer that carries the records; `None` if already
    /// taken.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let events = self
            .ebpf
            .take_map(map::EVENTS)
            .ok_or(LoadError::MissingMap(map::EVENTS))?;
        RingBuf::try_from(events).map_err(|source| LoadError::Map {
            name: map::EVENTS,
            source,
        })
    }

    /// Takes the DNS capture's ring buffer and counters; `None` when DNS
    /// names were not asked for, could not be captured
    /// ([`Tracer::dns_problem`]), or were already taken.
    pub fn take_dns(&mut self) -> Option<DnsRing> {
        self.dns.take()
    }

    /// Why DNS names were asked for but cannot be captured, if so.
    pub fn dns_problem(&self) -> Option<&str> {
        self.dns_problem.as_deref()
    }

    /// The kernel ids of the attached programs (as `bpftool prog list`
    /// shows them).
    pub fn program_ids(&self) -> &[u32] {
        &self.program_ids
    }

    /// Which hook follows TCP handshakes: the raw tracepoint, or the classic
    /// one where the raw one could not be attached.
    pub fn handshake_hook(&self) -> &'static str {
        self.handshake_hook
    }

    /// The kernel struct members BTF could not locate, with why, and what
    /// each costs ([`BtfMember::without`]); empty on a kernel with BTF.
    pub fn btf_problems(&self) -> &[(BtfMember, String)] {
        &self.btf_problems
    }

    /// The programs' counters, readable for as long as any holder keeps
    /// them, after the programs are detached too.
    pub fn stats(&self) -> Arc<KernelStats> {
        Arc::clone(&self.stats)
    }
}

/// What [`Tracer::sweep_pending`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingSweep {
    /// Handshakes the kernel still follows.
    pub followed: u64,
    /// Entries removed because their SYN went out longer ago than any
    /// handshake lasts: their end was never seen (the kernel did not report
    /// it, or the socket was torn down without a state change).
    pub expired: u64,
    /// Calls whose exit was never seen (the kernel skipped the exit
    /// program), whose thread is gone: their entries are removed.
    pub calls_abandoned: u64,
}

impl Tracer {
    /// Removes the kernel's entries for handshakes whose SYN went out more
    /// than `max_age_ns` before `now_ns` (CLOCK_MONOTONIC), so that they
    /// neither fill the map nor ever match a later socket at the same
    /// address, and counts them; and the entries of calls older than that
    /// whose thread is gone. Walks both maps: call it every few seconds,
    /// not per event.
    pub fn sweep_pending(
        &mut self,
        now_ns: u64,
        max_age_ns: u64,
    ) -> Result<PendingSweep, MapError> {
        let mut sweep = PendingSweep::default();
        let mut stale = Vec::new();
        for entry in self.pending.iter() {
            // An entry removed by the kernel while we walk is simply gone.
            let Ok((sock, handshake)) = entry else {
                continue;
            };
            if now_ns.saturating_sub(handshake.syn_ns) > max_age_ns {
                stale.push(sock);
            } else {
                sweep.followed += 1;
            }
        }
        for sock in stale {
            if self.pending.remove(&sock).is_ok() {
                sweep.expired += 1;
            }
        }
        // Each thread keeps its in-flight entry between calls. Once the
        // thread is gone the entry only waits to be evicted; remove it, and
        // count it if a call was still open in it: the kernel skipped that
        // call's exit.
        let mut gone = Vec::new();
        for entry in self.in_flight.iter() {
            let Ok((pid_tgid, call)) = entry else {
                continue;
            };
            let (tgid, tid) = (pid_tgid >> 32, pid_tgid & 0xffff_ffff);
            if now_ns.saturating_sub(call.start_ns) > max_age_ns
                && !std::path::Path::new(&format!("/proc/{tgid}/task/{tid}")).exists()
            {
                gone.push((pid_tgid, call.caller_tid != 0));
            }
        }
        for (pid_tgid, open) in gone {
            if self.in_flight.remove(&pid_tgid).is_ok() && open {
                sweep.calls_abandoned += 1;
            }
        }
        // Every io_uring request completes, unless its process is gone
        // (a ring torn down mid-request may not post a completion).
        let mut abandoned = Vec::new();
        for entry in self.io_uring_calls.iter() {
            let Ok((request, call)) = entry else {
                continue;
            };
            let tgid = call.pid_tgid >> 32;
            if now_ns.saturating_sub(call.call.start_ns) > max_age_ns
                && !std::path::Path::new(&format!("/proc/{tgid}")).exists()
            {
                abandoned.push(request);
            }
        }
        for request in abandoned {
            if self.io_uring_calls.remove(&request).is_ok() {
                sweep.calls_abandoned += 1;
            }
        }
        Ok(sweep)
    }

    /// Adds an entry to the kernel's map of followed handshakes, as if a
    /// SYN had gone out at `syn_ns` on `sock`; for tests of the sweep.
    #[doc(hidden)]
    pub fn follow_for_test(&mut self, sock: u64, syn_ns: u64) -> Result<(), MapError> {
        let handshake = PendingHandshake {
            syn_ns,
            pid_tgid: 0,
            call: 0,
            family_slot: 0,
            fd: -1,
            via: 0,
            reserved: 0,
        };
        self.pending.insert(&sock, &handshake, 0)
    }
}

fn take_per_cpu_array(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<MapData, u64>, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    PerCpuArray::try_from(map).map_err(|source| LoadError::Map { name, source })
}
