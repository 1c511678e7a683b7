//! Reading container ids, runtimes and pod uids out of cgroup paths.
//!
//! Container runtimes name each container's cgroup after the container, in
//! a few well-known patterns. This module knows them; it does no I/O.
//!
//! | runtime | systemd cgroup driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `/system.slice/docker-<id>.scope` | `/docker/<id>` |
//! | containerd (CRI) | `…/cri-containerd-<id>.scope` | `/kubepods/<qos>/pod<uid>/<id>` |
//! | CRI-O | `…/crio-<id>.scope` | `…/pod<uid>/crio-<id>` |
//! | Podman | `/machine.slice/libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//!
//! Kubernetes puts every pod in `kubepods`: with the systemd driver as
//! `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice`,
//! where the uid's dashes are written as underscores, and with the cgroupfs
//! driver as `/kubepods/<qos>/pod<uid>`. Guaranteed pods have no `<qos>`
//! level. Some distributions prefix the slice names (`kubelet-kubepods-…`).
//!
//! A container id is 64 hex digits, as every one of these runtimes makes
//! them. The monitor processes of CRI-O and Podman (`crio-conmon-<id>`,
//! `libpod-conmon-<id>`) are not the container and are not reported as it.
//! When several components name a container (a container inside a
//! container), the innermost one is reported.

use super::Runtime;

/// What a cgroup path says about the workload in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFacts {
    /// The container's full id.
    pub container_id: Option<String>,
    /// The runtime, when the path's pattern names it. A bare id (the
    /// cgroupfs layout of Kubernetes, or a path made by a plain runtime)
    /// does not.
    pub runtime: Option<Runtime>,
    /// The pod's uid, with dashes.
    pub pod_uid: Option<String>,
    /// For a bare id directly under one directory (`/<ns>/<id>`, the layout
    /// containerd's `ctr` uses), that directory: it is usually the
    /// containerd namespace, so it is asked first.
    pub namespace_hint: Option<String>,
}

impl PathFacts {
    /// Whether the path names a container or a pod.
    pub fn is_workload(&self) -> bool {
        self.container_id.is_some() || self.pod_uid.is_some()
    }
}

/// Systemd unit prefixes that name a container, with their runtime.
const SCOPE_PREFIXES: [(&str, Runtime); 4] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

/// Reads what `path` (a cgroup path such as `/docker/<id>`, relative to the
/// root of its hierarchy) says about the workload in it.
pub fn parse(path: &str) -> PathFacts {
    let mut facts = PathFacts::default();
    let mut in_kubepods = false;
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (index, component) in components.iter().enumerate() {
        let unit = strip_unit_suffix(component);
        if is_kubepods(unit) {
            in_kubepods = true;
        }
        if in_kubepods && let Some(uid) = pod_uid(unit) {
            // A pod's uid starts a new pod: whatever container was seen
            // above it was the node's, not this pod's.
            facts = PathFacts {
                pod_uid: Some(uid),
                ..PathFacts::default()
            };
            continue;
        }
        if let Some((id, runtime)) = container_in(unit) {
            let parent = index
                .checked_sub(1)
                .and_then(|i| components.get(i))
                .copied();
            let runtime = runtime.or_else(|| (parent == Some("docker")).then_some(Runtime::Docker));
            let namespace_hint = (index == 1 && runtime.is_none() && !in_kubepods)
                .then(|| parent.map(str::to_owned))
                .flatten();
            facts.container_id = Some(id.to_owned());
            facts.runtime = runtime;
            facts.namespace_hint = namespace_hint;
        }
    }
    facts
}

/// A component without its systemd unit suffix (`.scope`, `.slice`).
fn strip_unit_suffix(component: &str) -> &str {
    component
        .strip_suffix(".scope")
        .or_else(|| component.strip_suffix(".slice"))
        .unwrap_or(component)
}

/// `kubepods`, `kubepods-burstable`, `kubelet-kubepods-besteffort`, ...
fn is_kubepods(unit: &str) -> bool {
    unit == "kubepods"
        || unit.starts_with("kubepods-")
        || unit.split('-').take(2).any(|part| part == "kubepods")
}

/// The pod uid in `pod<uid>` (cgroupfs) or `…-pod<uid_with_underscores>`
/// (systemd), with dashes.
fn pod_uid(unit: &str) -> Option<String> {
    let raw = if let Some(raw) = unit.strip_prefix("pod") {
        raw
    } else {
        let at = unit.rfind("-pod")?;
        unit.get(at + "-pod".len()..)?
    };
    let uid = raw.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A UUID (8-4-4-4-12 hex digits), or the 32 hex digits of a static pod's
/// config hash.
fn is_pod_uid(uid: &str) -> bool {
    let hex = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = uid.split('-').collect();
    match parts.as_slice() {
        [whole] => whole.len() == 32 && hex(whole),
        [a, b, c, d, e] => [(a, 8), (b, 4), (c, 4), (d, 4), (e, 12)]
            .iter()
            .all(|(part, len)| part.len() == *len && hex(part)),
        _ => false,
    }
}

/// The container id a component names, with the runtime when its pattern
/// names one.
fn container_in(unit: &str) -> Option<(&str, Option<Runtime>)> {
    if is_container_id(unit) {
        return Some((unit, None));
    }
    SCOPE_PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = unit.strip_prefix(prefix)?;
        is_container_id(id).then_some((id, Some(*runtime)))
    })
}

/// 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ID: &str = "3f2a9c4d5e6b7a8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e";
    const UID_: &str = "8d2c6b1e_4f3a_4b5c_9d8e_7f6a5b4c3d2e";

    fn container(id: &str, runtime: Option<Runtime>) -> PathFacts {
        PathFacts {
            container_id: Some(id.to_owned()),
            runtime,
            ..PathFacts::default()
        }
    }

    fn in_pod(id: Option<&str>, runtime: Option<Runtime>) -> PathFacts {
        PathFacts {
            container_id: id.map(str::to_owned),
            runtime,
            pod_uid: Some(UID.to_owned()),
            namespace_hint: None,
        }
    }

    #[test]
    fn docker_cgroupfs_and_systemd() {
        assert_eq!(
            parse(&format!("/docker/{ID}")),
            container(ID, Some(Runtime::Docker))
        );
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")),
            container(ID, Some(Runtime::Docker))
        );
        // A container that made cgroups of its own below its cgroup.
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope/init.scope")),
            container(ID, Some(Runtime::Docker))
        );
        assert_eq!(
            parse(&format!("/docker/{ID}/system.slice/nginx.service")),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn containerd_crio_and_podman_scopes() {
        for (prefix, runtime) in SCOPE_PREFIXES {
            assert_eq!(
                parse(&format!("/system.slice/{prefix}{ID}.scope")),
                container(ID, Some(runtime)),
                "{prefix}"
            );
        }
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope/container")),
            container(ID, Some(Runtime::Podman))
        );
        assert_eq!(
            parse(&format!("/libpod_parent/libpod-{ID}")),
            container(ID, Some(Runtime::Podman))
        );
        assert_eq!(
            parse(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            container(ID, Some(Runtime::Podman))
        );
    }

    #[test]
    fn monitor_processes_are_not_the_container() {
        assert_eq!(
            parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            PathFacts::default()
        );
        assert_eq!(
            parse(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope"
            )),
            in_pod(None, None)
        );
    }

    #[test]
    fn plain_containerd_names_its_namespace() {
        assert_eq!(
            parse(&format!("/k8s.io/{ID}")),
            PathFacts {
                namespace_hint: Some("k8s.io".to_owned()),
                ..container(ID, None)
            }
        );
        assert_eq!(
            parse(&format!("/default/{ID}")).namespace_hint.as_deref(),
            Some("default")
        );
        // Deeper, the parent is not taken for a namespace.
        assert_eq!(parse(&format!("/a/b/{ID}")), container(ID, None));
    }

    #[test]
    fn kubernetes_systemd_driver() {
        for qos in ["burstable", "besteffort"] {
            let pod =
                format!("/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{UID_}.slice");
            assert_eq!(parse(&pod), in_pod(None, None), "{pod}");
            assert_eq!(
                parse(&format!("{pod}/cri-containerd-{ID}.scope")),
                in_pod(Some(ID), Some(Runtime::Containerd))
            );
            assert_eq!(
                parse(&format!("{pod}/crio-{ID}.scope")),
                in_pod(Some(ID), Some(Runtime::CriO))
            );
            assert_eq!(
                parse(&format!("{pod}/docker-{ID}.scope")),
                in_pod(Some(ID), Some(Runtime::Docker))
            );
        }
        // Guaranteed pods have no QoS level.
        assert_eq!(
            parse(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
            )),
            in_pod(Some(ID), Some(Runtime::Containerd))
        );
        // kind and some distributions nest the kubelet's slices.
        assert_eq!(
            parse(&format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            )),
            in_pod(Some(ID), Some(Runtime::Containerd))
        );
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        for qos in ["/burstable", "/besteffort", ""] {
            let pod = format!("/kubepods{qos}/pod{UID}");
            assert_eq!(parse(&pod), in_pod(None, None), "{pod}");
            assert_eq!(parse(&format!("{pod}/{ID}")), in_pod(Some(ID), None));
            assert_eq!(
                parse(&format!("{pod}/crio-{ID}")),
                in_pod(Some(ID), Some(Runtime::CriO))
            );
        }
        // k3s and others put kubepods below a node-level cgroup.
        assert_eq!(
            parse(&format!("/kubelet/kubepods/burstable/pod{UID}/{ID}")),
            in_pod(Some(ID), None)
        );
    }

    #[test]
    fn static_pods_have_a_hash_for_uid() {
        let hash = "e3b0c44298fc1c149afbf4c8996fb924";
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{hash}/{ID}"))
                .pod_uid
                .as_deref(),
            Some(hash)
        );
    }

    #[test]
    fn a_kubernetes_node_inside_a_container() {
        // kind: the node is a Docker container, its pods are inside it.
        let facts = parse(&format!(
            "/docker/{ID2}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(facts, in_pod(Some(ID), Some(Runtime::Containerd)));
        // A node container's own cgroup, outside any pod.
        assert_eq!(
            parse(&format!("/docker/{ID2}/kubelet.slice")),
            container(ID2, Some(Runtime::Docker))
        );
        // Docker in Docker: the innermost container.
        assert_eq!(
            parse(&format!("/docker/{ID2}/docker/{ID}")),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn host_cgroups_are_no_workload() {
        for path in [
            "/",
            "",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/init.scope",
            "/process_api/8101359843653ee3da441cfdeb2bacdd",
            "/kubepods",
            "/kubepods.slice/kubepods-burstable.slice",
            // Not an id: wrong length, upper case, not hex.
            "/docker/3f2a9c4d5e6b",
            &format!("/docker/{}", ID.to_uppercase()),
            &format!("/docker/{}g", &ID[..63]),
            // "pod" outside kubepods is not a pod.
            &format!("/system.slice/pod{UID}"),
            // A malformed uid.
            "/kubepods/burstable/pod8d2c6b1e-4f3a",
        ] {
            let facts = parse(path);
            assert!(!facts.is_workload(), "{path}: {facts:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_ids_are_well_formed(path in "(/[a-z0-9_.@-]{0,70}){0,8}") {
            let facts = parse(&path);
            if let Some(id) = &facts.container_id {
                prop_assert!(is_container_id(id));
                prop_assert!(path.contains(id.as_str()));
            }
            if let Some(uid) = &facts.pod_uid {
                prop_assert!(is_pod_uid(uid));
            }
        }

        #[test]
        fn any_64_hex_id_is_found_in_every_layout(id in "[0-9a-f]{64}") {
            for path in [
                format!("/docker/{id}"),
                format!("/system.slice/docker-{id}.scope"),
                format!("/kubepods/besteffort/pod{UID}/{id}"),
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{id}.scope"),
            ] {
                let facts = parse(&path);
                prop_assert_eq!(facts.container_id.as_deref(), Some(id.as_str()));
            }
        }
    }
}
