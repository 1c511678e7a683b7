//! Network namespace identities as the kernel programs see them: the
//! namespace's inode number (`net->ns.inum`), which is also the inode of
//! `/proc/PID/ns/net`.

use std::{io, os::unix::fs::MetadataExt as _, path::Path};

/// The network namespace of the calling thread.
pub fn current_thread() -> io::Result<u32> {
    of_path(Path::new("/proc/thread-self/ns/net"))
}

/// The network namespace of process `pid`.
pub fn of_pid(pid: u32) -> io::Result<u32> {
    of_path(&Path::new("/proc").join(pid.to_string()).join("ns/net"))
}

/// The network namespace behind a namespace file (`/proc/PID/ns/net`, or a
/// bind mount of one such as `/run/netns/NAME`).
pub fn of_path(path: &Path) -> io::Result<u32> {
    let inode = std::fs::metadata(path)?.ino();
    u32::try_from(inode).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has inode {inode}, beyond the 32 bits of ns.inum",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_and_this_process_agree() {
        let pid = std::process::id();
        assert_eq!(current_thread().unwrap(), of_pid(pid).unwrap());
    }
}
