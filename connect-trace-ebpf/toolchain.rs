// The one place the eBPF toolchain is pinned: `connect-trace/build.rs`
// builds the kernel programs with it and `cargo xtask setup` installs it
// (both `include!` this file). Its LLVM (22) must match bpf-linker's:
// nightlies from August 2026 on carry LLVM 23, which bpf-linker 0.13
// cannot link.

/// The nightly that builds the eBPF crate (with rust-src, for build-std).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";
