//! Learning each new cgroup's id and path the moment it is made.
//!
//! A container that starts, connects and exits at once (a failing job) may
//! have its cgroup removed before the daemon reads the record: after that,
//! nothing maps the id back to a path. So a thread watches the cgroup v2
//! tree with inotify: each new directory is looked at (`stat`) as soon as it
//! is created, while it certainly exists, and its id and path are passed on.
//! A container whose cgroup lives for more than the thread's wake-up time
//! (microseconds to a few milliseconds) is then attributed whenever its
//! records arrive.
//!
//! inotify is not recursive: the thread keeps one watch per cgroup
//! directory (`fs.inotify.max_user_watches` bounds them; an error adding one
//! is counted and that subtree is resolved on demand instead). The thread
//! needs no privilege and drops its capabilities when it starts.

use std::{
    collections::HashMap,
    fs, io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::counters::WorkloadCounters;

/// New cgroups passed on and not yet taken; more are dropped (and
/// counted), and found on demand instead.
const QUEUE: usize = 16_384;
/// How often the thread checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A new cgroup: its id and its path relative to the v2 root.
pub type Discovered = (u64, Arc<str>);

/// The watching thread; dropping this stops it.
#[derive(Debug)]
pub struct CgroupWatcher {
    found: Receiver<Discovered>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CgroupWatcher {
    /// Starts watching the cgroup v2 tree mounted at `root`.
    pub fn start(root: &Path, counters: Arc<WorkloadCounters>) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let (sender, found) = mpsc::sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let mut watcher = Watch {
            root: root.to_owned(),
            inotify,
            dirs: HashMap::new(),
            sender,
            counters,
        };
        // Watch the existing tree before returning, so that nothing made
        // after `start` returns is missed.
        watcher.watch_tree("", false);
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("cgroup-watch".to_owned())
            .spawn(move || watcher.run(&stopping))?;
        Ok(Self {
            found,
            stop,
            thread: Some(thread),
        })
    }

    /// A cgroup made since the last call, if any. Never blocks.
    pub fn try_found(&self) -> Option<Discovered> {
        self.found.try_recv().ok()
    }
}

impl Drop for CgroupWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Watch {
    root: PathBuf,
    inotify: Inotify,
    /// Each watched directory, relative to the root (`""` for the root).
    dirs: HashMap<WatchDescriptor, String>,
    sender: SyncSender<Discovered>,
    counters: Arc<WorkloadCounters>,
}

impl Watch {
    fn run(mut self, stop: &AtomicBool) {
        // Nothing here needs a privilege.
        let _ = crate::kernel::privileges::drop_in_this_thread();
        let mut buffer = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            if !self.readable() {
                continue;
            }
            let events: Vec<(WatchDescriptor, EventMask, Option<String>)> = match self
                .inotify
                .read_events(&mut buffer)
            {
                Ok(events) => events
                    .map(|event| {
                        let name = event.name.and_then(|n| n.to_str()).map(str::to_owned);
                        (event.wd, event.mask, name)
                    })
                    .collect(),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => {
                    tracing::warn!(
                        "watching for new cgroups failed ({error}): cgroups are found on demand only"
                    );
                    return;
                }
            };
            for (wd, mask, name) in events {
                if mask.contains(EventMask::Q_OVERFLOW) {
                    // Events were lost: look at the whole tree again.
                    WorkloadCounters::bump(&self.counters.watch_overflows);
                    self.watch_tree("", true);
                } else if mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&wd);
                } else if mask.contains(EventMask::CREATE | EventMask::ISDIR)
                    && let Some(name) = name
                    && let Some(parent) = self.dirs.get(&wd)
                {
                    let relative = format!("{parent}/{name}");
                    self.watch_tree(&relative, true);
                }
            }
        }
    }

    /// Waits up to [`STOP_CHECK`] for events.
    fn readable(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::c_int::try_from(STOP_CHECK.as_millis()).unwrap_or(100);
        // SAFETY: one valid pollfd, for a descriptor this struct owns.
        let ready = unsafe { libc::poll(&raw mut poll, 1, timeout) };
        ready > 0
    }

    /// Watches `relative` and every directory below it, passing each on
    /// (when `announce`) as it is found.
    fn watch_tree(&mut self, relative: &str, announce: bool) {
        let mut pending = vec![relative.to_owned()];
        while let Some(relative) = pending.pop() {
            let full = self.root.join(relative.trim_start_matches('/'));
            // Before looking inside, so that a child made meanwhile is
            // either listed below or reported by the watch.
            match self
                .inotify
                .watches()
                .add(&full, WatchMask::CREATE | WatchMask::ONLYDIR)
            {
                Ok(wd) => {
                    self.dirs.insert(wd, relative.clone());
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => WorkloadCounters::bump(&self.counters.watch_errors),
            }
            if announce
                && !relative.is_empty()
                && let Ok(metadata) = fs::metadata(&full)
            {
                self.announce(metadata.ino(), &relative);
            }
            let Ok(entries) = fs::read_dir(&full) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir())
                    && let Some(name) = entry.file_name().to_str()
                {
                    pending.push(format!("{relative}/{name}"));
                }
            }
        }
    }

    fn announce(&self, id: u64, relative: &str) {
        match self.sender.try_send((id, Arc::from(relative))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => WorkloadCounters::bump(&self.counters.watch_dropped),
            // The receiving side is gone; the thread stops soon.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
