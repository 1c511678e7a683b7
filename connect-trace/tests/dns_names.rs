//! DNS names for destinations, end to end on the real kernel: the cgroup
//! skb program captures the answers real resolvers receive inside network
//! namespaces the tests make, from a DNS server of the test's own, and the
//! name cache then answers (namespace, address) → the name the program
//! asked for.
//!
//! Each test attaches its own capture (they coexist at the cgroup root) and
//! works in its own namespace, so the tests run in parallel; answers other
//! tests cause land in every test's cache, under their own namespaces.

mod dns_support;

use std::{net::IpAddr, num::NonZeroUsize, time::Duration};

use connect_trace::dns::{CacheConfig, DnsConfig};
use dns_support::{Names, TestNet, Zone, connected, node_client, python_client};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn glibc_a_name() {
    let mut names = Names::start(DnsConfig::default());
    let net = TestNet::start(
        Zone::new().a("svc.example.test", "10.77.0.5", 300),
        &["10.77.0.5/32"],
    );
    let output = python_client(&net, "svc.example.test", "4", 0.0, false);
    let (addr, at) = connected(&output);
    assert_eq!(addr, ip("10.77.0.5"));
    let name = names
        .name_of(net.inode, addr, at)
        .expect("a name for 10.77.0.5");
    assert_eq!(name.as_str(), "svc.example.test");
    // Only in that namespace.
    assert_eq!(names.name_now(net.inode + 1, addr), None);
}
