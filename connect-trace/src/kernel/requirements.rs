//! The one list of what tracing needs from the running kernel: the
//! tracepoints and the fields read from each, the kernel struct members
//! read through BTF, and the map types. [`super::Tracer::load`] reads the
//! running kernel's layout through these lists, and `connect-trace check`
//! checks the same lists, so the two cannot disagree. The capability rule
//! is [`super::privileges::missing_for_tracing`].

use aya::maps::MapType;
use connect_trace_common::config::{KernelOffsets, OFFSET_UNKNOWN, TracepointOffsets};

use super::{
    btf::{Btf, BtfError},
    tracefs::{Tracefs, TracefsError},
};

/// A tracepoint the programs attach to, and the fields they read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracepoint {
    /// The tracefs category (`syscalls`, `sock`).
    pub category: &'static str,
    /// The tracepoint's name.
    pub name: &'static str,
    /// The fields read from its record, by name.
    pub fields: &'static [&'static str],
    /// What it gives, for people.
    pub purpose: &'static str,
}

/// `syscalls/sys_enter_connect`.
pub const SYS_ENTER_CONNECT: Tracepoint = Tracepoint {
    category: "syscalls",
    name: "sys_enter_connect",
    fields: &["fd", "uservaddr", "addrlen"],
    purpose: "each connect() call's arguments",
};

/// `syscalls/sys_exit_connect`.
pub const SYS_EXIT_CONNECT: Tracepoint = Tracepoint {
    category: "syscalls",
    name: "sys_exit_connect",
    fields: &["ret"],
    purpose: "each connect() call's result",
};

/// `sock/inet_sock_set_state`; attached as a raw tracepoint where the
/// kernel allows, which passes its arguments without building the record,
/// but its format is read either way.
pub const INET_SOCK_SET_STATE: Tracepoint = Tracepoint {
    category: "sock",
    name: "inet_sock_set_state",
    fields: &["skaddr", "oldstate", "newstate", "protocol"],
    purpose: "how each TCP handshake ends",
};

/// Every tracepoint, in the order the programs attach.
pub const TRACEPOINTS: [Tracepoint; 3] = [SYS_ENTER_CONNECT, SYS_EXIT_CONNECT, INET_SOCK_SET_STATE];

/// A kernel struct member whose offset comes from BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfMember {
    /// The struct.
    pub type_name: &'static str,
    /// The member.
    pub member: &'static str,
    /// What is lost without it.
    pub without: &'static str,
}

/// Every struct member the programs read. None is required: without BTF
/// tracing works, with the losses each names.
pub const BTF_MEMBERS: [BtfMember; 13] = [
    BtfMember {
        type_name: "sock",
        member: "sk_err",
        without: "failed handshakes are reported with a null error",
    },
    BtfMember {
        type_name: "task_struct",
        member: "files",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "files_struct",
        member: "fdt",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "fdtable",
        member: "max_fds",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "fdtable",
        member: "fd",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "file",
        member: "private_data",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "socket",
        member: "sk",
        without: SOCKET_LOST,
    },
    BtfMember {
        type_name: "task_struct",
        member: "nsproxy",
        without: NETNS_LOST,
    },
    BtfMember {
        type_name: "nsproxy",
        member: "net_ns",
        without: NETNS_LOST,
    },
    BtfMember {
        type_name: "net",
        member: "ns",
        without: NETNS_LOST,
    },
    BtfMember {
        type_name: "ns_common",
        member: "inum",
        without: NETNS_LOST,
    },
    BtfMember {
        type_name: "sock",
        member: "__sk_common",
        without: SOCKET_NETNS_LOST,
    },
    BtfMember {
        type_name: "sock_common",
        member: "skc_net",
        without: SOCKET_NETNS_LOST,
    },
];

const SOCKET_LOST: &str =
    "a status check is matched to its attempt by process and descriptor only, not by socket";
const NETNS_LOST: &str = "records carry no network namespace (netns null), and DNS names cannot be told apart by namespace";
const SOCKET_NETNS_LOST: &str = "DNS answers cannot be told apart by network namespace (server_name may come from another namespace's answer)";

/// The map types the programs use, with what each holds.
pub const MAP_TYPES: [(MapType, &str); 4] = [
    (MapType::RingBuf, "records for the daemon (Linux 5.8)"),
    (MapType::Hash, "calls and handshakes under way"),
    (MapType::Array, "recent attempts, for status checks"),
    (MapType::PerCpuArray, "counters"),
];

/// Reads the offset of every field of [`TRACEPOINTS`] from `tracefs`.
pub fn tracepoint_offsets(tracefs: &Tracefs) -> Result<TracepointOffsets, TracefsError> {
    let field = |tracepoint: Tracepoint, name: &str| {
        tracefs.field_offset(tracepoint.category, tracepoint.name, name)
    };
    Ok(TracepointOffsets {
        enter_fd: field(SYS_ENTER_CONNECT, "fd")?,
        enter_addr: field(SYS_ENTER_CONNECT, "uservaddr")?,
        enter_addrlen: field(SYS_ENTER_CONNECT, "addrlen")?,
        exit_ret: field(SYS_EXIT_CONNECT, "ret")?,
        state_skaddr: field(INET_SOCK_SET_STATE, "skaddr")?,
        state_old: field(INET_SOCK_SET_STATE, "oldstate")?,
        state_new: field(INET_SOCK_SET_STATE, "newstate")?,
        state_protocol: field(INET_SOCK_SET_STATE, "protocol")?,
    })
}

/// Reads the offset of every member of [`BTF_MEMBERS`] from `btf`. A
/// member that cannot be found is left unknown and its error returned.
pub fn kernel_offsets(btf: Result<&Btf, &BtfError>) -> (KernelOffsets, Vec<(BtfMember, String)>) {
    let mut offsets = KernelOffsets::UNKNOWN;
    let mut problems = Vec::new();
    let mut net_parts = 0;
    let mut sock_net_parts = 0;
    for wanted in BTF_MEMBERS {
        let found = match btf {
            Ok(btf) => btf
                .member_offset(wanted.type_name, wanted.member)
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let offset = match found {
            Ok(offset) => offset,
            Err(problem) => {
                problems.push((wanted, problem));
                continue;
            }
        };
        match (wanted.type_name, wanted.member) {
            ("sock", "sk_err") => offsets.sock_sk_err = offset,
            ("task_struct", "files") => offsets.task_files = offset,
            ("files_struct", "fdt") => offsets.files_fdt = offset,
            ("fdtable", "max_fds") => offsets.fdtable_max_fds = offset,
            ("fdtable", "fd") => offsets.fdtable_fd = offset,
            ("file", "private_data") => offsets.file_private_data = offset,
            ("socket", "sk") => offsets.socket_sk = offset,
            ("task_struct", "nsproxy") => offsets.task_nsproxy = offset,
            ("nsproxy", "net_ns") => offsets.nsproxy_net_ns = offset,
            // `net.ns.inum` is read as one offset: the two add up.
            ("net", "ns") | ("ns_common", "inum") => {
                offsets.net_inum = if offsets.net_inum == OFFSET_UNKNOWN {
                    offset
                } else {
                    offsets.net_inum + offset
                };
                net_parts += 1;
            }
            // `sock.__sk_common.skc_net` too.
            ("sock", "__sk_common") | ("sock_common", "skc_net") => {
                offsets.sock_net = if offsets.sock_net == OFFSET_UNKNOWN {
                    offset
                } else {
                    offsets.sock_net + offset
                };
                sock_net_parts += 1;
            }
            _ => {}
        }
    }
    if net_parts != 2 {
        offsets.net_inum = OFFSET_UNKNOWN;
    }
    if sock_net_parts != 2 {
        offsets.sock_net = OFFSET_UNKNOWN;
    }
    (offsets, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_has_a_slot() {
        let path = std::path::Path::new(super::super::btf::VMLINUX);
        let Ok(btf) = Btf::from_file(path) else {
            return;
        };
        let (offsets, problems) = kernel_offsets(Ok(&btf));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(offsets.can_find_socket());
        assert!(offsets.can_find_socket_netns(), "{offsets:?}");
        assert_ne!(
            offsets.sock_sk_err,
            connect_trace_common::config::OFFSET_UNKNOWN
        );
    }

    #[test]
    fn without_btf_everything_is_unknown() {
        let error = BtfError::Malformed("test");
        let (offsets, problems) = kernel_offsets(Err(&error));
        assert_eq!(offsets, KernelOffsets::UNKNOWN);
        assert_eq!(problems.len(), BTF_MEMBERS.len());
    }
}
