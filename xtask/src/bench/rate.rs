//! Throughput and loss: the load in `--rate-threads` threads with
//! `connect-trace --pid` attached, and the untraced rate of each mode that
//! picks the fastest.

use std::{io::Write as _, process::Stdio, thread};

use anyhow::{Context as _, Result, bail};

use super::{
    BenchArgs, Binaries, Scratch,
    load::{LoadResult, load_command, parse_load, run_load},
    plan::Mode,
    remove_if_present,
    supervise::{DRAIN_WAIT, Daemon, DaemonEnd, KillOnDrop, records_per_pid},
};

/// One throughput and loss run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RatePlan {
    pub(crate) mode: Mode,
    pub(crate) threads: usize,
    pub(crate) count: u64,
    pub(crate) max_seconds: u64,
    /// `--ring-buffer-size`; `None` for the default.
    pub(crate) ring_buffer: Option<u32>,
}

/// What a throughput and loss run measured.
#[derive(Debug)]
pub(crate) struct Rate {
    pub(crate) plan: RatePlan,
    pub(crate) load: LoadResult,
    /// Records in the output file from the load generator's pid.
    pub(crate) delivered: u64,
    pub(crate) daemon: DaemonEnd,
}

/// Starts the load generator paused, attaches `connect-trace --pid` to it,
/// then lets it go.
pub(crate) fn rate_run(binaries: &Binaries, scratch: &Scratch, plan: RatePlan) -> Result<Rate> {
    eprintln!(
        "bench: rate run, {} in {} threads, ring buffer {}",
        plan.mode.name(),
        plan.threads,
        ring_buffer_label(plan.ring_buffer),
    );
    let output = scratch.path("rate.out");
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
    let delivered = records_per_pid(&output)?.get(&pid).copied().unwrap_or(0);
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
pub(crate) fn probe_rates(
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

/// "default" or "4096 B".
pub(crate) fn ring_buffer_label(bytes: Option<u32>) -> String {
    bytes.map_or_else(|| "default".to_owned(), |bytes| format!("{bytes} B"))
}
