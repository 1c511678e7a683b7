//! The one read-only configuration the loader writes into the programs
//! before loading them: what to filter, and where the running kernel keeps
//! the fields the programs read.
//!
//! It lives in the object's read-only data. The kernel freezes it at load,
//! so the verifier knows every value and drops the branches they rule out
//! (the fallback field reads on a kernel with the usual layout, say).

use bytemuck::{Pod, Zeroable};

/// Name of the [`Config`] global in the eBPF object.
pub const GLOBAL: &str = "CONFIG";

/// An offset that is not known on this kernel (its BTF is missing or lacks
/// the member): the programs then do without what it would give.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

/// Everything the loader tells the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Config {
    /// Trace only this tgid (process id); 0 traces every process.
    pub filter_tgid: u32,
    /// 1 to skip connect() calls that returned 0.
    pub failures_only: u32,
    /// Unread bytes in the ring buffer above which a record wakes the
    /// daemon. Below it records are submitted without a wakeup and the
    /// daemon finds them on its next poll, which saves most of the
    /// per-event cost.
    pub wakeup_bytes: u64,
    /// 1 when every tracepoint offset equals [`layout`]'s, so the programs
    /// load fields straight from the context.
    pub layout_usual: u32,
    /// With `filter_cgroup_id`: trace only callers whose cgroup v2 ancestor
    /// at this depth is that cgroup (`--cgroup`); 0 traces every cgroup.
    pub filter_cgroup_level: u32,
    /// The cgroup v2 id callers must be in or below (see
    /// `filter_cgroup_level`).
    pub filter_cgroup_id: u64,
    /// Where the tracepoint fields are, from tracefs.
    pub tracepoints: TracepointOffsets,
    /// Where kernel struct members are, from BTF.
    pub kernel: KernelOffsets,
    /// Where the io_uring tracepoints' fields are, from tracefs.
    pub io_uring: IoUringOffsets,
    /// The DNS capture (`crate::dns`): a second UDP and TCP source port
    /// whose packets it takes besides 53: 5353 when multicast DNS is asked
    /// for, 0 for none.
    pub dns_extra_port: u32,
    /// Unread bytes in the DNS ring buffer above which a DNS record wakes
    /// the daemon (as `wakeup_bytes` for the connect records).
    pub dns_wakeup_bytes: u64,
    /// 1 to make every program return at once: the benchmark's measure of
    /// what the hooks themselves cost (`run --empty-programs`).
    pub empty_programs: u32,
    /// 1 when the kernel hands programs a typed pointer to the current task
    /// (`bpf_get_current_task_btf`, Linux 5.11): the programs then load
    /// task members straight through it, which the verifier turns into
    /// plain loads, instead of calling `bpf_probe_read_kernel` for each.
    pub task_btf: u32,
}

/// Byte offsets of the fields the io_uring programs read, from tracefs.
/// They are always read through a helper: the io_uring tracepoints changed
/// shape across versions, and only io_uring requests pay for it. The
/// programs are attached only where both tracepoints give the request's
/// address (`req`, Linux 6.0 and later).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct IoUringOffsets {
    /// `io_uring_submit_req.req`.
    pub submit_req: u32,
    /// `io_uring_submit_req.opcode`.
    pub submit_opcode: u32,
    /// `io_uring_submit_req.flags`: the request's flags (`REQ_F_*`), whose
    /// lowest bit says the descriptor is an index of registered files.
    pub submit_flags: u32,
    /// `io_uring_complete.req`.
    pub complete_req: u32,
    /// `io_uring_complete.res`.
    pub complete_res: u32,
}

impl IoUringOffsets {
    /// Nothing known: io_uring is not traced.
    pub const UNKNOWN: Self = Self {
        submit_req: OFFSET_UNKNOWN,
        submit_opcode: OFFSET_UNKNOWN,
        submit_flags: OFFSET_UNKNOWN,
        complete_req: OFFSET_UNKNOWN,
        complete_res: OFFSET_UNKNOWN,
    };
}

/// Byte offsets of the tracepoint fields the programs read, from the
/// running kernel's tracefs `format` files.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct TracepointOffsets {
    /// `sys_enter_connect.fd`.
    pub enter_fd: u32,
    /// `sys_enter_connect.uservaddr`.
    pub enter_addr: u32,
    /// `sys_enter_connect.addrlen`.
    pub enter_addrlen: u32,
    /// `sys_exit_connect.ret`.
    pub exit_ret: u32,
    /// `inet_sock_set_state.skaddr`.
    pub state_skaddr: u32,
    /// `inet_sock_set_state.oldstate`.
    pub state_old: u32,
    /// `inet_sock_set_state.newstate`.
    pub state_new: u32,
    /// `inet_sock_set_state.protocol`.
    pub state_protocol: u32,
}

/// Byte offsets of kernel struct members, from the running kernel's BTF;
/// [`OFFSET_UNKNOWN`] when BTF is missing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct KernelOffsets {
    /// `struct sock.sk_err`: why a failed handshake failed.
    pub sock_sk_err: u32,
    /// `struct task_struct.files`.
    pub task_files: u32,
    /// `struct files_struct.fdt`.
    pub files_fdt: u32,
    /// `struct fdtable.max_fds`.
    pub fdtable_max_fds: u32,
    /// `struct fdtable.fd`.
    pub fdtable_fd: u32,
    /// `struct file.private_data` (a `struct socket *` for sockets).
    pub file_private_data: u32,
    /// `struct socket.sk`.
    pub socket_sk: u32,
    /// `struct task_struct.nsproxy`.
    pub task_nsproxy: u32,
    /// `struct nsproxy.net_ns`.
    pub nsproxy_net_ns: u32,
    /// `struct net.ns.inum`: the network namespace's inode number.
    pub net_inum: u32,
    /// `struct sock.__sk_common.skc_family`.
    pub sock_family: u32,
    /// `struct sock.__sk_common.skc_dport`.
    pub sock_dport: u32,
    /// `struct sock.__sk_common.skc_daddr`.
    pub sock_daddr: u32,
    /// `struct sock.__sk_common.skc_v6_daddr`.
    pub sock_v6_daddr: u32,
    /// `struct tcp_sock.fastopen_req`: set while sendto()/sendmsg() with
    /// `MSG_FASTOPEN` connects.
    pub tcp_fastopen_req: u32,
    /// `struct task_struct.flags` (`PF_*`).
    pub task_flags: u32,
    /// `struct task_struct.thread_info.status` (x86 only): its `TS_COMPAT`
    /// bit is set during a 32-bit program's system call.
    pub task_status: u32,
    /// `struct task_struct.group_leader`.
    pub task_group_leader: u32,
    /// `struct task_struct.comm`.
    pub task_comm: u32,
    /// `struct io_kiocb.file`: an io_uring request's file, once issued.
    pub io_request_file: u32,
    /// `struct io_kiocb.cqe.fd`: an io_uring request's descriptor, until it
    /// completes.
    pub io_request_fd: u32,
    /// Where a connect request keeps the address pointer
    /// (`struct io_connect.addr`, within `struct io_kiocb`).
    pub io_connect_addr: u32,
    /// The same for the address length (`struct io_connect.addr_len`).
    pub io_connect_addr_len: u32,
    /// `struct sock.__sk_common.skc_net`: a socket's network namespace,
    /// for the DNS capture.
    pub sock_net: u32,
    /// `struct task_struct.cred`: the task's credentials, whose ids the
    /// programs load directly with [`Config::task_btf`].
    pub task_cred: u32,
    /// `struct cred.uid`.
    pub cred_uid: u32,
    /// `struct cred.gid`.
    pub cred_gid: u32,
    /// `struct task_struct.cgroups`: the task's set of cgroups.
    pub task_cgroups: u32,
    /// `struct css_set.dfl_cgrp`: its cgroup v2.
    pub css_set_dfl_cgrp: u32,
    /// `struct cgroup.kn`: the cgroup's directory.
    pub cgroup_kn: u32,
    /// `struct kernfs_node.id`: the cgroup id.
    pub kernfs_node_id: u32,
    /// `struct tcp_sock.snd_una`: the first byte not yet acknowledged.
    /// With [`KernelOffsets::tcp_write_seq`] it tells, as a socket is freed,
    /// whether its SYN was ever acknowledged.
    pub tcp_snd_una: u32,
    /// `struct tcp_sock.write_seq`: one past the last byte queued (the SYN
    /// takes one).
    pub tcp_write_seq: u32,
    /// Padding; always zero.
    pub reserved: u32,
}

impl KernelOffsets {
    /// Nothing known: no BTF.
    pub const UNKNOWN: Self = Self {
        sock_sk_err: OFFSET_UNKNOWN,
        task_files: OFFSET_UNKNOWN,
        files_fdt: OFFSET_UNKNOWN,
        fdtable_max_fds: OFFSET_UNKNOWN,
        fdtable_fd: OFFSET_UNKNOWN,
        file_private_data: OFFSET_UNKNOWN,
        socket_sk: OFFSET_UNKNOWN,
        task_nsproxy: OFFSET_UNKNOWN,
        nsproxy_net_ns: OFFSET_UNKNOWN,
        net_inum: OFFSET_UNKNOWN,
        sock_family: OFFSET_UNKNOWN,
        sock_dport: OFFSET_UNKNOWN,
        sock_daddr: OFFSET_UNKNOWN,
        sock_v6_daddr: OFFSET_UNKNOWN,
        tcp_fastopen_req: OFFSET_UNKNOWN,
        task_flags: OFFSET_UNKNOWN,
        task_status: OFFSET_UNKNOWN,
        task_group_leader: OFFSET_UNKNOWN,
        task_comm: OFFSET_UNKNOWN,
        io_request_file: OFFSET_UNKNOWN,
        io_request_fd: OFFSET_UNKNOWN,
        io_connect_addr: OFFSET_UNKNOWN,
        io_connect_addr_len: OFFSET_UNKNOWN,
        sock_net: OFFSET_UNKNOWN,
        task_cred: OFFSET_UNKNOWN,
        cred_uid: OFFSET_UNKNOWN,
        cred_gid: OFFSET_UNKNOWN,
        task_cgroups: OFFSET_UNKNOWN,
        css_set_dfl_cgrp: OFFSET_UNKNOWN,
        cgroup_kn: OFFSET_UNKNOWN,
        kernfs_node_id: OFFSET_UNKNOWN,
        tcp_snd_una: OFFSET_UNKNOWN,
        tcp_write_seq: OFFSET_UNKNOWN,
        reserved: 0,
    };

    /// Whether the programs can find the socket behind a descriptor (the
    /// members from `task_struct.files` to `socket.sk` are all known).
    pub const fn can_find_socket(&self) -> bool {
        self.task_files != OFFSET_UNKNOWN
            && self.files_fdt != OFFSET_UNKNOWN
            && self.fdtable_max_fds != OFFSET_UNKNOWN
            && self.fdtable_fd != OFFSET_UNKNOWN
            && self.file_private_data != OFFSET_UNKNOWN
            && self.socket_sk != OFFSET_UNKNOWN
    }

    /// Whether the programs can read a socket's destination (for a
    /// handshake no call was seen for).
    pub const fn can_find_destination(&self) -> bool {
        self.sock_family != OFFSET_UNKNOWN
            && self.sock_dport != OFFSET_UNKNOWN
            && self.sock_daddr != OFFSET_UNKNOWN
    }

    /// Whether the programs can load the caller's ids, cgroup and `comm`
    /// straight from its task (with [`Config::task_btf`]) instead of
    /// calling a helper for each.
    pub const fn can_load_caller(&self) -> bool {
        self.task_cred != OFFSET_UNKNOWN
            && self.cred_uid != OFFSET_UNKNOWN
            && self.cred_gid != OFFSET_UNKNOWN
            && self.task_cgroups != OFFSET_UNKNOWN
            && self.css_set_dfl_cgrp != OFFSET_UNKNOWN
            && self.cgroup_kn != OFFSET_UNKNOWN
            && self.kernfs_node_id != OFFSET_UNKNOWN
            && self.task_comm != OFFSET_UNKNOWN
    }

    /// Whether the programs can read the caller's network namespace.
    pub const fn can_find_netns(&self) -> bool {
        self.task_nsproxy != OFFSET_UNKNOWN
            && self.nsproxy_net_ns != OFFSET_UNKNOWN
            && self.net_inum != OFFSET_UNKNOWN
    }

    /// Whether the DNS capture can read a socket's network namespace: both
    /// members are known, and `skc_net` lies in the head of the socket the
    /// program reads ([`crate::dns::SOCK_HEAD`]) on an 8-byte boundary.
    pub const fn can_find_socket_netns(&self) -> bool {
        self.net_inum != OFFSET_UNKNOWN
            && self.sock_net != OFFSET_UNKNOWN
            && self.sock_net.is_multiple_of(8)
            && self.sock_net as usize + 8 <= crate::dns::SOCK_HEAD
    }
}

/// The usual byte offsets of the tracepoint fields the programs read: those
/// of every kernel since the tracepoints appeared (the syscall records are
/// generic, `inet_sock_set_state` has kept its layout since 4.16). The
/// loader compares them with the running kernel's tracefs formats and, if
/// any differs, the programs read the fields at the formats' offsets
/// instead, through a slower helper.
pub mod layout {
    /// `sys_enter_connect.fd`.
    pub const ENTER_FD: usize = 16;
    /// `sys_enter_connect.uservaddr`.
    pub const ENTER_ADDR: usize = 24;
    /// `sys_enter_connect.addrlen`.
    pub const ENTER_ADDRLEN: usize = 32;
    /// `sys_exit_connect.ret`.
    pub const EXIT_RET: usize = 16;
    /// `inet_sock_set_state.skaddr`.
    pub const STATE_SKADDR: usize = 8;
    /// `inet_sock_set_state.oldstate`.
    pub const STATE_OLD: usize = 16;
    /// `inet_sock_set_state.newstate`.
    pub const STATE_NEW: usize = 20;
    /// `inet_sock_set_state.protocol`.
    pub const STATE_PROTOCOL: usize = 30;
}

impl TracepointOffsets {
    /// The usual offsets ([`layout`]).
    pub const USUAL: Self = Self {
        enter_fd: layout::ENTER_FD as u32,
        enter_addr: layout::ENTER_ADDR as u32,
        enter_addrlen: layout::ENTER_ADDRLEN as u32,
        exit_ret: layout::EXIT_RET as u32,
        state_skaddr: layout::STATE_SKADDR as u32,
        state_old: layout::STATE_OLD as u32,
        state_new: layout::STATE_NEW as u32,
        state_protocol: layout::STATE_PROTOCOL as u32,
    };
}

impl Config {
    /// What the object holds before the loader fills it in: trace
    /// everything, usual layout, no BTF.
    pub const DEFAULT: Self = Self {
        filter_tgid: 0,
        failures_only: 0,
        wakeup_bytes: 0,
        layout_usual: 0,
        filter_cgroup_level: 0,
        filter_cgroup_id: 0,
        tracepoints: TracepointOffsets::USUAL,
        kernel: KernelOffsets::UNKNOWN,
        io_uring: IoUringOffsets::UNKNOWN,
        dns_extra_port: 0,
        dns_wakeup_bytes: 0,
        empty_programs: 0,
        task_btf: 0,
    };
}

const _: () = assert!(core::mem::size_of::<Config>() == 240);
