//! The options of `connect-trace run`.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;
use connect_trace::{
    kernel::DEFAULT_RING_BUFFER_BYTES,
    resolve::{DEFAULT_MAX_PENDING, DEFAULT_RESOLVE_TIMEOUT},
};

use crate::cli::workloads::WorkloadOptions;

/// Options of `connect-trace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read options from this TOML file: keys are the long option names
    /// (`ring-buffer-size = 8388608`). Command-line options win over
    /// environment variables, which win over the file.
    #[arg(long, env = "CONNECT_TRACE_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Trace only this process id (all its threads); filtered in the kernel.
    #[arg(long, env = "CONNECT_TRACE_PID", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) pid: Option<u32>,
    /// Report only attempts that failed: calls that returned 0 are skipped
    /// in the kernel, and non-blocking ones that later connect are dropped.
    #[arg(long, env = "CONNECT_TRACE_FAILURES_ONLY")]
    pub(super) failures_only: bool,
    /// How long, in seconds, an attempt may wait for its handshake to end
    /// before it is reported with outcome `in_progress`.
    #[arg(long, env = "CONNECT_TRACE_RESOLVE_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_RESOLVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(super) resolve_timeout: u64,
    /// The most attempts that may wait for their handshake at once (and
    /// handshake ends that may wait for their call); beyond it attempts are
    /// written at once as `in_progress` and counted. Bounds the memory a
    /// burst can take: about 350 bytes each.
    #[arg(long, env = "CONNECT_TRACE_MAX_PENDING", value_name = "N", default_value_t = DEFAULT_MAX_PENDING as u64, value_parser = clap::value_parser!(u64).range(16..=4_194_304))]
    pub(super) max_pending: u64,
    /// Append records to this file instead of writing them to stdout.
    #[arg(long, env = "CONNECT_TRACE_OUTPUT", short, value_name = "FILE")]
    pub(super) output: Option<PathBuf>,
    /// Seconds between `{"type":"summary"}` records (failure rates and the
    /// top failing destinations, processes, errors and cgroups); 0 for none.
    #[arg(
        long,
        env = "CONNECT_TRACE_INTERVAL",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub(super) interval: u64,
    /// Write only summary and lifecycle records, no record per connect().
    #[arg(long, env = "CONNECT_TRACE_SUMMARY_ONLY")]
    pub(super) summary_only: bool,
    /// How many keys each summary lists per dimension (and how many
    /// `connect_trace_top_*` series the metrics carry).
    #[arg(long, env = "CONNECT_TRACE_TOP", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(super) top: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics and health at
    /// /healthz. A bare port binds 127.0.0.1. Off by default.
    #[arg(long, env = "CONNECT_TRACE_METRICS", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(super) metrics: Option<SocketAddr>,
    /// Ring buffer size in bytes (a power of two, from 4096 to 256 MiB).
    /// Each call record takes 248 bytes in it.
    #[arg(long, env = "CONNECT_TRACE_RING_BUFFER_SIZE", value_name = "BYTES", default_value_t = DEFAULT_RING_BUFFER_BYTES)]
    pub(super) ring_buffer_size: u32,
    /// Trace only this cgroup v2 and those below it (a path relative to the
    /// cgroup v2 root, such as `/docker/<id>` or
    /// `/kubepods.slice/kubepods-burstable.slice`); filtered in the kernel.
    #[arg(long, env = "CONNECT_TRACE_CGROUP", value_name = "PATH")]
    pub(super) cgroup: Option<String>,
    /// Report only this container: its full id, a prefix of it, or its name
    /// (Docker's, or the container's name in its pod).
    #[arg(long, env = "CONNECT_TRACE_CONTAINER", value_name = "ID|NAME")]
    pub(super) container: Option<String>,
    /// Report only this Kubernetes pod, as NAMESPACE/NAME.
    #[arg(long, env = "CONNECT_TRACE_POD", value_name = "NAMESPACE/NAME")]
    pub(super) pod: Option<String>,
    /// Report only pods of this Kubernetes namespace.
    #[arg(long, env = "CONNECT_TRACE_NAMESPACE", value_name = "NS")]
    pub(super) namespace: Option<String>,
    /// Do not name containers and pods (no cgroup paths, no runtime
    /// lookups); records keep `cgroup_id`.
    #[arg(long, env = "CONNECT_TRACE_NO_WORKLOADS")]
    pub(super) no_workloads: bool,
    /// The Docker Engine API socket asked for container names.
    #[arg(
        long,
        env = "CONNECT_TRACE_DOCKER_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/docker.sock"
    )]
    pub(super) docker_socket: PathBuf,
    /// containerd's API socket asked for container and pod names (by
    /// default the first of /run/containerd/containerd.sock and
    /// /run/docker/containerd/containerd.sock that exists).
    #[arg(long, env = "CONNECT_TRACE_CONTAINERD_SOCKET", value_name = "PATH")]
    pub(super) containerd_socket: Option<PathBuf>,
    /// The node (host) name every record and `connect_trace_info` carry;
    /// the DaemonSet sets it from the downward API.
    #[arg(long, env = "CONNECT_TRACE_NODE_NAME", value_name = "NAME")]
    pub(super) node_name: Option<String>,
    /// How often to collect records when the kernel has not woken us, in
    /// milliseconds. Bounds how late a record can reach the output.
    #[arg(long, env = "CONNECT_TRACE_POLL_INTERVAL_MS", value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(super) poll_interval_ms: u64,
    /// Enable the kernel's statistics of BPF programs for as long as the
    /// daemon runs (needs CAP_SYS_ADMIN; every BPF program on the host then
    /// pays two clock reads per run) and, with --metrics, export the run
    /// time and run count of each of the daemon's programs.
    #[arg(long, env = "CONNECT_TRACE_BPF_STATS")]
    pub(super) bpf_stats: bool,
    /// Do not name destinations by the DNS answers their callers received
    /// (every `server_name` is then null). Attaches no packet program, so
    /// no packet on the host pays anything for it.
    #[arg(long, env = "CONNECT_TRACE_NO_DNS")]
    pub(super) no_dns: bool,
    /// Also take multicast DNS answers (port 5353: `.local` names). Off by
    /// default, because any host on the link can send one.
    #[arg(long, env = "CONNECT_TRACE_DNS_MULTICAST")]
    pub(super) dns_multicast: bool,
    /// How many (network namespace, address) names the DNS name cache keeps;
    /// the least recently answered is evicted for a new one, and counted.
    /// About 430 bytes each at most.
    #[arg(long, env = "CONNECT_TRACE_DNS_CACHE_SIZE", value_name = "N", default_value_t = connect_trace::dns::cache::DEFAULT_CAPACITY as u64, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub(super) dns_cache_size: u64,
    /// OpenTelemetry export (`--otlp-*`).
    #[command(flatten)]
    pub(super) otlp: crate::cli::otlp::OtlpArgs,
    /// For the benchmark: attach programs that return at once, to measure
    /// what the hooks alone cost. Nothing is traced.
    #[arg(long, hide = true)]
    pub(super) empty_programs: bool,
    /// Where each option's value came from, for error messages.
    #[arg(skip)]
    pub origins: crate::cli::config::Origins,
}

/// `9750` → 127.0.0.1:9750; anything else must be a full socket address.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is neither a port nor an address like 127.0.0.1:9750"))
}

impl RunArgs {
    /// The options that name workloads and pick among them.
    pub(super) fn workloads(&self) -> WorkloadOptions<'_> {
        WorkloadOptions {
            container: self.container.as_deref(),
            pod: self.pod.as_deref(),
            namespace: self.namespace.as_deref(),
            no_workloads: self.no_workloads,
            docker_socket: &self.docker_socket,
            containerd_socket: self.containerd_socket.as_deref(),
        }
    }
}
