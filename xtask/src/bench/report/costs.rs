//! The end-to-end cost tables: what each tracer adds to the load
//! generator's loop, per workload.

use std::fmt::Write as _;

use super::{
    Report,
    format::{cell, format_ns, format_percent, format_ratio, group},
};
use crate::bench::{
    plan::{TRACERS, Tracer, Workload},
    stats::robust_spread,
};

/// One cost cell's measurements over the rounds, each paired with the
/// untraced run (and the floor run) of the same round.
#[derive(Default)]
pub(crate) struct Cost {
    pub(crate) per_call: Vec<f64>,
    pub(crate) in_connect: Vec<f64>,
    /// Per iteration, minus the untraced run's.
    pub(crate) added: Vec<f64>,
    /// Inside connect(), minus the untraced run's.
    pub(crate) added_in_connect: Vec<f64>,
    /// `added_in_connect` ÷ the floor's, in rounds where the floor's came
    /// out above zero.
    pub(crate) over_floor: Vec<f64>,
    /// `added` ÷ the untraced time inside connect().
    pub(crate) over_connect: Vec<f64>,
    pub(crate) errors: Vec<String>,
    pub(crate) cut_short: u32,
    /// Calls made and records delivered, in the runs that count records.
    pub(crate) generated: u64,
    pub(crate) delivered: u64,
}

impl Report<'_> {
    pub(crate) fn cost(&self, workload: Workload, tracer: Tracer) -> Cost {
        let mut cost = Cost::default();
        for round in 0..self.rounds.rounds() {
            let Some(sample) = self.rounds.sample(round, workload, tracer) else {
                continue;
            };
            let load = &sample.load;
            cost.per_call.push(load.ns_per_call);
            cost.in_connect.push(load.connect_ns);
            cost.cut_short += u32::from(load.cut_short());
            let unexpected = load.unexpected();
            if !unexpected.is_empty() {
                cost.errors.push(unexpected);
            }
            if let Some(delivered) = sample.delivered {
                cost.generated += load.calls;
                cost.delivered += delivered;
            }
            let Some(bare) = self.rounds.sample(round, workload, Tracer::None) else {
                continue;
            };
            let bare = &bare.load;
            let added = load.ns_per_call - bare.ns_per_call;
            let added_in_connect = load.connect_ns - bare.connect_ns;
            cost.added.push(added);
            cost.added_in_connect.push(added_in_connect);
            cost.over_connect.push(added / bare.connect_ns);
            if let Some(floor) = self.rounds.sample(round, workload, Tracer::BpftraceEmpty) {
                let floor_added = floor.load.connect_ns - bare.connect_ns;
                if floor_added > 0.0 {
                    cost.over_floor.push(added_in_connect / floor_added);
                }
            }
        }
        cost
    }

    /// How much the untraced runs' time per iteration varies between
    /// rounds: added costs below it cannot be told from that variation.
    fn noise(&self, workload: Workload) -> f64 {
        robust_spread(&self.cost(workload, Tracer::None).per_call)
    }

    pub(crate) fn render_costs(&self, out: &mut String) {
        let _ = writeln!(out, "## End-to-end cost per connect()\n");
        let _ = writeln!(
            out,
            "The load generator (`connect-load`) runs `socket()`, `connect()`, `close()` in a \
             loop on loopback. *Per iteration* is the mean time of one loop in one thread; \
             *inside connect()* is the time spent in the `connect()` call alone. *Added* is \
             either minus the untraced run of the same round: added per iteration includes \
             what every other syscall pays while a syscall tracepoint is attached (the slow \
             path), and the daemon's competition for the cores. The *floor* is bpftrace with \
             empty programs on `sys_enter_connect` and `sys_exit_connect`: no tracer on \
             those tracepoints can add less; *÷ floor* divides the time added inside \
             connect() by the floor's. *÷ bare connect()* divides the time added per \
             iteration by the untraced time inside `connect()`. Ratios are taken round by \
             round; a round whose floor came out at or below zero (noise) gives no floor \
             ratio. Each round runs every tracer in turn (A B A B ...); cells are medians \
             over the rounds, with (min–max).\n"
        );
        for &workload in self.workloads {
            let _ = writeln!(
                out,
                "### {}: {}\n",
                workload.label(),
                workload.mode.description()
            );
            let _ = writeln!(
                out,
                "| tracer | ns per iteration | ns inside connect() | ns added per iteration | \
                 ns added inside connect() | added inside connect() ÷ floor | added per \
                 iteration ÷ bare connect() |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
            for tracer in TRACERS {
                if !self.tracers.contains(&tracer) || self.rounds.failed.contains_key(&tracer) {
                    let _ = writeln!(
                        out,
                        "| {} | skipped (see notes) | | | | | |",
                        tracer.label()
                    );
                    continue;
                }
                let cost = self.cost(workload, tracer);
                let (added, added_in_connect, over_floor, over_connect) = if tracer == Tracer::None
                {
                    let none = || "—".to_owned();
                    (none(), none(), none(), none())
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
                        cell(&cost.added_in_connect, format_ns),
                        over_floor,
                        cell(&cost.over_connect, format_percent),
                    )
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {added} | {added_in_connect} | {over_floor} | \
                     {over_connect} |",
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
                format_ns(self.noise(workload))
            );
        }
        self.render_deliveries(out);
    }

    fn render_deliveries(&self, out: &mut String) {
        let deliveries: Vec<String> = self
            .rounds
            .deliveries
            .iter()
            .map(|(tracer, delivery)| {
                let mut text = if *tracer == Tracer::ConnectTrace {
                    format!(
                        "{}: {} of {} calls delivered as records, {} lost",
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
                };
                for (count, what) in [
                    (delivery.outcomes_lost, "handshake outcomes lost"),
                    (delivery.unwritten, "lines not written"),
                    (delivery.undecodable, "records undecodable"),
                ] {
                    if count > 0 {
                        let _ = write!(text, ", **{} {what}**", group(count));
                    }
                }
                text
            })
            .collect();
        if !deliveries.is_empty() {
            let _ = writeln!(
                out,
                "Delivery during these runs, the end-to-end and the program-time ones \
                 (records in the output file from the load generators' pids; losses from the \
                 daemon's `stopped` records, which count every process): {}.\n",
                deliveries.join("; ")
            );
        }
    }
}
