//! Decoding the raw socket address that a connect() caller passed.
//!
//! The kernel program copies `min(addrlen, 128)` bytes verbatim; all
//! interpretation happens here, where it can be tested: families we do not
//! know, truncated lengths and unreadable memory all decode to something
//! well defined instead of an error.

use std::net::{Ipv4Addr, Ipv6Addr};

use connect_trace_common::abi::{SOCKADDR_MAX, addr_flags};
pub use connect_trace_common::family::{AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC};

/// `sizeof(struct sockaddr_in)`.
const SOCKADDR_IN_LEN: usize = 16;
/// The shortest `sockaddr_in6` Linux accepts (RFC 2133, without scope id).
const SOCKADDR_IN6_MIN_LEN: usize = 24;
/// `sizeof(struct sockaddr_un)`: the family and a 108-byte `sun_path`.
const SOCKADDR_UN_LEN: usize = 110;
/// `sizeof(struct sockaddr_in6)`, with `sin6_scope_id`.
const SOCKADDR_IN6_LEN: usize = 28;

/// The address family of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_UNSPEC`: on a connected socket this dissolves the association.
    Unspec,
    /// `AF_UNIX`.
    Unix,
    /// `AF_INET`.
    Inet,
    /// `AF_INET6`.
    Inet6,
    /// Any other family, by number.
    Other(u16),
}

impl Family {
    /// The family for an `sa_family` value.
    pub const fn from_raw(raw: u16) -> Self {
        match raw {
            AF_UNSPEC => Self::Unspec,
            AF_UNIX => Self::Unix,
            AF_INET => Self::Inet,
            AF_INET6 => Self::Inet6,
            other => Self::Other(other),
        }
    }

    /// The name used in JSON records, or `None` for [`Family::Other`].
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Self::Unspec => Some("unspec"),
            Self::Unix => Some("unix"),
            Self::Inet => Some("inet"),
            Self::Inet6 => Some("inet6"),
            Self::Other(_) => None,
        }
    }
}

/// Where a connect() was headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address<'a> {
    /// No address: `AF_UNSPEC`, an unknown family, or too few bytes.
    None,
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (IPv4-mapped ones included).
    V6(Ipv6Addr),
    /// A filesystem path of a unix socket, without the trailing NULs.
    UnixPath(&'a [u8]),
    /// An abstract unix socket name: every byte after the leading NUL,
    /// NULs included, as the kernel compares them.
    UnixAbstract(&'a [u8]),
}

/// Why the address is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrProblem {
    /// The address pointer could not be read (the call fails with EFAULT).
    Unreadable,
    /// `addrlen` was negative or over 128 (the call fails with EINVAL).
    BadLength,
    /// `addrlen` was too short for the family (the call fails with EINVAL).
    Truncated,
    /// The call's start was not seen, so neither its address nor its
    /// descriptor is known: it began before tracing did, or the kernel
    /// skipped the program that reads them.
    NotSeen,
}

impl AddrProblem {
    /// The name used in JSON records.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::BadLength => "bad_length",
            Self::Truncated => "truncated",
            Self::NotSeen => "not_seen",
        }
    }
}

/// A decoded socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockAddr<'a> {
    /// The family, or `None` when not even `sa_family` could be read.
    pub family: Option<Family>,
    /// The address itself.
    pub address: Address<'a>,
    /// The port, for inet and inet6.
    pub port: Option<u16>,
    /// `sin6_scope_id`, for inet6 when the caller passed it.
    pub scope_id: Option<u32>,
    /// Set when the caller's address was not complete.
    pub problem: Option<AddrProblem>,
}

impl SockAddr<'_> {
    const fn incomplete(problem: AddrProblem) -> Self {
        SockAddr {
            family: None,
            address: Address::None,
            port: None,
            scope_id: None,
            problem: Some(problem),
        }
    }
}

/// Decodes the bytes copied by the kernel program.
///
/// `addrlen` is the caller's argument; `flags` are the record's
/// `addr_flags`. Only `min(addrlen, 128)` bytes of `raw` are meaningful.
pub fn decode(raw: &[u8; SOCKADDR_MAX], addrlen: i32, flags: u32) -> SockAddr<'_> {
    if flags & addr_flags::NOT_SEEN != 0 {
        return SockAddr::incomplete(AddrProblem::NotSeen);
    }
    if flags & addr_flags::BAD_LENGTH != 0 {
        return SockAddr::incomplete(AddrProblem::BadLength);
    }
    if flags & addr_flags::UNREADABLE != 0 {
        return SockAddr::incomplete(AddrProblem::Unreadable);
    }
    let Ok(len) = usize::try_from(addrlen) else {
        return SockAddr::incomplete(AddrProblem::BadLength);
    };
    let bytes = &raw[..len.min(SOCKADDR_MAX)];
    let Some(family) = array::<2>(bytes, 0) else {
        return SockAddr::incomplete(AddrProblem::Truncated);
    };
    let family = Family::from_raw(u16::from_ne_bytes(family));
    let mut decoded = SockAddr {
        family: Some(family),
        address: Address::None,
        port: None,
        scope_id: None,
        problem: None,
    };
    match family {
        Family::Inet => {
            decoded.port = be_u16(bytes, 2);
            decoded.address = array::<4>(bytes, 4)
                .map_or(Address::None, |octets| Address::V4(Ipv4Addr::from(octets)));
            if bytes.len() < SOCKADDR_IN_LEN {
                decoded.problem = Some(AddrProblem::Truncated);
            }
        }
        Family::Inet6 => {
            decoded.port = be_u16(bytes, 2);
            decoded.address = array::<16>(bytes, 8)
                .map_or(Address::None, |octets| Address::V6(Ipv6Addr::from(octets)));
            if bytes.len() >= SOCKADDR_IN6_LEN {
                decoded.scope_id = array::<4>(bytes, 24).map(u32::from_ne_bytes);
            }
            if bytes.len() < SOCKADDR_IN6_MIN_LEN {
                decoded.problem = Some(AddrProblem::Truncated);
            }
        }
        Family::Unix => {
            // Linux wants at least one byte of `sun_path` and at most the
            // 108 it holds (EINVAL otherwise); show what would fit.
            let path = &bytes[2..bytes.len().min(SOCKADDR_UN_LEN)];
            decoded.address = unix_address(path);
            if bytes.len() <= 2 {
                decoded.problem = Some(AddrProblem::Truncated);
            } else if bytes.len() > SOCKADDR_UN_LEN {
                decoded.problem = Some(AddrProblem::BadLength);
            }
        }
        Family::Unspec | Family::Other(_) => {}
    }
    decoded
}

/// `sun_path` as the kernel reads it: a leading NUL makes the whole rest an
/// abstract name; otherwise the path ends at the first NUL.
fn unix_address(path: &[u8]) -> Address<'_> {
    match path.split_first() {
        None => Address::UnixPath(&[]),
        Some((0, name)) => Address::UnixAbstract(name),
        Some(_) => {
            // memchr: the address is decoded once per stage that needs it,
            // and a byte loop here took the aggregate and Prometheus stages
            // from 225 to 520 ns per unix event (examples/pipeline_cost.rs).
            let end = memchr::memchr(0, path).unwrap_or(path.len());
            Address::UnixPath(&path[..end])
        }
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    array::<2>(bytes, at).map(u16::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's copy of an address, with junk after `prefix`. Leaked so
    /// decoded addresses can borrow from it for the rest of the test.
    fn raw(prefix: &[u8]) -> &'static [u8; SOCKADDR_MAX] {
        let raw = Box::leak(Box::new([0xAA; SOCKADDR_MAX]));
        raw[..prefix.len()].copy_from_slice(prefix);
        raw
    }

    fn family_bytes(family: u16) -> [u8; 2] {
        family.to_ne_bytes()
    }

    fn inet(port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut bytes = family_bytes(AF_INET).to_vec();
        bytes.extend(port.to_be_bytes());
        bytes.extend(ip);
        bytes.extend([0; 8]);
        bytes
    }

    fn inet6(port: u16, ip: Ipv6Addr, scope: u32) -> Vec<u8> {
        let mut bytes = family_bytes(AF_INET6).to_vec();
        bytes.extend(port.to_be_bytes());
        bytes.extend([0; 4]);
        bytes.extend(ip.octets());
        bytes.extend(scope.to_ne_bytes());
        bytes
    }

    #[test]
    fn inet_address_and_port() {
        let bytes = inet(8080, [127, 0, 0, 1]);
        let decoded = decode(raw(&bytes), 16, 0);
        assert_eq!(decoded.family, Some(Family::Inet));
        assert_eq!(decoded.address, Address::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(decoded.port, Some(8080));
        assert_eq!(decoded.problem, None);
    }

    #[test]
    fn inet_truncated_keeps_what_is_there() {
        let bytes = inet(443, [10, 1, 2, 3]);
        let decoded = decode(raw(&bytes), 6, 0);
        assert_eq!(decoded.port, Some(443));
        assert_eq!(decoded.address, Address::None);
        assert_eq!(decoded.problem, Some(AddrProblem::Truncated));
        let decoded = decode(raw(&bytes), 8, 0);
        assert_eq!(decoded.address, Address::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(decoded.problem, Some(AddrProblem::Truncated));
    }

    #[test]
    fn inet6_with_and_without_scope() {
        let ip: Ipv6Addr = "fe80::1".parse().unwrap();
        let bytes = inet6(22, ip, 3);
        let full = decode(raw(&bytes), 28, 0);
        assert_eq!(full.address, Address::V6(ip));
        assert_eq!(full.port, Some(22));
        assert_eq!(full.scope_id, Some(3));
        assert_eq!(full.problem, None);
        let rfc2133 = decode(raw(&bytes), 24, 0);
        assert_eq!(rfc2133.scope_id, None);
        assert_eq!(rfc2133.problem, None);
        let short = decode(raw(&bytes), 20, 0);
        assert_eq!(short.address, Address::None);
        assert_eq!(short.problem, Some(AddrProblem::Truncated));
    }

    #[test]
    fn ipv4_mapped_ipv6_stays_inet6() {
        let ip: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        let decoded = decode(raw(&inet6(80, ip, 0)), 28, 0);
        assert_eq!(decoded.family, Some(Family::Inet6));
        assert_eq!(decoded.address, Address::V6(ip));
    }

    #[test]
    fn unix_path_stops_at_nul() {
        let mut bytes = family_bytes(AF_UNIX).to_vec();
        bytes.extend(b"/run/x.sock\0garbage");
        let decoded = decode(raw(&bytes), bytes.len() as i32, 0);
        assert_eq!(decoded.address, Address::UnixPath(b"/run/x.sock"));
        assert_eq!(decoded.port, None);
    }

    #[test]
    fn unix_path_without_nul_uses_addrlen() {
        let mut bytes = family_bytes(AF_UNIX).to_vec();
        bytes.extend([b'a'; 108]);
        let decoded = decode(raw(&bytes), 110, 0);
        assert_eq!(decoded.address, Address::UnixPath(&[b'a'; 108]));
    }

    #[test]
    fn unix_abstract_keeps_every_byte() {
        let mut bytes = family_bytes(AF_UNIX).to_vec();
        bytes.extend(b"\0name\0with nul");
        let decoded = decode(raw(&bytes), bytes.len() as i32, 0);
        assert_eq!(decoded.address, Address::UnixAbstract(b"name\0with nul"));
    }

    #[test]
    fn unix_with_only_family_is_truncated() {
        let bytes = family_bytes(AF_UNIX);
        let decoded = decode(raw(&bytes), 2, 0);
        assert_eq!(decoded.address, Address::UnixPath(b""));
        assert_eq!(decoded.problem, Some(AddrProblem::Truncated));
    }

    #[test]
    fn unix_longer_than_sun_path_is_a_bad_length() {
        let mut bytes = family_bytes(AF_UNIX).to_vec();
        bytes.extend([b'a'; 126]);
        for addrlen in [111, 127, 128] {
            let decoded = decode(raw(&bytes), addrlen, 0);
            assert_eq!(decoded.problem, Some(AddrProblem::BadLength), "{addrlen}");
            assert_eq!(
                decoded.address,
                Address::UnixPath(&[b'a'; 108]),
                "{addrlen}"
            );
        }
        let decoded = decode(raw(&bytes), 110, 0);
        assert_eq!(decoded.problem, None);
    }

    #[test]
    fn unspec_and_unknown_families() {
        let decoded = decode(raw(&family_bytes(AF_UNSPEC)), 16, 0);
        assert_eq!(decoded.family, Some(Family::Unspec));
        assert_eq!(decoded.address, Address::None);
        let decoded = decode(raw(&family_bytes(16)), 12, 0);
        assert_eq!(decoded.family, Some(Family::Other(16)));
        assert_eq!(decoded.family.and_then(Family::name), None);
    }

    #[test]
    fn odd_lengths_and_flags() {
        let bytes = inet(1, [1, 2, 3, 4]);
        assert_eq!(
            decode(raw(&bytes), 0, 0).problem,
            Some(AddrProblem::Truncated)
        );
        assert_eq!(
            decode(raw(&bytes), 1, 0).problem,
            Some(AddrProblem::Truncated)
        );
        assert_eq!(
            decode(raw(&bytes), -1, 0).problem,
            Some(AddrProblem::BadLength)
        );
        let bad = decode(raw(&bytes), 4096, addr_flags::BAD_LENGTH);
        assert_eq!(bad.problem, Some(AddrProblem::BadLength));
        assert_eq!(bad.family, None);
        let fault = decode(raw(&bytes), 16, addr_flags::UNREADABLE);
        assert_eq!(fault.problem, Some(AddrProblem::Unreadable));
        assert_eq!(fault.address, Address::None);
    }
}
