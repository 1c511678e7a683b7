//! The slice of integration tests every kernel runs, and running it on
//! many kernels at once.
//!
//! The tests are the real ones, the binaries `cargo test` built on the host;
//! each guest runs them as root on its own kernel, against the host's files.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use cargo_metadata::{Message, TargetKind};

use super::{
    fetch::Kernel,
    initramfs,
    qemu::{self, Machine},
};
use crate::toolchain;

/// A test binary and the tests of it every guest runs.
pub struct Part {
    /// The test target (`connect-trace/tests/<target>.rs`).
    pub target: &'static str,
    /// What it shows on each kernel.
    pub shows: &'static str,
    /// Test names, matched exactly.
    pub tests: &'static [&'static str],
}

/// The slice: each family, each errno class, the outcomes that end after
/// the call (non-blocking, timed out, canceled), the fallback paths,
/// `check`, a clean stop, and a kernel without BTF.
pub const SLICE: &[Part] = &[
    Part {
        target: "kernel_records",
        shows: "exact records for each address family, a malformed call and a kernel-side filter",
        tests: &[
            "tcp4_to_a_listener_succeeds",
            "tcp6_to_a_listener_and_to_a_closed_port",
            "udp_connect_succeeds_without_traffic",
            "unix_abstract_name_keeps_its_bytes",
            "unknown_family_is_kept_by_number",
            "short_addrlen_is_einval_and_truncated",
            "failures_only_skips_successes_in_the_kernel",
        ],
    },
    Part {
        target: "errno_provocation",
        shows: "a real errno of each catalog class",
        tests: &[
            "econnrefused_from_a_closed_tcp_port",
            "etimedout_when_syns_are_dropped",
            "enetunreach_without_a_route",
            "enoent_from_a_missing_unix_path",
            "eagain_from_a_full_unix_backlog",
            "eacces_from_a_prohibit_route",
            "eintr_from_a_signal_during_a_blocking_connect",
            "ealready_from_a_second_nonblocking_attempt",
            "efault_from_a_bad_address_pointer",
        ],
    },
    Part {
        target: "outcomes",
        shows: "handshakes followed to their end (connected, refused, timed out, canceled), also on the fallback paths and when caught only as the socket is freed, and the caller's identity read either way",
        tests: &[
            "nonblocking_connect_to_a_listener_is_connected_with_a_handshake_time",
            "nonblocking_connect_to_a_closed_port_is_refused",
            "a_handshake_that_times_out_is_reported_once_as_etimedout",
            "closing_the_socket_during_syn_sent_is_canceled",
            "the_fallback_paths_give_the_same_records",
            "the_caller_is_the_thread_that_called",
            "an_end_the_kernel_did_not_report_is_caught_as_the_socket_closes",
        ],
    },
    Part {
        target: "counts_agree",
        shows: "the kernel's exact counts and the daemon's agree on every kind of call, status checks and MPTCP included",
        tests: &["the_kernel_and_the_daemon_count_the_same_mix_the_same_way"],
    },
    Part {
        target: "cli_check",
        shows: "`connect-trace check` passes",
        tests: &["passes_on_this_host"],
    },
    Part {
        target: "cli_run",
        shows: "the daemon mounts tracefs, and a stop flushes every record and detaches every program",
        tests: &[
            "sigterm_flushes_every_pending_record_and_detaches",
            "mounts_tracefs_when_it_is_missing",
        ],
    },
    Part {
        target: "without_btf",
        shows: "without kernel BTF: a warning, failed handshakes with a null error, and `check` warns",
        tests: &[
            "a_failed_handshake_has_a_null_error_and_a_warning",
            "check_warns_and_passes",
        ],
    },
];

/// How many tests the slice has.
pub fn slice_size() -> usize {
    SLICE.iter().map(|part| part.tests.len()).sum()
}

/// Builds (or finds, when `cargo test` just built them) the slice's test
/// binaries, checks that every test it names exists, and returns the
/// script a guest runs.
pub fn slice_script(root: &Path) -> Result<String> {
    let binaries = test_binaries(root)?;
    let crate_dir = root.join("connect-trace");
    let mut script = String::from("failed=0\nexport RUST_BACKTRACE=1\n");
    writeln!(script, "cd {}", quote(&crate_dir.to_string_lossy()))?;
    for part in SLICE {
        let binary = binaries
            .get(part.target)
            .with_context(|| format!("cargo built no test binary {}", part.target))?;
        let listed = list_tests(binary)?;
        for test in part.tests {
            if !listed.iter().any(|name| name == test) {
                bail!(
                    "the kernel matrix runs {}::{test}, which no longer exists: update SLICE in xtask/src/kernels/matrix.rs",
                    part.target
                );
            }
        }
        writeln!(script, "echo {}", quote(&format!("== {}", part.target)))?;
        // One test at a time. On a kernel that preempts BPF programs (every
        // 7.x: only lazy and full preemption are left), two threads
        // connecting at once on one CPU make the kernel skip the tracer's
        // program for one of them (counted only in the program's
        // recursion_misses), and that call's record is lost. That is a
        // defect of its own, not what this slice is about.
        write!(
            script,
            "{} --exact --test-threads=1",
            quote(&binary.to_string_lossy())
        )?;
        for test in part.tests {
            write!(script, " {test}")?;
        }
        script.push_str(" || failed=1\n");
    }
    script.push_str("exit $failed\n");
    Ok(script)
}

/// The executable of each test target in the slice, by target name.
fn test_binaries(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut command = toolchain::cargo(root);
    command.args([
        "test",
        "--package",
        "connect-trace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for part in SLICE {
        command.args(["--test", part.target]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test --no-run")?;
    let stdout = child.stdout.take().context("no stdout from cargo")?;
    let mut binaries = HashMap::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Message::CompilerArtifact(artifact) = message.context("reading cargo's messages")?
        else {
            continue;
        };
        if let (true, Some(executable)) = (
            artifact.target.kind.contains(&TargetKind::Test),
            artifact.executable,
        ) {
            binaries.insert(artifact.target.name, executable.into_std_path_buf());
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the test binaries failed ({status})");
    }
    Ok(binaries)
}

/// The names of the tests in `binary`.
fn list_tests(binary: &Path) -> Result<Vec<String>> {
    let output = std::process::Command::new(binary)
        .args(["--list", "--format=terse"])
        .output()
        .with_context(|| format!("listing the tests of {}", binary.display()))?;
    if !output.status.success() {
        bail!("{} --list failed ({})", binary.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// `text` in single quotes for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What one kernel did with the command.
pub struct GuestReport {
    /// The kernel.
    pub kernel: Kernel,
    /// How QEMU ended.
    pub outcome: qemu::Outcome,
    /// Tests the guest passed and failed, from the test harness's lines.
    pub passed: usize,
    /// See `passed`.
    pub failed: usize,
    /// Names of the failing tests.
    pub failures: Vec<String>,
    /// Where its console was saved.
    pub log: PathBuf,
}

impl GuestReport {
    /// Whether the command succeeded, and ran every test it should have
    /// (`expected`; `None` for a command that is not the slice).
    pub fn success(&self, expected: Option<usize>) -> bool {
        self.outcome.status == Some(0)
            && self.failed == 0
            && expected.is_none_or(|expected| self.passed == expected)
    }
}

/// Runs `script` on every kernel, `jobs` guests at a time, and returns
/// what each did, in the order of `kernels`.
pub fn run_all(
    kernels: &[Kernel],
    script: &str,
    machine: &Machine,
    runs_dir: &Path,
    jobs: usize,
    verbose: bool,
) -> Result<Vec<GuestReport>> {
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<Result<GuestReport>>>> =
        Mutex::new(kernels.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, kernels.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(kernel) = kernels.get(index) else {
                        break;
                    };
                    let report = run_one(kernel, script, machine, runs_dir, verbose);
                    if let Ok(report) = &report {
                        eprintln!("xtask: {}", one_line(report));
                    }
                    if let Ok(mut reports) = reports.lock() {
                        reports[index] = Some(report);
                    }
                }
            });
        }
    });
    let reports = reports
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a guest runner panicked"))?;
    reports
        .into_iter()
        .map(|report| report.context("a guest runner stopped early")?)
        .collect()
}

fn run_one(
    kernel: &Kernel,
    script: &str,
    machine: &Machine,
    runs_dir: &Path,
    verbose: bool,
) -> Result<GuestReport> {
    let dir = runs_dir.join(&kernel.release.abi);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initramfs_path = dir.join("initramfs.cpio");
    initramfs::write(&initramfs_path, &kernel.modules, script)?;
    eprintln!(
        "xtask: booting {} ({}, {})",
        kernel.release.abi,
        kernel.release.suite.name,
        kernel.image.display()
    );
    let label = kernel.version().to_owned();
    let boot = || {
        qemu::run(&kernel.image, &initramfs_path, machine, |line| {
            if verbose {
                eprintln!("[{label}] {line}");
            }
        })
    };
    let mut outcome = boot()?;
    // An emulated boot fails now and then before the kernel reaches init
    // (a hang bringing up a second CPU, a timer too slow for a boot-time
    // check); that says nothing about the tracer, so such a guest gets a
    // second boot.
    if !outcome.booted {
        eprintln!(
            "xtask: {} did not reach its init ({}); booting it again",
            kernel.release.abi,
            if outcome.boot_hung {
                format!("nothing in {} s", machine.boot_timeout.as_secs())
            } else {
                outcome.console.first().cloned().unwrap_or_default()
            }
        );
        outcome = boot()?;
    }
    let log = dir.join("console.log");
    fs::write(&log, outcome.console.join("\n") + "\n")
        .with_context(|| format!("writing {}", log.display()))?;
    let (passed, failed, failures) = count_tests(&outcome.console);
    Ok(GuestReport {
        kernel: kernel.clone(),
        outcome,
        passed,
        failed,
        failures,
        log,
    })
}

/// Sums the test harness's `test result:` lines, and names the failures.
fn count_tests(console: &[String]) -> (usize, usize, Vec<String>) {
    let mut passed = 0;
    let mut failed = 0;
    let mut failures = Vec::new();
    for line in console {
        if let Some(result) = line.strip_prefix("test result: ") {
            let number_before = |word: &str| -> usize {
                result
                    .split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += number_before("passed");
            failed += number_before("failed");
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            failures.push(name.to_owned());
        }
    }
    (passed, failed, failures)
}

/// `5.10.262 (5.10.0-46-amd64, bullseye-security): 31 passed in 52 s`.
pub fn one_line(report: &GuestReport) -> String {
    let kernel = &report.kernel;
    let mut line = format!(
        "{} ({}, {}): ",
        kernel.version(),
        kernel.release.abi,
        kernel.release.suite.name
    );
    match report.outcome.status {
        Some(status) => {
            let _ = write!(
                line,
                "{} passed, {} failed, exit status {status}",
                report.passed, report.failed
            );
        }
        None if report.outcome.timed_out => line.push_str("killed at the time limit"),
        None if !report.outcome.booted => line.push_str("did not boot, twice"),
        None => line.push_str("the guest ended without an exit status (see its console)"),
    }
    let _ = write!(line, " in {} s", report.outcome.elapsed.as_secs());
    line
}

/// The matrix as a Markdown table, for docs/operations.md.
pub fn table(reports: &[GuestReport], expected: Option<usize>, date: &str) -> String {
    let mut table = String::from(
        "| kernel | Debian package | suite (who runs it) | result | time |\n|---|---|---|---|---:|\n",
    );
    for report in reports {
        let kernel = &report.kernel;
        let result = match (report.success(expected), expected) {
            (true, Some(expected)) => format!("{expected} of {expected} passed"),
            (true, None) => "exit status 0".to_owned(),
            (false, _) => format!(
                "**failed**: {} passed, {} failed{}",
                report.passed,
                report.failed,
                if report.failures.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", report.failures.join(", "))
                }
            ),
        };
        let _ = writeln!(
            table,
            "| {} | `{}` {} | {} ({}) | {result} on {date} | {} s |",
            kernel.version(),
            kernel.release.packages.first().map_or("", String::as_str),
            kernel.release.version,
            kernel.release.suite.name,
            kernel.release.suite.users,
            report.outcome.elapsed.as_secs()
        );
    }
    table
}

/// How long a guest may take by default: the slice takes about a minute
/// alone; guests sharing two CPUs take longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a guest may take to reach its init.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_results_are_summed() {
        let console: Vec<String> = [
            "running 2 tests",
            "test a ... ok",
            "test b ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.00s",
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.89s",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(count_tests(&console), (13, 1, vec!["b".to_owned()]));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn the_slice_names_each_target_once() {
        let mut targets: Vec<_> = SLICE.iter().map(|part| part.target).collect();
        targets.sort_unstable();
        targets.dedup();
        assert_eq!(targets.len(), SLICE.len());
        assert!(slice_size() >= 20);
    }
}
