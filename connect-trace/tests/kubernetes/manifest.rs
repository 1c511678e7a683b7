//! The parts of deploy/kubernetes/ that decide how the container runs, read
//! from the files themselves.
//!
//! Every struct that shapes the container refuses fields it does not know:
//! a setting added to the manifest that the test does not reproduce on
//! containerd fails here, instead of being silently left out of the run.
//! Fields that matter to the scheduler or the API server only (tolerations,
//! probes' timing, labels) are accepted and named as such.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, de::IgnoredAny};

/// deploy/kubernetes/, where `kubectl apply -f` takes the manifests from.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .canonicalize()
        .expect("deploy/kubernetes")
}

/// The manifests `kubectl apply -f deploy/kubernetes/` applies, in order:
/// the files whose names end as kubectl looks for, not those below.
pub fn core_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
        })
        .collect();
    files.sort();
    files
}

/// The Prometheus Operator's PodMonitor, kept apart because it needs the CRD.
pub fn pod_monitor_file() -> PathBuf {
    dir().join("prometheus-operator/podmonitor.yaml")
}

/// Parses the one document of type `T` in `file`.
pub fn load<T: for<'de> Deserialize<'de>>(file: &Path) -> T {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The file among [`core_files`] that holds a `kind`.
pub fn file_of_kind(kind: &str) -> PathBuf {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    core_files()
        .into_iter()
        .find(|file| load::<Kind>(file).kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in {}", dir().display()))
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConfigMap {
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct PodMonitor {
    pub spec: PodMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
pub struct PodMetricsEndpoint {
    pub port: String,
    pub path: String,
}

#[derive(Debug, Deserialize)]
pub struct DaemonSet {
    pub metadata: Metadata,
    pub spec: DaemonSetSpec,
}

#[derive(Debug, Deserialize)]
pub struct DaemonSetSpec {
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
pub struct PodTemplate {
    pub spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    #[serde(rename = "hostPID", default)]
    pub host_pid: bool,
    #[serde(default)]
    pub host_network: bool,
    #[serde(rename = "hostIPC", default)]
    pub host_ipc: bool,
    pub containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    // For the scheduler and the API server; nothing in the container
    // changes with them.
    #[serde(rename = "serviceAccountName")]
    _service_account_name: Option<IgnoredAny>,
    #[serde(rename = "automountServiceAccountToken")]
    _automount_service_account_token: Option<IgnoredAny>,
    #[serde(rename = "tolerations")]
    _tolerations: Option<IgnoredAny>,
    #[serde(rename = "terminationGracePeriodSeconds")]
    _termination_grace_period_seconds: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(rename = "name")]
    _name: IgnoredAny,
    pub image: String,
    // The image is there already: the test imports it.
    #[serde(rename = "imagePullPolicy")]
    _image_pull_policy: Option<IgnoredAny>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub resources: Resources,
    pub security_context: SecurityContext,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
}

impl Container {
    /// The number of the port named or numbered `port`.
    pub fn port(&self, port: &serde_norway::Value) -> u16 {
        match port {
            serde_norway::Value::Number(number) => number
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .expect("a port number"),
            serde_norway::Value::String(name) => {
                self.ports
                    .iter()
                    .find(|p| &p.name == name)
                    .unwrap_or_else(|| panic!("no container port named {name}"))
                    .container_port
            }
            other => panic!("a port is a number or a name, not {other:?}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    pub field_ref: FieldRef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: String,
    pub container_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: HttpGet,
}

#[derive(Debug, Deserialize)]
pub struct HttpGet {
    pub path: String,
    pub port: serde_norway::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    // For the scheduler; the runtime gets the limits.
    #[serde(rename = "requests")]
    _requests: Option<IgnoredAny>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    #[serde(default)]
    pub capabilities: Capabilities,
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: String,
    // A Localhost profile fails the test before this is needed.
    #[serde(rename = "localhostProfile")]
    _localhost_profile: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    pub host_path: Option<HostPath>,
    pub config_map: Option<ConfigMapVolume>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPath {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapVolume {
    pub name: String,
}

/// Parses a Kubernetes memory quantity (`128Mi`, `1Gi`, `500M`, bytes).
pub fn memory_bytes(quantity: &str) -> u64 {
    let units: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().expect("a memory quantity") * factor;
        }
    }
    quantity.parse().expect("a memory quantity")
}

/// Parses a Kubernetes CPU quantity (`500m`, `2`) into millicores.
pub fn cpu_millis(quantity: &str) -> u64 {
    match quantity.strip_suffix('m') {
        Some(millis) => millis.parse().expect("a CPU quantity"),
        None => quantity.parse::<u64>().expect("a CPU quantity") * 1000,
    }
}
