//! Starting and stopping the tracers (connect-trace, bpftrace, strace) and
//! reading what they report about themselves.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    Binaries,
    load::{load_args, load_command},
    plan::{Mode, Tracer},
};
use crate::process;

/// How long a tracer may take to attach before the bench gives up.
pub(crate) const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping tracer may take to exit before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// bpftrace prints "Attaching N probes..." before it attaches them; the two
/// tracepoints attach in milliseconds, this leaves a wide margin.
pub(crate) const BPFTRACE_SETTLE: Duration = Duration::from_millis(500);

/// How long to let the daemon drain after the load ends: many times its
/// 10 ms poll interval.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_millis(300);

/// The banner `connect-trace run` prints on stderr once attached.
pub(crate) const BANNER: &str = "tracing connect()";

/// The empty programs: what attaching to both tracepoints costs at least.
pub(crate) const BPFTRACE_EMPTY: &str =
    "tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect {}";

/// A printf-per-event tracer, as a user would write one.
pub(crate) const BPFTRACE_PRINTF: &str = r#"tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect { printf("%d %d %s %d\n", pid, tid, comm, args->ret); }"#;

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
            Tracer::BpftraceEmpty => Self::Bpftrace(Bpftrace::start(BPFTRACE_EMPTY, output)?),
            Tracer::BpftracePrintf => Self::Bpftrace(Bpftrace::start(BPFTRACE_PRINTF, output)?),
            Tracer::Strace => Self::Strace(output.to_path_buf()),
        })
    }

    /// The load command for this tracer: strace wraps it, the others watch
    /// from outside.
    pub(crate) fn load_command(
        &self,
        binaries: &Binaries,
        mode: Mode,
        count: u64,
        max_seconds: u64,
    ) -> Command {
        match self {
            Self::Strace(output) => {
                let mut command = Command::new("strace");
                command
                    .args(["-f", "-e", "trace=connect", "-o"])
                    .arg(output)
                    .arg(&binaries.connect_load)
                    .args(load_args(mode, count, 1, max_seconds));
                command
            }
            _ => load_command(binaries, mode, count, 1, max_seconds),
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

/// A running `connect-trace run --output FILE`.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) stderr: Receiver<String>,
    pub(crate) stderr_seen: Vec<String>,
    /// From spawning to the banner line: loading and attaching the programs.
    pub(crate) attach: Duration,
    pub(crate) running: bool,
}

/// What a stopped daemon reported about itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaemonEnd {
    /// Records lost because the ring buffer was full.
    pub(crate) lost: u64,
    /// Outcomes lost, where the daemon reports them.
    pub(crate) outcomes_lost: Option<u64>,
    /// utime + stime over its whole life.
    pub(crate) cpu: Duration,
    /// The clock tick `cpu` is counted in: its resolution.
    pub(crate) cpu_tick: Duration,
    /// Peak resident set (VmHWM) just before it was stopped.
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) attach: Duration,
}

impl Daemon {
    pub(crate) fn start(binaries: &Binaries, output: &Path, extra: &[String]) -> Result<Self> {
        let spawned = Instant::now();
        let mut child = Command::new(&binaries.connect_trace)
            .arg("run")
            .arg("--output")
            .arg(output)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binaries.connect_trace.display()))?;
        let stderr = lines_of(child.stderr.take());
        let mut daemon = Self {
            child,
            stderr,
            stderr_seen: Vec::new(),
            attach: Duration::ZERO,
            running: true,
        };
        loop {
            let waited = spawned.elapsed();
            let Some(left) = ATTACH_TIMEOUT.checked_sub(waited) else {
                bail!(
                    "connect-trace did not attach within {ATTACH_TIMEOUT:?}; stderr: {}",
                    daemon.stderr_seen.join(" | ")
                );
            };
            match daemon.stderr.recv_timeout(left) {
                Ok(line) => {
                    let attached = line.contains(BANNER);
                    daemon.stderr_seen.push(line);
                    if attached {
                        daemon.attach = spawned.elapsed();
                        return Ok(daemon);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "connect-trace exited before attaching: {}",
                    daemon.stderr_seen.join(" | ")
                ),
            }
        }
    }

    /// Reads its peak memory, stops it with SIGINT, reads its CPU time (the
    /// exited process stays readable in /proc until it is reaped) and its
    /// final counts.
    pub(crate) fn stop(&mut self) -> Result<DaemonEnd> {
        let pid = self.child.id();
        let peak_rss_kib = vm_hwm_kib(pid);
        interrupt(pid)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("connect-trace did not stop within {STOP_TIMEOUT:?} of SIGINT")
                }
            }
        }
        let cpu = cpu_time(pid);
        let status = self.child.wait().context("waiting for connect-trace")?;
        self.running = false;
        if !status.success() {
            bail!(
                "connect-trace failed ({status}): {}",
                self.stderr_seen.join(" | ")
            );
        }
        let last = self
            .stderr_seen
            .iter()
            .rev()
            .find(|line| line.contains("stopped;"))
            .with_context(|| {
                format!(
                    "connect-trace printed no final line: {}",
                    self.stderr_seen.join(" | ")
                )
            })?;
        let count = |suffix: &str| {
            count_before(last, suffix)
                .with_context(|| format!("no count before {suffix:?} in {last:?}"))
        };
        let (cpu, cpu_tick) = cpu.with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(DaemonEnd {
            lost: count(" lost (ring buffer full)")?,
            outcomes_lost: count_before(last, " outcomes lost"),
            cpu,
            cpu_tick,
            peak_rss_kib,
            attach: self.attach,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running {
            // Only on an error path: the bench is failing already.
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}

/// A running bpftrace, its stdout going to a file.
pub(crate) struct Bpftrace {
    pub(crate) child: Child,
    pub(crate) stderr: Receiver<String>,
    pub(crate) running: bool,
}

impl Bpftrace {
    pub(crate) fn start(program: &str, output: &Path) -> Result<Self> {
        let stdout =
            File::create(output).with_context(|| format!("creating {}", output.display()))?;
        let mut child = Command::new("bpftrace")
            .args(["-e", program])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace")?;
        let stderr = lines_of(child.stderr.take());
        let mut bpftrace = Self {
            child,
            stderr,
            running: true,
        };
        let started = Instant::now();
        loop {
            // It prints this on stdout, to the file.
            if fs::read_to_string(output).is_ok_and(|text| text.contains("Attaching ")) {
                thread::sleep(BPFTRACE_SETTLE);
                return Ok(bpftrace);
            }
            if let Some(status) = bpftrace.child.try_wait().context("watching bpftrace")? {
                bpftrace.running = false;
                let stderr: Vec<String> = bpftrace.stderr.try_iter().collect();
                bail!(
                    "bpftrace exited ({status}) before attaching: {}",
                    stderr.join(" | ")
                );
            }
            if started.elapsed() > ATTACH_TIMEOUT {
                bail!("bpftrace did not attach within {ATTACH_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) -> Result<()> {
        interrupt(self.child.id())?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for bpftrace")? {
                self.running = false;
                if !status.success() {
                    let stderr: Vec<String> = self.stderr.try_iter().collect();
                    bail!("bpftrace failed ({status}): {}", stderr.join(" | "));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not stop within {STOP_TIMEOUT:?} of SIGINT");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if self.running {
            drop(self.child.kill());
            drop(self.child.wait());
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

/// Counts connect-trace's JSON lines per `"pid"`.
pub(crate) fn lines_per_pid(path: &Path) -> Result<HashMap<u32, u64>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut counts = HashMap::new();
    // Lines are split as bytes: a record is valid UTF-8, but nothing here
    // should fail if one were not.
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Some(pid) = record_pid(&line) {
            *counts.entry(pid).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// The `"pid"` of one `connect` record line; `None` for other lines
/// (summaries, which list pids of their own). `type` is the first key and
/// `pid` the first key named so: both come before any string a process
/// controls, and quotes inside strings are escaped, so a process name
/// cannot forge them.
pub(crate) fn record_pid(line: &[u8]) -> Option<u32> {
    const TYPE: &[u8] = b"{\"type\":\"connect\",";
    const KEY: &[u8] = b"\"pid\":";
    if !line.starts_with(TYPE) {
        return None;
    }
    let start = line.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let digits: Vec<u8> = line[start..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The number just before `suffix` in `line`.
pub(crate) fn count_before(line: &str, suffix: &str) -> Option<u64> {
    let end = line.find(suffix)?;
    line[..end]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Sends SIGINT to `pid`.
pub(crate) fn interrupt(pid: u32) -> Result<()> {
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
pub(crate) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process (all its threads), from /proc/PID/stat, and
/// the length of the clock tick they are counted in.
pub(crate) fn cpu_time(pid: u32) -> Option<(Duration, Duration)> {
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

/// The lines a child writes to a pipe, as they come.
pub(crate) fn lines_of(stream: Option<impl Read + Send + 'static>) -> Receiver<String> {
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

#[cfg(test)]
mod tests {
    use super::{count_before, record_pid};

    #[test]
    fn reads_the_daemon_final_line() {
        let line = "connect-trace: stopped; 1234 records written, 56 lost (ring buffer full), 0 undecodable, 0 exits without entry";
        assert_eq!(count_before(line, " records written"), Some(1234));
        assert_eq!(count_before(line, " lost (ring buffer full)"), Some(56));
    }

    #[test]
    fn reads_the_record_pid_not_a_forged_one() {
        let line = br#"{"type":"connect","ts":"x","pid":11414,"tid":11414,"comm":"a\"pid\":9"}"#;
        assert_eq!(record_pid(line), Some(11414));
        let summary = br#"{"type":"summary","top_processes":[{"pid":11414}]}"#;
        assert_eq!(record_pid(summary), None);
        assert_eq!(record_pid(b"Attaching 2 probes..."), None);
    }
}
