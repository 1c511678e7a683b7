//! Running the load generator, `connect-load`, and reading its summary.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use super::{Binaries, plan::Mode};

/// What the load generator printed about one run.
#[derive(Clone, Debug)]
pub(crate) struct LoadResult {
    pub(crate) pid: u32,
    pub(crate) calls: u64,
    pub(crate) calls_per_sec: f64,
    pub(crate) ns_per_call: f64,
    pub(crate) connect_ns: f64,
    /// The `errors` object as printed, `{}` when every call went as expected.
    pub(crate) errors: String,
    pub(crate) cut_short: bool,
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

pub(crate) fn parse_load(stdout: &str) -> Result<LoadResult> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("connect-load printed no summary: {stdout:?}"))?;
    let number = |key: &str| -> Result<f64> {
        json_field(line, key)
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no number {key:?} in connect-load's summary {line}"))
    };
    let integer = |key: &str| -> Result<u64> {
        json_field(line, key)
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no integer {key:?} in connect-load's summary {line}"))
    };
    Ok(LoadResult {
        pid: u32::try_from(integer("pid")?).context("connect-load's pid is out of range")?,
        calls: integer("calls")?,
        calls_per_sec: number("calls_per_sec")?,
        ns_per_call: number("ns_per_call")?,
        connect_ns: number("connect_ns_per_call")?,
        errors: json_field(line, "errors").unwrap_or("{}").to_owned(),
        cut_short: json_field(line, "stopped_by") == Some("\"time\""),
    })
}

/// The raw text of `key`'s value in a flat JSON object line: a number, a
/// string with its quotes, or an object without nested objects. Enough for
/// the lines `connect-load` prints; xtask has no JSON parser.
pub(crate) fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let start = line.find(&pattern)? + pattern.len();
    let rest = &line[start..];
    let end = if rest.starts_with('{') {
        rest.find('}')? + 1
    } else if let Some(string) = rest.strip_prefix('"') {
        string.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::{json_field, parse_load};

    #[test]
    fn reads_connect_load_summary() {
        let line = r#"{"mode":"refused","threads":1,"pid":42,"calls":20000,"expected":"ECONNREFUSED","errors":{"EADDRNOTAVAIL":3},"elapsed_ns":334615383,"calls_per_sec":59770.1,"ns_per_call":16709.4764,"connect_ns_per_call":10237.8592,"stopped_by":"time"}"#;
        let load = parse_load(line).unwrap();
        assert_eq!(load.pid, 42);
        assert_eq!(load.calls, 20000);
        assert!((load.ns_per_call - 16709.4764).abs() < 1e-9);
        assert_eq!(load.errors, r#"{"EADDRNOTAVAIL":3}"#);
        assert!(load.cut_short);
        assert_eq!(json_field(line, "mode"), Some("\"refused\""));
    }
}
