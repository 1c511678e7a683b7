//! `cargo xtask bench`: what tracing costs each `connect()`, against the
//! tools a user would reach for instead, and whether the daemon keeps up.
//!
//! One session, in this order:
//!
//! 1. Build `connect-trace` and `connect-load` in release.
//! 2. Rounds ([`rounds`]): each round runs every tracer in turn (none,
//!    connect-trace, bpftrace empty, bpftrace printf, strace; [`supervise`]
//!    starts and stops them), and under each tracer the load generator
//!    ([`load`]) once per workload: every mode in one thread, and the
//!    refused loop in two. Alternating rounds rather than all runs of one
//!    tracer in a row spread the machine's drift over every row; each cell
//!    is a median over the rounds ([`stats`]), paired with the untraced run
//!    of the same round. Under the tracers made of BPF programs, each mode
//!    then runs once more with the kernel's statistics on, for the time
//!    spent in the programs ([`program_time`]).
//! 3. Rate ([`rate`]): the load in two threads with `connect-trace --pid`
//!    running, `--rate-repetitions` times with the default ring buffer
//!    (nothing may be lost) and once with a 4 KiB one (losses must be
//!    counted exactly). `--only throughput` runs this step alone.
//! 4. A Markdown report ([`report`]) on stdout, and with `--write-docs` in
//!    `docs/performance.md`.

mod load;
mod plan;
mod program_time;
mod rate;
mod report;
mod rounds;
mod scratch;
mod stats;
mod supervise;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use self::{
    load::{load_command, run_load},
    plan::{Mode, TRACERS, Workload, unavailable},
    rate::{RatePlan, probe_rates, rate_run},
    report::{Machine, Report},
    rounds::{RoundPlan, Rounds, run_round},
    scratch::Scratch,
};
use crate::{process, toolchain};

/// The undersized ring buffer of the loss-accounting run: room for a dozen
/// or so records.
const SMALL_RING_BUFFER: u32 = 4096;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// connect() calls per load run and thread.
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

    /// connect() calls for each throughput and loss run (in all).
    #[arg(long, default_value_t = 400_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate_count: u64,

    /// Threads of the throughput and loss runs: 2 is what the daemon's
    /// targets name.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    rate_threads: u16,

    /// Longest a throughput and loss run may take, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    rate_max_seconds: u64,

    /// Mode of the throughput and loss runs. Default: the fastest mode
    /// measured without a tracer (the highest event rate).
    #[arg(long, value_enum)]
    rate_mode: Option<Mode>,

    /// Throughput and loss runs with the default ring buffer: the daemon's
    /// CPU per event moves with the machine's other work, so several runs
    /// show the spread (the targets take their median).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rate_repetitions: u32,

    /// Run one section only: `throughput` skips the rounds (end-to-end and
    /// program time) and runs only the throughput and loss runs, for quick
    /// before/after comparisons of the daemon.
    #[arg(long, value_enum)]
    only: Option<Section>,

    /// Also write the report to docs/performance.md.
    #[arg(long)]
    write_docs: bool,
}

/// A section of the bench that `--only` can run alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Section {
    /// The throughput and loss runs (daemon CPU per event, loss, peak RSS).
    Throughput,
}

/// The two binaries under test.
pub(crate) struct Binaries {
    pub(crate) connect_trace: PathBuf,
    pub(crate) connect_load: PathBuf,
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
    eprintln!("bench: tracer outputs go to {}", scratch.describe());
    let mut modes = Vec::new();
    for mode in &args.modes {
        if !modes.contains(mode) {
            modes.push(*mode);
        }
    }
    if modes.is_empty() {
        bail!("--modes names no mode");
    }
    let workloads = Workload::all(&modes);
    let mut notes = Vec::new();
    if program_time::stats_always_on() {
        notes.push(
            "`sysctl kernel.bpf_stats_enabled` was 1: every BPF program paid for the kernel's \
             accounting in the end-to-end runs too."
                .to_owned(),
        );
    }
    let mut tracers = Vec::new();
    for tracer in TRACERS {
        match unavailable(tracer, &binaries) {
            Some(reason) => notes.push(format!("{}: skipped, {reason}.", tracer.label())),
            None => tracers.push(tracer),
        }
    }

    let rounds_run = args.only.is_none();
    if rounds_run {
        eprintln!("bench: warming up");
    }
    for &mode in modes.iter().filter(|_| rounds_run) {
        run_load(&mut load_command(
            &binaries,
            mode,
            (args.count / 10).max(1),
            1,
            1,
        ))?;
    }
    let mut rounds = Rounds::default();
    for round in (0..args.repetitions).filter(|_| rounds_run) {
        eprintln!("bench: round {} of {}", round + 1, args.repetitions);
        for &tracer in &tracers {
            if !rounds.failed.contains_key(&tracer) {
                let plan = RoundPlan {
                    binaries: &binaries,
                    scratch: &scratch,
                    args,
                    modes: &modes,
                    workloads: &workloads,
                    round,
                };
                run_round(&plan, tracer, &mut rounds)?;
            }
        }
    }
    for (tracer, reason) in &rounds.failed {
        notes.push(format!("{}: failed, left out: {reason}", tracer.label()));
    }

    let threads = usize::from(args.rate_threads);
    eprintln!("bench: untraced rate of each mode in {threads} threads");
    let probes = probe_rates(&binaries, args, &modes, threads)?;
    let rate_mode = args
        .rate_mode
        .or_else(|| probes.first().map(|(mode, _)| *mode))
        .unwrap_or(Mode::Refused);
    let mut rates = Vec::new();
    let full_runs = std::iter::repeat_n(None, args.rate_repetitions as usize);
    for ring_buffer in full_runs.chain([Some(SMALL_RING_BUFFER)]) {
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
        workloads: &workloads,
        tracers: &tracers,
        rounds: &rounds,
        rates: &rates,
        probes: &probes,
        notes: &notes,
        outputs: scratch.describe(),
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
        let report = format!("{report}{kept}");
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

pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
