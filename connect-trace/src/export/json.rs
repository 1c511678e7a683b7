//! JSON Lines rendering of connect() attempts (schema: `docs/json-schema.md`).
//!
//! Every line is one valid JSON object whatever the kernel handed us. A comm
//! or a unix path is chosen by the traced program and may hold quotes,
//! newlines, control bytes or invalid UTF-8: the first three are escaped
//! as serde_json escapes them, so no record can end early or forge another
//! line. Invalid UTF-8 is
//! replaced by U+FFFD in the text field, and the exact bytes are kept,
//! hex-encoded, in a sibling `*_hex` field that is present only then.

use std::{borrow::Cow, fmt::Write as _, io};

use serde::Serialize;

use super::json_text as text;
use crate::{
    clock::WallClock,
    decode::sockaddr::{AddrProblem, Address, Family},
    errno,
    report::AttemptReport,
};

/// Renders attempts as JSON Lines into a byte buffer.
#[derive(Debug, Default)]
pub struct JsonLines {
    clock: WallClock,
    /// `YYYY-MM-DDTHH:MM:SS` of the last second rendered: the calendar
    /// arithmetic is done once per second, not once per event.
    second: std::cell::Cell<(u64, [u8; 19])>,
    /// The node (host) name every record carries, if one was given.
    node: Option<std::sync::Arc<str>>,
}

impl JsonLines {
    /// A renderer that maps kernel timestamps with `clock` and names
    /// `node` in every record.
    pub fn new(clock: WallClock, node: Option<std::sync::Arc<str>>) -> Self {
        Self {
            clock,
            second: std::cell::Cell::default(),
            node,
        }
    }

    /// RFC 3339 UTC with nanoseconds, e.g. `2026-11-21T14:18:36.001757296Z`.
    fn timestamp(&self, time: std::time::SystemTime, out: &mut [u8; 30]) {
        let since_epoch = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = since_epoch.as_secs();
        let (cached, mut prefix) = self.second.get();
        if cached != seconds || prefix[0] == 0 {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            prefix.copy_from_slice(&text.as_bytes()[..19]);
            self.second.set((seconds, prefix));
        }
        out[..19].copy_from_slice(&prefix);
        out[19] = b'.';
        let mut nanos = since_epoch.subsec_nanos();
        for digit in out[20..29].iter_mut().rev() {
            *digit = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        out[29] = b'Z';
    }

    /// Updates the monotonic-to-wall-clock offset (call once per batch).
    pub fn resync_clock(&mut self) {
        self.clock.resync();
    }

    /// Appends one line for `report` (with its trailing newline) to `out`.
    ///
    /// Written field by field into `out` ([`super::json_text`]), byte for
    /// byte what serializing [`ConnectLine`] with serde_json gives (the
    /// tests hold it to that), in a fraction of the time.
    pub fn write_attempt(&self, out: &mut Vec<u8>, report: &AttemptReport) -> io::Result<()> {
        let resolved = &report.resolved;
        let workload = report.workload.as_deref();
        let attempt = &resolved.attempt;
        let final_errno = resolved.outcome.final_errno();
        let destination = attempt.destination();
        let comm = Text::new(attempt.comm());
        // An attempt seen only by its handshake made no call to report.
        let call = attempt.call_seen();
        let errno = call.then(|| attempt.errno());
        let known_fd = call && destination.problem != Some(AddrProblem::NotSeen);
        let server_name = report.server_name.as_ref();
        let server_name_hex = server_name.and_then(|name| name.non_utf8_bytes().map(hex));
        let mut ts = [0u8; 30];
        self.timestamp(
            self.clock.to_system_time(attempt.start_monotonic_ns()),
            &mut ts,
        );
        out.extend_from_slice(b"{\"type\":\"connect\",\"ts\":\"");
        out.extend_from_slice(&ts);
        out.extend_from_slice(b"\",\"node\":");
        text::optional_string(out, self.node.as_deref());
        out.extend_from_slice(b",\"pid\":");
        text::number(out, attempt.pid());
        out.extend_from_slice(b",\"tid\":");
        text::number(out, attempt.tid());
        out.extend_from_slice(b",\"uid\":");
        text::number(out, attempt.uid());
        out.extend_from_slice(b",\"gid\":");
        text::number(out, attempt.gid());
        out.extend_from_slice(b",\"comm\":");
        text::string(out, &comm.text);
        if let Some(hex) = &comm.hex {
            out.extend_from_slice(b",\"comm_hex\":");
            text::string(out, hex);
        }
        out.extend_from_slice(b",\"cgroup_id\":");
        text::number(out, attempt.cgroup_id());
        out.extend_from_slice(b",\"cgroup\":");
        text::optional_string(
            out,
            workload.and_then(|workload| workload.cgroup.as_deref()),
        );
        // Containers and pods are rare next to host processes, and nested:
        // serde_json writes them.
        out.extend_from_slice(b",\"container\":");
        serde_json::to_writer(
            &mut *out,
            &workload.and_then(|workload| workload.container.as_ref()),
        )?;
        out.extend_from_slice(b",\"pod\":");
        serde_json::to_writer(
            &mut *out,
            &workload.and_then(|workload| workload.pod.as_ref()),
        )?;
        out.extend_from_slice(b",\"netns\":");
        text::optional_number(out, attempt.netns());
        out.extend_from_slice(b",\"via\":");
        text::name(out, attempt.via().name());
        out.extend_from_slice(b",\"fd\":");
        text::optional_number(out, known_fd.then(|| attempt.fd()));
        out.extend_from_slice(b",\"family\":");
        match destination.family {
            None => text::null(out),
            Some(Family::Other(number)) => text::number(out, number),
            Some(known) => text::name(out, known.name().unwrap_or_default()),
        }
        out.extend_from_slice(b",\"addr\":");
        let mut addr_hex = None;
        match destination.address {
            Address::None => text::null(out),
            Address::V4(ip) => {
                out.push(b'"');
                text::ipv4(out, ip);
                out.push(b'"');
            }
            Address::V6(ip) => {
                // IP text is formatted on the stack: no allocation.
                let mut ip_text = [0u8; IP_TEXT_MAX];
                let ip_text = format_ip(&mut ip_text, ip)?;
                text::string(out, std::str::from_utf8(ip_text).unwrap_or_default());
            }
            Address::UnixPath(path) => {
                let path = Text::new(path);
                text::string(out, &path.text);
                addr_hex = path.hex;
            }
            Address::UnixAbstract(name) => {
                let name = Text::new(name);
                out.extend_from_slice(b"\"@");
                text::escaped(out, &name.text);
                out.push(b'"');
                addr_hex = name.hex;
            }
        }
        if let Some(hex) = &addr_hex {
            out.extend_from_slice(b",\"addr_hex\":");
            text::string(out, hex);
        }
        out.extend_from_slice(b",\"port\":");
        text::optional_number(out, destination.port);
        out.extend_from_slice(b",\"scope_id\":");
        text::optional_number(out, destination.scope_id);
        out.extend_from_slice(b",\"server_name\":");
        text::optional_string(out, server_name.map(|name| name.as_str()));
        if let Some(hex) = &server_name_hex {
            out.extend_from_slice(b",\"server_name_hex\":");
            text::string(out, hex);
        }
        out.extend_from_slice(b",\"addrlen\":");
        text::number(out, attempt.addrlen());
        out.extend_from_slice(b",\"addr_error\":");
        text::optional_name(out, destination.problem.map(|problem| problem.name()));
        out.extend_from_slice(b",\"ret\":");
        text::optional_number(out, call.then(|| attempt.ret()));
        out.extend_from_slice(b",\"errno\":");
        text::optional_number(out, errno);
        out.extend_from_slice(b",\"errno_name\":");
        text::optional_name(out, errno.and_then(errno::name));
        out.extend_from_slice(b",\"errno_class\":");
        text::optional_name(out, errno.and_then(errno::class_name));
        out.extend_from_slice(b",\"latency_ns\":");
        text::optional_number(out, attempt.latency_ns());
        out.extend_from_slice(b",\"outcome\":");
        text::name(out, resolved.outcome.name());
        out.extend_from_slice(b",\"final_errno\":");
        text::optional_number(out, final_errno);
        out.extend_from_slice(b",\"final_errno_name\":");
        text::optional_name(out, final_errno.and_then(errno::name));
        out.extend_from_slice(b",\"final_errno_class\":");
        text::optional_name(out, final_errno.and_then(errno::class_name));
        out.extend_from_slice(b",\"handshake_ns\":");
        text::optional_number(out, resolved.handshake_ns);
        out.extend_from_slice(b",\"repeat\":");
        text::boolean(out, resolved.repeat);
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// Appends one line for a record other than `connect` (`summary`,
/// `started`, `stopped`; schema: `docs/json-schema.md`).
pub fn write_line<W: io::Write, T: Serialize>(out: &mut W, record: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// Bytes chosen by the traced program, made safe for a JSON string.
struct Text<'a> {
    /// The bytes as text; invalid UTF-8 sequences become U+FFFD.
    text: Cow<'a, str>,
    /// Lowercase hex of the exact bytes, only when they are not UTF-8.
    hex: Option<String>,
}

impl<'a> Text<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                text: Cow::Borrowed(text),
                hex: None,
            },
            Err(_) => Self {
                text: String::from_utf8_lossy(bytes),
                hex: Some(hex(bytes)),
            },
        }
    }
}

/// Longest IP text: a full IPv6 address with an embedded IPv4 one.
const IP_TEXT_MAX: usize = 48;

/// Writes `ip` as text into `buffer` and returns the bytes written.
fn format_ip(buffer: &mut [u8; IP_TEXT_MAX], ip: impl std::fmt::Display) -> io::Result<&[u8]> {
    let mut cursor = io::Cursor::new(&mut buffer[..]);
    io::Write::write_fmt(&mut cursor, format_args!("{ip}"))?;
    let len = usize::try_from(cursor.position()).unwrap_or(IP_TEXT_MAX);
    Ok(&buffer[..len])
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use connect_trace_common::abi::{COMM_LEN, ConnectRecord};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::{
        decode::{
            ConnectAttempt,
            attempt::tests::sample_record,
            sockaddr::{self},
        },
        resolve::{Outcome, ResolvedAttempt},
    };

    fn render(record: ConnectRecord) -> (String, Value) {
        let attempt = ConnectAttempt::from_record(record);
        let errno = attempt.errno();
        render_resolved(&ResolvedAttempt {
            attempt,
            outcome: if errno == 0 {
                Outcome::Connected
            } else {
                Outcome::Failed(Some(errno))
            },
            handshake_ns: None,
            repeat: false,
        })
    }

    fn render_resolved(resolved: &ResolvedAttempt) -> (String, Value) {
        render_report(&AttemptReport::new(*resolved))
    }

    fn render_report(report: &AttemptReport) -> (String, Value) {
        let renderer = JsonLines::default();
        let mut out = Vec::new();
        renderer.write_attempt(&mut out, report).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line, oracle::line(&renderer, report), "serde_json's line");
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "exactly one line: {line:?}");
        let value = serde_json::from_str(line.trim_end()).unwrap();
        (line, value)
    }

    fn with_comm(comm: &[u8]) -> ConnectRecord {
        let mut record = sample_record();
        record.comm = [0; COMM_LEN];
        record.comm[..comm.len()].copy_from_slice(comm);
        record
    }

    fn with_unix_path(path: &[u8]) -> ConnectRecord {
        let mut record = sample_record();
        record.addr = [0; 128];
        record.addr[..2].copy_from_slice(&sockaddr::AF_UNIX.to_ne_bytes());
        record.addr[2..2 + path.len()].copy_from_slice(path);
        record.addrlen = i32::try_from(2 + path.len()).unwrap();
        record
    }

    #[test]
    fn an_attempt_without_a_call_has_no_call_fields() {
        let mut record = sample_record();
        record.flags = connect_trace_common::abi::connect_flags::NO_CALL;
        record.via = connect_trace_common::abi::via::KERNEL;
        record.fd = -1;
        record.ret = -115;
        let (_, value) = render(record);
        assert_eq!(value["via"], "kernel");
        for field in [
            "fd",
            "ret",
            "errno",
            "errno_name",
            "errno_class",
            "latency_ns",
        ] {
            assert!(value[field].is_null(), "{field}: {value}");
        }
    }

    #[test]
    fn renders_every_documented_field() {
        let (line, value) = render(sample_record());
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        // `Value` sorts its keys; order them as they stand in the line.
        keys.sort_by_key(|key| line.find(&format!("\"{key}\":")));
        assert_eq!(
            keys,
            [
                "type",
                "ts",
                "node",
                "pid",
                "tid",
                "uid",
                "gid",
                "comm",
                "cgroup_id",
                "cgroup",
                "container",
                "pod",
                "netns",
                "via",
                "fd",
                "family",
                "addr",
                "port",
                "scope_id",
                "server_name",
                "addrlen",
                "addr_error",
                "ret",
                "errno",
                "errno_name",
                "errno_class",
                "latency_ns",
                "outcome",
                "final_errno",
                "final_errno_name",
                "final_errno_class",
                "handshake_ns",
                "repeat"
            ]
        );
        assert_eq!(value["type"], "connect");
        assert_eq!(value["pid"], 42);
        assert_eq!(value["tid"], 43);
        assert_eq!(value["comm"], "curl");
        assert_eq!(value["family"], "inet");
        assert_eq!(value["addr"], "127.0.0.1");
        assert_eq!(value["port"], 80);
        assert_eq!(value["ret"], -111);
        assert_eq!(value["errno"], 111);
        assert_eq!(value["errno_name"], "ECONNREFUSED");
        assert_eq!(value["latency_ns"], 12_345);
        assert_eq!(value["server_name"], Value::Null);
    }

    #[test]
    fn server_names_plain_and_hostile() {
        use crate::dns::ServerName;
        let resolved = ResolvedAttempt {
            attempt: ConnectAttempt::from_record(sample_record()),
            outcome: Outcome::Connected,
            handshake_ns: None,
            repeat: false,
        };
        let named = |name: ServerName| {
            render_report(&AttemptReport {
                server_name: Some(name),
                ..AttemptReport::new(resolved)
            })
        };
        let (_, value) = named(ServerName::from_text("svc.example.test").unwrap());
        assert_eq!(value["server_name"], "svc.example.test");
        assert!(value.get("server_name_hex").is_none());

        // Label bytes a hostile answer chose: a newline and a quote stay
        // inside the string; bytes that are not UTF-8 are kept in hex.
        let name = ServerName::from_labels([&b"x\n\"\xffy"[..], b"evil", b"test"]).unwrap();
        let (line, value) = named(name);
        assert_eq!(value["server_name"], "x\n\"\u{fffd}y.evil.test");
        assert_eq!(value["server_name_hex"], "780a22ff792e6576696c2e74657374");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn timestamp_is_rfc3339_utc_with_nanoseconds() {
        let (_, value) = render(sample_record());
        let ts = value["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
        let fraction = ts.rsplit('.').next().unwrap();
        assert_eq!(fraction.len(), "123456789Z".len(), "{ts}");
        humantime::parse_rfc3339(ts).unwrap();
    }

    #[test]
    fn outcome_fields() {
        let mut record = sample_record();
        record.ret = -libc::EINPROGRESS;
        let attempt = ConnectAttempt::from_record(record);
        let (_, value) = render_resolved(&ResolvedAttempt {
            attempt,
            outcome: Outcome::Failed(Some(libc::ETIMEDOUT)),
            handshake_ns: Some(3_000_000_000),
            repeat: false,
        });
        assert_eq!(value["errno_name"], "EINPROGRESS");
        assert_eq!(value["errno_class"], "in-progress");
        assert_eq!(value["outcome"], "failed");
        assert_eq!(value["final_errno"], libc::ETIMEDOUT);
        assert_eq!(value["final_errno_name"], "ETIMEDOUT");
        assert_eq!(value["final_errno_class"], "timeout");
        assert_eq!(value["handshake_ns"], 3_000_000_000u64);
        assert_eq!(value["repeat"], false);

        let (_, value) = render_resolved(&ResolvedAttempt {
            attempt,
            outcome: Outcome::Canceled,
            handshake_ns: Some(5),
            repeat: true,
        });
        assert_eq!(value["outcome"], "canceled");
        assert_eq!(value["final_errno"], Value::Null);
        assert_eq!(value["final_errno_name"], Value::Null);
        assert_eq!(value["repeat"], true);

        let (_, value) = render_resolved(&ResolvedAttempt {
            attempt,
            outcome: Outcome::Connected,
            handshake_ns: None,
            repeat: false,
        });
        assert_eq!(value["outcome"], "connected");
        assert_eq!(value["final_errno"], 0);
        assert_eq!(value["final_errno_name"], Value::Null);
        assert_eq!(value["handshake_ns"], Value::Null);
    }

    #[test]
    fn cached_timestamps_match_a_full_format() {
        let renderer = JsonLines::default();
        let mut text = [0u8; 30];
        for offset in [0, 999_999_999, 1_000_000_000, 86_400_000_000_123] {
            let time = std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(1_700_000_000_000_000_000 + offset);
            renderer.timestamp(time, &mut text);
            let expected = humantime::format_rfc3339_nanos(time).to_string();
            assert_eq!(std::str::from_utf8(&text).unwrap(), expected);
        }
    }

    #[test]
    fn success_has_null_errno_name() {
        let mut record = sample_record();
        record.ret = 0;
        let (_, value) = render(record);
        assert_eq!(value["errno"], 0);
        assert_eq!(value["errno_name"], Value::Null);
        assert_eq!(value["errno_class"], Value::Null);
    }

    #[test]
    fn hostile_comm_cannot_forge_a_line() {
        let (line, value) = render(with_comm(b"a\"b\\c\n{\"x\":1}"));
        assert_eq!(value["comm"], "a\"b\\c\n{\"x\":1}");
        assert!(value.get("comm_hex").is_none());
        assert!(line.contains(r#""comm":"a\"b\\c\n{\"x\":1}""#), "{line}");
    }

    #[test]
    fn control_bytes_are_escaped() {
        let (line, value) = render(with_comm(b"\x01\x1b[31m\x7f\t"));
        assert_eq!(value["comm"], "\u{1}\u{1b}[31m\u{7f}\t");
        assert!(!line.trim_end().bytes().any(|byte| byte < 0x20), "{line:?}");
    }

    #[test]
    fn invalid_utf8_comm_is_recoverable_from_hex() {
        let (_, value) = render(with_comm(b"x\xff\xfey"));
        assert_eq!(value["comm"], "x\u{fffd}\u{fffd}y");
        assert_eq!(value["comm_hex"], "78fffe79");
    }

    #[test]
    fn unix_paths_plain_abstract_and_hostile() {
        let (_, value) = render(with_unix_path(b"/run/app.sock\0"));
        assert_eq!(value["family"], "unix");
        assert_eq!(value["addr"], "/run/app.sock");
        assert_eq!(value["port"], Value::Null);

        let (_, value) = render(with_unix_path(b"\0my-abstract"));
        assert_eq!(value["addr"], "@my-abstract");

        let (_, value) = render(with_unix_path(b"/tmp/\"\n\xc3("));
        assert_eq!(value["addr"], "/tmp/\"\n\u{fffd}(");
        assert_eq!(value["addr_hex"], "2f746d702f220ac328");
    }

    #[test]
    fn inet6_unspec_and_unknown_families() {
        let mut record = sample_record();
        record.addr = [0; 128];
        record.addr[..2].copy_from_slice(&sockaddr::AF_INET6.to_ne_bytes());
        record.addr[2..4].copy_from_slice(&443u16.to_be_bytes());
        record.addr[8..24].copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        record.addr[24..28].copy_from_slice(&5u32.to_ne_bytes());
        record.addrlen = 28;
        let (_, value) = render(record);
        assert_eq!(value["family"], "inet6");
        assert_eq!(value["addr"], "::1");
        assert_eq!(value["port"], 443);
        assert_eq!(value["scope_id"], 5);

        record.addr[..2].copy_from_slice(&sockaddr::AF_UNSPEC.to_ne_bytes());
        let (_, value) = render(record);
        assert_eq!(value["family"], "unspec");
        assert_eq!(value["addr"], Value::Null);

        record.addr[..2].copy_from_slice(&17u16.to_ne_bytes());
        let (_, value) = render(record);
        assert_eq!(value["family"], 17);
    }

    #[test]
    fn unreadable_and_bad_length_addresses() {
        let mut record = sample_record();
        record.addr_flags = connect_trace_common::abi::addr_flags::UNREADABLE;
        let (_, value) = render(record);
        assert_eq!(value["family"], Value::Null);
        assert_eq!(value["addr"], Value::Null);
        assert_eq!(value["addr_error"], "unreadable");

        let mut record = sample_record();
        record.addrlen = 5;
        let (_, value) = render(record);
        assert_eq!(value["addr_error"], "truncated");
        assert_eq!(value["addrlen"], 5);
    }

    /// The hand-written renderer against serde_json's line, byte for byte,
    /// on the input a traced program can choose: control characters,
    /// quotes, backslashes, invalid UTF-8, multi-byte text, unix paths
    /// (plain, abstract, hostile), and records whose fields are all null.
    #[test]
    fn hostile_input_is_written_as_serde_json_writes_it() {
        use std::sync::Arc;

        use crate::workload::{Container, Metadata, Pod, Runtime, Workload};

        let comms: [&[u8]; 8] = [
            b"curl",
            b"\x00",
            b"\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f",
            b"a\"b\\c\n{\"x\":1}",
            b"x\xff\xfey\xc3(\xe2\x82",
            "é日本🦀\u{2028}".as_bytes(),
            b"\xed\xa0\x80\xf4\x90\x80\x80",
            b"sixteen-bytes-ok",
        ];
        let paths: [&[u8]; 8] = [
            b"/run/app.sock\0",
            b"/tmp/\"\n\\\x01\xc3(\x1b[0m",
            "/srv/ü/日本/🦀.sock\0".as_bytes(),
            b"\0abstract\0with\x1f\xffnul",
            b"\0",
            b"",
            b"/",
            &[b'/'; 107],
        ];
        let hostile: Arc<str> = Arc::from("\"}\n{\"type\":\"connect\"\\\u{1}é🦀");
        let workloads = [
            None,
            Some(Workload::unresolved(9)),
            Some(Workload {
                cgroup_id: 9,
                cgroup: Some(Arc::clone(&hostile)),
                cgroup_v1: false,
                container: Some(Container {
                    id: Arc::from("0123456789abcdef".repeat(4)),
                    name: Some(Arc::clone(&hostile)),
                    image: None,
                    runtime: Some(Runtime::CriO),
                }),
                pod: Some(Pod {
                    name: Some(Arc::clone(&hostile)),
                    namespace: None,
                    uid: Some(Arc::from("uid")),
                    container: Some(Arc::clone(&hostile)),
                }),
                metadata: Metadata::Known,
            }),
        ];
        let renderers = [
            JsonLines::default(),
            JsonLines::new(WallClock::new(), Some(Arc::clone(&hostile))),
        ];
        // Names as a hostile DNS answer may set them: quotes, control
        // characters, bytes that are not UTF-8.
        let server_names = [
            None,
            crate::dns::ServerName::from_text("svc.example.test"),
            crate::dns::ServerName::from_labels([&b"x\n\"\xff\\y"[..], b"\x01", b"test"]),
        ];
        let mut lines = 0;
        for comm in comms {
            for path in paths {
                for no_call in [false, true] {
                    let mut record = with_unix_path(path);
                    record.comm = [0; COMM_LEN];
                    record.comm[..comm.len()].copy_from_slice(comm);
                    if no_call {
                        // Every nullable field null at once.
                        record.flags = connect_trace_common::abi::connect_flags::NO_CALL;
                        record.addr_flags = connect_trace_common::abi::addr_flags::UNREADABLE;
                        record.netns = 0;
                    }
                    for workload in &workloads {
                        for (renderer, server_name) in renderers
                            .iter()
                            .flat_map(|r| server_names.iter().map(move |name| (r, name)))
                        {
                            let report = AttemptReport {
                                server_name: server_name.clone(),
                                workload: workload.clone().map(Arc::new),
                                ..AttemptReport::new(ResolvedAttempt {
                                    attempt: ConnectAttempt::from_record(record),
                                    outcome: Outcome::Failed(None),
                                    handshake_ns: None,
                                    repeat: false,
                                })
                            };
                            let mut out = Vec::new();
                            renderer.write_attempt(&mut out, &report).unwrap();
                            let line = String::from_utf8(out).unwrap();
                            assert_eq!(line, oracle::line(renderer, &report));
                            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
                            serde_json::from_str::<Value>(&line).unwrap();
                            lines += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(lines, 8 * 8 * 2 * 3 * 2 * 3);
    }

    proptest! {
        /// Any record, outcome and workload renders exactly as serde_json
        /// renders the documented struct.
        #[test]
        fn every_line_is_serde_jsons(
            comm in proptest::array::uniform16(any::<u8>()),
            addr_head in proptest::collection::vec(any::<u8>(), 0..40),
            family in prop_oneof![
                Just(sockaddr::AF_INET),
                Just(sockaddr::AF_INET6),
                Just(sockaddr::AF_UNIX),
                Just(sockaddr::AF_UNSPEC),
                any::<u16>(),
            ],
            addrlen in prop_oneof![Just(16), Just(28), Just(110), -2..130i32],
            addr_flags in 0..16u32,
            flags in 0..8u32,
            ret in prop_oneof![Just(0), Just(-111), Just(-115), Just(-512), -200..1i32],
            latency_ns in any::<u64>(),
            via in 0..8u32,
            netns in prop_oneof![Just(0u32), any::<u32>()],
            outcome in prop_oneof![
                Just(Outcome::Connected),
                Just(Outcome::Canceled),
                Just(Outcome::InProgress),
                Just(Outcome::Failed(None)),
                (0..200i32).prop_map(|errno| Outcome::Failed(Some(errno))),
            ],
            handshake_ns in proptest::option::of(any::<u64>()),
            repeat in any::<bool>(),
            workload in proptest::option::of(oracle::workloads()),
            node in proptest::option::of(".{0,12}"),
            server_name in proptest::option::of(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..4)
            ),
        ) {
            let mut record = sample_record();
            record.comm = comm;
            record.addr = [0; 128];
            record.addr[..2].copy_from_slice(&family.to_ne_bytes());
            record.addr[2..2 + addr_head.len()].copy_from_slice(&addr_head);
            record.addrlen = addrlen;
            record.addr_flags = addr_flags;
            record.flags = flags;
            record.ret = ret;
            record.latency_ns = latency_ns;
            record.via = via;
            record.netns = netns;
            let report = AttemptReport {
                resolved: ResolvedAttempt {
                    attempt: ConnectAttempt::from_record(record),
                    outcome,
                    handshake_ns,
                    repeat,
                },
                workload: workload.map(std::sync::Arc::new),
                server_name: server_name.and_then(|labels| {
                    crate::dns::ServerName::from_labels(labels.iter().map(Vec::as_slice))
                }),
            };
            let renderer = JsonLines::new(WallClock::new(), node.map(std::sync::Arc::from));
            let mut out = Vec::new();
            renderer.write_attempt(&mut out, &report).unwrap();
            prop_assert_eq!(String::from_utf8(out).unwrap(), oracle::line(&renderer, &report));
        }
    }

    /// The line as serde_json wrote it before the hand-written renderer:
    /// the reference it must match byte for byte.
    mod oracle {
        use std::{borrow::Cow, sync::Arc};

        use proptest::prelude::*;
        use serde::{Serialize, Serializer};

        use super::super::{IP_TEXT_MAX, JsonLines, Text, format_ip, hex};
        use crate::{
            decode::sockaddr::{AddrProblem, Address, Family},
            errno,
            report::AttemptReport,
            workload::{Container, Metadata, Pod, Runtime, Workload},
        };

        pub(super) fn workloads() -> impl Strategy<Value = Workload> {
            let text = || proptest::option::of(".{0,8}".prop_map(Arc::<str>::from));
            let container = proptest::option::of(
                (
                    "[0-9a-f]{64}",
                    text(),
                    text(),
                    proptest::option::of(prop_oneof![
                        Just(Runtime::Docker),
                        Just(Runtime::Containerd),
                        Just(Runtime::CriO),
                        Just(Runtime::Podman),
                    ]),
                )
                    .prop_map(|(id, name, image, runtime)| Container {
                        id: Arc::from(id),
                        name,
                        image,
                        runtime,
                    }),
            );
            let pod = proptest::option::of((text(), text(), text(), text()).prop_map(
                |(name, namespace, uid, container)| Pod {
                    name,
                    namespace,
                    uid,
                    container,
                },
            ));
            (any::<u64>(), text(), container, pod).prop_map(
                |(cgroup_id, cgroup, container, pod)| Workload {
                    cgroup_id,
                    cgroup,
                    cgroup_v1: false,
                    container,
                    pod,
                    metadata: Metadata::Known,
                },
            )
        }

        pub(super) fn line(renderer: &JsonLines, report: &AttemptReport) -> String {
            let resolved = &report.resolved;
            let workload = report.workload.as_deref();
            let attempt = &resolved.attempt;
            let final_errno = resolved.outcome.final_errno();
            let destination = attempt.destination();
            let comm = Text::new(attempt.comm());
            let mut ip_text = [0u8; IP_TEXT_MAX];
            let addr = match destination.address {
                Address::None => None,
                Address::V4(ip) => Some(Text::new(format_ip(&mut ip_text, ip).unwrap())),
                Address::V6(ip) => Some(Text::new(format_ip(&mut ip_text, ip).unwrap())),
                Address::UnixPath(path) => Some(Text::new(path)),
                Address::UnixAbstract(name) => {
                    let Text { text, hex } = Text::new(name);
                    Some(Text {
                        text: Cow::Owned(format!("@{text}")),
                        hex,
                    })
                }
            };
            let call = attempt.call_seen();
            let errno = call.then(|| attempt.errno());
            let known_fd = call && destination.problem != Some(AddrProblem::NotSeen);
            let server_name = report.server_name.as_ref();
            let server_name_hex = server_name.and_then(|name| name.non_utf8_bytes().map(hex));
            let mut ts = [0u8; 30];
            renderer.timestamp(
                renderer.clock.to_system_time(attempt.start_monotonic_ns()),
                &mut ts,
            );
            let record = ConnectLine {
                kind: "connect",
                ts: std::str::from_utf8(&ts).unwrap(),
                node: renderer.node.as_deref(),
                pid: attempt.pid(),
                tid: attempt.tid(),
                uid: attempt.uid(),
                gid: attempt.gid(),
                comm: &comm.text,
                comm_hex: comm.hex.as_deref(),
                cgroup_id: attempt.cgroup_id(),
                cgroup: workload.and_then(|workload| workload.cgroup.as_deref()),
                container: workload.and_then(|workload| workload.container.as_ref()),
                pod: workload.and_then(|workload| workload.pod.as_ref()),
                netns: attempt.netns(),
                via: attempt.via().name(),
                fd: known_fd.then(|| attempt.fd()),
                family: destination.family,
                addr: addr.as_ref().map(|addr| addr.text.as_ref()),
                addr_hex: addr.as_ref().and_then(|addr| addr.hex.as_deref()),
                port: destination.port,
                scope_id: destination.scope_id,
                server_name: server_name.map(|name| name.as_str()),
                server_name_hex: server_name_hex.as_deref(),
                addrlen: attempt.addrlen(),
                addr_error: destination.problem.map(|problem| problem.name()),
                ret: call.then(|| attempt.ret()),
                errno,
                errno_name: errno.and_then(errno::name),
                errno_class: errno.and_then(errno::class_name),
                latency_ns: attempt.latency_ns(),
                outcome: resolved.outcome.name(),
                final_errno,
                final_errno_name: final_errno.and_then(errno::name),
                final_errno_class: final_errno.and_then(errno::class_name),
                handshake_ns: resolved.handshake_ns,
                repeat: resolved.repeat,
            };
            serde_json::to_string(&record).unwrap() + "\n"
        }

        /// The `"type":"connect"` record. Field order is the documented
        /// order.
        #[derive(Serialize)]
        struct ConnectLine<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            ts: &'a str,
            node: Option<&'a str>,
            pid: u32,
            tid: u32,
            uid: u32,
            gid: u32,
            comm: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            comm_hex: Option<&'a str>,
            cgroup_id: u64,
            cgroup: Option<&'a str>,
            container: Option<&'a Container>,
            pod: Option<&'a Pod>,
            netns: Option<u32>,
            via: &'static str,
            fd: Option<i32>,
            #[serde(serialize_with = "family")]
            family: Option<Family>,
            addr: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            addr_hex: Option<&'a str>,
            port: Option<u16>,
            scope_id: Option<u32>,
            server_name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            server_name_hex: Option<&'a str>,
            addrlen: i32,
            addr_error: Option<&'static str>,
            ret: Option<i32>,
            errno: Option<i32>,
            errno_name: Option<&'static str>,
            errno_class: Option<&'static str>,
            latency_ns: Option<u64>,
            outcome: &'static str,
            final_errno: Option<i32>,
            final_errno_name: Option<&'static str>,
            final_errno_class: Option<&'static str>,
            handshake_ns: Option<u64>,
            repeat: bool,
        }

        #[expect(
            clippy::ref_option,
            reason = "serde's serialize_with passes a reference to the field"
        )]
        fn family<S: Serializer>(
            family: &Option<Family>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match family {
                None => serializer.serialize_none(),
                Some(Family::Other(number)) => serializer.serialize_u16(*number),
                Some(known) => serializer.serialize_str(known.name().unwrap_or_default()),
            }
        }
    }
}
