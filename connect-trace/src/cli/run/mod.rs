//! `connect-trace run`: attach, drive the pipeline from signals and timers,
//! stop cleanly. Everything else is the library's. Its options are in
//! [`args`], the DNS set-up in [`names`], what it tells the log and
//! systemd in [`report`].

mod args;
mod names;
mod report;

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
pub use args::RunArgs;
use connect_trace::{
    clock::WallClock,
    delivery::Ledger,
    export::{
        Sink,
        http::{self, Health},
        jsonl::JsonLinesSink,
        output::{Limits, Output},
        program_stats::ProgramStatsCollector,
        prometheus::{LedgerCounts, Metrics, PrometheusSink},
    },
    kernel::{KernelCounters, LoadError, Tracer, TracerConfig, program_stats::ProgramStats},
    live::{Live, LiveConfig},
    pipeline::{Pipeline, PipelineConfig, reader::EventReader},
    resolve::ResolverConfig,
};
use tokio::signal::unix::{SignalKind, signal};

use super::{
    drop_capabilities,
    notify::notify,
    workloads::{kernel_cgroup_filter, start_identity, workload_filter},
};

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
    let dns = names::dns_settings(&args)?;
    let otlp = args.otlp.settings(args.node_name.as_deref())?;
    let mut tracer = Tracer::load(&TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
        cgroup: kernel_cgroup_filter(args.cgroup.as_deref())?,
        dns,
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
    let names = names::destination_names(&mut tracer, &args);
    if let Some(fd) = names.wakeup_fd() {
        reader
            .also_wake_on(fd.context("watching the DNS ring buffer")?)
            .context("watching the DNS ring buffer")?;
    }
    let kernel = tracer.stats();
    let counts = Arc::new(LedgerCounts {
        ledger: Arc::clone(&ledger),
        kernel: Arc::clone(&kernel),
    });
    let node: Option<Arc<str>> = args.node_name.as_deref().map(Arc::from);
    let metrics = Arc::new(Metrics::new(Arc::clone(&counts) as _, node.as_deref())?);
    metrics.watch_dns(names.stats())?;
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
    let dns_names = names.capturing();
    pipeline.name_destinations(names);
    metrics.set_attached(true);
    health.set_attached(true);
    health.drained(WallClock::monotonic_now_ns());
    report::announce(&tracer, &args, dns_names, &mut pipeline)?;

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
                reported = report::report_new_losses(&kernel, reported);
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
