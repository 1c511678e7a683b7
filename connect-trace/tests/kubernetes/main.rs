//! The fleet deployment: the image `cargo xtask image` builds, and the
//! manifests in deploy/kubernetes/.
//!
//! - The manifests validate strictly against the Kubernetes API schemas and
//!   the Prometheus Operator's CRD models, with no cluster.
//! - The image holds the static binary alone and runs with a read-only root.
//! - The DaemonSet's container, run on containerd the way the kubelet would
//!   run it (every setting read from the manifest), traces a refused connect
//!   made in another container and answers its probes.
//!
//! The engine tests need root; they start a private Docker engine and stop
//! it (`engine`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod engine;
mod kubelet;
mod manifest;

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use engine::{BUSYBOX_IMAGE, Engine, succeed};
use kubelet::{ImageConfig, Node, PodNetwork};
use manifest::{ConfigMap, DaemonSet, PodMonitor};
use serde_json::Value;

/// The validators, pinned: kubernetes-validate ships the API schemas, the
/// cloudcoil models carry the Prometheus Operator's CRDs (0.80.1, the last
/// release for Debian 12's Python 3.11).
const REQUIREMENTS: &str = "kubernetes-validate==1.37.0\ncloudcoil==0.6.0\ncloudcoil-models-prometheus-operator==0.80.1.0\n";

/// The oldest and the newest Kubernetes the manifests are checked against.
const KUBERNETES_VERSIONS: &str = "1.25.0,1.37.0";

/// How long the traced container may take to attach, and a record to come.
const TIMEOUT: Duration = Duration::from_secs(30);

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests run containers and load eBPF programs: run them as root (`cargo xtask test`)"
    );
}

#[test]
fn manifests_validate_strictly_against_the_api_schemas() {
    let started = Instant::now();
    let venv = validators();
    let installed = started.elapsed();

    // Two copies with one misspelt field each, in a built-in kind and in
    // the operator's, show that the validation is strict. One run checks
    // them with the real files: loading the schemas is most of its time.
    let scratch = tempdir("validate");
    let daemon_set_typo = scratch.join("daemonset-typo.yaml");
    with_unknown_field(
        &manifest::file_of_kind("DaemonSet"),
        &[
            "spec",
            "template",
            "spec",
            "containers",
            "0",
            "securityContext",
        ],
        "privilegd",
        &daemon_set_typo,
    );
    let pod_monitor_typo = scratch.join("podmonitor-typo.yaml");
    with_unknown_field(
        &manifest::pod_monitor_file(),
        &["spec", "podMetricsEndpoints", "0"],
        "pathh",
        &pod_monitor_typo,
    );
    let mut files = manifest::core_files();
    files.push(manifest::pod_monitor_file());
    let text = validate(
        &venv,
        files.iter().chain([&daemon_set_typo, &pod_monitor_typo]),
    );
    let lines_of_file = |file: &Path| -> Vec<&str> {
        let prefix = format!(" {}: ", file.display());
        text.lines().filter(|line| line.contains(&prefix)).collect()
    };
    let mut kinds = BTreeSet::new();
    for file in &files {
        let lines = lines_of_file(file);
        assert!(
            !lines.is_empty(),
            "{} was not validated:\n{text}",
            file.display()
        );
        for line in lines {
            assert!(line.starts_with("ok "), "{line}\n{text}");
            if let Some((kind, _)) = line
                .split(": ")
                .nth(1)
                .and_then(|what| what.split_once('/'))
            {
                kinds.insert(kind.to_owned());
            }
        }
    }
    let expected = [
        "ConfigMap",
        "DaemonSet",
        "Namespace",
        "PodMonitor",
        "Service",
        "ServiceAccount",
    ];
    assert_eq!(kinds, BTreeSet::from(expected.map(str::to_owned)), "{text}");
    for (typo, field) in [
        (&daemon_set_typo, "privilegd"),
        (&pod_monitor_typo, "pathh"),
    ] {
        assert!(
            lines_of_file(typo)
                .iter()
                .any(|line| line.starts_with("FAIL ") && line.contains(field)),
            "a misspelt field passed:\n{text}"
        );
    }
    let _ = fs::remove_dir_all(scratch);
    eprintln!(
        "validation: {:?} (of which {installed:?} preparing the virtual environment)",
        started.elapsed()
    );
}

#[test]
fn image_holds_only_the_static_binary_and_runs_read_only() {
    require_root();
    let engine = Engine::shared();
    let config = image_config(&engine, &engine.image);
    assert_eq!(config.entrypoint, ["/connect-trace"]);
    assert_eq!(config.cmd, ["run"]);
    assert_eq!(config.user, "0:0");

    // What the image holds: its layers, as `docker save` writes them.
    let unpacked = engine.root.join("saved");
    fs::create_dir_all(&unpacked).expect("directory");
    let archive = engine.root.join("saved.tar");
    succeed(
        engine
            .docker()
            .arg("save")
            .arg("--output")
            .arg(&archive)
            .arg(&engine.image),
        "docker save",
    );
    succeed(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
        "tar -x",
    );
    let saved: Value = serde_json::from_str(
        &fs::read_to_string(unpacked.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    let mut files = BTreeSet::new();
    for layer in saved[0]["Layers"].as_array().expect("layers") {
        let listing = succeed(
            Command::new("tar")
                .arg("-tf")
                .arg(unpacked.join(layer.as_str().expect("layer path"))),
            "tar -t",
        );
        files.extend(
            String::from_utf8_lossy(&listing.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(files, BTreeSet::from(["connect-trace".to_owned()]));
    let size = succeed(
        engine
            .docker()
            .args(["image", "inspect", "--format", "{{.Size}}", &engine.image]),
        "docker image inspect",
    );
    eprintln!(
        "image {} holds {files:?}: {} bytes",
        engine.image,
        String::from_utf8_lossy(&size.stdout).trim()
    );

    // It runs with nothing writable and no network: a static binary that
    // writes nothing at start.
    let explained = succeed(
        engine
            .docker()
            .args(["run", "--rm", "--read-only", "--network", "none"])
            .arg(&engine.image)
            .args(["explain", "ECONNREFUSED"]),
        "docker run --read-only",
    );
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(text.contains("ECONNREFUSED"), "{text}");
    let _ = fs::remove_dir_all(unpacked);
    let _ = fs::remove_file(archive);
}

#[test]
fn daemonset_container_on_containerd_traces_another_containers_refused_connect() {
    require_root();
    let engine = Engine::shared();
    let daemon_set: DaemonSet = manifest::load(&manifest::file_of_kind("DaemonSet"));
    let config_map: ConfigMap = manifest::load(&manifest::file_of_kind("ConfigMap"));
    let pod_monitor: PodMonitor = manifest::load(&manifest::pod_monitor_file());
    let container = &daemon_set.spec.template.spec.containers[0];
    assert_eq!(
        container.image, engine.image,
        "the DaemonSet must run the image `cargo xtask image` builds"
    );

    let network = PodNetwork::new();
    let pod_dir = engine.root.join("pod");
    fs::create_dir_all(&pod_dir).expect("pod directory");
    let node = Node {
        engine: &engine,
        name: node_name(),
        network: &network,
        files: pod_dir.join("volumes"),
        pid_file: pod_dir.join("pid"),
    };
    let image = image_config(&engine, &engine.image);
    let run = kubelet::translate(&daemon_set, &[config_map], &image, &node);

    // `connect-trace check` in the same container finds everything `run`
    // needs: the capabilities the manifest adds are the ones it asks for.
    check_in_container(&engine, &run, &image);

    let started = Instant::now();
    let mut pod = Pod::start(&engine, &run);
    let attached = started.elapsed();
    let pid: u32 = fs::read_to_string(&node.pid_file)
        .expect("ctr's pid file")
        .trim()
        .parse()
        .expect("a pid");

    // The runtime applied the security context, the mounts, the namespaces,
    // the arguments and the environment.
    assert_runs_as_declared(pid, &run, &daemon_set, &network);

    // The kubelet's probes and Prometheus's scrape, at the pod's address.
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let probe = probe.as_ref().expect("probes are set");
        let port = container.port(&probe.http_get.port);
        let (code, body) = http_get(&network, port, &probe.http_get.path);
        assert_eq!(code, 200, "{} answered {code}: {body}", probe.http_get.path);
    }
    for endpoint in &pod_monitor.spec.pod_metrics_endpoints {
        let port = container.port(&serde_norway::Value::String(endpoint.port.clone()));
        let (code, body) = http_get(&network, port, &endpoint.path);
        assert_eq!(code, 200, "{} answered {code}", endpoint.path);
        assert!(body.contains("connect_trace_"), "{body}");
    }

    // Another container connects to a closed port in its own network
    // namespace.
    let busybox = refused_connect_in_another_container(&engine);

    let record = pod.record(|record| {
        record["type"] == "connect" && record["pid"].as_u64() == Some(busybox.pid)
    });
    eprintln!("the traced container wrote: {record}");
    assert_eq!(record["comm"], "nc", "{record}");
    assert_eq!(record["addr"], "127.0.0.1", "{record}");
    assert_eq!(record["port"], 1, "{record}");
    assert_eq!(record["outcome"], "failed", "{record}");
    assert_eq!(record["final_errno_name"], "ECONNREFUSED", "{record}");
    assert_eq!(
        record["cgroup_id"].as_u64(),
        Some(busybox.cgroup_id),
        "the busybox container's cgroup v2 id: {record}"
    );
    // The other container is named by its full id (from its cgroup path:
    // the daemon's container reads the host's cgroup tree, mounted
    // read-only), and the record names the node.
    assert_eq!(record["container"]["id"], busybox.id.as_str(), "{record}");
    assert_eq!(record["container"]["runtime"], "docker", "{record}");
    assert_eq!(record["node"], node.name.as_str(), "{record}");

    let memory = memory_peak(pid);
    // The kubelet stops a pod with SIGTERM; the daemon drains and exits 0.
    let stopped = pod.stop();
    assert!(stopped.success(), "the daemon exited with {stopped}");
    eprintln!(
        "containerd run: attached in {attached:?}, whole run {:?}; peak memory of the container's cgroup: {}",
        started.elapsed(),
        memory.map_or_else(
            || "unknown".to_owned(),
            |bytes| format!("{:.1} MiB", bytes as f64 / 1048576.0)
        )
    );
}

/// Runs `connect-trace check --json` in a container set up like the
/// DaemonSet's; every check must say `ok`.
fn check_in_container(engine: &Engine, run: &kubelet::CtrRun, image: &ImageConfig) {
    let checked = engine
        .ctr_run()
        .args(&run.options)
        .arg(containerd_reference(&engine.image))
        .arg("connect-trace-check")
        .args(&image.entrypoint)
        .args(["check", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("ctr run check");
    let checks: Value = serde_json::from_slice(&checked.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json ({e}): {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        )
    });
    for check in checks.as_array().expect("a list of checks") {
        // Docker is optional on a node; the DaemonSet mounts containerd's
        // socket, which must answer.
        if check["name"] == "runtime docker" {
            assert_ne!(check["status"], "missing", "{check}");
            continue;
        }
        assert_eq!(
            check["status"], "ok",
            "in the DaemonSet's container: {check}"
        );
    }
    assert!(checked.status.success(), "check: {}", checked.status);
}

/// Reads back from `/proc` what the runtime made of the container whose
/// process is `pid`, and compares it with the manifest.
fn assert_runs_as_declared(
    pid: u32,
    run: &kubelet::CtrRun,
    daemon_set: &DaemonSet,
    network: &PodNetwork,
) {
    let security = &daemon_set.spec.template.spec.containers[0].security_context;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    let bounding = u64::from_str_radix(field("CapBnd:"), 16).expect("CapBnd");
    let granted: BTreeSet<String> = caps::all()
        .into_iter()
        .filter(|capability| bounding & capability.bitmask() != 0)
        .map(|capability| capability.to_string())
        .collect();
    assert_eq!(granted, run.capabilities, "the container's capabilities");
    if security.allow_privilege_escalation == Some(false) {
        assert_eq!(field("NoNewPrivs:"), "1");
    }
    if security
        .seccomp_profile
        .as_ref()
        .is_some_and(|profile| profile.kind == "RuntimeDefault")
    {
        assert_eq!(field("Seccomp:"), "2", "seccomp filter mode");
    }

    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let read_only = |point: &str| {
        let line = mounts
            .lines()
            // The last mount on a point is the one the container sees.
            .rfind(|line| line.split(' ').nth(4) == Some(point))
            .unwrap_or_else(|| panic!("{point} is not mounted in the container:\n{mounts}"));
        line.split(' ')
            .nth(5)
            .is_some_and(|options| options.split(',').any(|o| o == "ro"))
    };
    assert_eq!(
        read_only("/"),
        security.read_only_root_filesystem == Some(true),
        "the root filesystem"
    );
    for (point, ro) in &run.mounts {
        assert_eq!(read_only(point), *ro, "{point}");
    }

    assert_eq!(
        same_namespace(pid, "pid"),
        daemon_set.spec.template.spec.host_pid,
        "the host's PID namespace"
    );
    assert_eq!(
        fs::metadata(network.path()).expect("netns").ino(),
        fs::metadata(format!("/proc/{pid}/ns/net"))
            .expect("ns")
            .ino(),
        "the pod's network namespace"
    );

    let strings = |bytes: Vec<u8>| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .filter(|item| !item.is_empty())
            .map(|item| String::from_utf8_lossy(item).into_owned())
            .collect()
    };
    let argv = strings(fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"));
    assert_eq!(argv, run.argv);
    let environ = strings(fs::read(format!("/proc/{pid}/environ")).expect("environ"));
    for pair in &run.env {
        assert!(environ.contains(pair), "{pair} not in {environ:?}");
    }
}

/// The busybox container that made the refused connect.
struct OtherContainer {
    /// Its full id, as `docker run` printed it.
    id: String,
    /// Its process, as the host numbers it.
    pid: u64,
    /// Its cgroup v2 id.
    cgroup_id: u64,
}

/// Runs a busybox container with no network but its own loopback, and has
/// it connect to a closed port there once its pid and cgroup are known.
fn refused_connect_in_another_container(engine: &Engine) -> OtherContainer {
    let started = succeed(
        engine
            .docker()
            .args(["run", "--detach", "--network", "none", BUSYBOX_IMAGE])
            .args([
                "sh",
                "-c",
                "while [ ! -e /go ]; do sleep 0.05; done; exec nc 127.0.0.1 1",
            ]),
        "docker run busybox",
    );
    let id = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    let inspected = succeed(
        engine
            .docker()
            .args(["inspect", "--format", "{{.State.Pid}}", &id]),
        "docker inspect",
    );
    let pid: u64 = String::from_utf8_lossy(&inspected.stdout)
        .trim()
        .parse()
        .expect("the busybox container's pid");
    // Read while the container lives: its cgroup goes with it.
    let cgroup_id = cgroup_v2_id(pid);
    succeed(
        engine.docker().args(["exec", &id, "touch", "/go"]),
        "docker exec",
    );
    let exit = succeed(engine.docker().args(["wait", &id]), "docker wait");
    assert_eq!(
        String::from_utf8_lossy(&exit.stdout).trim(),
        "1",
        "nc fails to connect"
    );
    OtherContainer { id, pid, cgroup_id }
}

/// The connect-trace container, run by `ctr run` and read line by line.
struct Pod<'a> {
    engine: &'a Engine,
    ctr: Child,
    stdout: Receiver<String>,
    stderr: Vec<String>,
    stderr_lines: Receiver<String>,
}

/// The container's id in containerd.
const POD_CONTAINER: &str = "connect-trace-daemonset";

impl<'a> Pod<'a> {
    /// Starts the container and waits until the programs are attached.
    fn start(engine: &'a Engine, run: &kubelet::CtrRun) -> Self {
        let mut ctr = engine
            .ctr_run()
            .args(&run.options)
            .arg(containerd_reference(&engine.image))
            .arg(POD_CONTAINER)
            .args(&run.argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ctr run");
        let stdout = lines_of(ctr.stdout.take().expect("stdout"));
        let stderr_lines = lines_of(ctr.stderr.take().expect("stderr"));
        let mut pod = Self {
            engine,
            ctr,
            stdout,
            stderr: Vec::new(),
            stderr_lines,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match pod.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let attached = line.contains("tracing connect()");
                    pod.stderr.push(line);
                    if attached {
                        return pod;
                    }
                }
                Err(_) => panic!(
                    "the container did not attach ({:?}); it said:\n{}\nengine log:\n{}",
                    pod.ctr.try_wait(),
                    pod.stderr.join("\n"),
                    engine.log()
                ),
            }
        }
    }

    /// The first JSON record on stdout that `wanted` accepts.
    fn record(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.stdout.recv_timeout(left) else {
                self.stderr.extend(self.stderr_lines.try_iter());
                panic!(
                    "no such record; stdout had:\n{}\nstderr:\n{}",
                    seen.join("\n"),
                    self.stderr.join("\n")
                );
            };
            let record: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout holds JSON Lines only ({e}): {line}"));
            if wanted(&record) {
                return record;
            }
            seen.push(line);
        }
    }

    /// Sends SIGTERM, as the kubelet does, and waits for the exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        succeed(
            self.engine
                .ctr()
                .args(["tasks", "kill", "--signal", "SIGTERM", POD_CONTAINER]),
            "ctr tasks kill",
        );
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.ctr.try_wait().expect("ctr status") {
                self.stderr.extend(self.stderr_lines.try_iter());
                let last = self.stderr.last().cloned().unwrap_or_default();
                assert!(last.contains("lost"), "no final counts: {last}");
                return status;
            }
            assert!(Instant::now() < deadline, "the container did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if matches!(self.ctr.try_wait(), Ok(None)) {
            let _ = self
                .engine
                .ctr()
                .args(["tasks", "kill", "--signal", "SIGKILL", POD_CONTAINER])
                .output();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.ctr.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.ctr.kill();
            let _ = self.ctr.wait();
        }
    }
}

fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The image's entrypoint, command and user, as the kubelet combines them
/// with the container's.
fn image_config(engine: &Engine, image: &str) -> ImageConfig {
    let output = succeed(
        engine
            .docker()
            .args(["image", "inspect", "--format", "{{json .Config}}", image]),
        "docker image inspect",
    );
    let config: Value = serde_json::from_slice(&output.stdout).expect("image config");
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().expect("a string").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    ImageConfig {
        entrypoint: strings(&config["Entrypoint"]),
        cmd: strings(&config["Cmd"]),
        user: config["User"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The name containerd gives an image that Docker calls `image`.
fn containerd_reference(image: &str) -> String {
    match image.split_once('/') {
        None => format!("docker.io/library/{image}"),
        Some((host, _)) if host.contains('.') || host.contains(':') => image.to_owned(),
        Some(_) => format!("docker.io/{image}"),
    }
}

/// This machine's host name: the node's name in the downward API.
fn node_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

/// Whether process `pid` shares this process's `kind` namespace.
fn same_namespace(pid: u32, kind: &str) -> bool {
    let theirs = fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace");
    let ours = fs::read_link(format!("/proc/self/ns/{kind}")).expect("namespace");
    theirs == ours
}

/// The cgroup v2 id of process `pid`: the inode of its cgroup's directory.
fn cgroup_v2_id(pid: u64) -> u64 {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {cgroups}"));
    let mounts = fs::read_to_string("/proc/self/mounts").expect("mounts");
    let root = mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].to_owned())
        })
        .expect("a cgroup2 mount");
    let dir = Path::new(&root).join(path.trim_start_matches('/'));
    fs::metadata(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .ino()
}

/// The most memory the container's cgroup has been charged, BPF maps
/// included, when the host says.
fn memory_peak(pid: u32) -> Option<u64> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let file = match controllers {
            "memory" => format!("/sys/fs/cgroup/memory{path}/memory.max_usage_in_bytes"),
            "" => format!("/sys/fs/cgroup/unified{path}/memory.peak"),
            _ => continue,
        };
        if let Some(bytes) = fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return Some(bytes);
        }
    }
    None
}

/// `GET path` on the pod's loopback, from inside its network namespace, as
/// the kubelet's probe reaches the pod's address. Returns the status code
/// and the body.
fn http_get(network: &PodNetwork, port: u16, path: &str) -> (u16, String) {
    let namespace = fs::File::open(network.path()).expect("the pod's netns");
    let path = path.to_owned();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, which ends with the request.
        let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream =
            TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not HTTP: {response}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (code, body)
    })
    .join()
    .expect("probe thread")
}

/// The virtual environment with the validators, made once and kept under
/// the target directory while the pins stay the same.
fn validators() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-venv");
    let stamp = venv.join("requirements.txt");
    if fs::read_to_string(&stamp).is_ok_and(|pinned| pinned == REQUIREMENTS) {
        return venv;
    }
    let _ = fs::remove_dir_all(&venv);
    // Debian's python3 has venv with python3-venv (`cargo xtask setup`).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    succeed(
        Command::new(python).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let wanted = venv.join("requirements.in");
    fs::write(&wanted, REQUIREMENTS).expect("requirements");
    succeed(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--requirement",
            ])
            .arg(&wanted),
        "pip install",
    );
    fs::write(&stamp, REQUIREMENTS).expect("stamp");
    venv
}

/// Runs validate.py on `files`; returns what it printed, one line per
/// resource and schema.
fn validate<'a>(venv: &Path, files: impl Iterator<Item = &'a PathBuf>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubernetes/validate.py");
    let output = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(KUBERNETES_VERSIONS)
        .args(files)
        .output()
        .expect("running validate.py");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes `source` to `target` with an unknown `field` added to the mapping
/// at `path` (sequence indexes as numbers).
fn with_unknown_field(source: &Path, path: &[&str], field: &str, target: &Path) {
    let mut document: serde_norway::Value = manifest::load(source);
    let mut node = &mut document;
    for step in path {
        node = match step.parse::<usize>() {
            Ok(index) => &mut node[index],
            Err(_) => &mut node[*step],
        };
    }
    node.as_mapping_mut()
        .expect("a mapping")
        .insert(field.into(), false.into());
    fs::write(target, serde_norway::to_string(&document).expect("YAML")).expect("write");
}

fn tempdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kubernetes-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temporary directory");
    dir
}
