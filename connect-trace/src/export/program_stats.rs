//! Prometheus metrics of what the daemon's own programs cost (`run
//! --bpf-stats`): each program's run time and run count, read from the
//! kernel at each scrape (names and labels: `docs/metrics.md`).

use std::sync::Mutex;

use prometheus::{
    CounterVec, IntCounterVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::prometheus::MetricsError;
use crate::kernel::program_stats::ProgramStats;

/// Reads [`ProgramStats`] when Prometheus scrapes. It owns them: the
/// kernel's statistics stay enabled for as long as the metrics live.
pub struct ProgramStatsCollector {
    stats: ProgramStats,
    /// One scrape at a time: each resets and refills the series.
    lock: Mutex<()>,
    run_time: CounterVec,
    runs: IntCounterVec,
}

impl ProgramStatsCollector {
    /// A collector over `stats`, to register with
    /// [`super::prometheus::Metrics::register`].
    pub fn new(stats: ProgramStats) -> Result<Self, MetricsError> {
        Ok(Self {
            stats,
            lock: Mutex::new(()),
            run_time: CounterVec::new(
                Opts::new(
                    "connect_trace_bpf_program_run_time_seconds_total",
                    "Time the kernel spent running each of connect-trace's BPF programs while --bpf-stats had its statistics enabled.",
                ),
                &["program"],
            )?,
            runs: IntCounterVec::new(
                Opts::new(
                    "connect_trace_bpf_program_runs_total",
                    "Times each of connect-trace's BPF programs ran while --bpf-stats had the kernel's statistics enabled.",
                ),
                &["program"],
            )?,
        })
    }
}

impl Collector for ProgramStatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.run_time.desc();
        descs.extend(self.runs.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(_guard) = self.lock.lock() else {
            return Vec::new();
        };
        let programs = match self.stats.read() {
            Ok(programs) => programs,
            Err(error) => {
                tracing::warn!("{error}");
                return Vec::new();
            }
        };
        self.run_time.reset();
        self.runs.reset();
        for program in programs {
            self.run_time
                .with_label_values(&[&program.name])
                .inc_by(program.run_time.as_secs_f64());
            self.runs
                .with_label_values(&[&program.name])
                .inc_by(program.runs);
        }
        let mut families = self.run_time.collect();
        families.extend(self.runs.collect());
        families
    }
}
