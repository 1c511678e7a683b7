//! What every sink is told about one attempt: the attempt resolved to its
//! outcome, who made it, and the name of where it went.

use std::sync::Arc;

use crate::{dns::ServerName, resolve::ResolvedAttempt, workload::Workload};

/// One attempt as the aggregator and the sinks see it.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The call and its outcome.
    pub resolved: ResolvedAttempt,
    /// The container and pod that made it, when workload identity is on
    /// (`None` when it is off).
    pub workload: Option<Arc<Workload>>,
    /// The DNS name whose answer gave the caller the destination address
    /// (`server_name`); `None` when no answer was seen, for destinations
    /// that are not IP addresses, and when DNS names are off.
    pub server_name: Option<ServerName>,
}

impl AttemptReport {
    /// A report with nothing known beyond the attempt itself.
    pub const fn new(resolved: ResolvedAttempt) -> Self {
        Self {
            resolved,
            workload: None,
            server_name: None,
        }
    }
}
