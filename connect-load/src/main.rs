//! `connect-load`: make many loopback `connect()` calls as fast as possible
//! and print one JSON line saying how fast they went.
//!
//! It is the load `cargo xtask bench` measures tracers with. Every call goes
//! to 127.0.0.1 or a unix path; a run is bounded by `--count` and by
//! `--max-seconds`, whichever comes first.
//!
//! ```console
//! $ connect-load --mode refused --count 100000
//! {"mode":"refused","threads":1,"pid":4242,"calls":100000,"expected":"ECONNREFUSED","errors":{},"elapsed_ns":1412000000,...}
//! ```

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Parser;

mod errno;
mod load;
mod sys;
mod target;

use load::Plan;
use target::{Mode, Target};

/// Make loopback connect() calls as fast as possible, then print one JSON
/// line: mode, threads, calls, unexpected outcomes by errno, elapsed_ns,
/// calls_per_sec, ns_per_call, connect_ns_per_call.
#[derive(Debug, Parser)]
#[command(name = "connect-load", version, about)]
struct Cli {
    /// What to connect to.
    #[arg(long, value_enum, default_value_t = Mode::Refused)]
    mode: Mode,

    /// connect() calls to make in all (each on a new socket, closed after).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,

    /// Threads making calls at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,

    /// Stop after this many seconds even if calls are left (up to 3600).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_max_seconds)]
    max_seconds: Duration,

    /// Set up, then wait for a line (or end of file) on stdin before the
    /// first call, so a tracer can be attached to this pid first.
    #[arg(long)]
    start_on_stdin: bool,

    /// The missing path `--mode unix` connects to (it must not exist).
    /// Default: connect-load-PID-missing.sock in the temporary directory.
    #[arg(long, value_name = "PATH")]
    unix_path: Option<PathBuf>,
}

fn parse_max_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(format!("{seconds} is not between 0 and 3600 seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("connect-load: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let target = Target::set_up(cli.mode, cli.unix_path.as_deref())
        .with_context(|| format!("setting up --mode {}", cli.mode.name()))?;
    if cli.start_on_stdin {
        eprintln!(
            "connect-load: pid {} ready; waiting for a line on stdin",
            std::process::id()
        );
        io::stdin()
            .read_line(&mut String::new())
            .context("waiting for the start line on stdin")?;
    }
    let plan = Plan {
        count: cli.count,
        threads: usize::from(cli.threads),
        max_time: cli.max_seconds,
    };
    let summary = load::run(cli.mode, &target, plan)?;
    let line = serde_json::to_string(&summary).context("rendering the summary")?;
    writeln!(io::stdout().lock(), "{line}").context("writing the summary to stdout")?;
    Ok(())
}
