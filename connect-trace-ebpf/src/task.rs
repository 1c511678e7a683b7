//! Facts about the calling task read from kernel memory, at the member
//! offsets the loader found in BTF: its network namespace, and the socket
//! behind one of its descriptors.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use crate::config::config;

/// The inode number of the calling task's network namespace
/// (`current->nsproxy->net_ns->ns.inum`); 0 when BTF did not give the
/// offsets, or a read failed.
#[inline(always)]
pub fn netns() -> u32 {
    let offsets = config!(kernel);
    if !offsets.can_find_netns() {
        return 0;
    }
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let inum = read::<u64>(task, offsets.task_nsproxy)
        .and_then(|nsproxy| read::<u64>(nsproxy, offsets.nsproxy_net_ns))
        .and_then(|net| read::<u32>(net, offsets.net_inum));
    inum.unwrap_or(0)
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
fn read<T: Copy>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}
