//! DNS names for destinations (`server_name`): the name whose answer gave
//! a program the address it connects to, never a reverse lookup
//! (docs/dns-names.md).
//!
//! - `crate::kernel::dns` attaches a cgroup `skb` ingress program at the
//!   cgroup v2 root. It sees each packet as it reaches a socket on the host
//!   and passes only DNS responses (UDP and TCP from port 53) to the
//!   daemon, with the receiving socket's network namespace. Being below
//!   every resolver, it covers glibc, musl, c-ares (Node), Go's own
//!   resolver, Java and local caching stubs alike.
//! - [`capture`] reads that ring buffer; [`message`] reads each response
//!   (hostile input) with the `domain` crate, within fixed bounds: the
//!   question's name, and the A/AAAA addresses its CNAME chain leads to,
//!   with TTLs; [`tcp`] joins DNS-over-TCP segments back into messages.
//! - [`cache`] remembers (namespace, address) → name for as long as the
//!   TTL says, within bounds, with a fixed capacity and counted evictions.
//! - [`name`] is the reported name, with the escaping rules for bytes that
//!   are not UTF-8.
//! - [`stats`] holds every count, for the `delivery` object and `/metrics`.
//! - [`netns`] finds namespace identities the way the kernel reports them.
//!
//! `crate::pipeline::names` drives it: each poll drains the ring buffer
//! into the cache before the connect records are handled, and each
//! attempt to an IP address is named by (its network namespace, its
//! destination, the time its call began).

pub mod cache;
pub mod capture;
pub mod message;
pub mod name;
pub mod netns;
pub mod stats;
pub mod tcp;

pub use cache::{CacheConfig, CacheCounters, NameCache};
pub use capture::DnsCapture;
pub use name::ServerName;
pub use stats::{DnsCounters, DnsStats};
