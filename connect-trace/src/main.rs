//! The `connect-trace` command line.

use std::{io, process::ExitCode};

use clap::{Parser, Subcommand};

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
    Run(cli::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cli::run::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is a normal way to stop.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("connect-trace: error: {error:#}");
    ExitCode::FAILURE
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
    })
}
