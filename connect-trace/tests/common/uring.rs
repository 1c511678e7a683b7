//! io_uring connect requests, made with the `io-uring` crate.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use io_uring::{IoUring, opcode, squeue, types};

use super::{RECORD_TIMEOUT, RawAddr};

/// Submits one connect of `fd` to `addr` (with `flags`, and an optional
/// linked timeout) on a fresh ring and returns the connect's result.
pub fn io_uring_connect(
    fd: types::Fd,
    registered: Option<&OwnedFd>,
    addr: &RawAddr,
    flags: squeue::Flags,
    timeout: Option<Duration>,
) -> i32 {
    let mut ring = IoUring::new(8).unwrap();
    let target = match registered {
        Some(socket) => {
            ring.submitter()
                .register_files(&[socket.as_raw_fd()])
                .unwrap();
            None
        }
        None => Some(fd),
    };
    let connect = match target {
        Some(fd) => opcode::Connect::new(fd, addr.as_ptr(), addr.len).build(),
        None => opcode::Connect::new(types::Fixed(0), addr.as_ptr(), addr.len).build(),
    };
    let timespec = timeout.map(|after| {
        types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos())
    });
    let mut entries = vec![connect.flags(flags).user_data(1)];
    if let Some(timespec) = &timespec {
        entries[0] = entries[0].clone().flags(flags | squeue::Flags::IO_LINK);
        entries.push(opcode::LinkTimeout::new(timespec).build().user_data(2));
    }
    // SAFETY: the address, the timespec and the descriptors outlive the
    // ring, which is waited on below until every request completed.
    unsafe {
        for entry in &entries {
            ring.submission().push(entry).unwrap();
        }
    }
    ring.submit_and_wait(entries.len()).unwrap();
    let mut result = None;
    let deadline = Instant::now() + RECORD_TIMEOUT;
    let mut completed = 0;
    while completed < entries.len() {
        for cqe in ring.completion() {
            completed += 1;
            if cqe.user_data() == 1 {
                result = Some(cqe.result());
            }
        }
        if completed < entries.len() {
            assert!(Instant::now() < deadline, "io_uring never completed");
            ring.submit_and_wait(1).unwrap();
        }
    }
    -result.expect("the connect completed")
}
