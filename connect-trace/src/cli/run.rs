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
};
use tokio::signal::unix::{SignalKind, signal};

/// Options of `connect-trace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Trace only this process id (all its threads); filtered in the kernel.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,

    /// Report only calls that returned an error; successes are skipped in
    /// the kernel.
    #[arg(long)]
    failures_only: bool,

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

/// How often newly lost records are reported on stderr.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until SIGINT or SIGTERM, or until the output goes away.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        ring_buffer_bytes: args.ring_buffer_size,
    };
    let mut output = open_output(args.output.as_ref())?;
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

    let mut renderer = JsonLines::new(WallClock::new());
    let mut written: u64 = 0;
    let mut reported = KernelCounters::default();
    let mut loss_report = tokio::time::interval(LOSS_REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = loss_report.tick() => {
                let counters = tracer.counters().context("reading kernel counters")?;
                report_new_losses(&reported, &counters);
                reported = counters;
            }
            ready = reader.wait() => {
                ready.context("waiting on the ring buffer")?;
                renderer.resync_clock();
                written += write_batch(&mut reader, &renderer, &mut output)?;
            }
        }
    }

    // Records submitted before the signal are still in the buffer.
    written += write_batch(&mut reader, &renderer, &mut output)?;
    let counters = tracer.counters().context("reading kernel counters")?;
    drop(tracer);
    eprintln!(
        "connect-trace: stopped; {written} records written, {} lost (ring buffer full), {} undecodable, {} exits without entry",
        counters.ringbuf_full,
        reader.undecodable(),
        counters.exit_without_entry,
    );
    Ok(())
}

/// Renders every waiting record and flushes, so records reach `tail -f`
/// within one poll interval.
fn write_batch(
    reader: &mut EventReader,
    renderer: &JsonLines,
    output: &mut impl Write,
) -> Result<u64> {
    let count = reader
        .drain(|attempt| renderer.write_attempt(output, attempt))
        .context("writing records")?;
    output.flush().context("writing records")?;
    Ok(count as u64)
}

fn report_new_losses(before: &KernelCounters, now: &KernelCounters) {
    let lost = now.ringbuf_full.saturating_sub(before.ringbuf_full);
    if lost > 0 {
        eprintln!(
            "connect-trace: warning: {lost} records lost because the ring buffer was full ({} in total); raise --ring-buffer-size or --poll-interval-ms lower",
            now.ringbuf_full,
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
