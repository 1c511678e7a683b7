//! systemd's readiness protocol (sd_notify(3)): `READY=1` once the programs
//! are attached, `STOPPING=1` when shutting down. A no-op unless systemd
//! (or a test) set `NOTIFY_SOCKET`.

use std::{
    ffi::OsStr,
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
    path::Path,
};

/// The variable naming systemd's notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=value` lines) to the socket named
/// by `NOTIFY_SOCKET`, if set. A name starting with `@` is an abstract
/// socket.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(());
    };
    let address = match target.as_encoded_bytes().split_first() {
        None => return Ok(()),
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some(_) => {
            SocketAddr::from_pathname(Path::new(OsStr::from_bytes(target.as_encoded_bytes())))?
        }
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}
