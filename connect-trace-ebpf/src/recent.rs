//! The latest TCP attempt per (process, descriptor): what tells a status
//! check (connect() called again on the same socket to learn the result)
//! from a new attempt.
//!
//! `RECENT` is a direct-mapped table: each (process, descriptor) has one
//! slot, and a new attempt takes it whatever was there, so the newest
//! attempt is always found. A displaced entry that a status check could
//! still have needed is counted. A call only matches an entry made on the
//! same socket: the descriptor is followed to its socket through the
//! kernel's file table, at member offsets the loader read from BTF, and
//! only for calls that found an entry of their (process, descriptor).

use connect_trace_common::{
    abi::RecentAttempt,
    names::{counter, recent_owner, recent_slot},
    outcome::{Earlier, recent},
};

use crate::{
    config::config,
    maps::{RECENT, count},
    task,
};

/// Notes that the call of `tgid` on `fd` sent a SYN on `sock` at `syn_ns`.
#[inline(always)]
pub fn begin(tgid: u32, fd: i32, sock: u64, syn_ns: u64) {
    let owner = recent_owner(tgid, fd);
    let Some(entry) = RECENT.get_ptr_mut(recent_slot(owner)) else {
        return;
    };
    // SAFETY: a valid slot of an array map; a concurrent writer on another
    // CPU can at worst tear the entry, which then matches nothing.
    let entry = unsafe { &mut *entry };
    if entry.owner != 0
        && entry.owner != owner
        && Earlier::of(entry.state, entry.code, entry.since_ns, syn_ns).still_matters()
    {
        count(counter::RECENT_EVICTED);
    }
    *entry = RecentAttempt {
        owner,
        sock,
        since_ns: syn_ns,
        state: recent::PENDING,
        code: 0,
    };
}

/// Notes that the attempt of `tgid` on `fd`, socket `sock`, ended at
/// `now_ns` with counting code `code`.
#[inline(always)]
pub fn end(tgid: u32, fd: i32, sock: u64, code: u32, now_ns: u64) {
    let owner = recent_owner(tgid, fd);
    let Some(entry) = RECENT.get_ptr_mut(recent_slot(owner)) else {
        return;
    };
    // SAFETY: as in `begin`.
    let entry = unsafe { &mut *entry };
    if entry.owner == owner && entry.sock == sock {
        entry.state = recent::ENDED;
        entry.code = code;
        entry.since_ns = now_ns;
    }
}

/// The latest attempt on the socket that `fd` of `tgid` refers to now.
#[inline(always)]
pub fn earlier(tgid: u32, fd: i32, now_ns: u64) -> Earlier {
    let owner = recent_owner(tgid, fd);
    let Some(entry) = RECENT.get_ptr(recent_slot(owner)) else {
        return Earlier::None;
    };
    // SAFETY: as in `begin`; the entry is copied out.
    let entry = unsafe { *entry };
    if entry.owner != owner {
        return Earlier::None;
    }
    // Without BTF the socket cannot be found; the (process, descriptor)
    // match alone then stands, as documented in docs/outcomes.md.
    let offsets = config!(kernel);
    if offsets.can_find_socket() && task::socket_of(fd) != Some(entry.sock) {
        return Earlier::None;
    }
    Earlier::of(entry.state, entry.code, entry.since_ns, now_ns)
}
