//! Naming workloads for `run` and `top`: the options that pick them, the
//! filters those give, and starting the naming itself.

use anyhow::{Context as _, Result, bail};
use connect_trace::{
    export::prometheus::Metrics,
    kernel::CgroupFilter,
    pipeline::identify::Identity,
    workload::{
        self, WorkloadConfig, Workloads, cgroupfs::CgroupFs, filter::WorkloadFilter,
        lookup::LookupConfig,
    },
};

/// The options that name workloads and pick among them; `top` has them too.
pub(crate) struct WorkloadOptions<'a> {
    pub container: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub no_workloads: bool,
    pub docker_socket: &'a std::path::Path,
    pub containerd_socket: Option<&'a std::path::Path>,
}

/// The daemon-side workload filter of `--container`, `--pod` and
/// `--namespace` (`--cgroup` runs in the kernel).
pub(crate) fn workload_filter(args: &WorkloadOptions<'_>) -> Result<Option<WorkloadFilter>> {
    let given = [
        args.container.map(WorkloadFilter::container),
        args.pod.map(WorkloadFilter::pod),
        args.namespace.map(WorkloadFilter::namespace),
    ];
    let mut filters = given.into_iter().flatten();
    let filter = filters.next().transpose()?;
    if filters.next().is_some() {
        bail!("give at most one of --container, --pod and --namespace");
    }
    if filter.is_some() && args.no_workloads {
        bail!(
            "--container, --pod and --namespace need workload identity, which --no-workloads turns off"
        );
    }
    Ok(filter)
}

/// `--cgroup PATH` as the kernel tests it: the cgroup's id and depth.
pub(crate) fn kernel_cgroup_filter(path: Option<&str>) -> Result<Option<CgroupFilter>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let WorkloadFilter::Cgroup(path) = WorkloadFilter::cgroup(path)? else {
        return Ok(None);
    };
    let cgroups = CgroupFs::system().context("--cgroup needs the cgroup v2 hierarchy")?;
    let target = workload::filter::kernel_target(&cgroups, &path)
        .with_context(|| format!("--cgroup {path}"))?;
    if target.level == 0 {
        // The root: every process.
        return Ok(None);
    }
    Ok(Some(CgroupFilter {
        id: target.id,
        level: target.level,
    }))
}

/// Starts naming workloads, unless `--no-workloads`; exports its counters
/// with `metrics`.
pub(crate) fn start_identity(
    args: &WorkloadOptions<'_>,
    filter: Option<WorkloadFilter>,
    metrics: Option<&Metrics>,
) -> Result<Option<Identity>> {
    if args.no_workloads {
        return Ok(None);
    }
    let lookups = LookupConfig {
        docker_socket: Some(args.docker_socket.to_owned()),
        containerd_sockets: args.containerd_socket.map_or_else(
            || LookupConfig::default().containerd_sockets,
            |socket| vec![socket.to_owned()],
        ),
        ..LookupConfig::default()
    };
    let config = WorkloadConfig {
        lookups: Some(lookups),
        ..WorkloadConfig::default()
    };
    let workloads = match Workloads::start(config) {
        Ok(workloads) => workloads,
        Err(error) => {
            tracing::warn!("containers and pods will not be named: {error}");
            return Ok(None);
        }
    };
    if let Some(metrics) = metrics {
        metrics.watch_workloads(workloads.counters())?;
    }
    Ok(Some(Identity::new(workloads, filter)))
}
