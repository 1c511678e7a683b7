//! Host-side library target of the eBPF crate. It is empty; it exists so
//! that `connect-trace` can name this crate as a build dependency and cargo
//! rebuilds the embedded programs when their sources change.
#![no_std]
