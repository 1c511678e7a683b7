//! Typed connect() attempts, decoded from the raw ring buffer records.
//!
//! This is the one place where bytes from the kernel become Rust values.

use std::mem::size_of;

use connect_trace_common::{COMM_LEN, ConnectRecord, record_kind};
use thiserror::Error;

use crate::{errno, sockaddr};

/// A ring buffer record that could not be decoded. The reader counts these;
/// they mean the daemon and the kernel program disagree about the ABI.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record kind needs.
    #[error("record of {len} bytes is shorter than the {need} its kind needs")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the kind needs.
        need: usize,
    },
    /// A record kind this daemon does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// One connect() call: who made it, where to, and what it returned.
#[derive(Clone, Copy)]
pub struct ConnectAttempt {
    raw: ConnectRecord,
}

impl ConnectAttempt {
    /// Decodes one ring buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = bytes
            .get(..4)
            .and_then(|kind| <[u8; 4]>::try_from(kind).ok())
            .map(u32::from_ne_bytes)
            .ok_or(DecodeError::TooShort {
                len: bytes.len(),
                need: 4,
            })?;
        if kind != record_kind::CONNECT {
            return Err(DecodeError::UnknownKind(kind));
        }
        let need = size_of::<ConnectRecord>();
        if bytes.len() < need {
            return Err(DecodeError::TooShort {
                len: bytes.len(),
                need,
            });
        }
        // SAFETY: the length was checked above, the read is unaligned, and
        // `ConnectRecord` is plain old data: every bit pattern is valid.
        let raw = unsafe { bytes.as_ptr().cast::<ConnectRecord>().read_unaligned() };
        Ok(Self { raw })
    }

    /// Wraps a record built elsewhere (tests, replays).
    pub const fn from_record(raw: ConnectRecord) -> Self {
        Self { raw }
    }

    /// Process id (tgid).
    pub const fn pid(&self) -> u32 {
        self.raw.tgid
    }

    /// Thread id.
    pub const fn tid(&self) -> u32 {
        self.raw.tid
    }

    /// Real user id.
    pub const fn uid(&self) -> u32 {
        self.raw.uid
    }

    /// Real group id.
    pub const fn gid(&self) -> u32 {
        self.raw.gid
    }

    /// cgroup v2 id.
    pub const fn cgroup_id(&self) -> u64 {
        self.raw.cgroup_id
    }

    /// The socket descriptor argument.
    pub const fn fd(&self) -> i32 {
        self.raw.fd
    }

    /// The thread's name, up to its first NUL: raw bytes, not always UTF-8.
    pub fn comm(&self) -> &[u8] {
        let end = self
            .raw
            .comm
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(COMM_LEN);
        &self.raw.comm[..end]
    }

    /// The `addrlen` argument.
    pub const fn addrlen(&self) -> i32 {
        self.raw.addrlen
    }

    /// The destination the caller passed.
    pub fn destination(&self) -> sockaddr::SockAddr<'_> {
        sockaddr::decode(&self.raw.addr, self.raw.addrlen, self.raw.addr_flags)
    }

    /// What connect() returned to the program: 0 or a negated errno.
    pub fn ret(&self) -> i32 {
        errno::user_visible_ret(self.raw.ret)
    }

    /// The errno the program saw; 0 on success.
    pub fn errno(&self) -> i32 {
        -self.ret().min(0)
    }

    /// CLOCK_MONOTONIC nanoseconds when the call began.
    pub const fn start_monotonic_ns(&self) -> u64 {
        self.raw.start_ns
    }

    /// Nanoseconds spent inside connect().
    pub const fn latency_ns(&self) -> u64 {
        self.raw.latency_ns
    }
}

impl std::fmt::Debug for ConnectAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAttempt")
            .field("pid", &self.pid())
            .field("tid", &self.tid())
            .field("comm", &String::from_utf8_lossy(self.comm()))
            .field("fd", &self.fd())
            .field("destination", &self.destination())
            .field("ret", &self.ret())
            .field("latency_ns", &self.latency_ns())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use connect_trace_common::SOCKADDR_MAX;

    use super::*;

    /// A record to build tests on: pid 42 connecting to 127.0.0.1:80.
    pub(crate) fn sample_record() -> ConnectRecord {
        let mut addr = [0; SOCKADDR_MAX];
        addr[..2].copy_from_slice(&sockaddr::AF_INET.to_ne_bytes());
        addr[2..4].copy_from_slice(&80u16.to_be_bytes());
        addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let mut comm = [0; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        ConnectRecord {
            kind: record_kind::CONNECT,
            tgid: 42,
            tid: 43,
            uid: 1000,
            gid: 100,
            fd: 3,
            ret: -111,
            addrlen: 16,
            addr_flags: 0,
            reserved: 0,
            start_ns: 1_000,
            latency_ns: 12_345,
            cgroup_id: 7,
            comm,
            addr,
        }
    }

    fn bytes_of(record: &ConnectRecord) -> Vec<u8> {
        // SAFETY: ConnectRecord is repr(C) plain old data without padding.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(record).cast::<u8>(),
                size_of::<ConnectRecord>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_record() {
        let attempt = ConnectAttempt::decode(&bytes_of(&sample_record())).unwrap();
        assert_eq!(attempt.pid(), 42);
        assert_eq!(attempt.tid(), 43);
        assert_eq!(attempt.comm(), b"curl");
        assert_eq!(attempt.errno(), 111);
        assert_eq!(attempt.destination().port, Some(80));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let bytes = bytes_of(&sample_record());
        assert_eq!(
            ConnectAttempt::decode(&bytes[..100]).unwrap_err(),
            DecodeError::TooShort {
                len: 100,
                need: 208
            }
        );
        assert_eq!(
            ConnectAttempt::decode(&bytes[..2]).unwrap_err(),
            DecodeError::TooShort { len: 2, need: 4 }
        );
        let mut unknown = bytes;
        unknown[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(
            ConnectAttempt::decode(&unknown).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
    }

    #[test]
    fn comm_without_nul_uses_all_sixteen_bytes() {
        let mut record = sample_record();
        record.comm = *b"0123456789abcdef";
        assert_eq!(
            ConnectAttempt::from_record(record).comm(),
            b"0123456789abcdef"
        );
    }

    #[test]
    fn restart_codes_read_as_eintr() {
        let mut record = sample_record();
        record.ret = -512;
        let attempt = ConnectAttempt::from_record(record);
        assert_eq!(attempt.ret(), -4);
        assert_eq!(attempt.errno(), 4);
    }
}
