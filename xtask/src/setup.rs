//! `cargo xtask setup`: install what building and testing need, once.
//!
//! Every step checks first and does nothing when its part is already there,
//! so running it before every build costs a second.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    process::{is_root, output, run},
    toolchain::{self, BPF_LINKER_VERSION, EBPF, LLVM_PREFIX, USERSPACE, image_target},
};

/// Debian packages, and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker links the eBPF object with LLVM 22",
    ),
    ("libpolly-22-dev", "LLVM 22's static libraries need Polly"),
    ("libzstd-dev", "LLVM 22 links against zstd"),
    ("zlib1g-dev", "LLVM 22 links against zlib"),
    ("iproute2", "tests build network namespaces with `ip`"),
    (
        "gcc-multilib",
        "the blind-spot tests build a 32-bit client to connect through the compat system calls",
    ),
    ("util-linux", "tests use `unshare` and `setpriv`"),
    (
        "nftables",
        "tests drop SYNs and reject connects inside their own network namespaces",
    ),
    ("strace", "the benchmark compares against `strace -f`"),
    (
        "bpftrace",
        "the benchmark compares against bpftrace on the same tracepoints",
    ),
    (
        "bpftool",
        "the benchmark reads each BPF program's run time and sees when bpftrace's programs are attached",
    ),
    (
        "prometheus",
        "tests scrape the daemon with a real Prometheus and lint it with promtool",
    ),
    (
        "docker.io",
        "`cargo xtask image` builds the container image with Docker; the workload and Kubernetes tests run private Docker engines, their containerd, ctr and runc",
    ),
    (
        "busybox-static",
        "the workload and Kubernetes tests build their container image offline from /bin/busybox, and the kernel matrix's guests start from it",
    ),
    (
        "python3-venv",
        "the Kubernetes test validates the manifests with kubernetes-validate in a virtual environment",
    ),
    (
        "protobuf-compiler",
        "containerd-client generates containerd's gRPC bindings with protoc when it builds",
    ),
    (
        "tmux",
        "the tests of `connect-trace top` run it in a real terminal, type keys and read the screen",
    ),
    (
        "qemu-system-x86",
        "the kernel matrix boots Debian's kernels under QEMU",
    ),
    (
        "kmod",
        "modinfo finds what the guests' kernel modules depend on",
    ),
    (
        "xz-utils",
        "Debian's kernels and modules come compressed with xz",
    ),
    (
        "zstd",
        "Debian's newer kernels and modules come compressed with zstd",
    ),
    (
        "debian-archive-keyring",
        "apt checks the kernel packages the matrix downloads against Debian's keys",
    ),
];

/// Installs whatever is missing.
pub fn setup(root: &Path) -> Result<()> {
    apt_packages()?;
    rust_toolchains()?;
    bpf_linker(root)?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn apt_packages() -> Result<()> {
    let missing: Vec<_> = PACKAGES
        .iter()
        .filter(|(name, _)| !package_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (name, why) in &missing {
        eprintln!("xtask: installing Debian package {name}: {why}");
    }
    if !is_root() {
        bail!(
            "installing Debian packages needs root; run `sudo apt-get install {}` or run this as root",
            missing
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(missing.iter().map(|(name, _)| *name))
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn package_installed(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .is_some_and(|status| status.ends_with("install ok installed"))
}

fn rust_toolchains() -> Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to install the pinned Rust toolchains")?;
    let has = |name: &str| {
        installed
            .lines()
            .any(|line| line.starts_with(&format!("{name}-")))
    };
    if !has(USERSPACE) {
        eprintln!("xtask: installing Rust {USERSPACE}: aya 0.16 needs rustc 1.98 or newer");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            USERSPACE,
            "--profile",
            "minimal",
            "--component",
            "clippy,rustfmt",
        ]))?;
    }
    let targets = output(Command::new("rustup").args([
        "target",
        "list",
        "--installed",
        "--toolchain",
        USERSPACE,
    ]))
    .unwrap_or_default();
    let image_target = image_target();
    if !targets.lines().any(|line| line.trim() == image_target) {
        eprintln!(
            "xtask: adding the {image_target} target to Rust {USERSPACE}: the container image holds one static binary"
        );
        run(Command::new("rustup").args([
            "target",
            "add",
            "--toolchain",
            USERSPACE,
            &image_target,
        ]))?;
    }
    let ebpf_components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        EBPF,
    ]))
    .unwrap_or_default();
    let ebpf_ready = has(EBPF)
        && ["rust-src", "clippy"].iter().all(|component| {
            ebpf_components
                .lines()
                .any(|line| line.starts_with(component))
        });
    if !ebpf_ready {
        eprintln!(
            "xtask: installing Rust {EBPF} with rust-src and clippy: it builds and lints the eBPF programs, with the same LLVM (22) as bpf-linker"
        );
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy",
        ]))?;
    }
    Ok(())
}

fn bpf_linker(root: &Path) -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {LLVM_PREFIX}: it links the eBPF programs (a few minutes, once)"
    );
    run(toolchain::cargo(root)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", LLVM_PREFIX))
}
