//! What one attempt looks like in OTLP: a log record whose attributes use
//! the OpenTelemetry semantic conventions where they name a fact, and the
//! `connect_trace.` prefix for our own (docs/otlp.md maps every field).
//!
//! The mapping is written once, as calls on an [`Attributes`] visitor:
//! [`super::encode`] writes them straight into the protobuf encoding, and
//! the tests collect them. It runs on the exporter's thread, never on the
//! pipeline's, and allocates only for text that is not already at hand.

use std::{borrow::Cow, fmt::Write as _, io::Write as _, net::IpAddr};

use connect_trace_common::family;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::SeverityNumber,
    resource::v1::Resource,
};

use super::queue::QueuedAttempt;
use crate::{
    decode::sockaddr::{AddrProblem, Address, Family},
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
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(value.clone())),
                }),
                ..KeyValue::default()
            })
            .collect(),
        ..Resource::default()
    }
}

/// The severity of an attempt's record: WARN for a failure, INFO
/// otherwise; as a number and as text.
pub fn severity(queued: &QueuedAttempt) -> (SeverityNumber, &'static str) {
    if queued.resolved.outcome.is_failure() {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Info, "INFO")
    }
}

/// Takes the attributes of a log record, one at a time.
pub trait Attributes {
    /// A string attribute.
    fn text(&mut self, key: &str, value: &str);
    /// An integer attribute.
    fn int(&mut self, key: &str, value: i64);
    /// A boolean attribute.
    fn boolean(&mut self, key: &str, value: bool);
    /// A floating-point attribute.
    fn double(&mut self, key: &str, value: f64);
}

/// Longest IP text: a full IPv6 address with an embedded IPv4 one.
const IP_TEXT_MAX: usize = 48;

/// The attributes of an attempt's log record, in order.
pub fn attributes(queued: &QueuedAttempt, out: &mut impl Attributes) {
    let QueuedAttempt {
        resolved,
        workload,
        server_name,
        time_unix_nano: _,
    } = queued;
    let attempt = &resolved.attempt;
    let destination = attempt.destination();

    // The peer, as the semantic conventions' network attributes name it.
    let mut ip_text = [0u8; IP_TEXT_MAX];
    if let Some(address) = peer_address(destination.address, &mut ip_text) {
        out.text("network.peer.address", &address);
    }
    if let Some(port) = destination.port {
        out.int("network.peer.port", i64::from(port));
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
        out.text("network.transport", transport);
    }
    match destination.family {
        Some(Family::Inet) => out.text("network.type", "ipv4"),
        Some(Family::Inet6) => out.text("network.type", "ipv6"),
        _ => {}
    }
    // The name the program asked for, when one is known (#14): never a
    // reverse lookup of the address.
    if let Some(name) = server_name {
        out.text("server.address", name);
    }
    if let Some(error) = error_type(resolved.outcome) {
        out.text("error.type", &error);
    }

    // Who made the call.
    out.int("process.pid", i64::from(attempt.pid()));
    out.int("thread.id", i64::from(attempt.tid()));
    out.text(
        "process.executable.name",
        &String::from_utf8_lossy(attempt.comm()),
    );
    out.int("process.real_user.id", i64::from(attempt.uid()));
    if let Some(workload) = workload {
        if let Some(container) = &workload.container {
            out.text("container.id", &container.id);
            if let Some(name) = &container.name {
                out.text("container.name", name);
            }
            if let Some(image) = &container.image {
                out.text("container.image.name", image);
            }
            if let Some(runtime) = container.runtime {
                out.text("container.runtime.name", runtime.as_str());
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
                    out.text(key, value);
                }
            }
        }
        if let Some(cgroup) = &workload.cgroup {
            out.text("connect_trace.cgroup", cgroup);
        }
    }

    // Our own facts.
    out.text("connect_trace.outcome", resolved.outcome.name());
    out.text("connect_trace.via", attempt.via().name());
    // An attempt seen only by its handshake made no call: no errno.
    if attempt.call_seen() {
        let errno = attempt.errno();
        out.int("connect_trace.errno", i64::from(errno));
        if let Some(name) = errno::name(errno) {
            out.text("connect_trace.errno_name", name);
        }
    }
    if let Some(final_errno) = resolved.outcome.final_errno() {
        out.int("connect_trace.final_errno", i64::from(final_errno));
    }
    if let Some(class) = resolved.outcome.final_errno().and_then(errno::class_name) {
        out.text("connect_trace.error_class", class);
    } else if resolved.outcome == Outcome::Canceled {
        out.text("connect_trace.error_class", "canceled");
    }
    out.boolean("connect_trace.repeat", resolved.repeat);
    if let Some(ns) = attempt.latency_ns() {
        out.double("connect_trace.syscall.duration", seconds(ns));
    }
    if let Some(ns) = resolved.handshake_ns {
        out.double("connect_trace.handshake.duration", seconds(ns));
    }
    out.text("connect_trace.family", family::label(attempt.family_slot()));
    if let Some(problem) = destination.problem {
        out.text("connect_trace.addr_error", problem.name());
    }
    out.int(
        "connect_trace.cgroup_id",
        i64::try_from(attempt.cgroup_id()).unwrap_or(i64::MAX),
    );
    if let Some(netns) = attempt.netns() {
        out.int("connect_trace.netns", i64::from(netns));
    }
}

/// `error.type`: the final errno's name, `canceled`, or `_OTHER` (the
/// conventions' word for an error without a name); `None` when the
/// attempt did not fail.
pub fn error_type(outcome: Outcome) -> Option<Cow<'static, str>> {
    match outcome {
        Outcome::Failed(Some(errno)) => {
            Some(errno::name(errno).map_or_else(|| Cow::Owned(errno.to_string()), Cow::Borrowed))
        }
        Outcome::Failed(None) => Some(Cow::Borrowed("_OTHER")),
        Outcome::Canceled => Some(Cow::Borrowed("canceled")),
        Outcome::Connected | Outcome::InProgress => None,
    }
}

/// The peer's address as text: the IP (written into `ip_text`), the unix
/// socket's path, or `@` and an abstract socket's name (bytes that are not
/// UTF-8 become U+FFFD; the JSON record keeps them exactly).
fn peer_address<'a>(
    address: Address<'a>,
    ip_text: &'a mut [u8; IP_TEXT_MAX],
) -> Option<Cow<'a, str>> {
    let ip = match address {
        Address::None => return None,
        Address::V4(ip) => IpAddr::V4(ip),
        Address::V6(ip) => IpAddr::V6(ip),
        Address::UnixPath(path) => return Some(String::from_utf8_lossy(path)),
        Address::UnixAbstract(name) => {
            return Some(Cow::Owned(format!("@{}", String::from_utf8_lossy(name))));
        }
    };
    let mut cursor = std::io::Cursor::new(&mut ip_text[..]);
    if write!(cursor, "{ip}").is_err() {
        return Some(Cow::Owned(ip.to_string()));
    }
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    std::str::from_utf8(&ip_text[..len]).ok().map(Cow::Borrowed)
}

/// Writes the body into `out`: one short sentence for people, such as
/// `curl (pid 4618) could not connect to 127.0.0.1:1: ECONNREFUSED`.
pub fn sentence(queued: &QueuedAttempt, out: &mut String) {
    let resolved = &queued.resolved;
    let attempt = &resolved.attempt;
    let destination = attempt.destination();
    let mut ip_text = [0u8; IP_TEXT_MAX];
    let address = peer_address(destination.address, &mut ip_text);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{} (pid {}) ",
        String::from_utf8_lossy(attempt.comm()),
        attempt.pid()
    );
    let before_destination = |out: &mut String| {
        let _ = match (resolved.repeat, resolved.outcome) {
            (true, _) => write!(out, "called connect() again on its socket to "),
            (false, Outcome::Connected) => write!(out, "connected to "),
            (false, Outcome::Failed(_)) => write!(out, "could not connect to "),
            (false, Outcome::Canceled) => write!(out, "canceled its connect to "),
            (false, Outcome::InProgress) => write!(out, "was still connecting to "),
        };
    };
    before_destination(out);
    if let Some(name) = &queued.server_name {
        let _ = write!(out, "{name} (");
    }
    let _ = match (&address, destination.port) {
        (Some(ip), Some(port)) if destination.family == Some(Family::Inet6) => {
            write!(out, "[{ip}]:{port}")
        }
        (Some(ip), Some(port)) => write!(out, "{ip}:{port}"),
        (Some(path), None) => write!(out, "{path}"),
        (None, _) => match (destination.family, destination.problem) {
            (Some(Family::Unspec), _) => {
                write!(out, "AF_UNSPEC (dissolving the association)")
            }
            (_, Some(AddrProblem::NotSeen)) => {
                write!(out, "an address connect-trace did not see")
            }
            _ => write!(out, "an address it could not read"),
        },
    };
    if queued.server_name.is_some() {
        out.push(')');
    }
    let _ = if resolved.repeat {
        match errno::name(attempt.errno()) {
            Some(name) => write!(out, " (a repeat, not a new attempt): {name}"),
            None => write!(out, " (a repeat, not a new attempt)"),
        }
    } else {
        match resolved.outcome {
            Outcome::Connected => Ok(()),
            Outcome::Failed(Some(errno)) => match errno::name(errno) {
                Some(name) => write!(out, ": {name}"),
                None => write!(out, ": errno {errno}"),
            },
            Outcome::Failed(None) => write!(out, " (the kernel did not say why)"),
            Outcome::Canceled => write!(out, " before it completed"),
            Outcome::InProgress => write!(out, " when connect-trace stopped waiting"),
        }
    };
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use connect_trace_common::abi::ConnectRecord;

    use super::*;
    use crate::{
        decode::{ConnectAttempt, attempt::tests::sample_record},
        resolve::ResolvedAttempt,
        workload::{Container, Metadata, Pod, Runtime, Workload},
    };

    /// An attribute's value, as the tests compare them.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Seen {
        Text(String),
        Int(i64),
        Bool(bool),
        Double(f64),
    }

    /// Collects attributes by key, refusing a key seen twice.
    #[derive(Debug, Default)]
    pub(crate) struct Collected(pub(crate) BTreeMap<String, Seen>);

    impl Collected {
        fn put(&mut self, key: &str, value: Seen) {
            assert!(
                self.0.insert(key.to_owned(), value).is_none(),
                "{key} twice"
            );
        }
    }

    impl Attributes for Collected {
        fn text(&mut self, key: &str, value: &str) {
            self.put(key, Seen::Text(value.to_owned()));
        }
        fn int(&mut self, key: &str, value: i64) {
            self.put(key, Seen::Int(value));
        }
        fn boolean(&mut self, key: &str, value: bool) {
            self.put(key, Seen::Bool(value));
        }
        fn double(&mut self, key: &str, value: f64) {
            self.put(key, Seen::Double(value));
        }
    }

    pub(crate) fn queued(
        record: ConnectRecord,
        outcome: Outcome,
        handshake_ns: Option<u64>,
    ) -> QueuedAttempt {
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

    fn collect(queued: &QueuedAttempt) -> BTreeMap<String, Seen> {
        let mut collected = Collected::default();
        attributes(queued, &mut collected);
        collected.0
    }

    fn said(queued: &QueuedAttempt) -> String {
        let mut text = String::new();
        sentence(queued, &mut text);
        text
    }

    fn text(value: &str) -> Seen {
        Seen::Text(value.to_owned())
    }

    #[test]
    fn a_refused_connect_names_the_peer_and_the_error() {
        let item = queued(sample_record(), Outcome::Failed(Some(111)), Some(42_000));
        let attributes = collect(&item);
        assert_eq!(attributes["network.peer.address"], text("127.0.0.1"));
        assert_eq!(attributes["network.peer.port"], Seen::Int(80));
        assert_eq!(attributes["network.type"], text("ipv4"));
        assert_eq!(attributes["error.type"], text("ECONNREFUSED"));
        assert_eq!(attributes["connect_trace.outcome"], text("failed"));
        assert_eq!(attributes["connect_trace.error_class"], text("refused"));
        assert_eq!(attributes["process.pid"], Seen::Int(42));
        assert_eq!(
            attributes["connect_trace.handshake.duration"],
            Seen::Double(42e-6)
        );
        assert!(!attributes.contains_key("server.address"));
        assert!(!attributes.contains_key("container.id"));
        assert_eq!(severity(&item).1, "WARN");
        assert_eq!(
            said(&item),
            "curl (pid 42) could not connect to 127.0.0.1:80: ECONNREFUSED"
        );
    }

    #[test]
    fn success_has_no_error_type_and_is_info() {
        let item = queued(sample_record(), Outcome::Connected, Some(1));
        let attributes = collect(&item);
        assert!(!attributes.contains_key("error.type"));
        assert_eq!(attributes["connect_trace.final_errno"], Seen::Int(0));
        assert_eq!(severity(&item).1, "INFO");
        assert_eq!(said(&item), "curl (pid 42) connected to 127.0.0.1:80");
        let canceled = queued(sample_record(), Outcome::Canceled, Some(1));
        let named = collect(&canceled);
        assert_eq!(named["error.type"], text("canceled"));
        assert!(!named.contains_key("connect_trace.final_errno"));
        assert_eq!(
            said(&canceled),
            "curl (pid 42) canceled its connect to 127.0.0.1:80 before it completed"
        );
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
        let attributes = collect(&item);
        for (key, value) in [
            ("server.address", "db.internal"),
            ("container.id", "abc"),
            ("container.name", "app"),
            ("container.runtime.name", "containerd"),
            ("k8s.pod.name", "web-1"),
            ("k8s.namespace.name", "shop"),
            ("k8s.container.name", "app"),
            ("connect_trace.cgroup", "/kubepods/pod1/abc"),
            ("error.type", "ETIMEDOUT"),
        ] {
            assert_eq!(attributes[key], text(value), "{key}");
        }
        assert!(!attributes.contains_key("k8s.pod.uid"));
        assert_eq!(
            said(&item),
            "curl (pid 42) could not connect to db.internal (127.0.0.1:80): ETIMEDOUT"
        );
    }

    #[test]
    fn via_is_named_and_a_handshake_only_attempt_has_no_call_facts() {
        let item = queued(sample_record(), Outcome::Connected, Some(1));
        let attributes = collect(&item);
        assert_eq!(attributes["connect_trace.via"], text("syscall"));
        assert!(attributes.contains_key("connect_trace.errno"));
        assert!(attributes.contains_key("connect_trace.syscall.duration"));
        let mut record = sample_record();
        record.via = connect_trace_common::abi::via::KERNEL;
        record.flags |= connect_trace_common::abi::connect_flags::NO_CALL;
        let kernel = queued(record, Outcome::Failed(Some(111)), Some(1));
        let attributes = collect(&kernel);
        assert_eq!(attributes["connect_trace.via"], text("kernel"));
        assert_eq!(attributes["error.type"], text("ECONNREFUSED"));
        assert_eq!(attributes["network.transport"], text("tcp"));
        for absent in [
            "connect_trace.errno",
            "connect_trace.errno_name",
            "connect_trace.syscall.duration",
        ] {
            assert!(!attributes.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn a_call_whose_start_was_not_seen_says_so() {
        let mut record = sample_record();
        record.addr_flags |= connect_trace_common::abi::addr_flags::NOT_SEEN;
        let item = queued(record, Outcome::Failed(Some(111)), None);
        let attributes = collect(&item);
        assert_eq!(attributes["connect_trace.addr_error"], text("not_seen"));
        assert!(!attributes.contains_key("network.peer.address"));
        assert!(!attributes.contains_key("connect_trace.syscall.duration"));
        assert_eq!(
            said(&item),
            "curl (pid 42) could not connect to an address connect-trace did not see: ECONNREFUSED"
        );
    }

    #[test]
    fn unknown_errors_are_other() {
        assert_eq!(error_type(Outcome::Failed(None)).as_deref(), Some("_OTHER"));
        assert_eq!(
            error_type(Outcome::Failed(Some(4000))).as_deref(),
            Some("4000")
        );
        assert_eq!(error_type(Outcome::InProgress), None);
    }

    #[test]
    fn ipv6_and_unix_peers() {
        let mut peer = [0u8; IP_TEXT_MAX];
        let full = "1111:2222:3333:4444:5555:6666:7777:8888".parse().unwrap();
        assert_eq!(
            peer_address(Address::V6(full), &mut peer).as_deref(),
            Some("1111:2222:3333:4444:5555:6666:7777:8888")
        );
        let mut peer = [0u8; IP_TEXT_MAX];
        assert_eq!(
            peer_address(Address::UnixAbstract(b"bus\xff"), &mut peer).as_deref(),
            Some("@bus\u{fffd}")
        );
    }
}
