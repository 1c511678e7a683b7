//! What the kubelet and containerd's CRI plugin would make of the
//! DaemonSet's container, as `ctr run` arguments: the same capabilities,
//! seccomp profile, user, read-only root, host paths, namespaces, resource
//! limits, arguments and environment.
//!
//! What stays different: the kubelet's own files (`/etc/hosts`,
//! `/etc/resolv.conf`, `/dev/termination-log`) are not mounted, and the
//! pod's cgroup is containerd's default rather than under `kubepods`.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
};

use super::{
    engine::Engine,
    manifest::{self, ConfigMap, Container, DaemonSet, PodSpec},
};

/// A pod's network namespace, as the kubelet's sandbox holds it: made with
/// `ip netns`, loopback up (the CNI loopback plugin does that), removed on
/// drop.
pub struct PodNetwork {
    pub name: String,
}

impl PodNetwork {
    pub fn new() -> Self {
        let name = format!("ct-k8s-{}", std::process::id());
        let run = |args: &[&str]| {
            let status = std::process::Command::new("ip").args(args).status();
            assert!(status.is_ok_and(|s| s.success()), "ip {args:?}");
        };
        run(&["netns", "add", &name]);
        let network = Self { name };
        run(&["-n", &network.name, "link", "set", "lo", "up"]);
        network
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// The DaemonSet's container turned into a `ctr run`.
pub struct CtrRun {
    /// Everything between `ctr run` and the image.
    pub options: Vec<OsString>,
    /// The process's arguments: what Kubernetes would run.
    pub argv: Vec<String>,
    /// Capabilities the container must hold (bounding set), `CAP_` names.
    pub capabilities: BTreeSet<String>,
    /// `NAME=value` pairs given to the container.
    pub env: Vec<String>,
    /// Where the container sees each volume, and whether read-only.
    pub mounts: Vec<(String, bool)>,
}

/// Image settings the kubelet combines with the container's.
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: String,
}

/// The node the pod lands on, as far as the kubelet's choices go.
pub struct Node<'a> {
    /// Runs the containers; its socket is the node's runtime socket.
    pub engine: &'a Engine,
    /// The node's name, for the downward API.
    pub name: String,
    /// The pod's network namespace.
    pub network: &'a PodNetwork,
    /// Where configMap volumes are written.
    pub files: PathBuf,
    /// Where ctr writes the container's pid.
    pub pid_file: PathBuf,
}

/// Translates the DaemonSet's only container, the way the kubelet would.
pub fn translate(
    daemon_set: &DaemonSet,
    config_maps: &[ConfigMap],
    image: &ImageConfig,
    node: &Node<'_>,
) -> CtrRun {
    let pod: &PodSpec = &daemon_set.spec.template.spec;
    assert_eq!(pod.containers.len(), 1, "one container per pod");
    let container: &Container = &pod.containers[0];
    let security = &container.security_context;
    let mut options: Vec<OsString> = Vec::new();
    let mut push = |option: &str, value: Option<&str>| {
        options.push(option.into());
        if let Some(value) = value {
            options.push(value.into());
        }
    };

    assert_ne!(
        security.privileged,
        Some(true),
        "the DaemonSet must not be privileged"
    );

    // Capabilities: containerd starts from its default set, so dropping ALL
    // means naming each one (ctr's CAP_ALL does not).
    let added: BTreeSet<String> = security
        .capabilities
        .add
        .iter()
        .map(|name| format!("CAP_{name}"))
        .collect();
    let every: BTreeSet<String> = caps::all().iter().map(ToString::to_string).collect();
    let dropped: BTreeSet<String> = if security.capabilities.drop.iter().any(|c| c == "ALL") {
        every.difference(&added).cloned().collect()
    } else {
        security
            .capabilities
            .drop
            .iter()
            .map(|name| format!("CAP_{name}"))
            .collect()
    };
    for capability in &dropped {
        push("--cap-drop", Some(capability));
    }
    for capability in &added {
        assert!(
            every.contains(capability),
            "unknown capability {capability}"
        );
        push("--cap-add", Some(capability));
    }
    assert!(
        security.capabilities.drop.iter().any(|c| c == "ALL"),
        "the test knows containerd's default capabilities only as `drop: [ALL]`"
    );

    // No new privileges unless escalation is allowed; Kubernetes allows it
    // when the field is unset.
    if security.allow_privilege_escalation != Some(false) {
        push("--allow-new-privs", None);
    }
    if security.read_only_root_filesystem == Some(true) {
        push("--read-only", None);
    }
    match security.seccomp_profile.as_ref().map(|p| p.kind.as_str()) {
        // The CRI's RuntimeDefault is containerd's default profile.
        Some("RuntimeDefault") => push("--seccomp", None),
        None | Some("Unconfined") => {}
        Some(other) => panic!("seccomp profile {other} is not reproduced by the test"),
    }

    // ctr run cannot set the user: the image's must be the manifest's.
    let user = format!(
        "{}:{}",
        security.run_as_user.expect("runAsUser is set"),
        security.run_as_group.expect("runAsGroup is set")
    );
    assert_eq!(
        image.user, user,
        "the image's USER must be the DaemonSet's runAsUser:runAsGroup"
    );
    if security.run_as_non_root == Some(true) {
        assert!(!image.user.starts_with("0:"), "runAsNonRoot with uid 0");
    }

    // Host namespaces.
    if pod.host_pid {
        // /proc/1/ns/pid fails here; this process is in the host's.
        push("--with-ns", Some("pid:/proc/self/ns/pid"));
    }
    if pod.host_ipc {
        push("--with-ns", Some("ipc:/proc/self/ns/ipc"));
    }
    if pod.host_network {
        push("--net-host", None);
    } else {
        let spec = format!("network:{}", node.network.path().display());
        push("--with-ns", Some(&spec));
    }

    // Volumes.
    let mut mounts = Vec::new();
    for mount in &container.volume_mounts {
        let volume = pod
            .volumes
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name));
        let source: PathBuf = if let Some(host_path) = &volume.host_path {
            host_source(&host_path.path, host_path.kind.as_deref(), node.engine)
        } else if let Some(config_map) = &volume.config_map {
            let map = config_maps
                .iter()
                .find(|m| m.metadata.name == config_map.name)
                .unwrap_or_else(|| panic!("no ConfigMap {}", config_map.name));
            let dir = node.files.join(&volume.name);
            fs::create_dir_all(&dir).expect("configMap directory");
            for (key, value) in &map.data {
                fs::write(dir.join(key), value).expect("configMap file");
            }
            dir
        } else {
            panic!(
                "volume {} is of a kind the test does not reproduce",
                volume.name
            );
        };
        let mode = if mount.read_only { "ro" } else { "rw" };
        let spec = format!(
            "type=bind,src={},dst={},options=rbind:{mode}",
            source.display(),
            mount.mount_path
        );
        push("--mount", Some(&spec));
        mounts.push((mount.mount_path.clone(), mount.read_only));
    }

    // Limits, as the kubelet gives them to the runtime (CFS period 100 ms).
    if let Some(memory) = container.resources.limits.get("memory") {
        push(
            "--memory-limit",
            Some(&manifest::memory_bytes(memory).to_string()),
        );
    }
    if let Some(cpu) = container.resources.limits.get("cpu") {
        let quota = manifest::cpu_millis(cpu) * 100;
        push("--cpu-period", Some("100000"));
        push("--cpu-quota", Some(&quota.to_string()));
    }

    // Environment, with the downward API's fields filled in.
    let mut env = Vec::new();
    for variable in &container.env {
        let value = match (&variable.value, &variable.value_from) {
            (Some(value), None) => value.clone(),
            (None, Some(source)) => match source.field_ref.field_path.as_str() {
                "spec.nodeName" => node.name.clone(),
                "metadata.namespace" => daemon_set
                    .metadata
                    .namespace
                    .clone()
                    .expect("the DaemonSet's namespace"),
                other => panic!("downward API field {other} is not reproduced by the test"),
            },
            _ => panic!(
                "env {} needs exactly one of value and valueFrom",
                variable.name
            ),
        };
        let pair = format!("{}={value}", variable.name);
        push("--env", Some(&pair));
        env.push(pair);
    }

    let pid_spec = node.pid_file.display().to_string();
    push("--pid-file", Some(&pid_spec));

    // Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its
    // CMD. ctr run's arguments replace both, so it gets the whole line.
    let mut argv = container
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    argv.extend(container.args.clone().unwrap_or_else(|| image.cmd.clone()));

    CtrRun {
        options,
        argv,
        capabilities: added,
        env,
        mounts,
    }
}

/// The host's path for a hostPath volume. The runtime sockets are the test
/// engine's, which is what runs the containers on this "node".
fn host_source(path: &str, kind: Option<&str>, engine: &Engine) -> PathBuf {
    let source = match path {
        "/run/containerd/containerd.sock" | "/var/run/containerd/containerd.sock" => {
            engine.containerd_socket().to_path_buf()
        }
        other => PathBuf::from(other),
    };
    match kind {
        Some("Directory") => assert!(source.is_dir(), "hostPath {path} is not a directory"),
        Some("Socket") | None | Some("") => assert!(source.exists(), "hostPath {path} is missing"),
        Some(other) => panic!("hostPath type {other} is not reproduced by the test"),
    }
    source
}
