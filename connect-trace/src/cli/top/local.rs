//! Standalone `top`: attach the programs and drive the library's pipeline
//! into the live aggregates, the way `run` drives its sinks (and with
//! `run`'s own helpers for filters, workloads and capabilities).

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use connect_trace::{
    clock::WallClock,
    delivery::Ledger,
    dns::CacheConfig,
    export::{Sink, prometheus::LedgerCounts},
    kernel::{Tracer, TracerConfig, dns::DnsSettings},
    live::{Live, LiveConfig},
    pipeline::{Pipeline, PipelineConfig, names::DestinationNames, reader::EventReader},
    resolve::{DEFAULT_RESOLVE_TIMEOUT, ResolverConfig},
};

use super::{PUBLISH_INTERVAL, Signals, TopArgs, logs::Logs, model::Update, view::ViewThread};
use crate::cli::{
    drop_capabilities,
    run::{HOUSEKEEPING_INTERVAL, SWEEP_INTERVAL},
    workloads::{WorkloadOptions, kernel_cgroup_filter, start_identity, workload_filter},
};

/// How often the ring buffer is drained when the kernel has not woken us
/// (`run`'s default).
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Attaches, then shows until asked to stop.
pub async fn run(args: &TopArgs, logs: &Logs) -> Result<()> {
    let workloads = WorkloadOptions {
        container: args.container.as_deref(),
        pod: args.pod.as_deref(),
        namespace: args.namespace.as_deref(),
        no_workloads: args.no_workloads,
        docker_socket: &args.docker_socket,
        containerd_socket: args.containerd_socket.as_deref(),
    };
    let filter = workload_filter(&workloads)?;
    let mut signals = Signals::install()?;
    let mut tracer = Tracer::load(&TracerConfig {
        pid: args.pid,
        failures_only: args.failures_only,
        cgroup: kernel_cgroup_filter(args.cgroup.as_deref())?,
        dns: (!args.no_dns).then(DnsSettings::default),
        ..TracerConfig::default()
    })?;
    let mut reader = EventReader::new(tracer.take_events()?, POLL_INTERVAL)
        .context("watching the ring buffer")?;
    // Destination names, as `run` gives them (docs/dns-names.md).
    if let Some(problem) = tracer.dns_problem() {
        tracing::warn!("DNS names are off ({problem}); --no-dns silences this");
    }
    let names = DestinationNames::new(tracer.take_dns(), CacheConfig::default());
    if let Some(fd) = names.wakeup_fd() {
        reader
            .also_wake_on(fd.context("watching the DNS ring buffer")?)
            .context("watching the DNS ring buffer")?;
    }
    let kernel = tracer.stats();
    let ledger = Arc::new(Ledger::default());
    let live = Live::new(&LiveConfig::default()).with_counts(Arc::new(LedgerCounts {
        ledger: Arc::clone(&ledger),
        kernel: Arc::clone(&kernel),
    }));
    drop_capabilities();
    let identity = start_identity(&workloads, filter, None)?;
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(live.sink())];
    let mut pipeline = Pipeline::new(
        PipelineConfig {
            resolver: ResolverConfig {
                failures_only: args.failures_only,
                ..ResolverConfig::default()
            },
            ..PipelineConfig::default()
        },
        Arc::clone(&kernel),
        Arc::clone(&ledger),
        sinks,
        identity,
    );
    pipeline.name_destinations(names);
    if let Some(problem) = tracer.io_uring_problem() {
        tracing::warn!(
            "io_uring connect requests are seen only by their TCP handshakes ({problem})"
        );
    }
    let (publish, updates) = tokio::sync::watch::channel(Some(Update {
        feed: Ok(Arc::new(live.snapshot())),
    }));
    let view = ViewThread::start(args.source(), updates, logs.clone())?;

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut publishing = tokio::time::interval(PUBLISH_INTERVAL);
    let stale_after =
        u64::try_from((DEFAULT_RESOLVE_TIMEOUT + SWEEP_INTERVAL).as_nanos()).unwrap_or(u64::MAX);
    let traced: Result<bool> = async {
        loop {
            tokio::select! {
                () = signals.recv() => return Ok(true),
                () = view.ended() => return Ok(false),
                _ = housekeeping.tick() => pipeline.expire()?,
                _ = sweep.tick() => {
                    let swept = tracer
                        .sweep_pending(WallClock::monotonic_now_ns(), stale_after)
                        .context("sweeping the kernel's handshakes")?;
                    ledger.handshakes_expired(swept.expired);
                }
                _ = publishing.tick() => {
                    publish.send_replace(Some(Update {
                        feed: Ok(Arc::new(live.snapshot())),
                    }));
                }
                ready = reader.wait() => {
                    ready.context("waiting on the ring buffer")?;
                    pipeline.drain(&mut reader, |_| {})?;
                }
            }
        }
    }
    .await;
    match traced {
        Ok(true) => {
            view.stop_quietly().await;
            Ok(())
        }
        Ok(false) => view.stop().await,
        Err(error) => {
            view.stop_quietly().await;
            Err(error)
        }
    }
}
