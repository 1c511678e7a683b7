//! `connect-trace run`: attach, stream JSON Lines, stop cleanly on a signal.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Args;
use connect_trace::{
    clock::WallClock,
    json::JsonLines,
    probe::{DEFAULT_RING_BUFFER_BYTES, KernelCounters, Tracer, TracerConfig},
    reader::EventReader,
    resolve::{DEFAULT_RESOLVE_TIMEOUT, ResolvedAttempt, Resolver, ResolverConfig},
};
use tokio::signal::unix::{SignalKind, signal};

/// Options of `connect-trace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Trace only this process id (all its threads); filtered in the kernel.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,

    /// Report only attempts that failed: calls that returned 0 are skipped
    /// in the kernel, and non-blocking ones that later connect are dropped.
    #[arg(long)]
    failures_only: bool,

    /// How long, in seconds, an attempt may wait for its handshake to end
    /// before it is reported with outcome `in_progress`.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RESOLVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    resolve_timeout: u64,

    /// Append records to this file instead of writing them to stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Ring buffer size in bytes (a power of two, at least 4096). Each record
    /// takes 216 bytes in it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BUFFER_BYTES)]
    ring_buffer_size: u32,

    /// How often to collect records when the kernel has not woken us, in
    /// milliseconds. Bounds how late a record can reach the output.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    poll_interval_ms: u64,
}

/// How often newly lost records are reported on stderr, and unresolved
/// attempts checked against the resolution timeout.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Where resolved attempts go: rendered as JSON Lines into `out`.
struct Sink<W> {
    renderer: JsonLines,
    out: W,
    written: u64,
}

impl<W: Write> Sink<W> {
    fn write(&mut self, resolved: &ResolvedAttempt) -> io::Result<()> {
        self.renderer.write_attempt(&mut self.out, resolved)?;
        self.written += 1;
        Ok(())
    }
}

/// Runs until SIGINT or SIGTERM, or until the output goes away.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
    };
    let output = open_output(args.output.as_ref())?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let mut tracer = Tracer::load(&config)?;
    let mut reader = EventReader::new(
        tracer.take_events()?,
        Duration::from_millis(args.poll_interval_ms),
    )
    .context("watching the ring buffer")?;
    eprintln!(
        "connect-trace: tracing connect() with programs {:?}; writing JSON Lines to {}",
        tracer.program_ids(),
        args.output
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string()),
    );

    if let Some(problem) = tracer.btf_problem() {
        eprintln!(
            "connect-trace: warning: {problem}; failed handshakes will be reported without their error"
        );
    }

    let mut resolver = Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(args.resolve_timeout),
        failures_only: args.failures_only,
        ..ResolverConfig::default()
    });
    let mut sink = Sink {
        renderer: JsonLines::new(WallClock::new()),
        out: output,
        written: 0,
    };
    let mut reported = KernelCounters::default();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = housekeeping.tick() => {
                let counters = tracer.counters().context("reading kernel counters")?;
                report_new_losses(&reported, &counters);
                reported = counters;
                resolver
                    .expire(WallClock::monotonic_now_ns(), &mut |resolved| sink.write(resolved))
                    .context("writing records")?;
                sink.out.flush().context("writing records")?;
            }
            ready = reader.wait() => {
                ready.context("waiting on the ring buffer")?;
                sink.renderer.resync_clock();
                write_batch(&mut reader, &mut resolver, &mut sink)?;
            }
        }
    }

    // Records submitted before the signal are still in the buffer, and
    // attempts still waiting for their handshake are reported as they are.
    write_batch(&mut reader, &mut resolver, &mut sink)?;
    resolver
        .finish(&mut |resolved| sink.write(resolved))
        .context("writing records")?;
    sink.out.flush().context("writing records")?;
    let counters = tracer.counters().context("reading kernel counters")?;
    drop(tracer);
    let stats = resolver.stats();
    eprintln!(
        "connect-trace: stopped; {} records written, {} lost (ring buffer full), {} outcomes lost, {} undecodable, {} exits without entry, {} unresolved at timeout, {} not followed (pending sets full)",
        sink.written,
        counters.ringbuf_full,
        counters.outcome_ringbuf_full,
        reader.undecodable(),
        counters.exit_without_entry,
        stats.timed_out,
        stats.evicted + counters.pending_full,
    );
    Ok(())
}

/// Resolves and renders every waiting record, then flushes, so records
/// reach `tail -f` within one poll interval of their outcome.
fn write_batch(
    reader: &mut EventReader,
    resolver: &mut Resolver,
    sink: &mut Sink<impl Write>,
) -> Result<()> {
    let now = WallClock::monotonic_now_ns();
    reader
        .drain(|record| resolver.on_record(record, now, &mut |resolved| sink.write(resolved)))
        .context("writing records")?;
    sink.out.flush().context("writing records")
}

fn report_new_losses(before: &KernelCounters, now: &KernelCounters) {
    let lost = (now.ringbuf_full + now.outcome_ringbuf_full)
        .saturating_sub(before.ringbuf_full + before.outcome_ringbuf_full);
    if lost > 0 {
        eprintln!(
            "connect-trace: warning: {lost} records lost because the ring buffer was full ({} calls and {} outcomes in total); raise --ring-buffer-size or lower --poll-interval-ms",
            now.ringbuf_full, now.outcome_ringbuf_full,
        );
    }
}

fn open_output(path: Option<&PathBuf>) -> Result<BufWriter<Box<dyn Write>>> {
    let sink: Box<dyn Write> = match path {
        None => Box::new(io::stdout().lock()),
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --output {}", path.display()))?,
        ),
    };
    Ok(BufWriter::with_capacity(64 * 1024, sink))
}
