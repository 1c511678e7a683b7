//! The raw socket calls, each behind a safe function.
//!
//! The standard library's `TcpStream::connect` and friends would do, but they
//! cannot make a non-blocking connect, nor connect a unix socket to a path
//! without extra calls; the load loop needs exactly one `socket()`, one
//! `connect()` and one `close()` per iteration, so it calls them directly.

use std::{
    io, mem,
    net::SocketAddrV4,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// An errno value, as `connect()` and friends report it.
pub type Errno = i32;

/// A socket address in the kernel's layout, ready for `connect()` or `bind()`.
#[derive(Clone, Copy)]
pub struct RawAddress {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddress {
    /// An IPv4 address and port.
    pub fn inet(address: SocketAddrV4) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: address.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*address.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
        unsafe {
            std::ptr::write(
                std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>(),
                sin,
            );
        }
        Self {
            storage,
            len: socklen_of::<libc::sockaddr_in>(),
        }
    }

    /// A unix socket path. Fails if the path does not fit in `sun_path`
    /// with its terminating NUL.
    pub fn unix(path: &Path) -> io::Result<Self> {
        // SAFETY: sockaddr_un is plain old data; all zeroes is valid.
        let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unix socket path {} is longer than {} bytes or contains NUL",
                    path.display(),
                    sun.sun_path.len() - 1
                ),
            ));
        }
        for (slot, byte) in sun.sun_path.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
        unsafe {
            std::ptr::write(
                std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_un>(),
                sun,
            );
        }
        Ok(Self {
            storage,
            len: socklen_of::<libc::sockaddr_un>(),
        })
    }

    fn family(&self) -> libc::sa_family_t {
        self.storage.ss_family
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        std::ptr::from_ref(&self.storage).cast()
    }
}

impl std::fmt::Debug for RawAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RawAddress")
            .field("family", &self.family())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    // Socket address structs are at most 128 bytes: the cast cannot truncate.
    mem::size_of::<T>() as libc::socklen_t
}

fn last_errno() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `socket(domain, kind | SOCK_CLOEXEC, 0)`. The socket is closed when the
/// returned descriptor is dropped.
pub fn socket(domain: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative result is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `connect(fd, address)`: `Err(errno)` when it returns -1.
///
/// Returns the bare errno rather than an `io::Error`: on the hot path an
/// expected failure (ECONNREFUSED, ENOENT) is the normal result.
pub fn connect(fd: BorrowedFd<'_>, address: &RawAddress) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `address.storage`, which
    // outlives the call.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), address.as_ptr(), address.len) };
    if ret == 0 { Ok(()) } else { Err(last_errno()) }
}

/// `bind(fd, address)`.
pub fn bind(fd: BorrowedFd<'_>, address: &RawAddress) -> io::Result<()> {
    // SAFETY: the pointer and length describe `address.storage`, which
    // outlives the call.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), address.as_ptr(), address.len) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen() takes no pointers.
    let ret = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The port a bound IPv4 socket has, from `getsockname()`.
pub fn local_port(fd: BorrowedFd<'_>) -> io::Result<u16> {
    // SAFETY: sockaddr_in is plain old data; all zeroes is valid.
    let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = socklen_of::<libc::sockaddr_in>();
    // SAFETY: the pointer and length describe `sin`, which outlives the call.
    let ret = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            std::ptr::from_mut(&mut sin).cast(),
            &raw mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u16::from_be(sin.sin_port))
}

/// Sets `SO_LINGER` to "on, 0 seconds": `close()` then resets the
/// connection instead of leaving it in TIME_WAIT.
pub fn linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the pointer and length describe `linger`, which outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            socklen_of::<libc::linger>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `timeout_ms` for `fd` to become writable (a non-blocking
/// connect finished), then returns its `SO_ERROR`: 0 for a connection.
///
/// Returns `Ok(Some(errno))` for the connect's outcome, `Ok(None)` on timeout.
pub fn wait_connected(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> io::Result<Option<Errno>> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one pollfd, which outlives the call.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, timeout_ms) };
        if ready > 0 {
            break;
        }
        if ready == 0 {
            return Ok(None);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let mut so_error: libc::c_int = 0;
    let mut len = socklen_of::<libc::c_int>();
    // SAFETY: the pointer and length describe `so_error`, which outlives the call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut so_error).cast(),
            &raw mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(so_error))
}
