//! What every sink is told about one attempt: the attempt resolved to its
//! outcome, and who made it.

use std::sync::Arc;

use crate::{resolve::ResolvedAttempt, workload::Workload};

/// One attempt as the aggregator and the sinks see it.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The call and its outcome.
    pub resolved: ResolvedAttempt,
    /// The container and pod that made it, when workload identity is on
    /// (`None` when it is off).
    pub workload: Option<Arc<Workload>>,
}

impl AttemptReport {
    /// A report with nothing known beyond the attempt itself.
    pub const fn new(resolved: ResolvedAttempt) -> Self {
        Self {
            resolved,
            workload: None,
        }
    }
}
