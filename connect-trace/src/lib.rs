//! connect-trace: trace every connect() on a Linux host with eBPF.
//!
//! The modules follow the path of a record (docs/architecture.md tells it
//! end to end):
//!
//! 1. [`kernel`] loads the programs and attaches them, reading the running
//!    kernel's layouts ([`kernel::tracefs`], [`kernel::btf`]) against one
//!    list of [`kernel::requirements`], and reads the kernel's own counters.
//! 2. [`pipeline`] drives everything after the kernel: its reader drains
//!    the ring buffer, [`decode`] turns bytes into typed records,
//!    [`resolve`] joins each call with the end of its handshake, and every
//!    resolved attempt goes to [`aggregate`] (failure rates and summaries)
//!    and to the sinks of [`export`] (JSON Lines, Prometheus, OTLP) and
//!    [`live`] (what `connect-trace top` and `/live` show). It owns the
//!    delivery counts that the final line, the summaries and the metrics
//!    all report.
//! 3. [`errno`] names errno values and explains them; [`doctor`] checks a
//!    host for what tracing needs; [`clock`] maps kernel time to wall time.
//!
//! What an attempt's outcome is, and what is a repeat, is decided by
//! `connect_trace_common::outcome`, which the kernel programs run too.

pub mod aggregate;
pub mod clock;
pub mod decode;
pub mod delivery;
pub mod doctor;
pub mod errno;
pub mod export;
pub mod kernel;
pub mod live;
pub mod pipeline;
pub mod report;
pub mod resolve;
pub mod workload;
