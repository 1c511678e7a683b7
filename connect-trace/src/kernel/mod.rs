//! Talking to the running kernel: loading the programs and attaching them
//! ([`Tracer`]), against one list of [`requirements`] whose layouts come
//! from [`tracefs`] and [`btf`] at load time; the capability rule
//! ([`privileges`]); the programs' own counters ([`counters`]); the DNS
//! capture program ([`dns`]); and, when asked, the kernel's statistics of
//! what they cost ([`program_stats`]).

pub mod btf;
pub mod counters;
pub mod dns;
pub mod memlock;
pub mod mounts;
pub mod privileges;
pub mod program_stats;
pub mod requirements;
pub mod support;
pub mod tracefs;
mod tracer;

pub use counters::{KernelCounters, KernelStats, OutcomeTally};
pub use tracer::{
    CgroupFilter, DEFAULT_RING_BUFFER_BYTES, LoadError, MAX_RING_BUFFER_BYTES, PendingSweep,
    Tracer, TracerConfig,
};
