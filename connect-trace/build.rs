//! Compiles the kernel programs (`connect-trace-ebpf`) for the BPF target
//! with the pinned nightly toolchain, so the daemon can embed the object
//! with `include_bytes!`. Nothing prebuilt is committed.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

include!("../connect-trace-ebpf/toolchain.rs");

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
    // aya-build passes the nested cargo's progress lines ("Compiling ...")
    // on as build warnings, which fill a first build's screen with what
    // looks like trouble. Quiet cargo keeps only real diagnostics.
    // SAFETY: the build script is single-threaded here; nothing else reads
    // the environment concurrently.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: package.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
