//! Finding a cgroup's path from its id, and a process's cgroup-v1 paths.
//!
//! The kernel names a cgroup v2 by the inode number of its directory in the
//! cgroup2 filesystem (on 64-bit kernels the whole 64-bit id is the inode
//! number). There are two ways back from the id to the directory:
//! - **by file handle**: cgroupfs exports its directories with the id as
//!   the file handle, so `open_by_handle_at` opens the directory directly
//!   and `/proc/self/fd` names its path. That needs CAP_DAC_READ_SEARCH.
//! - **by walking** the cgroup2 tree: `readdir` reports each directory's
//!   inode number, so a walk needs no `stat` per directory. It needs no
//!   capability, and costs a few microseconds per cgroup on the host.
//!
//! [`CgroupFs`] uses the handle when it works and falls back to the walk.
//! Both only find cgroups that still exist; a removed cgroup keeps its last
//! known identity in [`super::Workloads`].

use std::{
    collections::VecDeque,
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::DirEntryExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::kernel::mounts::mount_points;

/// `statfs` magic of the cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// A walk lists at most this many cgroups; a larger tree is walked in part,
/// and that is counted.
pub const DEFAULT_WALK_LIMIT: usize = 200_000;
/// A miss walks the tree again at most this often: a burst of records from
/// cgroups that are already gone must not turn into a burst of walks.
const MIN_REWALK: Duration = Duration::from_millis(20);

/// What went wrong opening the cgroup v2 hierarchy.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted.
    #[error("no cgroup v2 hierarchy is mounted (no cgroup2 line in /proc/self/mounts)")]
    NoCgroup2,
    /// The hierarchy could not be opened.
    #[error("cannot open the cgroup v2 hierarchy at {path}: {source}")]
    Open {
        /// Where it was expected.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path given by the user is not a cgroup v2 directory.
    #[error("{path} is not a cgroup v2 directory under {root}: {reason}")]
    NotACgroup {
        /// The path as given.
        path: String,
        /// The cgroup v2 mount point.
        root: PathBuf,
        /// Why not.
        reason: String,
    },
}

/// How ids are turned into paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `open_by_handle_at` with the kernfs file handle.
    FileHandle,
    /// Walking the tree (no CAP_DAC_READ_SEARCH, or handles not supported).
    Walk,
}

/// A cgroup v2 directory to filter on in the kernel: a task is in it, or
/// below it, when its ancestor at `level` has this `id`
/// (`bpf_get_current_ancestor_cgroup_id(level) == id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupTarget {
    /// The cgroup id (the directory's inode number).
    pub id: u64,
    /// Its depth: 0 for the root, 1 for `/docker`, 2 for `/docker/<id>`.
    pub level: u32,
}

/// The result of walking the cgroup v2 tree.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every cgroup found: id to path (relative to the root, `/` for it).
    pub paths: FxHashMap<u64, Arc<str>>,
    /// Whether the walk stopped at its limit.
    pub truncated: bool,
}

/// The cgroup v2 hierarchy, opened.
#[derive(Debug)]
pub struct CgroupFs {
    root: PathBuf,
    root_fd: OwnedFd,
    /// The file handle type of this filesystem, when handles work.
    handle_type: Option<i32>,
    has_v1: bool,
    walk_limit: usize,
    index: FxHashMap<u64, Arc<str>>,
    last_walk: Option<Instant>,
    walks: u64,
    truncated_walks: u64,
    /// Cgroups learned as they were made ([`super::watch`]), oldest first
    /// in `learned_order`; they may be gone since.
    learned: FxHashMap<u64, Arc<str>>,
    learned_order: VecDeque<u64>,
}

/// Most cgroups kept from [`CgroupFs::learn`]; the oldest go first.
pub const LEARNED_LIMIT: usize = 65_536;

impl CgroupFs {
    /// Opens the cgroup v2 hierarchy named in `mounts` (the text of
    /// `/proc/self/mounts`); notes whether v1 hierarchies are mounted too.
    pub fn from_mounts(mounts: &str) -> Result<Self, CgroupError> {
        let root = mount_points(mounts, "cgroup2")
            .into_iter()
            .next()
            .ok_or(CgroupError::NoCgroup2)?;
        let has_v1 = !mount_points(mounts, "cgroup").is_empty();
        Self::open(&root, has_v1)
    }

    /// Opens the system's cgroup v2 hierarchy, found in /proc/self/mounts.
    pub fn system() -> Result<Self, CgroupError> {
        let mounts =
            fs::read_to_string("/proc/self/mounts").map_err(|source| CgroupError::Open {
                path: PathBuf::from("/proc/self/mounts"),
                source,
            })?;
        Self::from_mounts(&mounts)
    }

    /// Opens the cgroup v2 hierarchy mounted at `root`.
    pub fn open(root: &Path, has_v1: bool) -> Result<Self, CgroupError> {
        let open_error = |source| CgroupError::Open {
            path: root.to_owned(),
            source,
        };
        let c_root = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| open_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: c_root is a valid C string; the returned descriptor is
        // checked and owned below.
        let fd = unsafe {
            libc::open(
                c_root.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(open_error(io::Error::last_os_error()));
        }
        // SAFETY: fd is a descriptor just opened and owned by nobody else.
        let root_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut cgroups = Self {
            root: root.to_owned(),
            root_fd,
            handle_type: None,
            has_v1,
            walk_limit: DEFAULT_WALK_LIMIT,
            index: FxHashMap::default(),
            last_walk: None,
            walks: 0,
            truncated_walks: 0,
            learned: FxHashMap::default(),
            learned_order: VecDeque::new(),
        };
        cgroups.handle_type = cgroups.probe_handles();
        Ok(cgroups)
    }

    /// Stops using file handles, as without CAP_DAC_READ_SEARCH.
    pub fn without_handles(mut self) -> Self {
        self.handle_type = None;
        self
    }

    /// Sets how many cgroups one walk lists at most.
    pub fn with_walk_limit(mut self, limit: usize) -> Self {
        self.walk_limit = limit;
        self
    }

    /// Where the hierarchy is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether cgroup v1 hierarchies are mounted too (a v1 or hybrid host).
    pub fn has_v1(&self) -> bool {
        self.has_v1
    }

    /// How ids are resolved now.
    pub fn resolution(&self) -> Resolution {
        if self.handle_type.is_some() {
            Resolution::FileHandle
        } else {
            Resolution::Walk
        }
    }

    /// How many walks were made, and how many of them stopped at the limit.
    pub fn walks(&self) -> (u64, u64) {
        (self.walks, self.truncated_walks)
    }

    /// The path of cgroup `id`, or `None` when no such cgroup exists now (or
    /// none was found by a walk made in the last few milliseconds).
    pub fn path_of(&mut self, id: u64, now: Instant) -> Option<Arc<str>> {
        if let Some(path) = self.learned.get(&id) {
            return Some(Arc::clone(path));
        }
        if self.handle_type.is_some() {
            match self.path_by_handle(id) {
                Ok(path) => return path.map(Arc::from),
                // Handles stopped working (capabilities dropped): walk.
                Err(_) => self.handle_type = None,
            }
        }
        if let Some(path) = self.index.get(&id) {
            return Some(Arc::clone(path));
        }
        if self
            .last_walk
            .is_some_and(|last| now.saturating_duration_since(last) < MIN_REWALK)
        {
            return None;
        }
        self.refresh_index(now);
        self.index.get(&id).cloned()
    }

    /// Remembers that cgroup `id` is (or was) at `path`: a cgroup seen when
    /// it was made keeps its path for [`CgroupFs::path_of`] after it is
    /// gone. Bounded by [`LEARNED_LIMIT`].
    pub fn learn(&mut self, id: u64, path: Arc<str>) {
        if self.learned.insert(id, path).is_none() {
            self.learned_order.push_back(id);
        }
        while self.learned_order.len() > LEARNED_LIMIT {
            if let Some(oldest) = self.learned_order.pop_front() {
                self.learned.remove(&oldest);
            }
        }
    }

    /// Whether cgroup `id`, last seen at `path`, still exists: asked by
    /// handle, or else by `stat`ing the path and comparing the inode
    /// number (a cgroup made again at the same path has a new id). Handles
    /// that stop working (capabilities dropped) are not used again.
    pub fn exists(&mut self, id: u64, path: &str) -> bool {
        if self.handle_type.is_some() {
            match self.path_by_handle(id) {
                Ok(found) => return found.is_some(),
                Err(_) => self.handle_type = None,
            }
        }
        fs::metadata(self.root.join(path.trim_start_matches('/')))
            .is_ok_and(|metadata| metadata.ino() == id)
    }

    /// Walks the tree now, so that the cgroups that exist are known before
    /// their first record. With file handles working this is not needed
    /// and does nothing.
    pub fn refresh(&mut self, now: Instant) {
        if self.handle_type.is_none() {
            self.refresh_index(now);
        }
    }

    fn refresh_index(&mut self, now: Instant) {
        let walk = self.walk();
        self.walks += 1;
        if walk.truncated {
            self.truncated_walks += 1;
        }
        self.index = walk.paths;
        self.last_walk = Some(now);
    }

    /// Lists every cgroup under the root, up to the walk limit.
    pub fn walk(&self) -> Walk {
        let mut walk = Walk::default();
        let Ok(root_ino) = fs::metadata(&self.root).map(|m| m.ino()) else {
            return walk;
        };
        walk.paths.insert(root_ino, Arc::from("/"));
        let mut pending = vec![String::new()];
        while let Some(relative) = pending.pop() {
            let dir = self.root.join(relative.trim_start_matches('/'));
            let Ok(entries) = fs::read_dir(&dir) else {
                // Removed while walking.
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if walk.paths.len() >= self.walk_limit {
                    walk.truncated = true;
                    return walk;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let path = format!("{relative}/{name}");
                walk.paths.insert(entry.ino(), Arc::from(path.as_str()));
                pending.push(path);
            }
        }
        walk
    }

    /// The id (inode number) of the cgroup at `path`: absolute under the
    /// mount point, or relative to the hierarchy's root (`/docker/<id>`).
    pub fn id_of(&self, path: &str) -> Result<u64, CgroupError> {
        self.target(path).map(|target| target.id)
    }

    /// The cgroup at `path` as a kernel filter target (id and depth).
    pub fn target(&self, path: &str) -> Result<CgroupTarget, CgroupError> {
        let not_a_cgroup = |reason: String| CgroupError::NotACgroup {
            path: path.to_owned(),
            root: self.root.clone(),
            reason,
        };
        let relative = match Path::new(path).strip_prefix(&self.root) {
            Ok(inside) => inside.to_owned(),
            Err(_) => PathBuf::from(path.trim_start_matches('/')),
        };
        let relative = relative
            .to_str()
            .ok_or_else(|| not_a_cgroup("not UTF-8".to_owned()))?
            .trim_end_matches('/')
            .to_owned();
        if relative.split('/').any(|c| c == ".." || c == ".") {
            return Err(not_a_cgroup("`.` and `..` are not allowed".to_owned()));
        }
        let full = self.root.join(&relative);
        let metadata = fs::metadata(&full).map_err(|error| not_a_cgroup(error.to_string()))?;
        if !metadata.is_dir() {
            return Err(not_a_cgroup("not a directory".to_owned()));
        }
        if !on_cgroup2(&full) {
            return Err(not_a_cgroup("not on a cgroup2 filesystem".to_owned()));
        }
        let level = relative.split('/').filter(|c| !c.is_empty()).count();
        Ok(CgroupTarget {
            id: metadata.ino(),
            level: u32::try_from(level).unwrap_or(u32::MAX),
        })
    }

    /// Opens cgroup `id` by its file handle and names it. `Ok(None)`: no
    /// such cgroup; `Err`: handles do not work here.
    pub fn path_by_handle(&self, id: u64) -> io::Result<Option<String>> {
        let handle_type = self
            .handle_type
            .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        self.open_handle(handle_type, id)
    }

    fn open_handle(&self, handle_type: i32, id: u64) -> io::Result<Option<String>> {
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type,
            id: id.to_ne_bytes(),
        };
        // SAFETY: the handle is a `struct file_handle` followed by its 8
        // bytes, as handle_bytes says; root_fd is an open descriptor on
        // this filesystem.
        let fd = unsafe {
            libc::open_by_handle_at(
                self.root_fd.as_raw_fd(),
                std::ptr::from_mut(&mut handle).cast(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ESTALE | libc::ENOENT) => Ok(None),
                _ => Err(error),
            };
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        Ok(Some(self.relative(&link)))
    }

    /// `link` relative to the hierarchy's root, `/` for the root itself.
    fn relative(&self, link: &Path) -> String {
        match link.strip_prefix(&self.root) {
            Ok(inside) if inside.as_os_str().is_empty() => "/".to_owned(),
            Ok(inside) => format!("/{}", inside.to_string_lossy()),
            // Reached through another mount of the same hierarchy.
            Err(_) => link.to_string_lossy().into_owned(),
        }
    }

    /// The handle type when `open_by_handle_at` works on this hierarchy:
    /// the root's handle must be its 8-byte id, and opening it must work
    /// (it fails with EPERM without CAP_DAC_READ_SEARCH).
    fn probe_handles(&self) -> Option<i32> {
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: 0,
            id: [0; 8],
        };
        let mut mount_id: libc::c_int = 0;
        // SAFETY: the buffer holds 8 handle bytes, as handle_bytes says;
        // the empty path with AT_EMPTY_PATH names root_fd itself.
        let ret = unsafe {
            libc::name_to_handle_at(
                self.root_fd.as_raw_fd(),
                c"".as_ptr(),
                std::ptr::from_mut(&mut handle).cast(),
                &raw mut mount_id,
                libc::AT_EMPTY_PATH,
            )
        };
        let root_ino = fs::metadata(&self.root).ok()?.ino();
        if ret != 0 || handle.handle_bytes != 8 || u64::from_ne_bytes(handle.id) != root_ino {
            return None;
        }
        matches!(self.open_handle(handle.handle_type, root_ino), Ok(Some(path)) if path == "/")
            .then_some(handle.handle_type)
    }
}

/// `struct file_handle` with room for kernfs's 8-byte id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: [u8; 8],
}

fn on_cgroup2(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data; zeroed is a valid value for it.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string and stat a valid out-pointer.
    let ret = unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) };
    // `f_type` is signed in glibc and unsigned in musl.
    ret == 0 && u64::try_from(stat.f_type).ok() == Some(CGROUP2_SUPER_MAGIC)
}

/// One line of `/proc/PID/cgroup` for a v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Cgroup {
    /// The hierarchy's controllers (`memory`, `cpu,cpuacct`, or
    /// `name=systemd` for a named hierarchy).
    pub controllers: String,
    /// The path in that hierarchy.
    pub path: String,
}

/// The v1 lines of a `/proc/PID/cgroup` text; the v2 line (`0::/…`) is
/// left out.
pub fn parse_proc_cgroup(text: &str) -> Vec<V1Cgroup> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            (hierarchy != "0" && !controllers.is_empty()).then(|| V1Cgroup {
                controllers: controllers.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The v1 cgroups of process `pid`; `None` when it is gone.
pub fn v1_cgroups_of(pid: u32) -> Option<Vec<V1Cgroup>> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .map(|text| parse_proc_cgroup(&text))
}

/// The v1 path that says the most about a workload: the first that names a
/// container or pod, trying the systemd hierarchy first, as the one every
/// runtime puts containers in.
pub fn workload_v1_path(cgroups: &[V1Cgroup]) -> Option<&str> {
    let systemd = cgroups.iter().filter(|c| c.controllers == "name=systemd");
    let others = cgroups.iter().filter(|c| c.controllers != "name=systemd");
    systemd
        .chain(others)
        .map(|c| c.path.as_str())
        .find(|path| super::path::parse(path).is_workload())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c4d5e6b7a8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

    #[test]
    fn proc_cgroup_v1_lines() {
        let text = format!(
            "9:name=systemd:/docker/{ID}\n4:memory:/process_api/81013598\n2:cpu,cpuacct:/\n0::/\n"
        );
        let cgroups = parse_proc_cgroup(&text);
        assert_eq!(cgroups.len(), 3);
        assert_eq!(cgroups[0].controllers, "name=systemd");
        assert_eq!(cgroups[1].path, "/process_api/81013598");
        assert_eq!(
            workload_v1_path(&cgroups),
            Some(format!("/docker/{ID}").as_str())
        );
        // Paths may contain colons.
        assert_eq!(parse_proc_cgroup("3:pids:/a:b\n")[0].path, "/a:b");
    }

    #[test]
    fn v1_path_prefers_systemd_then_any_container_path() {
        let cgroups = parse_proc_cgroup(&format!(
            "5:memory:/system.slice/docker-{ID}.scope\n9:name=systemd:/user.slice\n"
        ));
        assert_eq!(
            workload_v1_path(&cgroups),
            Some(format!("/system.slice/docker-{ID}.scope").as_str())
        );
        assert_eq!(
            workload_v1_path(&parse_proc_cgroup("9:name=systemd:/\n0::/\n")),
            None
        );
    }

    #[test]
    fn from_mounts_needs_cgroup2() {
        assert!(matches!(
            CgroupFs::from_mounts("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"),
            Err(CgroupError::NoCgroup2)
        ));
    }
}
