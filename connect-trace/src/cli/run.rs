//! `connect-trace run`: attach, drive the pipeline from signals and timers,
//! stop cleanly. Everything else is the library's.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use connect_trace::{
    clock::WallClock,
    delivery::Ledger,
    export::{
        Sink, Started,
        http::{self, Health},
        jsonl::JsonLinesSink,
        output::{Limits, Output},
        program_stats::ProgramStatsCollector,
        prometheus::{LedgerCounts, Metrics, PrometheusSink},
    },
    kernel::{
        CgroupFilter, DEFAULT_RING_BUFFER_BYTES, KernelCounters, KernelStats, LoadError, Tracer,
        TracerConfig, privileges, program_stats::ProgramStats,
    },
    live::{Live, LiveConfig},
    pipeline::{Pipeline, PipelineConfig, identify::Identity, reader::EventReader},
    resolve::{DEFAULT_MAX_PENDING, DEFAULT_RESOLVE_TIMEOUT, ResolverConfig},
    workload::{
        self, WorkloadConfig, Workloads, cgroupfs::CgroupFs, filter::WorkloadFilter,
        lookup::LookupConfig,
    },
};
use tokio::signal::unix::{SignalKind, signal};

use super::notify::notify;

/// Options of `connect-trace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read options from this TOML file: keys are the long option names
    /// (`ring-buffer-size = 8388608`). Command-line options win over
    /// environment variables, which win over the file.
    #[arg(long, env = "CONNECT_TRACE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Trace only this process id (all its threads); filtered in the kernel.
    #[arg(long, env = "CONNECT_TRACE_PID", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pid: Option<u32>,
    /// Report only attempts that failed: calls that returned 0 are skipped
    /// in the kernel, and non-blocking ones that later connect are dropped.
    #[arg(long, env = "CONNECT_TRACE_FAILURES_ONLY")]
    failures_only: bool,
    /// How long, in seconds, an attempt may wait for its handshake to end
    /// before it is reported with outcome `in_progress`.
    #[arg(long, env = "CONNECT_TRACE_RESOLVE_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_RESOLVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    resolve_timeout: u64,
    /// The most attempts that may wait for their handshake at once (and
    /// handshake ends that may wait for their call); beyond it attempts are
    /// written at once as `in_progress` and counted. Bounds the memory a
    /// burst can take: about 350 bytes each.
    #[arg(long, env = "CONNECT_TRACE_MAX_PENDING", value_name = "N", default_value_t = DEFAULT_MAX_PENDING as u64, value_parser = clap::value_parser!(u64).range(16..=4_194_304))]
    max_pending: u64,
    /// Append records to this file instead of writing them to stdout.
    #[arg(long, env = "CONNECT_TRACE_OUTPUT", short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds between `{"type":"summary"}` records (failure rates and the
    /// top failing destinations, processes, errors and cgroups); 0 for none.
    #[arg(
        long,
        env = "CONNECT_TRACE_INTERVAL",
        value_name = "SECS",
        default_value_t = 10
    )]
    interval: u64,
    /// Write only summary and lifecycle records, no record per connect().
    #[arg(long, env = "CONNECT_TRACE_SUMMARY_ONLY")]
    summary_only: bool,
    /// How many keys each summary lists per dimension (and how many
    /// `connect_trace_top_*` series the metrics carry).
    #[arg(long, env = "CONNECT_TRACE_TOP", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    top: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics and health at
    /// /healthz. A bare port binds 127.0.0.1. Off by default.
    #[arg(long, env = "CONNECT_TRACE_METRICS", value_name = "ADDR", value_parser = parse_listen_addr)]
    metrics: Option<SocketAddr>,
    /// Ring buffer size in bytes (a power of two, from 4096 to 256 MiB).
    /// Each call record takes 248 bytes in it.
    #[arg(long, env = "CONNECT_TRACE_RING_BUFFER_SIZE", value_name = "BYTES", default_value_t = DEFAULT_RING_BUFFER_BYTES)]
    ring_buffer_size: u32,
    /// Trace only this cgroup v2 and those below it (a path relative to the
    /// cgroup v2 root, such as `/docker/<id>` or
    /// `/kubepods.slice/kubepods-burstable.slice`); filtered in the kernel.
    #[arg(long, env = "CONNECT_TRACE_CGROUP", value_name = "PATH")]
    cgroup: Option<String>,
    /// Report only this container: its full id, a prefix of it, or its name
    /// (Docker's, or the container's name in its pod).
    #[arg(long, env = "CONNECT_TRACE_CONTAINER", value_name = "ID|NAME")]
    container: Option<String>,
    /// Report only this Kubernetes pod, as NAMESPACE/NAME.
    #[arg(long, env = "CONNECT_TRACE_POD", value_name = "NAMESPACE/NAME")]
    pod: Option<String>,
    /// Report only pods of this Kubernetes namespace.
    #[arg(long, env = "CONNECT_TRACE_NAMESPACE", value_name = "NS")]
    namespace: Option<String>,
    /// Do not name containers and pods (no cgroup paths, no runtime
    /// lookups); records keep `cgroup_id`.
    #[arg(long, env = "CONNECT_TRACE_NO_WORKLOADS")]
    no_workloads: bool,
    /// The Docker Engine API socket asked for container names.
    #[arg(
        long,
        env = "CONNECT_TRACE_DOCKER_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/docker.sock"
    )]
    docker_socket: PathBuf,
    /// containerd's API socket asked for container and pod names (by
    /// default the first of /run/containerd/containerd.sock and
    /// /run/docker/containerd/containerd.sock that exists).
    #[arg(long, env = "CONNECT_TRACE_CONTAINERD_SOCKET", value_name = "PATH")]
    containerd_socket: Option<PathBuf>,
    /// The node (host) name every record and `connect_trace_info` carry;
    /// the DaemonSet sets it from the downward API.
    #[arg(long, env = "CONNECT_TRACE_NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,
    /// How often to collect records when the kernel has not woken us, in
    /// milliseconds. Bounds how late a record can reach the output.
    #[arg(long, env = "CONNECT_TRACE_POLL_INTERVAL_MS", value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    poll_interval_ms: u64,
    /// Enable the kernel's statistics of BPF programs for as long as the
    /// daemon runs (needs CAP_SYS_ADMIN; every BPF program on the host then
    /// pays two clock reads per run) and, with --metrics, export the run
    /// time and run count of each of the daemon's programs.
    #[arg(long, env = "CONNECT_TRACE_BPF_STATS")]
    bpf_stats: bool,
    /// OpenTelemetry export (`--otlp-*`).
    #[command(flatten)]
    otlp: super::otlp::OtlpArgs,
    /// For the benchmark: attach programs that return at once, to measure
    /// what the hooks alone cost. Nothing is traced.
    #[arg(long, hide = true)]
    empty_programs: bool,
    /// Where each option's value came from, for error messages.
    #[arg(skip)]
    pub origins: super::config::Origins,
}

/// `9750` → 127.0.0.1:9750; anything else must be a full socket address.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is neither a port nor an address like 127.0.0.1:9750"))
}

/// How often newly lost records are reported on stderr and unresolved
/// attempts checked against the timeout.
pub(super) const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// How often the kernel's table of followed handshakes is swept for
/// entries whose end it never saw.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until SIGINT or SIGTERM, or until the output goes away.
pub async fn run(args: RunArgs) -> Result<()> {
    let ledger = Arc::new(Ledger::default());
    let output = match &args.output {
        None => Output::stdout(Arc::clone(&ledger), Limits::default()),
        Some(path) => Output::file(path, Arc::clone(&ledger), Limits::default())
            .with_context(|| format!("opening --output {}", path.display()))?,
    };
    if let Some(pid) = args.pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        tracing::warn!(
            "--pid {pid}: no such process now; nothing is traced until one with this id makes a call"
        );
    }
    let (mut interrupt, mut terminate, mut hangup) = (
        signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
    );
    let listener = match args.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on --metrics {addr}"))?,
        ),
        None => None,
    };
    let filter = workload_filter(&args.workloads())?;
    let otlp = args.otlp.settings(args.node_name.as_deref())?;
    let mut tracer = Tracer::load(&TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
        cgroup: kernel_cgroup_filter(args.cgroup.as_deref())?,
        empty_programs: args.empty_programs,
        ..TracerConfig::default()
    })
    .map_err(|error| match error {
        LoadError::RingBufferSize { .. } => anyhow::Error::new(error).context(format!(
            "--ring-buffer-size from {}",
            args.origins.of("ring_buffer_size")
        )),
        error => error.into(),
    })?;
    let mut reader = EventReader::new(
        tracer.take_events()?,
        Duration::from_millis(args.poll_interval_ms),
    )
    .context("watching the ring buffer")?;
    let kernel = tracer.stats();
    let counts = Arc::new(LedgerCounts {
        ledger: Arc::clone(&ledger),
        kernel: Arc::clone(&kernel),
    });
    let node: Option<Arc<str>> = args.node_name.as_deref().map(Arc::from);
    let metrics = Arc::new(Metrics::new(Arc::clone(&counts) as _, node.as_deref())?);
    if args.bpf_stats {
        // Before capabilities are dropped: enabling needs CAP_SYS_ADMIN.
        let stats = ProgramStats::enable(tracer.program_ids())?;
        metrics.register(Box::new(ProgramStatsCollector::new(stats)?))?;
    }
    let health = Arc::new(Health::default());
    health.watch_output(output.progress());
    // `/live` (what `top --from` shows) is served next to the metrics.
    let live = listener.as_ref().map(|_| {
        Live::new(&LiveConfig {
            node: node.clone(),
            ..LiveConfig::default()
        })
        .with_counts(counts)
    });
    let server = listener.map(|listener| {
        tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            live.clone(),
        ))
    });
    let mut sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(JsonLinesSink::new(output, !args.summary_only, node)),
        Box::new(PrometheusSink::new(Arc::clone(&metrics))),
    ];
    sinks.extend(live.map(|live| Box::new(live.sink()) as Box<dyn Sink>));
    let config = PipelineConfig {
        resolver: ResolverConfig {
            timeout: Duration::from_secs(args.resolve_timeout),
            failures_only: args.failures_only,
            max_pending: usize::try_from(args.max_pending).unwrap_or(usize::MAX),
            max_early: usize::try_from(args.max_pending).unwrap_or(usize::MAX),
        },
        top: usize::try_from(args.top).unwrap_or(usize::MAX),
    };
    drop_capabilities();
    if let Some(otlp) = otlp {
        super::otlp::start(otlp, &ledger, &metrics, &mut sinks)?;
    }
    let identity = start_identity(&args.workloads(), filter, Some(&metrics))?;
    let mut pipeline = Pipeline::new(
        config,
        Arc::clone(&kernel),
        Arc::clone(&ledger),
        sinks,
        identity,
    );
    metrics.set_attached(true);
    health.set_attached(true);
    health.drained(WallClock::monotonic_now_ns());
    announce(&tracer, &args, &mut pipeline)?;

    let mut reported = KernelCounters::default();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    // Older than any handshake the resolver still waits for.
    let stale_after = Duration::from_secs(args.resolve_timeout) + SWEEP_INTERVAL;
    let summaries = args.interval > 0;
    let mut summary_tick = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    summary_tick.tick().await;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => pipeline.reopen()?,
            _ = housekeeping.tick() => {
                reported = report_new_losses(&kernel, reported);
                pipeline.expire()?;
            }
            _ = summary_tick.tick(), if summaries => pipeline.summarize()?,
            _ = sweep.tick() => {
                let swept = tracer.sweep_pending(WallClock::monotonic_now_ns(), u64::try_from(stale_after.as_nanos()).unwrap_or(u64::MAX)).context("sweeping the kernel's handshakes")?;
                ledger.handshakes_expired(swept.expired);
                if swept.calls_abandoned > 0 {
                    tracing::debug!("removed {} in-flight entries of threads gone before their exit was seen", swept.calls_abandoned);
                }
            }
            ready = reader.wait() => {
                ready.context("waiting on the ring buffer")?;
                pipeline.drain(&mut reader, |_| {})?;
                health.drained(WallClock::monotonic_now_ns());
            }
        }
    }

    if let Err(error) = notify("STOPPING=1") {
        tracing::debug!("could not notify systemd that we are stopping: {error}");
    }
    let delivery = pipeline.stop(&mut reader, summaries)?;
    metrics.set_attached(false);
    health.set_attached(false);
    drop(tracer);
    if let Some(server) = server {
        server.abort();
    }
    tracing::info!("stopped; {}", delivery.describe());
    Ok(())
}

/// Everything that needs privileges is done (programs attached, maps and
/// sockets open): drops the capabilities, before any thread of ours
/// starts, since threads inherit them.
pub(super) fn drop_capabilities() {
    match privileges::drop_after_attach() {
        Ok(kept) if kept.is_empty() => tracing::debug!("dropped every capability"),
        Ok(kept) => tracing::debug!("dropped every capability but {kept:?}"),
        Err(error) => tracing::warn!("could not drop capabilities: {error}"),
    }
}

/// The options that name workloads and pick among them; `top` has them too.
pub(super) struct WorkloadOptions<'a> {
    pub container: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub no_workloads: bool,
    pub docker_socket: &'a std::path::Path,
    pub containerd_socket: Option<&'a std::path::Path>,
}

impl RunArgs {
    fn workloads(&self) -> WorkloadOptions<'_> {
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

/// The daemon-side workload filter of `--container`, `--pod` and
/// `--namespace` (`--cgroup` runs in the kernel).
pub(super) fn workload_filter(args: &WorkloadOptions<'_>) -> Result<Option<WorkloadFilter>> {
    let given = [
        args.container.map(WorkloadFilter::container),
        args.pod.map(WorkloadFilter::pod),
        args.namespace.map(WorkloadFilter::namespace),
    ];
    let mut filters = given.into_iter().flatten();
    let filter = filters.next().transpose()?;
    if filters.next().is_some() {
        bail!("give at most one of --container, --pod and --namespace");
    }
    if filter.is_some() && args.no_workloads {
        bail!(
            "--container, --pod and --namespace need workload identity, which --no-workloads turns off"
        );
    }
    Ok(filter)
}

/// `--cgroup PATH` as the kernel tests it: the cgroup's id and depth.
pub(super) fn kernel_cgroup_filter(path: Option<&str>) -> Result<Option<CgroupFilter>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let WorkloadFilter::Cgroup(path) = WorkloadFilter::cgroup(path)? else {
        return Ok(None);
    };
    let cgroups = CgroupFs::system().context("--cgroup needs the cgroup v2 hierarchy")?;
    let target = workload::filter::kernel_target(&cgroups, &path)
        .with_context(|| format!("--cgroup {path}"))?;
    if target.level == 0 {
        // The root: every process.
        return Ok(None);
    }
    Ok(Some(CgroupFilter {
        id: target.id,
        level: target.level,
    }))
}

/// Starts naming workloads, unless `--no-workloads`; exports its counters
/// with `metrics`.
pub(super) fn start_identity(
    args: &WorkloadOptions<'_>,
    filter: Option<WorkloadFilter>,
    metrics: Option<&Metrics>,
) -> Result<Option<Identity>> {
    if args.no_workloads {
        return Ok(None);
    }
    let lookups = LookupConfig {
        docker_socket: Some(args.docker_socket.to_owned()),
        containerd_sockets: args.containerd_socket.map_or_else(
            || LookupConfig::default().containerd_sockets,
            |socket| vec![socket.to_owned()],
        ),
        ..LookupConfig::default()
    };
    let config = WorkloadConfig {
        lookups: Some(lookups),
        ..WorkloadConfig::default()
    };
    let workloads = match Workloads::start(config) {
        Ok(workloads) => workloads,
        Err(error) => {
            tracing::warn!("containers and pods will not be named: {error}");
            return Ok(None);
        }
    };
    if let Some(metrics) = metrics {
        metrics.watch_workloads(workloads.counters())?;
    }
    Ok(Some(Identity::new(workloads, filter)))
}

/// Tracing is live: tells the log, the sinks (a `started` record) and
/// systemd.
fn announce(tracer: &Tracer, args: &RunArgs, pipeline: &mut Pipeline) -> Result<()> {
    let where_to = args
        .output
        .as_ref()
        .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string());
    let metrics = args
        .metrics
        .map(|addr| format!("; metrics at http://{addr}/metrics"))
        .unwrap_or_default();
    tracing::info!(
        "tracing connect() with programs {:?}; writing JSON Lines to {where_to}{metrics}",
        tracer.program_ids()
    );
    tracing::debug!(
        "following TCP handshakes with the {}",
        tracer.handshake_hook()
    );
    for (member, problem) in tracer.btf_problems() {
        tracing::warn!("{problem}; {}", member.without);
    }
    if let Some(problem) = tracer.io_uring_problem() {
        tracing::warn!(
            "io_uring connect requests are seen only by their TCP handshakes ({problem})"
        );
    }
    pipeline.started(&Started {
        kind: "started",
        ts: SystemTime::now(),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        programs: tracer.program_ids().to_vec(),
        handshake_hook: tracer.handshake_hook(),
        btf_missing: tracer
            .btf_problems()
            .iter()
            .map(|(member, _)| member.name())
            .collect(),
    })?;
    if let Err(error) = notify(&format!(
        "READY=1\nSTATUS=tracing connect() with programs {:?}",
        tracer.program_ids()
    )) {
        tracing::warn!("could not notify systemd that we are ready: {error}");
    }
    Ok(())
}

/// Logs records lost since `before`; returns the counters now, or
/// `before` when they cannot be read (at the descriptor limit, say: the
/// next tick tries again, and the counts themselves are kept in the
/// kernel).
fn report_new_losses(kernel: &KernelStats, before: KernelCounters) -> KernelCounters {
    let now = match kernel.counters() {
        Ok(now) => now,
        Err(error) => {
            tracing::warn!("reading the kernel's counters failed: {error}");
            return before;
        }
    };
    let lost = (now.ringbuf_full + now.outcome_ringbuf_full)
        .saturating_sub(before.ringbuf_full + before.outcome_ringbuf_full);
    if lost > 0 {
        tracing::warn!(
            "{lost} records lost because the ring buffer was full ({} calls and {} outcomes in total); raise --ring-buffer-size or lower --poll-interval-ms",
            now.ringbuf_full,
            now.outcome_ringbuf_full,
        );
    }
    now
}
