//! What one attempt looks like in OTLP: a log record whose attributes use
//! the OpenTelemetry semantic conventions where they name a fact, and the
//! `connect_trace.` prefix for our own (docs/otlp.md maps every field).
//!
//! Runs on the exporter's thread, never on the pipeline's: this is where
//! the formatting and the allocations are.

use std::{fmt::Write as _, net::IpAddr};

use connect_trace_common::family;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, SeverityNumber},
    resource::v1::Resource,
};

use super::queue::QueuedAttempt;
use crate::{
    decode::sockaddr::{Address, Family},
    errno,
    resolve::Outcome,
};

/// The name of every log record's event.
pub const EVENT_NAME: &str = "connect_trace.attempt";

/// The instrumentation scope of everything exported: connect-trace itself.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "connect-trace".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// The resource of everything exported.
pub fn resource(attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: attributes
            .iter()
            .map(|(key, value)| string(key, value.clone()))
            .collect(),
        ..Resource::default()
    }
}

/// The log record of one attempt; `observed_unix_nano` is when the
/// pipeline handed it over.
pub fn log_record(queued: &QueuedAttempt, observed_unix_nano: u64) -> LogRecord {
    let failure = queued.resolved.outcome.is_failure();
    let (severity, severity_text) = if failure {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Info, "INFO")
    };
    LogRecord {
        time_unix_nano: queued.time_unix_nano,
        observed_time_unix_nano: observed_unix_nano,
        severity_number: severity as i32,
        severity_text: severity_text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(sentence(queued))),
        }),
        attributes: attributes(queued),
        event_name: EVENT_NAME.into(),
        ..LogRecord::default()
    }
}

/// The attributes of an attempt's log record.
pub fn attributes(queued: &QueuedAttempt) -> Vec<KeyValue> {
    let QueuedAttempt {
        resolved,
        workload,
        server_name,
        time_unix_nano: _,
    } = queued;
    let attempt = &resolved.attempt;
    let destination = attempt.destination();
    let mut out = Vec::with_capacity(24);

    // The peer, as the semantic conventions' network attributes name it.
    if let Some(address) = peer_address(destination.address) {
        out.push(string("network.peer.address", address));
    }
    if let Some(port) = destination.port {
        out.push(int("network.peer.port", i64::from(port)));
    }
    // A SYN went out: TCP (or MPTCP, which runs over it). Without one the
    // record does not say whether an inet socket was TCP or UDP.
    let sent_syn = attempt.handshake_id().is_some() || resolved.handshake_ns.is_some();
    let transport = match destination.family {
        Some(Family::Unix) => Some("unix"),
        Some(Family::Inet | Family::Inet6) if sent_syn => Some("tcp"),
        _ => None,
    };
    if let Some(transport) = transport {
        out.push(string("network.transport", transport));
    }
    match destination.family {
        Some(Family::Inet) => out.push(string("network.type", "ipv4")),
        Some(Family::Inet6) => out.push(string("network.type", "ipv6")),
        _ => {}
    }
    // The name the program asked for, when one is known (#14): never a
    // reverse lookup of the address.
    if let Some(name) = server_name {
        out.push(string("server.address", name.to_string()));
    }
    if let Some(error) = error_type(resolved.outcome) {
        out.push(string("error.type", error));
    }

    // Who made the call.
    out.push(int("process.pid", i64::from(attempt.pid())));
    out.push(int("thread.id", i64::from(attempt.tid())));
    out.push(string(
        "process.executable.name",
        String::from_utf8_lossy(attempt.comm()).into_owned(),
    ));
    out.push(int("process.real_user.id", i64::from(attempt.uid())));
    if let Some(workload) = workload {
        if let Some(container) = &workload.container {
            out.push(string("container.id", container.id.to_string()));
            if let Some(name) = &container.name {
                out.push(string("container.name", name.to_string()));
            }
            if let Some(image) = &container.image {
                out.push(string("container.image.name", image.to_string()));
            }
            if let Some(runtime) = container.runtime {
                out.push(string("container.runtime.name", runtime.as_str()));
            }
        }
        if let Some(pod) = &workload.pod {
            let named = [
                ("k8s.pod.name", &pod.name),
                ("k8s.namespace.name", &pod.namespace),
                ("k8s.pod.uid", &pod.uid),
                ("k8s.container.name", &pod.container),
            ];
            for (key, value) in named {
                if let Some(value) = value {
                    out.push(string(key, value.to_string()));
                }
            }
        }
        if let Some(cgroup) = &workload.cgroup {
            out.push(string("connect_trace.cgroup", cgroup.to_string()));
        }
    }

    // Our own facts.
    let errno = attempt.errno();
    out.push(string("connect_trace.outcome", resolved.outcome.name()));
    out.push(int("connect_trace.errno", i64::from(errno)));
    if let Some(name) = errno::name(errno) {
        out.push(string("connect_trace.errno_name", name));
    }
    if let Some(final_errno) = resolved.outcome.final_errno() {
        out.push(int("connect_trace.final_errno", i64::from(final_errno)));
    }
    if let Some(class) = resolved.outcome.final_errno().and_then(errno::class_name) {
        out.push(string("connect_trace.error_class", class));
    } else if resolved.outcome == Outcome::Canceled {
        out.push(string("connect_trace.error_class", "canceled"));
    }
    out.push(boolean("connect_trace.repeat", resolved.repeat));
    out.push(double(
        "connect_trace.syscall.duration",
        seconds(attempt.latency_ns()),
    ));
    if let Some(ns) = resolved.handshake_ns {
        out.push(double("connect_trace.handshake.duration", seconds(ns)));
    }
    out.push(string(
        "connect_trace.family",
        family::label(attempt.family_slot()),
    ));
    if let Some(problem) = destination.problem {
        out.push(string("connect_trace.addr_error", problem.name()));
    }
    out.push(int(
        "connect_trace.cgroup_id",
        i64::try_from(attempt.cgroup_id()).unwrap_or(i64::MAX),
    ));
    if let Some(netns) = attempt.netns() {
        out.push(int("connect_trace.netns", i64::from(netns)));
    }
    // `connect_trace.via` (how the connect was made: syscall, io_uring,
    // ...) goes here once the kernel reports it (#12).
    out
}

/// `error.type`: the final errno's name, `canceled`, or `_OTHER` (the
/// conventions' word for an error without a name); `None` when the
/// attempt did not fail.
pub fn error_type(outcome: Outcome) -> Option<String> {
    match outcome {
        Outcome::Failed(Some(errno)) => {
            Some(errno::name(errno).map_or_else(|| errno.to_string(), str::to_owned))
        }
        Outcome::Failed(None) => Some("_OTHER".into()),
        Outcome::Canceled => Some("canceled".into()),
        Outcome::Connected | Outcome::InProgress => None,
    }
}

/// The peer's address as text: the IP, the unix socket's path, or `@` and
/// an abstract socket's name (bytes that are not UTF-8 become U+FFFD; the
/// JSON record keeps them exactly).
fn peer_address(address: Address<'_>) -> Option<String> {
    match address {
        Address::None => None,
        Address::V4(ip) => Some(IpAddr::V4(ip).to_string()),
        Address::V6(ip) => Some(IpAddr::V6(ip).to_string()),
        Address::UnixPath(path) => Some(String::from_utf8_lossy(path).into_owned()),
        Address::UnixAbstract(name) => Some(format!("@{}", String::from_utf8_lossy(name))),
    }
}

/// The body: one short sentence for people, such as
/// `curl (pid 4618) could not connect to 127.0.0.1:1: ECONNREFUSED`.
pub fn sentence(queued: &QueuedAttempt) -> String {
    let resolved = &queued.resolved;
    let attempt = &resolved.attempt;
    let destination = attempt.destination();
    let mut to = match (peer_address(destination.address), destination.port) {
        (Some(ip), Some(port)) if destination.family == Some(Family::Inet6) => {
            format!("[{ip}]:{port}")
        }
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(path), None) => path,
        (None, _) => match destination.family {
            Some(Family::Unspec) => "AF_UNSPEC (dissolving the association)".to_owned(),
            _ => "an address it could not read".to_owned(),
        },
    };
    if let Some(name) = &queued.server_name {
        to = format!("{name} ({to})");
    }
    let who = format!(
        "{} (pid {})",
        String::from_utf8_lossy(attempt.comm()),
        attempt.pid()
    );
    let mut text = if resolved.repeat {
        format!("{who} called connect() again on its socket to {to} (a repeat, not a new attempt)")
    } else {
        match resolved.outcome {
            Outcome::Connected => format!("{who} connected to {to}"),
            Outcome::Failed(Some(errno)) => format!(
                "{who} could not connect to {to}: {}",
                errno::name(errno).map_or_else(|| format!("errno {errno}"), str::to_owned)
            ),
            Outcome::Failed(None) => {
                format!("{who} could not connect to {to} (the kernel did not say why)")
            }
            Outcome::Canceled => format!("{who} canceled its connect to {to} before it completed"),
            Outcome::InProgress => {
                format!("{who} was still connecting to {to} when connect-trace stopped waiting")
            }
        }
    };
    if resolved.repeat
        && let Some(name) = errno::name(attempt.errno())
    {
        // Writing to a String cannot fail.
        let _ = write!(text, ": {name}");
    }
    text
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, Value::IntValue(value))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    attribute(key, Value::BoolValue(value))
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, Value::DoubleValue(value))
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use connect_trace_common::abi::ConnectRecord;

    use super::*;
    use crate::{
        decode::{ConnectAttempt, attempt::tests::sample_record},
        resolve::ResolvedAttempt,
        workload::{Container, Metadata, Pod, Runtime, Workload},
    };

    fn queued(record: ConnectRecord, outcome: Outcome, handshake_ns: Option<u64>) -> QueuedAttempt {
        QueuedAttempt {
            resolved: ResolvedAttempt {
                attempt: ConnectAttempt::from_record(record),
                outcome,
                handshake_ns,
                repeat: false,
            },
            workload: None,
            server_name: None,
            time_unix_nano: 1,
        }
    }

    fn by_key(attributes: &[KeyValue]) -> BTreeMap<String, Value> {
        attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value.unwrap()))
            .collect()
    }

    #[test]
    fn a_refused_connect_names_the_peer_and_the_error() {
        let record = sample_record();
        let attempt = ConnectAttempt::from_record(record);
        let item = queued(record, Outcome::Failed(Some(111)), Some(42_000));
        let attributes = by_key(&attributes(&item));
        let text = |key: &str| match &attributes[key] {
            Value::StringValue(text) => text.clone(),
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(text("error.type"), "ECONNREFUSED");
        assert_eq!(text("connect_trace.outcome"), "failed");
        assert_eq!(text("connect_trace.error_class"), "refused");
        assert_eq!(
            attributes["process.pid"],
            Value::IntValue(i64::from(attempt.pid()))
        );
        assert_eq!(
            attributes["connect_trace.handshake.duration"],
            Value::DoubleValue(42e-6)
        );
        assert!(!attributes.contains_key("server.address"));
        assert!(!attributes.contains_key("container.id"));
        let record = log_record(&item, 2);
        assert_eq!(record.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(record.event_name, EVENT_NAME);
    }

    #[test]
    fn success_has_no_error_type_and_is_info() {
        let item = queued(sample_record(), Outcome::Connected, Some(1));
        let attributes = by_key(&attributes(&item));
        assert!(!attributes.contains_key("error.type"));
        assert_eq!(attributes["connect_trace.final_errno"], Value::IntValue(0));
        assert_eq!(
            log_record(&item, 2).severity_number,
            SeverityNumber::Info as i32
        );
        let canceled = queued(sample_record(), Outcome::Canceled, Some(1));
        let named = by_key(&super::attributes(&canceled));
        assert_eq!(named["error.type"], Value::StringValue("canceled".into()));
        assert!(!named.contains_key("connect_trace.final_errno"));
        assert!(sentence(&canceled).contains("canceled its connect"));
    }

    #[test]
    fn the_workload_and_the_server_name_are_named() {
        let mut item = queued(sample_record(), Outcome::Failed(Some(110)), None);
        item.server_name = Some(Arc::from("db.internal"));
        item.workload = Some(Arc::new(Workload {
            cgroup_id: 9,
            cgroup: Some(Arc::from("/kubepods/pod1/abc")),
            cgroup_v1: false,
            container: Some(Container {
                id: Arc::from("abc"),
                name: Some(Arc::from("app")),
                image: None,
                runtime: Some(Runtime::Containerd),
            }),
            pod: Some(Pod {
                name: Some(Arc::from("web-1")),
                namespace: Some(Arc::from("shop")),
                uid: None,
                container: Some(Arc::from("app")),
            }),
            metadata: Metadata::Known,
        }));
        let attributes = by_key(&attributes(&item));
        for (key, value) in [
            ("server.address", "db.internal"),
            ("container.id", "abc"),
            ("container.name", "app"),
            ("container.runtime.name", "containerd"),
            ("k8s.pod.name", "web-1"),
            ("k8s.namespace.name", "shop"),
            ("k8s.container.name", "app"),
            ("error.type", "ETIMEDOUT"),
        ] {
            assert_eq!(attributes[key], Value::StringValue(value.into()), "{key}");
        }
        assert!(!attributes.contains_key("k8s.pod.uid"));
        assert!(
            sentence(&item).contains("db.internal ("),
            "{}",
            sentence(&item)
        );
    }

    #[test]
    fn unknown_errors_are_other() {
        assert_eq!(error_type(Outcome::Failed(None)).as_deref(), Some("_OTHER"));
        assert_eq!(error_type(Outcome::InProgress), None);
    }
}
