//! The workload stage, between the resolver and the sinks: names the
//! container and pod that made each attempt, keeps only those of the
//! workload asked for (`--container`, `--pod`, `--namespace`, `--cgroup`),
//! and lets an attempt of a container whose runtime lookup is under way
//! wait for it, briefly ([`crate::workload::hold`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::{
    report::AttemptReport,
    workload::{
        Workloads,
        filter::{Verdict, WorkloadFilter},
        hold::{self, Hold},
    },
};

/// Who made each attempt, and whether it is wanted.
pub struct Identity {
    workloads: Workloads,
    hold: Hold<AttemptReport>,
    filter: Option<WorkloadFilter>,
    /// Attempts the workload filter left out.
    filtered: Arc<AtomicU64>,
    last_sweep: Option<Instant>,
}

impl Identity {
    /// Names workloads with `workloads`, keeping only those `filter`
    /// matches (all, when `None`).
    pub fn new(workloads: Workloads, filter: Option<WorkloadFilter>) -> Self {
        let hold = Hold::new(
            hold::DEFAULT_CAPACITY,
            hold::DEFAULT_WAIT,
            workloads.counters(),
        );
        Self {
            workloads,
            hold,
            filter,
            filtered: Arc::default(),
            last_sweep: None,
        }
    }

    /// Attempts the workload filter has left out so far, as they are
    /// counted.
    pub fn filtered(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.filtered)
    }

    /// The workloads, for their counters.
    pub fn workloads(&self) -> &Workloads {
        &self.workloads
    }

    /// Starts the lookup of a caller's workload as soon as its call is
    /// seen, well before its handshake ends.
    pub fn notice(&mut self, cgroup_id: u64, pid: u32, now: Instant) {
        let _ = self.workloads.identify(cgroup_id, pid, now);
    }

    /// Takes what the runtimes answered; call once per batch.
    pub fn apply_lookups(&mut self, now: Instant) {
        self.workloads.apply_lookups(now);
        if self
            .last_sweep
            .is_none_or(|last| now.duration_since(last).as_secs() >= 1)
        {
            self.workloads.sweep(now);
            self.last_sweep = Some(now);
        }
    }

    /// Identifies the attempt of `report`; the report comes back when it
    /// may go on at once, or later from [`Identity::release`].
    pub fn admit(&mut self, mut report: AttemptReport, now: Instant) -> Option<AttemptReport> {
        let attempt = &report.resolved.attempt;
        let workload = self
            .workloads
            .identify(attempt.cgroup_id(), attempt.pid(), now);
        report.workload = Some(Arc::clone(&workload));
        match self.filter.as_mut().map(|filter| filter.check(&workload)) {
            Some(Verdict::NoMatch) => {
                self.filtered.fetch_add(1, Ordering::Relaxed);
                None
            }
            // A filter on names cannot tell before the runtime answers.
            Some(Verdict::Unknown) => self
                .hold
                .admit(report, &workload, now)
                .and_then(|report| self.decide(report, now)),
            Some(Verdict::Match) | None => self.hold.admit(report, &workload, now),
        }
    }

    /// Reports whose workload lookup ended or whose wait ran out, with
    /// their workload as it is known now.
    pub fn release(&mut self, now: Instant) -> Vec<AttemptReport> {
        let released = self.hold.release(&self.workloads, now);
        released
            .into_iter()
            .filter_map(|report| self.decide(report, now))
            .collect()
    }

    /// Everything still held (at shutdown), as it is known now.
    pub fn finish(&mut self, now: Instant) -> Vec<AttemptReport> {
        let mut held = Vec::new();
        self.hold.drain(|report| held.push(report));
        held.into_iter()
            .filter_map(|report| self.decide(report, now))
            .collect()
    }

    /// Takes the newest identity of a report's workload and applies the
    /// filter for good: a workload still unknown does not match.
    fn decide(&mut self, mut report: AttemptReport, now: Instant) -> Option<AttemptReport> {
        let attempt = &report.resolved.attempt;
        let workload = self
            .workloads
            .identify(attempt.cgroup_id(), attempt.pid(), now);
        if let Some(filter) = self.filter.as_mut()
            && filter.check(&workload) != Verdict::Match
        {
            self.filtered.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        report.workload = Some(workload);
        Some(report)
    }
}
