//! What the bench measures: the connect() modes and the tracers (the rows
//! of the cost tables), and which tracers can run here.

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
    BpftraceEmpty,
    BpftracePrintf,
    Strace,
}

pub(crate) const TRACERS: [Tracer; 6] = [
    Tracer::None,
    Tracer::ConnectTrace,
    Tracer::ConnectTraceSummary,
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
            Self::BpftraceEmpty => "bpftrace, empty enter + exit programs (the floor)",
            Self::BpftracePrintf => "bpftrace, printf per event to a file",
            Self::Strace => "strace -f -e trace=connect, to a file",
        }
    }

    pub(crate) fn is_connect_trace(self) -> bool {
        matches!(self, Self::ConnectTrace | Self::ConnectTraceSummary)
    }
}

/// Why `tracer` cannot run here, if it cannot.
pub(crate) fn unavailable(tracer: Tracer, binaries: &Binaries) -> Option<String> {
    match tracer {
        Tracer::None | Tracer::ConnectTrace => None,
        Tracer::ConnectTraceSummary => {
            let help =
                process::output(Command::new(&binaries.connect_trace).args(["run", "--help"]))
                    .unwrap_or_default();
            (!help.contains("--summary-only"))
                .then(|| "`connect-trace run --help` lists no --summary-only flag yet".to_owned())
        }
        Tracer::BpftraceEmpty | Tracer::BpftracePrintf => {
            process::output(Command::new("bpftrace").arg("--version"))
                .is_none()
                .then(|| "bpftrace is not installed (`cargo xtask setup` installs it)".to_owned())
        }
        Tracer::Strace => process::output(Command::new("strace").arg("-V"))
            .is_none()
            .then(|| "strace is not installed (`cargo xtask setup` installs it)".to_owned()),
    }
}
