//! Which workload made a connect(): its cgroup, container and Kubernetes pod.
//!
//! The kernel record carries the caller's cgroup v2 id. From it:
//! - [`cgroupfs`] finds the cgroup's path (by file handle, or by walking the
//!   cgroup v2 tree), and on cgroup-v1 and hybrid hosts also reads the v1
//!   paths of a process that is still alive; [`watch`] learns each new
//!   cgroup's path the moment it is made, so that a container gone before
//!   its records are read is still named;
//! - [`path`] reads the container id, the runtime and the pod uid out of
//!   that path, with no I/O;
//! - [`lookup`] asks the container runtimes ([`docker`], [`containerd`])
//!   for names, images and labels in the background, and [`labels`] turns
//!   Kubernetes' CRI labels into a [`Pod`];
//! - [`Workloads`] ties them together for the per-event path: a cache hit
//!   is one hash lookup and a reference count (see its docs for the cost),
//!   and a miss never waits for a runtime;
//! - [`filter`] matches workloads against `--container`, `--pod`,
//!   `--namespace` and `--cgroup`; [`hold`] keeps records of a workload
//!   whose lookup is under way for a short, bounded time;
//! - [`status`] says which runtimes are reachable, for `connect-trace check`.
//!
//! docs/containers.md describes what is reported and where each fact comes
//! from.

pub mod cgroupfs;
pub mod containerd;
pub mod counters;
pub mod docker;
pub mod filter;
pub mod hold;
pub mod labels;
pub mod lookup;
pub mod path;
pub mod status;
pub mod watch;
mod workloads;

use std::{fmt, sync::Arc};

use serde::Serialize;

pub use counters::{WorkloadCounters, WorkloadCountersSnapshot};
pub use workloads::{WorkloadConfig, WorkloadError, Workloads};

/// The container runtime that runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// Docker Engine (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd, directly or through its CRI plugin
    /// (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// Podman (`libpod-<id>.scope`).
    Podman,
}

impl Runtime {
    /// The name used in records, as OpenTelemetry's `container.runtime.name`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A container, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The full container id (64 hex digits), from the cgroup path;
    /// OpenTelemetry's `container.id`.
    pub id: Arc<str>,
    /// Its name: Docker's container name, or for a container of a pod the
    /// Kubernetes container name; `container.name`.
    pub name: Option<Arc<str>>,
    /// The image it was started from, as the runtime names it;
    /// `container.image.name`.
    pub image: Option<Arc<str>>,
    /// The runtime that runs it, from the cgroup path or else from the
    /// runtime that knew it; `container.runtime.name`.
    pub runtime: Option<Runtime>,
}

/// The Kubernetes pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// The pod's name (`io.kubernetes.pod.name`); `k8s.pod.name`.
    pub name: Option<Arc<str>>,
    /// The pod's namespace (`io.kubernetes.pod.namespace`);
    /// `k8s.namespace.name`.
    pub namespace: Option<Arc<str>>,
    /// The pod's uid, from the cgroup path or the `io.kubernetes.pod.uid`
    /// label; `k8s.pod.uid`.
    pub uid: Option<Arc<str>>,
    /// The container's name within the pod
    /// (`io.kubernetes.container.name`); `k8s.container.name`. `None` for
    /// the pod's sandbox and for the pod's own cgroup.
    pub container: Option<Arc<str>>,
}

/// How far the runtime metadata (names, image, pod) of a workload is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metadata {
    /// Not a container: there is nothing to look up.
    NotApplicable,
    /// A runtime lookup is under way; ids are known, names are not yet.
    Pending,
    /// A runtime answered.
    Known,
    /// Every runtime that could be asked said it does not know the
    /// container (another runtime, or it is gone).
    NotFound,
    /// No runtime could be asked (missing socket, failing or slow); the
    /// lookup is tried again later.
    Unavailable,
}

/// Who made a connect(): the workload behind a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The cgroup v2 id from the kernel record.
    pub cgroup_id: u64,
    /// The cgroup's path, relative to the root of its hierarchy (`/` is the
    /// root): the v2 path, or the v1 path a container was found in when
    /// the v2 cgroup says nothing (see [`Workload::cgroup_v1`]). `None`
    /// when the id could not be resolved (a cgroup gone before it was
    /// seen).
    pub cgroup: Option<Arc<str>>,
    /// Whether `cgroup` is a v1 path, read from `/proc/PID/cgroup` on a
    /// cgroup-v1 or hybrid host.
    #[serde(skip)]
    pub cgroup_v1: bool,
    /// The container, when the path names one.
    pub container: Option<Container>,
    /// The pod, when the path is under `kubepods`.
    pub pod: Option<Pod>,
    /// How far the runtime metadata is known.
    #[serde(skip)]
    pub metadata: Metadata,
}

impl Workload {
    /// A workload whose cgroup is not known.
    pub const fn unresolved(cgroup_id: u64) -> Self {
        Self {
            cgroup_id,
            cgroup: None,
            cgroup_v1: false,
            container: None,
            pod: None,
            metadata: Metadata::NotApplicable,
        }
    }

    /// Whether a runtime lookup for it is under way.
    pub fn is_pending(&self) -> bool {
        self.metadata == Metadata::Pending
    }
}
