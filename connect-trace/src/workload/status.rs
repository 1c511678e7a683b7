//! Which container runtimes answer here, and how cgroup ids are resolved:
//! status lines for `connect-trace check`.

use std::{fmt, path::PathBuf};

use super::{
    cgroupfs::{CgroupFs, Resolution},
    containerd::ContainerdClient,
    docker::DockerClient,
    lookup::{LookupConfig, RuntimeError},
};

/// How one runtime is doing.
#[derive(Debug)]
pub enum RuntimeState {
    /// It answered, with its version.
    Answering {
        /// Its version, such as `20.10.24 (API 1.41)`.
        version: String,
        /// The socket that answered.
        socket: PathBuf,
    },
    /// Its socket is not there, or asking it is switched off: its
    /// containers are reported by id only.
    Absent(String),
    /// Its socket is there but it did not answer properly.
    Failing(RuntimeError),
}

/// One runtime's status.
#[derive(Debug)]
pub struct RuntimeStatus {
    /// `docker` or `containerd`.
    pub runtime: &'static str,
    /// How it is doing.
    pub state: RuntimeState,
}

impl RuntimeStatus {
    /// Whether it answered.
    pub fn is_answering(&self) -> bool {
        matches!(self.state, RuntimeState::Answering { .. })
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            RuntimeState::Answering { version, socket } => write!(
                f,
                "{} {version} answers at {}: container names, images and pod labels are reported",
                self.runtime,
                socket.display()
            ),
            RuntimeState::Absent(why) => write!(
                f,
                "{}: {why}; its containers are reported by id only",
                self.runtime
            ),
            RuntimeState::Failing(error) => write!(
                f,
                "{}: {error}; its containers are reported by id only while it fails",
                self.runtime
            ),
        }
    }
}

/// Asks each configured runtime for its version (each bounded by the
/// configured timeout).
pub async fn detect_runtimes(config: &LookupConfig) -> Vec<RuntimeStatus> {
    let docker = match &config.docker_socket {
        None => RuntimeState::Absent("not asked (no socket configured)".to_owned()),
        Some(socket) => {
            let client = DockerClient::new(socket.clone(), config.timeout);
            match client.version().await {
                Ok(version) => RuntimeState::Answering {
                    version: format!("{} (API {})", version.version, version.api_version),
                    socket: socket.clone(),
                },
                Err(error) => state_of(error),
            }
        }
    };
    let containerd = if config.containerd_sockets.is_empty() {
        RuntimeState::Absent("not asked (no socket configured)".to_owned())
    } else {
        let client = ContainerdClient::new(config.containerd_sockets.clone(), config.timeout);
        match client.version().await {
            Ok(version) => RuntimeState::Answering {
                version: version.version,
                socket: version.socket,
            },
            Err(error) => state_of(error),
        }
    };
    vec![
        RuntimeStatus {
            runtime: "docker",
            state: docker,
        },
        RuntimeStatus {
            runtime: "containerd",
            state: containerd,
        },
    ]
}

fn state_of(error: RuntimeError) -> RuntimeState {
    match error {
        RuntimeError::Absent(socket) => {
            RuntimeState::Absent(format!("no socket at {}", socket.display()))
        }
        error => RuntimeState::Failing(error),
    }
}

/// A line on how cgroup ids become paths here.
pub fn describe_cgroups(cgroups: Option<&CgroupFs>) -> String {
    match cgroups {
        None => "no cgroup v2 hierarchy: workloads are found from /proc/PID/cgroup while the process lives".to_owned(),
        Some(cgroups) => {
            let how = match cgroups.resolution() {
                Resolution::FileHandle => "by file handle",
                Resolution::Walk => {
                    "by walking the tree (open_by_handle_at needs CAP_DAC_READ_SEARCH)"
                }
            };
            let v1 = if cgroups.has_v1() {
                "; v1 hierarchies are mounted too, read from /proc/PID/cgroup when v2 names no container"
            } else {
                ""
            };
            format!(
                "cgroup v2 at {}: ids resolved {how}{v1}",
                cgroups.root().display()
            )
        }
    }
}
