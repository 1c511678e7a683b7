//! Where resolved attempts go: every destination is a [`Sink`], which the
//! pipeline drives without knowing what it writes.
//!
//! - [`jsonl::JsonLinesSink`]: one JSON line per attempt, summary and
//!   lifecycle event ([`json`] renders them; [`output`] writes them to
//!   stdout or a file).
//! - [`prometheus::PrometheusSink`]: Prometheus metrics, served by [`http`]
//!   with the delivery counts and the kernel's exact counts read at scrape
//!   time, the DNS capture's counts ([`dns_metrics`]), and with
//!   `--bpf-stats` what the programs cost ([`program_stats`]).
//! - [`otlp::OtlpSink`]: each attempt as an OpenTelemetry log record, and
//!   the attempt metrics, over OTLP (gRPC or HTTP).

pub mod dns_metrics;
pub mod http;
pub mod json;
mod json_text;
pub mod jsonl;
pub mod otlp;
pub mod output;
pub mod program_stats;
pub mod prometheus;
pub mod workload_series;

use std::{io, time::SystemTime};

use serde::Serialize;
use thiserror::Error;

use crate::{aggregate::Summary, delivery::Delivery, report::AttemptReport};

/// A sink could not take what it was given.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The output was closed by its reader (`| head`): a normal way for the
    /// daemon to stop, quietly.
    #[error("{what} was closed")]
    Closed {
        /// The output.
        what: String,
        /// The error writing it gave.
        #[source]
        source: io::Error,
    },
    /// The sink failed in a way that should stop the daemon.
    #[error("{what}: {source}")]
    Failed {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A destination for what the pipeline produces. Every method but
/// [`Sink::attempt`] has a default that does nothing.
pub trait Sink {
    /// Takes one attempt. Runs once per event: no blocking and as little
    /// allocation as possible.
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError>;

    /// Takes the summary of an interval that just ended.
    fn summary(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        Ok(())
    }

    /// Tracing is live.
    fn started(&mut self, _started: &Started) -> Result<(), SinkError> {
        Ok(())
    }

    /// The daemon stops; nothing follows.
    fn stopped(&mut self, _stopped: &Stopped) -> Result<(), SinkError> {
        Ok(())
    }

    /// The end of a batch: make what was taken visible.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Waits, for a bounded time, until everything taken so far is
    /// written, so that counts read next include it (before `stopped`).
    fn settle(&mut self) {}

    /// Periodic upkeep, about once a second.
    fn housekeeping(&mut self) {}

    /// Reopen files (SIGHUP, after logrotate moved them).
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The `{"type":"started"}` record: tracing is live.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// Always "started".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the programs were attached.
    #[serde(serialize_with = "crate::clock::rfc3339")]
    pub ts: SystemTime,
    /// connect-trace's version.
    pub version: &'static str,
    /// The daemon's process id.
    pub pid: u32,
    /// The kernel ids of the attached programs (`bpftool prog show id N`).
    pub programs: Vec<u32>,
    /// The hook that follows TCP handshakes.
    pub handshake_hook: &'static str,
    /// Kernel struct members BTF could not locate (empty with BTF).
    pub btf_missing: Vec<String>,
    /// Whether DNS answers are captured, so that records can carry
    /// `server_name`.
    pub dns_names: bool,
    /// Why DNS names are off although asked for (no cgroup v2, a refused
    /// attach, ...); `null` when they are on or `--no-dns` turned them off.
    pub dns_problem: Option<String>,
}

/// The `{"type":"stopped"}` record: the last line, with every count.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    /// Always "stopped".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the daemon stopped.
    #[serde(serialize_with = "crate::clock::rfc3339")]
    pub ts: SystemTime,
    /// Every count since start.
    pub delivery: Delivery,
}
