//! connect-trace: trace every connect() on a Linux host with eBPF.
//!
//! The path of a record, one module each:
//! - [`probe`] loads the kernel programs and attaches them;
//! - [`reader`] drains the ring buffer, and [`attempt`] decodes its records
//!   into [`attempt::ConnectAttempt`]s, with [`sockaddr`] for the address;
//! - [`json`] renders them as JSON Lines, using [`errno`] for names and
//!   [`clock`] for wall-clock time.

pub mod attempt;
pub mod clock;
pub mod errno;
pub mod json;
pub mod privileges;
pub mod probe;
pub mod reader;
pub mod sockaddr;
pub mod tracefs;
