//! The JSON Lines sink: attempts, summaries and lifecycle records rendered
//! by [`super::json`] into an [`Output`], which writes them on a thread of
//! its own.

use std::io;

use super::{
    Sink, SinkError, Started, Stopped,
    json::{self, JsonLines},
    output::Output,
};
use crate::{aggregate::Summary, clock::WallClock, report::AttemptReport};

/// Writes JSON Lines to stdout or a file.
pub struct JsonLinesSink {
    renderer: JsonLines,
    out: Output,
    /// Whether each attempt gets a line (not with `--summary-only`).
    per_attempt: bool,
}

impl JsonLinesSink {
    /// Writes to `out`; `per_attempt` false writes summaries and lifecycle
    /// records only. Every record names `node` when given.
    pub fn new(out: Output, per_attempt: bool, node: Option<std::sync::Arc<str>>) -> Self {
        Self {
            renderer: JsonLines::new(WallClock::new(), node),
            out,
            per_attempt,
        }
    }

    fn line(
        &mut self,
        render: impl FnOnce(&JsonLines, &mut Vec<u8>) -> io::Result<()>,
    ) -> Result<(), SinkError> {
        let renderer = &self.renderer;
        self.out
            .record(|line| render(renderer, line))
            .map_err(|source| SinkError::Failed {
                what: "rendering a JSON line".to_owned(),
                source,
            })
    }
}

impl Sink for JsonLinesSink {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        if !self.per_attempt {
            return Ok(());
        }
        self.line(|renderer, line| renderer.write_attempt(line, report))
    }

    fn summary(&mut self, summary: &Summary) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, summary))
    }

    fn started(&mut self, started: &Started) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, started))?;
        self.flush()
    }

    /// The last line; then waits, for a bounded time, for the output to
    /// take everything.
    fn stopped(&mut self, stopped: &Stopped) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, stopped))?;
        self.out.close();
        Ok(())
    }

    /// Hands the batch to the output's writer; only a vanished stdout ends
    /// the daemon.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Closed {
            what: self.out.describe(),
            source,
        })?;
        // Map kernel times with the clock as it is now, once per batch, so
        // that a clock step shows up in later records.
        self.renderer.resync_clock();
        Ok(())
    }

    fn settle(&mut self) {
        self.out.settle();
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        self.out.reopen().map_err(|source| SinkError::Closed {
            what: self.out.describe(),
            source,
        })
    }
}
