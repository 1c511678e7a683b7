//! Names of Linux error numbers, and the mapping from what the syscall
//! tracepoint sees to what the calling program sees.

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

/// `EINTR`: what an interrupted call returns to the program.
pub const EINTR: i32 = 4;

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
    let upper = name.to_ascii_uppercase();
    match upper.as_str() {
        "EWOULDBLOCK" => return Some(11),
        "EDEADLOCK" => return Some(35),
        _ => {}
    }
    if upper.is_empty() {
        return None;
    }
    if let Some(index) = NAMES.iter().position(|candidate| *candidate == upper) {
        return i32::try_from(index).ok();
    }
    INTERNAL_NAMES
        .iter()
        .find(|(_, candidate)| *candidate == upper)
        .map(|(number, _)| *number)
}

/// The syscall's return value as the calling program sees it.
///
/// The exit tracepoint runs before signal handling, so an interrupted
/// connect() shows up there as one of the kernel's restart codes. The
/// program sees `EINTR` instead (or, when its handler was installed with
/// `SA_RESTART`, nothing: the call is made again, and that second call is
/// traced as an attempt of its own).
pub fn user_visible_ret(kernel_ret: i32) -> i32 {
    match kernel_ret {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK
        -512 | -513 | -514 | -516 => -EINTR,
        other => other,
    }
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
    fn every_number_up_to_133_but_aliases_has_a_name() {
        for errno in 1..=133 {
            let named = name(errno).is_some();
            assert_eq!(named, errno != 41 && errno != 58, "errno {errno}");
        }
        assert_eq!(name(0), None);
        assert_eq!(name(-3), None);
        assert_eq!(name(134), None);
        assert_eq!(name(512), Some("ERESTARTSYS"));
    }

    #[test]
    fn lookup_by_name_is_case_insensitive_and_knows_aliases() {
        assert_eq!(number("econnrefused"), Some(111));
        assert_eq!(number("EWOULDBLOCK"), Some(libc::EAGAIN));
        assert_eq!(number("ENOPE"), None);
        assert_eq!(number(""), None);
    }

    #[test]
    fn restart_codes_become_eintr() {
        assert_eq!(user_visible_ret(-512), -EINTR);
        assert_eq!(user_visible_ret(-516), -EINTR);
        assert_eq!(user_visible_ret(-111), -111);
        assert_eq!(user_visible_ret(0), 0);
    }
}
