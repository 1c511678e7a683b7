//! `connect-trace run`: attach, drive the pipeline from signals and timers,
//! stop cleanly. Everything else is the library's.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use anyhow::{Context as _, Result};
use clap::Args;
use connect_trace::{
    clock::WallClock,
    delivery::Ledger,
    export::{
        Sink, Started,
        http::{self, Health},
        jsonl::JsonLinesSink,
        output::Output,
        program_stats::ProgramStatsCollector,
        prometheus::{LedgerCounts, Metrics, PrometheusSink},
    },
    kernel::{
        DEFAULT_RING_BUFFER_BYTES, KernelCounters, KernelStats, Tracer, TracerConfig, privileges,
        program_stats::ProgramStats,
    },
    pipeline::{Pipeline, PipelineConfig, reader::EventReader},
    resolve::{DEFAULT_RESOLVE_TIMEOUT, ResolverConfig},
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
    #[arg(long, env = "CONNECT_TRACE_PID", value_name = "PID")]
    pid: Option<u32>,
    /// Report only attempts that failed: calls that returned 0 are skipped
    /// in the kernel, and non-blocking ones that later connect are dropped.
    #[arg(long, env = "CONNECT_TRACE_FAILURES_ONLY")]
    failures_only: bool,
    /// How long, in seconds, an attempt may wait for its handshake to end
    /// before it is reported with outcome `in_progress`.
    #[arg(long, env = "CONNECT_TRACE_RESOLVE_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_RESOLVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    resolve_timeout: u64,
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
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until SIGINT or SIGTERM, or until the output goes away.
pub async fn run(args: RunArgs) -> Result<()> {
    let output = match &args.output {
        None => Output::stdout(),
        Some(path) => {
            Output::file(path).with_context(|| format!("opening --output {}", path.display()))?
        }
    };
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
    let mut tracer = Tracer::load(&TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
        ..TracerConfig::default()
    })?;
    let mut reader = EventReader::new(
        tracer.take_events()?,
        Duration::from_millis(args.poll_interval_ms),
    )
    .context("watching the ring buffer")?;
    let (kernel, ledger) = (tracer.stats(), Arc::new(Ledger::default()));
    let counts = LedgerCounts {
        ledger: Arc::clone(&ledger),
        kernel: Arc::clone(&kernel),
    };
    let metrics = Arc::new(Metrics::new(Arc::new(counts))?);
    if args.bpf_stats {
        // Before capabilities are dropped: enabling needs CAP_SYS_ADMIN.
        let stats = ProgramStats::enable(tracer.program_ids())?;
        metrics.register(Box::new(ProgramStatsCollector::new(stats)?))?;
    }
    let health = Arc::new(Health::default());
    let server = listener.map(|listener| {
        tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
        ))
    });
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(JsonLinesSink::new(
            output,
            !args.summary_only,
            Arc::clone(&ledger),
        )),
        Box::new(PrometheusSink::new(Arc::clone(&metrics))),
    ];
    let config = PipelineConfig {
        resolver: ResolverConfig {
            timeout: Duration::from_secs(args.resolve_timeout),
            failures_only: args.failures_only,
            ..ResolverConfig::default()
        },
        top: usize::try_from(args.top).unwrap_or(usize::MAX),
    };
    let mut pipeline = Pipeline::new(config, Arc::clone(&kernel), ledger, sinks);
    metrics.set_attached(true);
    health.set_attached(true);
    health.drained(WallClock::monotonic_now_ns());
    announce(&tracer, &args, &mut pipeline)?;

    let mut reported = KernelCounters::default();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let summaries = args.interval > 0;
    let mut summary_tick = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    summary_tick.tick().await;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => pipeline.reopen()?,
            _ = housekeeping.tick() => {
                reported = report_new_losses(&kernel, reported)?;
                pipeline.expire()?;
            }
            _ = summary_tick.tick(), if summaries => pipeline.summarize()?,
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

/// Tracing is live: drops the capabilities no longer needed, then tells
/// the log, the sinks (a `started` record) and systemd.
fn announce(tracer: &Tracer, args: &RunArgs, pipeline: &mut Pipeline) -> Result<()> {
    match privileges::drop_after_attach() {
        Ok(kept) if kept.is_empty() => tracing::debug!("dropped every capability"),
        Ok(kept) => tracing::debug!("dropped every capability but {kept:?}"),
        Err(error) => tracing::warn!("could not drop capabilities: {error}"),
    }
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
            .map(|(member, _)| format!("{}.{}", member.type_name, member.member))
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

/// Logs records lost since `before`; returns the counters now.
fn report_new_losses(kernel: &KernelStats, before: KernelCounters) -> Result<KernelCounters> {
    let now = kernel.counters().context("reading kernel counters")?;
    let lost = (now.ringbuf_full + now.outcome_ringbuf_full)
        .saturating_sub(before.ringbuf_full + before.outcome_ringbuf_full);
    if lost > 0 {
        tracing::warn!(
            "{lost} records lost because the ring buffer was full ({} calls and {} outcomes in total); raise --ring-buffer-size or lower --poll-interval-ms",
            now.ringbuf_full,
            now.outcome_ringbuf_full,
        );
    }
    Ok(now)
}
