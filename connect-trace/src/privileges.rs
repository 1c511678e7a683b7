//! Checking, before anything is loaded, that this process may load and
//! attach eBPF programs, so that the user gets one clear line instead of a
//! verifier or `bpf()` error.

use std::fs;

/// A Linux capability the tracer may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// The name, as in capabilities(7).
    pub name: &'static str,
    bit: u32,
}

/// Covers everything below on any kernel; required before Linux 5.8.
pub const CAP_SYS_ADMIN: Capability = Capability {
    name: "CAP_SYS_ADMIN",
    bit: 21,
};
/// Loading programs and creating maps (Linux 5.8+).
pub const CAP_BPF: Capability = Capability {
    name: "CAP_BPF",
    bit: 39,
};
/// Attaching to tracepoints and reading kernel memory (Linux 5.8+).
pub const CAP_PERFMON: Capability = Capability {
    name: "CAP_PERFMON",
    bit: 38,
};

/// The capabilities tracing needs that this process's effective set lacks;
/// empty when it may trace. CAP_SYS_ADMIN alone is enough; otherwise both
/// CAP_BPF and CAP_PERFMON are needed.
pub fn missing_for_tracing() -> Vec<Capability> {
    let effective = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_effective(&status))
        .unwrap_or(0);
    missing_from(effective)
}

fn missing_from(effective: u64) -> Vec<Capability> {
    let has = |cap: Capability| effective & (1 << cap.bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [CAP_BPF, CAP_PERFMON]
        .into_iter()
        .filter(|cap| !has(*cap))
        .collect()
}

fn parse_effective(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_effective("Name: x\n"), None);
    }

    #[test]
    fn sys_admin_or_bpf_and_perfmon() {
        assert!(missing_from(1 << 21).is_empty());
        assert!(missing_from((1 << 38) | (1 << 39)).is_empty());
        assert_eq!(missing_from(1 << 39), vec![CAP_PERFMON]);
        assert_eq!(missing_from(0), vec![CAP_BPF, CAP_PERFMON]);
    }
}
