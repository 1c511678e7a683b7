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

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability once the programs are attached and the ring
/// buffer, counters and sockets are open: none of what the daemon does
/// afterwards needs one on Linux 6.5 and later, where reading a BPF map
/// through a descriptor already held is not checked. Before 6.5, with
/// `kernel.unprivileged_bpf_disabled` set, every bpf() call was checked, so
/// there CAP_BPF (or CAP_SYS_ADMIN) is kept for reading the counters.
///
/// Capabilities are per thread: call this while the process has one.
pub fn drop_after_attach() -> std::io::Result<Vec<&'static str>> {
    let keep = if kernel_at_least(6, 5) {
        0
    } else {
        let effective = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| parse_effective(&status))
            .unwrap_or(0);
        effective & ((1 << CAP_BPF.bit) | (1 << CAP_SYS_ADMIN.bit))
    };
    // SAFETY: prctl with these constant arguments has no memory effects.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |n: u32| (keep >> (32 * n)) as u32;
    let data = [0, 1].map(|n| CapData {
        effective: word(n),
        permitted: word(n),
        inheritable: 0,
    });
    // SAFETY: the header and the two data words are valid for capset.
    let ret =
        unsafe { libc::syscall(libc::SYS_capset, std::ptr::from_ref(&header), data.as_ptr()) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok([CAP_SYS_ADMIN, CAP_BPF]
        .into_iter()
        .filter(|cap| keep & (1 << cap.bit) != 0)
        .map(|cap| cap.name)
        .collect())
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
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
