//! Sending OTLP requests: gRPC through tonic's client (the service stubs
//! are opentelemetry-proto's), OTLP/HTTP through hyper's. Each failure is
//! classified as the OTLP specification says: worth retrying (the endpoint
//! is down, overloaded or throttling) or not (it refused the data).

use std::{error::Error as _, fmt, time::Duration};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Request, StatusCode, Uri,
    body::Bytes,
    header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient,
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_client::MetricsServiceClient,
    },
};
use prost::Message;
use tonic::{
    Code,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, Endpoint},
};

use super::settings::{Destination, Protocol};

/// The largest response body read (a status message; OTLP responses are
/// small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why an export failed.
#[derive(Debug, Clone)]
pub struct ExportError {
    /// Worth trying again later.
    pub retryable: bool,
    /// How long the endpoint asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// What happened, for the log.
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ExportError {
    fn retryable(message: String) -> Self {
        Self {
            retryable: true,
            retry_after: None,
            message,
        }
    }
}

/// How many items an accepted request had rejected (OTLP's partial
/// success), and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items the endpoint did not keep.
    pub rejected: u64,
    /// Its explanation, if any.
    pub message: String,
}

/// One signal's client.
pub enum Transport {
    /// OTLP/gRPC.
    Grpc {
        /// The connection, made lazily and remade after failures.
        channel: Channel,
        /// The headers, as gRPC metadata.
        metadata: MetadataMap,
    },
    /// OTLP/HTTP with protobuf bodies.
    Http {
        /// A pooled HTTP/1.1 client (boxed: it is several times larger
        /// than the gRPC channel).
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        /// The signal's URL.
        url: Uri,
        /// Sent with every request.
        headers: Vec<(HeaderName, HeaderValue)>,
        /// How long one request may take.
        timeout: Duration,
    },
}

impl Transport {
    /// A client for `destination`; must run inside a Tokio runtime (the
    /// gRPC channel spawns its connection task there). Nothing connects
    /// until the first request.
    pub fn new(
        destination: &Destination,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<Self, String> {
        match destination.protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(destination.url.to_string())
                    .map_err(|error| format!("{}: {error}", destination.url))?
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .tcp_nodelay(true);
                let mut metadata = MetadataMap::new();
                for (name, value) in headers {
                    let key = MetadataKey::from_bytes(name.as_str().as_bytes())
                        .map_err(|_| format!("`{name}` is not a gRPC metadata key"))?;
                    let value = MetadataValue::try_from(value.as_bytes())
                        .map_err(|_| format!("the value of `{name}` is not gRPC metadata"))?;
                    metadata.insert(key, value);
                }
                Ok(Self::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                })
            }
            Protocol::HttpProtobuf => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector);
                Ok(Self::Http {
                    client: Box::new(client),
                    url: destination.url.clone(),
                    headers: headers.to_vec(),
                    timeout,
                })
            }
        }
    }

    /// Sends log records.
    pub async fn export_logs(
        &mut self,
        request: ExportLogsServiceRequest,
    ) -> Result<Accepted, ExportError> {
        match self {
            Self::Grpc { channel, metadata } => {
                let mut client = LogsServiceClient::new(channel.clone());
                let response = client
                    .export(grpc_request(request, metadata))
                    .await
                    .map_err(|status| grpc_error(&status))?;
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Ok(Accepted {
                    rejected: u64::try_from(partial.rejected_log_records).unwrap_or(0),
                    message: partial.error_message,
                })
            }
            Self::Http {
                client,
                url,
                headers,
                timeout,
            } => {
                let body = post(client, url, headers, *timeout, request.encode_to_vec()).await?;
                let partial = ExportLogsServiceResponse::decode(body)
                    .unwrap_or_default()
                    .partial_success
                    .unwrap_or_default();
                Ok(Accepted {
                    rejected: u64::try_from(partial.rejected_log_records).unwrap_or(0),
                    message: partial.error_message,
                })
            }
        }
    }

    /// Sends metrics.
    pub async fn export_metrics(
        &mut self,
        request: ExportMetricsServiceRequest,
    ) -> Result<Accepted, ExportError> {
        match self {
            Self::Grpc { channel, metadata } => {
                let mut client = MetricsServiceClient::new(channel.clone());
                let response = client
                    .export(grpc_request(request, metadata))
                    .await
                    .map_err(|status| grpc_error(&status))?;
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Ok(Accepted {
                    rejected: u64::try_from(partial.rejected_data_points).unwrap_or(0),
                    message: partial.error_message,
                })
            }
            Self::Http {
                client,
                url,
                headers,
                timeout,
            } => {
                let body = post(client, url, headers, *timeout, request.encode_to_vec()).await?;
                let partial = ExportMetricsServiceResponse::decode(body)
                    .unwrap_or_default()
                    .partial_success
                    .unwrap_or_default();
                Ok(Accepted {
                    rejected: u64::try_from(partial.rejected_data_points).unwrap_or(0),
                    message: partial.error_message,
                })
            }
        }
    }
}

fn grpc_request<T>(message: T, metadata: &MetadataMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
}

/// The OTLP/gRPC rules: these codes mean "try again later"; the others
/// mean the data was refused.
fn grpc_error(status: &tonic::Status) -> ExportError {
    let retryable = matches!(
        status.code(),
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    );
    let mut message = format!("gRPC status {:?}", status.code());
    if !status.message().is_empty() {
        message.push_str(": ");
        message.push_str(status.message());
    }
    append_causes(&mut message, status.source());
    ExportError {
        retryable,
        retry_after: None,
        message,
    }
}

/// POSTs `body` and returns the response body of a success.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &Uri,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
    body: Vec<u8>,
) -> Result<Bytes, ExportError> {
    let mut request = Request::post(url.clone())
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header(
            USER_AGENT,
            concat!("connect-trace/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| ExportError {
            retryable: false,
            retry_after: None,
            message: format!("building the request: {error}"),
        })?;
    let exchange = async {
        let response = client.request(request).await.map_err(|error| {
            let mut message = format!("HTTP request to {url} failed: {error}");
            append_causes(&mut message, error.source());
            ExportError::retryable(message)
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        // OTLP/HTTP: throttling and the gateway's troubles pass; anything
        // else is the endpoint refusing the data.
        let retryable = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        );
        Err(ExportError {
            retryable,
            retry_after,
            message: format!("HTTP {status} from {url}"),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ExportError::retryable(format!(
                "no answer from {url} within {timeout:?}"
            )))
        })
}

/// Appends the causes under an error (the refused connection under a
/// transport error), each once.
fn append_causes(message: &mut String, mut cause: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
}
