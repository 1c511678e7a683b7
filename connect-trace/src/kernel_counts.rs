//! The kernel's exact counts of attempts by family and final outcome
//! (`connect_trace_common::outcome_count`), with their labels.

use connect_trace_common::outcome_count::{
    CANCELED, CODES, CONNECTED, FAILED_OTHER, IN_PROGRESS, MAX_ERRNO, REPEAT, SLOTS,
};

use crate::errno;

/// Family labels by family slot.
const FAMILY_LABELS: [&str; 5] = ["unspec", "unix", "inet", "inet6", "other"];

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
        let family = FAMILY_LABELS
            .get((slot / CODES) as usize)
            .copied()
            .unwrap_or("other");
        let code = slot % CODES;
        let (outcome, error) = match code {
            CONNECTED => ("connected", "none".to_owned()),
            1..=MAX_ERRNO => (
                "failed",
                errno::name(code as i32).map_or_else(|| code.to_string(), str::to_owned),
            ),
            FAILED_OTHER => ("failed", "unknown".to_owned()),
            CANCELED => ("canceled", "canceled".to_owned()),
            IN_PROGRESS => ("in_progress", "none".to_owned()),
            REPEAT => ("repeat", "none".to_owned()),
            _ => ("unknown", "none".to_owned()),
        };
        (family, outcome, error)
    }

    /// Attempts whose outcome is known or given up on (repeats excluded).
    pub fn attempts(&self) -> u64 {
        self.nonzero()
            .filter(|(slot, _)| slot % CODES != REPEAT)
            .map(|(_, count)| count)
            .sum()
    }

    /// Failed and canceled attempts.
    pub fn failures(&self) -> u64 {
        self.nonzero()
            .filter(|(slot, _)| matches!(slot % CODES, 1..=CANCELED))
            .map(|(_, count)| count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use connect_trace_common::outcome_count::{failed, family_slot, slot};

    use super::*;

    #[test]
    fn labels_and_totals() {
        let mut counts = vec![0; SLOTS as usize];
        counts[slot(family_slot(2), CONNECTED) as usize] = 5;
        counts[slot(family_slot(2), failed(111)) as usize] = 3;
        counts[slot(family_slot(10), CANCELED) as usize] = 2;
        counts[slot(family_slot(1), failed(2)) as usize] = 1;
        counts[slot(family_slot(2), REPEAT) as usize] = 4;
        counts[slot(family_slot(99), failed(600)) as usize] = 1;
        let tally = OutcomeTally::from_slots(counts);
        assert_eq!(tally.attempts(), 12);
        assert_eq!(tally.failures(), 7);
        let labels: Vec<_> = tally
            .nonzero()
            .map(|(s, n)| (OutcomeTally::labels(s), n))
            .collect();
        assert!(labels.contains(&(("inet", "failed", "ECONNREFUSED".to_owned()), 3)));
        assert!(labels.contains(&(("inet6", "canceled", "canceled".to_owned()), 2)));
        assert!(labels.contains(&(("unix", "failed", "ENOENT".to_owned()), 1)));
        assert!(labels.contains(&(("other", "failed", "unknown".to_owned()), 1)));
        assert!(labels.contains(&(("inet", "repeat", "none".to_owned()), 4)));
    }
}
