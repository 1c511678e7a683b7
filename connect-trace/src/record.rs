//! Decoding raw ring buffer records. This is the one place where bytes from
//! the kernel become Rust values.

use std::mem::size_of;

use connect_trace_common::record_kind;
use thiserror::Error;

use crate::attempt::{ConnectAttempt, HandshakeOutcome};

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

/// Reads a plain-old-data ABI struct from the start of `bytes`.
///
/// Only for the `#[repr(C)]` integer-only structs of
/// `connect-trace-common`, for which every bit pattern is valid.
pub(crate) fn read_pod<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length was checked, the read is unaligned, and callers
    // only name integer-only structs, valid for any bit pattern.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::tests::{bytes_of, sample_record};

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
        let raw = connect_trace_common::OutcomeRecord {
            kind: record_kind::OUTCOME,
            reserved: 0,
            pid_tgid: 0,
            handshake: connect_trace_common::Handshake::default(),
        };
        assert!(matches!(
            Record::decode(&bytes_of(&raw)),
            Err(DecodeError::Inconsistent(_))
        ));
    }
}
