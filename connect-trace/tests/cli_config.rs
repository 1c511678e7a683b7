//! Options from the command line, `CONNECT_TRACE_*` variables and a TOML
//! file, in that order of precedence. A bad ring buffer size fails at once
//! with a clear message, which makes the winning value visible without
//! tracing anything.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{path::PathBuf, process::Command};

use common::{
    daemon::{BINARY, Daemon},
    require_root,
};

fn config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "connect-trace-config-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `connect-trace run` that must fail, returning stderr.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    require_root();
    let output = Command::new(BINARY)
        .arg("run")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_file_sets_options() {
    let file = config("file", "ring-buffer-size = 12288\n");
    let stderr = fails(&["--config", file.to_str().unwrap()], &[]);
    assert!(stderr.contains("ring buffer size 12288"), "{stderr}");
    assert!(
        stderr.contains(&format!("from config file {}", file.display())),
        "the error names where the value came from: {stderr}"
    );
    // Named by the environment instead of the option.
    let stderr = fails(&[], &[("CONNECT_TRACE_CONFIG", file.to_str().unwrap())]);
    assert!(stderr.contains("ring buffer size 12288"), "{stderr}");
}

#[test]
fn the_environment_beats_the_file_and_the_command_line_beats_both() {
    let file = config("precedence", "ring-buffer-size = 12288\ninterval = 0\n");
    let stderr = fails(
        &["--config", file.to_str().unwrap()],
        &[("CONNECT_TRACE_RING_BUFFER_SIZE", "20480")],
    );
    assert!(stderr.contains("ring buffer size 20480"), "{stderr}");
    assert!(
        stderr.contains("from CONNECT_TRACE_RING_BUFFER_SIZE"),
        "{stderr}"
    );
    let stderr = fails(
        &[
            "--config",
            file.to_str().unwrap(),
            "--ring-buffer-size",
            "36864",
        ],
        &[("CONNECT_TRACE_RING_BUFFER_SIZE", "20480")],
    );
    assert!(stderr.contains("ring buffer size 36864"), "{stderr}");
    assert!(stderr.contains("from --ring-buffer-size"), "{stderr}");
    // And a good value on the command line starts the daemon.
    let daemon = Daemon::start_with(
        &["env", "CONNECT_TRACE_RING_BUFFER_SIZE=20480"],
        &[
            "--config",
            file.to_str().unwrap(),
            "--ring-buffer-size",
            "65536",
            "--pid",
            "1",
        ],
    );
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
}

#[test]
fn an_unknown_key_is_named() {
    let file = config("unknown", "ring-bufer-size = 4096\n");
    let stderr = fails(&["--config", file.to_str().unwrap()], &[]);
    assert!(stderr.contains("unknown key `ring-bufer-size`"), "{stderr}");
    assert!(
        stderr.contains("ring-buffer-size"),
        "the valid keys are listed: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn a_missing_or_broken_file_is_a_clear_error() {
    let stderr = fails(&["--config", "/nonexistent/connect-trace.toml"], &[]);
    assert!(
        stderr.contains("reading config file /nonexistent/connect-trace.toml"),
        "{stderr}"
    );
    let file = config("broken", "interval = [1, 2\n");
    let stderr = fails(&["--config", file.to_str().unwrap()], &[]);
    assert!(stderr.contains("parsing config file"), "{stderr}");
}

#[test]
fn a_device_or_a_fifo_is_not_read_as_a_config_file() {
    let stderr = fails(&["--config", "/dev/zero"], &[]);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let fifo =
        std::env::temp_dir().join(format!("connect-trace-config-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let stderr = fails(&["--config", fifo.to_str().unwrap()], &[]);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let _ = std::fs::remove_file(fifo);
}

#[test]
fn a_mistyped_value_is_refused_wherever_it_comes_from() {
    // In the file, even though the command line sets the option too.
    let file = config("typed", "ring-buffer-size = \"lots\"\n");
    let stderr = fails(
        &[
            "--config",
            file.to_str().unwrap(),
            "--ring-buffer-size",
            "65536",
        ],
        &[],
    );
    assert!(
        stderr.contains(&format!("config file {}", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("ring-buffer-size = lots"), "{stderr}");
    // In the environment: the variable is named.
    let stderr = fails(&["--pid", "1"], &[("CONNECT_TRACE_TOP", "0")]);
    assert!(stderr.contains("CONNECT_TRACE_TOP=0"), "{stderr}");
    let stderr = fails(&["--pid", "1"], &[("CONNECT_TRACE_FAILURES_ONLY", "maybe")]);
    assert!(
        stderr.contains("CONNECT_TRACE_FAILURES_ONLY=maybe"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn pid_zero_is_refused_and_a_missing_pid_is_named() {
    let stderr = fails(&["--pid", "0"], &[]);
    assert!(stderr.contains("'--pid <PID>'"), "{stderr}");
    // The highest pid Linux can give is 4194304; one above is never a
    // process. Tracing starts, with a warning.
    let daemon = Daemon::start(&["--pid", "4194305"]);
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("--pid 4194305: no such process"),
        "{stderr}"
    );
}
