//! `cargo xtask bench`: what tracing costs each `connect()`, against the
//! tools a user would reach for instead, and whether the daemon keeps up.
//!
//! One session, in this order:
//!
//! 1. Build `connect-trace` and `connect-load` in release.
//! 2. Rounds: each round runs every tracer in turn (none, connect-trace,
//!    bpftrace empty, bpftrace printf, strace), and under each tracer the
//!    load generator once per mode, in one thread. Alternating rounds
//!    rather than all runs of one tracer in a row spread the machine's drift
//!    over every row; each cell is a median over the rounds, paired with the
//!    untraced run of the same round.
//! 3. Rate: the load on every core with `connect-trace --pid` running,
//!    once with the default ring buffer (nothing may be lost) and once with
//!    a 4 KiB one (losses must be counted exactly).
//! 4. A Markdown report on stdout, and with `--write-docs` in
//!    `docs/performance.md`.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs::{self, File},
    io::{BufRead as _, BufReader, Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

use crate::{process, toolchain};

/// How long a tracer may take to attach before the bench gives up.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping tracer may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// bpftrace prints "Attaching N probes..." before it attaches them; the two
/// tracepoints attach in milliseconds, this leaves a wide margin.
const BPFTRACE_SETTLE: Duration = Duration::from_millis(500);

/// How long to let the daemon drain after the load ends: many times its
/// 10 ms poll interval.
const DRAIN_WAIT: Duration = Duration::from_millis(300);

/// The undersized ring buffer of the loss-accounting run: room for a dozen
/// or so records.
const SMALL_RING_BUFFER: u32 = 4096;

/// The banner `connect-trace run` prints on stderr once attached.
const BANNER: &str = "tracing connect()";

/// The empty programs: what attaching to both tracepoints costs at least.
const BPFTRACE_EMPTY: &str =
    "tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect {}";

/// A printf-per-event tracer, as a user would write one.
const BPFTRACE_PRINTF: &str = r#"tracepoint:syscalls:sys_enter_connect {} tracepoint:syscalls:sys_exit_connect { printf("%d %d %s %d\n", pid, tid, comm, args->ret); }"#;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// connect() calls per load run (one thread).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,

    /// Rounds over every tracer; each figure is a median over them.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    repetitions: u32,

    /// Longest one load run may take, in seconds: the slow tracers (strace)
    /// stop at this before making --count calls.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=600))]
    max_seconds: u64,

    /// Modes to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "refused,ok,nonblocking-ok,udp,unix"
    )]
    modes: Vec<Mode>,

    /// connect() calls for each throughput and loss run (on every core).
    #[arg(long, default_value_t = 400_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate_count: u64,

    /// Longest a throughput and loss run may take, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    rate_max_seconds: u64,

    /// Mode of the throughput and loss runs. Default: the fastest mode
    /// measured without a tracer (the highest event rate).
    #[arg(long, value_enum)]
    rate_mode: Option<Mode>,

    /// Also write the report to docs/performance.md.
    #[arg(long)]
    write_docs: bool,
}

/// The `connect-load --mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
enum Mode {
    Refused,
    Ok,
    NonblockingOk,
    Udp,
    Unix,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Ok => "ok",
            Self::NonblockingOk => "nonblocking-ok",
            Self::Udp => "udp",
            Self::Unix => "unix",
        }
    }

    fn description(self) -> &'static str {
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
enum Tracer {
    None,
    ConnectTrace,
    ConnectTraceSummary,
    BpftraceEmpty,
    BpftracePrintf,
    Strace,
}

const TRACERS: [Tracer; 6] = [
    Tracer::None,
    Tracer::ConnectTrace,
    Tracer::ConnectTraceSummary,
    Tracer::BpftraceEmpty,
    Tracer::BpftracePrintf,
    Tracer::Strace,
];

impl Tracer {
    fn label(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::ConnectTrace => "connect-trace, every event as JSON to a file",
            Self::ConnectTraceSummary => "connect-trace --summary-only",
            Self::BpftraceEmpty => "bpftrace, empty enter + exit programs (the floor)",
            Self::BpftracePrintf => "bpftrace, printf per event to a file",
            Self::Strace => "strace -f -e trace=connect, to a file",
        }
    }

    fn is_connect_trace(self) -> bool {
        matches!(self, Self::ConnectTrace | Self::ConnectTraceSummary)
    }
}

/// The two binaries under test.
struct Binaries {
    connect_trace: PathBuf,
    connect_load: PathBuf,
}

/// Runs the whole bench and prints the report.
pub fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    if !process::is_root() {
        bail!(
            "the bench loads eBPF programs and runs bpftrace and strace: run it as root \
             (sudo -E cargo xtask bench)"
        );
    }
    let started = Instant::now();
    let binaries = build(root)?;
    let scratch = Scratch::create(&target_dir(root).join("bench"))?;
    let mut modes = Vec::new();
    for mode in &args.modes {
        if !modes.contains(mode) {
            modes.push(*mode);
        }
    }
    if modes.is_empty() {
        bail!("--modes names no mode");
    }
    let mut notes = Vec::new();
    let mut tracers = Vec::new();
    for tracer in TRACERS {
        match unavailable(tracer, &binaries) {
            Some(reason) => notes.push(format!("{}: skipped, {reason}.", tracer.label())),
            None => tracers.push(tracer),
        }
    }

    eprintln!("bench: warming up");
    for &mode in &modes {
        run_load(&mut load_command(
            &binaries,
            mode,
            (args.count / 10).max(1),
            1,
            1,
        ))?;
    }
    let mut rounds = Rounds::default();
    for round in 0..args.repetitions {
        eprintln!("bench: round {} of {}", round + 1, args.repetitions);
        for &tracer in &tracers {
            if !rounds.failed.contains_key(&tracer) {
                let plan = RoundPlan {
                    binaries: &binaries,
                    scratch: &scratch,
                    args,
                    modes: &modes,
                    round,
                };
                run_round(&plan, tracer, &mut rounds)?;
            }
        }
    }
    for (tracer, reason) in &rounds.failed {
        notes.push(format!("{}: failed, left out: {reason}", tracer.label()));
    }

    let threads = thread::available_parallelism().map_or(1, usize::from);
    eprintln!("bench: untraced rate of each mode in {threads} threads");
    let probes = probe_rates(&binaries, args, &modes, threads)?;
    let rate_mode = args
        .rate_mode
        .or_else(|| probes.first().map(|(mode, _)| *mode))
        .unwrap_or(Mode::Refused);
    let mut rates = Vec::new();
    for ring_buffer in [None, Some(SMALL_RING_BUFFER)] {
        let plan = RatePlan {
            mode: rate_mode,
            threads,
            count: args.rate_count,
            max_seconds: args.rate_max_seconds,
            ring_buffer,
        };
        let rate = rate_run(&binaries, &scratch, plan)?;
        rounds.attach.push(rate.daemon.attach);
        rates.push(rate);
    }

    let report = Report {
        args,
        modes: &modes,
        tracers: &tracers,
        rounds: &rounds,
        rates: &rates,
        probes: &probes,
        notes: &notes,
        machine: Machine::describe(),
        elapsed: started.elapsed(),
    }
    .render();
    print!("{report}");
    if args.write_docs {
        let path = root.join("docs/performance.md");
        // Sections measured by other means (the DNS capture's cost per
        // packet) follow the generated part; keep them.
        let kept = fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(KEPT_SECTIONS).map(|at| old[at..].to_owned()))
            .unwrap_or_default();
        let report = if kept.is_empty() {
            report
        } else {
            format!("{report}{kept}")
        };
        fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Where docs/performance.md's hand-measured sections begin; the bench
/// keeps everything from this heading on when it rewrites the file.
const KEPT_SECTIONS: &str = "## DNS names";

/// Builds both binaries in release and finds them.
fn build(root: &Path) -> Result<Binaries> {
    process::run(toolchain::cargo(root).args([
        "build",
        "--release",
        "--package",
        "connect-trace",
        "--package",
        "connect-load",
    ]))?;
    let release = target_dir(root).join("release");
    let binaries = Binaries {
        connect_trace: release.join("connect-trace"),
        connect_load: release.join("connect-load"),
    };
    for binary in [&binaries.connect_trace, &binaries.connect_load] {
        if !binary.is_file() {
            bail!(
                "{} is missing after the build (is CARGO_TARGET_DIR what the build used?)",
                binary.display()
            );
        }
    }
    Ok(binaries)
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (relative to the
/// workspace, where the build runs) or `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Why `tracer` cannot run here, if it cannot.
fn unavailable(tracer: Tracer, binaries: &Binaries) -> Option<String> {
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

/// What the load generator printed about one run.
#[derive(Clone, Debug)]
struct LoadResult {
    pid: u32,
    calls: u64,
    calls_per_sec: f64,
    ns_per_call: f64,
    connect_ns: f64,
    /// The `errors` object as printed, `{}` when every call went as expected.
    errors: String,
    cut_short: bool,
}

/// A `connect-load` command.
fn load_command(
    binaries: &Binaries,
    mode: Mode,
    count: u64,
    threads: usize,
    max_seconds: u64,
) -> Command {
    let mut command = Command::new(&binaries.connect_load);
    command.args(load_args(mode, count, threads, max_seconds));
    command
}

fn load_args(mode: Mode, count: u64, threads: usize, max_seconds: u64) -> Vec<String> {
    vec![
        "--mode".to_owned(),
        mode.name().to_owned(),
        "--count".to_owned(),
        count.to_string(),
        "--threads".to_owned(),
        threads.to_string(),
        "--max-seconds".to_owned(),
        max_seconds.to_string(),
    ]
}

/// Runs a load command to the end and reads its summary line.
fn run_load(command: &mut Command) -> Result<LoadResult> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .context("starting connect-load")?;
    if !output.status.success() {
        bail!(
            "connect-load failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_load(&String::from_utf8_lossy(&output.stdout))
}

fn parse_load(stdout: &str) -> Result<LoadResult> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("connect-load printed no summary: {stdout:?}"))?;
    let number = |key: &str| -> Result<f64> {
        json_field(line, key)
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no number {key:?} in connect-load's summary {line}"))
    };
    let integer = |key: &str| -> Result<u64> {
        json_field(line, key)
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no integer {key:?} in connect-load's summary {line}"))
    };
    Ok(LoadResult {
        pid: u32::try_from(integer("pid")?).context("connect-load's pid is out of range")?,
        calls: integer("calls")?,
        calls_per_sec: number("calls_per_sec")?,
        ns_per_call: number("ns_per_call")?,
        connect_ns: number("connect_ns_per_call")?,
        errors: json_field(line, "errors").unwrap_or("{}").to_owned(),
        cut_short: json_field(line, "stopped_by") == Some("\"time\""),
    })
}

/// The raw text of `key`'s value in a flat JSON object line: a number, a
/// string with its quotes, or an object without nested objects. Enough for
/// the lines `connect-load` prints; xtask has no JSON parser.
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let start = line.find(&pattern)? + pattern.len();
    let rest = &line[start..];
    let end = if rest.starts_with('{') {
        rest.find('}')? + 1
    } else if let Some(string) = rest.strip_prefix('"') {
        string.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

/// One load run inside the rounds.
#[derive(Debug)]
struct Sample {
    round: u32,
    mode: Mode,
    tracer: Tracer,
    load: LoadResult,
}

/// What connect-trace delivered during the rounds.
#[derive(Debug, Default)]
struct Delivery {
    generated: u64,
    delivered: u64,
    lost: u64,
}

/// Everything the rounds measured.
#[derive(Debug, Default)]
struct Rounds {
    samples: Vec<Sample>,
    deliveries: BTreeMap<Tracer, Delivery>,
    /// connect-trace start-up times, spawn to banner.
    attach: Vec<Duration>,
    /// Tools that were installed but would not start, and why.
    failed: BTreeMap<Tracer, String>,
}

impl Rounds {
    fn sample(&self, round: u32, mode: Mode, tracer: Tracer) -> Option<&LoadResult> {
        self.samples
            .iter()
            .find(|sample| sample.round == round && sample.mode == mode && sample.tracer == tracer)
            .map(|sample| &sample.load)
    }

    /// How many rounds have samples.
    fn rounds(&self) -> u32 {
        self.samples
            .iter()
            .map(|sample| sample.round + 1)
            .max()
            .unwrap_or(0)
    }
}

/// What a round runs, apart from the tracer.
struct RoundPlan<'a> {
    binaries: &'a Binaries,
    scratch: &'a Scratch,
    args: &'a BenchArgs,
    modes: &'a [Mode],
    round: u32,
}

/// Runs every mode once under `tracer`. A tool other than connect-trace
/// that fails is left out of the later rounds, with the reason in
/// `rounds.failed`.
fn run_round(plan: &RoundPlan<'_>, tracer: Tracer, rounds: &mut Rounds) -> Result<()> {
    let output = plan.scratch.path(&format!("{tracer:?}.out"));
    let result = run_tracer_round(plan, tracer, &output, rounds);
    remove_if_present(&output)?;
    match result {
        Err(error) if !tracer.is_connect_trace() => {
            eprintln!("bench: {}: {error:#}; leaving it out", tracer.label());
            rounds.failed.insert(tracer, format!("{error:#}"));
            Ok(())
        }
        result => result,
    }
}

fn run_tracer_round(
    plan: &RoundPlan<'_>,
    tracer: Tracer,
    output: &Path,
    rounds: &mut Rounds,
) -> Result<()> {
    let mut session = Session::start(tracer, plan.binaries, output)?;
    if let Session::Daemon(daemon) = &session {
        rounds.attach.push(daemon.attach);
    }
    let mut loads = Vec::new();
    for &mode in plan.modes {
        let mut command =
            session.load_command(plan.binaries, mode, plan.args.count, plan.args.max_seconds);
        let load = run_load(&mut command)
            .with_context(|| format!("{} under {}", mode.name(), tracer.label()))?;
        eprintln!(
            "bench:   {:<52} {:<15} {:>9.0} ns per call{}",
            tracer.label(),
            mode.name(),
            load.ns_per_call,
            if load.errors == "{}" {
                String::new()
            } else {
                format!(", unexpected outcomes {}", load.errors)
            }
        );
        loads.push(load.clone());
        rounds.samples.push(Sample {
            round: plan.round,
            mode,
            tracer,
            load,
        });
    }
    let Session::Daemon(daemon) = &mut session else {
        return session.stop();
    };
    thread::sleep(DRAIN_WAIT);
    let end = daemon.stop()?;
    // Only the JSON row writes a record per event to count.
    let per_pid = if tracer == Tracer::ConnectTrace {
        lines_per_pid(output)?
    } else {
        HashMap::new()
    };
    let delivery = rounds.deliveries.entry(tracer).or_default();
    for load in &loads {
        delivery.generated += load.calls;
        delivery.delivered += per_pid.get(&load.pid).copied().unwrap_or(0);
    }
    delivery.lost += end.lost;
    Ok(())
}

/// A tracer running (or ready to wrap the load) for one round.
enum Session {
    None,
    Daemon(Daemon),
    Bpftrace(Bpftrace),
    Strace(PathBuf),
}

impl Session {
    fn start(tracer: Tracer, binaries: &Binaries, output: &Path) -> Result<Self> {
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
    fn load_command(
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

    fn stop(&mut self) -> Result<()> {
        match self {
            Self::None | Self::Strace(_) => Ok(()),
            Self::Daemon(daemon) => daemon.stop().map(drop),
            Self::Bpftrace(bpftrace) => bpftrace.stop(),
        }
    }
}

/// A running `connect-trace run --output FILE`.
struct Daemon {
    child: Child,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
    /// From spawning to the banner line: loading and attaching the programs.
    attach: Duration,
    running: bool,
}

/// What a stopped daemon reported about itself.
#[derive(Debug, Clone, Copy)]
struct DaemonEnd {
    /// Records lost because the ring buffer was full.
    lost: u64,
    /// Outcomes lost, where the daemon reports them.
    outcomes_lost: Option<u64>,
    /// utime + stime over its whole life.
    cpu: Duration,
    /// The clock tick `cpu` is counted in: its resolution.
    cpu_tick: Duration,
    /// Peak resident set (VmHWM) just before it was stopped.
    peak_rss_kib: Option<u64>,
    attach: Duration,
}

impl Daemon {
    fn start(binaries: &Binaries, output: &Path, extra: &[String]) -> Result<Self> {
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
    fn stop(&mut self) -> Result<DaemonEnd> {
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
struct Bpftrace {
    child: Child,
    stderr: Receiver<String>,
    running: bool,
}

impl Bpftrace {
    fn start(program: &str, output: &Path) -> Result<Self> {
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

    fn stop(&mut self) -> Result<()> {
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
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

/// One throughput and loss run.
#[derive(Debug, Clone, Copy)]
struct RatePlan {
    mode: Mode,
    threads: usize,
    count: u64,
    max_seconds: u64,
    /// `--ring-buffer-size`; `None` for the default.
    ring_buffer: Option<u32>,
}

/// What a throughput and loss run measured.
#[derive(Debug)]
struct Rate {
    plan: RatePlan,
    load: LoadResult,
    /// Lines in the output file from the load generator's pid.
    delivered: u64,
    daemon: DaemonEnd,
}

/// Starts the load generator paused, attaches `connect-trace --pid` to it,
/// then lets it go on every core.
fn rate_run(binaries: &Binaries, scratch: &Scratch, plan: RatePlan) -> Result<Rate> {
    eprintln!(
        "bench: rate run, {} in {} threads, ring buffer {}",
        plan.mode.name(),
        plan.threads,
        ring_buffer_label(plan.ring_buffer),
    );
    let output = scratch.path("rate.out");
    remove_if_present(&output)?;
    let mut load = KillOnDrop(Some(
        load_command(
            binaries,
            plan.mode,
            plan.count,
            plan.threads,
            plan.max_seconds,
        )
        .arg("--start-on-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting connect-load")?,
    ));
    let Some(child) = load.0.as_mut() else {
        bail!("connect-load vanished");
    };
    let pid = child.id();
    let mut extra = vec!["--pid".to_owned(), pid.to_string()];
    if let Some(bytes) = plan.ring_buffer {
        extra.extend(["--ring-buffer-size".to_owned(), bytes.to_string()]);
    }
    let mut daemon = Daemon::start(binaries, &output, &extra)?;
    child
        .stdin
        .take()
        .context("connect-load has no stdin")?
        .write_all(b"go\n")
        .context("starting connect-load's calls")?;
    let Some(child) = load.0.take() else {
        bail!("connect-load vanished");
    };
    let finished = child
        .wait_with_output()
        .context("waiting for connect-load")?;
    if !finished.status.success() {
        bail!(
            "connect-load failed ({}): {}",
            finished.status,
            String::from_utf8_lossy(&finished.stderr).trim()
        );
    }
    let load = parse_load(&String::from_utf8_lossy(&finished.stdout))?;
    thread::sleep(DRAIN_WAIT);
    let end = daemon.stop()?;
    let delivered = lines_per_pid(&output)?.get(&pid).copied().unwrap_or(0);
    remove_if_present(&output)?;
    Ok(Rate {
        plan,
        load,
        delivered,
        daemon: end,
    })
}

/// Each mode's untraced calls per second in `threads` threads, fastest
/// first: the fastest makes the highest event rate for the rate runs. One
/// thread's speed does not tell: some modes contend on shared kernel state
/// and get slower with a second thread.
fn probe_rates(
    binaries: &Binaries,
    args: &BenchArgs,
    modes: &[Mode],
    threads: usize,
) -> Result<Vec<(Mode, f64)>> {
    let mut rates = Vec::new();
    for &mode in modes {
        let load = run_load(&mut load_command(
            binaries,
            mode,
            (args.rate_count / 4).max(1),
            threads,
            1,
        ))?;
        rates.push((mode, load.calls_per_sec));
    }
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rates)
}

/// Counts connect-trace's JSON lines per `"pid"`.
fn lines_per_pid(path: &Path) -> Result<HashMap<u32, u64>> {
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
fn record_pid(line: &[u8]) -> Option<u32> {
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
fn count_before(line: &str, suffix: &str) -> Option<u64> {
    let end = line.find(suffix)?;
    line[..end]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
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

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A scratch directory for tracer output, removed at the end. It sits in
/// the target directory, on disk: the outputs reach a few hundred MB, too
/// much for a tmpfs /tmp.
struct Scratch(PathBuf);

impl Scratch {
    fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            fs::remove_dir_all(path).with_context(|| format!("clearing {}", path.display()))?;
        }
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(fs::remove_dir_all(&self.0));
    }
}

/// Median, minimum and maximum of some measurements.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn median(values: &[f64]) -> Option<Stat> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    Some(Stat { median, min, max })
}

/// 1.4826 × the median absolute deviation: the standard deviation of
/// normally distributed values, but barely moved by one outlier (a round
/// that met a burst of other work). 0 for fewer than two values.
fn robust_spread(values: &[f64]) -> f64 {
    let Some(center) = median(values) else {
        return 0.0;
    };
    let deviations: Vec<f64> = values
        .iter()
        .map(|value| (value - center.median).abs())
        .collect();
    median(&deviations).map_or(0.0, |stat| 1.4826 * stat.median)
}

/// The machine the numbers come from.
struct Machine {
    cpus: usize,
    kernel: String,
    cpu_model: String,
    date: String,
}

impl Machine {
    fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, model)| model.trim().to_owned(),
            );
        Self {
            cpus: thread::available_parallelism().map_or(1, usize::from),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned()),
            cpu_model,
            date: process::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .map_or_else(|| "unknown date".to_owned(), |text| text.trim().to_owned()),
        }
    }
}

/// Everything the report is made from.
struct Report<'a> {
    args: &'a BenchArgs,
    modes: &'a [Mode],
    tracers: &'a [Tracer],
    rounds: &'a Rounds,
    rates: &'a [Rate],
    /// Untraced calls per second of each mode on every core, fastest first.
    probes: &'a [(Mode, f64)],
    notes: &'a [String],
    machine: Machine,
    elapsed: Duration,
}

/// One cost cell's measurements over the rounds, each paired with the
/// untraced run (and the floor run) of the same round.
#[derive(Default)]
struct Cost {
    per_call: Vec<f64>,
    in_connect: Vec<f64>,
    added: Vec<f64>,
    over_floor: Vec<f64>,
    over_connect: Vec<f64>,
    errors: Vec<String>,
    cut_short: u32,
}

impl Report<'_> {
    fn cost(&self, mode: Mode, tracer: Tracer) -> Cost {
        let mut cost = Cost::default();
        for round in 0..self.rounds.rounds() {
            let Some(load) = self.rounds.sample(round, mode, tracer) else {
                continue;
            };
            cost.per_call.push(load.ns_per_call);
            cost.in_connect.push(load.connect_ns);
            cost.cut_short += u32::from(load.cut_short);
            if load.errors != "{}" {
                cost.errors.push(load.errors.clone());
            }
            let Some(bare) = self.rounds.sample(round, mode, Tracer::None) else {
                continue;
            };
            let added = load.ns_per_call - bare.ns_per_call;
            cost.added.push(added);
            cost.over_connect.push(added / bare.connect_ns);
            if let Some(floor) = self.rounds.sample(round, mode, Tracer::BpftraceEmpty) {
                let floor_added = floor.ns_per_call - bare.ns_per_call;
                if floor_added > 0.0 {
                    cost.over_floor.push(added / floor_added);
                }
            }
        }
        cost
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        self.render_costs(&mut out);
        self.render_rates(&mut out);
        self.render_startup(&mut out);
        self.render_targets(&mut out);
        self.render_notes(&mut out);
        out
    }

    fn render_header(&self, out: &mut String) {
        let Machine {
            cpus,
            kernel,
            cpu_model,
            date,
        } = &self.machine;
        let command: Vec<String> = std::env::args().skip(1).collect();
        let _ = writeln!(out, "# Performance\n");
        let _ = writeln!(
            out,
            "What tracing costs each `connect()`, next to the tools one would use instead, \
             and whether the daemon keeps up. Generated by `cargo xtask bench`; do not edit \
             by hand.\n"
        );
        let _ = writeln!(
            out,
            "- Measured: {date}, in {:.0} s.",
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(out, "- Machine: {cpus} CPUs ({cpu_model}), Linux {kernel}.");
        let _ = writeln!(
            out,
            "- Reproduce (as root, on a quiet machine): `cargo xtask {}`",
            command.join(" ")
        );
        let _ = writeln!(
            out,
            "- Settings: {} rounds; {} calls per run in one thread, each run stopped after \
             {} s at most; throughput runs of {} calls in {} threads.\n",
            self.rounds.rounds(),
            self.args.count,
            self.args.max_seconds,
            self.args.rate_count,
            self.rates.first().map_or(0, |rate| rate.plan.threads),
        );
        let _ = writeln!(
            out,
            "How to read the cost tables: the load generator (`connect-load`) runs \
             `socket()`, `connect()`, `close()` in a loop on loopback. *Per iteration* is \
             the mean time of one loop; *inside connect()* is the time spent in the \
             `connect()` call alone. *Added* is per iteration minus the untraced run of the \
             same round, so it includes what every other syscall pays while a syscall \
             tracepoint is attached (the slow path). The *floor* is bpftrace with empty \
             programs on `sys_enter_connect` and `sys_exit_connect`: no tracer on those \
             tracepoints can add less. *÷ bare connect()* divides the added time by the \
             untraced time inside `connect()`. Ratios are taken round by round; a round \
             whose floor came out at or below zero (noise) gives no floor ratio. Each round \
             runs every tracer in turn (A B A B ...); cells are medians over the rounds, \
             with (min–max).\n"
        );
    }

    fn render_costs(&self, out: &mut String) {
        let _ = writeln!(out, "## Cost per connect()\n");
        for &mode in self.modes {
            let _ = writeln!(out, "### `{}`: {}\n", mode.name(), mode.description());
            let _ = writeln!(
                out,
                "| tracer | ns per iteration | ns inside connect() | ns added | added ÷ floor | \
                 added ÷ bare connect() |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
            for tracer in TRACERS {
                if !self.tracers.contains(&tracer) || self.rounds.failed.contains_key(&tracer) {
                    let _ = writeln!(out, "| {} | skipped (see notes) | | | | |", tracer.label());
                    continue;
                }
                let cost = self.cost(mode, tracer);
                let (added, over_floor, over_connect) = if tracer == Tracer::None {
                    ("—".to_owned(), "—".to_owned(), "—".to_owned())
                } else {
                    let mut over_floor = cell(&cost.over_floor, format_ratio);
                    if !cost.over_floor.is_empty() && cost.over_floor.len() < cost.added.len() {
                        // Rounds where the floor came out at or below zero
                        // have no ratio.
                        let _ = write!(
                            over_floor,
                            " [{} of {} rounds]",
                            cost.over_floor.len(),
                            cost.added.len()
                        );
                    }
                    (
                        cell(&cost.added, format_ns),
                        over_floor,
                        cell(&cost.over_connect, format_percent),
                    )
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {added} | {over_floor} | {over_connect} |",
                    tracer.label(),
                    cell(&cost.per_call, format_ns),
                    cell(&cost.in_connect, format_ns),
                );
            }
            let _ = writeln!(
                out,
                "\nNoise: the untraced runs vary by ±{} ns per iteration between rounds (1.48 × \
                 their median absolute deviation, which one outlying round does not sway); \
                 added costs below that are not resolved.\n",
                format_ns(self.noise(mode))
            );
        }
        let deliveries: Vec<String> = self
            .rounds
            .deliveries
            .iter()
            .map(|(tracer, delivery)| {
                if *tracer == Tracer::ConnectTrace {
                    format!(
                        "{}: {} of {} calls delivered, {} lost",
                        tracer.label(),
                        group(delivery.delivered),
                        group(delivery.generated),
                        group(delivery.lost)
                    )
                } else {
                    format!(
                        "{}: {} of {} calls lost",
                        tracer.label(),
                        group(delivery.lost),
                        group(delivery.generated)
                    )
                }
            })
            .collect();
        if !deliveries.is_empty() {
            let _ = writeln!(
                out,
                "Delivery during these runs (records in the output file from the load \
                 generators' pids): {}.\n",
                deliveries.join("; ")
            );
        }
    }

    fn render_rates(&self, out: &mut String) {
        let Some(first) = self.rates.first() else {
            return;
        };
        let _ = writeln!(out, "## Throughput and loss at the highest rate\n");
        let _ = writeln!(
            out,
            "`connect-load --mode {} --threads {}` (every core) with `connect-trace run \
             --pid PID --output FILE` attached before the first call. *Delivered* counts \
             the lines in the file from that pid; *lost* is the daemon's own count from its \
             last stderr line. CPU is the daemon's utime + stime from `/proc/PID/stat` \
             (clock-tick resolution), peak RSS its VmHWM just before it was stopped.\n",
            first.plan.mode.name(),
            first.plan.threads,
        );
        let probes: Vec<String> = self
            .probes
            .iter()
            .map(|(mode, rate)| format!("`{}` {}", mode.name(), group(rate.round() as u64)))
            .collect();
        let _ = writeln!(
            out,
            "Untraced calls per second of each mode in {} threads, fastest first: {}.\n",
            first.plan.threads,
            probes.join(", ")
        );
        let _ = writeln!(
            out,
            "| ring buffer | calls/s | generated | delivered | lost | generated = delivered \
             + lost | daemon CPU per delivered event | daemon peak RSS |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|");
        for rate in self.rates {
            let balance = rate.delivered + rate.daemon.lost;
            let check = if balance == rate.load.calls {
                "yes".to_owned()
            } else {
                format!(
                    "**no**: {} unaccounted",
                    i128::from(rate.load.calls) - i128::from(balance)
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {check} | {} | {} |",
                ring_buffer_label(rate.plan.ring_buffer),
                group(rate.load.calls_per_sec.round() as u64),
                group(rate.load.calls),
                group(rate.delivered),
                group(rate.daemon.lost),
                cpu_per_event(rate).map_or_else(|| "—".to_owned(), format_cpu),
                rate.daemon
                    .peak_rss_kib
                    .map_or_else(|| "unknown".to_owned(), format_mib),
            );
        }
        let _ = writeln!(out);
        for rate in self.rates {
            if let Some(lost) = rate.daemon.outcomes_lost.filter(|lost| *lost > 0) {
                let _ = writeln!(
                    out,
                    "With the {} ring buffer the daemon also reported {} outcomes lost (records \
                     written without their final outcome).\n",
                    ring_buffer_label(rate.plan.ring_buffer),
                    group(lost)
                );
            }
        }
    }

    fn render_startup(&self, out: &mut String) {
        let times: Vec<f64> = self
            .rounds
            .attach
            .iter()
            .map(|time| time.as_secs_f64() * 1e3)
            .collect();
        let _ = writeln!(out, "## Start-up\n");
        let _ = writeln!(
            out,
            "From spawning `connect-trace run` to its banner line (programs loaded and \
             attached), over {} starts: {} ms.\n",
            times.len(),
            cell(&times, |ms| format!("{ms:.0}")),
        );
    }

    fn render_targets(&self, out: &mut String) {
        let _ = writeln!(out, "## Targets\n");
        let _ = writeln!(out, "| target | measured | verdict |");
        let _ = writeln!(out, "|---|---|---|");
        self.render_cost_targets(out);
        let full_rate = self
            .rates
            .iter()
            .find(|rate| rate.plan.ring_buffer.is_none());
        row(
            out,
            &format!(
                "zero lost events at the highest rate {} threads can produce",
                full_rate.map_or(0, |rate| rate.plan.threads)
            ),
            full_rate.map(|rate| {
                (
                    format!(
                        "{} lost of {} ({} calls/s)",
                        group(rate.daemon.lost),
                        group(rate.load.calls),
                        group(rate.load.calls_per_sec.round() as u64)
                    ),
                    if rate.daemon.lost == 0 {
                        "met".to_owned()
                    } else {
                        format!(
                            "**missed**: {:.2}% lost",
                            rate.daemon.lost as f64 * 100.0 / rate.load.calls.max(1) as f64
                        )
                    },
                )
            }),
        );
        row(
            out,
            "daemon CPU < 1 µs per delivered event",
            full_rate.and_then(cpu_per_event).map(|(ns, resolution)| {
                (
                    format_cpu((ns, resolution)),
                    verdict_in_band(
                        &Band {
                            median: ns,
                            low: ns - resolution,
                            high: ns + resolution,
                            width: "clock-tick resolution",
                        },
                        1000.0,
                        |ns| format!("{} ns", format_ns(ns)),
                    ),
                )
            }),
        );
        row(
            out,
            "daemon peak RSS < 32 MiB",
            full_rate
                .and_then(|rate| rate.daemon.peak_rss_kib)
                .map(|kib| (format_mib(kib), verdict_at_most(kib as f64, 32.0 * 1024.0))),
        );
        let attach: Vec<f64> = self
            .rounds
            .attach
            .iter()
            .map(|time| time.as_secs_f64() * 1e3)
            .collect();
        row(
            out,
            "attach < 200 ms",
            median(&attach).map(|stat| {
                (
                    format!("{} ms", cell_of(stat, |ms| format!("{ms:.0}"))),
                    verdict_at_most(stat.median, 200.0),
                )
            }),
        );
        let _ = writeln!(out);
    }

    /// The two targets on the cost of one `refused` connect(). A verdict
    /// is "met" or "missed" only when it holds across the spread of the
    /// rounds (added ± spread, floor ± spread, see [`robust_spread`]);
    /// otherwise it says which way the medians point and that the
    /// difference is not resolved.
    fn render_cost_targets(&self, out: &mut String) {
        const FLOOR_TARGET: &str = "added cost per connect(), every event delivered as JSON, \
             ≤ 1.5× the bpftrace empty floor (`refused`)";
        const CONNECT_TARGET: &str = "added cost < 10% of the connect() itself (`refused`)";
        if !self.modes.contains(&Mode::Refused) {
            row(out, FLOOR_TARGET, None);
            row(out, CONNECT_TARGET, None);
            return;
        }
        let median_of = |values: &[f64]| median(values).map_or(f64::NAN, |stat| stat.median);
        let bare = median_of(&self.cost(Mode::Refused, Tracer::None).in_connect);
        let traced = self.cost(Mode::Refused, Tracer::ConnectTrace);
        let floor_cost = self.cost(Mode::Refused, Tracer::BpftraceEmpty);
        // Each added cost with its own round-to-round spread, which holds
        // the untraced runs' variation and the traced ones'.
        let (added, added_spread) = (median_of(&traced.added), robust_spread(&traced.added));
        let (floor, floor_spread) = (
            median_of(&floor_cost.added),
            robust_spread(&floor_cost.added),
        );
        let delivered_all = self
            .rounds
            .deliveries
            .get(&Tracer::ConnectTrace)
            .is_some_and(|delivery| delivery.lost == 0 && delivery.delivered >= delivery.generated);
        let qualifier = if delivered_all {
            "every event delivered"
        } else {
            "**not every event delivered** (see above)"
        };
        let added_note = format!(
            "added {} ± {} ns",
            format_ns(added),
            format_ns(added_spread)
        );

        row(
            out,
            FLOOR_TARGET,
            median(&traced.over_floor).map(|stat| {
                let verdict = if floor.is_nan() || floor - floor_spread <= 0.0 {
                    "inconclusive: the floor is not above its own spread; rerun on a quiet \
                     machine with more --count and --repetitions"
                        .to_owned()
                } else {
                    verdict_in_band(
                        &Band {
                            median: stat.median,
                            low: (added - added_spread) / (floor + floor_spread),
                            high: (added + added_spread) / (floor - floor_spread),
                            width: "spread",
                        },
                        1.5,
                        format_ratio,
                    )
                };
                (
                    format!(
                        "{}; {qualifier}; {added_note}, floor {} ± {} ns",
                        cell_of(stat, format_ratio),
                        format_ns(floor),
                        format_ns(floor_spread)
                    ),
                    verdict,
                )
            }),
        );
        row(
            out,
            CONNECT_TARGET,
            median(&traced.over_connect).map(|stat| {
                let verdict = verdict_in_band(
                    &Band {
                        median: stat.median,
                        low: (added - added_spread) / bare,
                        high: (added + added_spread) / bare,
                        width: "spread",
                    },
                    0.10,
                    format_percent,
                );
                (
                    format!(
                        "{}; {added_note}, bare connect() {} ns",
                        cell_of(stat, format_percent),
                        format_ns(bare)
                    ),
                    verdict,
                )
            }),
        );
    }

    /// How much the untraced runs' time per iteration varies between
    /// rounds: added costs below it cannot be told from that variation.
    fn noise(&self, mode: Mode) -> f64 {
        robust_spread(&self.cost(mode, Tracer::None).per_call)
    }

    fn render_notes(&self, out: &mut String) {
        let mut notes: Vec<String> = self.notes.to_vec();
        for &mode in self.modes {
            for &tracer in self.tracers {
                let cost = self.cost(mode, tracer);
                if !cost.errors.is_empty() {
                    notes.push(format!(
                        "`{}` under {}: unexpected outcomes {}.",
                        mode.name(),
                        tracer.label(),
                        cost.errors.join(", ")
                    ));
                }
                if cost.cut_short > 0 && tracer != Tracer::Strace {
                    notes.push(format!(
                        "`{}` under {}: {} of {} runs stopped at --max-seconds before --count calls.",
                        mode.name(),
                        tracer.label(),
                        cost.cut_short,
                        cost.per_call.len()
                    ));
                }
            }
        }
        if self.tracers.contains(&Tracer::Strace) {
            notes.push(format!(
                "strace runs stop at --max-seconds ({} s) and average over the calls made by then.",
                self.args.max_seconds
            ));
        }
        for rate in self.rates {
            if rate.load.errors != "{}" {
                notes.push(format!(
                    "Throughput run: unexpected outcomes {}.",
                    rate.load.errors
                ));
            }
            if rate.load.cut_short {
                notes.push(format!(
                    "Throughput run ({} ring buffer): stopped at --rate-max-seconds before \
                     --rate-count calls.",
                    ring_buffer_label(rate.plan.ring_buffer)
                ));
            }
        }
        if notes.is_empty() {
            return;
        }
        let _ = writeln!(out, "## Notes\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out);
    }
}

/// "default" or "4096 B".
fn ring_buffer_label(bytes: Option<u32>) -> String {
    bytes.map_or_else(|| "default".to_owned(), |bytes| format!("{bytes} B"))
}

/// The daemon's CPU time per delivered event, and one clock tick per
/// delivered event: how far off the first can be.
fn cpu_per_event(rate: &Rate) -> Option<(f64, f64)> {
    let delivered = rate.delivered as f64;
    (rate.delivered > 0).then(|| {
        (
            rate.daemon.cpu.as_nanos() as f64 / delivered,
            rate.daemon.cpu_tick.as_nanos() as f64 / delivered,
        )
    })
}

fn format_cpu((ns, resolution): (f64, f64)) -> String {
    format!("{} ± {} ns", format_ns(ns), format_ns(resolution))
}

/// A measurement's median and the band it may lie in: its spread between
/// rounds, or its resolution.
struct Band {
    median: f64,
    low: f64,
    high: f64,
    /// What sets the band's width, for the verdict: "spread", "resolution".
    width: &'static str,
}

/// The verdict on "at most `limit`": "met" or "missed" outright only when
/// the whole band is on one side of it.
fn verdict_in_band(band: &Band, limit: f64, format: impl Fn(f64) -> String) -> String {
    let Band {
        median,
        low,
        high,
        width,
    } = band;
    let by_median = verdict_at_most(*median, limit);
    if *high <= limit {
        format!(
            "met, even at the edge of the {width} ({} at most); {by_median}",
            format(*high)
        )
    } else if *low > limit {
        format!(
            "**missed**, even at the edge of the {width} ({} at least); {by_median}",
            format(*low)
        )
    } else {
        format!(
            "not resolved: {} to {} within the {width}; by the median {by_median}",
            format(*low),
            format(*high)
        )
    }
}

fn row(out: &mut String, target: &str, measured: Option<(String, String)>) {
    let (measured, verdict) =
        measured.unwrap_or_else(|| ("not measured".to_owned(), "—".to_owned()));
    let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
}

/// "met (40% under)" or "**missed** (25% over)", by the median.
fn verdict_at_most(measured: f64, limit: f64) -> String {
    if measured <= limit {
        format!(
            "met ({:.0}% under the limit)",
            (1.0 - measured / limit) * 100.0
        )
    } else {
        format!(
            "**missed** ({:.0}% over the limit)",
            (measured / limit - 1.0) * 100.0
        )
    }
}

/// "median (min–max)", or "—" without measurements.
fn cell(values: &[f64], format: impl Fn(f64) -> String) -> String {
    median(values).map_or_else(|| "—".to_owned(), |stat| cell_of(stat, format))
}

fn cell_of(stat: Stat, format: impl Fn(f64) -> String) -> String {
    format!(
        "{} ({}–{})",
        format(stat.median),
        format(stat.min),
        format(stat.max)
    )
}

fn format_ns(ns: f64) -> String {
    let rounded = ns.round();
    let sign = if rounded < 0.0 { "-" } else { "" };
    format!("{sign}{}", group(rounded.abs() as u64))
}

fn format_ratio(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

fn format_percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// 1234567 as "1,234,567".
fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::{
        Band, count_before, group, json_field, median, parse_load, record_pid, robust_spread,
        verdict_in_band,
    };

    #[test]
    fn reads_connect_load_summary() {
        let line = r#"{"mode":"refused","threads":1,"pid":42,"calls":20000,"expected":"ECONNREFUSED","errors":{"EADDRNOTAVAIL":3},"elapsed_ns":334615383,"calls_per_sec":59770.1,"ns_per_call":16709.4764,"connect_ns_per_call":10237.8592,"stopped_by":"time"}"#;
        let load = parse_load(line).unwrap();
        assert_eq!(load.pid, 42);
        assert_eq!(load.calls, 20000);
        assert!((load.ns_per_call - 16709.4764).abs() < 1e-9);
        assert_eq!(load.errors, r#"{"EADDRNOTAVAIL":3}"#);
        assert!(load.cut_short);
        assert_eq!(json_field(line, "mode"), Some("\"refused\""));
    }

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

    #[test]
    fn medians() {
        let stat = median(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert!((stat.median - 2.5).abs() < 1e-9);
        assert!((stat.min - 1.0).abs() < 1e-9 && (stat.max - 10.0).abs() < 1e-9);
        assert!(median(&[]).is_none());
    }

    #[test]
    fn spread_ignores_one_outlier() {
        let spread = robust_spread(&[100.0, 102.0, 98.0, 101.0, 500.0]);
        assert!(spread > 1.0 && spread < 5.0, "{spread}");
        assert!(robust_spread(&[7.0]).abs() < 1e-9);
    }

    #[test]
    fn verdicts_hold_across_the_band_or_say_so() {
        let band = |median, low, high| Band {
            median,
            low,
            high,
            width: "spread",
        };
        let format = |value: f64| format!("{value}");
        assert!(verdict_in_band(&band(1.0, 0.5, 1.4), 1.5, format).starts_with("met, even"));
        assert!(verdict_in_band(&band(3.0, 2.0, 4.0), 1.5, format).starts_with("**missed**, even"));
        assert!(verdict_in_band(&band(1.0, 0.5, 2.0), 1.5, format).starts_with("not resolved"));
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
