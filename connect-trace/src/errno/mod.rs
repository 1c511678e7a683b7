//! What errno values mean for connect(): their names (shared with the
//! kernel side and the load generator, in `connect_trace_common::errno`)
//! and the connect() errno [`catalog`] behind `connect-trace explain` and
//! the `errno_class` fields.

pub mod catalog;

pub use connect_trace_common::errno::{name, number};

/// The catalog class of an errno (`refused`, `timeout`, ...); `None` for 0
/// and for errnos connect() is not documented to return.
pub fn class_name(errno: i32) -> Option<&'static str> {
    catalog::class_of(errno).map(catalog::Class::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_libc_numbers() {
        let cases = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::EINTR, "EINTR"),
            (libc::EBADF, "EBADF"),
            (libc::EAGAIN, "EAGAIN"),
            (libc::EACCES, "EACCES"),
            (libc::EFAULT, "EFAULT"),
            (libc::EINVAL, "EINVAL"),
            (libc::ELOOP, "ELOOP"),
            (libc::ENOMSG, "ENOMSG"),
            (libc::EBFONT, "EBFONT"),
            (libc::ENOTSOCK, "ENOTSOCK"),
            (libc::EPROTOTYPE, "EPROTOTYPE"),
            (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
            (libc::EADDRINUSE, "EADDRINUSE"),
            (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
            (libc::ENETUNREACH, "ENETUNREACH"),
            (libc::ECONNRESET, "ECONNRESET"),
            (libc::EISCONN, "EISCONN"),
            (libc::ETIMEDOUT, "ETIMEDOUT"),
            (libc::ECONNREFUSED, "ECONNREFUSED"),
            (libc::EHOSTUNREACH, "EHOSTUNREACH"),
            (libc::EALREADY, "EALREADY"),
            (libc::EINPROGRESS, "EINPROGRESS"),
            (libc::ECANCELED, "ECANCELED"),
            (libc::EHWPOISON, "EHWPOISON"),
        ];
        for (number, expected) in cases {
            assert_eq!(name(number), Some(expected), "errno {number}");
            assert_eq!(super::number(expected), Some(number));
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_name(libc::ECONNREFUSED), Some("refused"));
        assert_eq!(class_name(0), None);
    }
}
