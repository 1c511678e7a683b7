//! The per-event side of workload identity: cgroup id to [`Workload`],
//! cached.
//!
//! [`Workloads::identify`] is called once per record. A cache hit is one
//! hash lookup and a reference count. A miss resolves the cgroup's path
//! (by file handle, or by walking the tree: local and bounded), reads the
//! ids out of it, and queues a runtime lookup without waiting for it; the
//! workload is returned at once with what is known, marked
//! [`Metadata::Pending`]. Finished lookups are applied in batches by
//! [`Workloads::apply_lookups`], and [`Workloads::sweep`] notices removed
//! cgroups and retries failed lookups; both are meant for the daemon's
//! housekeeping, not for each event.
//!
//! A removed cgroup keeps its identity for [`WorkloadConfig::keep_departed`]
//! (bounded by [`WorkloadConfig::max_departed`], evictions counted), so
//! records still in flight from it are attributed.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use thiserror::Error;

use super::{
    Container, Metadata, Pod, Workload,
    cgroupfs::{self, CgroupError, CgroupFs, Resolution},
    counters::WorkloadCounters,
    labels,
    lookup::{ContainerFacts, LookupConfig, LookupOutcome, LookupRequest, Lookups},
    path::{self, PathFacts},
    watch::CgroupWatcher,
};

/// How workloads are found and how much is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Where the runtimes are; `None` to report ids only and ask no
    /// runtime.
    pub lookups: Option<LookupConfig>,
    /// Resolve ids with `open_by_handle_at` when it works (needs
    /// CAP_DAC_READ_SEARCH); otherwise walk the tree.
    pub file_handles: bool,
    /// Watch the cgroup v2 tree for new cgroups ([`super::watch`]), so that
    /// a container gone before its records are read is still named.
    pub watch: bool,
    /// On cgroup-v1 and hybrid hosts, read `/proc/PID/cgroup` when the
    /// cgroup v2 path names no workload.
    pub v1: bool,
    /// Most cgroups kept, live and removed.
    pub max_cgroups: usize,
    /// Most removed cgroups kept.
    pub max_departed: usize,
    /// How long a removed cgroup keeps its identity: at least as long as a
    /// record may wait in the daemon.
    pub keep_departed: Duration,
    /// How long before a container no runtime knew, or that no runtime
    /// could be asked about, is looked up again.
    pub retry_after: Duration,
    /// How long before an id whose cgroup was not found is looked for
    /// again.
    pub unresolved_retry: Duration,
    /// How long a process's v1 cgroup is trusted before it is read again.
    pub pid_ttl: Duration,
    /// Most processes whose v1 cgroup is kept.
    pub max_pids: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            lookups: Some(LookupConfig::default()),
            file_handles: true,
            watch: true,
            v1: true,
            max_cgroups: 65_536,
            max_departed: 4096,
            keep_departed: Duration::from_secs(300),
            retry_after: Duration::from_secs(30),
            unresolved_retry: Duration::from_secs(1),
            pid_ttl: Duration::from_secs(2),
            max_pids: 16_384,
        }
    }
}

/// What can stop workload identity from starting.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// The cgroup v2 hierarchy is there but cannot be opened.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// Where a cached cgroup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Departed,
    Unresolved { retry_at: Instant },
}

#[derive(Debug)]
struct Entry {
    workload: Arc<Workload>,
    facts: PathFacts,
    state: State,
    /// The v2 path names no workload and v1 hierarchies are mounted: ask
    /// the process's v1 cgroups.
    v1_fallback: bool,
}

/// What the runtimes said about a container.
#[derive(Debug, Clone)]
enum Meta {
    Pending,
    Known(Arc<ContainerFacts>),
    NotFound { retry_at: Instant },
    Unavailable { retry_at: Instant },
}

impl Meta {
    const fn metadata(&self) -> Metadata {
        match self {
            Self::Pending => Metadata::Pending,
            Self::Known(_) => Metadata::Known,
            Self::NotFound { .. } => Metadata::NotFound,
            Self::Unavailable { .. } => Metadata::Unavailable,
        }
    }

    fn retry_due(&self, now: Instant) -> bool {
        match self {
            Self::NotFound { retry_at } | Self::Unavailable { retry_at } => now >= *retry_at,
            Self::Pending | Self::Known(_) => false,
        }
    }
}

/// A process whose v1 cgroup was read.
#[derive(Debug)]
struct PidEntry {
    cgroup_id: u64,
    workload: Arc<Workload>,
    facts: PathFacts,
    path: Option<Arc<str>>,
    expires: Instant,
}

/// Cgroup ids to workloads, cached; see the module docs.
#[derive(Debug)]
pub struct Workloads {
    config: WorkloadConfig,
    cgroups: Option<CgroupFs>,
    has_v1: bool,
    entries: FxHashMap<u64, Entry>,
    departed: VecDeque<(u64, Instant)>,
    by_container: FxHashMap<Arc<str>, Vec<u64>>,
    containers: FxHashMap<Arc<str>, Meta>,
    pids: FxHashMap<u32, PidEntry>,
    lookups: Option<Lookups>,
    watcher: Option<CgroupWatcher>,
    counters: Arc<WorkloadCounters>,
    walks_counted: (u64, u64),
}

/// What [`Workloads::identify`] does with a cached entry.
enum Hit {
    Cached(Arc<Workload>),
    V1,
    Miss,
}

impl Workloads {
    /// Opens the system's cgroup v2 hierarchy and starts the runtime
    /// lookups (on the current tokio runtime, which must exist when
    /// `config.lookups` is set). A host with no cgroup2 mount is served
    /// from the v1 paths alone.
    pub fn start(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").map_err(|source| CgroupError::Open {
                path: PathBuf::from("/proc/self/mounts"),
                source,
            })?;
        let has_v1 = !crate::kernel::mounts::mount_points(&mounts, "cgroup").is_empty();
        let cgroups = match CgroupFs::from_mounts(&mounts) {
            Ok(cgroups) => Some(cgroups),
            Err(CgroupError::NoCgroup2) => None,
            Err(error) => return Err(error.into()),
        };
        Ok(Self::with_cgroups(cgroups, has_v1, config))
    }

    /// Uses `cgroups` (or none) as given; `has_v1` says whether v1
    /// hierarchies are mounted.
    pub fn with_cgroups(cgroups: Option<CgroupFs>, has_v1: bool, config: WorkloadConfig) -> Self {
        let cgroups = cgroups.map(|c| {
            if config.file_handles {
                c
            } else {
                c.without_handles()
            }
        });
        let counters = Arc::new(WorkloadCounters::default());
        let lookups = config
            .lookups
            .as_ref()
            .map(|lookup| Lookups::spawn(lookup, Arc::clone(&counters)));
        let watcher = cgroups
            .as_ref()
            .filter(|_| config.watch)
            .and_then(|cgroups| match CgroupWatcher::start(cgroups.root(), Arc::clone(&counters)) {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    tracing::warn!(
                        "cannot watch {} for new cgroups ({error}): a container gone before its records are read is reported by cgroup id only",
                        cgroups.root().display()
                    );
                    None
                }
            });
        Self {
            config,
            cgroups,
            has_v1,
            entries: FxHashMap::default(),
            departed: VecDeque::new(),
            by_container: FxHashMap::default(),
            containers: FxHashMap::default(),
            pids: FxHashMap::default(),
            lookups,
            watcher,
            counters,
            walks_counted: (0, 0),
        }
    }

    /// The counters, shared: the daemon exports them as metrics.
    pub fn counters(&self) -> Arc<WorkloadCounters> {
        Arc::clone(&self.counters)
    }

    /// The cgroup v2 hierarchy, when one is mounted: for `--cgroup`'s
    /// kernel filter ([`CgroupFs::target`]) and for status lines.
    pub fn cgroups(&self) -> Option<&CgroupFs> {
        self.cgroups.as_ref()
    }

    /// How cgroup ids are resolved now; `None` without cgroup v2.
    pub fn resolution(&self) -> Option<Resolution> {
        self.cgroups.as_ref().map(CgroupFs::resolution)
    }

    /// How many cgroups are cached, and how many of them are removed ones.
    pub fn cached(&self) -> (usize, usize) {
        (self.entries.len(), self.departed.len())
    }

    /// The workload of a record from process `pid` in cgroup `cgroup_id`.
    ///
    /// Never waits for a runtime. `pid` matters only on cgroup-v1 and
    /// hybrid hosts, for processes whose v2 cgroup names no workload; a
    /// process that is gone is then identified by its v2 cgroup alone.
    pub fn identify(&mut self, cgroup_id: u64, pid: u32, now: Instant) -> Arc<Workload> {
        let hit = match self.entries.get(&cgroup_id) {
            Some(entry) => match entry.state {
                State::Unresolved { retry_at } if now >= retry_at => Hit::Miss,
                _ if entry.v1_fallback => Hit::V1,
                _ => Hit::Cached(Arc::clone(&entry.workload)),
            },
            None => Hit::Miss,
        };
        match hit {
            Hit::Cached(workload) => workload,
            Hit::V1 => self.identify_v1(cgroup_id, pid, now),
            Hit::Miss => self.miss(cgroup_id, pid, now),
        }
    }

    /// The cached workload of `cgroup_id`, if any; no I/O.
    pub fn peek(&self, cgroup_id: u64) -> Option<&Arc<Workload>> {
        self.entries.get(&cgroup_id).map(|entry| &entry.workload)
    }

    /// Whether a runtime lookup for cgroup `cgroup_id`'s container is under
    /// way; no I/O.
    pub fn is_pending(&self, cgroup_id: u64) -> bool {
        self.peek(cgroup_id).is_some_and(|w| w.is_pending())
    }

    fn miss(&mut self, cgroup_id: u64, pid: u32, now: Instant) -> Arc<Workload> {
        WorkloadCounters::bump(&self.counters.cache_misses);
        self.take_discovered();
        let path = self
            .cgroups
            .as_mut()
            .and_then(|cgroups| cgroups.path_of(cgroup_id, now));
        self.count_walks();
        let (facts, state) = match &path {
            Some(path) => (path::parse(path), State::Live),
            None => {
                // Without cgroup v2 there is nothing to resolve: v1 paths
                // are all there is, and that is not a failure.
                if self.cgroups.is_some() {
                    WorkloadCounters::bump(&self.counters.unresolved_cgroups);
                }
                (
                    PathFacts::default(),
                    State::Unresolved {
                        retry_at: now + self.config.unresolved_retry,
                    },
                )
            }
        };
        let v1_fallback = self.config.v1 && self.has_v1 && !facts.is_workload();
        let workload = self.build(cgroup_id, path, false, &facts, now);
        self.insert(
            cgroup_id,
            Entry {
                workload: Arc::clone(&workload),
                facts,
                state,
                v1_fallback,
            },
        );
        if v1_fallback {
            self.identify_v1(cgroup_id, pid, now)
        } else {
            workload
        }
    }

    /// The workload of a process on a v1 or hybrid host whose v2 cgroup
    /// names none: from its v1 cgroups, while it is alive.
    fn identify_v1(&mut self, cgroup_id: u64, pid: u32, now: Instant) -> Arc<Workload> {
        if let Some(known) = self.pids.get(&pid)
            && known.cgroup_id == cgroup_id
            && now < known.expires
        {
            return Arc::clone(&known.workload);
        }
        WorkloadCounters::bump(&self.counters.v1_reads);
        let v1_path = cgroupfs::v1_cgroups_of(pid)
            .and_then(|cgroups| cgroupfs::workload_v1_path(&cgroups).map(Arc::<str>::from));
        let (workload, facts, path) = match v1_path {
            Some(path) => {
                let facts = path::parse(&path);
                let workload = self.build(cgroup_id, Some(Arc::clone(&path)), true, &facts, now);
                (workload, facts, Some(path))
            }
            // Gone, or in no container: its v2 cgroup is all there is.
            None => match self.entries.get(&cgroup_id) {
                Some(entry) => (Arc::clone(&entry.workload), PathFacts::default(), None),
                None => (
                    Arc::new(Workload::unresolved(cgroup_id)),
                    PathFacts::default(),
                    None,
                ),
            },
        };
        if self.pids.len() >= self.config.max_pids {
            self.pids.retain(|_, entry| now < entry.expires);
            if self.pids.len() >= self.config.max_pids {
                // Still full: make room; the evicted process is read again
                // on its next record.
                if let Some(&victim) = self.pids.keys().next() {
                    self.pids.remove(&victim);
                }
            }
        }
        self.pids.insert(
            pid,
            PidEntry {
                cgroup_id,
                workload: Arc::clone(&workload),
                facts,
                path,
                expires: now + self.config.pid_ttl,
            },
        );
        workload
    }

    /// Builds a workload from its path's facts and what the runtimes said,
    /// queueing a lookup for a container not asked about yet.
    fn build(
        &mut self,
        cgroup_id: u64,
        path: Option<Arc<str>>,
        v1: bool,
        facts: &PathFacts,
        now: Instant,
    ) -> Arc<Workload> {
        let meta = facts
            .container_id
            .as_deref()
            .map(|id| self.meta_for(id, facts, now));
        Arc::new(compose(cgroup_id, path, v1, facts, meta.as_ref()))
    }

    fn meta_for(&mut self, container_id: &str, facts: &PathFacts, now: Instant) -> Meta {
        if let Some(meta) = self.containers.get(container_id)
            && !meta.retry_due(now)
        {
            return meta.clone();
        }
        let key: Arc<str> = Arc::from(container_id);
        let meta = self.request(&key, facts, now);
        self.containers.insert(key, meta.clone());
        meta
    }

    fn request(&self, container_id: &Arc<str>, facts: &PathFacts, now: Instant) -> Meta {
        let retry_at = now + self.config.retry_after;
        let Some(lookups) = &self.lookups else {
            return Meta::Unavailable { retry_at };
        };
        let queued = lookups.request(LookupRequest {
            container_id: Arc::clone(container_id),
            runtime: facts.runtime,
            namespace_hint: facts.namespace_hint.clone(),
        });
        if queued {
            Meta::Pending
        } else {
            Meta::Unavailable {
                retry_at: now + self.config.retry_after.min(Duration::from_secs(1)),
            }
        }
    }

    fn insert(&mut self, cgroup_id: u64, entry: Entry) {
        if !self.entries.contains_key(&cgroup_id) && self.entries.len() >= self.config.max_cgroups {
            self.make_room();
        }
        if let Some(id) = &entry.facts.container_id {
            let cgroups = self.by_container.entry(Arc::from(id.as_str())).or_default();
            if !cgroups.contains(&cgroup_id) {
                cgroups.push(cgroup_id);
            }
        }
        if let Some(old) = self.entries.insert(cgroup_id, entry)
            && old.state == State::Departed
        {
            self.departed.retain(|(id, _)| *id != cgroup_id);
        }
    }

    /// Frees one place: the oldest removed cgroup, else any.
    fn make_room(&mut self) {
        while let Some((id, _)) = self.departed.pop_front() {
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.state == State::Departed)
            {
                self.remove(id);
                WorkloadCounters::bump(&self.counters.departed_evicted);
                return;
            }
        }
        if let Some(&id) = self.entries.keys().next() {
            self.remove(id);
            WorkloadCounters::bump(&self.counters.live_evicted);
        }
    }

    fn remove(&mut self, cgroup_id: u64) {
        let Some(entry) = self.entries.remove(&cgroup_id) else {
            return;
        };
        if let Some(id) = entry.facts.container_id.as_deref()
            && let Some(cgroups) = self.by_container.get_mut(id)
        {
            cgroups.retain(|c| *c != cgroup_id);
            if cgroups.is_empty() {
                self.by_container.remove(id);
            }
        }
    }

    /// Applies every finished runtime lookup; returns how many. Cheap when
    /// there are none: call it once per batch of records.
    pub fn apply_lookups(&mut self, now: Instant) -> usize {
        self.take_discovered();
        let mut applied = 0;
        while let Some(result) = self.lookups.as_mut().and_then(Lookups::try_result) {
            let retry_at = now + self.config.retry_after;
            let meta = match result.outcome {
                LookupOutcome::Found(facts) => Meta::Known(Arc::new(facts)),
                LookupOutcome::NotFound => Meta::NotFound { retry_at },
                LookupOutcome::Unavailable => Meta::Unavailable { retry_at },
            };
            self.set_meta(&result.container_id, meta);
            applied += 1;
        }
        applied
    }

    /// Records what is known of a container and rebuilds every workload
    /// in it.
    fn set_meta(&mut self, container_id: &Arc<str>, meta: Meta) {
        self.containers
            .insert(Arc::clone(container_id), meta.clone());
        let cgroup_ids = self
            .by_container
            .get(container_id)
            .cloned()
            .unwrap_or_default();
        for cgroup_id in cgroup_ids {
            if let Some(entry) = self.entries.get_mut(&cgroup_id) {
                let old = &entry.workload;
                entry.workload = Arc::new(compose(
                    cgroup_id,
                    old.cgroup.clone(),
                    old.cgroup_v1,
                    &entry.facts,
                    Some(&meta),
                ));
            }
        }
        for known in self.pids.values_mut() {
            if known.facts.container_id.as_deref() == Some(&**container_id) {
                known.workload = Arc::new(compose(
                    known.cgroup_id,
                    known.path.clone(),
                    true,
                    &known.facts,
                    Some(&meta),
                ));
            }
        }
    }

    /// Housekeeping, every second or few: notices removed cgroups (they
    /// keep their identity for a while), forgets what is old, and asks
    /// again about containers whose lookup failed.
    pub fn sweep(&mut self, now: Instant) {
        self.take_discovered();
        if let Some(cgroups) = self.cgroups.as_mut() {
            let live: Vec<(u64, Arc<str>)> = self
                .entries
                .iter()
                .filter(|(_, entry)| entry.state == State::Live && !entry.workload.cgroup_v1)
                .filter_map(|(id, entry)| Some((*id, Arc::clone(entry.workload.cgroup.as_ref()?))))
                .collect();
            for (id, path) in live {
                if !cgroups.exists(id, &path)
                    && let Some(entry) = self.entries.get_mut(&id)
                {
                    entry.state = State::Departed;
                    self.departed.push_back((id, now));
                    WorkloadCounters::bump(&self.counters.departed_cgroups);
                }
            }
        }
        self.count_walks();
        while let Some(&(id, since)) = self.departed.front() {
            let expired = now.saturating_duration_since(since) >= self.config.keep_departed;
            let over = self.departed.len() > self.config.max_departed;
            if !expired && !over {
                break;
            }
            self.departed.pop_front();
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.state == State::Departed)
            {
                self.remove(id);
                if !expired {
                    WorkloadCounters::bump(&self.counters.departed_evicted);
                }
            }
        }
        let stale: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Unresolved { retry_at } if now >= retry_at))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.remove(id);
        }
        self.pids.retain(|_, entry| now < entry.expires);
        let by_container = &self.by_container;
        self.containers
            .retain(|id, _| by_container.contains_key(id));
        let due: Vec<Arc<str>> = self
            .containers
            .iter()
            .filter(|(_, meta)| meta.retry_due(now))
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in due {
            let facts = self
                .by_container
                .get(&id)
                .and_then(|cgroups| cgroups.first())
                .and_then(|cgroup| self.entries.get(cgroup))
                .map(|entry| entry.facts.clone())
                .unwrap_or_default();
            let meta = self.request(&id, &facts, now);
            self.set_meta(&id, meta);
        }
    }

    /// Takes the cgroups the watcher saw made.
    fn take_discovered(&mut self) {
        let (Some(watcher), Some(cgroups)) = (&self.watcher, self.cgroups.as_mut()) else {
            return;
        };
        while let Some((id, path)) = watcher.try_found() {
            cgroups.learn(id, path);
            WorkloadCounters::bump(&self.counters.watch_learned);
        }
    }

    fn count_walks(&mut self) {
        let Some(cgroups) = &self.cgroups else {
            return;
        };
        let (walks, truncated) = cgroups.walks();
        let (counted, counted_truncated) = self.walks_counted;
        self.counters
            .cgroup_walks
            .fetch_add(walks - counted, std::sync::atomic::Ordering::Relaxed);
        self.counters.cgroup_walks_truncated.fetch_add(
            truncated - counted_truncated,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.walks_counted = (walks, truncated);
    }
}

/// A workload from its path's facts and the runtime's answer.
fn compose(
    cgroup_id: u64,
    path: Option<Arc<str>>,
    v1: bool,
    facts: &PathFacts,
    meta: Option<&Meta>,
) -> Workload {
    let known = match meta {
        Some(Meta::Known(facts)) => Some(facts.as_ref()),
        _ => None,
    };
    let text = |value: Option<&String>| value.map(|v| Arc::<str>::from(v.as_str()));
    let container = facts.container_id.as_deref().map(|id| Container {
        id: Arc::from(id),
        name: text(known.and_then(|k| k.name.as_ref())),
        image: text(known.and_then(|k| k.image.as_ref())),
        runtime: facts.runtime.or(known.map(|k| k.runtime)),
    });
    let path_uid = facts.pod_uid.as_deref().map(Arc::<str>::from);
    let pod = match (known.and_then(|k| labels::pod_from(&k.labels)), path_uid) {
        (Some(mut pod), uid) => {
            pod.uid = pod.uid.or(uid);
            Some(pod)
        }
        (None, Some(uid)) => Some(Pod {
            name: None,
            namespace: None,
            uid: Some(uid),
            container: None,
        }),
        (None, None) => None,
    };
    Workload {
        cgroup_id,
        cgroup: path,
        cgroup_v1: v1,
        container,
        pod,
        metadata: meta.map_or(Metadata::NotApplicable, Meta::metadata),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c4d5e6b7a8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

    fn facts(path: &str) -> PathFacts {
        path::parse(path)
    }

    #[test]
    fn compose_merges_path_and_runtime() {
        let path = format!("/kubepods/besteffort/pod8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e/{ID}");
        let facts = facts(&path);
        let known = Meta::Known(Arc::new(ContainerFacts {
            name: Some("api".to_owned()),
            image: Some("registry.example/api:1".to_owned()),
            labels: [
                (labels::POD_NAME, "api-7d9f"),
                (labels::POD_NAMESPACE, "shop"),
                (labels::CONTAINER_NAME, "api"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            runtime: super::super::Runtime::Containerd,
        }));
        let workload = compose(
            9,
            Some(Arc::from(path.as_str())),
            false,
            &facts,
            Some(&known),
        );
        let container = workload.container.expect("a container");
        assert_eq!(&*container.id, ID);
        assert_eq!(container.name.as_deref(), Some("api"));
        assert_eq!(container.runtime, Some(super::super::Runtime::Containerd));
        let pod = workload.pod.expect("a pod");
        assert_eq!(pod.name.as_deref(), Some("api-7d9f"));
        assert_eq!(pod.namespace.as_deref(), Some("shop"));
        // The label has no uid here; the path's is used.
        assert_eq!(
            pod.uid.as_deref(),
            Some("8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e")
        );
        assert_eq!(workload.metadata, Metadata::Known);

        let pending = compose(9, None, false, &facts, Some(&Meta::Pending));
        assert!(pending.is_pending());
        assert_eq!(pending.container.and_then(|c| c.name), None);
        assert_eq!(
            pending.pod.and_then(|p| p.uid).as_deref(),
            Some("8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e")
        );
    }

    #[test]
    fn workloads_can_move_to_another_task() {
        fn send<T: Send>() {}
        send::<Workloads>();
        send::<Arc<Workload>>();
    }

    #[test]
    fn host_cgroups_need_no_lookup() {
        let workload = compose(1, Some(Arc::from("/")), false, &facts("/"), None);
        assert_eq!(workload.metadata, Metadata::NotApplicable);
        assert_eq!((workload.container, workload.pod), (None, None));
    }
}
