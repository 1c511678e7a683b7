//! What `connect-trace run` tells the log, the sinks and systemd: that
//! tracing is live, and records lost since the last look.

use std::time::SystemTime;

use anyhow::Result;
use connect_trace::{
    export::Started,
    kernel::{KernelCounters, KernelStats, Tracer},
    pipeline::Pipeline,
};

use super::RunArgs;
use crate::cli::notify::notify;

/// Tracing is live: tells the log, the sinks (a `started` record) and
/// systemd.
pub(super) fn announce(
    tracer: &Tracer,
    args: &RunArgs,
    dns_names: bool,
    pipeline: &mut Pipeline,
) -> Result<()> {
    let where_to = args
        .output
        .as_ref()
        .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string());
    let metrics = args
        .metrics
        .map(|addr| format!("; metrics at http://{addr}/metrics"))
        .unwrap_or_default();
    tracing::info!(
        "tracing connect() with programs {:?}; writing JSON Lines to {where_to}{metrics}",
        tracer.program_ids()
    );
    tracing::debug!(
        "following TCP handshakes with the {}",
        tracer.handshake_hook()
    );
    for (member, problem) in tracer.btf_problems() {
        tracing::warn!("{problem}; {}", member.without);
    }
    if let Some(problem) = tracer.io_uring_problem() {
        tracing::warn!(
            "io_uring connect requests are seen only by their TCP handshakes ({problem})"
        );
    }
    pipeline.started(&Started {
        kind: "started",
        ts: SystemTime::now(),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        programs: tracer.program_ids().to_vec(),
        handshake_hook: tracer.handshake_hook(),
        btf_missing: tracer
            .btf_problems()
            .iter()
            .map(|(member, _)| member.name())
            .collect(),
        dns_names,
        dns_problem: tracer.dns_problem().map(str::to_owned),
    })?;
    if let Err(error) = notify(&format!(
        "READY=1\nSTATUS=tracing connect() with programs {:?}",
        tracer.program_ids()
    )) {
        tracing::warn!("could not notify systemd that we are ready: {error}");
    }
    Ok(())
}

/// Logs records lost since `before`; returns the counters now, or
/// `before` when they cannot be read (at the descriptor limit, say: the
/// next tick tries again, and the counts themselves are kept in the
/// kernel).
pub(super) fn report_new_losses(kernel: &KernelStats, before: KernelCounters) -> KernelCounters {
    let now = match kernel.counters() {
        Ok(now) => now,
        Err(error) => {
            tracing::warn!("reading the kernel's counters failed: {error}");
            return before;
        }
    };
    let lost = (now.ringbuf_full + now.outcome_ringbuf_full)
        .saturating_sub(before.ringbuf_full + before.outcome_ringbuf_full);
    if lost > 0 {
        tracing::warn!(
            "{lost} records lost because the ring buffer was full ({} calls and {} outcomes in total); raise --ring-buffer-size or lower --poll-interval-ms",
            now.ringbuf_full,
            now.outcome_ringbuf_full,
        );
    }
    now
}
