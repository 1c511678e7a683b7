//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`.
//!
//! Two read-only endpoints and a scraper that closes its connection after
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
};

use super::prometheus::Metrics;
use crate::clock::WallClock;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// `/healthz` fails when the ring buffer has not been drained for this long.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics, &health)).await;
        });
    }
}

/// What `/healthz` reports: the programs are attached and the ring buffer is
/// being drained.
#[derive(Debug, Default)]
pub struct Health {
    attached: AtomicBool,
    last_drain_ns: AtomicU64,
}

impl Health {
    /// Marks the programs attached or detached.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
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
        Ok(())
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
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
        (b"GET" | b"HEAD", _) => (
            "404 Not Found",
            "text/plain",
            b"try /metrics or /healthz\n".to_vec(),
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
