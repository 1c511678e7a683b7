//! The naming stage, before the workload stage: puts on each attempt to an
//! IP address the DNS name whose answer gave the caller that address
//! (`server_name`, docs/dns-names.md).
//!
//! Each poll drains the DNS ring buffer into the name cache before the
//! connect records are handled, and a record of a call that began after
//! that drain started drains it again first: the answer a program used
//! reached the ring buffer before the program could read it, so every
//! answer received before a call is in the cache when the call is named.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, BorrowedFd, OwnedFd},
    sync::Arc,
};

use crate::{
    clock::WallClock,
    decode::{ConnectAttempt, sockaddr::Address},
    dns::{CacheConfig, DnsCapture, DnsStats, NameCache, ServerName, stats::DaemonCounts},
    kernel::dns::DnsRing,
};

/// Names destinations from the DNS answers the kernel program captured.
pub struct DestinationNames {
    capture: Option<DnsCapture>,
    cache: NameCache,
    stats: Arc<DnsStats>,
    /// Whether answers carry the receiving socket's network namespace;
    /// when not, every answer is filed under namespace 0, and calls are
    /// named from there.
    by_namespace: bool,
    /// CLOCK_MONOTONIC nanoseconds when the last drain began: every
    /// answer received before then is in the cache.
    drained_from_ns: u64,
}

impl DestinationNames {
    /// Names from the answers `ring` carries, remembered as `cache` says;
    /// with `None`, nothing is named.
    pub fn new(ring: Option<DnsRing>, cache: CacheConfig) -> Self {
        let (capture, stats, by_namespace) = match ring {
            Some(DnsRing {
                ring,
                stats,
                program_id: _,
                multicast,
                netns_problem,
            }) => (
                Some(DnsCapture::new(ring, multicast)),
                DnsStats::new(Some(stats)),
                netns_problem.is_none(),
            ),
            None => (None, DnsStats::new(None), true),
        };
        Self {
            capture,
            cache: NameCache::new(cache),
            stats: Arc::new(stats),
            by_namespace,
            drained_from_ns: 0,
        }
    }

    /// Names nothing.
    pub fn off() -> Self {
        Self::new(None, CacheConfig::default())
    }

    /// Whether DNS answers are captured.
    pub fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// The counts, as the `delivery` object and `/metrics` read them.
    pub fn stats(&self) -> Arc<DnsStats> {
        Arc::clone(&self.stats)
    }

    /// A descriptor that becomes readable when the kernel signals that the
    /// DNS ring buffer is filling up, for the reader to wake on; `None`
    /// when nothing is captured.
    pub fn wakeup_fd(&self) -> Option<io::Result<OwnedFd>> {
        let capture = self.capture.as_ref()?;
        // SAFETY: the ring buffer's descriptor stays open while `capture`
        // lives; it is only duplicated here.
        let fd = unsafe { BorrowedFd::borrow_raw(capture.as_raw_fd()) };
        Some(fd.try_clone_to_owned())
    }

    /// Files every answer waiting in the ring buffer.
    pub fn drain(&mut self) {
        let Some(capture) = &mut self.capture else {
            return;
        };
        self.drained_from_ns = WallClock::monotonic_now_ns();
        capture.drain(&mut self.cache);
    }

    /// The name for `attempt`: the latest answer for its destination
    /// received in its network namespace before its call began, whose TTL
    /// had not run out then.
    pub fn name(&mut self, attempt: &ConnectAttempt) -> Option<ServerName> {
        self.capture.as_ref()?;
        let addr = match attempt.destination().address {
            Address::V4(ip) => IpAddr::V4(ip),
            Address::V6(ip) => IpAddr::V6(ip),
            _ => return None,
        };
        let at_ns = attempt.start_monotonic_ns();
        if at_ns >= self.drained_from_ns {
            self.drain();
        }
        let netns = if self.by_namespace {
            attempt.netns().unwrap_or(0)
        } else {
            0
        };
        self.cache.lookup(netns, addr, at_ns).cloned()
    }

    /// Frees the memory of expired answers; about once a second.
    pub fn housekeeping(&mut self, now_ns: u64) {
        if self.capture.is_some() {
            self.cache.remove_expired(now_ns);
        }
    }

    /// Publishes the daemon's counts; once per batch.
    pub fn publish(&self) {
        let Some(capture) = &self.capture else {
            return;
        };
        self.stats.publish(DaemonCounts {
            capture: capture.counters(),
            streams: capture.stream_counters(),
            cache: self.cache.counters(),
            names: self.cache.len() as u64,
        });
    }
}
