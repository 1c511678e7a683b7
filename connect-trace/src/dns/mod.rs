//! DNS names for destinations (`server_name`): the name whose answer gave
//! a program the address it connects to, never a reverse lookup.
//!
//! - [`capture`] attaches a cgroup `skb` ingress program at the cgroup v2
//!   root. It sees each packet as it reaches a socket on the host and
//!   passes only DNS responses (UDP and TCP from port 53) to the daemon,
//!   with the receiving socket's network namespace. Being below every
//!   resolver, it covers glibc, musl, c-ares (Node), Go's own resolver,
//!   Java and local caching stubs alike.
//! - [`message`] reads each response (hostile input) with the `domain`
//!   crate, within fixed bounds: the question's name, and the A/AAAA
//!   addresses its CNAME chain leads to, with TTLs.
//! - [`tcp`] joins DNS-over-TCP segments back into messages.
//! - [`cache`] remembers (namespace, address) → name for as long as the
//!   TTL says, within bounds, with a fixed capacity and counted evictions.
//! - [`name`] is the reported name, with the escaping rules for bytes that
//!   are not UTF-8.
//! - [`netns`] finds namespace identities the way the kernel reports them.
//!
//! # Wiring it into the daemon
//!
//! 1. Before loading the object: `let globals = DnsGlobals::new(&config,
//!    NetnsOffsets::from_kernel())?; globals.apply(&mut loader);` (also
//!    when disabled: it keeps the unused ring buffer to one page).
//! 2. After loading: `DnsCapture::attach(&mut ebpf, &config, &globals)`
//!    (`None` when the operator turned the feature off).
//! 3. Each poll: take the connect records, then `capture.drain(&mut
//!    cache)`, then name each record with `cache.lookup(netns, addr,
//!    start_ns)`, where `netns` is the caller's `net->ns.inum` and
//!    `start_ns` the call's kernel timestamp.
//! 4. Now and then (housekeeping): `cache.remove_expired(now_ns)`, and
//!    export `capture.counters()` and `cache.counters()`.

pub mod cache;
pub mod capture;
pub mod message;
pub mod name;
pub mod netns;
pub mod tcp;

pub use cache::{CacheConfig, CacheCounters, NameCache};
pub use capture::{DnsCapture, DnsConfig, DnsCounters, DnsError, DnsGlobals, NetnsOffsets};
pub use name::ServerName;

/// The compiled kernel programs (the same object `probe` loads), for
/// [`DnsCapture::load`].
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connect-trace"));
