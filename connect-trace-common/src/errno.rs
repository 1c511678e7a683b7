//! Names of Linux error numbers (x86_64, arm64 and the other
//! "asm-generic" architectures), shared by the daemon and the load
//! generator so that both name an errno the same way.

/// Linux errno names indexed by number (x86_64, arm64 and the other
/// "asm-generic" architectures). Index 0 and the two aliases (41, 58) are
/// empty.
const NAMES: [&str; 134] = [
    "",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// Kernel-internal codes (include/linux/errno.h) that a syscall exit
/// tracepoint can observe but user space never does.
const INTERNAL_NAMES: [(i32, &str); 19] = [
    (512, "ERESTARTSYS"),
    (513, "ERESTARTNOINTR"),
    (514, "ERESTARTNOHAND"),
    (515, "ENOIOCTLCMD"),
    (516, "ERESTART_RESTARTBLOCK"),
    (517, "EPROBE_DEFER"),
    (518, "EOPENSTALE"),
    (519, "ENOPARAM"),
    (521, "EBADHANDLE"),
    (522, "ENOTSYNC"),
    (523, "EBADCOOKIE"),
    (524, "ENOTSUPP"),
    (525, "ETOOSMALL"),
    (526, "ESERVERFAULT"),
    (527, "EBADTYPE"),
    (528, "EJUKEBOX"),
    (529, "EIOCBQUEUED"),
    (530, "ERECALLCONFLICT"),
    (531, "ENOGRACE"),
];

/// The symbolic name of a Linux errno (`111` → `"ECONNREFUSED"`), including
/// the kernel-internal restart codes. `None` for 0 and unknown numbers.
pub fn name(errno: i32) -> Option<&'static str> {
    let index = usize::try_from(errno).ok()?;
    if let Some(name) = NAMES.get(index) {
        return (!name.is_empty()).then_some(*name);
    }
    INTERNAL_NAMES
        .iter()
        .find(|(number, _)| *number == errno)
        .map(|(_, name)| *name)
}

/// The number for a symbolic name (`"ECONNREFUSED"` → 111), case-insensitive.
/// Aliases `EWOULDBLOCK` and `EDEADLOCK` are accepted too.
pub fn number(name: &str) -> Option<i32> {
    if name.eq_ignore_ascii_case("EWOULDBLOCK") {
        return Some(11);
    }
    if name.eq_ignore_ascii_case("EDEADLOCK") {
        return Some(35);
    }
    if name.is_empty() {
        return None;
    }
    if let Some(index) = NAMES
        .iter()
        .position(|candidate| candidate.eq_ignore_ascii_case(name))
    {
        return i32::try_from(index).ok();
    }
    INTERNAL_NAMES
        .iter()
        .find(|(_, candidate)| candidate.eq_ignore_ascii_case(name))
        .map(|(number, _)| *number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_up_to_133_but_aliases_has_a_name() {
        for errno in 1..=133 {
            let named = name(errno).is_some();
            assert_eq!(named, errno != 41 && errno != 58, "errno {errno}");
        }
        assert_eq!(name(0), None);
        assert_eq!(name(-3), None);
        assert_eq!(name(134), None);
        assert_eq!(name(512), Some("ERESTARTSYS"));
        assert_eq!(name(111), Some("ECONNREFUSED"));
    }

    #[test]
    fn lookup_by_name_is_case_insensitive_and_knows_aliases() {
        assert_eq!(number("econnrefused"), Some(111));
        assert_eq!(number("EWOULDBLOCK"), Some(11));
        assert_eq!(number("ERESTARTSYS"), Some(512));
        assert_eq!(number("ENOPE"), None);
        assert_eq!(number(""), None);
    }
}
