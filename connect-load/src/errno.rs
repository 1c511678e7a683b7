//! Names for the errno values a loopback `connect()` can plausibly return.

/// The symbolic name of `errno` (`"ECONNREFUSED"`), `"success"` for 0, or
/// `"E<number>"` for values outside the short list below.
pub fn name(errno: i32) -> String {
    let known = match errno {
        0 => "success",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOBUFS => "ENOBUFS",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        other => return format!("E{other}"),
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn names_known_and_unknown_values() {
        assert_eq!(name(0), "success");
        assert_eq!(name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(name(4095), "E4095");
    }
}
