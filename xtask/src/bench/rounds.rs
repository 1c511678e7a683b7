//! The alternating rounds: every tracer in turn, and under each the load
//! generator once per workload; then, for the tracers made of BPF programs,
//! once more per mode with the kernel's statistics on, for program time.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{
    BenchArgs, Binaries, Scratch,
    load::{LoadResult, load_command, run_load},
    plan::{Mode, Tracer, Workload},
    program_time::{ProgramTime, Snapshot, StatsEnabled},
    remove_if_present,
    supervise::{DRAIN_WAIT, Session, records_per_pid},
};

/// One end-to-end load run inside the rounds.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) round: u32,
    pub(crate) workload: Workload,
    pub(crate) tracer: Tracer,
    pub(crate) load: LoadResult,
    /// Records of this run's process in connect-trace's output (the JSON
    /// row only).
    pub(crate) delivered: Option<u64>,
}

/// The program time of one mode under one tracer, in one round.
#[derive(Debug)]
pub(crate) struct ProgramSample {
    pub(crate) mode: Mode,
    pub(crate) tracer: Tracer,
    pub(crate) time: ProgramTime,
}

/// What connect-trace delivered during the rounds, over every run of a row.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// connect() calls the load generators made.
    pub(crate) generated: u64,
    /// Records of their processes in the output (the JSON row only).
    pub(crate) delivered: u64,
    /// From the `stopped` records: call records and handshake outcomes
    /// lost in the kernel, lines not written, records that did not decode.
    pub(crate) lost: u64,
    pub(crate) outcomes_lost: u64,
    pub(crate) unwritten: u64,
    pub(crate) undecodable: u64,
}

/// Everything the rounds measured.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    pub(crate) samples: Vec<Sample>,
    pub(crate) programs: Vec<ProgramSample>,
    pub(crate) deliveries: BTreeMap<Tracer, Delivery>,
    /// connect-trace start-up times, spawn to its `started` record.
    pub(crate) attach: Vec<Duration>,
    /// Tools that were installed but would not start, and why.
    pub(crate) failed: BTreeMap<Tracer, String>,
    /// Why program time could not be measured, if it could not.
    pub(crate) program_time_failed: Option<String>,
}

impl Rounds {
    pub(crate) fn sample(&self, round: u32, workload: Workload, tracer: Tracer) -> Option<&Sample> {
        self.samples.iter().find(|sample| {
            sample.round == round && sample.workload == workload && sample.tracer == tracer
        })
    }

    /// The program time of `mode` under `tracer`, one per round.
    pub(crate) fn program_times(
        &self,
        mode: Mode,
        tracer: Tracer,
    ) -> impl Iterator<Item = &ProgramTime> {
        self.programs
            .iter()
            .filter(move |sample| sample.mode == mode && sample.tracer == tracer)
            .map(|sample| &sample.time)
    }

    /// How many rounds have samples.
    pub(crate) fn rounds(&self) -> u32 {
        self.samples
            .iter()
            .map(|sample| sample.round + 1)
            .max()
            .unwrap_or(0)
    }
}

/// What a round runs, apart from the tracer.
pub(crate) struct RoundPlan<'a> {
    pub(crate) binaries: &'a Binaries,
    pub(crate) scratch: &'a Scratch,
    pub(crate) args: &'a BenchArgs,
    pub(crate) modes: &'a [Mode],
    pub(crate) workloads: &'a [Workload],
    pub(crate) round: u32,
}

/// Runs every workload once under `tracer`. A tool other than
/// connect-trace that fails is left out of the later rounds, with the
/// reason in `rounds.failed`.
pub(crate) fn run_round(plan: &RoundPlan<'_>, tracer: Tracer, rounds: &mut Rounds) -> Result<()> {
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
    let first = rounds.samples.len();
    for &workload in plan.workloads {
        let count = plan.args.count * workload.threads as u64;
        let mut command =
            session.load_command(plan.binaries, workload, count, plan.args.max_seconds);
        let load = run_load(&mut command)
            .with_context(|| format!("{} under {}", workload.label(), tracer.label()))?;
        log_run(tracer, &workload.label(), &load);
        rounds.samples.push(Sample {
            round: plan.round,
            workload,
            tracer,
            load,
            delivered: None,
        });
    }
    let mut extra_loads = Vec::new();
    if tracer.has_program_time() && rounds.program_time_failed.is_none() {
        match program_time_pass(plan, &session, tracer) {
            Ok((samples, loads)) => {
                rounds.programs.extend(samples);
                extra_loads = loads;
            }
            Err(error) => {
                eprintln!("bench: program time: {error:#}; leaving it out");
                rounds.program_time_failed = Some(format!("{error:#}"));
            }
        }
    }
    let Session::Daemon(daemon) = &mut session else {
        return session.stop();
    };
    thread::sleep(DRAIN_WAIT);
    let end = daemon.stop()?;
    // Only the JSON row writes a record per event to count.
    let per_pid = if tracer == Tracer::ConnectTrace {
        records_per_pid(output)?
    } else {
        HashMap::new()
    };
    let delivered_by = |load: &LoadResult| per_pid.get(&load.pid).copied().unwrap_or(0);
    let delivery = rounds.deliveries.entry(tracer).or_default();
    for sample in &mut rounds.samples[first..] {
        delivery.generated += sample.load.calls;
        delivery.delivered += delivered_by(&sample.load);
        if tracer == Tracer::ConnectTrace {
            sample.delivered = Some(delivered_by(&sample.load));
        }
    }
    for load in &extra_loads {
        delivery.generated += load.calls;
        delivery.delivered += delivered_by(load);
    }
    delivery.lost += end.delivery.records_lost;
    delivery.outcomes_lost += end.delivery.outcomes_lost;
    delivery.unwritten += end.delivery.records_unwritten;
    delivery.undecodable += end.delivery.records_undecodable;
    Ok(())
}

/// Runs every mode once more in one thread with the kernel's statistics
/// on, reading the tracer's program counters around each run. Apart from
/// the end-to-end runs, which the accounting would slow down. Returns the
/// samples and the load runs.
fn program_time_pass(
    plan: &RoundPlan<'_>,
    session: &Session,
    tracer: Tracer,
) -> Result<(Vec<ProgramSample>, Vec<LoadResult>)> {
    let programs = session.programs();
    let _stats = StatsEnabled::enable()?;
    let (mut samples, mut loads) = (Vec::new(), Vec::new());
    for &mode in plan.modes {
        let before = Snapshot::read(programs)?;
        let load = run_load(&mut load_command(
            plan.binaries,
            mode,
            plan.args.count,
            1,
            plan.args.max_seconds,
        ))
        .with_context(|| format!("{} under {}", mode.name(), tracer.label()))?;
        let after = Snapshot::read(programs)?;
        let time = ProgramTime::new(after.since(&before), load.calls)?;
        eprintln!(
            "bench:   {:<52} {:<15} {:>9.0} ns of BPF programs per call",
            tracer.label(),
            mode.name(),
            time.total_ns_per_call()
        );
        samples.push(ProgramSample { mode, tracer, time });
        loads.push(load);
    }
    Ok((samples, loads))
}

fn log_run(tracer: Tracer, workload: &str, load: &LoadResult) {
    let unexpected = load.unexpected();
    eprintln!(
        "bench:   {:<52} {:<15} {:>9.0} ns per call{}",
        tracer.label(),
        workload.replace('`', ""),
        load.ns_per_call,
        if unexpected.is_empty() {
            String::new()
        } else {
            format!(", unexpected outcomes {unexpected}")
        }
    );
}
