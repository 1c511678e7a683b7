//! Facts about the calling task: whether it is traced, and what is read
//! from kernel memory at the member offsets the loader found in BTF (its
//! network namespace, how it runs, the socket behind a descriptor).

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated};
use connect_trace_common::{abi::ConnectRecord, config::OFFSET_UNKNOWN};

use crate::config::config;

/// `PF_IO_WORKER`: an io_uring worker thread (io-wq, or the SQPOLL
/// thread), running requests on behalf of the process it belongs to.
const PF_IO_WORKER: u32 = 0x0000_0010;
/// `PF_KTHREAD`: a kernel thread, no user program.
const PF_KTHREAD: u32 = 0x0020_0000;
/// `TS_COMPAT` (x86): the current system call is a 32-bit one.
const TS_COMPAT: u32 = 0x0002;

/// Whether calls of this thread are traced (`--pid`, `--cgroup`). The
/// verifier knows the configuration, so an unset filter costs nothing.
#[inline(always)]
pub fn traced(pid_tgid: u64) -> bool {
    let filter = config!(filter_tgid);
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return false;
    }
    let level = config!(filter_cgroup_level);
    if level != 0 {
        // SAFETY: the helper takes a plain integer.
        let ancestor = unsafe { generated::bpf_get_current_ancestor_cgroup_id(level as i32) };
        return ancestor == config!(filter_cgroup_id);
    }
    true
}

/// How the current task runs, as far as a handshake without a call cares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A kernel thread.
    Kernel,
    /// An io_uring worker thread.
    IoUringWorker,
    /// A 32-bit program inside a system call.
    Compat,
    /// Anything else, or not known.
    Plain,
}

/// How the current task runs (`current->flags`, and on x86
/// `current->thread_info.status`).
#[inline(always)]
pub fn kind() -> Kind {
    let offsets = config!(kernel);
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    if offsets.task_flags != OFFSET_UNKNOWN
        && let Some(flags) = read::<u32>(task, offsets.task_flags)
    {
        if flags & PF_KTHREAD != 0 {
            return Kind::Kernel;
        }
        if flags & PF_IO_WORKER != 0 {
            return Kind::IoUringWorker;
        }
    }
    if offsets.task_status != OFFSET_UNKNOWN
        && read::<u32>(task, offsets.task_status).is_some_and(|status| status & TS_COMPAT != 0)
    {
        return Kind::Compat;
    }
    Kind::Plain
}

/// The inode number of the calling task's network namespace
/// (`current->nsproxy->net_ns->ns.inum`); 0 when BTF did not give the
/// offsets, or a read failed.
#[inline(always)]
pub fn netns() -> u32 {
    let offsets = config!(kernel);
    if !offsets.can_find_netns() {
        return 0;
    }
    if config!(task_btf) != 0 {
        // SAFETY: the helper has no preconditions; the loads go through
        // the typed pointer it returns, at offsets from BTF, which the
        // verifier checks against the types and makes fault-safe.
        return unsafe { netns_of(generated::bpf_get_current_task_btf().cast::<u8>()) };
    }
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let inum = read::<u64>(task, offsets.task_nsproxy)
        .and_then(|nsproxy| read::<u64>(nsproxy, offsets.nsproxy_net_ns))
        .and_then(|net| read::<u32>(net, offsets.net_inum));
    inum.unwrap_or(0)
}

/// Writes the current task's ids, cgroup v2 id, network namespace and
/// `comm` into `record`, loaded through the typed task pointer: the same
/// values `bpf_get_current_uid_gid`, `bpf_get_current_cgroup_id` and
/// `bpf_get_current_comm` give, without a call each (nor the three reads
/// of `netns`): `exit_connect` went from 702 to 570 ns per unix connect on
/// the bench VM, in alternating runs.
///
/// # Safety
/// `record` is valid for writes; the loader set `task_btf` and every
/// offset of `KernelOffsets::can_load_caller` and `can_find_netns`
/// (`netns` stays 0 without the latter).
#[inline(always)]
pub unsafe fn load_caller(record: *mut ConnectRecord) {
    let offsets = config!(kernel);
    // SAFETY: as `netns` does: loads through the typed task pointer at BTF
    // offsets; `record` as the caller promises.
    unsafe {
        let task = generated::bpf_get_current_task_btf().cast::<u8>();
        let cred = load::<*const u8>(task, offsets.task_cred);
        (*record).uid = load::<u32>(cred, offsets.cred_uid);
        (*record).gid = load::<u32>(cred, offsets.cred_gid);
        let cgroups = load::<*const u8>(task, offsets.task_cgroups);
        let cgroup = load::<*const u8>(cgroups, offsets.css_set_dfl_cgrp);
        let directory = load::<*const u8>(cgroup, offsets.cgroup_kn);
        (*record).cgroup_id = load::<u64>(directory, offsets.kernfs_node_id);
        // `comm` always ends in a NUL within its 16 bytes; what follows the
        // NUL may be an older name's tail, which the daemon never reads.
        let comm = (&raw mut (*record).comm).cast::<u64>();
        comm.write_unaligned(load::<u64>(task, offsets.task_comm));
        comm.add(1)
            .write_unaligned(load::<u64>(task, offsets.task_comm + 8));
        (*record).netns = if offsets.can_find_netns() {
            netns_of(task)
        } else {
            0
        };
    }
}

/// The inode number of the network namespace of `task`, a typed task
/// pointer.
///
/// # Safety
/// `task` came from `bpf_get_current_task_btf`, and the netns offsets are
/// known.
#[inline(always)]
unsafe fn netns_of(task: *const u8) -> u32 {
    let offsets = config!(kernel);
    // SAFETY: as the caller promises.
    unsafe {
        let nsproxy = load::<*const u8>(task, offsets.task_nsproxy);
        let net = load::<*const u8>(nsproxy, offsets.nsproxy_net_ns);
        load::<u32>(net, offsets.net_inum)
    }
}

/// Writes the `comm` of the current task's process (its thread group
/// leader) to `dst`, read straight from kernel memory into it (a copy
/// through the stack costs a byte loop, see `words`); `false`, with `dst`
/// possibly zeroed, when it cannot be read.
///
/// # Safety
/// `dst` is valid for 16 bytes.
#[inline(always)]
pub unsafe fn copy_process_comm(dst: *mut [u8; 16]) -> bool {
    let offsets = config!(kernel);
    if offsets.task_group_leader == OFFSET_UNKNOWN || offsets.task_comm == OFFSET_UNKNOWN {
        return false;
    }
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(leader) = read::<u64>(task, offsets.task_group_leader) else {
        return false;
    };
    if leader == 0 {
        return false;
    }
    // SAFETY: the helper checks the source address and fails cleanly;
    // `dst` holds 16 bytes.
    let ret = unsafe {
        generated::bpf_probe_read_kernel(
            dst.cast(),
            16,
            (leader + u64::from(offsets.task_comm)) as *const core::ffi::c_void,
        )
    };
    ret == 0
}

/// The socket (`struct sock *`) behind descriptor `fd` of the current
/// task: `current->files->fdt->fd[fd]->private_data->sk`.
#[inline(always)]
pub fn socket_of(fd: i32) -> Option<u64> {
    let offsets = config!(kernel);
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, offsets.task_files)?;
    let fdt: u64 = read(files, offsets.files_fdt)?;
    let max_fds: u32 = read(fdt, offsets.fdtable_max_fds)?;
    if fd < 0 || fd as u32 >= max_fds {
        return None;
    }
    let fds: u64 = read(fdt, offsets.fdtable_fd)?;
    let file: u64 = read(fds, fd as u32 * 8)?;
    let socket: u64 = read(file, offsets.file_private_data)?;
    read(socket, offsets.socket_sk)
}

/// Reads a `T` at `base + offset` in kernel memory; `None` for a null base
/// or a failed read.
#[inline(always)]
pub fn read<T: Copy>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

/// Loads a `T` at `base + offset` through a typed kernel pointer (one that
/// came from `bpf_get_current_task_btf`, or was loaded through one). The
/// verifier checks each load against the kernel's BTF and makes it safe to
/// fault: a bad pointer reads as zero.
///
/// # Safety
/// `base` is such a typed pointer and `offset` the BTF offset of a member
/// of type `T` in its type.
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: as the caller promises; the load is volatile so that it
    // keeps the member's exact width and offset.
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}
