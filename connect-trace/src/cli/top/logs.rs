//! Logs while the view covers the terminal: kept in memory (the newest
//! warning shows in the status line) and written to stderr once the
//! terminal is back.

use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{Arc, Mutex, PoisonError},
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Lines kept; older ones are dropped and counted.
const KEPT: usize = 200;

#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<String>,
    dropped: u64,
    warning: Option<String>,
}

/// The log lines of this run.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    kept: Arc<Mutex<Kept>>,
}

impl Logs {
    /// Sends the logs at `level` and above here from now on.
    pub fn capture(level: Level) -> Self {
        let logs = Self::default();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false)
            .with_ansi(false)
            .with_writer(logs.clone())
            .init();
        logs
    }

    /// The newest warning or error, if any.
    pub fn warning(&self) -> Option<String> {
        self.lock().warning.clone()
    }

    /// Writes what was kept to stderr (the terminal is restored by then).
    pub fn replay(&self) {
        let kept = std::mem::take(&mut *self.lock());
        let mut stderr = io::stderr().lock();
        if kept.dropped > 0 {
            let _ = writeln!(stderr, "({} earlier log lines not kept)", kept.dropped);
        }
        for line in kept.lines {
            let _ = stderr.write_all(line.as_bytes());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One log line being written.
pub struct LogLine {
    logs: Logs,
    warning: bool,
    text: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.text).into_owned();
        let mut kept = self.logs.lock();
        if self.warning {
            kept.warning = Some(line.trim_end().to_owned());
        }
        if kept.lines.len() >= KEPT {
            kept.lines.pop_front();
            kept.dropped += 1;
        }
        kept.lines.push_back(line);
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            logs: self.clone(),
            warning: false,
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LogLine {
            logs: self.clone(),
            warning: *meta.level() <= Level::WARN,
            text: Vec::new(),
        }
    }
}
