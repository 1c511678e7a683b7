//! `connect-trace explain`: what a connect() errno means and what to check.
//!
//! Reads only the built-in catalog ([`connect_trace::errno::catalog`]): no
//! root, no BPF.

use std::io::{self, Write};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use connect_trace::errno::{
    self,
    catalog::{self, Entry, Page},
};

/// Options of `connect-trace explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// An errno name (ECONNREFUSED, case-insensitive) or number (111; a
    /// record's negative `ret`, -111, works too).
    #[arg(
        value_name = "ERRNO",
        allow_hyphen_values = true,
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    errno: Option<String>,

    /// List every errno in the catalog.
    #[arg(long)]
    all: bool,

    /// Print JSON: one object, or an array with --all.
    #[arg(long)]
    json: bool,
}

/// Prints one entry, or the whole catalog, to stdout.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let mut out = io::stdout().lock();
    match (&args.errno, args.json) {
        (Some(query), json) => {
            let entry = resolve(query)?;
            if json {
                serde_json::to_writer(&mut out, entry).context("writing JSON")?;
                writeln!(out)?;
            } else {
                write_entry(&mut out, entry)?;
            }
        }
        (None, true) => {
            serde_json::to_writer(&mut out, catalog::entries()).context("writing JSON")?;
            writeln!(out)?;
        }
        (None, false) => write_table(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// The entry for a name or a number, or an error that says why there is none.
fn resolve(query: &str) -> Result<&'static Entry> {
    let query = query.trim();
    let number = match query.parse::<i32>() {
        Ok(number) => Some(number.checked_abs().unwrap_or(number)),
        Err(_) => errno::number(query).or_else(|| catalog::lookup_name(query).map(|e| e.errno)),
    };
    let Some(number) = number else {
        bail!("unknown errno {query:?}: give a name such as ECONNREFUSED or a number such as 111");
    };
    if let Some(entry) = catalog::lookup(number) {
        return Ok(entry);
    }
    match errno::name(number) {
        Some(name) => bail!(
            "{name} ({number}) is not an error any connect() manual lists; `connect-trace explain --all` shows those that are"
        ),
        None => bail!("unknown errno {query:?}: no Linux errno has the number {number}"),
    }
}

/// Writes one entry as `explain` prints it (`top` shows it too).
pub(super) fn write_entry(out: &mut impl Write, entry: &Entry) -> io::Result<()> {
    writeln!(out, "{} ({})", entry.name, entry.errno)?;
    writeln!(
        out,
        "  class:      {} ({})",
        entry.class.name(),
        entry.class.description()
    )?;
    writeln!(out, "  meaning:    {}", entry.meaning)?;
    writeln!(out, "  check:      {}", entry.check)?;
    if let Some(note) = entry.linux_note {
        writeln!(out, "  on Linux:   {note}")?;
    }
    writeln!(
        out,
        "  reachable:  {} ({})",
        entry.linux.name(),
        reach_text(entry.linux)
    )?;
    let pages: Vec<&str> = entry
        .documented_in
        .iter()
        .map(|page: &Page| page.title())
        .collect();
    writeln!(out, "  documented: {}", pages.join(", "))
}

fn reach_text(reach: catalog::Reach) -> &'static str {
    match reach {
        catalog::Reach::Yes => "Linux returns it from connect()",
        catalog::Reach::Rare => "Linux returns it from connect() only in corner cases",
        catalog::Reach::No => "Linux never returns it from connect()",
    }
}

fn write_table(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<14} {:>5}  {:<14} {:<9}  MEANING",
        "NAME", "ERRNO", "CLASS", "REACHABLE"
    )?;
    for entry in catalog::entries() {
        writeln!(
            out,
            "{:<14} {:>5}  {:<14} {:<9}  {}",
            entry.name,
            entry.errno,
            entry.class.name(),
            entry.linux.name(),
            entry.meaning
        )?;
    }
    Ok(())
}
