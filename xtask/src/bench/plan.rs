//! What the bench measures: the connect() modes, the workloads made of them
//! and the tracers (the rows of the cost tables), and which tracers can run
//! here.

use std::process::Command;

use clap::ValueEnum;

use super::Binaries;
use crate::process;

/// The `connect-load --mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub(crate) enum Mode {
    Refused,
    Ok,
    NonblockingOk,
    Udp,
    Unix,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Ok => "ok",
            Self::NonblockingOk => "nonblocking-ok",
            Self::Udp => "udp",
            Self::Unix => "unix",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Refused => "TCP to a closed loopback port, refused (ECONNREFUSED)",
            Self::Ok => {
                "TCP to a loopback listener, connected (closed with SO_LINGER 0, no TIME_WAIT)"
            }
            Self::NonblockingOk => {
                "non-blocking TCP to a loopback listener (EINPROGRESS), then poll() until writable"
            }
            Self::Udp => "UDP to a loopback port, connected",
            Self::Unix => "unix stream socket to a missing path (ENOENT)",
        }
    }
}

/// The rows of the cost tables, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tracer {
    None,
    ConnectTrace,
    ConnectTraceSummary,
    ConnectTraceEmpty,
    BpftraceEmpty,
    BpftracePrintf,
    Strace,
}

pub(crate) const TRACERS: [Tracer; 7] = [
    Tracer::None,
    Tracer::ConnectTrace,
    Tracer::ConnectTraceSummary,
    Tracer::ConnectTraceEmpty,
    Tracer::BpftraceEmpty,
    Tracer::BpftracePrintf,
    Tracer::Strace,
];

impl Tracer {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::ConnectTrace => "connect-trace, every event as JSON to a file",
            Self::ConnectTraceSummary => "connect-trace --summary-only",
            Self::ConnectTraceEmpty => {
                "connect-trace's hooks with programs that do nothing (its floor)"
            }
            Self::BpftraceEmpty => "bpftrace, empty enter + exit programs (the floor)",
            Self::BpftracePrintf => "bpftrace, printf per event to a file",
            Self::Strace => "strace -f -e trace=connect, to a file",
        }
    }

    pub(crate) fn is_connect_trace(self) -> bool {
        matches!(
            self,
            Self::ConnectTrace | Self::ConnectTraceSummary | Self::ConnectTraceEmpty
        )
    }

    /// Whether the kernel's statistics give this tracer's program time.
    /// `--summary-only` runs the same programs as the JSON row, so it is
    /// not measured twice.
    pub(crate) fn has_program_time(self) -> bool {
        matches!(
            self,
            Self::ConnectTrace
                | Self::ConnectTraceEmpty
                | Self::BpftraceEmpty
                | Self::BpftracePrintf
        )
    }
}

/// The threads of the refused loop that the end-to-end target names: on a
/// 2-core machine, the daemon then competes with the load for the cores.
pub(crate) const TARGET_THREADS: usize = 2;

/// One load the rounds run under every tracer: a mode, in some threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Workload {
    pub(crate) mode: Mode,
    pub(crate) threads: usize,
}

impl Workload {
    /// Every mode in one thread, then the refused loop in
    /// [`TARGET_THREADS`] threads when refused is measured.
    pub(crate) fn all(modes: &[Mode]) -> Vec<Self> {
        let mut workloads: Vec<Self> = modes
            .iter()
            .map(|&mode| Self { mode, threads: 1 })
            .collect();
        if modes.contains(&Mode::Refused) {
            workloads.push(Self::target());
        }
        workloads
    }

    /// The 2-thread refused loop of the end-to-end target.
    pub(crate) fn target() -> Self {
        Self {
            mode: Mode::Refused,
            threads: TARGET_THREADS,
        }
    }

    /// `refused`, or `refused` in 2 threads.
    pub(crate) fn label(self) -> String {
        if self.threads == 1 {
            format!("`{}`", self.mode.name())
        } else {
            format!("`{}` in {} threads", self.mode.name(), self.threads)
        }
    }
}

/// Why `tracer` cannot run here, if it cannot.
pub(crate) fn unavailable(tracer: Tracer, binaries: &Binaries) -> Option<String> {
    match tracer {
        Tracer::None | Tracer::ConnectTrace | Tracer::ConnectTraceEmpty => None,
        Tracer::ConnectTraceSummary => {
            let help =
                process::output(Command::new(&binaries.connect_trace).args(["run", "--help"]))
                    .unwrap_or_default();
            (!help.contains("--summary-only"))
                .then(|| "`connect-trace run --help` lists no --summary-only flag yet".to_owned())
        }
        Tracer::BpftraceEmpty | Tracer::BpftracePrintf => {
            if process::output(Command::new("bpftrace").arg("--version")).is_none() {
                Some("bpftrace is not installed (`cargo xtask setup` installs it)".to_owned())
            } else if process::output(Command::new("bpftool").arg("version")).is_none() {
                // It tells when bpftrace's programs are attached.
                Some("bpftool is not installed (`cargo xtask setup` installs it)".to_owned())
            } else {
                None
            }
        }
        Tracer::Strace => process::output(Command::new("strace").arg("-V"))
            .is_none()
            .then(|| "strace is not installed (`cargo xtask setup` installs it)".to_owned()),
    }
}
