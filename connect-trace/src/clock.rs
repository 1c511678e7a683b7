//! Turning the kernel's CLOCK_MONOTONIC timestamps into wall-clock time,
//! and writing times as RFC 3339.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps CLOCK_MONOTONIC nanoseconds (what `bpf_ktime_get_ns` returns) to
/// wall-clock time, using the offset between the two clocks measured at the
/// last [`WallClock::resync`].
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// Measures the offset now.
    pub fn new() -> Self {
        let mut clock = Self { offset_ns: 0 };
        clock.resync();
        clock
    }

    /// Measures the offset again, so that a clock step (NTP, an operator)
    /// shows up in later timestamps. Two vDSO calls: cheap enough per batch.
    pub fn resync(&mut self) {
        self.offset_ns = now_ns(libc::CLOCK_REALTIME) - now_ns(libc::CLOCK_MONOTONIC);
    }

    /// The wall-clock time of a CLOCK_MONOTONIC timestamp.
    pub fn to_system_time(&self, monotonic_ns: u64) -> SystemTime {
        let since_epoch = i128::from(monotonic_ns) + self.offset_ns;
        let since_epoch = u64::try_from(since_epoch.max(0)).unwrap_or(u64::MAX);
        UNIX_EPOCH + Duration::from_nanos(since_epoch)
    }

    /// CLOCK_MONOTONIC now, in nanoseconds: the kernel programs' time base.
    pub fn monotonic_now_ns() -> u64 {
        u64::try_from(now_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Serializes a timestamp as RFC 3339 UTC with nanoseconds, written straight
/// into the output without an intermediate `String`.
pub(crate) fn rfc3339<S: serde::Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_nanos(*time))
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_maps_to_system_now() {
        let clock = WallClock::new();
        let mapped = clock.to_system_time(WallClock::monotonic_now_ns());
        let now = SystemTime::now();
        let skew = now
            .duration_since(mapped)
            .unwrap_or_else(|error| error.duration());
        assert!(skew < Duration::from_millis(100), "skew {skew:?}");
    }
}
