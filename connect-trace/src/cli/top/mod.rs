//! `connect-trace top`: a full-screen live view of failing connects.
//!
//! Two threads. The main one runs the single-threaded runtime: standalone,
//! it attaches the programs and drives the library's pipeline with a
//! [`connect_trace::live::LiveSink`], exactly as `run` drives its sinks;
//! with `--from`, it fetches a daemon's `/live`. Either way it publishes one
//! [`LiveSnapshot`](connect_trace::live::LiveSnapshot) a second on a watch
//! channel. The view's thread ([`view`]) reads keys, draws from the newest
//! snapshot, and never touches the pipeline: a slow or stuck terminal
//! cannot hold up the ring buffer. Signals (SIGINT, SIGTERM, SIGHUP) and
//! `q` end both; the terminal is restored on every way out
//! ([`terminal`]).

mod keys;
mod local;
pub mod logs;
mod model;
mod remote;
mod render;
mod terminal;
mod text;
mod view;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Result, anyhow};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use logs::Logs;
use model::Update;
use view::ViewThread;

/// Options of `connect-trace top`. It reads no `CONNECT_TRACE_*` variable
/// and no config file: those are the daemon's.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Show what a running daemon sees instead of attaching the programs
    /// again: the address of its --metrics server (http://HOST:PORT,
    /// HOST:PORT or a port on 127.0.0.1); its /live endpoint is read. The
    /// view ends when the daemon has not answered for 5 s.
    #[arg(long, value_name = "URL", conflicts_with_all = [
        "pid", "failures_only", "cgroup", "container", "pod", "namespace",
        "no_workloads", "docker_socket", "containerd_socket",
    ])]
    from: Option<String>,
    /// Trace only this process id (all its threads); filtered in the kernel.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pid: Option<u32>,
    /// Count only attempts that failed (as `run --failures-only`).
    #[arg(long)]
    failures_only: bool,
    /// Trace only this cgroup v2 and those below it (a path relative to the
    /// cgroup v2 root, such as `/docker/<id>`); filtered in the kernel.
    #[arg(long, value_name = "PATH")]
    cgroup: Option<String>,
    /// Show only this container: its full id, a prefix of it, or its name.
    #[arg(long, value_name = "ID|NAME")]
    container: Option<String>,
    /// Show only this Kubernetes pod, as NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pod: Option<String>,
    /// Show only pods of this Kubernetes namespace.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Do not name containers and pods.
    #[arg(long)]
    no_workloads: bool,
    /// The Docker Engine API socket asked for container names.
    #[arg(long, value_name = "PATH", default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// containerd's API socket asked for container and pod names (by
    /// default the first of the usual ones that exists).
    #[arg(long, value_name = "PATH")]
    containerd_socket: Option<PathBuf>,
}

impl TopArgs {
    /// Where the figures come from, and the filters, for the title.
    fn source(&self) -> String {
        if let Some(from) = &self.from {
            return format!("from {from}");
        }
        let mut parts = vec!["this host".to_owned()];
        let options = [
            ("--pid", self.pid.map(|pid| pid.to_string())),
            ("--cgroup", self.cgroup.clone()),
            ("--container", self.container.clone()),
            ("--pod", self.pod.clone()),
            ("--namespace", self.namespace.clone()),
        ];
        for (name, value) in options {
            if let Some(value) = value {
                parts.push(format!("{name} {value}"));
            }
        }
        if self.failures_only {
            parts.push("--failures-only".to_owned());
        }
        parts.join(" ")
    }
}

/// How often the view gets new figures.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the view until `q`, Ctrl-C, SIGINT, SIGTERM or SIGHUP. The logs
/// kept meanwhile are written to stderr at the end.
pub async fn run(args: TopArgs, logs: Logs) -> Result<()> {
    terminal::require_terminal()?;
    let result = match &args.from {
        Some(from) => from_daemon(&args, from, &logs).await,
        None => local::run(&args, &logs).await,
    };
    logs.replay();
    result
}

/// The signals that end the view. Raw mode turns Ctrl-C into a key, but a
/// SIGINT from elsewhere ends it too; SIGHUP is the SSH session closing.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|error| anyhow!("installing the {name} handler: {error}"))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next of them; says which on stderr once the terminal is back.
    async fn recv(&mut self) {
        let why = tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP: the terminal hung up",
        };
        tracing::info!("{why}; top ends");
    }
}

/// How long a daemon may go without answering before `top --from` ends:
/// long enough for a quick restart, short enough that nobody watches old
/// figures for long thinking they are live.
const DAEMON_GONE_AFTER: Duration = Duration::from_secs(5);

/// `--from`: fetch the daemon's `/live` once a second. The first fetch
/// must work, so that a wrong address is an error on the command line
/// rather than a message in the view; a daemon that stops answering for
/// [`DAEMON_GONE_AFTER`] ends the view with an error that says so.
async fn from_daemon(args: &TopArgs, from: &str, logs: &Logs) -> Result<()> {
    let endpoint = remote::Endpoint::parse(from)?;
    let mut signals = Signals::install()?;
    let first = endpoint.fetch().await?;
    let (publish, updates) = tokio::sync::watch::channel(Some(Update {
        feed: Ok(Arc::new(first)),
    }));
    let view = ViewThread::start(args.source(), updates, logs.clone())?;
    let mut fetching = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        tick.tick().await;
        let mut answered = Instant::now();
        let mut last_figures = SystemTime::now();
        loop {
            tick.tick().await;
            let feed = match endpoint.fetch().await {
                Ok(snapshot) => {
                    answered = Instant::now();
                    last_figures = SystemTime::now();
                    Ok(Arc::new(snapshot))
                }
                Err(error) if answered.elapsed() >= DAEMON_GONE_AFTER => {
                    return Some(anyhow!(
                        "the daemon at {} stopped answering {} s ago; its last figures were of {}. The last attempt: {error:#}",
                        endpoint.url(),
                        answered.elapsed().as_secs(),
                        humantime::format_rfc3339_seconds(last_figures)
                    ));
                }
                // The cause first: the status line is narrow.
                Err(error) => Err(format!(
                    "the daemon has not answered for {} s (top ends at {} s): {}",
                    answered.elapsed().as_secs(),
                    DAEMON_GONE_AFTER.as_secs(),
                    error.root_cause()
                )),
            };
            let update = Update { feed };
            // Nobody to show it to: the view ended, which the main task
            // sees on its own.
            if publish.send(Some(update)).is_err() {
                return None;
            }
        }
    });
    let ended = tokio::select! {
        () = signals.recv() => Ended::Signal,
        () = view.ended() => Ended::View,
        gone = &mut fetching => match gone {
            Ok(Some(error)) => Ended::DaemonGone(error),
            Ok(None) => Ended::View,
            Err(error) => {
                Ended::DaemonGone(anyhow!("fetching the daemon's figures failed: {error}"))
            }
        },
    };
    fetching.abort();
    match ended {
        Ended::Signal => {
            view.stop_quietly().await;
            Ok(())
        }
        Ended::View => view.stop().await,
        Ended::DaemonGone(error) => {
            view.stop_quietly().await;
            Err(error)
        }
    }
}

/// Why `top --from` ended.
enum Ended {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// `q`, or the terminal gone.
    View,
    /// The daemon stopped answering; why.
    DaemonGone(anyhow::Error),
}
