//! `connect-trace run`'s OpenTelemetry options, and starting the OTLP sink
//! (docs/otlp.md).

use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use connect_trace::{
    delivery::Ledger,
    export::{
        Sink,
        otlp::{
            OtlpSink,
            settings::{OtlpOptions, OtlpSettings, Protocol, host_name},
        },
        prometheus::Metrics,
    },
};

/// Options of `connect-trace run` for OpenTelemetry. They read the
/// standard `OTEL_EXPORTER_OTLP_*` variables; the others the SDKs read
/// (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, ...) are read as they
/// are.
#[derive(Debug, Args)]
pub struct OtlpArgs {
    /// Export every attempt as an OpenTelemetry log record, and the attempt
    /// metrics, to this OTLP endpoint: http://HOST:4317 with `--otlp-protocol
    /// grpc`, http://HOST:4318 for OTLP/HTTP. Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// How to speak OTLP: `grpc`, or `http/protobuf` (the default).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_name = "PROTOCOL",
        value_parser = otlp_protocol
    )]
    otlp_protocol: Option<OtlpProtocol>,
    /// Headers for every OTLP request, as `key=value,key=value` with
    /// percent-encoded values (an API key, a tenant).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        value_name = "KEY=VALUE,...",
        hide_env_values = true
    )]
    otlp_headers: Option<String>,
}

/// `--otlp-protocol`.
#[derive(Debug, Clone, Copy)]
enum OtlpProtocol {
    /// Not given: an empty `OTEL_EXPORTER_OTLP_PROTOCOL`, which the
    /// OpenTelemetry specification counts as unset.
    Unset,
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

/// Parses `--otlp-protocol` (a clap value enum would refuse the empty
/// value a deployment template leaves in the variable).
fn otlp_protocol(text: &str) -> Result<OtlpProtocol, String> {
    match text.trim() {
        "" => Ok(OtlpProtocol::Unset),
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => {
            Err("OTLP/HTTP with JSON bodies is not supported: use http/protobuf or grpc".into())
        }
        _ => Err("the protocols are grpc and http/protobuf".into()),
    }
}

impl OtlpArgs {
    /// The settings, checked; `None` when OTLP is off. `node` is
    /// `--node-name`, the resource's `k8s.node.name`.
    pub fn settings(&self, node: Option<&str>) -> Result<Option<OtlpSettings>> {
        let options = OtlpOptions {
            endpoint: self.otlp_endpoint.clone(),
            protocol: self.otlp_protocol.and_then(|protocol| match protocol {
                OtlpProtocol::Unset => None,
                OtlpProtocol::Grpc => Some(Protocol::Grpc),
                OtlpProtocol::HttpProtobuf => Some(Protocol::HttpProtobuf),
            }),
            headers: self.otlp_headers.clone(),
            node_name: node.map(str::to_owned),
            host_name: host_name(),
        };
        OtlpSettings::resolve(options, &|name| std::env::var(name).ok())
            .context("OpenTelemetry export")
    }
}

/// Starts the OTLP sink, adds it to `sinks` and its counts to `metrics`.
/// Call once capabilities are dropped: it starts a thread.
pub fn start(
    settings: OtlpSettings,
    ledger: &Arc<Ledger>,
    metrics: &Metrics,
    sinks: &mut Vec<Box<dyn Sink>>,
) -> Result<()> {
    let signals: Vec<String> = [
        ("log records", &settings.logs),
        ("metrics", &settings.metrics),
    ]
    .into_iter()
    .filter_map(|(what, destination)| {
        destination.as_ref().map(|destination| {
            format!(
                "{what} to {} ({})",
                destination.display_url(),
                destination.protocol.name()
            )
        })
    })
    .collect();
    let service = settings
        .resource_attribute("service.name")
        .unwrap_or_default()
        .to_owned();
    let sink = OtlpSink::start(settings, Arc::clone(ledger))?;
    metrics.register(Box::new(
        sink.collector().context("the OTLP exporter's metrics")?,
    ))?;
    // First, so that when the daemon stops its wait for the collector
    // (Sink::settle, up to its own budget) comes before the JSON output's
    // settle starts the clock the output shares with its close: a
    // collector that hangs must not leave the `stopped` line too little
    // time to be written.
    sinks.insert(0, Box::new(sink));
    tracing::info!(
        "exporting over OTLP {}, as service {service}",
        signals.join(" and ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_protocol_is_unset_and_others_are_explained() {
        assert!(matches!(otlp_protocol(""), Ok(OtlpProtocol::Unset)));
        assert!(matches!(otlp_protocol(" grpc "), Ok(OtlpProtocol::Grpc)));
        assert!(matches!(
            otlp_protocol("http/protobuf"),
            Ok(OtlpProtocol::HttpProtobuf)
        ));
        assert!(otlp_protocol("http/json").is_err_and(|why| why.contains("JSON")));
        assert!(otlp_protocol("udp").is_err_and(|why| why.contains("grpc")));
    }
}
