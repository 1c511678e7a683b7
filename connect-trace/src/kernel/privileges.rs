//! The capability rule: which capabilities tracing needs, checked before
//! anything is loaded so that the user gets one clear line instead of a
//! verifier or `bpf()` error; and dropping them all once attached. The
//! loader and `connect-trace check` both use [`missing_from`], so they
//! cannot disagree.

use aya::util::KernelVersion;
use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities tracing needs that the effective set `effective` lacks;
/// empty when it may trace. Loading needs CAP_SYS_ADMIN, or both CAP_BPF
/// and CAP_PERFMON (Linux 5.8+); a process not running as uid 0 also needs
/// CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE) to read the tracepoint formats
/// in tracefs, which is mode 0700 and owned by root.
pub fn missing_from(effective: &CapsHashSet, is_root_user: bool) -> Vec<Capability> {
    let has = |cap: Capability| effective.contains(&cap);
    let mut missing: Vec<Capability> = if has(Capability::CAP_SYS_ADMIN) {
        Vec::new()
    } else {
        [Capability::CAP_BPF, Capability::CAP_PERFMON]
            .into_iter()
            .filter(|cap| !has(*cap))
            .collect()
    };
    if !is_root_user && !has(Capability::CAP_DAC_READ_SEARCH) && !has(Capability::CAP_DAC_OVERRIDE)
    {
        missing.push(Capability::CAP_DAC_READ_SEARCH);
    }
    missing
}

/// This process's effective capabilities; empty when they cannot be read.
pub fn effective() -> CapsHashSet {
    caps::read(None, CapSet::Effective).unwrap_or_default()
}

/// Whether this process runs as uid 0.
pub fn is_root_user() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// [`missing_from`] for this process.
pub fn missing_for_tracing() -> Vec<Capability> {
    missing_from(&effective(), is_root_user())
}

/// Drops every capability once the programs are attached and the ring
/// buffer, counters and sockets are open: none of what the daemon does
/// afterwards needs one on Linux 6.5 and later, where reading a BPF map
/// through a descriptor already held is not checked. Before 6.5, with
/// `kernel.unprivileged_bpf_disabled` set, every bpf() call was checked, so
/// there CAP_BPF (or CAP_SYS_ADMIN) is kept for reading the counters.
/// Returns the capabilities kept.
///
/// Capabilities are per thread: call this while the process has one.
pub fn drop_after_attach() -> Result<Vec<Capability>, caps::errors::CapsError> {
    let keep: CapsHashSet =
        if KernelVersion::current().is_ok_and(|version| version >= KernelVersion::new(6, 5, 0)) {
            CapsHashSet::default()
        } else {
            let effective = effective();
            [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN]
                .into_iter()
                .filter(|cap| effective.contains(cap))
                .collect()
        };
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(keep.into_iter().collect())
}

/// Drops every capability of the calling thread (capabilities are per
/// thread): for helper threads that need none.
pub fn drop_in_this_thread() -> Result<(), caps::errors::CapsError> {
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn sys_admin_or_bpf_and_perfmon() {
        use Capability::*;
        assert!(missing_from(&set(&[CAP_SYS_ADMIN]), true).is_empty());
        assert!(missing_from(&set(&[CAP_BPF, CAP_PERFMON]), true).is_empty());
        assert_eq!(missing_from(&set(&[CAP_BPF]), true), vec![CAP_PERFMON]);
        assert_eq!(missing_from(&set(&[]), true), vec![CAP_BPF, CAP_PERFMON]);
    }

    #[test]
    fn another_user_also_needs_to_read_tracefs() {
        use Capability::*;
        let bpf_perfmon = [CAP_BPF, CAP_PERFMON];
        assert_eq!(
            missing_from(&set(&bpf_perfmon), false),
            vec![CAP_DAC_READ_SEARCH]
        );
        assert!(missing_from(&set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]), false).is_empty());
        assert!(missing_from(&set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_OVERRIDE]), false).is_empty());
        assert_eq!(
            missing_from(&set(&[]), false),
            vec![CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]
        );
    }
}
