//! The pinned toolchains, and `cargo` commands that use them.

use std::{path::Path, process::Command};

/// Builds and tests the userspace crates. aya 0.16 needs rustc 1.98 or newer.
pub const USERSPACE: &str = "1.99.1";

include!("../../connect-trace-ebpf/toolchain.rs");

/// Builds the eBPF crate (with `-Z build-std=core` and rust-src).
pub const EBPF: &str = EBPF_TOOLCHAIN;

/// The target of the binary in the container image, for this machine's
/// architecture: musl links statically, so the image needs nothing but the
/// binary.
pub fn image_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// The bpf-linker release built against the system LLVM 22.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Where Debian's LLVM 22 lives; bpf-linker links against it.
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// A `cargo` command on the pinned userspace toolchain, run in `root`.
///
/// `cargo xtask` itself runs on whatever toolchain is the default, and cargo
/// exports variables naming it to us; they are removed so the `+toolchain`
/// choice is the only one in force.
pub fn cargo(root: &Path) -> Command {
    cargo_on(USERSPACE, root)
}

/// A `cargo` command on `toolchain`, run in `root`, with the same clean-up.
pub fn cargo_on(toolchain: &str, root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg(format!("+{toolchain}")).current_dir(root);
    for variable in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(variable);
    }
    command
}
