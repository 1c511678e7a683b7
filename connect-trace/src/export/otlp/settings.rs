//! Where and how to export over OTLP: the `--otlp-*` options and the
//! standard `OTEL_*` variables, checked once, at start-up, so that a typo
//! stops the daemon with a clear message instead of losing data later.
//!
//! The variables are the ones the OpenTelemetry SDKs read
//! (docs/otlp.md lists them); connect-trace is not an SDK, so it reads the
//! subset that means something for it.

use std::time::Duration;

use hyper::{
    Uri,
    header::{HeaderName, HeaderValue},
};
use thiserror::Error;

/// The service name when none is given.
pub const DEFAULT_SERVICE_NAME: &str = "connect-trace";
/// How long one export request may take (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// How long a log record may wait for a batch to fill
/// (`OTEL_BLRP_SCHEDULE_DELAY`).
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(1);
/// The most log records waiting to be exported (`OTEL_BLRP_MAX_QUEUE_SIZE`):
/// about 300 bytes each, so 2.4 MB at most. Larger than the SDKs' 2,048
/// because a connect storm is exactly when the records matter.
pub const DEFAULT_MAX_QUEUE: usize = 8192;
/// The most log records in one export request
/// (`OTEL_EXPORTER_OTLP_MAX_EXPORT_BATCH_SIZE`'s SDK default).
pub const DEFAULT_MAX_BATCH: usize = 512;

/// A setting that cannot work.
#[derive(Debug, Error)]
#[error("{what}: {problem}")]
pub struct SettingsError {
    /// The option or variable, and its value.
    pub what: String,
    /// What is wrong with it.
    pub problem: String,
}

impl SettingsError {
    fn new(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318); the default, as
    /// the OTLP specification says.
    HttpProtobuf,
}

impl Protocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Where one signal (logs or metrics) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// How.
    pub protocol: Protocol,
    /// The full URL: for OTLP/HTTP with the signal's path (`/v1/logs`), for
    /// gRPC only scheme, host and port.
    pub url: Uri,
}

impl Destination {
    /// The URL as people write it (`http://collector:4317`, without the
    /// `/` a bare authority is given).
    pub fn display_url(&self) -> String {
        let url = self.url.to_string();
        match url.strip_suffix('/') {
            Some(bare) if self.url.path() == "/" => bare.to_owned(),
            _ => url,
        }
    }
}

/// What the command line gave (clap has already applied the variables of
/// these options).
#[derive(Debug, Clone, Default)]
pub struct OtlpOptions {
    /// `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL.
    pub endpoint: Option<String>,
    /// `--otlp-protocol` / `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<Protocol>,
    /// `--otlp-headers` / `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,...`.
    pub headers: Option<String>,
    /// `--node-name`: the resource's `k8s.node.name`.
    pub node_name: Option<String>,
    /// This host's name: the resource's `host.name`.
    pub host_name: Option<String>,
}

/// Everything the exporter needs, checked.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// Where log records go; `None`: they are not exported.
    pub logs: Option<Destination>,
    /// Where metrics go; `None`: they are not exported.
    pub metrics: Option<Destination>,
    /// Sent with every request (gRPC metadata or HTTP headers).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The resource attributes, in order, each key once.
    pub resource: Vec<(String, String)>,
    /// How long one export request may take.
    pub timeout: Duration,
    /// How often metrics are exported.
    pub metric_interval: Duration,
    /// How long a log record may wait for its batch to fill.
    pub schedule_delay: Duration,
    /// The most log records waiting to be exported; beyond it new ones are
    /// dropped and counted.
    pub max_queue: usize,
    /// The most log records in one request.
    pub max_batch: usize,
}

impl OtlpSettings {
    /// The settings from `options` and the variables `var` reads (the
    /// process environment, or a test's); `None` when no endpoint is given
    /// or exporting is turned off.
    pub fn resolve(
        options: OtlpOptions,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        // The specification reads an empty variable as an unset one.
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if let Some(disabled) = var("OTEL_SDK_DISABLED")
            && disabled.trim().eq_ignore_ascii_case("true")
        {
            return Ok(None);
        }
        let protocol = options.protocol.unwrap_or(Protocol::HttpProtobuf);
        let base = options.endpoint.filter(|url| !url.trim().is_empty());
        let logs = destination(
            protocol,
            base.as_deref(),
            var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT").as_deref(),
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "/v1/logs",
        )?
        .filter(|_| exporter_on(var("OTEL_LOGS_EXPORTER"), "OTEL_LOGS_EXPORTER").unwrap_or(true));
        let metrics = destination(
            protocol,
            base.as_deref(),
            var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").as_deref(),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "/v1/metrics",
        )?
        .filter(|_| {
            exporter_on(var("OTEL_METRICS_EXPORTER"), "OTEL_METRICS_EXPORTER").unwrap_or(true)
        });
        for name in ["OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER"] {
            exporter_on(var(name), name)?;
        }
        if logs.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let headers = match options.headers.filter(|text| !text.trim().is_empty()) {
            Some(text) => headers(&text)?,
            None => Vec::new(),
        };
        let max_queue = number(
            &var,
            "OTEL_BLRP_MAX_QUEUE_SIZE",
            DEFAULT_MAX_QUEUE,
            1,
            1 << 20,
        )?;
        let max_batch = number(
            &var,
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            DEFAULT_MAX_BATCH,
            1,
            1 << 20,
        )?
        .min(max_queue);
        Ok(Some(Self {
            logs,
            metrics,
            headers,
            resource: resource(&options.node_name, &options.host_name, &var)?,
            timeout: millis(
                &var,
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                DEFAULT_TIMEOUT,
                1,
                600_000,
            )?,
            metric_interval: millis(
                &var,
                "OTEL_METRIC_EXPORT_INTERVAL",
                DEFAULT_METRIC_INTERVAL,
                100,
                86_400_000,
            )?,
            schedule_delay: millis(
                &var,
                "OTEL_BLRP_SCHEDULE_DELAY",
                DEFAULT_SCHEDULE_DELAY,
                1,
                600_000,
            )?,
            max_queue,
            max_batch,
        }))
    }

    /// The resource attribute `key`, if set.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// `OTEL_LOGS_EXPORTER` and `OTEL_METRICS_EXPORTER` (`name`): `otlp`, the
/// default, or `none`.
fn exporter_on(value: Option<String>, name: &str) -> Result<bool, SettingsError> {
    match value.as_deref().map(str::trim) {
        None | Some("otlp") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(SettingsError::new(
            format!("{name}={other}"),
            "connect-trace exports only over OTLP: give `otlp` or `none`",
        )),
    }
}

/// A signal's URL: its own variable as given, else the base endpoint with
/// the signal's path appended (OTLP/HTTP) or as is (gRPC).
fn destination(
    protocol: Protocol,
    base: Option<&str>,
    specific: Option<&str>,
    specific_name: &str,
    path: &str,
) -> Result<Option<Destination>, SettingsError> {
    let (text, what, append) = match (specific, base) {
        (Some(url), _) => (url, format!("{specific_name}={url}"), false),
        (None, Some(url)) => (url, format!("the OTLP endpoint `{url}`"), true),
        (None, None) => return Ok(None),
    };
    let text = text.trim();
    let uri: Uri = text
        .parse()
        .map_err(|error| SettingsError::new(&what, format!("not a URL ({error})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(SettingsError::new(
                &what,
                "https needs TLS, which this build of connect-trace does not include; use a plain-text (http://) collector, such as an agent on the node",
            ));
        }
        _ => {
            return Err(SettingsError::new(
                &what,
                "give a URL such as http://collector:4317 (gRPC) or http://collector:4318 (OTLP/HTTP)",
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(SettingsError::new(&what, "the URL names no host"));
    };
    let url = match protocol {
        Protocol::Grpc => {
            if !matches!(uri.path(), "" | "/") {
                return Err(SettingsError::new(
                    &what,
                    "an OTLP/gRPC endpoint has no path: give only http://host:port",
                ));
            }
            format!("http://{authority}")
        }
        Protocol::HttpProtobuf if append => {
            format!(
                "http://{authority}{}{path}",
                uri.path().trim_end_matches('/')
            )
        }
        Protocol::HttpProtobuf => text.to_owned(),
    };
    let url = url
        .parse()
        .map_err(|error| SettingsError::new(&what, format!("not a URL ({error})")))?;
    Ok(Some(Destination { protocol, url }))
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs, values percent-encoded.
fn headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, SettingsError> {
    let what = "the OTLP headers (--otlp-headers or OTEL_EXPORTER_OTLP_HEADERS)";
    pairs(text)
        .map_err(|problem| SettingsError::new(what, problem))?
        .into_iter()
        .map(|(key, value)| {
            // gRPC metadata keys are lower case; HTTP ignores case.
            let name = HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| SettingsError::new(what, format!("`{key}` is not a header name")))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                SettingsError::new(what, format!("the value of `{key}` is not a header value"))
            })?;
            Ok((name, value))
        })
        .collect()
}

/// The resource: ours, then `OTEL_RESOURCE_ATTRIBUTES` over them, then
/// `OTEL_SERVICE_NAME` over `service.name`.
fn resource(
    node: &Option<String>,
    host: &Option<String>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, SettingsError> {
    let mut resource: Vec<(String, String)> = vec![
        ("service.name".into(), DEFAULT_SERVICE_NAME.into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
    ];
    let mut set = |key: &str, value: &str| match resource.iter_mut().find(|(name, _)| name == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => resource.push((key.to_owned(), value.to_owned())),
    };
    if let Some(host) = host.as_deref().filter(|host| !host.is_empty()) {
        set("host.name", host);
    }
    if let Some(node) = node.as_deref().filter(|node| !node.is_empty()) {
        set("k8s.node.name", node);
    }
    if let Some(text) = var("OTEL_RESOURCE_ATTRIBUTES") {
        let given = pairs(&text).map_err(|problem| {
            SettingsError::new(format!("OTEL_RESOURCE_ATTRIBUTES={text}"), problem)
        })?;
        for (key, value) in given {
            set(&key, &value);
        }
    }
    if let Some(name) = var("OTEL_SERVICE_NAME") {
        set("service.name", name.trim());
    }
    Ok(resource)
}

/// `key=value,key=value`, spaces around either trimmed, values
/// percent-decoded (the W3C Baggage form the specification uses).
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let Some((key, value)) = entry.split_once('=') else {
                return Err(format!("`{entry}` is not key=value"));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("`{entry}` has no key"));
            }
            Ok((key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it
/// is, and bytes that are not UTF-8 become U+FFFD.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A count from variable `name`, `default` when unset.
fn number(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, SettingsError> {
    let Some(text) = var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(SettingsError::new(
            format!("{name}={text}"),
            format!("give a whole number from {min} to {max}"),
        )),
    }
}

/// Milliseconds from variable `name`, `default` when unset.
fn millis(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<Duration, SettingsError> {
    let Some(text) = var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(Duration::from_millis(value)),
        _ => Err(SettingsError::new(
            format!("{name}={text}"),
            format!("give milliseconds, from {min} to {max}"),
        )),
    }
}

/// This host's name, as `hostname` prints it (the UTS namespace's).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        options: OtlpOptions,
        vars: &[(&str, &str)],
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        OtlpSettings::resolve(options, &|name| vars.get(name).cloned())
    }

    fn endpoint(url: &str, protocol: Option<Protocol>) -> OtlpOptions {
        OtlpOptions {
            endpoint: Some(url.to_owned()),
            protocol,
            ..OtlpOptions::default()
        }
    }

    #[test]
    fn nothing_given_is_off() {
        assert!(resolve(OtlpOptions::default(), &[]).unwrap().is_none());
        assert!(resolve(endpoint(" ", None), &[]).unwrap().is_none());
    }

    #[test]
    fn http_appends_the_signal_paths_and_grpc_does_not() {
        let http = resolve(endpoint("http://collector:4318", None), &[])
            .unwrap()
            .unwrap();
        assert_eq!(http.logs.unwrap().url, "http://collector:4318/v1/logs");
        assert_eq!(
            http.metrics.unwrap().url,
            "http://collector:4318/v1/metrics"
        );
        let prefixed = resolve(endpoint("http://gw/otlp/", None), &[])
            .unwrap()
            .unwrap();
        assert_eq!(prefixed.logs.unwrap().url, "http://gw/otlp/v1/logs");
        let grpc = resolve(
            endpoint("http://collector:4317/", Some(Protocol::Grpc)),
            &[],
        )
        .unwrap()
        .unwrap();
        let logs = grpc.logs.unwrap();
        assert_eq!(logs.protocol, Protocol::Grpc);
        assert_eq!(logs.url, "http://collector:4317/");
        assert_eq!(logs.display_url(), "http://collector:4317");
    }

    #[test]
    fn signal_endpoints_are_taken_as_given() {
        let settings = resolve(
            OtlpOptions::default(),
            &[(
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:9999/ingest",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.logs.unwrap().url, "http://logs:9999/ingest");
        assert!(settings.metrics.is_none());
    }

    #[test]
    fn a_signal_can_be_turned_off() {
        let settings = resolve(
            endpoint("http://c:4318", None),
            &[("OTEL_LOGS_EXPORTER", "none")],
        )
        .unwrap()
        .unwrap();
        assert!(settings.logs.is_none());
        assert!(settings.metrics.is_some());
        let error = resolve(
            endpoint("http://c:4318", None),
            &[("OTEL_METRICS_EXPORTER", "prometheus")],
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("OTEL_METRICS_EXPORTER"),
            "{error}"
        );
        let off = resolve(
            endpoint("http://c:4318", None),
            &[("OTEL_SDK_DISABLED", "true")],
        )
        .unwrap();
        assert!(off.is_none());
    }

    #[test]
    fn bad_endpoints_are_explained() {
        for (url, words) in [
            ("https://c:4318", "TLS"),
            ("c:4318", "give a URL"),
            ("ftp://c", "give a URL"),
            ("http://", "not a URL"),
        ] {
            let error = resolve(endpoint(url, None), &[]).unwrap_err().to_string();
            assert!(error.contains(words), "{url}: {error}");
        }
        let error = resolve(endpoint("http://c:4317/v1", Some(Protocol::Grpc)), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("no path"), "{error}");
    }

    #[test]
    fn headers_are_decoded_and_checked() {
        let mut options = endpoint("http://c:4318", None);
        options.headers = Some("Authorization=Bearer%20abc , x-tenant=a=b".into());
        let settings = resolve(options.clone(), &[]).unwrap().unwrap();
        assert_eq!(settings.headers.len(), 2);
        assert_eq!(settings.headers[0].0, "authorization");
        assert_eq!(settings.headers[0].1, "Bearer abc");
        assert_eq!(settings.headers[1].1, "a=b");
        options.headers = Some("novalue".into());
        let error = resolve(options.clone(), &[]).unwrap_err().to_string();
        assert!(error.contains("not key=value"), "{error}");
        options.headers = Some("bad key=1".into());
        let error = resolve(options, &[]).unwrap_err().to_string();
        assert!(error.contains("not a header name"), "{error}");
    }

    #[test]
    fn resource_layers_ours_then_the_variables() {
        let options = OtlpOptions {
            node_name: Some("node-1".into()),
            host_name: Some("host-1".into()),
            ..endpoint("http://c:4318", None)
        };
        let settings = resolve(
            options.clone(),
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod,service.name=from-attrs,host.name=h%2F2",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.resource_attribute("service.name"),
            Some("from-attrs")
        );
        assert_eq!(settings.resource_attribute("host.name"), Some("h/2"));
        assert_eq!(settings.resource_attribute("k8s.node.name"), Some("node-1"));
        assert_eq!(
            settings.resource_attribute("deployment.environment.name"),
            Some("prod")
        );
        let named = resolve(
            options,
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
                ("OTEL_SERVICE_NAME", "edge-tracer"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            named.resource_attribute("service.name"),
            Some("edge-tracer")
        );
        let plain = resolve(endpoint("http://c:4318", None), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            plain.resource_attribute("service.name"),
            Some("connect-trace")
        );
        assert_eq!(plain.resource_attribute("k8s.node.name"), None);
    }

    #[test]
    fn numbers_are_checked() {
        let settings = resolve(
            endpoint("http://c:4318", None),
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
                ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "512"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.metric_interval, Duration::from_millis(500));
        assert_eq!(settings.max_queue, 100);
        assert_eq!(settings.max_batch, 100, "a batch is at most the queue");
        let error = resolve(
            endpoint("http://c:4318", None),
            &[("OTEL_BLRP_MAX_QUEUE_SIZE", "0")],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("OTEL_BLRP_MAX_QUEUE_SIZE=0"), "{error}");
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}");
    }
}
