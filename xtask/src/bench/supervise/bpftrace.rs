//! bpftrace, the tool a user would write a tracer with, as a row of the
//! cost tables.

use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::Receiver,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{ATTACH_TIMEOUT, STOP_TIMEOUT, interrupt, lines_of};
use crate::bench::program_time::attached_by;

/// bpftrace attaches a tracepoint program with one ioctl and enables the
/// event with the next; the kernel reports the program attached after the
/// first. A pause many times that gap.
const ENABLE_SETTLE: Duration = Duration::from_millis(50);

/// How often to ask the kernel whether bpftrace's programs are attached.
const ATTACH_POLL: Duration = Duration::from_millis(20);

/// A running bpftrace, its stdout going to a file.
pub(crate) struct Bpftrace {
    child: Child,
    stderr: Receiver<String>,
    /// The kernel ids of its attached programs.
    pub(crate) programs: Vec<u32>,
    running: bool,
}

impl Bpftrace {
    /// Starts bpftrace on `program` and waits until the kernel reports
    /// `probes` programs attached by it: not its "Attaching N probes..."
    /// line, which it prints before attaching them.
    pub(crate) fn start(program: &str, probes: usize, output: &Path) -> Result<Self> {
        let stdout =
            File::create(output).with_context(|| format!("creating {}", output.display()))?;
        let mut child = Command::new("bpftrace")
            .args(["-e", program])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace")?;
        let stderr = lines_of(child.stderr.take());
        let mut bpftrace = Self {
            child,
            stderr,
            programs: Vec::new(),
            running: true,
        };
        let started = Instant::now();
        loop {
            bpftrace.programs = attached_by(bpftrace.child.id())?;
            if bpftrace.programs.len() >= probes {
                thread::sleep(ENABLE_SETTLE);
                return Ok(bpftrace);
            }
            if let Some(status) = bpftrace.child.try_wait().context("watching bpftrace")? {
                bpftrace.running = false;
                let stderr: Vec<String> = bpftrace.stderr.try_iter().collect();
                bail!(
                    "bpftrace exited ({status}) before attaching: {}",
                    stderr.join(" | ")
                );
            }
            if started.elapsed() > ATTACH_TIMEOUT {
                bail!("bpftrace did not attach within {ATTACH_TIMEOUT:?}");
            }
            // The kernel has no notification for an attachment.
            thread::sleep(ATTACH_POLL);
        }
    }

    pub(crate) fn stop(&mut self) -> Result<()> {
        interrupt(self.child.id())?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for bpftrace")? {
                self.running = false;
                if !status.success() {
                    let stderr: Vec<String> = self.stderr.try_iter().collect();
                    bail!("bpftrace failed ({status}): {}", stderr.join(" | "));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not stop within {STOP_TIMEOUT:?} of SIGINT");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if self.running {
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}
