//! A client for containerd's gRPC API: a container's labels and image, in
//! whichever containerd namespace holds it (`k8s.io` for Kubernetes,
//! `moby` for Docker's containers, `default` for `ctr`).
//!
//! The bindings are containerd's own (`containerd-client`, generated from
//! containerd's protos). Every call is bounded in time.

use std::{path::PathBuf, time::Duration};

use containerd_client::{
    services::v1::{
        GetContainerRequest, ListNamespacesRequest, containers_client::ContainersClient,
        namespaces_client::NamespacesClient, version_client::VersionClient,
    },
    tonic::{self, Code, Request, metadata::MetadataValue, transport::Channel},
};
use tokio::sync::Mutex;

use super::{
    Runtime, labels,
    lookup::{ContainerFacts, RuntimeError},
};

/// Where containerd listens by default, and where the containerd that
/// dockerd starts listens.
pub const DEFAULT_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/run/docker/containerd/containerd.sock",
];
/// The label nerdctl stores a container's name in.
const NERDCTL_NAME: &str = "nerdctl/name";
/// The gRPC metadata key that selects a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// containerd's API on the first of some unix sockets that exists.
#[derive(Debug)]
pub struct ContainerdClient {
    sockets: Vec<PathBuf>,
    timeout: Duration,
    /// The connection, made on first use and dropped after an error so that
    /// the next call connects again.
    channel: Mutex<Option<Channel>>,
}

/// What containerd's version service says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdVersion {
    /// Such as `1.6.20~ds1`.
    pub version: String,
    /// The socket that answered.
    pub socket: PathBuf,
}

impl ContainerdClient {
    /// A client for the first of `sockets` that exists when it connects;
    /// each call gives up after `timeout`.
    pub fn new(sockets: Vec<PathBuf>, timeout: Duration) -> Self {
        Self {
            sockets,
            timeout,
            channel: Mutex::new(None),
        }
    }

    /// The sockets it tries, in order.
    pub fn sockets(&self) -> &[PathBuf] {
        &self.sockets
    }

    /// The container with this id: first in `namespace_hint`, then in every
    /// other namespace; `Ok(None)` when none has it.
    pub async fn container(
        &self,
        id: &str,
        namespace_hint: Option<&str>,
    ) -> Result<Option<ContainerFacts>, RuntimeError> {
        let result = self.bounded(self.find(id, namespace_hint)).await;
        self.forget_channel_after(&result).await;
        result
    }

    /// containerd's version: whether it answers.
    pub async fn version(&self) -> Result<ContainerdVersion, RuntimeError> {
        let result = self
            .bounded(async {
                let (channel, socket) = self.channel().await?;
                let answer = VersionClient::new(channel)
                    .version(())
                    .await
                    .map_err(status_error)?
                    .into_inner();
                Ok(ContainerdVersion {
                    version: answer.version,
                    socket,
                })
            })
            .await;
        self.forget_channel_after(&result).await;
        result
    }

    async fn find(
        &self,
        id: &str,
        namespace_hint: Option<&str>,
    ) -> Result<Option<ContainerFacts>, RuntimeError> {
        let (channel, _) = self.channel().await?;
        let mut namespaces: Vec<String> = namespace_hint.map(str::to_owned).into_iter().collect();
        let listed = NamespacesClient::new(channel.clone())
            .list(ListNamespacesRequest::default())
            .await
            .map_err(status_error)?
            .into_inner()
            .namespaces;
        namespaces.extend(
            listed
                .into_iter()
                .map(|namespace| namespace.name)
                .filter(|name| Some(name.as_str()) != namespace_hint),
        );
        let mut containers = ContainersClient::new(channel);
        for namespace in namespaces {
            let Ok(value) = MetadataValue::try_from(namespace.as_str()) else {
                continue;
            };
            let mut request = Request::new(GetContainerRequest { id: id.to_owned() });
            request.metadata_mut().insert(NAMESPACE_HEADER, value);
            match containers.get(request).await {
                Ok(answer) => {
                    let Some(container) = answer.into_inner().container else {
                        continue;
                    };
                    let name = container
                        .labels
                        .get(labels::CONTAINER_NAME)
                        .or_else(|| container.labels.get(NERDCTL_NAME))
                        .filter(|name| !name.is_empty())
                        .cloned();
                    return Ok(Some(ContainerFacts {
                        name,
                        image: Some(container.image).filter(|image| !image.is_empty()),
                        labels: container.labels,
                        runtime: Runtime::Containerd,
                    }));
                }
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => return Err(status_error(status)),
            }
        }
        Ok(None)
    }

    /// The open channel, or a new one to the first socket that exists.
    async fn channel(&self) -> Result<(Channel, PathBuf), RuntimeError> {
        let socket = self
            .sockets
            .iter()
            .find(|socket| socket.exists())
            .cloned()
            .ok_or_else(|| RuntimeError::Absent(self.socket_list()))?;
        let mut held = self.channel.lock().await;
        if let Some(channel) = held.as_ref() {
            return Ok((channel.clone(), socket));
        }
        let channel = containerd_client::connect(&socket)
            .await
            .map_err(|error| RuntimeError::connect(&socket, transport_io_error(&error)))?;
        *held = Some(channel.clone());
        Ok((channel, socket))
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RuntimeError::Timeout(self.timeout))?
    }

    async fn forget_channel_after<T>(&self, result: &Result<T, RuntimeError>) {
        if result.is_err() {
            *self.channel.lock().await = None;
        }
    }

    fn socket_list(&self) -> PathBuf {
        self.sockets
            .iter()
            .map(|socket| socket.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
            .into()
    }
}

fn status_error(status: tonic::Status) -> RuntimeError {
    match status.code() {
        Code::Unavailable => RuntimeError::Protocol(format!("unavailable: {}", status.message())),
        code => RuntimeError::Answer(format!("{code:?}: {}", status.message())),
    }
}

/// The I/O error under a transport error, so that a refused connection
/// reads as one.
fn transport_io_error(error: &tonic::transport::Error) -> std::io::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return std::io::Error::new(io.kind(), io.to_string());
        }
        source = current.source();
    }
    std::io::Error::other(error.to_string())
}
