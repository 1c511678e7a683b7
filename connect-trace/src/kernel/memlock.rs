//! The locked-memory limit that kernels before 5.11 charge BPF memory to.
//!
//! Before Linux 5.11 every BPF map and program counts against its creator's
//! `RLIMIT_MEMLOCK`, whose default there (64 KiB) is far below one 4 MiB
//! ring buffer, and bpf() fails with EPERM past it. From 5.11 on the kernel
//! charges the memory cgroup instead. aya raises the limit by itself when a
//! bpf() call fails that way, but `connect-trace check` creates its test
//! maps without aya: both `check` and the loader call
//! [`raise_for_bpf`] first, so they cannot disagree about it.
//!
//! ```no_run
//! use connect_trace::kernel::memlock::{self, Memlock};
//!
//! if let Memlock::Stuck { limit, error } = memlock::raise_for_bpf() {
//!     eprintln!("BPF maps are limited to {limit} bytes: {error}");
//! }
//! ```

use std::{fmt, io};

use aya::util::KernelVersion;

/// The first kernel that no longer charges BPF memory to `RLIMIT_MEMLOCK`.
pub const UNCHARGED_SINCE: KernelVersion = KernelVersion::new(5, 11, 0);

/// What [`raise_for_bpf`] found and did.
#[derive(Debug)]
pub enum Memlock {
    /// Linux 5.11 or newer: BPF memory does not count against the limit,
    /// which was left alone.
    NotCharged,
    /// The limit was already unlimited.
    Unlimited,
    /// The limit was raised to unlimited from `from` bytes.
    Raised {
        /// The soft limit before, in bytes.
        from: u64,
    },
    /// The limit could not be raised (no `CAP_SYS_RESOURCE`, or a hard
    /// limit set by the service manager).
    Stuck {
        /// The soft limit in force, in bytes.
        limit: u64,
        /// Why `setrlimit` refused.
        error: io::Error,
    },
}

impl Memlock {
    /// A sentence for `check`'s output when the limit matters on this
    /// kernel; `None` when it does not.
    pub fn note(&self) -> Option<String> {
        match self {
            Self::NotCharged => None,
            Self::Unlimited => {
                Some("RLIMIT_MEMLOCK is unlimited (this kernel charges BPF maps to it)".to_owned())
            }
            Self::Raised { from } => Some(format!(
                "raised RLIMIT_MEMLOCK from {} to unlimited first, as `run` does (this kernel \
                 charges BPF maps to it)",
                Bytes(*from)
            )),
            Self::Stuck { .. } => Some(self.to_string()),
        }
    }
}

impl fmt::Display for Memlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stuck { limit, error } => write!(
                f,
                "could not raise RLIMIT_MEMLOCK from {} ({error}); this kernel charges BPF maps \
                 to it: set LimitMEMLOCK=infinity (systemd) or `ulimit -l unlimited`",
                Bytes(*limit)
            ),
            Self::NotCharged => f.write_str("BPF memory is not charged to RLIMIT_MEMLOCK"),
            Self::Unlimited => f.write_str("RLIMIT_MEMLOCK is unlimited"),
            Self::Raised { from } => {
                write!(
                    f,
                    "raised RLIMIT_MEMLOCK from {} to unlimited",
                    Bytes(*from)
                )
            }
        }
    }
}

/// On a kernel before 5.11 (or one whose version cannot be read), raises
/// this process's `RLIMIT_MEMLOCK` to unlimited so that BPF maps and
/// programs can be created.
pub fn raise_for_bpf() -> Memlock {
    let charged = KernelVersion::current().map_or(true, |version| version < UNCHARGED_SINCE);
    if !charged {
        return Memlock::NotCharged;
    }
    raise()
}

fn raise() -> Memlock {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) } != 0 {
        return Memlock::Stuck {
            limit: 0,
            error: io::Error::last_os_error(),
        };
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Memlock::Unlimited;
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } == 0 {
        Memlock::Raised {
            from: limit.rlim_cur,
        }
    } else {
        Memlock::Stuck {
            limit: limit.rlim_cur,
            error: io::Error::last_os_error(),
        }
    }
}

/// A byte count in the largest whole unit.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(bytes) = *self;
        match bytes {
            bytes if bytes >= 1 << 20 && bytes % (1 << 20) == 0 => {
                write!(f, "{} MiB", bytes >> 20)
            }
            bytes if bytes >= 1 << 10 && bytes % (1 << 10) == 0 => {
                write!(f, "{} KiB", bytes >> 10)
            }
            bytes => write!(f, "{bytes} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(Bytes(64 * 1024).to_string(), "64 KiB");
        assert_eq!(Bytes(8 << 20).to_string(), "8 MiB");
        assert_eq!(Bytes(1000).to_string(), "1000 bytes");
    }

    #[test]
    fn notes_only_where_the_limit_matters() {
        assert!(Memlock::NotCharged.note().is_none());
        let raised = Memlock::Raised { from: 65536 }.note().unwrap();
        assert!(raised.contains("from 64 KiB to unlimited"), "{raised}");
        let stuck = Memlock::Stuck {
            limit: 65536,
            error: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(stuck.note().unwrap().contains("LimitMEMLOCK=infinity"));
    }

    #[test]
    fn raising_leaves_the_limit_unlimited() {
        // As root the raise works on any kernel; unprivileged it may not,
        // which must then be reported rather than ignored.
        match raise() {
            Memlock::Raised { .. } | Memlock::Unlimited => {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: as above.
                let ret = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) };
                assert_eq!(ret, 0);
                assert_eq!(limit.rlim_cur, libc::RLIM_INFINITY);
            }
            Memlock::Stuck { error, .. } => {
                assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
            }
            Memlock::NotCharged => unreachable!("raise() always tries"),
        }
    }
}
