//! Keeping only the records of one workload: `--container`, `--pod`,
//! `--namespace` and `--cgroup`.
//!
//! A filter on ids or paths is decided from the cgroup alone. A filter on
//! names (a container name, a pod, a namespace) needs the runtime's answer:
//! while the lookup is under way the answer is [`Verdict::Unknown`], and the
//! daemon decides whether to wait for it ([`super::hold`]) or to let the
//! record go. `--cgroup` can also run in the kernel: [`kernel_target`]
//! gives the id and depth to compare with the caller's ancestor cgroup.

use std::{collections::BTreeSet, str::FromStr, sync::Arc};

use thiserror::Error;

use super::{
    Metadata, Workload,
    cgroupfs::{CgroupError, CgroupFs, CgroupTarget},
};

/// Whether a workload passes a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It passes.
    Match,
    /// It does not.
    NoMatch,
    /// Not known until the runtime answers (the lookup is pending).
    Unknown,
}

impl Verdict {
    fn from_bool(matched: bool) -> Self {
        if matched { Self::Match } else { Self::NoMatch }
    }
}

/// A filter given on the command line that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    /// An empty value.
    #[error("{0} needs a value")]
    Empty(&'static str),
    /// `--pod` without `NAMESPACE/NAME`.
    #[error("--pod takes NAMESPACE/NAME, not {0:?}")]
    Pod(String),
    /// `--cgroup` is not a path.
    #[error("--cgroup takes a cgroup path such as /docker/<id>, not {0:?}")]
    Cgroup(String),
}

/// One workload filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadFilter {
    /// `--container ID|NAME`: a full container id, a prefix of one, or a
    /// container's name (Docker's name, or a pod's container name).
    Container(ContainerFilter),
    /// `--pod NAMESPACE/NAME`.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
    /// `--namespace NS`: every pod in this Kubernetes namespace.
    Namespace(String),
    /// `--cgroup PATH`: this cgroup and everything below it.
    Cgroup(String),
}

impl WorkloadFilter {
    /// `--container ID|NAME`.
    pub fn container(text: &str) -> Result<Self, FilterError> {
        let text = text.trim().trim_start_matches('/');
        if text.is_empty() {
            return Err(FilterError::Empty("--container"));
        }
        Ok(Self::Container(ContainerFilter::new(text)))
    }

    /// `--pod NAMESPACE/NAME`.
    pub fn pod(text: &str) -> Result<Self, FilterError> {
        match text.trim().split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self::Pod {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(FilterError::Pod(text.to_owned())),
        }
    }

    /// `--namespace NS`.
    pub fn namespace(text: &str) -> Result<Self, FilterError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FilterError::Empty("--namespace"));
        }
        Ok(Self::Namespace(text.to_owned()))
    }

    /// `--cgroup PATH`, relative to the cgroup v2 root (`/docker/<id>`);
    /// a trailing `/` is ignored.
    pub fn cgroup(text: &str) -> Result<Self, FilterError> {
        let path = text.trim();
        if !path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
            return Err(FilterError::Cgroup(text.to_owned()));
        }
        let path = path.trim_end_matches('/');
        Ok(Self::Cgroup(if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }))
    }

    /// Whether `workload` passes.
    pub fn check(&mut self, workload: &Workload) -> Verdict {
        let pending = workload.metadata == Metadata::Pending;
        match self {
            Self::Container(filter) => filter.check(workload),
            Self::Pod { namespace, name } => {
                let pod = workload.pod.as_ref();
                let matched = pod.is_some_and(|pod| {
                    pod.namespace.as_deref() == Some(namespace.as_str())
                        && pod.name.as_deref() == Some(name.as_str())
                });
                names_verdict(matched, pending)
            }
            Self::Namespace(namespace) => {
                let matched = workload
                    .pod
                    .as_ref()
                    .is_some_and(|pod| pod.namespace.as_deref() == Some(namespace.as_str()));
                names_verdict(matched, pending)
            }
            Self::Cgroup(path) => Verdict::from_bool(
                !workload.cgroup_v1
                    && workload
                        .cgroup
                        .as_deref()
                        .is_some_and(|cgroup| is_within(cgroup, path)),
            ),
        }
    }
}

impl FromStr for WorkloadFilter {
    type Err = FilterError;

    /// `container=ID|NAME`, `pod=NS/NAME`, `namespace=NS` or `cgroup=PATH`,
    /// for configuration files and tests.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some(("container", value)) => Self::container(value),
            Some(("pod", value)) => Self::pod(value),
            Some(("namespace", value)) => Self::namespace(value),
            Some(("cgroup", value)) => Self::cgroup(value),
            _ => Err(FilterError::Empty(
                "a filter kind (container=, pod=, namespace=, cgroup=)",
            )),
        }
    }
}

/// A name can only be ruled out once the runtime answered.
fn names_verdict(matched: bool, pending: bool) -> Verdict {
    match (matched, pending) {
        (true, _) => Verdict::Match,
        (false, true) => Verdict::Unknown,
        (false, false) => Verdict::NoMatch,
    }
}

/// Whether cgroup `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `--container`: an id, a prefix of one, or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFilter {
    text: String,
    /// Whether the text can be an id prefix (hex only).
    hex: bool,
    /// Distinct container ids it matched by prefix: more than one means
    /// the prefix was ambiguous.
    prefix_matches: BTreeSet<Arc<str>>,
}

impl ContainerFilter {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            hex: text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            prefix_matches: BTreeSet::new(),
        }
    }

    /// The containers the text matched as an id prefix, when it matched
    /// more than one: the daemon should warn that the prefix is ambiguous
    /// (both are kept; nothing is dropped on a guess).
    pub fn ambiguous(&self) -> Option<Vec<&str>> {
        (self.prefix_matches.len() > 1)
            .then(|| self.prefix_matches.iter().map(|id| &**id).collect())
    }

    fn check(&mut self, workload: &Workload) -> Verdict {
        let Some(container) = &workload.container else {
            return Verdict::NoMatch;
        };
        if self.hex && container.id.starts_with(self.text.as_str()) {
            if container.id.len() != self.text.len() {
                self.prefix_matches.insert(Arc::clone(&container.id));
            }
            return Verdict::Match;
        }
        let named = container.name.as_deref() == Some(self.text.as_str())
            || workload
                .pod
                .as_ref()
                .and_then(|pod| pod.container.as_deref())
                == Some(self.text.as_str());
        names_verdict(named, workload.metadata == Metadata::Pending)
    }
}

/// The cgroup v2 directory `--cgroup PATH` names, for filtering in the
/// kernel: PATH relative to the v2 root, or absolute under its mount
/// point.
pub fn kernel_target(cgroups: &CgroupFs, path: &str) -> Result<CgroupTarget, CgroupError> {
    cgroups.target(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Container, Pod, Runtime};

    const ID: &str = "3f2a9c4d5e6b7a8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    const ID2: &str = "3f2a0000000000000000000000000000000000000000000000000000000000ff";

    fn workload(id: &str, name: Option<&str>, metadata: Metadata) -> Workload {
        Workload {
            cgroup_id: 42,
            cgroup: Some(Arc::from(format!("/docker/{id}").as_str())),
            cgroup_v1: false,
            container: Some(Container {
                id: Arc::from(id),
                name: name.map(Arc::from),
                image: None,
                runtime: Some(Runtime::Docker),
            }),
            pod: None,
            metadata,
        }
    }

    fn in_pod(namespace: &str, name: &str, container: &str) -> Workload {
        Workload {
            pod: Some(Pod {
                name: Some(Arc::from(name)),
                namespace: Some(Arc::from(namespace)),
                uid: None,
                container: Some(Arc::from(container)),
            }),
            ..workload(ID, Some(container), Metadata::Known)
        }
    }

    #[test]
    fn container_by_id_prefix_or_name() {
        let web = workload(ID, Some("web"), Metadata::Known);
        for text in [ID, "3f2a9c", "web", "/web"] {
            let mut filter = WorkloadFilter::container(text).expect("valid");
            assert_eq!(filter.check(&web), Verdict::Match, "{text}");
        }
        for text in ["3f2b", "webs", "we"] {
            let mut filter = WorkloadFilter::container(text).expect("valid");
            assert_eq!(filter.check(&web), Verdict::NoMatch, "{text}");
        }
        assert_eq!(
            WorkloadFilter::container(" ").unwrap_err(),
            FilterError::Empty("--container")
        );
    }

    #[test]
    fn a_name_is_unknown_until_the_runtime_answers() {
        let mut filter = WorkloadFilter::container("web").expect("valid");
        assert_eq!(
            filter.check(&workload(ID, None, Metadata::Pending)),
            Verdict::Unknown
        );
        assert_eq!(
            filter.check(&workload(ID, None, Metadata::Unavailable)),
            Verdict::NoMatch
        );
        // An id prefix needs no runtime.
        let mut filter = WorkloadFilter::container("3f2a9c").expect("valid");
        assert_eq!(
            filter.check(&workload(ID, None, Metadata::Pending)),
            Verdict::Match
        );
    }

    #[test]
    fn an_ambiguous_prefix_keeps_both_and_says_so() {
        let WorkloadFilter::Container(mut filter) =
            WorkloadFilter::container("3f2a").expect("valid")
        else {
            unreachable!("a container filter");
        };
        assert_eq!(
            filter.check(&workload(ID, None, Metadata::Known)),
            Verdict::Match
        );
        assert_eq!(filter.ambiguous(), None);
        assert_eq!(
            filter.check(&workload(ID2, None, Metadata::Known)),
            Verdict::Match
        );
        assert_eq!(filter.ambiguous(), Some(vec![ID2, ID]));
    }

    #[test]
    fn pod_and_namespace() {
        let api = in_pod("shop", "api-7d9f", "api");
        let mut pod = WorkloadFilter::pod("shop/api-7d9f").expect("valid");
        assert_eq!(pod.check(&api), Verdict::Match);
        assert_eq!(
            WorkloadFilter::pod("shop/other")
                .expect("valid")
                .check(&api),
            Verdict::NoMatch
        );
        assert_eq!(
            WorkloadFilter::namespace("shop")
                .expect("valid")
                .check(&api),
            Verdict::Match
        );
        assert_eq!(
            WorkloadFilter::namespace("dev").expect("valid").check(&api),
            Verdict::NoMatch
        );
        // A pod's container name works for --container too.
        assert_eq!(
            WorkloadFilter::container("api").expect("valid").check(&api),
            Verdict::Match
        );
        for bad in ["shop", "/api", "shop/", "a/b/c"] {
            assert!(WorkloadFilter::pod(bad).is_err(), "{bad}");
        }
        // Not a container at all.
        let host = Workload::unresolved(1);
        assert_eq!(pod.check(&host), Verdict::NoMatch);
    }

    #[test]
    fn cgroup_is_a_subtree() {
        let web = workload(ID, None, Metadata::Known);
        let check = |path: &str| WorkloadFilter::cgroup(path).expect("valid").check(&web);
        assert_eq!(check("/docker"), Verdict::Match);
        assert_eq!(check("/docker/"), Verdict::Match);
        assert_eq!(check(&format!("/docker/{ID}")), Verdict::Match);
        assert_eq!(check("/"), Verdict::Match);
        assert_eq!(check("/dock"), Verdict::NoMatch);
        assert_eq!(check("/system.slice"), Verdict::NoMatch);
        assert!(WorkloadFilter::cgroup("docker").is_err());
        assert!(WorkloadFilter::cgroup("/docker/../x").is_err());
        assert_eq!(
            "cgroup=/docker/".parse::<WorkloadFilter>(),
            Ok(WorkloadFilter::Cgroup("/docker".to_owned()))
        );
    }
}
