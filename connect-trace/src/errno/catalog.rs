//! What each connect() error means, and what to check when a program hits it.
//!
//! The catalog holds every errno that at least one of four connect(2)
//! manual pages lists: the current Linux man-pages page, an old Linux page
//! (man-pages 2.77), POSIX.1-2008 (2013 edition) and 4.4BSD (the
//! FreeBSD/DragonFly page). Each entry says which of them document it, how
//! it is classed, whether Linux really returns it from connect(), and,
//! where Linux parts ways with POSIX or BSD, how. The explanations are our
//! own, checked against what Linux 6.x does (the root test suite
//! `tests/errno_provocation.rs` makes each reachable errno happen).
//!
//! `docs/errno-catalog.md` is the same catalog as a table, with the test
//! that provokes each errno.

use serde::Serialize;

/// What kind of failure an errno is, from the point of view of someone
/// deciding what to look at first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Something at the destination answered "no": nothing is accepting
    /// connections there, or the attempt was reset.
    Refused,
    /// Nothing answered before the kernel gave up.
    Timeout,
    /// The local routing (or the network on the way) has no path to the
    /// destination.
    Unreachable,
    /// A unix socket path that does not lead to a socket: missing,
    /// misspelled, a symbolic link loop, a name that is too long.
    NotFound,
    /// This machine ran out of something, or failed, on its own side: local
    /// ports, buffers, a listener's backlog, filesystem I/O.
    LocalResource,
    /// A local rule refused the attempt: file modes, broadcast without
    /// permission, a prohibiting route, a security module or BPF policy.
    Permission,
    /// Not a failure: a non-blocking connect has started and finishes in
    /// the background.
    InProgress,
    /// A signal interrupted a blocking connect; the attempt goes on in the
    /// background.
    Interrupted,
    /// connect() was called again on a socket that is connecting or already
    /// connected.
    Repeat,
    /// The program passed something that can never work: a bad descriptor,
    /// pointer, length, family or socket type.
    CallerBug,
}

impl Class {
    /// Every class, in catalog order.
    pub const ALL: [Self; 10] = [
        Self::Refused,
        Self::Timeout,
        Self::Unreachable,
        Self::NotFound,
        Self::LocalResource,
        Self::Permission,
        Self::InProgress,
        Self::Interrupted,
        Self::Repeat,
        Self::CallerBug,
    ];

    /// The class as a kebab-case string, as it appears in JSON
    /// (`"local-resource"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::NotFound => "not-found",
            Self::LocalResource => "local-resource",
            Self::Permission => "permission",
            Self::InProgress => "in-progress",
            Self::Interrupted => "interrupted",
            Self::Repeat => "repeat",
            Self::CallerBug => "caller-bug",
        }
    }

    /// One line on what the class covers.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Refused => {
                "the destination said no: nobody accepts connections there, or the attempt was reset"
            }
            Self::Timeout => "nothing answered before the kernel stopped retrying",
            Self::Unreachable => "there is no usable path from here to the destination",
            Self::NotFound => "the unix socket path does not lead to a socket",
            Self::LocalResource => {
                "this machine ran short of something on its own side: ports, buffers, backlog room, I/O"
            }
            Self::Permission => {
                "a local rule forbade it: file modes, broadcast flag, prohibit route, security policy"
            }
            Self::InProgress => "not a failure: a non-blocking connect is under way",
            Self::Interrupted => "a signal cut the wait short; the connection attempt continues",
            Self::Repeat => "connect() called again on a socket already connecting or connected",
            Self::CallerBug => "the arguments can never work: fix the program, not the network",
        }
    }
}

/// A manual page that documents connect() errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Page {
    /// The current Linux man-pages connect(2).
    Linux,
    /// The old Linux man-pages connect(2), release 2.77.
    LinuxOld,
    /// POSIX.1-2008 connect(3p), 2013 edition.
    Posix,
    /// The 4.4BSD connect(2) as shipped by FreeBSD and DragonFly.
    Bsd,
}

impl Page {
    /// Every page, in the order the catalog lists them.
    pub const ALL: [Self; 4] = [Self::Linux, Self::LinuxOld, Self::Posix, Self::Bsd];

    /// Short kebab-case name, as in JSON (`"linux-old"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::LinuxOld => "linux-old",
            Self::Posix => "posix",
            Self::Bsd => "bsd",
        }
    }

    /// A human-readable title.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Linux => "Linux (current)",
            Self::LinuxOld => "Linux (man-pages 2.77)",
            Self::Posix => "POSIX.1-2008",
            Self::Bsd => "4.4BSD (FreeBSD/DragonFly)",
        }
    }
}

/// Whether Linux returns an errno from connect().
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Linux returns it from connect() in ordinary use; the root test suite
    /// makes it happen.
    Yes,
    /// Linux's TCP, UDP and unix sockets do not return it in ordinary use:
    /// only corner cases (memory or filesystem failure, other protocol
    /// families) can.
    Rare,
    /// Linux never returns it from connect().
    No,
}

impl Reach {
    /// Short kebab-case name, as in JSON (`"rare"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::Rare => "rare",
            Self::No => "no",
        }
    }
}

/// One errno that connect() can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Symbolic name (`"ECONNREFUSED"`).
    pub name: &'static str,
    /// The Linux number (x86_64, arm64 and the other "asm-generic"
    /// architectures).
    pub errno: i32,
    /// What kind of failure it is.
    pub class: Class,
    /// Whether Linux returns it from connect().
    #[serde(rename = "reachable_on_linux")]
    pub linux: Reach,
    /// The manual pages that list it for connect().
    pub documented_in: &'static [Page],
    /// What it means, in one line.
    pub meaning: &'static str,
    /// What to look at first, in one line.
    pub check: &'static str,
    /// Where Linux behaves differently from POSIX or BSD, or from what its
    /// own page says.
    pub linux_note: Option<&'static str>,
}

impl Entry {
    /// Whether `page` lists this errno for connect().
    pub fn documented_by(&self, page: Page) -> bool {
        self.documented_in.contains(&page)
    }
}

use Page::{Bsd, Linux, LinuxOld, Posix};

const ALL_PAGES: &[Page] = &[Linux, LinuxOld, Posix, Bsd];

/// The catalog, most common failures first.
static ENTRIES: [Entry; 28] = [
    Entry {
        name: "ECONNREFUSED",
        errno: 111,
        class: Class::Refused,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The destination exists but nothing there accepts the connection: a TCP reset answered the SYN, or the unix socket has no listener.",
        check: "Is the service running and listening on that address and port (`ss -ltn`) or that unix name (`ss -xl`)? A firewall rule that rejects with a reset looks the same.",
        linux_note: Some(
            "Linux also gives it for a unix socket (path or abstract name) with no listener behind it, for an abstract name bound only by a socket of another type, and for an ICMP port-unreachable answer.",
        ),
    },
    Entry {
        name: "ETIMEDOUT",
        errno: 110,
        class: Class::Timeout,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The handshake got no answer at all, and the kernel stopped resending its SYN.",
        check: "Is the host up, and does a firewall on the way (or on the peer) drop packets silently? `net.ipv4.tcp_syn_retries` sets how long Linux keeps trying.",
        linux_note: Some(
            "A netfilter drop rule on this host's own output path also ends here, not in EPERM: TCP treats the local drop like a lost packet and keeps retrying.",
        ),
    },
    Entry {
        name: "EHOSTUNREACH",
        errno: 113,
        class: Class::Unreachable,
        linux: Reach::Yes,
        documented_in: &[Posix, Bsd],
        meaning: "No path leads to that host: a route marks it unreachable, the local link got no answer for its hardware address, or a router sent back an ICMP error.",
        check: "`ip route get DEST` for an `unreachable` route, `ip neigh` for FAILED neighbours, and reject rules that answer with ICMP host or admin-prohibited.",
        linux_note: Some(
            "Neither Linux page lists it, yet Linux returns it routinely: for `unreachable` routes, when ARP or neighbour discovery fails, and for ICMP host/prohibited answers.",
        ),
    },
    Entry {
        name: "ENETUNREACH",
        errno: 101,
        class: Class::Unreachable,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "No route leads to the destination's network.",
        check: "`ip route get DEST`: a missing default route, an interface that went down, or an IPv6 destination on a host without IPv6 routes.",
        linux_note: Some(
            "Linux fails at once, from the local route lookup, before any packet is built; an ICMP net-unreachable from a router gives the same errno later.",
        ),
    },
    Entry {
        name: "ENETDOWN",
        errno: 100,
        class: Class::Unreachable,
        linux: Reach::Rare,
        documented_in: &[Posix],
        meaning: "The local interface that would carry the connection is down.",
        check: "`ip link` state of the interface the route to the destination uses.",
        linux_note: Some(
            "Linux removes the routes of an interface that goes down, so TCP and UDP see ENETUNREACH instead; ENETDOWN from connect() is rare.",
        ),
    },
    Entry {
        name: "ENOENT",
        errno: 2,
        class: Class::NotFound,
        linux: Reach::Yes,
        documented_in: &[Posix, Bsd],
        meaning: "No file exists at the unix socket path, or a directory on the way to it is missing.",
        check: "Is the server running, and does it create its socket where the client looks? Watch for typos, a private /tmp and a different mount namespace.",
        linux_note: Some(
            "Abstract unix names (leading NUL byte) have no file behind them: a missing one gives ECONNREFUSED, not ENOENT.",
        ),
    },
    Entry {
        name: "ENOTDIR",
        errno: 20,
        class: Class::NotFound,
        linux: Reach::Yes,
        documented_in: &[Posix, Bsd],
        meaning: "Something in the middle of the unix socket path is a plain file where a directory should be.",
        check: "Walk the path (`namei -l PATH`): a file sits where a directory was expected.",
        linux_note: None,
    },
    Entry {
        name: "ELOOP",
        errno: 40,
        class: Class::NotFound,
        linux: Reach::Yes,
        documented_in: &[Posix, Bsd],
        meaning: "Resolving the unix socket path ran through too many symbolic links, usually because they form a cycle.",
        check: "`namei -l PATH` shows the chain of links and where it loops back.",
        linux_note: None,
    },
    Entry {
        name: "ENAMETOOLONG",
        errno: 36,
        class: Class::NotFound,
        linux: Reach::Yes,
        documented_in: &[Posix, Bsd],
        meaning: "A name met while resolving the unix socket path is longer than the filesystem allows.",
        check: "Components longer than 255 bytes, most likely inside the target of a symbolic link on the path.",
        linux_note: Some(
            "sun_path holds only 108 bytes and a longer address is rejected with EINVAL, so on Linux this comes from a component over 255 bytes, typically in a symlink's target.",
        ),
    },
    Entry {
        name: "EADDRNOTAVAIL",
        errno: 99,
        class: Class::LocalResource,
        linux: Reach::Yes,
        documented_in: &[Linux, Posix, Bsd],
        meaning: "No local address and port could be found for the connection: the ephemeral ports towards this destination are all taken, or the bound address is unusable.",
        check: "`net.ipv4.ip_local_port_range`, how many connections go to the same destination (`ss -tan`, TIME-WAIT counts), and whether connections are reused.",
        linux_note: Some(
            "On Linux this is how TCP reports ephemeral port exhaustion (UDP says EAGAIN, and the old Linux page used EAGAIN for both); a clash of an explicitly bound port with an existing connection also lands here.",
        ),
    },
    Entry {
        name: "EAGAIN",
        errno: 11,
        class: Class::LocalResource,
        linux: Reach::Yes,
        documented_in: &[Linux, LinuxOld],
        meaning: "On Linux: a non-blocking unix stream connect found the listener's queue of pending connections full, or a UDP socket found no free local port to bind to.",
        check: "Unix: does the server accept fast enough, and how big is its listen() backlog (`ss -xl`)? UDP: `net.ipv4.ip_local_port_range` against the number of UDP sockets (`ss -uan`).",
        linux_note: Some(
            "Neither POSIX nor BSD lists it for connect(). The old Linux page's running-out-of-local-ports meaning survives for UDP only (TCP says EADDRNOTAVAIL), its routing cache is gone since 3.6, and non-blocking unix sockets give EAGAIN where IP sockets give EINPROGRESS.",
        ),
    },
    Entry {
        name: "ENOBUFS",
        errno: 105,
        class: Class::LocalResource,
        linux: Reach::Rare,
        documented_in: &[Posix],
        meaning: "The kernel could not get the memory it needed for the attempt.",
        check: "Memory pressure and socket memory limits: `/proc/net/sockstat`, `net.ipv4.tcp_mem`, the kernel log.",
        linux_note: Some(
            "Linux returns it from connect() only when an allocation fails, which ordinary use does not reach.",
        ),
    },
    Entry {
        name: "EADDRINUSE",
        errno: 98,
        class: Class::LocalResource,
        linux: Reach::Rare,
        documented_in: &[Linux, LinuxOld, Posix, Bsd],
        meaning: "The local address the connection would use is already taken by another socket.",
        check: "Any bind() before connect(), SO_REUSEADDR or SO_REUSEPORT use, and the other sockets on that local address (`ss -tanp`).",
        linux_note: Some(
            "Linux's TCP reports a bound port that clashes with an existing connection as EADDRNOTAVAIL, and in ordinary use its TCP, UDP and unix code do not return EADDRINUSE from connect().",
        ),
    },
    Entry {
        name: "EIO",
        errno: 5,
        class: Class::LocalResource,
        linux: Reach::Rare,
        documented_in: &[Posix],
        meaning: "The filesystem failed while the unix socket path was being looked up.",
        check: "The kernel log (`dmesg`) for disk or network filesystem errors under that path.",
        linux_note: Some("Only a failing filesystem lookup can produce it on Linux."),
    },
    Entry {
        name: "EACCES",
        errno: 13,
        class: Class::Permission,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "A local rule refused the attempt: the unix socket file (or a directory above it) is off limits, or Linux policy forbids the destination.",
        check: "Unix: owner and mode of the socket file and its directories. IP: SO_BROADCAST for broadcast addresses, `ip route get DEST` for a prohibit route, Landlock/SELinux policy.",
        linux_note: Some(
            "POSIX and BSD know only the unix-path meaning. Linux adds a broadcast destination without SO_BROADCAST, a `prohibit` route, and security-module denials (SELinux, Landlock TCP rules).",
        ),
    },
    Entry {
        name: "EPERM",
        errno: 1,
        class: Class::Permission,
        linux: Reach::Yes,
        documented_in: &[Linux, LinuxOld],
        meaning: "A local policy forbade the connection: a security module rule or a cgroup BPF connect hook.",
        check: "Landlock, SELinux or AppArmor policy for the process, and BPF programs attached to its cgroup (`bpftool cgroup tree`).",
        linux_note: Some(
            "Linux-only. The pages also blame broadcast and firewall rules, but connect() reports a broadcast without SO_BROADCAST as EACCES, and a netfilter drop on output as ETIMEDOUT (EPERM shows up on a later send instead). A Landlock scope on abstract unix sockets does give EPERM.",
        ),
    },
    Entry {
        name: "EINPROGRESS",
        errno: 115,
        class: Class::InProgress,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "A non-blocking connect has begun and will finish later; this is how such a call normally starts, not a failure.",
        check: "Nothing, unless it never completes: the real outcome is in SO_ERROR once the socket is writable, or in a later connect() on it.",
        linux_note: Some(
            "Linux unix stream sockets never return it: a non-blocking unix connect completes at once or fails with EAGAIN.",
        ),
    },
    Entry {
        name: "EINTR",
        errno: 4,
        class: Class::Interrupted,
        linux: Reach::Yes,
        documented_in: &[Linux, LinuxOld, Posix],
        meaning: "A signal handler ran while connect() was waiting; the attempt itself carries on in the background.",
        check: "Which signals the program catches (timers, SIGCHLD) and whether it installs them with SA_RESTART or waits for the socket to become writable afterwards.",
        linux_note: Some(
            "The kernel sees an internal restart code and the tracer reports EINTR, as the program sees it; with SA_RESTART the call is repeated instead, and traced again.",
        ),
    },
    Entry {
        name: "EALREADY",
        errno: 114,
        class: Class::Repeat,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "connect() was called again on a non-blocking socket whose previous attempt is still under way.",
        check: "The program's event loop: after EINPROGRESS it should wait for writability and read SO_ERROR rather than call connect() again.",
        linux_note: None,
    },
    Entry {
        name: "EISCONN",
        errno: 106,
        class: Class::Repeat,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The socket already has a connection.",
        check: "The program's bookkeeping: a reconnect on a live socket, or a repeated connect() used to learn that a non-blocking attempt succeeded.",
        linux_note: Some(
            "Linux also answers EISCONN for a listening TCP socket, where POSIX lists EOPNOTSUPP; datagram sockets never get it, they just change peer.",
        ),
    },
    Entry {
        name: "EBADF",
        errno: 9,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The descriptor number is not an open file.",
        check: "Use after close(), double close(), or a descriptor number that was never opened.",
        linux_note: None,
    },
    Entry {
        name: "ENOTSOCK",
        errno: 88,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The descriptor is open but refers to a file, pipe or device, not a socket.",
        check: "Descriptor mix-ups: a socket closed and its number reused for a file, or the wrong variable passed.",
        linux_note: None,
    },
    Entry {
        name: "EFAULT",
        errno: 14,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: &[Linux, LinuxOld, Bsd],
        meaning: "The address pointer leads outside the program's memory.",
        check: "Pointer bugs: a freed or never-set buffer handed to connect().",
        linux_note: None,
    },
    Entry {
        name: "EINVAL",
        errno: 22,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: &[Posix],
        meaning: "An argument is malformed: the address length does not fit its family, or the socket is in a state that cannot connect.",
        check: "addrlen against the size of the sockaddr type, IPv6 link-local addresses without a scope id, connect() on a listening socket.",
        linux_note: Some(
            "Only POSIX lists it, but Linux uses it widely: wrong lengths, link-local IPv6 without an interface, a unix socket that is already listening.",
        ),
    },
    Entry {
        name: "EAFNOSUPPORT",
        errno: 97,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: ALL_PAGES,
        meaning: "The address family in the sockaddr does not match what the socket can talk to, such as an IPv6 address on an IPv4 socket.",
        check: "How the program builds addresses: the family given to socket() against the sa_family it passes, typically an IPv4/IPv6 mix-up after name resolution.",
        linux_note: Some(
            "Linux does not reject AF_UNSPEC: it dissolves the socket's association instead (a datagram socket forgets its peer, a TCP socket disconnects). On BSD a datagram socket drops its peer when connect() is handed an address that cannot be valid, for instance an all-zero one.",
        ),
    },
    Entry {
        name: "EPROTOTYPE",
        errno: 91,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: &[Linux, Posix],
        meaning: "The socket's type does not match the peer's, such as a unix datagram socket aimed at a stream listener.",
        check: "SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET on each side of the unix socket.",
        linux_note: Some(
            "Linux gives it only for unix sockets bound to a filesystem path; an abstract name is looked up per socket type, so a mismatch there finds nothing and reads ECONNREFUSED.",
        ),
    },
    Entry {
        name: "EOPNOTSUPP",
        errno: 95,
        class: Class::CallerBug,
        linux: Reach::Yes,
        documented_in: &[Posix],
        meaning: "This kind of socket cannot make connections at all.",
        check: "The socket's family and type: packet sockets and the like have no connect(); POSIX also uses it for a listening socket.",
        linux_note: Some(
            "POSIX means a listening socket; Linux answers that with EISCONN (TCP) or EINVAL (unix) and returns EOPNOTSUPP for families without connect(), such as AF_PACKET.",
        ),
    },
    Entry {
        name: "ECONNRESET",
        errno: 104,
        class: Class::Refused,
        linux: Reach::Rare,
        documented_in: &[Posix],
        meaning: "The peer reset the connection while it was being set up.",
        check: "The server side (crashes, overload), and middleboxes that inject resets.",
        linux_note: Some(
            "Linux reports a reset answering its SYN as ECONNREFUSED; ECONNRESET from connect() needs a corner case such as a reset during a simultaneous open.",
        ),
    },
];

/// Every catalog entry.
pub fn entries() -> &'static [Entry] {
    &ENTRIES
}

/// The entry for a Linux errno number; `None` for numbers no page lists for
/// connect().
pub fn lookup(errno: i32) -> Option<&'static Entry> {
    ENTRIES.iter().find(|entry| entry.errno == errno)
}

/// The entry for a symbolic name, case-insensitive (`"econnrefused"`). The
/// aliases `EWOULDBLOCK` (for `EAGAIN`) and `ENOTSUP` (for `EOPNOTSUPP`) are
/// accepted.
pub fn lookup_name(name: &str) -> Option<&'static Entry> {
    if name.eq_ignore_ascii_case("ENOTSUP") {
        return lookup(95);
    }
    crate::errno::number(name).and_then(lookup)
}

/// The class of a Linux errno, when it is in the catalog; `None` for 0 and
/// for errnos no page lists for connect().
pub fn class_of(errno: i32) -> Option<Class> {
    lookup(errno).map(|entry| entry.class)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::collections::HashSet;

    use super::*;
    use crate::errno;

    #[test]
    fn numbers_and_names_agree_with_the_errno_table_and_libc() {
        for entry in entries() {
            assert_eq!(errno::name(entry.errno), Some(entry.name), "{entry:?}");
            assert_eq!(errno::number(entry.name), Some(entry.errno), "{entry:?}");
        }
        let libc_numbers = [
            ("EACCES", libc::EACCES),
            ("EPERM", libc::EPERM),
            ("EADDRINUSE", libc::EADDRINUSE),
            ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
            ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
            ("EAGAIN", libc::EAGAIN),
            ("EALREADY", libc::EALREADY),
            ("EBADF", libc::EBADF),
            ("ECONNREFUSED", libc::ECONNREFUSED),
            ("EFAULT", libc::EFAULT),
            ("EINPROGRESS", libc::EINPROGRESS),
            ("EINTR", libc::EINTR),
            ("EISCONN", libc::EISCONN),
            ("ENETUNREACH", libc::ENETUNREACH),
            ("ENOTSOCK", libc::ENOTSOCK),
            ("EPROTOTYPE", libc::EPROTOTYPE),
            ("ETIMEDOUT", libc::ETIMEDOUT),
            ("EIO", libc::EIO),
            ("ELOOP", libc::ELOOP),
            ("ENAMETOOLONG", libc::ENAMETOOLONG),
            ("ENOENT", libc::ENOENT),
            ("ENOTDIR", libc::ENOTDIR),
            ("ECONNRESET", libc::ECONNRESET),
            ("EHOSTUNREACH", libc::EHOSTUNREACH),
            ("EINVAL", libc::EINVAL),
            ("ENETDOWN", libc::ENETDOWN),
            ("ENOBUFS", libc::ENOBUFS),
            ("EOPNOTSUPP", libc::EOPNOTSUPP),
        ];
        assert_eq!(libc_numbers.len(), entries().len());
        for (name, number) in libc_numbers {
            assert_eq!(lookup(number).map(|entry| entry.name), Some(name));
        }
    }

    #[test]
    fn entries_are_unique_and_complete() {
        let mut numbers = HashSet::new();
        for entry in entries() {
            assert!(numbers.insert(entry.errno), "duplicate {}", entry.name);
            assert!(!entry.documented_in.is_empty(), "{}", entry.name);
            for text in [entry.meaning, entry.check] {
                assert!(!text.is_empty() && !text.contains('\n'), "{}", entry.name);
            }
            assert!(entry.linux_note.is_none_or(|note| !note.contains('\n')));
            // Pages are listed in a fixed order, each once.
            let positions: Vec<usize> = entry
                .documented_in
                .iter()
                .map(|page| Page::ALL.iter().position(|p| p == page).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", entry.name);
        }
    }

    /// What each page lists, read off the four pages (see the module docs).
    #[test]
    fn page_coverage_matches_the_manuals() {
        let listed = |page: Page| -> Vec<&str> {
            let mut names: Vec<&str> = entries()
                .iter()
                .filter(|entry| entry.documented_by(page))
                .map(|entry| entry.name)
                .collect();
            names.sort_unstable();
            names
        };
        assert_eq!(
            listed(Page::Linux),
            [
                "EACCES",
                "EADDRINUSE",
                "EADDRNOTAVAIL",
                "EAFNOSUPPORT",
                "EAGAIN",
                "EALREADY",
                "EBADF",
                "ECONNREFUSED",
                "EFAULT",
                "EINPROGRESS",
                "EINTR",
                "EISCONN",
                "ENETUNREACH",
                "ENOTSOCK",
                "EPERM",
                "EPROTOTYPE",
                "ETIMEDOUT",
            ]
        );
        assert_eq!(
            listed(Page::LinuxOld),
            [
                "EACCES",
                "EADDRINUSE",
                "EAFNOSUPPORT",
                "EAGAIN",
                "EALREADY",
                "EBADF",
                "ECONNREFUSED",
                "EFAULT",
                "EINPROGRESS",
                "EINTR",
                "EISCONN",
                "ENETUNREACH",
                "ENOTSOCK",
                "EPERM",
                "ETIMEDOUT",
            ]
        );
        let not_posix: Vec<&str> = entries()
            .iter()
            .filter(|entry| !entry.documented_by(Page::Posix))
            .map(|entry| entry.name)
            .collect();
        assert_eq!(not_posix, ["EAGAIN", "EPERM", "EFAULT"]);
        assert_eq!(
            listed(Page::Bsd),
            [
                "EACCES",
                "EADDRINUSE",
                "EADDRNOTAVAIL",
                "EAFNOSUPPORT",
                "EALREADY",
                "EBADF",
                "ECONNREFUSED",
                "EFAULT",
                "EHOSTUNREACH",
                "EINPROGRESS",
                "EISCONN",
                "ELOOP",
                "ENAMETOOLONG",
                "ENETUNREACH",
                "ENOENT",
                "ENOTDIR",
                "ENOTSOCK",
                "ETIMEDOUT",
            ]
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(lookup(111).map(|e| e.name), Some("ECONNREFUSED"));
        assert_eq!(lookup_name("econnrefused").map(|e| e.errno), Some(111));
        assert_eq!(lookup_name("EWOULDBLOCK").map(|e| e.name), Some("EAGAIN"));
        assert_eq!(lookup_name("enotsup").map(|e| e.name), Some("EOPNOTSUPP"));
        assert_eq!(lookup(0), None);
        assert_eq!(lookup(-111), None);
        assert_eq!(lookup(libc::ENOMEM), None);
        assert_eq!(lookup(512), None);
        assert_eq!(lookup_name("ENOMEM"), None);
        assert_eq!(lookup_name("ENOPE"), None);
        assert_eq!(lookup_name(""), None);
        assert_eq!(class_of(libc::ETIMEDOUT), Some(Class::Timeout));
        assert_eq!(class_of(libc::EINTR), Some(Class::Interrupted));
        assert_eq!(class_of(libc::EADDRNOTAVAIL), Some(Class::LocalResource));
        assert_eq!(class_of(0), None);
        assert_eq!(class_of(libc::ENOMEM), None);
    }

    #[test]
    fn names_are_kebab_case_and_match_json() {
        for class in Class::ALL {
            let name = class.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
            assert_eq!(
                serde_json::to_value(class).unwrap(),
                serde_json::Value::from(name)
            );
            assert!(!class.description().is_empty());
        }
        for page in Page::ALL {
            assert_eq!(
                serde_json::to_value(page).unwrap(),
                serde_json::Value::from(page.name())
            );
        }
        for reach in [Reach::Yes, Reach::Rare, Reach::No] {
            assert_eq!(
                serde_json::to_value(reach).unwrap(),
                serde_json::Value::from(reach.name())
            );
        }
        let names: HashSet<_> = Class::ALL.iter().map(|class| class.name()).collect();
        assert_eq!(names.len(), Class::ALL.len());
    }

    #[test]
    fn every_class_is_used() {
        for class in Class::ALL {
            assert!(
                entries().iter().any(|entry| entry.class == class),
                "{class:?}"
            );
        }
    }

    #[test]
    fn entry_serializes_with_kebab_case_values() {
        let json = serde_json::to_value(lookup(libc::EAGAIN).unwrap()).unwrap();
        assert_eq!(json["name"], "EAGAIN");
        assert_eq!(json["errno"], 11);
        assert_eq!(json["class"], "local-resource");
        assert_eq!(json["reachable_on_linux"], "yes");
        assert_eq!(
            json["documented_in"],
            serde_json::json!(["linux", "linux-old"])
        );
        assert!(json["linux_note"].is_string());
        let plain = serde_json::to_value(lookup(libc::EBADF).unwrap()).unwrap();
        assert!(plain["linux_note"].is_null());
    }

    /// docs/errno-catalog.md is the catalog as a table; it must not drift.
    #[test]
    fn the_documentation_table_matches_the_catalog() {
        let doc = include_str!("../../../docs/errno-catalog.md");
        let tests = include_str!("../../tests/errno_provocation.rs");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|line| line.starts_with("| `E"))
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(rows.len(), entries().len(), "one row per entry");
        for entry in entries() {
            let row = rows
                .iter()
                .find(|row| row[0] == format!("`{}`", entry.name))
                .unwrap_or_else(|| panic!("no row for {}", entry.name));
            // | name | number | Linux | Linux old | POSIX | BSD | class | reachable | tests |
            assert_eq!(row[1], entry.errno.to_string(), "{}", entry.name);
            for (column, page) in Page::ALL.iter().enumerate() {
                let mark = if entry.documented_by(*page) {
                    "✓"
                } else {
                    ""
                };
                assert_eq!(row[2 + column], mark, "{} {page:?}", entry.name);
            }
            assert_eq!(row[6], entry.class.name(), "{}", entry.name);
            assert_eq!(row[7], entry.linux.name(), "{}", entry.name);
            let named: Vec<&str> = row[8]
                .split(',')
                .map(|name| name.trim().trim_matches('`'))
                .filter(|name| !name.is_empty() && *name != "—")
                .collect();
            assert_eq!(
                named.is_empty(),
                entry.linux != Reach::Yes,
                "{}: reachable errnos have a test, the others none",
                entry.name
            );
            for test in named {
                assert!(
                    tests.contains(&format!("fn {test}()")),
                    "{}: no test {test} in tests/errno_provocation.rs",
                    entry.name
                );
            }
        }
    }
}
