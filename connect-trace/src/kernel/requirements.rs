//! The one list of what tracing needs from the running kernel: the
//! tracepoints and the fields read from each, the kernel struct members
//! read through BTF, and the map types. [`super::Tracer::load`] reads the
//! running kernel's layout through these lists, and `connect-trace check`
//! checks the same lists, so the two cannot disagree. The capability rule
//! is [`super::privileges::missing_for_tracing`].

use aya::maps::MapType;
use connect_trace_common::config::{IoUringOffsets, KernelOffsets, TracepointOffsets};

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

/// The raw tracepoint `tcp_destroy_sock` (optional): each TCP socket as it
/// is freed, where a followed handshake whose end the kernel did not report
/// is caught. Its one argument is the socket; no field is read.
pub const TCP_DESTROY_SOCK: &str = "tcp_destroy_sock";

/// `io_uring/io_uring_submit_req` (optional): each submitted request.
pub const IO_URING_SUBMIT: Tracepoint = Tracepoint {
    category: "io_uring",
    name: "io_uring_submit_req",
    fields: &["req", "opcode", "flags"],
    purpose: "io_uring connect requests as they are submitted",
};

/// The same tracepoint under its earlier name, `io_uring_submit_sqe`, which
/// older kernels have (Debian 12's 6.1 among them). It gives the request
/// from Linux 5.18 on; earlier ones lack the `req` field.
pub const IO_URING_SUBMIT_SQE: Tracepoint = Tracepoint {
    name: "io_uring_submit_sqe",
    ..IO_URING_SUBMIT
};

/// `io_uring/io_uring_complete` (with `req`: Linux 5.18 and later; optional).
pub const IO_URING_COMPLETE: Tracepoint = Tracepoint {
    category: "io_uring",
    name: "io_uring_complete",
    fields: &["req", "res"],
    purpose: "io_uring connect requests' results",
};

/// The io_uring tracepoints this kernel has, and where their fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoUringTracepoints {
    /// The submission tracepoint, under whichever name this kernel uses.
    pub submit: Tracepoint,
    /// Where the programs read their fields.
    pub offsets: IoUringOffsets,
}

/// Every tracepoint, in the order the programs attach.
pub const TRACEPOINTS: [Tracepoint; 3] = [SYS_ENTER_CONNECT, SYS_EXIT_CONNECT, INET_SOCK_SET_STATE];

/// A kernel struct member whose offset comes from BTF: the sum of the
/// offsets along `path` (a member of a member...).
#[derive(Debug, Clone, Copy)]
pub struct BtfMember {
    /// `(struct, member)` steps, outermost first.
    pub path: &'static [(&'static str, &'static str)],
    /// What is lost without it.
    pub without: &'static str,
    /// Where the programs find it.
    set: fn(&mut KernelOffsets, u32),
}

impl BtfMember {
    /// The member as C would name it: `sock.__sk_common.skc_daddr`.
    pub fn name(&self) -> String {
        let mut name = self.path.first().map_or("", |(outer, _)| *outer).to_owned();
        for (_, member) in self.path {
            name.push('.');
            name.push_str(member);
        }
        name
    }
}

impl PartialEq for BtfMember {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for BtfMember {}

macro_rules! member {
    ([$(($outer:literal, $member:literal)),+], $field:ident, $without:expr) => {
        BtfMember {
            path: &[$(($outer, $member)),+],
            without: $without,
            set: |offsets, offset| offsets.$field = offset,
        }
    };
}

/// Every struct member the programs read. None is required: without BTF
/// tracing works, with the losses each names.
pub const BTF_MEMBERS: [BtfMember; 33] = [
    member!(
        [("sock", "sk_err")],
        sock_sk_err,
        "failed handshakes are reported with a null error"
    ),
    member!([("task_struct", "files")], task_files, SOCKET_LOST),
    member!([("files_struct", "fdt")], files_fdt, SOCKET_LOST),
    member!([("fdtable", "max_fds")], fdtable_max_fds, SOCKET_LOST),
    member!([("fdtable", "fd")], fdtable_fd, SOCKET_LOST),
    member!([("file", "private_data")], file_private_data, SOCKET_LOST),
    member!([("socket", "sk")], socket_sk, SOCKET_LOST),
    member!([("task_struct", "nsproxy")], task_nsproxy, NETNS_LOST),
    member!([("nsproxy", "net_ns")], nsproxy_net_ns, NETNS_LOST),
    member!([("net", "ns"), ("ns_common", "inum")], net_inum, NETNS_LOST),
    member!(
        [("sock", "__sk_common"), ("sock_common", "skc_family")],
        sock_family,
        DESTINATION_LOST
    ),
    member!(
        [("sock", "__sk_common"), ("sock_common", "skc_dport")],
        sock_dport,
        DESTINATION_LOST
    ),
    member!(
        [("sock", "__sk_common"), ("sock_common", "skc_daddr")],
        sock_daddr,
        DESTINATION_LOST
    ),
    member!(
        [("sock", "__sk_common"), ("sock_common", "skc_v6_daddr")],
        sock_v6_daddr,
        DESTINATION_LOST
    ),
    member!(
        [("tcp_sock", "fastopen_req")],
        tcp_fastopen_req,
        "TCP Fast Open attempts are reported with via \"other\""
    ),
    member!(
        [("task_struct", "flags")],
        task_flags,
        "kernel sockets' and io_uring workers' handshakes are reported with via \"other\""
    ),
    member!(
        [("task_struct", "thread_info"), ("thread_info", "status")],
        task_status,
        "32-bit programs' handshakes are reported with via \"other\" (only x86 has this member)"
    ),
    member!(
        [("task_struct", "group_leader")],
        task_group_leader,
        IO_WORKER_NAME_LOST
    ),
    member!([("task_struct", "comm")], task_comm, IO_WORKER_NAME_LOST),
    member!([("task_struct", "cred")], task_cred, CALLER_SLOWER),
    member!([("cred", "uid")], cred_uid, CALLER_SLOWER),
    member!([("cred", "gid")], cred_gid, CALLER_SLOWER),
    member!([("task_struct", "cgroups")], task_cgroups, CALLER_SLOWER),
    member!([("css_set", "dfl_cgrp")], css_set_dfl_cgrp, CALLER_SLOWER),
    member!([("cgroup", "kn")], cgroup_kn, CALLER_SLOWER),
    member!([("kernfs_node", "id")], kernfs_node_id, CALLER_SLOWER),
    member!([("io_kiocb", "file")], io_request_file, IO_URING_LOST),
    member!(
        [("io_kiocb", "cqe"), ("io_cqe", "fd")],
        io_request_fd,
        IO_URING_LOST
    ),
    member!(
        [("io_kiocb", "cmd"), ("io_connect", "addr")],
        io_connect_addr,
        IO_URING_LOST
    ),
    member!(
        [("io_kiocb", "cmd"), ("io_connect", "addr_len")],
        io_connect_addr_len,
        IO_URING_LOST
    ),
    member!(
        [("sock", "__sk_common"), ("sock_common", "skc_net")],
        sock_net,
        SOCKET_NETNS_LOST
    ),
    member!([("tcp_sock", "snd_una")], tcp_snd_una, END_AT_CLOSE_LOST),
    member!(
        [("tcp_sock", "write_seq")],
        tcp_write_seq,
        END_AT_CLOSE_LOST
    ),
];

const SOCKET_LOST: &str =
    "a status check is matched to its attempt by process and descriptor only, not by socket";
const NETNS_LOST: &str = "records carry no network namespace (netns null), and DNS names cannot be told apart by namespace";
const DESTINATION_LOST: &str = "TCP handshakes no call was seen for (kernel sockets, 32-bit programs, TCP Fast Open) are reported without their destination";
const CALLER_SLOWER: &str =
    "nothing is lost, but each record's ids, cgroup and name cost a helper call each";
const IO_WORKER_NAME_LOST: &str =
    "handshakes started by io_uring worker threads carry the worker's name, not the program's";
const SOCKET_NETNS_LOST: &str = "DNS answers cannot be told apart by network namespace (server_name may come from another namespace's answer)";
const END_AT_CLOSE_LOST: &str = "a handshake end the kernel does not report waits for --resolve-timeout instead of being caught as its socket is freed";
const IO_URING_LOST: &str = "io_uring connect requests are reported without their descriptor or address, or once only by their handshake";

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

/// Finds the io_uring tracepoints in `tracefs` (the submission under its
/// current name, or else its earlier one) and reads the offset of each
/// field the programs use; an error says why io_uring requests cannot be
/// traced here.
pub fn io_uring_tracepoints(tracefs: &Tracefs) -> Result<IoUringTracepoints, TracefsError> {
    let submit = match io_uring_submit_offsets(tracefs, IO_URING_SUBMIT) {
        Err(TracefsError::MissingTracepoint { .. }) => IO_URING_SUBMIT_SQE,
        _ => IO_URING_SUBMIT,
    };
    let (submit_req, submit_opcode, submit_flags) = io_uring_submit_offsets(tracefs, submit)?;
    let complete =
        |name: &str| tracefs.field_offset(IO_URING_COMPLETE.category, IO_URING_COMPLETE.name, name);
    Ok(IoUringTracepoints {
        submit,
        offsets: IoUringOffsets {
            submit_req,
            submit_opcode,
            submit_flags,
            complete_req: complete("req")?,
            complete_res: complete("res")?,
        },
    })
}

/// The offsets of `req`, `opcode` and `flags` in submission tracepoint
/// `submit`.
fn io_uring_submit_offsets(
    tracefs: &Tracefs,
    submit: Tracepoint,
) -> Result<(u32, u32, u32), TracefsError> {
    let field = |name: &str| tracefs.field_offset(submit.category, submit.name, name);
    Ok((field("req")?, field("opcode")?, field("flags")?))
}

/// Whether tracepoint programs can get a typed pointer to the current task
/// (`bpf_get_current_task_btf`, Linux 5.11), through which they read task
/// members without a helper call each. A failed probe counts as no: the
/// programs then read them as on older kernels.
pub fn task_btf_available() -> bool {
    aya::sys::is_helper_supported(
        aya::programs::ProgramType::TracePoint,
        aya::sys::BpfHelper::BPF_FUNC_get_current_task_btf,
    )
    .unwrap_or(false)
}

/// Reads the offset of every member of [`BTF_MEMBERS`] from `btf`. A
/// member that cannot be found is left unknown and its error returned.
pub fn kernel_offsets(btf: Result<&Btf, &BtfError>) -> (KernelOffsets, Vec<(BtfMember, String)>) {
    let mut offsets = KernelOffsets::UNKNOWN;
    let mut problems = Vec::new();
    for wanted in BTF_MEMBERS {
        let found = match btf {
            Ok(btf) => wanted.path.iter().try_fold(0, |sum, (outer, member)| {
                btf.member_offset(outer, member)
                    .map(|offset| sum + offset)
                    .map_err(|error| error.to_string())
            }),
            Err(error) => Err(error.to_string()),
        };
        match found {
            Ok(offset) => (wanted.set)(&mut offsets, offset),
            Err(problem) => problems.push((wanted, problem)),
        }
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
