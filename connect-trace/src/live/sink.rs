//! The sink that feeds the live aggregates.

use super::Live;
use crate::{
    export::{Sink, SinkError},
    report::AttemptReport,
};

/// Counts every attempt into a [`Live`]'s aggregates. Per attempt: a clock
/// read, an uncontended lock, and a keyed hash and a few counters per
/// dimension; no allocation once its keys are known.
#[derive(Debug)]
pub struct LiveSink {
    live: Live,
}

impl LiveSink {
    /// A sink feeding `live`.
    pub const fn new(live: Live) -> Self {
        Self { live }
    }
}

impl Sink for LiveSink {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        self.live.record(report);
        Ok(())
    }
}
