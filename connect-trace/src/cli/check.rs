//! `connect-trace check`: a doctor that tests this host for everything `run`
//! needs and says what to do about what is missing.
//!
//! The checks live in the library ([`connect_trace::doctor`]); this prints
//! them, one line each, or as a JSON array, and fails unless `run` can work.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use connect_trace::{
    doctor::{self, Options, Report},
    workload::lookup::LookupConfig,
};

/// Options of `connect-trace check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Read tracepoint formats from this tracefs root (a directory with
    /// `events/`) instead of the system's; the load-and-attach check is then
    /// skipped.
    #[arg(long, value_name = "DIR")]
    tracefs: Option<PathBuf>,

    /// Print the results as a JSON array of {name, status, detail, remedy}.
    #[arg(long)]
    json: bool,
}

/// Runs the checks and prints them; fails when `run` cannot work here.
pub async fn run(args: &CheckArgs) -> Result<()> {
    let mut report = doctor::run_checks(&Options {
        tracefs: args.tracefs.clone(),
    })?;
    report
        .checks
        .extend(doctor::workload_checks(&LookupConfig::default()).await);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush()?;
    if !report.ready() {
        let names: Vec<&str> = report.missing().map(|check| check.name.as_str()).collect();
        bail!(
            "`connect-trace run` cannot work here: missing {}",
            names.join(", ")
        );
    }
    Ok(())
}

/// One line per check: status, name, what was found, and what to do.
fn write_text(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let width = report
        .checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        write!(
            out,
            "{:<7}  {:<width$}  {}",
            check.status, check.name, check.detail
        )?;
        match &check.remedy {
            Some(remedy) => writeln!(out, " -> fix: {remedy}")?,
            None => writeln!(out)?,
        }
    }
    if report.ready() {
        writeln!(out, "ready: `connect-trace run` can trace on this host")
    } else {
        writeln!(
            out,
            "not ready: {} required check(s) missing",
            report.missing().count()
        )
    }
}
