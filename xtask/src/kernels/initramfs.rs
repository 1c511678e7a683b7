//! The guest's init: an initramfs with Debian's static busybox, the
//! kernel's virtio, 9p and nftables modules, and a script that mounts the
//! host's root file system and runs the command in it.
//!
//! The guest sees the host's `/` read-only over 9p, with fresh `/tmp`,
//! `/run` and `/dev/shm` of its own, tracefs and cgroup v2 mounted where
//! systemd mounts them, and loopback up: the host's binaries, test programs
//! and tools (`ip`, `nft`, `unshare`) run unchanged on the guest's kernel.

use std::{
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use object::{
    Endianness, elf,
    read::elf::{ElfFile64, ProgramHeader as _},
};

/// The start of every line the guest's init prints.
pub const GUEST_PREFIX: &str = "connect-trace-guest: ";

/// The line the guest prints with its command's exit status.
pub const STATUS_PREFIX: &str = "connect-trace-guest: exit status ";

/// Where Debian installs busybox (`busybox-static` or `busybox`).
const BUSYBOX: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// The guest's `/init`. The command runs with a clean environment, as
/// root, in the host's file system.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "connect-trace-guest: $*"; }
fail() { say "$*"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /modules/*.ko; do
  [ -e "$module" ] || continue
  insmod "$module" || fail "loading $module failed"
done
# cache=loose: the host's files do not change under a test run, and without
# a cache every exec reads its binary and libraries over 9p again.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro host /root \
  || fail "mounting the host's file system failed"
mount -t tmpfs tmpfs /root/tmp
mount -t tmpfs tmpfs /root/run
mount -t proc proc /root/proc
mount -t sysfs sysfs /root/sys
mount -t devtmpfs devtmpfs /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts devpts /root/dev/pts
mount -t tmpfs tmpfs /root/dev/shm
mount -t tracefs tracefs /root/sys/kernel/tracing || say "no tracefs at /sys/kernel/tracing"
mount -t cgroup2 cgroup2 /root/sys/fs/cgroup || say "no cgroup v2"
ip link set lo up
cp /command /root/run/connect-trace-guest-command
say "$(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
chroot /root /usr/bin/env -i HOME=/root TERM=dumb LC_ALL=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh /run/connect-trace-guest-command < /dev/null
say "exit status $?"
poweroff -f
"#;

/// Writes an initramfs (uncompressed newc cpio: unpacking costs more than
/// reading under emulation) to `path` that loads `modules` in order and
/// runs the shell `command`.
pub fn write(path: &Path, modules: &[PathBuf], command: &str) -> Result<()> {
    let busybox = static_busybox()?;
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut archive = Archive {
        out: BufWriter::new(file),
        inode: 0,
    };
    for dir in ["bin", "dev", "modules", "proc", "root", "sys"] {
        archive.directory(dir)?;
    }
    // The kernel opens /dev/console for init's standard streams before
    // devtmpfs is mounted.
    archive.console("dev/console")?;
    archive.file("bin/busybox", 0o755, &busybox)?;
    archive.file("init", 0o755, INIT.as_bytes())?;
    archive.file("command", 0o644, command.as_bytes())?;
    for module in modules {
        let name = module
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("bad module path {}", module.display()))?;
        let data = fs::read(module).with_context(|| format!("reading {}", module.display()))?;
        archive.file(&format!("modules/{name}"), 0o644, &data)?;
    }
    let out = cpio::newc::trailer(archive.out)?;
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    Ok(())
}

/// Debian's static busybox: the guest has no libraries before it mounts
/// the host's.
fn static_busybox() -> Result<Vec<u8>> {
    let Some(path) = BUSYBOX.into_iter().find(|path| Path::new(path).is_file()) else {
        bail!("busybox is missing: install busybox-static (`cargo xtask setup`)");
    };
    let data = fs::read(path).with_context(|| format!("reading {path}"))?;
    let file = ElfFile64::<Endianness>::parse(&*data)
        .with_context(|| format!("{path} is not a 64-bit ELF program"))?;
    let endian = file.endian();
    let dynamic = file
        .elf_program_headers()
        .iter()
        .any(|header| header.p_type(endian) == elf::PT_INTERP);
    if dynamic {
        bail!("{path} is linked dynamically: install busybox-static (`cargo xtask setup`)");
    }
    Ok(data)
}

/// A newc archive being written.
struct Archive<W: Write> {
    out: W,
    inode: u32,
}

impl<W: Write> Archive<W> {
    fn entry(&mut self, name: &str) -> cpio::newc::Builder {
        self.inode += 1;
        cpio::newc::Builder::new(name).ino(self.inode).nlink(1)
    }

    fn directory(&mut self, name: &str) -> Result<()> {
        let entry = self.entry(name).mode(0o040_755).nlink(2);
        entry.write(&mut self.out, 0).finish()?;
        Ok(())
    }

    fn console(&mut self, name: &str) -> Result<()> {
        // Character device 5:1.
        let entry = self.entry(name).mode(0o020_600).rdev_major(5).rdev_minor(1);
        entry.write(&mut self.out, 0).finish()?;
        Ok(())
    }

    fn file(&mut self, name: &str, permissions: u32, data: &[u8]) -> Result<()> {
        let size = u32::try_from(data.len()).with_context(|| format!("{name} is too large"))?;
        let entry = self.entry(name).mode(0o100_000 | permissions);
        let mut writer = entry.write(&mut self.out, size);
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_lists_its_entries_in_order() {
        let mut archive = Archive {
            out: Vec::new(),
            inode: 0,
        };
        archive.directory("bin").unwrap();
        archive.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let bytes = cpio::newc::trailer(archive.out).unwrap();
        let reader = cpio::newc::Reader::new(bytes.as_slice()).unwrap();
        assert_eq!(reader.entry().name(), "bin");
        assert_eq!(reader.entry().mode(), 0o040_755);
        let rest = reader.finish().unwrap();
        let reader = cpio::newc::Reader::new(rest).unwrap();
        assert_eq!(reader.entry().name(), "init");
        assert_eq!(reader.entry().file_size(), 10);
    }

    #[test]
    fn the_status_line_matches_the_init_script() {
        assert!(INIT.contains(r#"say "exit status $?""#));
        assert!(INIT.contains(&format!(r#"say() {{ echo "{GUEST_PREFIX}$*"; }}"#)));
        assert_eq!(STATUS_PREFIX, format!("{GUEST_PREFIX}exit status "));
    }
}
