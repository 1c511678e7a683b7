//! A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/live` (the
//! live aggregates `connect-trace top --from` shows).
//!
//! Three read-only endpoints and a scraper that closes its connection after
//! each request do not justify a web framework; this reads one request
//! line, answers, and closes. Requests are bounded in size and time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::{output::Progress, prometheus::Metrics};
use crate::{clock::WallClock, live::Live};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// `/healthz` fails when the ring buffer has not been drained for this long.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// Connections served at once. Beyond it new ones wait in the listen
/// backlog, where they cost the daemon no descriptor.
const MAX_CONNECTIONS: usize = 32;
/// The first and the longest pause after a failed accept().
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// At most one log line per this long about failing accepts.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves until the task is dropped; `/live` when `live` is given.
///
/// A failing accept() (EMFILE when the descriptor limit is reached, say)
/// is retried after a pause that doubles up to a second, never at once, and
/// logged at most every ten seconds with how often it failed.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    live: Option<Live>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failures: u64 = 0;
    let mut logged: Option<std::time::Instant> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                let metrics = Arc::clone(&metrics);
                let health = Arc::clone(&health);
                let live = live.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let answer = answer(stream, &metrics, &health, live.as_ref());
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer).await;
                });
            }
            Err(error) => {
                drop(slot);
                failures += 1;
                if logged.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::warn!(
                        "accepting a metrics connection failed: {error} ({failures} failures so far); retrying in up to {:?}",
                        ACCEPT_BACKOFF.1
                    );
                    logged = Some(std::time::Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// What `/healthz` reports: the programs are attached, the ring buffer is
/// being drained, and the output takes what it is given.
#[derive(Debug, Default)]
pub struct Health {
    attached: AtomicBool,
    last_drain_ns: AtomicU64,
    output: std::sync::OnceLock<Arc<Progress>>,
}

impl Health {
    /// Marks the programs attached or detached.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
    }

    /// Watches the output's writer too.
    pub fn watch_output(&self, progress: Arc<Progress>) {
        let _ = self.output.set(progress);
    }

    /// Notes that the ring buffer was drained at monotonic `now_ns`.
    pub fn drained(&self, now_ns: u64) {
        self.last_drain_ns.store(now_ns, Ordering::Relaxed);
    }

    /// `Ok` when healthy at `now_ns`, or why not.
    pub fn check(&self, now_ns: u64, stale_after_ns: u64) -> Result<(), String> {
        if !self.attached.load(Ordering::Relaxed) {
            return Err("the kernel programs are not attached".to_owned());
        }
        let last = self.last_drain_ns.load(Ordering::Relaxed);
        let idle = now_ns.saturating_sub(last);
        if idle > stale_after_ns {
            return Err(format!(
                "the ring buffer has not been drained for {:.1} s",
                idle as f64 / 1e9
            ));
        }
        if let Some(progress) = self.output.get()
            && let Some(busy) = progress.busy_for(now_ns)
            && busy.as_nanos() > u128::from(stale_after_ns)
        {
            return Err(format!(
                "the output has not taken a write for {:.1} s ({} bytes wait for it; records beyond the limit are counted as not written)",
                busy.as_secs_f64(),
                progress.queued_bytes()
            ));
        }
        Ok(())
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    health: &Health,
    live: Option<&Live>,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let line = request
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => match metrics.encode() {
            Ok(body) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
            Err(error) => (
                "500 Internal Server Error",
                "text/plain",
                error.to_string().into_bytes(),
            ),
        },
        (b"GET" | b"HEAD", b"/healthz") => {
            let stale = u64::try_from(STALE_AFTER.as_nanos()).unwrap_or(u64::MAX);
            match health.check(WallClock::monotonic_now_ns(), stale) {
                Ok(()) => ("200 OK", "text/plain", b"ok\n".to_vec()),
                Err(reason) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("{reason}\n").into_bytes(),
                ),
            }
        }
        (b"GET" | b"HEAD", b"/live") => match live.map(|live| serde_json::to_vec(&live.snapshot()))
        {
            Some(Ok(body)) => ("200 OK", "application/json", body),
            Some(Err(error)) => (
                "500 Internal Server Error",
                "text/plain",
                error.to_string().into_bytes(),
            ),
            None => (
                "404 Not Found",
                "text/plain",
                b"this daemon does not keep live aggregates\n".to_vec(),
            ),
        },
        (b"GET" | b"HEAD", _) => (
            "404 Not Found",
            "text/plain",
            b"try /metrics, /healthz or /live\n".to_vec(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != b"HEAD" {
        stream.write_all(&body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_attached_programs_and_a_recent_drain() {
        let health = Health::default();
        assert!(health.check(0, 5).unwrap_err().contains("not attached"));
        health.set_attached(true);
        health.drained(100);
        assert_eq!(health.check(103, 5), Ok(()));
        assert!(
            health
                .check(200, 5)
                .unwrap_err()
                .contains("not been drained")
        );
        health.set_attached(false);
        assert!(health.check(101, 5).unwrap_err().contains("not attached"));
    }
}
