//! Where the tracers write: a directory on a tmpfs when there is one.
//!
//! Writing its JSON is part of what connect-trace costs, so its output is
//! real; but a disk file would add writeback: kernel threads flushing
//! hundreds of MB to disk at moments of their choosing, competing with the
//! load for the same cores. A tmpfs keeps the write (the copy into the page
//! cache) and drops the writeback. Every tracer writes to the same place.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

/// A tmpfs on every systemd machine, sized at half the memory by default.
const TMPFS: &str = "/dev/shm";

/// Each bench's directory on the tmpfs: this and its pid.
const PREFIX: &str = "connect-trace-bench-";

/// A scratch directory for tracer output, removed at the end.
pub(crate) struct Scratch {
    dir: PathBuf,
    on_tmpfs: bool,
}

impl Scratch {
    /// A fresh directory on the tmpfs, or `on_disk` without one.
    pub(crate) fn create(on_disk: &Path) -> Result<Self> {
        let (dir, on_tmpfs) = if is_tmpfs(Path::new(TMPFS)) {
            remove_stale(Path::new(TMPFS));
            (
                Path::new(TMPFS).join(format!("{PREFIX}{}", std::process::id())),
                true,
            )
        } else {
            (on_disk.to_path_buf(), false)
        };
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, on_tmpfs })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the outputs go, for the report.
    pub(crate) fn describe(&self) -> String {
        if self.on_tmpfs {
            format!("a tmpfs ({})", self.dir.display())
        } else {
            format!(
                "a disk file under {} (no tmpfs at {TMPFS})",
                self.dir.display()
            )
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(fs::remove_dir_all(&self.dir));
    }
}

/// Whether `path` is the mount point of a tmpfs.
fn is_tmpfs(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let (_, mount_point, kind) = (fields.next(), fields.next(), fields.next());
        mount_point == path.to_str() && kind == Some("tmpfs")
    })
}

/// Removes the directories of benches that were killed before they could
/// (their pid is gone): they hold memory on the tmpfs.
fn remove_stale(tmpfs: &Path) {
    let Ok(entries) = fs::read_dir(tmpfs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.strip_prefix(PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            drop(fs::remove_dir_all(entry.path()));
        }
    }
}
