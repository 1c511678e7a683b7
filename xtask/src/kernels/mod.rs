//! The kernel matrix: a slice of the real integration tests, run as root
//! inside Debian's kernels from 5.10 to the newest Debian serves, each
//! booted under QEMU.
//!
//! - [`fetch`] finds each suite's current kernel with a private apt state
//!   ([`apt`]), downloads it once and keeps what booting needs: the ELF
//!   kernel ([`boot_image`]) and a few modules ([`modules`]);
//! - [`initramfs`] builds the guest's init;
//! - [`qemu`] boots a kernel and runs one command in it;
//! - [`matrix`] names the tests every kernel runs, runs them on each
//!   kernel, and reports.
//!
//! The cache is `target/kernels/` (`CONNECT_TRACE_KERNEL_CACHE` moves it):
//! a directory per kernel, `lookup.tsv` (each suite's current kernel, asked
//! again after a day), `apt/` (apt's private state) and `runs/<kernel>/`
//! (the last initramfs and console log of each guest).

mod apt;
mod boot_image;
mod fetch;
mod initramfs;
mod matrix;
mod modules;
mod qemu;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Result, bail};
use clap::Args;

use self::{
    fetch::{Cache, Kernel, Release, SUITES},
    matrix::GuestReport,
    qemu::Machine,
};
use crate::process;

/// Which kernels to boot, and how.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Kernels to boot, comma-separated: Debian suites
    /// (`bullseye-security`), versions (`5.10`, `6.12`, `7.3.4`), `all`, or
    /// `none` to skip the kernel matrix.
    #[arg(
        long = "kernels",
        value_name = "KERNELS",
        env = "CONNECT_TRACE_KERNELS",
        value_delimiter = ',',
        default_value = "all"
    )]
    kernels: Vec<String>,

    /// Guests booted at once, each with one virtual CPU. Their tests spend
    /// much of their time waiting on the kernel, so three share two cores
    /// well.
    #[arg(long, env = "CONNECT_TRACE_KERNEL_JOBS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    jobs: u32,

    /// Ask apt for each suite's current kernel even if the last look-up is
    /// less than a day old.
    #[arg(long)]
    refresh: bool,

    /// Print every guest's console as it comes, with the kernel's messages;
    /// a failing guest's console is printed anyway.
    #[arg(long)]
    verbose: bool,

    /// More parameters for the guests' kernel command line, such as
    /// `preempt=voluntary`.
    #[arg(long, value_name = "PARAMETERS", default_value = "")]
    kernel_args: String,
}

impl Selection {
    fn is_none(&self) -> bool {
        self.kernels.iter().any(|kernel| kernel == "none")
    }
}

/// Options of `cargo xtask kernels`.
#[derive(Debug, Args)]
pub struct KernelsArgs {
    #[command(flatten)]
    selection: Selection,

    /// Fetch and list the kernels; boot none.
    #[arg(long)]
    list: bool,

    /// A shell command to run as root in each guest instead of the test
    /// slice (after `--`); the task fails unless it exits 0 on every kernel.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `cargo xtask kernels`: the matrix alone, or any command on its kernels.
pub fn kernels(root: &Path, args: &KernelsArgs) -> Result<()> {
    let Some(kernels) = fetch_selected(root, &args.selection)? else {
        return Ok(());
    };
    if args.list {
        for kernel in &kernels {
            println!(
                "{}\t{}\t{}\t{}",
                kernel.version(),
                kernel.release.abi,
                kernel.release.suite.name,
                kernel.image.display()
            );
        }
        return Ok(());
    }
    if args.command.is_empty() {
        run_slice(root, &args.selection, &kernels)
    } else {
        let script = args.command.join(" ");
        let reports = boot_all(root, &args.selection, &kernels, &script)?;
        finish(&reports, None)
    }
}

/// The matrix as `cargo xtask test` runs it, after the host's tests.
pub fn matrix(root: &Path, selection: &Selection) -> Result<()> {
    match fetch_selected(root, selection)? {
        Some(kernels) => run_slice(root, selection, &kernels),
        None => {
            eprintln!("xtask: kernel matrix skipped (--kernels none)");
            Ok(())
        }
    }
}

/// The directories each guest mounts afresh over the host's (see
/// `initramfs.rs`): a tree below one of them is not there in the guest.
const GUEST_OWN_DIRS: [&str; 3] = ["/tmp", "/run", "/dev/shm"];

/// Fails clearly when the guests cannot see the tree at `root`.
fn visible_to_guests(root: &Path) -> Result<()> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    if let Some(dir) = GUEST_OWN_DIRS.iter().find(|dir| root.starts_with(dir)) {
        bail!(
            "the kernel matrix cannot run a tree under {dir} ({}): each guest mounts a fresh \
             {dir} of its own, so the test binaries are not there; clone the project elsewhere, \
             or skip the matrix with --kernels none",
            root.display()
        );
    }
    Ok(())
}

fn run_slice(root: &Path, selection: &Selection, kernels: &[Kernel]) -> Result<()> {
    visible_to_guests(root)?;
    let script = matrix::slice_script(root)?;
    let expected = matrix::slice_size();
    eprintln!(
        "xtask: kernel matrix: {expected} tests on each of {} kernels, {} at a time",
        kernels.len(),
        selection.jobs
    );
    for part in matrix::SLICE {
        eprintln!(
            "xtask:   {} ({} tests): {}",
            part.target,
            part.tests.len(),
            part.shows
        );
    }
    let reports = boot_all(root, selection, kernels, &script)?;
    finish(&reports, Some(expected))
}

/// The kernel cache directory.
fn cache_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CONNECT_TRACE_KERNEL_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("kernels")
}

/// The selected kernels, fetched; `None` when the selection is `none`.
fn fetch_selected(root: &Path, selection: &Selection) -> Result<Option<Vec<Kernel>>> {
    if selection.is_none() {
        return Ok(None);
    }
    let started = Instant::now();
    let cache = Cache::new(cache_dir(root));
    let releases = cache.releases(selection.refresh)?;
    cache.prune(&releases)?;
    let chosen = choose(&releases, &selection.kernels)?;
    let kernels = chosen
        .iter()
        .map(|release| cache.kernel(release))
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "xtask: {} kernels ready in {} in {:.1} s",
        kernels.len(),
        cache.dir().display(),
        started.elapsed().as_secs_f64()
    );
    Ok(Some(kernels))
}

/// The releases `wanted` names, in the matrix's order.
fn choose<'a>(releases: &'a [Release], wanted: &[String]) -> Result<Vec<&'a Release>> {
    if wanted.is_empty() || wanted.iter().any(|kernel| kernel == "all") {
        return Ok(releases.iter().collect());
    }
    for kernel in wanted {
        if !releases.iter().any(|release| matches(release, kernel)) {
            bail!(
                "no kernel matches {kernel:?}: name a suite ({}) or a version ({})",
                SUITES.map(|suite| suite.name).join(", "),
                releases
                    .iter()
                    .map(|release| fetch::short_version(&release.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(releases
        .iter()
        .filter(|release| wanted.iter().any(|kernel| matches(release, kernel)))
        .collect())
}

/// Whether `kernel` names `release`: its suite, or a version whose dotted
/// parts start its version (`6.1` is 6.1.x, not 6.12).
fn matches(release: &Release, kernel: &str) -> bool {
    if release.suite.name == kernel {
        return true;
    }
    let version: Vec<&str> = fetch::short_version(&release.version).split('.').collect();
    let asked: Vec<&str> = kernel.split('.').collect();
    !asked.is_empty() && version.starts_with(&asked)
}

fn boot_all(
    root: &Path,
    selection: &Selection,
    kernels: &[Kernel],
    script: &str,
) -> Result<Vec<GuestReport>> {
    let machine = Machine {
        memory: "1G".to_owned(),
        // Guests run side by side instead: a second virtual CPU per guest
        // gained nothing on a two-core host, and 7.3 sometimes hung
        // bringing it up under emulation.
        cpus: 1,
        timeout: matrix::DEFAULT_TIMEOUT,
        boot_timeout: matrix::BOOT_TIMEOUT,
        kernel_messages: selection.verbose,
        kernel_args: selection.kernel_args.clone(),
    };
    let started = Instant::now();
    let reports = matrix::run_all(
        kernels,
        script,
        &machine,
        &cache_dir(root).join("runs"),
        usize::try_from(selection.jobs).unwrap_or(1),
        selection.verbose,
    )?;
    eprintln!(
        "xtask: {} guests ran in {:.1} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(reports)
}

/// Prints each failing guest's console and the matrix, and fails if any
/// guest did.
fn finish(reports: &[GuestReport], expected: Option<usize>) -> Result<()> {
    let failing: Vec<&GuestReport> = reports
        .iter()
        .filter(|report| !report.success(expected))
        .collect();
    for report in &failing {
        eprintln!(
            "xtask: console of {} ({}):",
            report.kernel.release.abi,
            report.log.display()
        );
        for line in &report.outcome.console {
            eprintln!("[{}] {line}", report.kernel.version());
        }
    }
    let date = process::output(Command::new("date").args(["-u", "+%F"])).unwrap_or_default();
    eprintln!("\n{}", matrix::table(reports, expected, date.trim()));
    if !failing.is_empty() {
        bail!(
            "the kernel matrix failed on {}",
            failing
                .iter()
                .map(|report| matrix::one_line(report))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(suite: usize, version: &str) -> Release {
        Release {
            suite: SUITES[suite],
            version: version.to_owned(),
            abi: format!("{version}-amd64"),
            packages: vec!["linux-image-x".to_owned()],
        }
    }

    #[test]
    fn a_tree_under_the_guests_own_tmp_is_refused_clearly() {
        let error = visible_to_guests(Path::new("/tmp/connect-trace-nowhere"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("under /tmp"), "{error}");
        assert!(visible_to_guests(Path::new("/work/connect-trace-nowhere")).is_ok());
    }

    #[test]
    fn kernels_are_chosen_by_suite_or_version() {
        let releases = [
            release(0, "5.10.262-1"),
            release(1, "6.1.192-3"),
            release(2, "6.12.95-1~bpo12+1"),
            release(3, "6.12.118-1"),
        ];
        let versions = |wanted: &[&str]| -> Vec<String> {
            let wanted: Vec<String> = wanted.iter().map(|w| (*w).to_owned()).collect();
            choose(&releases, &wanted)
                .unwrap()
                .iter()
                .map(|release| release.version.clone())
                .collect()
        };
        assert_eq!(versions(&["all"]).len(), 4);
        assert_eq!(versions(&["6.1"]), ["6.1.192-3"]);
        assert_eq!(versions(&["6.12"]), ["6.12.95-1~bpo12+1", "6.12.118-1"]);
        assert_eq!(
            versions(&["bookworm-security", "5.10"]),
            ["5.10.262-1", "6.1.192-3"]
        );
        assert!(choose(&releases, &["4.19".to_owned()]).is_err());
    }
}
