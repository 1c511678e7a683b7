//! The exporter's thread: its own single-threaded Tokio runtime, apart
//! from the daemon's, which batches log records, sends them and the metric
//! totals, retries with backoff, and says in the log when an endpoint
//! stops answering and when it answers again. Nothing here can hold up the
//! pipeline: the pipeline only ever waits for the queue's lock, held for a
//! few pointer moves.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use hyper::body::Bytes;
use opentelemetry_proto::tonic::{common::v1::InstrumentationScope, resource::v1::Resource};
use prost::Message as _;
use tokio::sync::watch;

use super::{
    encode::LogEncoder,
    mapping,
    metrics::AttemptMetrics,
    queue::{Chunk, Queue, unix_nanos},
    transport::{ExportError, Transport},
};

/// The first wait before trying again.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a batch of log records is retried before it is dropped (and
/// counted), so that fresher records get their turn.
const LOGS_GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// How long the exporter spends delivering what is left when the daemon
/// stops; the sink waits a little longer than this for it.
pub const CLOSE_BUDGET: Duration = Duration::from_secs(4);
/// How often a partially refused batch is reported in the log, at most.
const PARTIAL_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Counts of the exporter's own, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Failed log export requests (each try).
    pub failed_logs: AtomicU64,
    /// Failed metric export requests (each try).
    pub failed_metrics: AtomicU64,
}

/// One signal's destination, ready to send.
pub struct Signal {
    /// The client.
    pub transport: Transport,
    /// The URL, for the log.
    pub url: String,
}

/// Everything the thread needs.
pub struct Plan {
    /// Where log records go, if anywhere.
    pub logs: Option<Signal>,
    /// Where metrics go, if anywhere.
    pub metrics: Option<Signal>,
    /// The attempts waiting.
    pub queue: Arc<Queue>,
    /// The metric totals, added to by the sink.
    pub totals: Arc<Mutex<AttemptMetrics>>,
    /// The exporter's counts.
    pub stats: Arc<ExportStats>,
    /// Sent with everything.
    pub resource: Resource,
    /// How long one request may take.
    pub timeout: Duration,
    /// The most log records in one request.
    pub max_batch: usize,
    /// How long a record may wait for its batch to fill.
    pub schedule_delay: Duration,
    /// How often metrics go out.
    pub metric_interval: Duration,
    /// Since when the metrics count.
    pub start_unix_nano: u64,
}

/// The running thread, as the sink holds it.
pub struct Worker {
    closing: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread with `runtime` (built by the caller, so that the
    /// transports could be made inside it and its errors surface at once).
    pub fn spawn(runtime: tokio::runtime::Runtime, plan: Plan) -> std::io::Result<Self> {
        let (closing, closing_seen) = watch::channel(false);
        let (finished, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                yield_to_the_pipeline();
                runtime.block_on(run(plan, closing_seen));
                let _ = finished.send(());
            })?;
        Ok(Self {
            closing,
            done,
            thread: Some(thread),
        })
    }

    /// Asks the thread to deliver what is left and end; waits at most
    /// `wait`. Returns whether it ended in time.
    pub fn close(&mut self, wait: Duration) -> bool {
        self.closing.send_replace(true);
        match self.done.recv_timeout(wait) {
            Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.closing.send_replace(true);
    }
}

/// How much lower than the daemon's the exporter's scheduling priority
/// is: its nice value is raised by this much.
const NICER: libc::c_int = 10;

/// Lowers this thread's priority (and that of the threads it starts, such
/// as the name resolver's), so that when the CPUs are busy the pipeline
/// gets them first: the exporter then falls behind, its queue fills and
/// records are dropped and counted, rather than the ring buffer
/// overflowing. On Linux the nice value belongs to the thread.
fn yield_to_the_pipeline() {
    // SAFETY: nice only changes the calling thread's nice value; raising
    // it needs no privilege.
    if unsafe { libc::nice(NICER) } == -1 {
        tracing::debug!(
            "could not lower the OTLP exporter's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

async fn run(plan: Plan, closing: watch::Receiver<bool>) {
    let Plan {
        logs,
        metrics,
        queue,
        totals,
        stats,
        resource,
        timeout,
        max_batch,
        schedule_delay,
        metric_interval,
        start_unix_nano,
    } = plan;
    let scope = mapping::scope();
    let logs = async {
        if let Some(signal) = logs {
            LogExport {
                health: Health::new("logs", signal.url.clone()),
                signal,
                queue: Arc::clone(&queue),
                stats: Arc::clone(&stats),
                encoder: LogEncoder::new(&resource, &scope),
                timeout,
                max_batch,
                closing: Closing::new(closing.clone()),
                last_partial_report: None,
            }
            .run(schedule_delay)
            .await;
        } else {
            // Nothing to send them to: the sink does not queue them.
            queue.drop_all();
        }
    };
    let metrics = async {
        if let Some(signal) = metrics {
            MetricExport {
                health: Health::new("metrics", signal.url.clone()),
                signal,
                totals,
                stats: Arc::clone(&stats),
                resource: resource.clone(),
                scope: scope.clone(),
                timeout,
                interval: metric_interval,
                start_unix_nano,
                closing: Closing::new(closing.clone()),
            }
            .run()
            .await;
        }
    };
    tokio::join!(logs, metrics);
}

/// The daemon stopping, as the exporter sees it: once seen, a deadline
/// for the last deliveries.
struct Closing {
    seen: watch::Receiver<bool>,
    deadline: Option<Instant>,
}

impl Closing {
    fn new(seen: watch::Receiver<bool>) -> Self {
        Self {
            seen,
            deadline: None,
        }
    }

    /// Whether the daemon is stopping (or the sink is gone).
    fn now(&mut self) -> bool {
        if self.deadline.is_none() && (*self.seen.borrow() || self.seen.has_changed().is_err()) {
            self.deadline = Some(Instant::now() + CLOSE_BUDGET);
        }
        self.deadline.is_some()
    }

    /// Waits until the daemon stops.
    async fn wait(&mut self) {
        // An error means the sink is gone: that is stopping too.
        let _ = self.seen.wait_for(|closing| *closing).await;
        self.now();
    }

    /// How long the next request may take: `timeout`, or what is left of
    /// the closing budget.
    fn limit(&mut self, timeout: Duration) -> Duration {
        match (self.now(), self.deadline) {
            (true, Some(deadline)) => {
                timeout.min(deadline.saturating_duration_since(Instant::now()))
            }
            _ => timeout,
        }
    }
}

/// Exponential backoff with jitter, and when to give up.
struct Backoff {
    started: Instant,
    next: Duration,
    give_up_after: Duration,
}

impl Backoff {
    fn new(give_up_after: Duration) -> Self {
        Self {
            started: Instant::now(),
            next: FIRST_BACKOFF,
            give_up_after,
        }
    }

    /// How long to wait before trying again after `error`; `None`: give up.
    fn after(&mut self, error: &ExportError) -> Option<Duration> {
        if !error.retryable || self.started.elapsed() >= self.give_up_after {
            return None;
        }
        let base = self.next.max(error.retry_after.unwrap_or_default());
        self.next = (self.next * 2).min(MAX_BACKOFF);
        Some(jitter(base.min(self.give_up_after)))
    }
}

/// `base` give or take 20%, so that many daemons whose collector came back
/// do not all try again at the same instant.
fn jitter(base: Duration) -> Duration {
    let noise = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() % 1000);
    base.mul_f64(0.8 + 0.4 * f64::from(noise) / 1000.0)
}

/// Whether an endpoint answers, and the log lines when that changes.
struct Health {
    signal: &'static str,
    url: String,
    trouble: Option<Trouble>,
}

struct Trouble {
    since: Instant,
    /// The ledger's dropped count when it began.
    dropped_before: u64,
    refused: bool,
}

impl Health {
    fn new(signal: &'static str, url: String) -> Self {
        Self {
            signal,
            url,
            trouble: None,
        }
    }

    /// A request failed: says so in the log when this begins an outage (or
    /// turns one from unreachable to refusing, or back).
    fn failed(&mut self, error: &ExportError, dropped_now: u64, consequence: &str) {
        let refused = !error.retryable;
        if self
            .trouble
            .as_ref()
            .is_some_and(|trouble| trouble.refused == refused)
        {
            return;
        }
        let Self { signal, url, .. } = self;
        if refused {
            tracing::warn!("OTLP {signal} endpoint {url} refused the data: {error}; {consequence}");
        } else {
            tracing::warn!(
                "OTLP {signal} endpoint {url} is unreachable: {error}; retrying with backoff (at most {MAX_BACKOFF:?} apart); {consequence}"
            );
        }
        let since = self
            .trouble
            .as_ref()
            .map_or_else(Instant::now, |trouble| trouble.since);
        let dropped_before = self
            .trouble
            .as_ref()
            .map_or(dropped_now, |trouble| trouble.dropped_before);
        self.trouble = Some(Trouble {
            since,
            dropped_before,
            refused,
        });
    }

    /// A request went through: says so in the log when an outage ends.
    fn succeeded(&mut self, dropped_now: Option<u64>) {
        let Some(trouble) = self.trouble.take() else {
            return;
        };
        let Self { signal, url, .. } = self;
        let after =
            humantime::format_duration(Duration::from_secs(trouble.since.elapsed().as_secs()));
        match dropped_now {
            Some(dropped) => tracing::info!(
                "OTLP {signal} endpoint {url} takes data again after {after}; {} log records were dropped meanwhile (otlp_dropped)",
                dropped.saturating_sub(trouble.dropped_before)
            ),
            None => tracing::info!("OTLP {signal} endpoint {url} takes data again after {after}"),
        }
    }

    #[cfg(test)]
    fn in_trouble(&self) -> bool {
        self.trouble.is_some()
    }
}

struct LogExport {
    signal: Signal,
    health: Health,
    queue: Arc<Queue>,
    stats: Arc<ExportStats>,
    encoder: LogEncoder,
    timeout: Duration,
    max_batch: usize,
    closing: Closing,
    last_partial_report: Option<Instant>,
}

impl LogExport {
    async fn run(mut self, schedule_delay: Duration) {
        while !self.closing.now() {
            let Some(batch) = self.queue.take(self.max_batch) else {
                tokio::select! {
                    () = self.queue.ready.notified() => {}
                    () = tokio::time::sleep(schedule_delay) => {}
                    () = self.closing.wait() => {}
                }
                continue;
            };
            self.deliver(batch).await;
        }
        // Stopping: what is left gets one try per batch while the
        // endpoint takes it; the first failure drops the rest.
        while let Some(batch) = self.queue.take(self.max_batch) {
            if !self.deliver(batch).await {
                self.queue.drop_all();
                break;
            }
        }
    }

    fn dropped_now(&self) -> u64 {
        self.queue.ledger().daemon_counts().otlp_dropped
    }

    /// Sends one batch, retrying with backoff while that makes sense, and
    /// counts its fate. Returns whether it was delivered.
    async fn deliver(&mut self, batch: Vec<Chunk>) -> bool {
        let count: u64 = batch.iter().map(|chunk| chunk.attempts.len() as u64).sum();
        let body = Bytes::from(self.encoder.request(&batch));
        let mut backoff = Backoff::new(LOGS_GIVE_UP_AFTER);
        loop {
            let closing = self.closing.now();
            let limit = self.closing.limit(self.timeout);
            if limit.is_zero() {
                // The daemon is stopping and its time for this is up.
                self.queue.settle(batch, 0, count);
                return false;
            }
            let result = self
                .signal
                .transport
                .export_within(body.clone(), limit)
                .await;
            match result {
                Ok(accepted) => {
                    let rejected = accepted.rejected.min(count);
                    self.queue.settle(batch, count - rejected, rejected);
                    self.health.succeeded(Some(self.dropped_now()));
                    if rejected > 0 {
                        self.report_partial(rejected, count, &accepted.message);
                    }
                    return true;
                }
                Err(error) => {
                    self.stats.failed_logs.fetch_add(1, Ordering::Relaxed);
                    self.health.failed(
                        &error,
                        self.dropped_now(),
                        "log records wait in the queue, and those it has no room for are dropped and counted (otlp_dropped)",
                    );
                    let wait = if closing { None } else { backoff.after(&error) };
                    let Some(wait) = wait else {
                        self.queue.settle(batch, 0, count);
                        return false;
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.closing.wait() => {}
                    }
                }
            }
        }
    }

    fn report_partial(&mut self, rejected: u64, count: u64, message: &str) {
        if self
            .last_partial_report
            .is_some_and(|last| last.elapsed() < PARTIAL_REPORT_EVERY)
        {
            return;
        }
        self.last_partial_report = Some(Instant::now());
        tracing::warn!(
            "OTLP logs endpoint {} kept only {} of {count} log records ({message}); the rest are counted as dropped (otlp_dropped)",
            self.signal.url,
            count - rejected
        );
    }
}

struct MetricExport {
    signal: Signal,
    health: Health,
    totals: Arc<Mutex<AttemptMetrics>>,
    stats: Arc<ExportStats>,
    resource: Resource,
    scope: InstrumentationScope,
    timeout: Duration,
    interval: Duration,
    start_unix_nano: u64,
    closing: Closing,
}

impl MetricExport {
    async fn run(mut self) {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.closing.now() {
            tokio::select! {
                _ = ticks.tick() => self.export().await,
                () = self.closing.wait() => {}
            }
        }
        // The last totals, so that the collector has the final counts.
        self.export().await;
    }

    /// Sends the totals; a retryable failure is tried again within half
    /// an interval, after that the next interval's totals (cumulative)
    /// carry everything.
    async fn export(&mut self) {
        let totals = match self.totals.lock() {
            Ok(totals) => totals.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let request = totals.request(
            self.resource.clone(),
            self.scope.clone(),
            self.start_unix_nano,
            unix_nanos(SystemTime::now()),
        );
        if request.resource_metrics.iter().all(|resource| {
            resource
                .scope_metrics
                .iter()
                .all(|scope| scope.metrics.is_empty())
        }) {
            return;
        }
        let body = Bytes::from(request.encode_to_vec());
        let mut backoff = Backoff::new((self.interval / 2).min(LOGS_GIVE_UP_AFTER));
        loop {
            let closing = self.closing.now();
            let limit = self.closing.limit(self.timeout);
            if limit.is_zero() {
                return;
            }
            let result = self
                .signal
                .transport
                .export_within(body.clone(), limit)
                .await;
            match result {
                Ok(accepted) => {
                    self.health.succeeded(None);
                    if accepted.rejected > 0 {
                        tracing::debug!(
                            "OTLP metrics endpoint {} refused {} data points: {}",
                            self.signal.url,
                            accepted.rejected,
                            accepted.message
                        );
                    }
                    return;
                }
                Err(error) => {
                    self.stats.failed_metrics.fetch_add(1, Ordering::Relaxed);
                    let consequence = format!(
                        "the totals are sent again every {}",
                        humantime::format_duration(self.interval)
                    );
                    self.health.failed(&error, 0, &consequence);
                    let wait = if closing { None } else { backoff.after(&error) };
                    let Some(wait) = wait else {
                        return;
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.closing.wait() => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(retryable: bool) -> ExportError {
        ExportError {
            retryable,
            retry_after: None,
            message: "x".into(),
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_refusals_are_not_retried() {
        let mut backoff = Backoff::new(Duration::from_secs(3600));
        let waits: Vec<Duration> = (0..8)
            .map(|_| backoff.after(&error(true)).unwrap())
            .collect();
        assert!(waits[0] >= Duration::from_millis(200) && waits[0] <= Duration::from_millis(300));
        assert!(waits[7] <= MAX_BACKOFF.mul_f64(1.2), "{waits:?}");
        assert!(waits[7] >= MAX_BACKOFF.mul_f64(0.8), "{waits:?}");
        assert_eq!(backoff.after(&error(false)), None);
        let mut short = Backoff::new(Duration::ZERO);
        assert_eq!(short.after(&error(true)), None);
    }

    #[test]
    fn health_reports_each_outage_once() {
        let mut health = Health::new("logs", "http://x".into());
        assert!(!health.in_trouble());
        health.failed(&error(true), 3, "");
        health.failed(&error(true), 9, "");
        assert!(health.in_trouble());
        assert_eq!(health.trouble.as_ref().unwrap().dropped_before, 3);
        health.succeeded(Some(10));
        assert!(!health.in_trouble());
    }
}
