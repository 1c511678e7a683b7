//! `connect-trace run`: attach, stream JSON Lines and summaries, serve
//! metrics, stop cleanly on a signal.

use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};
use clap::Args;
use connect_trace::{
    aggregate::{Aggregator, DEFAULT_CAPACITY, Delivery},
    clock::WallClock,
    http,
    json::{self, JsonLines},
    metrics::{Health, Metrics},
    notify::notify,
    output::Output,
    privileges,
    probe::{DEFAULT_RING_BUFFER_BYTES, KernelCounters, Tracer, TracerConfig},
    reader::EventReader,
    record::Record,
    resolve::{DEFAULT_RESOLVE_TIMEOUT, ResolvedAttempt, Resolver, ResolverConfig},
};
use tokio::signal::unix::{SignalKind, signal};

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

    /// Write only summary records, no record per connect().
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

    /// Ring buffer size in bytes (a power of two, at least 4096). Each call
    /// record takes 248 bytes in it.
    #[arg(long, env = "CONNECT_TRACE_RING_BUFFER_SIZE", value_name = "BYTES", default_value_t = DEFAULT_RING_BUFFER_BYTES)]
    ring_buffer_size: u32,

    /// How often to collect records when the kernel has not woken us, in
    /// milliseconds. Bounds how late a record can reach the output.
    #[arg(long, env = "CONNECT_TRACE_POLL_INTERVAL_MS", value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    poll_interval_ms: u64,
}

/// `9750` → 127.0.0.1:9750; anything else must be a full socket address.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is neither a port nor an address like 127.0.0.1:9750"))
}

/// How often newly lost records are reported on stderr, metrics refreshed
/// from the kernel, and unresolved attempts checked against the timeout.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until SIGINT or SIGTERM, or until the output goes away.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
        ..TracerConfig::default()
    };
    let output = match &args.output {
        None => Output::stdout(),
        Some(path) => {
            Output::file(path).with_context(|| format!("opening --output {}", path.display()))?
        }
    };
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let metrics = Arc::new(Metrics::new()?);
    let health = Arc::new(Health::default());
    let server = match args.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on --metrics {addr}"))?;
            Some(tokio::spawn(http::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&health),
            )))
        }
        None => None,
    };

    let mut tracer = Tracer::load(&config)?;
    let reader = EventReader::new(
        tracer.take_events()?,
        Duration::from_millis(args.poll_interval_ms),
    )
    .context("watching the ring buffer")?;
    metrics.set_attached(true);
    health.set_attached(true);
    health.drained(WallClock::monotonic_now_ns());
    tracing::info!(
        "tracing connect() with programs {:?}; writing JSON Lines to {}{}",
        tracer.program_ids(),
        args.output
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string()),
        args.metrics
            .map(|addr| format!("; metrics at http://{addr}/metrics"))
            .unwrap_or_default(),
    );
    // Everything that needs privileges is done: programs attached, maps and
    // sockets open.
    match privileges::drop_after_attach() {
        Ok(kept) if kept.is_empty() => tracing::debug!("dropped every capability"),
        Ok(kept) => tracing::debug!("dropped every capability but {}", kept.join(" and ")),
        Err(error) => tracing::warn!("could not drop capabilities: {error}"),
    }
    if let Err(error) = notify("READY=1\nSTATUS=tracing connect()") {
        tracing::warn!("could not notify systemd that we are ready: {error}");
    }
    tracing::debug!(
        "following TCP handshakes with the {}",
        tracer.handshake_hook()
    );
    if let Some(problem) = tracer.btf_problem() {
        tracing::warn!("{problem}; failed handshakes will be reported without their error");
    }

    let mut daemon = Daemon {
        reader,
        resolver: Resolver::new(ResolverConfig {
            timeout: Duration::from_secs(args.resolve_timeout),
            failures_only: args.failures_only,
            ..ResolverConfig::default()
        }),
        sink: Sink {
            renderer: JsonLines::new(WallClock::new()),
            out: output,
            per_attempt: !args.summary_only,
            written: 0,
            was_failing: false,
        },
        aggregator: Aggregator::new(DEFAULT_CAPACITY, SystemTime::now()),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        delivered: 0,
        top: usize::try_from(args.top).unwrap_or(usize::MAX),
    };
    let mut reported = KernelCounters::default();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let summaries = args.interval > 0;
    let mut summary_tick = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    summary_tick.tick().await;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => daemon.reopen()?,
            _ = housekeeping.tick() => {
                let counters = tracer.counters().context("reading kernel counters")?;
                report_new_losses(&reported, &counters);
                reported = counters;
                daemon.housekeeping(&tracer, &counters)?;
            }
            _ = summary_tick.tick(), if summaries => daemon.summarize(&tracer)?,
            ready = daemon.reader.wait() => {
                ready.context("waiting on the ring buffer")?;
                daemon.sink.renderer.resync_clock();
                daemon.write_batch()?;
            }
        }
    }

    if let Err(error) = notify("STOPPING=1") {
        tracing::debug!("could not notify systemd that we are stopping: {error}");
    }
    // Records submitted before the signal are still in the buffer, and
    // attempts still waiting for their handshake are reported as they are.
    daemon.write_batch()?;
    daemon.finish()?;
    if summaries {
        daemon.summarize(&tracer)?;
    }
    let counters = tracer.counters().context("reading kernel counters")?;
    metrics.set_attached(false);
    health.set_attached(false);
    drop(tracer);
    if let Some(server) = server {
        server.abort();
    }
    let stats = daemon.resolver.stats();
    tracing::info!(
        "stopped; {} records delivered, {} records written, {} not written (output errors), {} lost (ring buffer full), {} outcomes lost, {} undecodable, {} exits without entry, {} unresolved at timeout, {} not followed (pending sets full)",
        daemon.delivered,
        daemon.sink.written,
        daemon.sink.out.unwritten(),
        counters.ringbuf_full,
        counters.outcome_ringbuf_full,
        daemon.reader.undecodable(),
        counters.exit_without_entry,
        stats.timed_out,
        stats.evicted + counters.pending_full,
    );
    Ok(())
}

/// Where resolved attempts and summaries go: JSON Lines into `out`.
struct Sink {
    renderer: JsonLines,
    out: Output,
    per_attempt: bool,
    /// Records written whole, since start.
    written: u64,
    /// Whether the last flush failed, to log only when that changes.
    was_failing: bool,
}

impl Sink {
    /// Writes the batch. Output errors on a file are logged when they start
    /// and when they stop, and counted; only a vanished stdout is fatal.
    fn flush(&mut self, metrics: &Metrics) -> io::Result<()> {
        let written = self.out.flush()?;
        self.written += written.records;
        metrics.unwritten(written.unwritten);
        match (self.out.failing(), self.was_failing) {
            (Some(error), false) => {
                tracing::error!(
                    "cannot write to {}: {error}; records are counted as not written until it works again (the kernel keeps counting, metrics keep being served)",
                    self.describe()
                );
                self.was_failing = true;
            }
            (None, true) => {
                tracing::info!(
                    "writing to {} works again; {} records could not be written so far",
                    self.describe(),
                    self.out.unwritten()
                );
                self.was_failing = false;
            }
            _ => {}
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.out
            .path()
            .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string())
    }
}

/// The record pipeline after the kernel: resolve, aggregate, count, write.
struct Daemon {
    reader: EventReader,
    resolver: Resolver,
    sink: Sink,
    aggregator: Aggregator,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Call records taken from the ring buffer.
    delivered: u64,
    top: usize,
}

/// Takes one resolved attempt through aggregation, metrics and output.
fn consume(
    resolved: &ResolvedAttempt,
    now_secs: u64,
    sink: &mut Sink,
    aggregator: &mut Aggregator,
    metrics: &Metrics,
) -> io::Result<()> {
    aggregator.record(resolved, now_secs);
    metrics.record(resolved);
    if sink.per_attempt {
        let renderer = &sink.renderer;
        sink.out
            .record(|line| renderer.write_attempt(line, resolved))?;
    }
    Ok(())
}

impl Daemon {
    /// Reopens `--output` (SIGHUP, after logrotate moved it).
    fn reopen(&mut self) -> Result<()> {
        self.write_batch()?;
        match self.sink.out.reopen() {
            Ok(_) => tracing::info!("reopened {}", self.sink.describe()),
            Err(error) => tracing::error!("reopening {}: {error}", self.sink.describe()),
        }
        Ok(())
    }

    /// Resolves and writes every waiting record, then flushes, so records
    /// reach `tail -f` within one poll interval of their outcome.
    fn write_batch(&mut self) -> Result<()> {
        let now = WallClock::monotonic_now_ns();
        let now_secs = now / 1_000_000_000;
        let Self {
            reader,
            resolver,
            sink,
            aggregator,
            metrics,
            delivered,
            ..
        } = self;
        let mut calls = 0;
        reader
            .drain(|record| {
                if matches!(record, Record::Connect(_)) {
                    calls += 1;
                }
                resolver.on_record(record, now, &mut |resolved| {
                    consume(resolved, now_secs, sink, aggregator, metrics)
                })
            })
            .context("writing records")?;
        *delivered += calls;
        self.metrics.delivered(calls);
        self.health.drained(now);
        self.sink.flush(&self.metrics).context("writing records")
    }

    /// Times out unresolved attempts and refreshes the metrics from the
    /// kernel's counters.
    fn housekeeping(&mut self, tracer: &Tracer, counters: &KernelCounters) -> Result<()> {
        let now = WallClock::monotonic_now_ns();
        self.resolve_with(now / 1_000_000_000, |resolver, mut emit| {
            resolver.expire(now, &mut emit)
        })?;
        let outcomes = tracer.outcome_counts().context("reading kernel counters")?;
        self.metrics
            .update(counters, &outcomes, self.resolver.stats());
        Ok(())
    }

    /// Reports every attempt still waiting as in progress.
    fn finish(&mut self) -> Result<()> {
        let now_secs = WallClock::monotonic_now_ns() / 1_000_000_000;
        self.resolve_with(now_secs, |resolver, mut emit| resolver.finish(&mut emit))
    }

    /// Runs `step` on the resolver, takes every attempt it resolves through
    /// aggregation, metrics and output, and flushes.
    fn resolve_with(
        &mut self,
        now_secs: u64,
        step: impl FnOnce(
            &mut Resolver,
            &mut dyn FnMut(&ResolvedAttempt) -> io::Result<()>,
        ) -> io::Result<()>,
    ) -> Result<()> {
        let Self {
            resolver,
            sink,
            aggregator,
            metrics,
            ..
        } = self;
        step(resolver, &mut |resolved| {
            consume(resolved, now_secs, sink, aggregator, metrics)
        })
        .context("writing records")?;
        self.sink.flush(&self.metrics).context("writing records")
    }

    /// Writes a summary of the interval that just ended.
    fn summarize(&mut self, tracer: &Tracer) -> Result<()> {
        let counters = tracer.counters().context("reading kernel counters")?;
        let outcomes = tracer.outcome_counts().context("reading kernel counters")?;
        let delivery = Delivery {
            attempts_counted: counters.attempts,
            failures_counted: outcomes.failures(),
            records_delivered: self.delivered,
            records_lost: counters.ringbuf_full,
            outcomes_lost: counters.outcome_ringbuf_full,
            records_unwritten: self.sink.out.unwritten(),
            pending: self.resolver.stats().pending as u64,
        };
        let now_secs = WallClock::monotonic_now_ns() / 1_000_000_000;
        let summary = self
            .aggregator
            .summarize(SystemTime::now(), now_secs, self.top, delivery);
        self.metrics.publish_top(&summary);
        self.metrics
            .update(&counters, &outcomes, self.resolver.stats());
        self.sink
            .out
            .record(|line| json::write_summary(line, &summary))
            .context("writing records")?;
        self.sink.flush(&self.metrics).context("writing records")
    }
}

fn report_new_losses(before: &KernelCounters, now: &KernelCounters) {
    let lost = (now.ringbuf_full + now.outcome_ringbuf_full)
        .saturating_sub(before.ringbuf_full + before.outcome_ringbuf_full);
    if lost > 0 {
        tracing::warn!(
            "{lost} records lost because the ring buffer was full ({} calls and {} outcomes in total); raise --ring-buffer-size or lower --poll-interval-ms",
            now.ringbuf_full,
            now.outcome_ringbuf_full,
        );
    }
}
