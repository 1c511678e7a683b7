//! The kernel programs' own counters: losses and refusals
//! ([`KernelCounters`]), and the exact counts of attempts by family and
//! final outcome ([`OutcomeTally`]). [`KernelStats`] reads both from the
//! maps whenever asked: when a summary is written, when Prometheus
//! scrapes, and at the end. No copy is kept that could drift.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    maps::{MapData, MapError, PerCpuArray},
    programs::ProgramFd,
};
use connect_trace_common::{
    family,
    names::counter,
    outcome::{Outcome, SLOTS, code},
};

use crate::errno;

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Calls that passed the filters and produced a record.
    pub attempts: u64,
    /// Call records dropped because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Exits seen without a matching entry (in flight when attached).
    pub exit_without_entry: u64,
    /// Entries the in-flight map refused.
    pub in_flight_full: u64,
    /// Handshakes not followed because the pending map was full.
    pub pending_full: u64,
    /// Handshake outcomes dropped because the ring buffer was full.
    pub outcome_ringbuf_full: u64,
    /// Recent attempts displaced while a status check could still come.
    pub recent_evicted: u64,
    /// io_uring connect requests the request map refused.
    pub io_uring_full: u64,
    /// Handshake ends the kernel did not report, caught as the socket was
    /// freed.
    pub ends_at_close: u64,
}

/// One count per (family, outcome code) slot, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeTally {
    counts: Vec<u64>,
}

impl OutcomeTally {
    /// From the per-slot counts read from the kernel map.
    pub fn from_slots(counts: Vec<u64>) -> Self {
        Self { counts }
    }

    /// The count of one slot.
    pub fn count(&self, slot: u32) -> u64 {
        self.counts.get(slot as usize).copied().unwrap_or(0)
    }

    /// Slots with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..SLOTS)
            .map(|slot| (slot, self.count(slot)))
            .filter(|(_, count)| *count > 0)
    }

    /// `(family, outcome, error)` labels of a slot: outcome is `connected`,
    /// `failed`, `canceled`, `in_progress` or `repeat`; error is an errno
    /// name, `unknown`, `canceled`, or `none`.
    pub fn labels(slot: u32) -> (&'static str, &'static str, String) {
        let family = family::label(slot / code::CODES);
        let (outcome, error) = match Outcome::of_code(slot % code::CODES) {
            None => ("repeat", "none".to_owned()),
            Some(Outcome::Failed(Some(number))) => (
                "failed",
                errno::name(number).map_or_else(|| number.to_string(), str::to_owned),
            ),
            Some(Outcome::Failed(None)) => ("failed", "unknown".to_owned()),
            Some(Outcome::Canceled) => ("canceled", "canceled".to_owned()),
            Some(outcome) => (outcome.name(), "none".to_owned()),
        };
        (family, outcome, error)
    }

    /// Attempts whose outcome is known or given up on (repeats excluded).
    pub fn attempts(&self) -> u64 {
        self.nonzero()
            .filter(|(slot, _)| slot % code::CODES != code::REPEAT)
            .map(|(_, count)| count)
            .sum()
    }

    /// Failed and canceled attempts.
    pub fn failures(&self) -> u64 {
        self.nonzero()
            .filter(|(slot, _)| {
                Outcome::of_code(slot % code::CODES).is_some_and(Outcome::is_failure)
            })
            .map(|(_, count)| count)
            .sum()
    }
}

/// The kernel's counter maps, and the programs whose skipped runs are
/// counted, read on demand.
pub struct KernelStats {
    counters: PerCpuArray<MapData, u64>,
    outcomes: PerCpuArray<MapData, u64>,
    programs: Vec<ProgramFd>,
}

impl KernelStats {
    /// Wraps the `COUNTERS` and `OUTCOMES` maps and descriptors of the
    /// attached `programs`.
    pub fn new(
        counters: PerCpuArray<MapData, u64>,
        outcomes: PerCpuArray<MapData, u64>,
        programs: Vec<ProgramFd>,
    ) -> Self {
        Self {
            counters,
            outcomes,
            programs,
        }
    }

    /// Runs of our programs the kernel skipped, summed: it does not start a
    /// program on a CPU where that program (or, for classic tracepoints,
    /// any kprobe or tracepoint program) is already running, and counts
    /// `recursion_misses` instead (Linux 5.12 and later; 0 before). Each
    /// one is a call or a handshake event not seen.
    pub fn skipped_runs(&self) -> u64 {
        self.programs
            .iter()
            .filter_map(|program| {
                let path = format!("/proc/self/fdinfo/{}", program.as_fd().as_raw_fd());
                let text = std::fs::read_to_string(path).ok()?;
                text.lines()
                    .find_map(|line| line.strip_prefix("recursion_misses:"))?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Reads the counters.
    pub fn counters(&self) -> Result<KernelCounters, MapError> {
        let read =
            |slot: u32| -> Result<u64, MapError> { Ok(self.counters.get(&slot, 0)?.iter().sum()) };
        const _: () = assert!(counter::COUNT == 9, "read every counter below");
        Ok(KernelCounters {
            attempts: read(counter::ATTEMPTS)?,
            ringbuf_full: read(counter::RINGBUF_FULL)?,
            exit_without_entry: read(counter::EXIT_WITHOUT_ENTRY)?,
            in_flight_full: read(counter::IN_FLIGHT_FULL)?,
            pending_full: read(counter::PENDING_FULL)?,
            outcome_ringbuf_full: read(counter::OUTCOME_RINGBUF_FULL)?,
            recent_evicted: read(counter::RECENT_EVICTED)?,
            io_uring_full: read(counter::IO_URING_FULL)?,
            ends_at_close: read(counter::ENDS_AT_CLOSE)?,
        })
    }

    /// Reads the exact counts of attempts by family and outcome.
    pub fn outcomes(&self) -> Result<OutcomeTally, MapError> {
        let slots = (0..SLOTS)
            .map(|slot| Ok(self.outcomes.get(&slot, 0)?.iter().sum()))
            .collect::<Result<Vec<u64>, MapError>>()?;
        Ok(OutcomeTally::from_slots(slots))
    }
}

#[cfg(test)]
mod tests {
    use connect_trace_common::{
        family::{AF_INET, AF_INET6, AF_UNIX},
        outcome::slot,
    };

    use super::*;

    #[test]
    fn labels_and_totals() {
        let inet = family::slot(AF_INET);
        let mut counts = vec![0; SLOTS as usize];
        counts[slot(inet, code::CONNECTED) as usize] = 5;
        counts[slot(inet, 111) as usize] = 3;
        counts[slot(family::slot(AF_INET6), code::CANCELED) as usize] = 2;
        counts[slot(family::slot(AF_UNIX), 2) as usize] = 1;
        counts[slot(inet, code::REPEAT) as usize] = 4;
        counts[slot(family::slot(99), code::FAILED_OTHER) as usize] = 1;
        let tally = OutcomeTally::from_slots(counts);
        assert_eq!(tally.attempts(), 12);
        assert_eq!(tally.failures(), 7);
        let labels: Vec<_> = tally
            .nonzero()
            .map(|(s, n)| (OutcomeTally::labels(s), n))
            .collect();
        assert!(labels.contains(&(("inet", "connected", "none".to_owned()), 5)));
        assert!(labels.contains(&(("inet", "failed", "ECONNREFUSED".to_owned()), 3)));
        assert!(labels.contains(&(("inet6", "canceled", "canceled".to_owned()), 2)));
        assert!(labels.contains(&(("unix", "failed", "ENOENT".to_owned()), 1)));
        assert!(labels.contains(&(("other", "failed", "unknown".to_owned()), 1)));
        assert!(labels.contains(&(("inet", "repeat", "none".to_owned()), 4)));
    }
}
