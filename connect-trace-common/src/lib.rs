//! What the connect-trace kernel programs and the daemon share.
//!
//! - [`abi`]: the `#[repr(C)]` records that cross the ring buffer and the
//!   per-thread and per-socket state the programs keep, with a compile-time
//!   guarantee (bytemuck's `Pod` derive) that none has padding.
//! - [`config`]: the one read-only [`config::Config`] the loader fills in
//!   before loading: filters and the running kernel's layouts.
//! - [`outcome`]: the one outcome model. Which errno means the handshake
//!   goes on, how the kernel's restart codes read, how a handshake's end
//!   maps to an outcome, what counts as a repeat, and the exact counting
//!   codes. The programs and the daemon call the same functions, so their
//!   counts cannot disagree; host unit tests cover them.
//! - [`family`]: address families, their counting slots and labels.
//! - [`errno`]: Linux errno names.
//! - [`names`]: map and program names, and the counter slots.
//!
//! Changing a struct in [`abi`] or [`config`] changes the ABI between the
//! kernel program and the daemon. Both are built from the same tree and the
//! program is embedded in the binary, so they never mix versions; the size
//! assertions catch accidental layout changes.
#![no_std]

pub mod abi;
pub mod config;
pub mod errno;
pub mod family;
pub mod names;
pub mod outcome;

/// Lets the daemon's aya read and write the ABI structs. They are `Pod` in
/// bytemuck's sense (no padding, any bit pattern valid), which the derive
/// checks at compile time; aya's own `Pod` is the same promise.
#[cfg(feature = "user")]
mod user {
    use crate::{abi, config};

    macro_rules! aya_pod {
        ($($type:ty),* $(,)?) => {
            // SAFETY: each type derives `bytemuck::Pod`, which proves at
            // compile time that it is `repr(C)`, has no padding and accepts
            // any bit pattern: exactly what `aya::Pod` requires.
            $(unsafe impl aya::Pod for $type {})*
        };
    }

    aya_pod!(
        abi::InFlight,
        abi::IoUringCall,
        abi::Handshake,
        abi::PendingHandshake,
        abi::RecentAttempt,
        abi::OutcomeRecord,
        abi::ConnectRecord,
        config::Config,
    );
}
