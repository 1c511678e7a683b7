//! Compiles the kernel programs (`connect-trace-ebpf`) for the BPF target
//! with the pinned nightly toolchain, so the daemon can embed the object
//! with `include_bytes!`. Nothing prebuilt is committed.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// The nightly that builds the eBPF crate. Its LLVM must match bpf-linker's
/// (LLVM 22); `cargo xtask setup` installs both. Keep in step with
/// `xtask/src/toolchain.rs`.
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "connect-trace-ebpf")
        .ok_or_else(|| anyhow!("connect-trace-ebpf is not in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: package.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
