//! `top --from URL`: the snapshots of a running daemon, from its `/live`.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use connect_trace::live::{LiveSnapshot, snapshot::KIND};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;

/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read: a snapshot is bounded (256 keys per dimension,
/// 100 records) and far smaller.
const MAX_ANSWER: usize = 16 << 20;

/// Where a daemon serves `/live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, as connect takes it.
    pub authority: String,
    /// The path asked for.
    pub path: String,
}

impl Endpoint {
    /// `http://HOST:PORT[/PATH]`, `HOST:PORT` or a bare port (127.0.0.1),
    /// as `--metrics` takes it; the path defaults to `/live`.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.starts_with("https://") {
            bail!("--from {text}: the daemon serves plain HTTP; use http://");
        }
        let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let authority = if let Ok(port) = authority.parse::<u16>() {
            format!("127.0.0.1:{port}")
        } else {
            authority.to_owned()
        };
        let port_given = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_given || authority.contains(char::is_whitespace) {
            bail!(
                "--from {text}: give the daemon's --metrics address, as http://HOST:PORT, HOST:PORT or a port"
            );
        }
        let path = match path {
            "" | "/" => "/live".to_owned(),
            path => path.to_owned(),
        };
        Ok(Self { authority, path })
    }

    /// `http://host:port/path`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    /// One snapshot, within [`FETCH_TIMEOUT`].
    pub async fn fetch(&self) -> Result<LiveSnapshot> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| anyhow!("{} did not answer within {FETCH_TIMEOUT:?}", self.url()))??;
        let snapshot: LiveSnapshot = serde_json::from_slice(&body)
            .with_context(|| format!("{} did not answer with live figures", self.url()))?;
        if snapshot.kind != KIND {
            bail!("{} answered with a {:?} record", self.url(), snapshot.kind);
        }
        Ok(snapshot)
    }

    async fn get(&self) -> Result<Bytes> {
        let url = self.url();
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "connecting to {url} (is `connect-trace run --metrics {}` running?)",
                    self.authority
                )
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("talking to {url}"))?;
        let request = Request::get(&self.path)
            .header(header::HOST, &self.authority)
            .body(Empty::<Bytes>::new())
            .with_context(|| format!("asking {url}"))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .with_context(|| format!("asking {url}"))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|error| anyhow!("reading {url}: {error}"))?
                .to_bytes();
            match status {
                StatusCode::OK => Ok(body),
                StatusCode::NOT_FOUND => bail!(
                    "{url}: not found; the daemon serves /live next to /metrics from this version on"
                ),
                status => bail!("{url} answered {status}"),
            }
        };
        // The connection must be driven while the request is under way. The
        // daemon closes it after answering, so it may end first, with the
        // answer already read: then the exchange finishes on its own.
        tokio::pin!(connection);
        tokio::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            ended = &mut connection => match ended {
                Ok(()) => exchange.await,
                Err(error) => Err(anyhow!("talking to {url}: {error}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_as_metrics_addresses_are() {
        let parse = |text: &str| Endpoint::parse(text).map(|endpoint| endpoint.url());
        assert_eq!(parse("9750").unwrap(), "http://127.0.0.1:9750/live");
        assert_eq!(
            parse("http://10.0.0.5:9750").unwrap(),
            "http://10.0.0.5:9750/live"
        );
        assert_eq!(
            parse("http://node-1:9750/").unwrap(),
            "http://node-1:9750/live"
        );
        assert_eq!(parse("[::1]:9750").unwrap(), "http://[::1]:9750/live");
        assert_eq!(
            parse("http://proxy:80/connect-trace/live").unwrap(),
            "http://proxy:80/connect-trace/live"
        );
        for bad in [
            "",
            "localhost",
            "http://",
            "https://x:1",
            ":9750",
            "x:y",
            "a b:1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
