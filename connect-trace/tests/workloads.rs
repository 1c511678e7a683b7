//! Workload identity against real engines: a private dockerd (and the
//! containerd it starts, driven with `ctr`), and cgroup directories made by
//! the test in the layouts Kubernetes uses.
//!
//! Each test resolves workloads from the cgroup id alone, the way records
//! arrive from the kernel. Needs root (`cargo xtask test`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod engines;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use connect_trace::workload::{
    Metadata, Runtime, Workload, WorkloadConfig, Workloads,
    cgroupfs::{CgroupFs, Resolution},
    filter::{self, Verdict, WorkloadFilter},
    hold::Hold,
    labels,
    lookup::LookupConfig,
    status,
};
use engines::{CgroupProcess, Docker, IMAGE};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests run container engines: use `cargo xtask test`"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cgroups() -> CgroupFs {
    CgroupFs::system().expect("cgroup v2")
}

fn has_v1() -> bool {
    !engines::mounts_of("cgroup").is_empty()
}

fn lookups_of(docker: &Docker) -> LookupConfig {
    LookupConfig {
        docker_socket: Some(docker.socket.clone()),
        containerd_sockets: vec![docker.containerd_socket.clone()],
        ..LookupConfig::default()
    }
}

/// Runtime sockets where nothing is.
fn missing_runtimes() -> LookupConfig {
    LookupConfig {
        docker_socket: Some(PathBuf::from("/nonexistent/ct-test/docker.sock")),
        containerd_sockets: vec![PathBuf::from("/nonexistent/ct-test/containerd.sock")],
        ..LookupConfig::default()
    }
}

fn workloads(lookups: Option<LookupConfig>, file_handles: bool) -> Workloads {
    Workloads::with_cgroups(
        Some(cgroups()),
        has_v1(),
        WorkloadConfig {
            lookups,
            file_handles,
            ..WorkloadConfig::default()
        },
    )
}

/// Identifies `cgroup_id` until its lookup has ended (at most 10 s).
async fn settled(workloads: &mut Workloads, cgroup_id: u64, pid: u32) -> Arc<Workload> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        workloads.apply_lookups(Instant::now());
        let workload = workloads.identify(cgroup_id, pid, Instant::now());
        if !workload.is_pending() {
            return workload;
        }
        assert!(
            Instant::now() < deadline,
            "the lookup did not end: {workload:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

/// The first process in cgroup v2 `relative`.
fn pid_in(relative: &str) -> u32 {
    let procs = std::fs::read_to_string(
        engines::cgroup2_root()
            .join(relative.trim_start_matches('/'))
            .join("cgroup.procs"),
    )
    .expect("cgroup.procs");
    procs
        .lines()
        .next()
        .and_then(|line| line.parse().ok())
        .expect("a process in the cgroup")
}

/// One private dockerd for every scenario that needs an engine, run in
/// order; the last one stops the engine.
#[test]
fn real_engines() {
    require_root();
    let runtime = runtime();
    let mut docker = Docker::start();
    docker.import_image();
    runtime.block_on(async {
        let started = Instant::now();
        engines_are_detected(&docker).await;
        docker_containers_are_named(&docker).await;
        eprintln!("docker scenario: {:?}", started.elapsed());
        pods_come_from_cri_labels_in_containerd(&mut docker).await;
        eprintln!("containerd scenario: {:?}", started.elapsed());
        short_lived_processes_and_removed_containers(&docker).await;
        eprintln!("short-lived scenario: {:?}", started.elapsed());
        containers_gone_before_their_records_are_read(&docker).await;
        eprintln!("short-lived container scenario: {:?}", started.elapsed());
        hung_then_stopped_engine(&mut docker).await;
        eprintln!("engine failure scenario: {:?}", started.elapsed());
    });
}

async fn engines_are_detected(docker: &Docker) {
    let found = status::detect_runtimes(&lookups_of(docker)).await;
    assert_eq!(found.len(), 2);
    for runtime in &found {
        assert!(runtime.is_answering(), "{runtime}");
        eprintln!("{runtime}");
    }
    let missing = status::detect_runtimes(&missing_runtimes()).await;
    assert!(missing.iter().all(|r| !r.is_answering()));
    assert!(
        missing[0]
            .to_string()
            .contains("no socket at /nonexistent/ct-test/docker.sock"),
        "{}",
        missing[0]
    );
}

async fn docker_containers_are_named(docker: &Docker) {
    let id = docker.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "ct-web",
        "--label",
        "team=payments",
        IMAGE,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(id.len(), 64, "a full id: {id}");
    let cgroup = format!("/docker/{id}");
    let cgroup_id = engines::cgroup_id(&cgroup);
    let pid = pid_in(&cgroup);
    for file_handles in [true, false] {
        let mut workloads = workloads(Some(lookups_of(docker)), file_handles);
        let expected = if file_handles {
            Resolution::FileHandle
        } else {
            Resolution::Walk
        };
        assert_eq!(workloads.resolution(), Some(expected));
        let started = Instant::now();
        let first = workloads.identify(cgroup_id, pid, Instant::now());
        let miss = started.elapsed();
        // The ids come from the path at once; the names are being asked.
        assert_eq!(first.cgroup.as_deref(), Some(cgroup.as_str()));
        let container = first.container.as_ref().expect("a container");
        assert_eq!(&*container.id, id);
        assert_eq!(container.runtime, Some(Runtime::Docker));
        assert_eq!(first.metadata, Metadata::Pending);
        let asked = Instant::now();
        let named = settled(&mut workloads, cgroup_id, pid).await;
        let lookup = asked.elapsed();
        let container = named.container.as_ref().expect("a container");
        assert_eq!(named.metadata, Metadata::Known, "{named:?}");
        assert_eq!(&*container.id, id);
        assert_eq!(container.name.as_deref(), Some("ct-web"));
        assert_eq!(container.image.as_deref(), Some(IMAGE));
        assert_eq!(container.runtime, Some(Runtime::Docker));
        assert_eq!(named.pod, None);
        eprintln!(
            "docker, {expected:?}: first identify (miss) {miss:?}, lookup done within {lookup:?}"
        );
        let counts = workloads.counters().snapshot();
        assert_eq!((counts.lookups, counts.lookups_found), (1, 1));
        assert_eq!(counts.docker_errors, 0);

        let mut by_name = WorkloadFilter::container("ct-web").expect("valid");
        assert_eq!(by_name.check(&named), Verdict::Match);
        let mut by_prefix = WorkloadFilter::container(&id[..12]).expect("valid");
        assert_eq!(by_prefix.check(&named), Verdict::Match);
        assert_eq!(
            by_prefix.check(&first),
            Verdict::Match,
            "an id needs no lookup"
        );
        let mut by_name_early = WorkloadFilter::container("ct-web").expect("valid");
        assert_eq!(by_name_early.check(&first), Verdict::Unknown);
        let mut other = WorkloadFilter::pod("shop/api-7d9f").expect("valid");
        assert_eq!(other.check(&named), Verdict::NoMatch);
    }
}

async fn pods_come_from_cri_labels_in_containerd(docker: &mut Docker) {
    let namespace = "k8s.io";
    let image = docker.import_image_into_containerd(namespace);
    let id = engines::random_container_id();
    let uid = engines::random_pod_uid();
    // The cgroupfs driver's layout, as the CRI asks runc for it.
    let cgroup = format!("/kubepods/besteffort/pod{uid}/{id}");
    docker.ctr_run(
        namespace,
        &id,
        &cgroup,
        &[
            (labels::POD_NAME, "api-7d9f"),
            (labels::POD_NAMESPACE, "shop"),
            (labels::POD_UID, &uid),
            (labels::CONTAINER_NAME, "api"),
            ("io.cri-containerd.kind", "container"),
        ],
    );
    let cgroup_id = engines::cgroup_id(&cgroup);
    let mut workloads = workloads(Some(lookups_of(docker)), true);
    let first = workloads.identify(cgroup_id, pid_in(&cgroup), Instant::now());
    assert_eq!(first.metadata, Metadata::Pending);
    assert_eq!(
        first.pod.as_ref().and_then(|p| p.uid.as_deref()),
        Some(uid.as_str()),
        "the pod uid comes from the path"
    );
    let asked = Instant::now();
    let named = settled(&mut workloads, cgroup_id, 0).await;
    eprintln!("containerd: lookup done within {:?}", asked.elapsed());
    assert_eq!(named.metadata, Metadata::Known, "{named:?}");
    let container = named.container.as_ref().expect("a container");
    assert_eq!(&*container.id, id);
    assert_eq!(container.name.as_deref(), Some("api"));
    assert_eq!(container.image.as_deref(), Some(image));
    assert_eq!(container.runtime, Some(Runtime::Containerd));
    let pod = named.pod.as_ref().expect("a pod");
    assert_eq!(pod.name.as_deref(), Some("api-7d9f"));
    assert_eq!(pod.namespace.as_deref(), Some("shop"));
    assert_eq!(pod.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(pod.container.as_deref(), Some("api"));

    for (filter, verdict) in [
        ("pod=shop/api-7d9f", Verdict::Match),
        ("pod=shop/other", Verdict::NoMatch),
        ("namespace=shop", Verdict::Match),
        ("namespace=kube-system", Verdict::NoMatch),
        ("container=api", Verdict::Match),
        ("container=ct-web", Verdict::NoMatch),
        ("cgroup=/kubepods", Verdict::Match),
        ("cgroup=/docker", Verdict::NoMatch),
    ] {
        let mut parsed: WorkloadFilter = filter.parse().expect("valid");
        assert_eq!(parsed.check(&named), verdict, "{filter}");
    }
    // --cgroup in the kernel: the ancestor at depth 1 is /kubepods.
    let target =
        filter::kernel_target(workloads.cgroups().expect("v2"), "/kubepods").expect("target");
    assert_eq!(target.id, engines::cgroup_id("/kubepods"));
    assert_eq!(target.level, 1);
    let counts = workloads.counters().snapshot();
    assert_eq!(counts.containerd_errors, 0);
}

async fn short_lived_processes_and_removed_containers(docker: &Docker) {
    let id = docker.docker(&["inspect", "-f", "{{.Id}}", "ct-web"]);
    let cgroup = format!("/docker/{id}");
    let cgroup_id = engines::cgroup_id(&cgroup);
    // A process that ran in the container and is gone: its record carries
    // the cgroup id, and that is enough while the container runs.
    docker.docker(&["exec", "ct-web", "/bin/busybox", "true"]);
    let mut workloads = Workloads::with_cgroups(
        Some(cgroups()),
        has_v1(),
        WorkloadConfig {
            lookups: Some(lookups_of(docker)),
            keep_departed: Duration::from_secs(60),
            ..WorkloadConfig::default()
        },
    );
    let gone = dead_pid();
    let named = settled(&mut workloads, cgroup_id, gone).await;
    assert_eq!(
        named.container.as_ref().and_then(|c| c.name.as_deref()),
        Some("ct-web")
    );

    // The container goes away; its records still in flight keep its name.
    docker.docker(&["rm", "-f", "ct-web"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engines::cgroup2_root()
        .join(cgroup.trim_start_matches('/'))
        .exists()
    {
        assert!(Instant::now() < deadline, "{cgroup} was not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = Instant::now();
    workloads.sweep(now);
    assert_eq!(workloads.counters().snapshot().departed_cgroups, 1);
    assert_eq!(workloads.cached().1, 1, "one removed cgroup kept");
    let late = workloads.identify(cgroup_id, gone, now);
    assert_eq!(late, named, "a removed cgroup keeps its last identity");

    // Long after, it is forgotten: the id no longer resolves.
    workloads.sweep(now + Duration::from_secs(61));
    assert_eq!(workloads.cached().1, 0);
    let forgotten = workloads.identify(cgroup_id, gone, now + Duration::from_secs(61));
    assert_eq!(forgotten.cgroup, None);
    assert_eq!(forgotten.container, None);
    assert_eq!(workloads.counters().snapshot().unresolved_cgroups, 1);
}

/// A job that starts, does its one thing and exits: by the time its
/// record is read, its cgroup is gone. The container prints its own cgroup
/// id (the inode of its v2 directory, through a read-only bind mount of the
/// v2 tree), as the kernel would put it in the record.
async fn containers_gone_before_their_records_are_read(docker: &Docker) {
    let mut watching = workloads(Some(lookups_of(docker)), true);
    let mut not_watching = Workloads::with_cgroups(
        Some(cgroups()),
        has_v1(),
        WorkloadConfig {
            lookups: None,
            watch: false,
            ..WorkloadConfig::default()
        },
    );
    let v2 = format!("{}:/cg2:ro", engines::cgroup2_root().display());
    let printed = docker.docker(&[
        "run",
        "--network",
        "none",
        "--name",
        "ct-job",
        "-v",
        &v2,
        IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        "p=$(/bin/busybox sed -n 's/^0:://p' /proc/self/cgroup); /bin/busybox stat -c %i /cg2$p",
    ]);
    let cgroup_id: u64 = printed
        .parse()
        .expect("the container printed its cgroup id");
    let id = docker.docker(&["inspect", "-f", "{{.Id}}", "ct-job"]);
    let cgroup = format!("/docker/{id}");
    assert!(
        !engines::cgroup2_root()
            .join(cgroup.trim_start_matches('/'))
            .exists(),
        "the container's cgroup is gone"
    );
    let workload = settled(&mut watching, cgroup_id, dead_pid()).await;
    assert_eq!(
        workload.cgroup.as_deref(),
        Some(cgroup.as_str()),
        "{workload:?}"
    );
    let container = workload.container.as_ref().expect("a container");
    assert_eq!(&*container.id, id);
    // Docker still knows the stopped container.
    assert_eq!(container.name.as_deref(), Some("ct-job"));
    assert!(watching.counters().snapshot().watch_learned >= 1);

    // Without the watcher, the id of a removed cgroup says nothing.
    let unknown = not_watching.identify(cgroup_id, 0, Instant::now());
    assert_eq!(
        (unknown.cgroup.as_deref(), unknown.container.as_ref()),
        (None, None)
    );
    docker.docker(&["rm", "ct-job"]);
}

async fn hung_then_stopped_engine(docker: &mut Docker) {
    // Docker only: containerd would answer "not found" for these ids.
    // The lookup's timeout is far past the hold's 100 ms wait, so that a
    // sleep overrunning on a loaded machine cannot let the lookup end first
    // (the record would then go because its lookup ended, not because its
    // wait ran out).
    let docker_only = LookupConfig {
        containerd_sockets: Vec::new(),
        timeout: Duration::from_secs(1),
        ..lookups_of(docker)
    };
    let mut workloads = workloads(Some(docker_only), true);
    let counters = workloads.counters();
    let mut hold = Hold::new(16, Duration::from_millis(100), workloads.counters());

    // A hung engine: the socket accepts, nothing answers.
    let first = CgroupProcess::start(&format!(
        "/system.slice/docker-{}.scope",
        engines::random_container_id()
    ));
    let first_id = engines::cgroup_id(&first.relative);
    docker.freeze();
    let started = Instant::now();
    let workload = workloads.identify(first_id, first.pid(), Instant::now());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "identify waited"
    );
    assert!(workload.is_pending());
    assert_eq!(
        workload.container.as_ref().map(|c| c.runtime),
        Some(Some(Runtime::Docker))
    );
    assert_eq!(
        hold.admit("record", &workload, Instant::now()),
        None,
        "it waits"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    workloads.apply_lookups(Instant::now());
    let released = hold.release(&workloads, Instant::now());
    assert_eq!(released, ["record"], "its wait ran out");
    assert_eq!(counters.snapshot().held_timed_out, 1);
    let ended = settled(&mut workloads, first_id, first.pid()).await;
    assert_eq!(ended.metadata, Metadata::Unavailable);
    assert_eq!(
        ended.container.as_ref().map(|c| c.id.len()),
        Some(64),
        "the id stays"
    );
    let counts = counters.snapshot();
    assert_eq!((counts.docker_errors, counts.lookups_unavailable), (1, 1));
    docker.thaw();

    // The engine stops mid-run: still no wait, ids only.
    docker.stop();
    let second = CgroupProcess::start(&format!(
        "/system.slice/docker-{}.scope",
        engines::random_container_id()
    ));
    let second_id = engines::cgroup_id(&second.relative);
    let started = Instant::now();
    let workload = workloads.identify(second_id, second.pid(), Instant::now());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "identify waited"
    );
    let ended = settled(&mut workloads, second_id, second.pid()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the lookup took {:?}",
        started.elapsed()
    );
    assert_eq!(ended.metadata, Metadata::Unavailable);
    assert_eq!(
        ended.container.as_ref().map(|c| &c.id),
        workload.container.as_ref().map(|c| &c.id)
    );
    assert_eq!(counters.snapshot().lookups_unavailable, 2);
}

#[test]
fn missing_runtime_sockets_leave_ids_only_and_promptly() {
    require_root();
    runtime().block_on(async {
        let process = CgroupProcess::start(&format!(
            "/system.slice/docker-{}.scope",
            engines::random_container_id()
        ));
        let cgroup_id = engines::cgroup_id(&process.relative);
        let mut workloads = workloads(Some(missing_runtimes()), true);
        let counters = workloads.counters();
        let mut hold = Hold::new(16, Duration::from_secs(5), workloads.counters());
        let started = Instant::now();
        let first = workloads.identify(cgroup_id, process.pid(), Instant::now());
        assert!(first.is_pending());
        assert_eq!(hold.admit(1, &first, Instant::now()), None);
        let ended = settled(&mut workloads, cgroup_id, process.pid()).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ended.metadata, Metadata::Unavailable);
        assert!(ended.container.is_some());
        let released = hold.release(&workloads, Instant::now());
        assert_eq!(
            released,
            [1],
            "released when the lookup ended, not at its deadline"
        );
        let counts = counters.snapshot();
        assert_eq!(counts.lookups_unavailable, 1);
        assert_eq!(counts.held_timed_out, 0);
        // A missing socket is not a runtime error.
        assert_eq!((counts.docker_errors, counts.containerd_errors), (0, 0));
    });
}

#[test]
fn kubernetes_layouts_made_by_hand() {
    require_root();
    let id = engines::random_container_id();
    let uid = engines::random_pod_uid();
    let systemd = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
        uid.replace('-', "_")
    );
    let cgroupfs = format!("/kubepods/burstable/pod{uid}/{id}");
    let mut workloads = workloads(None, true);
    for (path, runtime) in [(&systemd, Some(Runtime::Containerd)), (&cgroupfs, None)] {
        let process = CgroupProcess::start(path);
        let cgroup_id = engines::cgroup_id(path);
        let workload = workloads.identify(cgroup_id, process.pid(), Instant::now());
        assert_eq!(workload.cgroup.as_deref(), Some(path.as_str()));
        let container = workload.container.as_ref().expect("a container");
        assert_eq!(&*container.id, id);
        assert_eq!(container.runtime, runtime, "{path}");
        let pod = workload.pod.as_ref().expect("a pod");
        assert_eq!(pod.uid.as_deref(), Some(uid.as_str()));
        assert_eq!((pod.name.as_ref(), pod.namespace.as_ref()), (None, None));
        // Runtime lookups are off: nothing is pending.
        assert_eq!(workload.metadata, Metadata::Unavailable);

        // The pod's own cgroup.
        let pod_path = path.rsplit_once('/').map(|(pod, _)| pod).expect("a parent");
        let pod_workload = workloads.identify(engines::cgroup_id(pod_path), 0, Instant::now());
        assert_eq!(pod_workload.container, None);
        assert_eq!(
            pod_workload.pod.as_ref().and_then(|p| p.uid.as_deref()),
            Some(uid.as_str())
        );
        let mut in_pod = WorkloadFilter::cgroup(pod_path).expect("valid");
        assert_eq!(in_pod.check(&workload), Verdict::Match);
        let target =
            filter::kernel_target(workloads.cgroups().expect("v2"), pod_path).expect("target");
        assert_eq!(target.id, engines::cgroup_id(pod_path));
        assert_eq!(target.level, 3);
        // The same directory named by its full path.
        let absolute = format!("{}{pod_path}", engines::cgroup2_root().display());
        let same =
            filter::kernel_target(workloads.cgroups().expect("v2"), &absolute).expect("target");
        assert_eq!(same, target);
    }
    let missing = filter::kernel_target(workloads.cgroups().expect("v2"), "/ct-test-nonexistent");
    let error = missing.expect_err("no such cgroup").to_string();
    assert!(
        error.contains("/ct-test-nonexistent is not a cgroup v2 directory"),
        "{error}"
    );
    assert!(filter::kernel_target(workloads.cgroups().expect("v2"), "/proc").is_err());
}

#[test]
fn removed_cgroups_are_bounded_and_counted() {
    require_root();
    let base = format!("/ct-test-departed-{}", std::process::id());
    for file_handles in [true, false] {
        let mut processes: Vec<CgroupProcess> = (0..3)
            .map(|_| {
                CgroupProcess::start(&format!(
                    "{base}/docker-{}.scope",
                    engines::random_container_id()
                ))
            })
            .collect();
        let mut workloads = Workloads::with_cgroups(
            Some(cgroups()),
            has_v1(),
            WorkloadConfig {
                lookups: None,
                file_handles,
                max_departed: 1,
                ..WorkloadConfig::default()
            },
        );
        for process in &processes {
            let id = engines::cgroup_id(&process.relative);
            let workload = workloads.identify(id, process.pid(), Instant::now());
            assert!(workload.container.is_some(), "{workload:?}");
        }
        for process in &mut processes {
            process.remove();
        }
        workloads.sweep(Instant::now());
        let counts = workloads.counters().snapshot();
        assert_eq!(counts.departed_cgroups, 3, "file handles: {file_handles}");
        assert_eq!(counts.departed_evicted, 2, "file handles: {file_handles}");
        assert_eq!(workloads.cached().1, 1);
    }
    engines::remove_cgroup_everywhere(&base);
}

#[test]
fn v1_cgroups_of_live_processes_on_hybrid_hosts() {
    require_root();
    let Some(systemd) = engines::mounts_of("cgroup")
        .into_iter()
        .find(|point| point.ends_with("systemd"))
    else {
        panic!("this test needs the name=systemd v1 hierarchy of a hybrid host");
    };
    let id = engines::random_container_id();
    // Below a parent of its own, so as not to share dockerd's /docker.
    let relative = format!("/ct-test-v1-{}/docker/{id}", std::process::id());
    let mut process = CgroupProcess::start_v1(&systemd, &relative);
    // The process's v2 cgroup is this test's: the root here.
    let v2_path = std::fs::read_to_string(format!("/proc/{}/cgroup", process.pid()))
        .expect("cgroup")
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        .expect("a v2 line");
    let v2_id = engines::cgroup_id(&v2_path);
    let mut workloads = workloads(None, true);
    let workload = workloads.identify(v2_id, process.pid(), Instant::now());
    assert!(workload.cgroup_v1);
    assert_eq!(workload.cgroup.as_deref(), Some(relative.as_str()));
    assert_eq!(
        workload.container.as_ref().map(|c| &*c.id),
        Some(id.as_str())
    );
    // The answer is kept for the process a short while.
    let again = workloads.identify(v2_id, process.pid(), Instant::now());
    assert!(Arc::ptr_eq(&workload, &again));
    assert_eq!(workloads.counters().snapshot().v1_reads, 1);
    // Once it is gone, its v2 cgroup is all there is.
    process.kill();
    let pid = process.pid();
    let mut fresh = self::workloads(None, true);
    let gone = fresh.identify(v2_id, pid, Instant::now());
    assert!(!gone.cgroup_v1);
    assert_eq!(gone.container, None);
}

#[test]
fn resolution_costs() {
    require_root();
    let base = format!("/ct-test-costs-{}", std::process::id());
    let root = engines::cgroup2_root();
    let count = 200;
    engines::claim_cgroup(&base);
    for i in 0..count {
        std::fs::create_dir_all(root.join(format!("{}/c{i}", base.trim_start_matches('/'))))
            .expect("mkdir");
    }
    let ids: Vec<u64> = (0..count)
        .map(|i| engines::cgroup_id(&format!("{base}/c{i}")))
        .collect();
    let cgroups = cgroups();
    assert_eq!(cgroups.resolution(), Resolution::FileHandle);
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let path = cgroups
            .path_by_handle(*id)
            .expect("handles")
            .expect("exists");
        assert_eq!(path, format!("{base}/c{i}"));
    }
    let by_handle = started.elapsed() / count;
    let rounds = 20;
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..rounds {
        found = cgroups.walk().paths.len();
    }
    let walk = started.elapsed() / rounds;

    let mut workloads = workloads(None, true);
    let id = ids[0];
    workloads.identify(id, 0, Instant::now());
    let now = Instant::now();
    let calls = 1_000_000u32;
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(workloads.identify(std::hint::black_box(id), 0, now));
    }
    let hit = started.elapsed() / calls;

    // Cgroups made while the watcher runs are known before their first
    // record: a miss costs no system call.
    let fresh: Vec<String> = (0..20).map(|i| format!("{base}/new{i}")).collect();
    for path in &fresh {
        std::fs::create_dir(root.join(path.trim_start_matches('/'))).expect("mkdir");
    }
    let fresh_ids: Vec<u64> = fresh.iter().map(|path| engines::cgroup_id(path)).collect();
    std::thread::sleep(Duration::from_millis(200));
    workloads.apply_lookups(Instant::now());
    let started = Instant::now();
    for (path, id) in fresh.iter().zip(&fresh_ids) {
        let workload = workloads.identify(*id, 0, Instant::now());
        assert_eq!(workload.cgroup.as_deref(), Some(path.as_str()));
    }
    let learned = started.elapsed() / 20;
    assert!(workloads.counters().snapshot().watch_learned >= 20);
    for path in &fresh {
        let _ = std::fs::remove_dir(root.join(path.trim_start_matches('/')));
    }
    eprintln!(
        "cache hit {hit:?}; miss on a cgroup learned by the watcher {learned:?}; miss by file handle {by_handle:?}; miss by walk {walk:?} ({found} cgroups)"
    );
    assert!(hit < Duration::from_micros(2), "a cache hit took {hit:?}");
    for i in 0..count {
        let _ = std::fs::remove_dir(root.join(format!("{}/c{i}", base.trim_start_matches('/'))));
    }
    engines::remove_cgroup_everywhere(&base);
}

#[test]
fn ids_still_resolve_after_the_daemon_drops_its_capabilities() {
    require_root();
    let process = CgroupProcess::start(&format!(
        "/system.slice/docker-{}.scope",
        engines::random_container_id()
    ));
    let cgroup_id = engines::cgroup_id(&process.relative);
    let mut workloads = workloads(None, true);
    assert_eq!(workloads.resolution(), Some(Resolution::FileHandle));
    // As the daemon does once attached. Capabilities are per thread: this
    // one keeps its own to remove the cgroup afterwards.
    let (workload, resolution, departed) = std::thread::spawn(move || {
        connect_trace::kernel::privileges::drop_after_attach().expect("capset");
        let workload = workloads.identify(cgroup_id, 0, Instant::now());
        let resolution = workloads.resolution();
        workloads.sweep(Instant::now());
        let departed = workloads.counters().snapshot().departed_cgroups;
        (workload, resolution, departed)
    })
    .join()
    .expect("the thread");
    assert_eq!(workload.cgroup.as_deref(), Some(process.relative.as_str()));
    assert_eq!(resolution, Some(Resolution::Walk));
    assert_eq!(departed, 0, "a live cgroup is not taken for removed");
}
