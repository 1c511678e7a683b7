//! Every count of the DNS capture in one place: the kernel program's, read
//! from its map when asked, and the daemon's (reading, TCP joining, the
//! name cache), published by the pipeline once per batch. The `delivery`
//! object and `/metrics` both read a [`DnsStats`], so they cannot disagree.

use std::sync::Mutex;

use aya::maps::MapError;

use super::{cache::CacheCounters, capture::DnsCaptureCounters, tcp::StreamCounters};
use crate::kernel::dns::{DnsKernelCounters, DnsKernelStats};

/// Every DNS count, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// Whether DNS answers are being captured (the program is attached).
    pub capturing: bool,
    /// The kernel program's counts (all 0 when not capturing).
    pub kernel: DnsKernelCounters,
    /// Reading the records.
    pub capture: DnsCaptureCounters,
    /// DNS over TCP reassembly.
    pub streams: StreamCounters,
    /// The name cache.
    pub cache: CacheCounters,
    /// (namespace, address) pairs in the cache now.
    pub names: u64,
}

/// The daemon's side of [`DnsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaemonCounts {
    /// Reading the records.
    pub capture: DnsCaptureCounters,
    /// DNS over TCP reassembly.
    pub streams: StreamCounters,
    /// The name cache.
    pub cache: CacheCounters,
    /// Pairs in the cache now.
    pub names: u64,
}

/// The DNS counts, shared between the pipeline (which publishes the
/// daemon's) and whoever reports them.
#[derive(Default)]
pub struct DnsStats {
    kernel: Option<DnsKernelStats>,
    daemon: Mutex<DaemonCounts>,
}

impl std::fmt::Debug for DnsStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsStats")
            .field("capturing", &self.kernel.is_some())
            .finish_non_exhaustive()
    }
}

impl DnsStats {
    /// Counts of a capture whose program counts into `kernel`; `None`
    /// when nothing is captured.
    pub fn new(kernel: Option<DnsKernelStats>) -> Self {
        Self {
            kernel,
            daemon: Mutex::default(),
        }
    }

    /// Takes the daemon's counts as they are now.
    pub fn publish(&self, counts: DaemonCounts) {
        if let Ok(mut daemon) = self.daemon.lock() {
            *daemon = counts;
        }
    }

    /// Every count, the kernel's read now.
    pub fn read(&self) -> Result<DnsCounters, MapError> {
        let kernel = match &self.kernel {
            Some(kernel) => kernel.read()?,
            None => DnsKernelCounters::default(),
        };
        let DaemonCounts {
            capture,
            streams,
            cache,
            names,
        } = self.daemon.lock().map(|daemon| *daemon).unwrap_or_default();
        Ok(DnsCounters {
            capturing: self.kernel.is_some(),
            kernel,
            capture,
            streams,
            cache,
            names,
        })
    }
}
