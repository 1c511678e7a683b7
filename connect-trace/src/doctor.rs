//! `connect-trace check`: tests the running kernel and this process for
//! everything `connect-trace run` needs, and says what to do about whatever
//! is missing.
//!
//! Each check becomes one [`Check`]: a name, a [`Status`], what was found,
//! and, when it is not ok, a remedy. The checks do what `run` does, as far as
//! that can be done without leaving anything behind: they create (and close)
//! the kinds of BPF maps the tracer uses, read the tracepoint formats it
//! reads, and finally load and attach the real programs (filtered to this
//! process) and detach them again. When tracefs is not mounted, they try
//! mounting it in a private mount namespace that disappears with the check,
//! so the host's mounts are never changed.
//!
//! ```no_run
//! use connect_trace::doctor::{self, Options};
//!
//! let report = doctor::run_checks(&Options::default())?;
//! for check in &report.checks {
//!     println!("{} {}: {}", check.status, check.name, check.detail);
//! }
//! assert!(report.ready());
//! # Ok::<(), doctor::DoctorError>(())
//! ```

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use serde::Serialize;
use thiserror::Error;

use aya::{maps::MapType, sys::is_map_supported};
use caps::{Capability, CapsHashSet};

use crate::kernel::{
    Tracer, TracerConfig,
    btf::{self, Btf},
    memlock,
    mounts::mount_points,
    privileges,
    requirements::{self, MAP_TYPES, TRACEPOINTS},
    support as kernel_support,
    tracefs::{self, DEBUGFS_MOUNT, Tracefs, TracefsError},
};
use crate::workload::{
    cgroupfs::CgroupFs,
    lookup::LookupConfig,
    status::{describe_cgroups, detect_runtimes},
};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// What `run` needs is there.
    Ok,
    /// Something optional is missing: `run` works, with less information.
    Warn,
    /// Something `run` needs is missing: it will not start.
    Missing,
    /// Not tried, because an earlier check failed or the options rule it out.
    Skip,
}

impl Status {
    /// The word printed for it: `ok`, `warn`, `missing` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Missing => "missing",
            Self::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, such as `tracefs` or
    /// `tracepoint syscalls/sys_exit_connect`.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found, in a sentence.
    pub detail: String,
    /// What to do about it; `None` when the status is ok.
    pub remedy: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, None::<String>)
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail, Some(remedy))
    }

    fn missing(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Missing, detail, Some(remedy))
    }

    fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, None::<String>)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        remedy: Option<impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            remedy: remedy.map(Into::into),
        }
    }

    fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Report {
    /// One entry per check.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether `run` can work: no check is [`Status::Missing`]. Warnings
    /// and skipped checks do not count against it.
    pub fn ready(&self) -> bool {
        self.missing().next().is_none()
    }

    /// The checks that stop `run` from working.
    pub fn missing(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|check| check.status == Status::Missing)
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read tracepoint formats from this tracefs root instead of the one
    /// `run` would use. The load-and-attach check is then skipped, because
    /// `run` cannot be pointed at another tracefs.
    pub tracefs: Option<PathBuf>,
}

/// Why the checks could not run at all (a failed check is not an error).
#[derive(Debug, Error)]
pub enum DoctorError {
    /// The thread that tries tracefs in a private mount namespace could not
    /// be started.
    #[error("starting the thread that tries mounting tracefs: {0}")]
    Thread(#[source] io::Error),
    /// That thread panicked.
    #[error("the thread that tries mounting tracefs panicked")]
    ThreadPanicked,
}

/// What naming containers and pods will find here: how cgroup ids become
/// paths, and one line per container runtime. Never required: without a
/// runtime, containers are reported by id.
pub async fn workload_checks(lookups: &LookupConfig) -> Vec<Check> {
    let cgroups = CgroupFs::system().ok();
    let mut checks = vec![Check::ok(WORKLOADS, describe_cgroups(cgroups.as_ref()))];
    for status in detect_runtimes(lookups).await {
        let name = format!("runtime {}", status.runtime);
        checks.push(if status.is_answering() {
            Check::ok(name, status.to_string())
        } else {
            Check::warn(
                name,
                status.to_string(),
                "start the runtime, or point --docker-socket / --containerd-socket at its socket; mount it into connect-trace's container",
            )
        });
    }
    checks
}

/// Runs every check.
pub fn run_checks(options: &Options) -> Result<Report, DoctorError> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let effective = caps::read(None, caps::CapSet::Effective).ok();

    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let privileges = check_privileges(euid, effective.as_ref());
    // As the loader does, so that maps are created here as `run` creates them.
    let memlock = memlock::raise_for_bpf();
    let bpf = check_bpf_syscall();
    let mut map_types = if bpf.is_ok() {
        check_map_types()
    } else {
        Check::skip(MAP_TYPE_CHECK, "not tried: bpf() does not work")
    };
    if let Some(note) = memlock.note() {
        map_types.detail = format!("{}; {note}", map_types.detail);
    }
    let prerequisites_ok = privileges.is_ok() && bpf.is_ok() && map_types.is_ok();
    let mut checks = vec![check_kernel_version(), privileges, bpf, map_types];

    match &options.tracefs {
        Some(root) => {
            let tracefs = check_given_tracefs(root);
            let readable = tracefs.is_ok();
            checks.push(tracefs);
            checks.extend(tracepoint_checks(readable.then_some(root.as_path())));
            checks.push(Check::skip(
                ATTACH,
                format!(
                    "not tried with --tracefs: `run` reads the system's tracefs, not {}",
                    root.display()
                ),
            ));
        }
        None => checks.extend(system_tracefs_checks(&mounts, prerequisites_ok)?),
    }

    checks.push(check_btf(Path::new(btf::VMLINUX)));
    checks.push(check_cgroup2(&mounts));
    // Loading and attaching comes last in the output, as the summary of
    // everything above, though it ran with the tracefs checks.
    if let Some(at) = checks.iter().position(|check| check.name == ATTACH) {
        let attach = checks.remove(at);
        checks.push(attach);
    }
    Ok(Report { checks })
}

const PRIVILEGES: &str = "privileges";
const BPF_SYSCALL: &str = "bpf-syscall";
const MAP_TYPE_CHECK: &str = "map-types";
const TRACEFS: &str = "tracefs";
const KERNEL_BTF: &str = "kernel-btf";
const CGROUP_V2: &str = "cgroup-v2";
const ATTACH: &str = "attach";
const IO_URING: &str = "io_uring";
const WORKLOADS: &str = "workloads";

/// `check`'s `kernel-version` line: the running kernel's version and where it
/// falls. Never [`Status::Missing`]: distributions backport features (RHEL
/// 8's 4.18 has BPF ring buffers), so the checks after it decide.
fn check_kernel_version() -> Check {
    let name = "kernel-version".to_owned();
    let version = match aya::util::KernelVersion::current() {
        Ok(version) => version,
        Err(error) => {
            return Check {
                name,
                status: Status::Warn,
                detail: format!("cannot read the running kernel's version: {error}"),
                remedy: Some("the checks below still tell whether `run` can work".to_owned()),
            };
        }
    };
    let range = kernel_support::tested_range();
    let (status, detail, remedy) = match kernel_support::support(version) {
        kernel_support::Support::Tested => (
            Status::Ok,
            format!("Linux {version}, in the tested range ({range})"),
            None,
        ),
        kernel_support::Support::Newer => (
            Status::Ok,
            format!(
                "Linux {version}, newer than the tested range ({range}); layouts are read at \
                 load time, and the checks below tell whether they fit"
            ),
            None,
        ),
        kernel_support::Support::Untested => (
            Status::Warn,
            format!(
                "Linux {version}, older than the tested range ({range}) but at least {}, which \
                 has everything `run` needs",
                kernel_support::short(kernel_support::LOWEST_LOADABLE)
            ),
            Some(format!(
                "it should work; if it does not, report it with this output (tested: {range})"
            )),
        ),
        kernel_support::Support::TooOld => (
            Status::Warn,
            format!(
                "Linux {version}, older than {}, the first with BPF ring buffers; only a kernel \
                 with them backported can work (the ring-buffer check tells)",
                kernel_support::short(kernel_support::LOWEST_LOADABLE)
            ),
            Some(format!(
                "use Linux {} or newer (tested: {range})",
                kernel_support::short(kernel_support::LOWEST_LOADABLE)
            )),
        ),
    };
    Check {
        name,
        status,
        detail,
        remedy,
    }
}

/// The capability rule is [`privileges::missing_from`], the loader's own;
/// this adds what the capabilities held allow beyond it.
fn check_privileges(euid: u32, effective: Option<&CapsHashSet>) -> Check {
    let Some(effective) = effective else {
        return Check::missing(
            PRIVILEGES,
            "cannot read this process's capabilities",
            "run on Linux with /proc mounted",
        );
    };
    let has = |cap: Capability| effective.contains(&cap);
    let who = if euid == 0 {
        "root".to_owned()
    } else {
        format!("uid {euid}")
    };
    let missing = privileges::missing_from(effective, euid == 0);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        return Check::missing(
            PRIVILEGES,
            format!("{who} lacks {}", join_words(&names)),
            "run as root, or grant CAP_BPF and CAP_PERFMON (AmbientCapabilities= in a systemd \
             unit), plus CAP_DAC_READ_SEARCH when not uid 0 (tracefs is readable by root only) \
             and CAP_SYS_ADMIN if tracefs is not mounted",
        );
    }
    let held: Vec<String> = [
        Capability::CAP_BPF,
        Capability::CAP_PERFMON,
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_DAC_READ_SEARCH,
    ]
    .into_iter()
    .filter(|cap| has(*cap))
    .map(|cap| cap.to_string())
    .collect();
    let held: Vec<&str> = held.iter().map(String::as_str).collect();
    let mount = if has(Capability::CAP_SYS_ADMIN) {
        "and to mount tracefs"
    } else {
        "but not to mount tracefs, which must already be mounted"
    };
    Check::ok(
        PRIVILEGES,
        format!(
            "{who} with {}: enough to load and attach, {mount}",
            join_words(&held)
        ),
    )
}

/// `a`, `a and b`, `a, b and c`.
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn check_bpf_syscall() -> Check {
    // aya raises RLIMIT_MEMLOCK itself and retries where the kernel still
    // charges maps to it (before 5.11), as the loader does.
    match is_map_supported(MapType::Array) {
        Ok(true) => Check::ok(BPF_SYSCALL, "created and closed a BPF array map"),
        Ok(false) => Check::missing(
            BPF_SYSCALL,
            "the kernel refused a minimal BPF array map",
            "use a kernel built with CONFIG_BPF_SYSCALL=y",
        ),
        Err(error) => {
            let remedy = match error.io_error.raw_os_error() {
                Some(libc::ENOSYS) => {
                    "use a kernel built with CONFIG_BPF_SYSCALL=y, or allow bpf() in the \
                     seccomp policy (container runtime, SystemCallFilter=)"
                }
                Some(libc::EPERM | libc::EACCES) => {
                    "run as root or with CAP_BPF; allow bpf() in any seccomp policy; on kernels \
                     before 5.11 also allow raising RLIMIT_MEMLOCK (LimitMEMLOCK=infinity)"
                }
                _ => "see the error; the kernel refused a minimal BPF map",
            };
            Check::missing(
                BPF_SYSCALL,
                format!("bpf(BPF_MAP_CREATE) failed: {}", error.io_error),
                remedy,
            )
        }
    }
}

/// Every map type the programs use ([`MAP_TYPES`]).
fn check_map_types() -> Check {
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for (map_type, holds) in MAP_TYPES {
        match is_map_supported(map_type) {
            Ok(true) => found.push(format!("{map_type:?}")),
            Ok(false) => absent.push(format!("{map_type:?} ({holds})")),
            Err(error) => absent.push(format!("{map_type:?} ({holds}): {}", error.io_error)),
        }
    }
    if absent.is_empty() {
        Check::ok(
            MAP_TYPE_CHECK,
            format!(
                "the kernel creates {} maps",
                join_words(&found.iter().map(String::as_str).collect::<Vec<_>>())
            ),
        )
    } else {
        Check::missing(
            MAP_TYPE_CHECK,
            format!("the kernel refuses {}", absent.join(", ")),
            "use Linux 5.8 or newer (BPF ring buffers)",
        )
    }
}

/// `--tracefs DIR`: a tracefs root must have an `events` directory.
fn check_given_tracefs(root: &Path) -> Check {
    if root.join("events").is_dir() {
        Check::ok(TRACEFS, format!("using {} (--tracefs)", root.display()))
    } else {
        Check::missing(
            TRACEFS,
            format!(
                "{} has no events/ directory: it is not a tracefs root",
                root.display()
            ),
            "point --tracefs at a tracefs mount, such as /sys/kernel/tracing",
        )
    }
}

/// The tracefs checks on the system's tracefs, where `run` looks for it.
/// When it is not mounted, mounting it is tried in a private mount
/// namespace, and the tracepoints are read there.
fn system_tracefs_checks(mounts: &str, may_attach: bool) -> Result<Vec<Check>, DoctorError> {
    let tracefs_mounts = mount_points(mounts, "tracefs");
    let mounted = [tracefs::DEFAULT_MOUNT, DEBUGFS_MOUNT]
        .into_iter()
        .find(|path| {
            tracefs_mounts.iter().any(|mount| mount == Path::new(path))
                || Path::new(path).join("events").is_dir()
        });
    if let Some(root) = mounted {
        let mut checks = vec![Check::ok(TRACEFS, format!("mounted at {root}"))];
        checks.extend(tracepoint_and_attach_checks(Path::new(root), may_attach));
        return Ok(checks);
    }
    let elsewhere = if tracefs_mounts.is_empty() {
        String::new()
    } else {
        format!(
            " (it is mounted at {}, where `run` does not look)",
            join_paths(&tracefs_mounts)
        )
    };
    let target = Path::new(tracefs::DEFAULT_MOUNT);
    let tried = in_private_mount_namespace(|| {
        mount_tracefs(target)?;
        Ok(tracepoint_and_attach_checks(target, may_attach))
    })?;
    Ok(match tried {
        Ok(mut checks) => {
            checks.insert(
                0,
                Check::ok(
                    TRACEFS,
                    format!(
                        "not mounted{elsewhere}; `run` will mount it at {} (a trial mount in a \
                         private mount namespace worked)",
                        tracefs::DEFAULT_MOUNT
                    ),
                ),
            );
            checks
        }
        Err(error) => {
            let mut checks = vec![Check::missing(
                TRACEFS,
                format!(
                    "not mounted at {} or {DEBUGFS_MOUNT}{elsewhere}, and mounting it failed: \
                     {error}",
                    tracefs::DEFAULT_MOUNT
                ),
                format!(
                    "mount it (`mount -t tracefs tracefs {0}`, or `systemctl start \
                     sys-kernel-tracing.mount`), or give connect-trace CAP_SYS_ADMIN so it can; \
                     a kernel without {0} lacks CONFIG_TRACING",
                    tracefs::DEFAULT_MOUNT
                ),
            )];
            checks.extend(tracepoint_checks(None));
            checks.push(Check::skip(ATTACH, "not tried: tracefs is missing"));
            checks
        }
    })
}

fn tracepoint_and_attach_checks(root: &Path, may_attach: bool) -> Vec<Check> {
    let mut checks = tracepoint_checks(Some(root));
    let attach = if !may_attach {
        Check::skip(
            ATTACH,
            "not tried: privileges, bpf() or ring buffers are missing",
        )
    } else if checks.iter().all(|check| check.status != Status::Missing) {
        // Warnings (io_uring's tracepoints on kernels before 6.0) do not
        // stop `run` from attaching, so they do not stop this trial.
        check_attach()
    } else {
        Check::skip(ATTACH, "not tried: a tracepoint or field is missing")
    };
    checks.push(attach);
    checks
}

/// One check per tracepoint, naming every field `run` reads, or the ones
/// that are missing, then the optional io_uring ones. `None`: tracefs is
/// unavailable, so all are skipped.
fn tracepoint_checks(root: Option<&Path>) -> Vec<Check> {
    let mut checks: Vec<Check> = TRACEPOINTS
        .iter()
        .map(|tracepoint| {
            let check_name = format!("tracepoint {}/{}", tracepoint.category, tracepoint.name);
            match root {
                Some(root) => check_tracepoint(
                    &Tracefs::at(root),
                    check_name,
                    tracepoint.category,
                    tracepoint.name,
                    tracepoint.fields,
                ),
                None => Check::skip(check_name, "not checked: no tracefs to read it from"),
            }
        })
        .collect();
    checks.push(check_io_uring(root.map(Tracefs::at).as_ref()));
    checks
}

fn check_tracepoint(
    tracefs: &Tracefs,
    check_name: String,
    category: &str,
    name: &str,
    fields: &[&str],
) -> Check {
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for field in fields {
        match tracefs.field_offset(category, name, field) {
            Ok(offset) => found.push(format!("{field}@{offset}")),
            Err(TracefsError::MissingField { .. }) => absent.push(*field),
            Err(TracefsError::MissingTracepoint { path, source, .. }) => {
                let (detail, remedy) = if source.kind() == io::ErrorKind::NotFound {
                    (
                        format!("no such tracepoint ({} does not exist)", path.display()),
                        if category == "syscalls" {
                            "use a kernel built with CONFIG_FTRACE_SYSCALLS=y (syscall \
                             tracepoints)"
                        } else {
                            "use Linux 4.16 or newer, which has sock/inet_sock_set_state"
                        },
                    )
                } else {
                    (
                        format!("cannot read {}: {source}", path.display()),
                        "tracefs is readable only by root: run as root, or also grant \
                         CAP_DAC_READ_SEARCH; a kernel locked down in confidentiality mode \
                         refuses tracefs reads",
                    )
                };
                return Check::missing(check_name, detail, remedy);
            }
            Err(error @ TracefsError::Mount { .. }) => {
                return Check::missing(check_name, error.to_string(), "mount tracefs");
            }
        }
    }
    if absent.is_empty() {
        Check::ok(check_name, format!("fields {}", found.join(" ")))
    } else {
        Check::missing(
            check_name,
            format!(
                "its format has no field {} (found {})",
                absent.join(", "),
                if found.is_empty() {
                    "none of the others".to_owned()
                } else {
                    found.join(" ")
                }
            ),
            "this kernel's tracepoint differs from what connect-trace reads; please report it \
             with the format file",
        )
    }
}

/// Loads the real programs, filtered to this process so they record
/// nothing, attaches them, and detaches them again.
fn check_attach() -> Check {
    let config = TracerConfig {
        pid: Some(std::process::id()),
        ..TracerConfig::default()
    };
    match Tracer::load(&config) {
        Ok(tracer) => {
            let ids: Vec<String> = tracer
                .program_ids()
                .iter()
                .map(ToString::to_string)
                .collect();
            drop(tracer);
            Check::ok(
                ATTACH,
                format!(
                    "loaded the eBPF programs (ids {}), attached them to their tracepoints, and \
                     detached them",
                    ids.join(", "),
                ),
            )
        }
        Err(error) => Check::missing(
            ATTACH,
            format!("loading or attaching the programs failed: {error}"),
            "see the error; a kernel locked down against BPF, or a seccomp or LSM policy, can \
             refuse what the checks above allow",
        ),
    }
}

/// Every struct member of [`requirements::BTF_MEMBERS`], as the loader
/// reads them; none is required, so a missing one is a warning saying what
/// it costs.
fn check_btf(path: &Path) -> Check {
    let btf = Btf::from_file(path);
    let (offsets, problems) = requirements::kernel_offsets(btf.as_ref());
    if problems.is_empty() {
        return Check::ok(
            KERNEL_BTF,
            format!(
                "{} struct members located ({}; struct sock.sk_err at byte {})",
                requirements::BTF_MEMBERS.len(),
                path.display(),
                offsets.sock_sk_err
            ),
        );
    }
    let lost: Vec<String> = problems
        .iter()
        .map(|(member, problem)| format!("{}: {problem} ({})", member.name(), member.without))
        .collect();
    Check::warn(
        KERNEL_BTF,
        lost.join("; "),
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)",
    )
}

/// io_uring connect requests are traced through two io_uring tracepoints
/// that give the request (Linux 6.0 and later); without them only their
/// TCP handshakes are seen.
fn check_io_uring(tracefs: Option<&Tracefs>) -> Check {
    let Some(tracefs) = tracefs else {
        return Check::skip(IO_URING, "not checked: no tracefs to read it from");
    };
    match requirements::io_uring_tracepoints(tracefs) {
        Ok(found) => Check::ok(
            IO_URING,
            format!(
                "connect requests traced through tracepoints {} and {}",
                found.submit.name,
                requirements::IO_URING_COMPLETE.name
            ),
        ),
        Err(error) => Check::warn(
            IO_URING,
            format!(
                "io_uring connect requests will be seen only by their TCP handshakes, without \
                 their results, and UDP or unix ones not at all: {error}"
            ),
            "use Linux 6.0 or later built with CONFIG_IO_URING",
        ),
    }
}

/// cgroup v2 is where `cgroup_id` comes from. Hybrid hierarchies mount it
/// beside the v1 controllers, usually at /sys/fs/cgroup/unified.
fn check_cgroup2(mounts: &str) -> Check {
    let v2 = mount_points(mounts, "cgroup2");
    let Some(first) = v2.first() else {
        return Check::warn(
            CGROUP_V2,
            "no cgroup v2 hierarchy is mounted: every record's cgroup_id will be 1 (the root)",
            "boot with systemd.unified_cgroup_hierarchy=1, or mount one \
             (`mount -t cgroup2 none /sys/fs/cgroup/unified`)",
        );
    };
    let kind = if mount_points(mounts, "cgroup").is_empty() {
        "unified hierarchy"
    } else {
        "hybrid hierarchy: v1 controllers are mounted beside it"
    };
    Check::ok(
        CGROUP_V2,
        format!(
            "mounted at {} ({kind}); cgroup_id values are inode numbers in this tree",
            first.display()
        ),
    )
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `work` on a thread of its own that has left the process's mount
/// namespace for a private copy, so whatever it mounts vanishes when the
/// thread ends. Mount namespaces belong to threads (through their
/// `fs_struct`), so the rest of the process is untouched.
fn in_private_mount_namespace<T: Send>(
    work: impl FnOnce() -> io::Result<T> + Send,
) -> Result<io::Result<T>, DoctorError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("ct-check-mntns".to_owned())
            .spawn_scoped(scope, || {
                sys::unshare_mount_namespace()?;
                work()
            })
            .map_err(DoctorError::Thread)?;
        thread.join().map_err(|_| DoctorError::ThreadPanicked)
    })
}

fn mount_tracefs(target: &Path) -> io::Result<()> {
    tracefs::mount(target)
}

/// The raw system calls the checks make, in one place.
mod sys {
    use std::io;

    /// Moves the calling thread into a private copy of its mount namespace,
    /// with propagation to and from the original turned off.
    pub fn unshare_mount_namespace() -> io::Result<()> {
        // SAFETY: unshare has no memory preconditions; CLONE_NEWNS affects
        // only the calling thread's fs_struct and namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: valid NUL-terminated target; null source, type and data
        // are allowed when only changing propagation.
        let ret = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "tests panic to fail"
    )]

    use super::*;

    /// A temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("ct-doctor-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a format file with `fields` (as `(declaration, offset)`).
    fn write_format(root: &Path, category: &str, name: &str, fields: &[(&str, u32)]) {
        let dir = root.join("events").join(category).join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut text = format!("name: {name}\nID: 1\nformat:\n");
        for (declaration, offset) in fields {
            text.push_str(&format!(
                "\tfield:{declaration};\toffset:{offset};\tsize:8;\tsigned:0;\n"
            ));
        }
        text.push_str("\nprint fmt: \"\"\n");
        fs::write(dir.join("format"), text).unwrap();
    }

    fn complete_tracefs(root: &Path) {
        write_format(
            root,
            "syscalls",
            "sys_enter_connect",
            &[
                ("int fd", 16),
                ("struct sockaddr * uservaddr", 24),
                ("int addrlen", 32),
            ],
        );
        write_format(root, "syscalls", "sys_exit_connect", &[("long ret", 16)]);
        write_format(
            root,
            "sock",
            "inet_sock_set_state",
            &[
                ("const void * skaddr", 8),
                ("int oldstate", 16),
                ("int newstate", 20),
                ("__u16 protocol", 30),
            ],
        );
    }

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn the_running_kernel_is_reported() {
        let check = check_kernel_version();
        assert_eq!(check.name, "kernel-version");
        assert!(check.detail.starts_with("Linux "), "{check:?}");
        assert_ne!(check.status, Status::Missing);
    }

    #[test]
    fn privileges_from_capabilities() {
        use Capability::*;
        let all = set(&[CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON, CAP_DAC_OVERRIDE]);
        let check = check_privileges(0, Some(&all));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.detail,
            "root with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: enough to load and attach, \
             and to mount tracefs"
        );

        let check = check_privileges(0, Some(&set(&[CAP_BPF, CAP_PERFMON])));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(
            check.detail.contains("must already be mounted"),
            "{check:?}"
        );

        // Not root: tracefs is readable by root only, so the loader refuses
        // without CAP_DAC_READ_SEARCH, and so does the check.
        let check = check_privileges(1000, Some(&set(&[CAP_BPF, CAP_PERFMON])));
        assert_eq!(check.status, Status::Missing, "{check:?}");
        assert_eq!(check.detail, "uid 1000 lacks CAP_DAC_READ_SEARCH");
        let check = check_privileges(
            1000,
            Some(&set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH])),
        );
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.starts_with("uid 1000 with"), "{check:?}");

        let check = check_privileges(0, Some(&set(&[CAP_BPF])));
        assert_eq!(check.status, Status::Missing);
        assert_eq!(check.detail, "root lacks CAP_PERFMON");
        assert!(check.remedy.is_some());

        let check = check_privileges(65534, Some(&set(&[])));
        assert_eq!(
            check.detail,
            "uid 65534 lacks CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH"
        );
        assert_eq!(check_privileges(0, None).status, Status::Missing);
    }

    #[test]
    fn privileges_agree_with_the_loader() {
        use Capability::*;
        let sets = [
            set(&[]),
            set(&[CAP_BPF]),
            set(&[CAP_BPF, CAP_PERFMON]),
            set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]),
            set(&[CAP_SYS_ADMIN]),
            set(&[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE]),
        ];
        for caps in &sets {
            for euid in [0, 1000] {
                let check = check_privileges(euid, Some(caps));
                assert_eq!(
                    check.is_ok(),
                    privileges::missing_from(caps, euid == 0).is_empty(),
                    "{euid} {caps:?}: {check:?}"
                );
            }
        }
    }

    #[test]
    fn a_complete_tracefs_passes_with_offsets() {
        let dir = TempDir::new("complete");
        complete_tracefs(&dir.0);
        let checks = tracepoint_checks(Some(&dir.0));
        assert_eq!(checks.len(), 4);
        assert!(checks[..3].iter().all(Check::is_ok), "{checks:#?}");
        // A tracefs without io_uring's tracepoints: only a warning.
        assert_eq!(checks[3].name, "io_uring");
        assert_eq!(checks[3].status, Status::Warn, "{checks:#?}");
        assert_eq!(checks[0].name, "tracepoint syscalls/sys_enter_connect");
        assert_eq!(checks[0].detail, "fields fd@16 uservaddr@24 addrlen@32");
        assert_eq!(checks[1].detail, "fields ret@16");
        assert_eq!(
            checks[2].detail,
            "fields skaddr@8 oldstate@16 newstate@20 protocol@30"
        );
    }

    #[test]
    fn io_uring_is_traced_under_the_submission_tracepoints_earlier_name() {
        let dir = TempDir::new("io_uring_sqe");
        complete_tracefs(&dir.0);
        let request = [
            ("void * ctx", 8),
            ("void * req", 16),
            ("u8 opcode", 32),
            ("u32 flags", 36),
        ];
        write_format(&dir.0, "io_uring", "io_uring_submit_sqe", &request);
        let check = check_io_uring(Some(&Tracefs::at(&dir.0)));
        // Without the completion: a warning that names it.
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.detail.contains("io_uring_complete"), "{check:?}");
        write_format(
            &dir.0,
            "io_uring",
            "io_uring_complete",
            &[("void * req", 16), ("int res", 32)],
        );
        let check = check_io_uring(Some(&Tracefs::at(&dir.0)));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.detail,
            "connect requests traced through tracepoints io_uring_submit_sqe and io_uring_complete"
        );
        // Both names: the current one is used.
        write_format(&dir.0, "io_uring", "io_uring_submit_req", &request);
        let found = requirements::io_uring_tracepoints(&Tracefs::at(&dir.0)).unwrap();
        assert_eq!(found.submit.name, "io_uring_submit_req");
        assert_eq!(found.offsets.submit_req, 16);
        assert_eq!(found.offsets.complete_res, 32);
        // Before Linux 5.18 the submission had no request: a warning.
        let old = [("void * ctx", 8), ("u8 opcode", 16)];
        fs::remove_dir_all(dir.0.join("events/io_uring/io_uring_submit_req")).unwrap();
        write_format(&dir.0, "io_uring", "io_uring_submit_sqe", &old);
        let check = check_io_uring(Some(&Tracefs::at(&dir.0)));
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.detail.contains("req"), "{check:?}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let dir = TempDir::new("field");
        complete_tracefs(&dir.0);
        write_format(
            &dir.0,
            "sock",
            "inet_sock_set_state",
            &[("const void * skaddr", 8), ("int newstate", 20)],
        );
        let checks = tracepoint_checks(Some(&dir.0));
        assert!(checks[0].is_ok() && checks[1].is_ok(), "{checks:#?}");
        let sock = &checks[2];
        assert_eq!(sock.status, Status::Missing);
        assert!(
            sock.detail.contains("no field oldstate, protocol"),
            "{sock:?}"
        );
        assert!(sock.detail.contains("skaddr@8 newstate@20"), "{sock:?}");
    }

    #[test]
    fn a_missing_tracepoint_is_named() {
        let dir = TempDir::new("tracepoint");
        complete_tracefs(&dir.0);
        fs::remove_dir_all(dir.0.join("events/syscalls/sys_exit_connect")).unwrap();
        let checks = tracepoint_checks(Some(&dir.0));
        assert_eq!(checks[1].status, Status::Missing);
        assert!(
            checks[1].detail.contains("no such tracepoint"),
            "{checks:#?}"
        );
        assert!(
            checks[1]
                .remedy
                .as_deref()
                .unwrap()
                .contains("CONFIG_FTRACE_SYSCALLS"),
            "{checks:#?}"
        );
        assert!(checks[0].is_ok() && checks[2].is_ok(), "{checks:#?}");
    }

    #[test]
    fn without_tracefs_the_tracepoints_are_skipped() {
        let checks = tracepoint_checks(None);
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|check| check.status == Status::Skip));
    }

    #[test]
    fn a_given_tracefs_needs_an_events_directory() {
        let dir = TempDir::new("given");
        assert_eq!(check_given_tracefs(&dir.0).status, Status::Missing);
        fs::create_dir(dir.0.join("events")).unwrap();
        assert_eq!(check_given_tracefs(&dir.0).status, Status::Ok);
    }

    #[test]
    fn cgroup2_is_found_in_hybrid_unified_and_absent_setups() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let check = check_cgroup2(hybrid);
        assert_eq!(check.status, Status::Ok);
        assert!(
            check
                .detail
                .starts_with("mounted at /sys/fs/cgroup/unified (hybrid"),
            "{check:?}"
        );

        let unified = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        let check = check_cgroup2(unified);
        assert!(
            check
                .detail
                .starts_with("mounted at /sys/fs/cgroup (unified"),
            "{check:?}"
        );

        let none = "sysfs /sys sysfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n";
        let check = check_cgroup2(none);
        assert_eq!(check.status, Status::Warn);
        assert!(check.remedy.is_some());
    }

    #[test]
    fn missing_btf_is_only_a_warning() {
        let check = check_btf(Path::new("/nonexistent/vmlinux"));
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("null error"), "{check:?}");
    }

    #[test]
    fn ready_means_nothing_missing() {
        let mut report = Report {
            checks: vec![
                Check::ok("a", "fine"),
                Check::warn("b", "meh", "fix b"),
                Check::skip("c", "not tried"),
            ],
        };
        assert!(report.ready());
        report.checks.push(Check::missing("d", "gone", "fix d"));
        assert!(!report.ready());
        assert_eq!(
            report
                .missing()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
    }

    #[test]
    fn serializes_as_an_array_of_checks() {
        let report = Report {
            checks: vec![
                Check::ok("tracefs", "mounted"),
                Check::missing("ring-buffer", "no", "upgrade"),
            ],
        };
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value,
            serde_json::json!([
                {"name": "tracefs", "status": "ok", "detail": "mounted", "remedy": null},
                {"name": "ring-buffer", "status": "missing", "detail": "no", "remedy": "upgrade"},
            ])
        );
    }

    #[test]
    fn maps_can_be_created_with_privileges() {
        if !privileges::missing_for_tracing().is_empty() {
            return;
        }
        assert_eq!(check_bpf_syscall().status, Status::Ok);
        assert_eq!(check_map_types().status, Status::Ok);
    }

    #[test]
    fn a_private_mount_stays_private() {
        if !privileges::missing_for_tracing().is_empty() {
            return;
        }
        let dir = TempDir::new("mntns");
        let inside = in_private_mount_namespace(|| {
            mount_tracefs(&dir.0)?;
            Ok(dir.0.join("events").is_dir())
        })
        .unwrap()
        .unwrap();
        assert!(inside, "tracefs was not mounted in the private namespace");
        assert!(
            !dir.0.join("events").exists(),
            "the trial mount leaked into the process's namespace"
        );
    }
}
