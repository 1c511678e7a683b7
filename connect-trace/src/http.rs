//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`.
//!
//! Two read-only endpoints and a scraper that closes its connection after
//! each request do not justify a web framework; this reads one request
//! line, answers, and closes. Requests are bounded in size and time.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    clock::WallClock,
    metrics::{Health, Metrics},
};

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
