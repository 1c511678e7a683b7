//! Which container and pod made a connect(), end to end: a real Docker
//! engine and its containerd (private to this test), containers that
//! connect and exit at once, Kubernetes' CRI labels, the workload filters
//! (in the daemon, and `--cgroup` in the kernel), and runtimes that are
//! not there.
//!
//! Needs root (`cargo xtask test` runs it so in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic to fail"
)]

mod common;
mod engines;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{
    daemon::{self, Daemon, records_in},
    free_port, refused_connect_to, require_root,
};
use engines::{Docker, IMAGE};
use serde_json::Value;

fn output_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("connect-trace-containers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&path);
    path
}

/// The daemon's arguments to ask `docker`'s engines, and write to `output`.
fn args_for<'a>(docker: &'a Docker, output: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--docker-socket",
        docker.socket.to_str().unwrap(),
        "--containerd-socket",
        docker.containerd_socket.to_str().unwrap(),
        "--interval",
        "1",
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    args
}

/// Waits for a record in `path` that `matches`.
fn record_where(path: &Path, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(record) = records_in(path).into_iter().find(|record| matches(record)) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no record {what} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused_nc(record: &Value) -> bool {
    record["type"] == "connect"
        && record["comm"] == "busybox"
        && record["errno_name"] == "ECONNREFUSED"
}

/// `docker run` of `nc 127.0.0.1 1`, which is refused and exits at once;
/// returns the container's full id.
fn run_refused_container(docker: &Docker, name: &str) -> String {
    let cidfile = std::env::temp_dir().join(format!("ct-cid-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&cidfile);
    // nc exits 1 when refused; `|| true` keeps the run's status 0.
    docker.docker(&[
        "run",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "--network",
        "none",
        "--name",
        name,
        IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox nc 127.0.0.1 1 </dev/null || true",
    ]);
    let id = std::fs::read_to_string(&cidfile).unwrap().trim().to_owned();
    let _ = std::fs::remove_file(&cidfile);
    assert_eq!(id.len(), 64, "{id}");
    id
}

#[test]
fn containers_and_pods_are_named() {
    require_root();
    let mut docker = Docker::start();
    docker.import_image();
    let host_netns = std::fs::metadata("/proc/self/ns/net").unwrap();
    let host_netns = std::os::unix::fs::MetadataExt::ino(&host_netns);

    // A container that connects and exits at once: named all the same,
    // with the pod-less container's facts from Docker.
    let output = output_file("docker");
    let port = free_port();
    let metrics = port.to_string();
    let daemon = Daemon::start(&args_for(&docker, &output, &["--metrics", &metrics]));
    let name = format!("ct-web-{}", std::process::id());
    let id = run_refused_container(&docker, &name);
    let record = record_where(&output, "from the container", |r| {
        refused_nc(r) && r["container"]["id"] == id.as_str()
    });
    assert_eq!(record["container"]["name"], name.as_str(), "{record}");
    assert_eq!(record["container"]["image"], IMAGE, "{record}");
    assert_eq!(record["container"]["runtime"], "docker", "{record}");
    assert_eq!(record["pod"], Value::Null, "{record}");
    assert!(record["cgroup"].as_str().unwrap().contains(&id), "{record}");
    let netns = record["netns"].as_u64().unwrap();
    assert_ne!(netns, host_netns, "--network none has its own namespace");
    // A host process is named by its cgroup only.
    refused_connect_to(1);
    let host = record_where(&output, "from this process", |r| {
        r["type"] == "connect" && r["pid"] == std::process::id() && r["port"] == 1
    });
    assert_eq!(host["container"], Value::Null, "{host}");
    assert_eq!(host["netns"], host_netns, "{host}");
    // Per-workload metrics and the summary's top containers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let series =
        format!("connect_trace_workload_failures_total{{class=\"refused\",container=\"{name}\"");
    while daemon::scrape(port, &series).unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "no {series}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = record_where(&output, "summary naming the container", |r| {
        r["type"] == "summary"
            && r["top"]["containers"]
                .as_array()
                .is_some_and(|top| top.iter().any(|entry| entry["key"] == name.as_str()))
    });
    assert!(
        summary["top"]["pods"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);

    // A pod's container, started by containerd with the labels the CRI
    // sets: named by pod.
    let output = output_file("pod");
    let daemon = Daemon::start(&args_for(&docker, &output, &["--pod", "shop/web-7d9f"]));
    docker.import_image_into_containerd("k8s.io");
    let pod_uid = engines::random_pod_uid();
    let ctr_id = engines::random_container_id();
    let cgroup = format!("/kubepods/burstable/pod{pod_uid}/{ctr_id}");
    docker.ctr_run(
        "k8s.io",
        &ctr_id,
        &cgroup,
        &[
            ("io.kubernetes.pod.name", "web-7d9f"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.uid", &pod_uid),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    docker.ctr(
        "k8s.io",
        &[
            "task",
            "exec",
            "--exec-id",
            "nc",
            &ctr_id,
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox nc 127.0.0.1 1 </dev/null || true",
        ],
    );
    let record = record_where(&output, "from the pod", refused_nc);
    assert_eq!(record["container"]["id"], ctr_id.as_str(), "{record}");
    assert_eq!(record["pod"]["name"], "web-7d9f", "{record}");
    assert_eq!(record["pod"]["namespace"], "shop", "{record}");
    assert_eq!(record["pod"]["uid"], pod_uid.as_str(), "{record}");
    assert_eq!(record["pod"]["container"], "app", "{record}");
    // --pod keeps that pod only: not the host, not the Docker container.
    refused_connect_to(1);
    run_refused_container(&docker, &format!("{name}-2"));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let connects: Vec<Value> = records_in(&output)
        .into_iter()
        .filter(|r| r["type"] == "connect")
        .collect();
    assert!(
        connects.iter().all(|r| r["pod"]["name"] == "web-7d9f"),
        "{connects:#?}"
    );
    assert!(
        stopped.count("records_filtered") >= 2,
        "{}",
        stopped.delivery
    );
}

#[test]
fn container_filters_in_the_daemon_and_cgroup_in_the_kernel() {
    require_root();
    let docker = Docker::start();
    docker.import_image();
    // A long-running container whose cgroup the kernel filters on.
    let name = format!("ct-sleeper-{}", std::process::id());
    let id = docker
        .docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            IMAGE,
            "/bin/busybox",
            "sleep",
            "600",
        ])
        .trim()
        .to_owned();
    let exec_nc = || {
        docker.docker(&[
            "exec",
            &name,
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox nc 127.0.0.1 1 </dev/null || true",
        ]);
    };
    let cgroup = format!("/docker/{id}");
    let output = output_file("cgroup");
    let port = free_port();
    let metrics = port.to_string();
    let daemon = Daemon::start(&args_for(
        &docker,
        &output,
        &["--cgroup", &cgroup, "--metrics", &metrics],
    ));
    refused_connect_to(1);
    exec_nc();
    record_where(&output, "from the sleeper", |r| {
        refused_nc(r) && r["container"]["id"] == id.as_str()
    });
    // Filtered in the kernel: the host's call is not even counted there.
    let text = daemon::metrics(port).unwrap();
    let counted = daemon::sample(&text, "connect_trace_kernel_attempts_total");
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let connects: Vec<Value> = records_in(&output)
        .into_iter()
        .filter(|r| r["type"] == "connect")
        .collect();
    assert!(
        connects.iter().all(|r| r["container"]["id"] == id.as_str()),
        "{connects:#?}"
    );
    assert!(
        counted >= 1.0 && counted <= connects.len() as f64 + 1.0,
        "{counted} counted, {} records",
        connects.len()
    );

    // --container by name, in the daemon.
    let output = output_file("container");
    let daemon = Daemon::start(&args_for(&docker, &output, &["--container", &name]));
    refused_connect_to(1);
    exec_nc();
    record_where(&output, "from the named container", |r| {
        refused_nc(r) && r["container"]["name"] == name.as_str()
    });
    let stopped = daemon.stop_counted(libc::SIGTERM);
    let connects: Vec<Value> = records_in(&output)
        .into_iter()
        .filter(|r| r["type"] == "connect")
        .collect();
    assert!(
        connects
            .iter()
            .all(|r| r["container"]["name"] == name.as_str()),
        "{connects:#?}"
    );
    assert!(
        stopped.count("records_filtered") >= 1,
        "{}",
        stopped.delivery
    );
    docker.docker(&["rm", "-f", &name]);
}

#[test]
fn without_a_runtime_records_keep_their_ids_promptly() {
    require_root();
    let docker = Docker::start();
    docker.import_image();
    let output = output_file("absent");
    let daemon = Daemon::start(&[
        "--docker-socket",
        "/nonexistent/docker.sock",
        "--containerd-socket",
        "/nonexistent/containerd.sock",
        "--output",
        output.to_str().unwrap(),
    ]);
    let started = Instant::now();
    let id = run_refused_container(&docker, &format!("ct-absent-{}", std::process::id()));
    let record = record_where(&output, "from the container", |r| {
        refused_nc(r) && r["container"]["id"] == id.as_str()
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(record["container"]["name"], Value::Null, "{record}");
    assert_eq!(
        record["container"]["runtime"], "docker",
        "from the cgroup path: {record}"
    );
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
