//! connect-trace: trace every connect() on a Linux host with eBPF.
//!
//! The path of a record, one module each:
//! - [`probe`] loads the kernel programs and attaches them;
//! - [`reader`] drains the ring buffer, and [`record`] decodes its records
//!   into [`attempt::ConnectAttempt`]s and handshake outcomes, with
//!   [`sockaddr`] for the address;
//! - [`resolve`] joins each call with the outcome of its handshake;
//! - [`json`] renders them as JSON Lines, using [`errno`] for names and
//!   [`clock`] for wall-clock time;
//! - [`aggregate`] turns them into failure rates ([`topk`], [`window`]) for
//!   summary records, and [`metrics`] into Prometheus metrics, served by
//!   [`http`] next to the kernel's exact counts ([`kernel_counts`]);
//! - [`dns`] captures the DNS answers programs receive and names
//!   destinations by them (`server_name`).
//!
//! [`tracefs`] and [`btf`] read the running kernel's layouts at load time, so
//! no kernel struct offsets are compiled in.

pub mod aggregate;
pub mod attempt;
pub mod btf;
pub mod catalog;
pub mod clock;
pub mod dns;
pub mod doctor;
pub mod errno;
pub mod http;
pub mod json;
pub mod kernel_counts;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod privileges;
pub mod probe;
pub mod reader;
pub mod record;
pub mod resolve;
pub mod sockaddr;
pub mod topk;
pub mod tracefs;
pub mod window;
