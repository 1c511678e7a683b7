//! The `connect-trace` command line.

use std::{
    io::{self, IsTerminal as _, Write as _},
    process::ExitCode,
};

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod cli;

/// Trace every connect() on this host: who connected where, and how it went.
#[derive(Debug, Parser)]
#[command(name = "connect-trace", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to connect() and write one JSON object per call (JSON Lines).
    Run(Box<cli::run::RunArgs>),
    /// Explain a connect() errno (name or number): meaning, class, what to
    /// check. Needs no privileges.
    Explain(cli::explain::ExplainArgs),
    /// Check this host for everything `run` needs (privileges, bpf(), ring
    /// buffers, tracefs, tracepoints, BTF, cgroup v2); exits non-zero when
    /// `run` cannot work.
    Check(cli::check::CheckArgs),
    /// A full-screen live view of failing connects: rates, the top failing
    /// destinations, processes, containers, pods and errors, and the latest
    /// failures. Attaches the programs itself, or reads a running daemon
    /// (--from). Needs a terminal.
    Top(Box<cli::top::TopArgs>),
}

/// Names the log level (`error`, `warn`, `info`, `debug`, `trace`).
const LOG_LEVEL_VARIABLE: &str = "CONNECT_TRACE_LOG";

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (command, applied) = match cli::config::apply(Cli::command(), &args) {
        Ok(found) => found,
        Err(error) => return fail(&error),
    };
    let matches = command.clone().get_matches_from(args);
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Command::Run(run) = &mut cli.command
        && let (Some(run_matches), Some(run_command)) = (
            matches.subcommand_matches("run"),
            command.find_subcommand("run"),
        )
    {
        run.origins = cli::config::Origins::from_matches(run_matches, run_command, &applied);
    }
    // While `top` covers the terminal, its logs are kept for later.
    let logs = match cli.command {
        Command::Top(_) => Some(cli::top::logs::Logs::capture(log_level())),
        _ => {
            init_logging();
            None
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cli::run::run(*args).await,
            Command::Explain(args) => cli::explain::run(&args),
            Command::Check(args) => cli::check::run(&args).await,
            Command::Top(args) => cli::top::run(*args, logs.unwrap_or_default()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is a normal way to stop.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Logs go to stderr, one line each, at the level named by
/// `CONNECT_TRACE_LOG` (default `info`). A closed stderr loses the logs but
/// never stops the daemon.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_max_level(log_level())
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        // Its own report of a failed write uses eprintln!, which panics
        // when stderr is closed.
        .log_internal_errors(false)
        .init();
}

/// The level `CONNECT_TRACE_LOG` names, `info` by default.
fn log_level() -> tracing::Level {
    std::env::var(LOG_LEVEL_VARIABLE)
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing::Level::INFO)
}

fn fail(error: &anyhow::Error) -> ExitCode {
    // One line a user can act on; ignore a closed stderr.
    let _ = writeln!(io::stderr(), "connect-trace: error: {error:#}");
    ExitCode::FAILURE
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
    })
}
