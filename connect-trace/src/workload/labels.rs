//! Kubernetes' CRI labels: pod facts without the API server.
//!
//! The kubelet's container runtime interface writes the pod's name,
//! namespace and uid, and the container's name, as labels on every
//! container it creates, in every runtime (containerd's CRI plugin, CRI-O,
//! cri-dockerd). Reading them needs only the runtime's socket.

use std::{collections::HashMap, sync::Arc};

use super::Pod;

/// The pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod's uid.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// The container's name within the pod; absent on the pod's sandbox.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// The pod that a container's labels describe, or `None` when they carry
/// none of the CRI's pod labels.
pub fn pod_from(labels: &HashMap<String, String>) -> Option<Pod> {
    let get = |key: &str| {
        labels
            .get(key)
            .filter(|value| !value.is_empty())
            .map(|value| Arc::<str>::from(value.as_str()))
    };
    let pod = Pod {
        name: get(POD_NAME),
        namespace: get(POD_NAMESPACE),
        uid: get(POD_UID),
        container: get(CONTAINER_NAME),
    };
    (pod.name.is_some() || pod.namespace.is_some() || pod.uid.is_some()).then_some(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn all_four_labels() {
        let pod = pod_from(&labels(&[
            (POD_NAME, "api-7d9f"),
            (POD_NAMESPACE, "shop"),
            (POD_UID, "8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e"),
            (CONTAINER_NAME, "api"),
            ("io.cri-containerd.kind", "container"),
        ]))
        .expect("a pod");
        assert_eq!(pod.name.as_deref(), Some("api-7d9f"));
        assert_eq!(pod.namespace.as_deref(), Some("shop"));
        assert_eq!(
            pod.uid.as_deref(),
            Some("8d2c6b1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e")
        );
        assert_eq!(pod.container.as_deref(), Some("api"));
    }

    #[test]
    fn a_sandbox_has_no_container_name() {
        let pod = pod_from(&labels(&[
            (POD_NAME, "api-7d9f"),
            (POD_NAMESPACE, "shop"),
            ("io.cri-containerd.kind", "sandbox"),
        ]))
        .expect("a pod");
        assert_eq!(pod.container, None);
        assert_eq!(pod.uid, None);
    }

    #[test]
    fn no_pod_labels_no_pod() {
        assert_eq!(pod_from(&labels(&[])), None);
        assert_eq!(
            pod_from(&labels(&[("maintainer", "x"), (CONTAINER_NAME, "c")])),
            None
        );
        assert_eq!(pod_from(&labels(&[(POD_NAME, "")])), None);
    }
}
