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
    http::uri::PathAndQuery,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
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

/// What a transport sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ExportLogsServiceRequest`s.
    Logs,
    /// `ExportMetricsServiceRequest`s.
    Metrics,
}

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

/// An export response: what it says was rejected.
trait Response: Message + Default + Send + 'static {
    fn accepted(self) -> Accepted;
}

impl Response for ExportLogsServiceResponse {
    fn accepted(self) -> Accepted {
        let partial = self.partial_success.unwrap_or_default();
        Accepted {
            rejected: u64::try_from(partial.rejected_log_records).unwrap_or(0),
            message: partial.error_message,
        }
    }
}

impl Response for ExportMetricsServiceResponse {
    fn accepted(self) -> Accepted {
        let partial = self.partial_success.unwrap_or_default();
        Accepted {
            rejected: u64::try_from(partial.rejected_data_points).unwrap_or(0),
            message: partial.error_message,
        }
    }
}

/// One signal's client.
pub struct Transport {
    kind: Kind,
    wire: Wire,
}

enum Wire {
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
    /// A client sending `kind` to `destination`; must run inside a Tokio
    /// runtime (the gRPC channel spawns its connection task there).
    /// Nothing connects until the first request.
    pub fn new(
        kind: Kind,
        destination: &Destination,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<Self, String> {
        let wire = match destination.protocol {
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
                Wire::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                }
            }
            Protocol::HttpProtobuf => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector);
                Wire::Http {
                    client: Box::new(client),
                    url: destination.url.clone(),
                    headers: headers.to_vec(),
                    timeout,
                }
            }
        };
        Ok(Self { kind, wire })
    }

    /// [`Transport::export`], given up (as a retryable error) when no
    /// answer came within `limit`.
    pub async fn export_within(
        &mut self,
        body: Bytes,
        limit: Duration,
    ) -> Result<Accepted, ExportError> {
        tokio::time::timeout(limit, self.export(body))
            .await
            .unwrap_or_else(|_| {
                Err(ExportError {
                    retryable: true,
                    retry_after: None,
                    message: format!("no answer within {limit:?}"),
                })
            })
    }

    /// Sends one encoded export request: an `ExportLogsServiceRequest` or
    /// an `ExportMetricsServiceRequest`, as the transport's kind says.
    pub async fn export(&mut self, body: Bytes) -> Result<Accepted, ExportError> {
        match (&mut self.wire, self.kind) {
            (Wire::Grpc { channel, metadata }, Kind::Logs) => {
                grpc_unary::<ExportLogsServiceResponse>(
                    channel,
                    metadata,
                    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                    body,
                )
                .await
            }
            (Wire::Grpc { channel, metadata }, Kind::Metrics) => {
                grpc_unary::<ExportMetricsServiceResponse>(
                    channel,
                    metadata,
                    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                    body,
                )
                .await
            }
            (
                Wire::Http {
                    client,
                    url,
                    headers,
                    timeout,
                },
                kind,
            ) => {
                let response = post(client, url, headers, *timeout, body).await?;
                // A body that does not decode (empty, or JSON from a
                // proxy) still came with a success: nothing is known to
                // be rejected.
                Ok(match kind {
                    Kind::Logs => ExportLogsServiceResponse::decode(response)
                        .unwrap_or_default()
                        .accepted(),
                    Kind::Metrics => ExportMetricsServiceResponse::decode(response)
                        .unwrap_or_default()
                        .accepted(),
                })
            }
        }
    }
}

/// A message already encoded ([`super::encode`] writes the requests), sent
/// as it is. It is never decoded.
#[derive(Debug, Clone, Default, PartialEq)]
struct Encoded(Bytes);

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// One unary gRPC call with an encoded request, as the generated client
/// makes it.
async fn grpc_unary<R: Response>(
    channel: &Channel,
    metadata: &MetadataMap,
    path: &'static str,
    body: Bytes,
) -> Result<Accepted, ExportError> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|error| {
        let mut message = format!("gRPC channel not ready: {error}");
        append_causes(&mut message, error.source());
        ExportError::retryable(message)
    })?;
    let mut request = tonic::Request::new(Encoded(body));
    *request.metadata_mut() = metadata.clone();
    let codec = tonic_prost::ProstCodec::<Encoded, R>::default();
    let response = grpc
        .unary(request, PathAndQuery::from_static(path), codec)
        .await
        .map_err(|status| grpc_error(&status))?;
    Ok(response.into_inner().accepted())
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
    body: Bytes,
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
    let request = request.body(Full::new(body)).map_err(|error| ExportError {
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
