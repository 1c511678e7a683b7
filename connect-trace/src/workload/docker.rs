//! A client for the few calls of the Docker Engine API that name a
//! container: `GET /containers/<id>/json` and `GET /version`, over Docker's
//! unix socket.
//!
//! hyper's HTTP/1 client connection does the HTTP; one connection per call
//! is enough, since a container is looked up once. Every call is bounded in
//! time and in the size of the answer. Paths are unversioned, so any Docker
//! Engine (and Podman's Docker-compatible socket) answers.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{
    Runtime,
    lookup::{ContainerFacts, RuntimeError},
};

/// Where Docker listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The largest answer read: an inspect answer is a few kilobytes, more
/// with many labels or mounts.
const MAX_ANSWER: usize = 4 << 20;

/// The Docker Engine API on a unix socket.
#[derive(Debug, Clone)]
pub struct DockerClient {
    socket: PathBuf,
    timeout: Duration,
}

/// What `GET /version` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerVersion {
    /// The engine's version, such as `20.10.24`.
    pub version: String,
    /// The newest API version it speaks, such as `1.41`.
    pub api_version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    name: Option<String>,
    config: Option<InspectConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    image: Option<String>,
    labels: Option<HashMap<String, String>>,
}

impl DockerClient {
    /// A client for the API on `socket`; each call gives up after
    /// `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The container with this id (or name, or unique id prefix);
    /// `Ok(None)` when Docker does not know it.
    pub async fn container(&self, id: &str) -> Result<Option<ContainerFacts>, RuntimeError> {
        if !is_reference(id) {
            return Err(RuntimeError::Answer(format!(
                "{id:?} is not a container id or name"
            )));
        }
        let (status, body) = self.get(&format!("/containers/{id}/json")).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(RuntimeError::Status(status.as_u16())),
        }
        let inspect: Inspect = serde_json::from_slice(&body)
            .map_err(|error| RuntimeError::Answer(error.to_string()))?;
        let config = inspect.config;
        Ok(Some(ContainerFacts {
            name: inspect
                .name
                .map(|name| name.trim_start_matches('/').to_owned())
                .filter(|name| !name.is_empty()),
            image: config
                .as_ref()
                .and_then(|c| c.image.clone())
                .filter(|image| !image.is_empty()),
            labels: config.and_then(|c| c.labels).unwrap_or_default(),
            runtime: Runtime::Docker,
        }))
    }

    /// The engine's version: whether Docker answers.
    pub async fn version(&self) -> Result<DockerVersion, RuntimeError> {
        let (status, body) = self.get("/version").await?;
        if status != StatusCode::OK {
            return Err(RuntimeError::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|error| RuntimeError::Answer(error.to_string()))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), RuntimeError> {
        tokio::time::timeout(self.timeout, self.get_unbounded(path))
            .await
            .map_err(|_| RuntimeError::Timeout(self.timeout))?
    }

    async fn get_unbounded(&self, path: &str) -> Result<(StatusCode, Bytes), RuntimeError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|error| RuntimeError::connect(&self.socket, error))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| RuntimeError::Protocol(error.to_string()))?;
        let request = Request::get(path)
            .header(header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|error| RuntimeError::Protocol(error.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| RuntimeError::Protocol(error.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|error| RuntimeError::Protocol(error.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        // The connection must be driven while the request is under way;
        // it ends when the exchange does (the socket closes on drop).
        tokio::pin!(connection);
        tokio::select! {
            result = exchange => result,
            ended = &mut connection => Err(RuntimeError::Protocol(match ended {
                Ok(()) => "the connection closed before the answer".to_owned(),
                Err(error) => error.to_string(),
            })),
        }
    }
}

/// A container id, id prefix or name: Docker's name characters only, so
/// nothing else reaches the request path.
fn is_reference(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_and_names_reach_the_path() {
        assert!(is_reference("web-1"));
        assert!(is_reference("3f2a9c4d5e6b"));
        assert!(!is_reference(""));
        assert!(!is_reference("../../version"));
        assert!(!is_reference("a/b"));
        assert!(!is_reference("a b"));
        assert!(!is_reference("a?x=1"));
    }

    #[tokio::test]
    async fn a_missing_socket_is_absent_not_an_error() {
        let client = DockerClient::new("/nonexistent/docker.sock", Duration::from_secs(1));
        let error = client.container("web").await.expect_err("no socket");
        assert!(matches!(error, RuntimeError::Absent(_)), "{error}");
    }
}
