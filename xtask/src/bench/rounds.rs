//! The alternating rounds: every tracer in turn, and under each the load
//! generator once per mode in one thread.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{
    BenchArgs, Binaries, Scratch,
    load::{LoadResult, run_load},
    plan::{Mode, Tracer},
    remove_if_present,
    supervise::{DRAIN_WAIT, Session, lines_per_pid},
};

/// One load run inside the rounds.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) round: u32,
    pub(crate) mode: Mode,
    pub(crate) tracer: Tracer,
    pub(crate) load: LoadResult,
}

/// What connect-trace delivered during the rounds.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub(crate) generated: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
}

/// Everything the rounds measured.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    pub(crate) samples: Vec<Sample>,
    pub(crate) deliveries: BTreeMap<Tracer, Delivery>,
    /// connect-trace start-up times, spawn to banner.
    pub(crate) attach: Vec<Duration>,
    /// Tools that were installed but would not start, and why.
    pub(crate) failed: BTreeMap<Tracer, String>,
}

impl Rounds {
    pub(crate) fn sample(&self, round: u32, mode: Mode, tracer: Tracer) -> Option<&LoadResult> {
        self.samples
            .iter()
            .find(|sample| sample.round == round && sample.mode == mode && sample.tracer == tracer)
            .map(|sample| &sample.load)
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
    pub(crate) round: u32,
}

/// Runs every mode once under `tracer`. A tool other than connect-trace
/// that fails is left out of the later rounds, with the reason in
/// `rounds.failed`.
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

pub(crate) fn run_tracer_round(
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
