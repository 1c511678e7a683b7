//! Starting and stopping the tracers (connect-trace, bpftrace, strace) and
//! reading what they report about themselves: the daemon in [`daemon`],
//! bpftrace in [`bpftrace`]; strace wraps the load instead.

mod bpftrace;
mod daemon;

use std::{
    fs,
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::mpsc::{Receiver, channel},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

pub(crate) use self::{
    bpftrace::Bpftrace,
    daemon::{Daemon, DaemonEnd, records_per_pid},
};
use super::{
    Binaries,
    load::{load_args, load_command},
    plan::{Tracer, Workload},
};
use crate::process;

/// How long a tracer may take to attach before the bench gives up.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping tracer may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to let the daemon drain after the load ends: many times its
/// 10 ms poll interval.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_millis(300);

/// The empty programs: what attaching to both tracepoints costs at least.
const BPFTRACE_EMPTY: &str =
    "tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect {}";

/// A printf-per-event tracer, as a user would write one.
const BPFTRACE_PRINTF: &str = r#"tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect { printf("%d %d %s %d\n", pid, tid, comm, args->ret); }"#;

/// The tracepoints both bpftrace scripts attach to.
const BPFTRACE_PROBES: usize = 2;

/// A tracer running (or ready to wrap the load) for one round.
pub(crate) enum Session {
    None,
    Daemon(Daemon),
    Bpftrace(Bpftrace),
    Strace(PathBuf),
}

impl Session {
    pub(crate) fn start(tracer: Tracer, binaries: &Binaries, output: &Path) -> Result<Self> {
        Ok(match tracer {
            Tracer::None => Self::None,
            Tracer::ConnectTrace => Self::Daemon(Daemon::start(binaries, output, &[])?),
            Tracer::ConnectTraceSummary => Self::Daemon(Daemon::start(
                binaries,
                output,
                &["--summary-only".to_owned()],
            )?),
            Tracer::ConnectTraceEmpty => Self::Daemon(Daemon::start(
                binaries,
                output,
                &["--empty-programs".to_owned()],
            )?),
            Tracer::BpftraceEmpty => {
                Self::Bpftrace(Bpftrace::start(BPFTRACE_EMPTY, BPFTRACE_PROBES, output)?)
            }
            Tracer::BpftracePrintf => {
                Self::Bpftrace(Bpftrace::start(BPFTRACE_PRINTF, BPFTRACE_PROBES, output)?)
            }
            Tracer::Strace => Self::Strace(output.to_path_buf()),
        })
    }

    /// The load command for this tracer: strace wraps it, the others watch
    /// from outside.
    pub(crate) fn load_command(
        &self,
        binaries: &Binaries,
        workload: Workload,
        count: u64,
        max_seconds: u64,
    ) -> Command {
        let Workload { mode, threads } = workload;
        match self {
            Self::Strace(output) => {
                let mut command = Command::new("strace");
                command
                    .args(["-f", "-e", "trace=connect", "-o"])
                    .arg(output)
                    .arg(&binaries.connect_load)
                    .args(load_args(mode, count, threads, max_seconds));
                command
            }
            _ => load_command(binaries, mode, count, threads, max_seconds),
        }
    }

    /// The kernel ids of the tracer's BPF programs; empty for none.
    pub(crate) fn programs(&self) -> &[u32] {
        match self {
            Self::Daemon(daemon) => &daemon.programs,
            Self::Bpftrace(bpftrace) => &bpftrace.programs,
            Self::None | Self::Strace(_) => &[],
        }
    }

    pub(crate) fn stop(&mut self) -> Result<()> {
        match self {
            Self::None | Self::Strace(_) => Ok(()),
            Self::Daemon(daemon) => daemon.stop().map(drop),
            Self::Bpftrace(bpftrace) => bpftrace.stop(),
        }
    }
}

/// A child killed if the bench fails while it runs.
pub(crate) struct KillOnDrop(pub(crate) Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

/// Sends SIGINT to `pid`.
fn interrupt(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -s INT {pid} failed ({status})");
    }
    Ok(())
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process (all its threads), from /proc/PID/stat, and
/// the length of the clock tick they are counted in.
fn cpu_time(pid: u32) -> Option<(Duration, Duration)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from after its closing one. utime and stime are fields
    // 14 and 15; field 3 (state) is the first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks_per_second = process::output(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100);
    let tick = Duration::from_nanos(1_000_000_000 / ticks_per_second);
    Some((
        tick.saturating_mul(u32::try_from(utime + stime).ok()?),
        tick,
    ))
}

/// CPU time of a live process's threads so far, in ns, from
/// `/proc/PID/task/*/schedstat` (the scheduler's own count, not rounded to
/// clock ticks). Threads that already exited are not in it.
fn thread_cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        // A thread may exit between listing and reading.
        let Ok(schedstat) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// The lines a child writes to a pipe, as they come.
fn lines_of(stream: Option<impl Read + Send + 'static>) -> Receiver<String> {
    let (sender, receiver) = channel();
    if let Some(stream) = stream {
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    receiver
}
