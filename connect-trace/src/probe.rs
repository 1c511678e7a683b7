//! Loading the kernel programs and attaching them to the connect() syscall
//! tracepoints.
//!
//! Dropping a [`Tracer`] detaches and unloads everything it loaded.

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, RawTracePoint, TracePoint},
};
use connect_trace_common::{SK_ERR_UNKNOWN, counter, global, layout, map, outcome_count, program};
use thiserror::Error;

use crate::{
    btf::{self, Btf, BtfError},
    kernel_counts::OutcomeTally,
    memlock::{self, Memlock},
    privileges,
    tracefs::{Tracefs, TracefsError},
};

/// The compiled kernel programs, built from `connect-trace-ebpf` by
/// `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connect-trace"));

/// Default ring buffer size: about 20,000 records of 208 bytes, or 200 ms
/// of a 100,000 connects/s burst between two polls.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 4 * 1024 * 1024;

const PAGE_SIZE: u32 = 4096;

/// What to trace.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    /// Trace only this process (tgid); `None` traces every process.
    pub pid: Option<u32>,
    /// Skip calls that returned 0, in the kernel.
    pub failures_only: bool,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Take only the fallback paths: tracepoint fields read at the offsets
    /// found in tracefs (never at the usual compiled-in ones), and the
    /// classic `inet_sock_set_state` tracepoint instead of the raw one.
    /// Kernels with an unusual layout or no raw tracepoints take these
    /// paths; this forces them so that tests cover them.
    pub fallback_paths_only: bool,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            pid: None,
            failures_only: false,
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            fallback_paths_only: false,
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
        missing: Vec<&'static str>,
    },
    /// The ring buffer size is not one the kernel accepts.
    #[error("ring buffer size {bytes} must be a power of two and at least {PAGE_SIZE} bytes")]
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

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Calls that passed the filters and produced a record.
    pub attempts: u64,
    /// Records dropped because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Exits seen without a matching entry (in flight when attached).
    pub exit_without_entry: u64,
    /// Entries the in-flight map refused.
    pub in_flight_full: u64,
    /// Handshakes not followed because the pending map was full.
    pub pending_full: u64,
    /// Handshake outcomes dropped because the ring buffer was full.
    pub outcome_ringbuf_full: u64,
}

/// The loaded and attached kernel programs.
pub struct Tracer {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    outcomes: PerCpuArray<MapData, u64>,
    program_ids: Vec<u32>,
    btf_problem: Option<BtfError>,
    handshake_hook: &'static str,
}

/// The syscall programs and the tracepoints they attach to.
const SYSCALL_PROGRAMS: [(&str, &str, &str); 2] = [
    (program::ENTER_CONNECT, "syscalls", "sys_enter_connect"),
    (program::EXIT_CONNECT, "syscalls", "sys_exit_connect"),
];

/// Where TCP state changes are seen.
const STATE_TRACEPOINT: &str = "inet_sock_set_state";

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
                missing: missing.iter().map(|cap| cap.name).collect(),
            });
        }
        let memlock = memlock::raise_for_bpf();
        if let Memlock::Stuck { .. } = memlock {
            tracing::warn!("{memlock}");
        }
        let bytes = config.ring_buffer_bytes;
        if !bytes.is_power_of_two() || bytes < PAGE_SIZE {
            return Err(LoadError::RingBufferSize { bytes });
        }
        let tracefs = Tracefs::find_or_mount()?;
        let enter_fd = tracefs.field_offset("syscalls", "sys_enter_connect", "fd")?;
        let enter_addr = tracefs.field_offset("syscalls", "sys_enter_connect", "uservaddr")?;
        let enter_addrlen = tracefs.field_offset("syscalls", "sys_enter_connect", "addrlen")?;
        let exit_ret = tracefs.field_offset("syscalls", "sys_exit_connect", "ret")?;
        let state = |field| tracefs.field_offset("sock", "inet_sock_set_state", field);
        let (skaddr, old, new, protocol) = (
            state("skaddr")?,
            state("oldstate")?,
            state("newstate")?,
            state("protocol")?,
        );
        let found = [
            enter_fd,
            enter_addr,
            enter_addrlen,
            exit_ret,
            skaddr,
            old,
            new,
            protocol,
        ];
        let usual = [
            layout::ENTER_FD,
            layout::ENTER_ADDR,
            layout::ENTER_ADDRLEN,
            layout::EXIT_RET,
            layout::STATE_SKADDR,
            layout::STATE_OLD,
            layout::STATE_NEW,
            layout::STATE_PROTOCOL,
        ]
        .map(|offset| offset as u32);
        let layout_usual = u32::from(found == usual && !config.fallback_paths_only);
        // Without BTF the handshakes are still followed, but a failed one
        // cannot say why; `Tracer::btf_problem` reports that.
        let (sk_err, btf_problem) = match Btf::from_file(std::path::Path::new(btf::VMLINUX))
            .and_then(|btf| btf.member_offset("sock", "sk_err"))
        {
            Ok(offset) => (offset, None),
            Err(problem) => (SK_ERR_UNKNOWN, Some(problem)),
        };
        let filter_tgid = config.pid.unwrap_or(0);
        let failures_only = u32::from(config.failures_only);
        // Wake the reader early once a quarter of the buffer is queued.
        let wakeup_bytes = u64::from(bytes / 4);

        let mut ebpf = EbpfLoader::new()
            .override_global(global::FILTER_TGID, &filter_tgid, true)
            .override_global(global::FAILURES_ONLY, &failures_only, true)
            .override_global(global::WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(global::ENTER_FD_OFFSET, &enter_fd, true)
            .override_global(global::ENTER_ADDR_OFFSET, &enter_addr, true)
            .override_global(global::ENTER_ADDRLEN_OFFSET, &enter_addrlen, true)
            .override_global(global::EXIT_RET_OFFSET, &exit_ret, true)
            .override_global(global::STATE_SKADDR_OFFSET, &skaddr, true)
            .override_global(global::STATE_OLD_OFFSET, &old, true)
            .override_global(global::STATE_NEW_OFFSET, &new, true)
            .override_global(global::STATE_PROTOCOL_OFFSET, &protocol, true)
            .override_global(global::SK_ERR_OFFSET, &sk_err, true)
            .override_global(global::LAYOUT_USUAL, &layout_usual, true)
            .map_max_entries(map::EVENTS, bytes)
            .load(PROGRAMS)
            .map_err(LoadError::Load)?;

        let mut program_ids = Vec::new();
        for (name, category, tracepoint) in SYSCALL_PROGRAMS {
            program_ids.push(attach_tracepoint(&mut ebpf, name, category, tracepoint)?);
        }
        // The raw tracepoint spares the kernel building a record on every
        // TCP state change; the classic one is the fallback.
        let raw = if config.fallback_paths_only {
            Err(LoadError::Program {
                action: "attaching",
                name: program::SOCK_STATE_RAW,
                source: ProgramError::NotLoaded,
            })
        } else {
            attach_raw_tracepoint(&mut ebpf, program::SOCK_STATE_RAW, STATE_TRACEPOINT)
        };
        let (state_program, handshake_hook) = match raw {
            Ok(id) => (id, "raw tracepoint inet_sock_set_state"),
            Err(error) => {
                tracing::debug!("raw tracepoint unavailable ({error}); using the classic one");
                let id =
                    attach_tracepoint(&mut ebpf, program::SOCK_STATE, "sock", STATE_TRACEPOINT)?;
                (id, "tracepoint sock/inet_sock_set_state")
            }
        };
        program_ids.push(state_program);

        let counters = ebpf
            .take_map(map::COUNTERS)
            .ok_or(LoadError::MissingMap(map::COUNTERS))?;
        let counters = PerCpuArray::try_from(counters).map_err(|source| LoadError::Map {
            name: map::COUNTERS,
            source,
        })?;
        let outcomes = ebpf
            .take_map(map::OUTCOMES)
            .ok_or(LoadError::MissingMap(map::OUTCOMES))?;
        let outcomes = PerCpuArray::try_from(outcomes).map_err(|source| LoadError::Map {
            name: map::OUTCOMES,
            source,
        })?;
        Ok(Self {
            ebpf,
            counters,
            outcomes,
            program_ids,
            btf_problem,
            handshake_hook,
        })
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

    /// Why failed handshakes will be reported without their error, if the
    /// kernel's BTF could not tell where `sock.sk_err` is.
    pub fn btf_problem(&self) -> Option<&BtfError> {
        self.btf_problem.as_ref()
    }

    /// Reads the kernel's exact counts of attempts by family and outcome.
    pub fn outcome_counts(&self) -> Result<OutcomeTally, MapError> {
        let slots = (0..outcome_count::SLOTS)
            .map(|slot| Ok(self.outcomes.get(&slot, 0)?.iter().sum()))
            .collect::<Result<Vec<u64>, MapError>>()?;
        Ok(OutcomeTally::from_slots(slots))
    }

    /// Reads the kernel counters.
    pub fn counters(&self) -> Result<KernelCounters, MapError> {
        let read =
            |slot: u32| -> Result<u64, MapError> { Ok(self.counters.get(&slot, 0)?.iter().sum()) };
        debug_assert_eq!(counter::COUNT, 6);
        Ok(KernelCounters {
            attempts: read(counter::ATTEMPTS)?,
            ringbuf_full: read(counter::RINGBUF_FULL)?,
            exit_without_entry: read(counter::EXIT_WITHOUT_ENTRY)?,
            in_flight_full: read(counter::IN_FLIGHT_FULL)?,
            pending_full: read(counter::PENDING_FULL)?,
            outcome_ringbuf_full: read(counter::OUTCOME_RINGBUF_FULL)?,
        })
    }
}
