//! The throughput and loss table: whether the daemon keeps up at the
//! highest rate the load threads produce, and counts every loss when it
//! cannot.

use std::fmt::Write as _;

use super::{
    Report,
    format::{format_cpu, format_mib, group},
};
use crate::bench::rate::{Rate, ring_buffer_label};

impl Report<'_> {
    pub(crate) fn render_rates(&self, out: &mut String) {
        let Some(first) = self.rates.first() else {
            return;
        };
        let _ = writeln!(out, "## Throughput and loss at the highest rate\n");
        let _ = writeln!(
            out,
            "`connect-load --mode {} --threads {}` with `connect-trace run --pid PID --output \
             FILE` attached before the first call. *Delivered* counts the records in the file \
             from that pid; *lost* is the daemon's own count from its `stopped` record. CPU is \
             the daemon's utime + stime from `/proc/PID/stat` at its exit (clock-tick \
             resolution), divided by the events delivered, over its whole life and after \
             start-up: *start-up* is its CPU time until its `started` record (its threads' \
             `schedstat`), mostly the kernel verifying the programs, a fixed cost that does not \
             grow with the events. Peak RSS is its VmHWM just before it was stopped.\n",
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
             + lost | daemon CPU per delivered event | start-up CPU | after start-up, per \
             event | daemon peak RSS |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
        for rate in self.rates {
            let lost = rate.daemon.delivery.records_lost;
            let balance = rate.delivered + lost;
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
                "| {} | {} | {} | {} | {} | {check} | {} | {} | {} | {} |",
                ring_buffer_label(rate.plan.ring_buffer),
                group(rate.load.calls_per_sec.round() as u64),
                group(rate.load.calls),
                group(rate.delivered),
                group(lost),
                cpu_per_event(rate).map_or_else(|| "—".to_owned(), format_cpu),
                rate.daemon.startup_cpu.map_or_else(
                    || "—".to_owned(),
                    |cpu| format!("{:.0} ms", cpu.as_secs_f64() * 1e3)
                ),
                cpu_per_event_after_startup(rate).map_or_else(|| "—".to_owned(), format_cpu),
                rate.daemon
                    .peak_rss_kib
                    .map_or_else(|| "unknown".to_owned(), format_mib),
            );
        }
        let _ = writeln!(out);
        for rate in self.rates {
            let counts = rate.daemon.delivery;
            let mut also = Vec::new();
            for (count, what) in [
                (
                    counts.outcomes_lost,
                    "handshake outcomes lost (records written without their final outcome)",
                ),
                (counts.records_unwritten, "lines not written"),
                (counts.records_undecodable, "records undecodable"),
            ] {
                if count > 0 {
                    also.push(format!("{} {what}", group(count)));
                }
            }
            if counts.records_delivered != rate.delivered {
                also.push(format!(
                    "{} records delivered to it, {} in the file",
                    group(counts.records_delivered),
                    group(rate.delivered)
                ));
            }
            if !also.is_empty() {
                let _ = writeln!(
                    out,
                    "With the {} ring buffer the daemon's `stopped` record also counts: {}.\n",
                    ring_buffer_label(rate.plan.ring_buffer),
                    also.join("; ")
                );
            }
        }
    }
}

/// The daemon's CPU time per delivered event, and one clock tick per
/// delivered event: how far off the first can be.
pub(crate) fn cpu_per_event(rate: &Rate) -> Option<(f64, f64)> {
    let delivered = rate.delivered as f64;
    (rate.delivered > 0).then(|| {
        (
            rate.daemon.cpu.as_nanos() as f64 / delivered,
            rate.daemon.cpu_tick.as_nanos() as f64 / delivered,
        )
    })
}

/// The daemon's CPU time per delivered event after its start-up (the
/// per-event cost, which a longer run does not dilute), and its
/// resolution: one clock tick per delivered event.
pub(crate) fn cpu_per_event_after_startup(rate: &Rate) -> Option<(f64, f64)> {
    let startup = rate.daemon.startup_cpu?;
    let delivered = rate.delivered as f64;
    (rate.delivered > 0).then(|| {
        (
            rate.daemon.cpu.saturating_sub(startup).as_nanos() as f64 / delivered,
            rate.daemon.cpu_tick.as_nanos() as f64 / delivered,
        )
    })
}
