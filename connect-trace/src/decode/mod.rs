//! Decoding raw ring buffer records: the one place where bytes from the
//! kernel become Rust values. [`Record::decode`] reads a record's kind and
//! its fields, [`attempt`] gives them names, and [`sockaddr`] interprets the
//! destination address the caller passed.

pub mod attempt;
pub mod sockaddr;

use std::mem::size_of;

use bytemuck::Pod;
use connect_trace_common::abi::record_kind;
use thiserror::Error;

pub use attempt::{ConnectAttempt, HandshakeOutcome, Via};

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
    /// The fields contradict each other.
    #[error("inconsistent record: {0}")]
    Inconsistent(&'static str),
}

/// One record from the kernel programs.
#[derive(Debug, Clone, Copy)]
#[expect(
    clippy::large_enum_variant,
    reason = "records live briefly on the stack; boxing would allocate per event on the hot path"
)]
pub enum Record {
    /// A connect() call returned.
    Connect(ConnectAttempt),
    /// A handshake ended after its connect() had returned.
    Outcome(HandshakeOutcome),
}

impl Record {
    /// Decodes one record, by its leading kind.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match read_pod::<u32>(bytes)? {
            record_kind::CONNECT => ConnectAttempt::decode(bytes).map(Self::Connect),
            record_kind::OUTCOME => HandshakeOutcome::decode(bytes).map(Self::Outcome),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// Reads an ABI struct from the start of `bytes` (any alignment). `Pod`
/// proves at compile time that every bit pattern is a valid `T`.
pub(crate) fn read_pod<T: Pod>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    let too_short = DecodeError::TooShort {
        len: bytes.len(),
        need,
    };
    let head = bytes.get(..need).ok_or(too_short)?;
    Ok(bytemuck::pod_read_unaligned(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::attempt::tests::{bytes_of, sample_record};

    #[test]
    fn dispatches_on_kind() {
        let bytes = bytes_of(&sample_record());
        assert!(matches!(Record::decode(&bytes), Ok(Record::Connect(_))));
        let mut unknown = bytes;
        unknown[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(
            Record::decode(&unknown).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        assert_eq!(
            Record::decode(&[1, 0]).unwrap_err(),
            DecodeError::TooShort { len: 2, need: 4 }
        );
    }

    #[test]
    fn outcome_without_an_outcome_is_inconsistent() {
        let raw = connect_trace_common::abi::OutcomeRecord {
            kind: record_kind::OUTCOME,
            reserved: 0,
            pid_tgid: 0,
            handshake: connect_trace_common::abi::Handshake::default(),
        };
        assert!(matches!(
            Record::decode(&bytes_of(&raw)),
            Err(DecodeError::Inconsistent(_))
        ));
    }
}
