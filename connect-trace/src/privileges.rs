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

/// Reading tracefs (mode 0700, owned by root) as another user.
pub const CAP_DAC_READ_SEARCH: Capability = Capability {
    name: "CAP_DAC_READ_SEARCH",
    bit: 2,
};
/// Also lets another user read tracefs.
const CAP_DAC_OVERRIDE: Capability = Capability {
    name: "CAP_DAC_OVERRIDE",
    bit: 1,
};

/// The capabilities tracing needs that this process's effective set lacks;
/// empty when it may trace. Loading needs CAP_SYS_ADMIN, or both CAP_BPF
/// and CAP_PERFMON; a process not running as uid 0 also needs
/// CAP_DAC_READ_SEARCH to read the tracepoint formats.
pub fn missing_for_tracing() -> Vec<Capability> {
    let effective = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_effective(&status))
        .unwrap_or(0);
    // SAFETY: geteuid has no preconditions.
    let is_root_user = unsafe { libc::geteuid() } == 0;
    missing_from(effective, is_root_user)
}

fn missing_from(effective: u64, is_root_user: bool) -> Vec<Capability> {
    let has = |cap: Capability| effective & (1 << cap.bit) != 0;
    let mut missing: Vec<Capability> = if has(CAP_SYS_ADMIN) {
        Vec::new()
    } else {
        [CAP_BPF, CAP_PERFMON]
            .into_iter()
            .filter(|cap| !has(*cap))
            .collect()
    };
    if !is_root_user && !has(CAP_DAC_READ_SEARCH) && !has(CAP_DAC_OVERRIDE) {
        missing.push(CAP_DAC_READ_SEARCH);
    }
    missing
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
        assert!(missing_from(1 << 21, true).is_empty());
        assert!(missing_from((1 << 38) | (1 << 39), true).is_empty());
        assert_eq!(missing_from(1 << 39, true), vec![CAP_PERFMON]);
        assert_eq!(missing_from(0, true), vec![CAP_BPF, CAP_PERFMON]);
    }

    #[test]
    fn another_user_also_needs_to_read_tracefs() {
        let bpf_perfmon = (1 << 38) | (1 << 39);
        assert_eq!(missing_from(bpf_perfmon, false), vec![CAP_DAC_READ_SEARCH]);
        assert!(missing_from(bpf_perfmon | (1 << 2), false).is_empty());
        assert_eq!(
            missing_from(0, false),
            vec![CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]
        );
    }
}
