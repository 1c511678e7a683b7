//! The targets: each measurement against its limit, with a verdict that
//! holds across the spread of the rounds or says it is not resolved.

use std::fmt::Write as _;

use super::{
    Report, cpu_per_event,
    format::{cell_of, format_cpu, format_mib, format_ns, format_percent, format_ratio, group},
};
use crate::bench::{
    plan::{Mode, Tracer},
    stats::{median, robust_spread},
};

impl Report<'_> {
    pub(crate) fn render_targets(&self, out: &mut String) {
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
    pub(crate) fn render_cost_targets(&self, out: &mut String) {
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
}

/// A measurement's median and the band it may lie in: its spread between
/// rounds, or its resolution.
pub(crate) struct Band {
    pub(crate) median: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
    /// What sets the band's width, for the verdict: "spread", "resolution".
    pub(crate) width: &'static str,
}

/// The verdict on "at most `limit`": "met" or "missed" outright only when
/// the whole band is on one side of it.
pub(crate) fn verdict_in_band(band: &Band, limit: f64, format: impl Fn(f64) -> String) -> String {
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

pub(crate) fn row(out: &mut String, target: &str, measured: Option<(String, String)>) {
    let (measured, verdict) =
        measured.unwrap_or_else(|| ("not measured".to_owned(), "—".to_owned()));
    let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
}

/// "met (40% under)" or "**missed** (25% over)", by the median.
pub(crate) fn verdict_at_most(measured: f64, limit: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::{Band, verdict_in_band};

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
}
