//! A kernel without BTF, as the docs promise it: `run` warns and still
//! follows handshakes, but a failed one says `failed` with a null error;
//! `check` warns and passes.
//!
//! The kernel's BTF is hidden from the binary by an empty tmpfs over
//! `/sys/kernel/btf`, in a private mount namespace that ends with it, so
//! the host's mounts never change. That is what the binary sees on a kernel
//! built without `CONFIG_DEBUG_INFO_BTF`: no `/sys/kernel/btf/vmlinux`.
//!
//! Needs root (`cargo xtask test` runs it so in CI, and on every kernel of
//! the kernel matrix).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;

use std::{net::Ipv4Addr, os::fd::AsRawFd, process::Command};

use common::{
    DROPPED_PORT, RawAddr, connect_raw,
    daemon::{BINARY, Daemon, Ready},
    gettid, in_dropping_netns, require_root, socket,
};
use serde_json::Value;

/// Shell commands that hide the kernel's BTF in the current mount
/// namespace, and fail if it still shows.
const HIDE_BTF: &str = "mount -t tmpfs -o size=64k none /sys/kernel/btf && \
     if [ -e /sys/kernel/btf/vmlinux ]; then echo 'BTF still visible' >&2; exit 97; fi";

#[test]
fn a_failed_handshake_has_a_null_error_and_a_warning() {
    let script = format!(
        "{HIDE_BTF} && exec {BINARY} run --pid {}",
        std::process::id()
    );
    let daemon = Daemon::start_in_private_mounts(&script, Ready::Started);
    let missing = daemon.started["btf_missing"].as_array().unwrap().clone();
    assert!(missing.contains(&Value::from("sock.sk_err")), "{missing:?}");
    // The SYN is dropped, so the handshake fails later (ETIMEDOUT, about
    // 3 s): only the socket's sk_err, found through BTF, could say why.
    let (tid, fd) = in_dropping_netns(|| {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let addr = RawAddr::inet(Ipv4Addr::LOCALHOST, DROPPED_PORT);
        assert_eq!(
            connect_raw(fd.as_raw_fd(), addr.as_ptr(), addr.len),
            libc::EINPROGRESS
        );
        (gettid(), fd)
    });
    let record = daemon.record_of(tid);
    drop(fd);
    assert_eq!(record["errno_name"], "EINPROGRESS", "{record}");
    assert_eq!(record["outcome"], "failed", "{record}");
    assert_eq!(record["final_errno"], Value::Null, "{record}");
    assert_eq!(record["final_errno_name"], Value::Null, "{record}");
    assert!(record["handshake_ns"].as_u64().is_some(), "{record}");
    let (status, stderr) = daemon.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("failed handshakes are reported with a null error"),
        "no warning about BTF in: {stderr}"
    );
}

#[test]
fn check_warns_and_passes() {
    require_root();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{HIDE_BTF} && exec {BINARY} check --json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let checks: Value = serde_json::from_str(&stdout).unwrap();
    let btf = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "kernel-btf")
        .unwrap();
    assert_eq!(btf["status"], "warn", "{btf}");
    let detail = btf["detail"].as_str().unwrap();
    assert!(detail.contains("/sys/kernel/btf/vmlinux"), "{detail}");
    assert!(detail.contains("null error"), "{detail}");
}
