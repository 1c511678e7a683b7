//! Running the load generator, `connect-load`, and reading its summary.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{Binaries, plan::Mode};

/// What the load generator printed about one run: the fields of its JSON
/// summary line that the bench uses.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LoadResult {
    pub(crate) pid: u32,
    pub(crate) calls: u64,
    pub(crate) calls_per_sec: f64,
    /// Mean time of one iteration (socket, connect, close) in one thread.
    pub(crate) ns_per_call: f64,
    /// Mean time inside connect() alone.
    #[serde(rename = "connect_ns_per_call")]
    pub(crate) connect_ns: f64,
    /// Calls with another outcome than the mode's, by errno name; empty
    /// when every call went as expected.
    pub(crate) errors: BTreeMap<String, u64>,
    /// "count" when every call was made, "time" when `--max-seconds` cut
    /// the run short.
    stopped_by: String,
}

impl LoadResult {
    /// Whether `--max-seconds` stopped the run before `--count` calls.
    pub(crate) fn cut_short(&self) -> bool {
        self.stopped_by == "time"
    }

    /// The unexpected outcomes, `EADDRNOTAVAIL 3, ...`; empty when none.
    pub(crate) fn unexpected(&self) -> String {
        self.errors
            .iter()
            .map(|(errno, count)| format!("{errno} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A `connect-load` command.
pub(crate) fn load_command(
    binaries: &Binaries,
    mode: Mode,
    count: u64,
    threads: usize,
    max_seconds: u64,
) -> Command {
    let mut command = Command::new(&binaries.connect_load);
    command.args(load_args(mode, count, threads, max_seconds));
    command
}

pub(crate) fn load_args(mode: Mode, count: u64, threads: usize, max_seconds: u64) -> Vec<String> {
    vec![
        "--mode".to_owned(),
        mode.name().to_owned(),
        "--count".to_owned(),
        count.to_string(),
        "--threads".to_owned(),
        threads.to_string(),
        "--max-seconds".to_owned(),
        max_seconds.to_string(),
    ]
}

/// Runs a load command to the end and reads its summary line.
pub(crate) fn run_load(command: &mut Command) -> Result<LoadResult> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .context("starting connect-load")?;
    if !output.status.success() {
        bail!(
            "connect-load failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_load(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the summary, the last JSON line `connect-load` printed.
pub(crate) fn parse_load(stdout: &str) -> Result<LoadResult> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("connect-load printed no summary: {stdout:?}"))?;
    serde_json::from_str(line).with_context(|| format!("reading connect-load's summary {line}"))
}

#[cfg(test)]
mod tests {
    use super::parse_load;

    #[test]
    fn reads_connect_load_summary() {
        let line = r#"{"mode":"refused","threads":1,"pid":42,"calls":20000,"expected":"ECONNREFUSED","errors":{"EADDRNOTAVAIL":3},"elapsed_ns":334615383,"calls_per_sec":59770.1,"ns_per_call":16709.4764,"connect_ns_per_call":10237.8592,"stopped_by":"time"}"#;
        let load = parse_load(&format!("warming up\n{line}\n")).unwrap();
        assert_eq!(load.pid, 42);
        assert_eq!(load.calls, 20000);
        assert!((load.ns_per_call - 16709.4764).abs() < 1e-9);
        assert!((load.connect_ns - 10237.8592).abs() < 1e-9);
        assert_eq!(load.unexpected(), "EADDRNOTAVAIL 3");
        assert!(load.cut_short());
    }

    #[test]
    fn a_summary_without_a_field_is_an_error() {
        let error = parse_load(r#"{"pid":42,"calls":1}"#).unwrap_err();
        assert!(format!("{error:#}").contains("missing field"), "{error:#}");
    }
}
