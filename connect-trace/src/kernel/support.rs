//! Which kernels connect-trace loads on, and which ones the test suite
//! proves it on.
//!
//! `cargo xtask test` boots Debian's kernels from [`OLDEST_TESTED`] to
//! [`NEWEST_TESTED`] under QEMU and runs a slice of the integration tests in
//! each (docs/operations.md has the matrix). [`LOWEST_LOADABLE`] is the
//! first kernel with everything `run` needs, BPF ring buffers being the
//! newest of those. `connect-trace check` reports where the running kernel
//! falls.

use aya::util::KernelVersion;

/// The first Linux with everything `run` needs: BPF ring buffers came in
/// 5.8 (the syscall tracepoints, `sock/inet_sock_set_state` and raw
/// tracepoints are older).
pub const LOWEST_LOADABLE: KernelVersion = KernelVersion::new(5, 8, 0);

/// The oldest kernel the test suite boots: Debian 11's 5.10.
pub const OLDEST_TESTED: KernelVersion = KernelVersion::new(5, 10, 0);

/// The newest kernel series the test suite boots: Debian 13 backports' 7.3.
pub const NEWEST_TESTED: (u8, u8) = (7, 3);

/// Where a kernel version falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Between the oldest and the newest tested kernels.
    Tested,
    /// Newer than any tested kernel.
    Newer,
    /// Older than any tested kernel, but new enough to load on.
    Untested,
    /// Older than [`LOWEST_LOADABLE`].
    TooOld,
}

/// Where `version` falls.
pub fn support(version: KernelVersion) -> Support {
    let (major, minor) = NEWEST_TESTED;
    let after_newest = KernelVersion::new(major, minor.saturating_add(1), 0);
    if version < LOWEST_LOADABLE {
        Support::TooOld
    } else if version < OLDEST_TESTED {
        Support::Untested
    } else if version < after_newest {
        Support::Tested
    } else {
        Support::Newer
    }
}

/// The range the test suite covers, as text: `5.10 to 7.3`.
pub fn tested_range() -> String {
    let (major, minor) = NEWEST_TESTED;
    format!("{} to {major}.{minor}", short(OLDEST_TESTED))
}

/// A version as people write it: `5.8.0` → `5.8`.
pub fn short(version: KernelVersion) -> String {
    let text = version.to_string();
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_fall_where_they_should() {
        let v = KernelVersion::new;
        assert_eq!(support(v(4, 18, 0)), Support::TooOld);
        assert_eq!(support(v(5, 7, 19)), Support::TooOld);
        assert_eq!(support(v(5, 8, 0)), Support::Untested);
        assert_eq!(support(v(5, 9, 16)), Support::Untested);
        assert_eq!(support(v(5, 10, 0)), Support::Tested);
        assert_eq!(support(v(6, 18, 44)), Support::Tested);
        assert_eq!(support(v(7, 3, 4)), Support::Tested);
        assert_eq!(support(v(7, 4, 0)), Support::Newer);
        assert_eq!(tested_range(), "5.10 to 7.3");
    }
}
