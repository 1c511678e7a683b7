//! A real OTLP receiver for the tests: the official OTLP protobuf
//! definitions (opentelemetry-proto's generated types and gRPC services),
//! served over gRPC by tonic or over OTLP/HTTP by hyper, keeping what it
//! receives. It runs on a thread of its own with its own runtime; stopping
//! it drops the runtime, which closes the listener and every connection at
//! once, as a collector that is killed would.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
    },
    logs::v1::LogRecord,
    resource::v1::Resource,
};
use prost::Message;

/// What the receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Grpc,
    Http,
}

impl Wire {
    /// The `--otlp-protocol` value.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http/protobuf",
        }
    }
}

/// Everything received, in order.
#[derive(Debug, Default)]
pub struct Received {
    pub logs: Vec<ExportLogsServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// The `x-tenant` header (HTTP) or metadata (gRPC) of each request.
    pub tenants: Vec<Option<String>>,
    /// The Content-Type of each OTLP/HTTP request.
    pub content_types: Vec<Option<String>>,
    /// Refuse every request as unauthenticated (HTTP 401, gRPC
    /// `UNAUTHENTICATED`), as a collector whose token was not given does.
    pub refusing: bool,
    /// Requests refused.
    pub refused: usize,
}

type Store = Arc<Mutex<Received>>;

/// A running receiver.
pub struct Receiver {
    pub port: u16,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:`port` (0: any free port).
    pub fn start(wire: Wire, port: u16) -> Self {
        Self::start_with(wire, port, Received::default())
    }

    /// Starts a receiver on any free port that refuses everything.
    pub fn start_refusing(wire: Wire) -> Self {
        Self::start_with(
            wire,
            0,
            Received {
                refusing: true,
                ..Received::default()
            },
        )
    }

    fn start_with(wire: Wire, port: u16, received: Received) -> Self {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Store::new(Mutex::new(received));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let kept = Arc::clone(&store);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    () = serve(wire, listener, kept) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task.
        });
        Self {
            port,
            store,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The endpoint URL to give `--otlp-endpoint`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Reads what was received.
    pub fn with<T>(&self, read: impl FnOnce(&Received) -> T) -> T {
        read(&self.store.lock().unwrap())
    }

    /// Every log record received, with its resource.
    pub fn log_records(&self) -> Vec<(Resource, LogRecord)> {
        self.with(|received| {
            received
                .logs
                .iter()
                .flat_map(|request| &request.resource_logs)
                .flat_map(|resource_logs| {
                    let resource = resource_logs.resource.clone().unwrap_or_default();
                    resource_logs
                        .scope_logs
                        .iter()
                        .flat_map(|scope| &scope.log_records)
                        .map(move |record| (resource.clone(), record.clone()))
                })
                .collect()
        })
    }

    /// Waits until `done` holds for what was received; panics after
    /// `timeout` with `what`.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}; received {} log requests and {} metric requests",
                self.with(|r| r.logs.len()),
                self.with(|r| r.metrics.len()),
            );
            // The receiver runs on its own thread; polling what it kept is
            // the simplest wait.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops at once, as a killed collector would: the listener and every
    /// connection close.
    pub fn kill(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn serve(wire: Wire, listener: tokio::net::TcpListener, store: Store) {
    match wire {
        Wire::Grpc => {
            let result = tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(Grpc(Arc::clone(&store))))
                .add_service(MetricsServiceServer::new(Grpc(store)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
            result.unwrap();
        }
        Wire::Http => loop {
            let (stream, _): (_, SocketAddr) = listener.accept().await.unwrap();
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let service = service_fn(move |request| http(request, Arc::clone(&store)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        },
    }
}

struct Grpc(Store);

fn tenant(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("x-tenant")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        if received.refusing {
            received.refused += 1;
            return Err(tonic::Status::unauthenticated("no token"));
        }
        received.tenants.push(tenant(request.metadata()));
        received.logs.push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        if received.refusing {
            received.refused += 1;
            return Err(tonic::Status::unauthenticated("no token"));
        }
        received.tenants.push(tenant(request.metadata()));
        received.metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The OTLP/HTTP side: POST /v1/logs and /v1/metrics with protobuf bodies.
async fn http(
    request: Request<hyper::body::Incoming>,
    store: Store,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let (tenant, content_type) = (header("x-tenant"), header("content-type"));
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await?.to_bytes();
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        Ok(response)
    };
    let mut received = store.lock().unwrap();
    if received.refusing {
        received.refused += 1;
        return reply(StatusCode::UNAUTHORIZED, Vec::new());
    }
    match path.as_str() {
        "/v1/logs" => {
            let Ok(decoded) = ExportLogsServiceRequest::decode(body) else {
                return reply(StatusCode::BAD_REQUEST, Vec::new());
            };
            received.logs.push(decoded);
        }
        "/v1/metrics" => {
            let Ok(decoded) = ExportMetricsServiceRequest::decode(body) else {
                return reply(StatusCode::BAD_REQUEST, Vec::new());
            };
            received.metrics.push(decoded);
        }
        _ => return reply(StatusCode::NOT_FOUND, Vec::new()),
    }
    received.tenants.push(tenant);
    received.content_types.push(content_type);
    reply(
        StatusCode::OK,
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
}
