//! What each mode connects to, and one connect attempt against it.

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use serde::Serialize;

use crate::sys::{self, Errno, RawAddress};

/// How long a non-blocking connect may take to finish before it counts as
/// `ETIMEDOUT`. On loopback it finishes inside `connect()` itself.
const NONBLOCKING_TIMEOUT_MS: libc::c_int = 5_000;

/// The listener's accept queue. A full queue drops SYNs and the client
/// retries a second later, which would wreck the measurement, so ask for as
/// much as the kernel allows (it caps this at `net.core.somaxconn`).
const LISTEN_BACKLOG: libc::c_int = 65_535;

/// What kind of `connect()` to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// TCP to a closed loopback port: fails with ECONNREFUSED.
    Refused,
    /// TCP to a loopback listener this process runs: succeeds.
    Ok,
    /// Non-blocking TCP to that listener, then wait until writable: EINPROGRESS, then success.
    NonblockingOk,
    /// UDP to a loopback port: succeeds (UDP connect sends nothing).
    Udp,
    /// Unix stream socket to a path that does not exist: fails with ENOENT.
    Unix,
}

/// The outcome of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// 0 for a connection, otherwise the errno the connect ended with (for
    /// `nonblocking-ok`, after waiting).
    pub errno: Errno,
    /// Time spent inside the `connect()` call alone.
    pub connect_ns: u64,
    /// When the attempt finished: the load loop checks its deadline with it.
    pub finished: Instant,
}

/// Something to connect to, set up once and shared by every load thread.
#[derive(Debug)]
pub struct Target {
    mode: Mode,
    domain: libc::c_int,
    kind: libc::c_int,
    address: RawAddress,
    expected: Errno,
    /// Keeps the refused port reserved (bound, never listening) for the run.
    _reserved: Option<OwnedFd>,
}

impl Mode {
    /// The name `--mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Ok => "ok",
            Self::NonblockingOk => "nonblocking-ok",
            Self::Udp => "udp",
            Self::Unix => "unix",
        }
    }
}

impl Target {
    /// Sets up what `mode` connects to: reserves a closed port, starts a
    /// listener with its accepting thread, or picks a missing unix path
    /// (`unix_path`, or one in the temporary directory).
    pub fn set_up(mode: Mode, unix_path: Option<&Path>) -> Result<Self> {
        let (domain, kind, address, expected, reserved) = match mode {
            Mode::Refused => {
                let (port, reserved) = reserve_closed_port()?;
                let address = RawAddress::inet(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                (
                    libc::AF_INET,
                    libc::SOCK_STREAM,
                    address,
                    libc::ECONNREFUSED,
                    Some(reserved),
                )
            }
            Mode::Ok | Mode::NonblockingOk => {
                let port = start_listener()?;
                let address = RawAddress::inet(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                let kind = if mode == Mode::Ok {
                    libc::SOCK_STREAM
                } else {
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK
                };
                (libc::AF_INET, kind, address, 0, None)
            }
            Mode::Udp => {
                // Nothing needs to listen: a UDP connect only records the peer.
                let (port, reserved) = reserve_closed_port()?;
                let address = RawAddress::inet(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                (libc::AF_INET, libc::SOCK_DGRAM, address, 0, Some(reserved))
            }
            Mode::Unix => {
                let path = unix_path.map_or_else(default_missing_path, Path::to_path_buf);
                if path.symlink_metadata().is_ok() {
                    bail!(
                        "--unix-path {} exists; the unix mode needs a path that does not",
                        path.display()
                    );
                }
                let address = RawAddress::unix(&path)
                    .with_context(|| format!("using {} as a unix socket path", path.display()))?;
                (
                    libc::AF_UNIX,
                    libc::SOCK_STREAM,
                    address,
                    libc::ENOENT,
                    None,
                )
            }
        };
        Ok(Self {
            mode,
            domain,
            kind,
            address,
            expected,
            _reserved: reserved,
        })
    }

    /// The errno every attempt should end with (0: a connection).
    pub fn expected(&self) -> Errno {
        self.expected
    }

    /// One `socket()`, `connect()`, `close()`, plus, for the TCP connections,
    /// the wait for a non-blocking connect and `SO_LINGER` 0 before closing.
    ///
    /// Zero linger makes `close()` send a reset instead of leaving the
    /// client in TIME_WAIT: otherwise a few tens of thousands of connections
    /// would use up the ephemeral ports and connect() would start failing
    /// with EADDRNOTAVAIL.
    ///
    /// Fails only when a call other than `connect()` fails; what `connect()`
    /// returns is the attempt's outcome.
    pub fn attempt(&self) -> io::Result<Attempt> {
        let socket = sys::socket(self.domain, self.kind)?;
        let before = Instant::now();
        let result = sys::connect(socket.as_fd(), &self.address);
        let after = Instant::now();
        let errno = match (self.mode, result) {
            (Mode::NonblockingOk, Err(libc::EINPROGRESS)) => {
                sys::wait_connected(socket.as_fd(), NONBLOCKING_TIMEOUT_MS)?
                    .unwrap_or(libc::ETIMEDOUT)
            }
            (_, Ok(())) => 0,
            (_, Err(errno)) => errno,
        };
        if errno == 0 && matches!(self.mode, Mode::Ok | Mode::NonblockingOk) {
            sys::linger_zero(socket.as_fd())?;
        }
        drop(socket);
        let connect_ns = u64::try_from(after.duration_since(before).as_nanos()).unwrap_or(u64::MAX);
        Ok(Attempt {
            errno,
            connect_ns,
            finished: if self.mode == Mode::NonblockingOk {
                Instant::now()
            } else {
                after
            },
        })
    }
}

/// Binds a TCP socket to an ephemeral loopback port without listening:
/// connects to it are refused, and no other program can take the port while
/// the socket is open.
fn reserve_closed_port() -> Result<(u16, OwnedFd)> {
    let socket = sys::socket(libc::AF_INET, libc::SOCK_STREAM).context("creating a TCP socket")?;
    sys::bind(
        socket.as_fd(),
        &RawAddress::inet(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
    )
    .context("binding a TCP socket to 127.0.0.1:0")?;
    let port = sys::local_port(socket.as_fd()).context("reading the reserved port")?;
    Ok((port, socket))
}

/// Starts a loopback listener and a thread that accepts and closes every
/// connection; returns its port. The thread ends with the process.
fn start_listener() -> Result<u16> {
    let socket = sys::socket(libc::AF_INET, libc::SOCK_STREAM).context("creating a TCP socket")?;
    sys::bind(
        socket.as_fd(),
        &RawAddress::inet(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
    )
    .context("binding the listener to 127.0.0.1:0")?;
    sys::listen(socket.as_fd(), LISTEN_BACKLOG).context("listening on 127.0.0.1")?;
    let port = sys::local_port(socket.as_fd()).context("reading the listener's port")?;
    let listener = TcpListener::from(socket);
    thread::Builder::new()
        .name("accept".to_owned())
        .spawn(move || accept_forever(&listener))
        .context("starting the accepting thread")?;
    Ok(port)
}

fn accept_forever(listener: &TcpListener) {
    loop {
        // Connections are closed as soon as they are accepted; the clients
        // have usually reset them already.
        if listener.accept().is_err() {
            // EMFILE and the like: back off rather than spin.
            thread::sleep(Duration::from_millis(1));
        }
    }
}

fn default_missing_path() -> PathBuf {
    std::env::temp_dir().join(format!("connect-load-{}-missing.sock", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::{Mode, Target};

    fn outcome(mode: Mode) -> i32 {
        let target = Target::set_up(mode, None).unwrap();
        target.attempt().unwrap().errno
    }

    #[test]
    fn each_mode_gets_its_expected_outcome() {
        assert_eq!(outcome(Mode::Refused), libc::ECONNREFUSED);
        assert_eq!(outcome(Mode::Ok), 0);
        assert_eq!(outcome(Mode::NonblockingOk), 0);
        assert_eq!(outcome(Mode::Udp), 0);
        assert_eq!(outcome(Mode::Unix), libc::ENOENT);
    }

    #[test]
    fn names_are_the_command_line_values() {
        use clap::ValueEnum as _;
        for mode in Mode::value_variants() {
            assert_eq!(mode.to_possible_value().unwrap().get_name(), mode.name());
        }
    }

    #[test]
    fn refuses_an_existing_unix_path() {
        let error = Target::set_up(Mode::Unix, Some(std::path::Path::new("/"))).unwrap_err();
        assert!(error.to_string().contains("exists"), "{error}");
    }
}
