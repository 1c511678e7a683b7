//! Reading records from the ring buffer without a wakeup per record.
//!
//! The kernel programs submit most records silently (a wakeup costs more
//! than the rest of the tracing together), so the reader drains the buffer
//! on a short timer, and also whenever the kernel does wake it because the
//! buffer is filling up.

use std::{io, os::fd::OwnedFd, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::{Interval, MissedTickBehavior, interval},
};

use crate::decode::Record;

/// How often the ring buffer is drained when nothing wakes the reader.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Drains the ring buffer and decodes its records.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    poll: Interval,
    /// Another ring buffer whose filling up should wake the reader too
    /// (the DNS capture's); the pipeline drains it.
    also: Option<AsyncFd<OwnedFd>>,
}

/// What one [`EventReader::drain`] took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records decoded and handed on.
    pub records: u64,
    /// Records skipped because they did not decode (an ABI mismatch).
    pub undecodable: u64,
}

impl EventReader {
    /// A reader that drains `ring` at least every `poll_interval`. Must be
    /// called inside a tokio runtime.
    pub fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> io::Result<Self> {
        let mut poll = interval(poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // SAFETY: the ring buffer owns its map fd, which stays open and
        // unchanged until the `RingBuf` (owned by the `AsyncFd`) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self {
            ring,
            poll,
            also: None,
        })
    }

    /// Also wakes when `fd` (another ring buffer's descriptor, such as the
    /// DNS capture's) becomes readable. Must be called inside a tokio
    /// runtime.
    pub fn also_wake_on(&mut self, fd: OwnedFd) -> io::Result<()> {
        // SAFETY: the `AsyncFd` owns `fd`, which stays open and unchanged
        // until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        self.also = Some(fd);
        Ok(())
    }

    /// Waits until records may be waiting: the kernel woke us, or the poll
    /// interval passed. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<()> {
        let also_fd = &self.also;
        let also = async move {
            match also_fd {
                Some(fd) => fd.readable().await.map(|mut guard| guard.clear_ready()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            guard = self.ring.readable_mut() => guard?.clear_ready(),
            ready = also => ready?,
            _ = self.poll.tick() => {}
        }
        Ok(())
    }

    /// Hands every waiting record to `on_record`, in order, and says how
    /// many there were. Records that do not decode are counted and skipped.
    pub fn drain<E>(
        &mut self,
        mut on_record: impl FnMut(&Record) -> Result<(), E>,
    ) -> Result<Drained, E> {
        let ring = self.ring.get_mut();
        let mut drained = Drained::default();
        while let Some(item) = ring.next() {
            match Record::decode(&item) {
                Ok(record) => {
                    drained.records += 1;
                    on_record(&record)?;
                }
                Err(_) => drained.undecodable += 1,
            }
        }
        Ok(drained)
    }
}
