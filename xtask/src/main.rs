//! `cargo xtask`: the project's tasks. Each one sets up what it needs first.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod image;
mod install;
mod kernels;
mod process;
mod setup;
mod toolchain;

/// The crate of kernel programs.
const EBPF_CRATE: &str = "connect-trace-ebpf";

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "connect-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the toolchains, bpf-linker and Debian packages the build needs.
    Setup,
    /// Set up, then build the release binary (target/release/connect-trace).
    Build,
    /// Set up, check formatting and lints, then run every test (as root),
    /// then the kernel matrix: a slice of the tests on each Debian kernel.
    Test(kernels::Selection),
    /// Set up, build, then run `connect-trace run` with the given arguments.
    Run {
        /// Arguments for `connect-trace run` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then measure what tracing costs each connect()
    /// against bpftrace and strace, and whether the daemon keeps up (as root).
    Bench(bench::BenchArgs),
    /// Set up, then build the container image `connect-trace:VERSION` (also
    /// tagged `latest`) with the local Docker engine, starting one for the
    /// build when none answers.
    Image(image::ImageArgs),
    /// Set up, build the tests, then run a slice of them (or a command)
    /// inside each Debian kernel from 5.10 on, under QEMU.
    Kernels(kernels::KernelsArgs),
    /// Set up, build, then install the binary, the systemd unit and the
    /// logrotate snippet (as root); prints how to start the service.
    Install(install::InstallArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.task {
        Task::Setup => setup::setup(&root),
        Task::Build => {
            setup::setup(&root)?;
            build_release(&root)
        }
        Task::Test(kernels) => {
            setup::setup(&root)?;
            test(&root)?;
            kernels::matrix(&root, &kernels)
        }
        Task::Kernels(args) => {
            setup::setup(&root)?;
            kernels::kernels(&root, &args)
        }
        Task::Run { args } => {
            setup::setup(&root)?;
            build_release(&root)?;
            let binary = root.join("target/release/connect-trace");
            process::run(Command::new(binary).arg("run").args(args))
        }
        Task::Bench(args) => {
            setup::setup(&root)?;
            bench::bench(&root, &args)
        }
        Task::Image(args) => {
            setup::setup(&root)?;
            image::image(&root, &args)
        }
        Task::Install(args) => install::install(&root, &args),
    }
}

fn build_release(root: &Path) -> Result<()> {
    process::run(toolchain::cargo(root).args(["build", "--release", "--package", "connect-trace"]))
}

fn test(root: &Path) -> Result<()> {
    if !process::is_root() {
        bail!(
            "the tests load eBPF programs and make connect() calls in network namespaces: run them as root (sudo -E cargo xtask test)"
        );
    }
    process::run(toolchain::cargo(root).args(["fmt", "--all", "--check"]))?;
    // The eBPF crate only builds for the BPF target, so it is linted on its
    // own, with its toolchain, and left out of the host runs.
    process::run(toolchain::cargo(root).args([
        "clippy",
        "--workspace",
        "--exclude",
        EBPF_CRATE,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    process::run(toolchain::cargo_on(toolchain::EBPF, root).args([
        "clippy",
        "--package",
        EBPF_CRATE,
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    process::run(toolchain::cargo(root).args([
        "test",
        "--workspace",
        "--exclude",
        EBPF_CRATE,
        "--no-fail-fast",
    ]))
}

/// The workspace root: xtask's manifest lives one level below it.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .context("run this through `cargo xtask`, which sets CARGO_MANIFEST_DIR")?;
    Path::new(&manifest_dir)
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest has no parent directory")
}
