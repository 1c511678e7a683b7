//! Asking the container runtimes about containers, in the background.
//!
//! The per-event path never waits for a runtime: it puts the container id
//! on a bounded queue ([`Lookups::request`], which never blocks) and reads
//! finished answers later ([`Lookups::try_result`]). A task asks Docker and
//! containerd, a few containers at a time, each call bounded in time.
//!
//! A runtime that fails (refuses, times out, answers garbage) is left alone
//! for a while, doubling up to a minute, so that a dead runtime costs one
//! failed call per pause rather than one per container; the outage is
//! logged once when it starts and once when it ends, and every failed call
//! is counted. A socket that is not there is no failure: that runtime is
//! simply not installed, which is logged once.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    sync::mpsc,
    task::{JoinHandle, JoinSet},
};

use super::{
    Runtime,
    containerd::{self, ContainerdClient},
    counters::WorkloadCounters,
    docker::{self, DockerClient},
};

/// Why a runtime could not answer.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Its socket is not there: the runtime is not installed or not
    /// running.
    #[error("no socket at {}", .0.display())]
    Absent(PathBuf),
    /// The socket is there but the connection failed.
    #[error("cannot connect to {}: {source}", .socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP or gRPC exchange failed.
    #[error("the exchange failed: {0}")]
    Protocol(String),
    /// It answered with an unexpected HTTP status.
    #[error("it answered with HTTP status {0}")]
    Status(u16),
    /// Its answer could not be read.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl RuntimeError {
    /// A connect() error on `socket`: a missing socket is [`Self::Absent`].
    pub fn connect(socket: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Self::Absent(socket.to_owned())
        } else {
            Self::Connect {
                socket: socket.to_owned(),
                source,
            }
        }
    }
}

/// What a runtime says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Its name (Docker's name; a CRI container's Kubernetes name).
    pub name: Option<String>,
    /// Its image.
    pub image: Option<String>,
    /// Its labels, where the CRI's pod labels are.
    pub labels: HashMap<String, String>,
    /// The runtime that answered.
    pub runtime: Runtime,
}

/// Where the runtimes are and how patiently to ask them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupConfig {
    /// The Docker Engine API socket; `None` to not ask Docker.
    pub docker_socket: Option<PathBuf>,
    /// containerd's sockets, the first that exists is used; empty to not
    /// ask containerd.
    pub containerd_sockets: Vec<PathBuf>,
    /// How long one call may take.
    pub timeout: Duration,
    /// How many lookups may wait; more are dropped and counted.
    pub queue: usize,
    /// How many lookups run at once.
    pub concurrency: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            docker_socket: Some(PathBuf::from(docker::DEFAULT_SOCKET)),
            containerd_sockets: containerd::DEFAULT_SOCKETS.map(PathBuf::from).to_vec(),
            timeout: Duration::from_secs(2),
            queue: 1024,
            concurrency: 4,
        }
    }
}

/// One container to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    /// Its full id.
    pub container_id: Arc<str>,
    /// The runtime its cgroup path names, asked first.
    pub runtime: Option<Runtime>,
    /// The containerd namespace to try first.
    pub namespace_hint: Option<String>,
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// A runtime knew the container.
    Found(ContainerFacts),
    /// Every runtime asked answered, and none knew it.
    NotFound,
    /// No runtime could be asked.
    Unavailable,
}

/// A finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The container's id, as requested.
    pub container_id: Arc<str>,
    /// What the runtimes said.
    pub outcome: LookupOutcome,
}

/// The lookup queue and its background task; dropping it stops the task.
#[derive(Debug)]
pub struct Lookups {
    requests: mpsc::Sender<LookupRequest>,
    results: mpsc::UnboundedReceiver<LookupResult>,
    task: JoinHandle<()>,
    counters: Arc<WorkloadCounters>,
}

impl Lookups {
    /// Starts the background task on the current tokio runtime.
    pub fn spawn(config: &LookupConfig, counters: Arc<WorkloadCounters>) -> Self {
        let (requests, queue) = mpsc::channel(config.queue.max(1));
        // Unbounded in type only: each result answers one request taken
        // from the bounded queue, and a container is asked about at most
        // once at a time.
        let (answers, results) = mpsc::unbounded_channel();
        let runtimes = Arc::new(Runtimes::new(config, Arc::clone(&counters)));
        let task = tokio::spawn(serve(runtimes, queue, answers, config.concurrency.max(1)));
        Self {
            requests,
            results,
            task,
            counters,
        }
    }

    /// Queues a lookup; `false` (and counted) when the queue is full.
    /// Never blocks.
    pub fn request(&self, request: LookupRequest) -> bool {
        if self.requests.try_send(request).is_ok() {
            WorkloadCounters::bump(&self.counters.lookups);
            true
        } else {
            WorkloadCounters::bump(&self.counters.lookups_dropped);
            false
        }
    }

    /// A finished lookup, if any. Never blocks.
    pub fn try_result(&mut self) -> Option<LookupResult> {
        self.results.try_recv().ok()
    }

    /// Waits for the next finished lookup; for tests and tools.
    pub async fn next_result(&mut self) -> Option<LookupResult> {
        self.results.recv().await
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    runtimes: Arc<Runtimes>,
    mut queue: mpsc::Receiver<LookupRequest>,
    answers: mpsc::UnboundedSender<LookupResult>,
    concurrency: usize,
) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            request = queue.recv(), if running.len() < concurrency => {
                let Some(request) = request else { break };
                let runtimes = Arc::clone(&runtimes);
                let answers = answers.clone();
                running.spawn(async move {
                    let outcome = runtimes.look_up(&request).await;
                    let _ = answers.send(LookupResult {
                        container_id: request.container_id,
                        outcome,
                    });
                });
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

/// Which runtime client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Docker,
    Containerd,
}

impl Which {
    const fn name(self) -> &'static str {
        match self {
            Self::Docker => "Docker",
            Self::Containerd => "containerd",
        }
    }
}

/// The runtime clients and what is known of their health.
#[derive(Debug)]
struct Runtimes {
    docker: Option<DockerClient>,
    containerd: Option<ContainerdClient>,
    health: Mutex<HashMap<&'static str, Health>>,
    counters: Arc<WorkloadCounters>,
}

/// How a runtime has been doing.
#[derive(Debug, Default)]
struct Health {
    /// Not asked again before this.
    paused_until: Option<Instant>,
    /// The next pause after a failure.
    pause: Duration,
    /// The current outage was logged.
    failing: bool,
    /// A missing socket was logged.
    absent_logged: bool,
}

/// The first pause after a failure, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

impl Runtimes {
    fn new(config: &LookupConfig, counters: Arc<WorkloadCounters>) -> Self {
        Self {
            docker: config
                .docker_socket
                .as_ref()
                .map(|socket| DockerClient::new(socket.clone(), config.timeout)),
            containerd: (!config.containerd_sockets.is_empty())
                .then(|| ContainerdClient::new(config.containerd_sockets.clone(), config.timeout)),
            health: Mutex::new(HashMap::new()),
            counters,
        }
    }

    async fn look_up(&self, request: &LookupRequest) -> LookupOutcome {
        let order = match request.runtime {
            Some(Runtime::Docker | Runtime::Podman) => [Which::Docker, Which::Containerd],
            _ => [Which::Containerd, Which::Docker],
        };
        let mut answered = false;
        for which in order {
            match self.ask(which, request).await {
                Some(Ok(Some(facts))) => {
                    WorkloadCounters::bump(&self.counters.lookups_found);
                    return LookupOutcome::Found(facts);
                }
                Some(Ok(None)) => answered = true,
                Some(Err(_)) | None => {}
            }
        }
        if answered {
            WorkloadCounters::bump(&self.counters.lookups_not_found);
            LookupOutcome::NotFound
        } else {
            WorkloadCounters::bump(&self.counters.lookups_unavailable);
            LookupOutcome::Unavailable
        }
    }

    /// Asks one runtime; `None` when it is not configured or paused.
    async fn ask(
        &self,
        which: Which,
        request: &LookupRequest,
    ) -> Option<Result<Option<ContainerFacts>, RuntimeError>> {
        if self.paused(which, Instant::now()) {
            return None;
        }
        let result = match which {
            Which::Docker => self.docker.as_ref()?.container(&request.container_id).await,
            Which::Containerd => {
                self.containerd
                    .as_ref()?
                    .container(&request.container_id, request.namespace_hint.as_deref())
                    .await
            }
        };
        self.record(which, &result, Instant::now());
        Some(result)
    }

    fn paused(&self, which: Which, now: Instant) -> bool {
        let Ok(health) = self.health.lock() else {
            return false;
        };
        health
            .get(which.name())
            .and_then(|h| h.paused_until)
            .is_some_and(|until| now < until)
    }

    fn record<T>(&self, which: Which, result: &Result<T, RuntimeError>, now: Instant) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let health = health.entry(which.name()).or_default();
        match result {
            Ok(_) => {
                if health.failing {
                    tracing::info!("{} answers again; container names are back", which.name());
                }
                *health = Health {
                    absent_logged: health.absent_logged,
                    ..Health::default()
                };
            }
            Err(RuntimeError::Absent(socket)) => {
                if !health.absent_logged {
                    tracing::info!(
                        "{} is not running here (no socket at {}): its containers are reported by id only",
                        which.name(),
                        socket.display()
                    );
                    health.absent_logged = true;
                }
            }
            Err(error) => {
                WorkloadCounters::bump(match which {
                    Which::Docker => &self.counters.docker_errors,
                    Which::Containerd => &self.counters.containerd_errors,
                });
                health.pause = if health.pause.is_zero() {
                    FIRST_PAUSE
                } else {
                    (health.pause * 2).min(LONGEST_PAUSE)
                };
                health.paused_until = Some(now + health.pause);
                if !health.failing {
                    tracing::warn!(
                        "{} failed ({error}): containers are reported by id only until it answers; asking again in {:?}",
                        which.name(),
                        health.pause
                    );
                    health.failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> LookupRequest {
        LookupRequest {
            container_id: Arc::from(id),
            runtime: Some(Runtime::Docker),
            namespace_hint: None,
        }
    }

    #[tokio::test]
    async fn with_no_runtime_every_lookup_is_unavailable_at_once() {
        let counters = Arc::new(WorkloadCounters::default());
        let config = LookupConfig {
            docker_socket: Some(PathBuf::from("/nonexistent/docker.sock")),
            containerd_sockets: vec![PathBuf::from("/nonexistent/containerd.sock")],
            ..LookupConfig::default()
        };
        let mut lookups = Lookups::spawn(&config, Arc::clone(&counters));
        assert!(lookups.request(request("a")));
        let result = tokio::time::timeout(Duration::from_secs(1), lookups.next_result())
            .await
            .expect("prompt")
            .expect("a result");
        assert_eq!(result.outcome, LookupOutcome::Unavailable);
        let counts = counters.snapshot();
        assert_eq!((counts.lookups, counts.lookups_unavailable), (1, 1));
        // Missing sockets are not errors.
        assert_eq!((counts.docker_errors, counts.containerd_errors), (0, 0));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let counters = Arc::new(WorkloadCounters::default());
        let config = LookupConfig {
            docker_socket: None,
            containerd_sockets: Vec::new(),
            queue: 1,
            ..LookupConfig::default()
        };
        // Built on a runtime that has not run the task yet, the second
        // request finds the queue full.
        let lookups = Lookups::spawn(&config, Arc::clone(&counters));
        assert!(lookups.request(request("a")));
        assert!(!lookups.request(request("b")));
        assert_eq!(counters.snapshot().lookups_dropped, 1);
    }
}
