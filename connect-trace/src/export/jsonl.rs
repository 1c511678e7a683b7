//! The JSON Lines sink: attempts, summaries and lifecycle records rendered
//! by [`super::json`] into an [`Output`], one write per batch.

use std::{io, sync::Arc};

use super::{
    Sink, SinkError, Started, Stopped,
    json::{self, JsonLines},
    output::Output,
};
use crate::{aggregate::Summary, clock::WallClock, delivery::Ledger, resolve::ResolvedAttempt};

/// Writes JSON Lines to stdout or a file.
pub struct JsonLinesSink {
    renderer: JsonLines,
    out: Output,
    /// Whether each attempt gets a line (not with `--summary-only`).
    per_attempt: bool,
    ledger: Arc<Ledger>,
    /// Whether the last flush failed, to log only when that changes.
    was_failing: bool,
}

impl JsonLinesSink {
    /// Writes to `out`; `per_attempt` false writes summaries and lifecycle
    /// records only. What is written and not written is counted in `ledger`.
    pub fn new(out: Output, per_attempt: bool, ledger: Arc<Ledger>) -> Self {
        Self {
            renderer: JsonLines::new(WallClock::new()),
            out,
            per_attempt,
            ledger,
            was_failing: false,
        }
    }

    /// The output, as a person would name it.
    fn describe(&self) -> String {
        self.out
            .path()
            .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string())
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
    fn attempt(&mut self, resolved: &ResolvedAttempt) -> Result<(), SinkError> {
        if !self.per_attempt {
            return Ok(());
        }
        self.line(|renderer, line| renderer.write_attempt(line, resolved))
    }

    fn summary(&mut self, summary: &Summary) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, summary))
    }

    fn started(&mut self, started: &Started) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, started))?;
        self.flush()
    }

    fn stopped(&mut self, stopped: &Stopped) -> Result<(), SinkError> {
        self.line(|_, line| json::write_line(line, stopped))?;
        self.flush()
    }

    /// Writes the batch. Output errors on a file are logged when they start
    /// and when they stop, and counted; only a vanished stdout ends the
    /// daemon.
    fn flush(&mut self) -> Result<(), SinkError> {
        let written = self.out.flush().map_err(|source| SinkError::Closed {
            what: self.describe(),
            source,
        })?;
        self.ledger.written(written.records, written.unwritten);
        // Map kernel times with the clock as it is now, once per batch, so
        // that a clock step shows up in later records.
        self.renderer.resync_clock();
        match (self.out.failing(), self.was_failing) {
            (Some(error), false) => {
                tracing::error!(
                    "cannot write to {}: {error}; records are counted as not written until it works again (the kernel keeps counting, metrics keep being served)",
                    self.describe()
                );
                self.was_failing = true;
            }
            (None, true) => {
                tracing::info!(
                    "writing to {} works again; {} records could not be written so far",
                    self.describe(),
                    self.out.unwritten()
                );
                self.was_failing = false;
            }
            _ => {}
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        let written = self.out.reopen().map_err(|source| SinkError::Closed {
            what: self.describe(),
            source,
        });
        match written {
            Ok(written) => {
                self.ledger.written(written.records, written.unwritten);
                tracing::info!("reopened {}", self.describe());
            }
            Err(SinkError::Closed { source, .. }) if self.out.path().is_some() => {
                tracing::error!("reopening {}: {source}", self.describe());
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }
}
