//! A private Docker engine (dockerd and the containerd it starts), with its
//! own data root, state and sockets, so the test touches no other engine on
//! the machine and leaves nothing behind.
//!
//! The tests of this binary run in parallel and share one engine: the first
//! to ask starts it and builds the images, the last to let go stops it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

/// How long dockerd may take to answer, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// containerd's namespace for what the kubelet runs; the test uses it too.
pub const CONTAINERD_NAMESPACE: &str = "k8s.io";

/// The image holding Debian's busybox-static, for the other container.
pub const BUSYBOX_IMAGE: &str = "connect-trace-test/busybox:latest";

/// The running engine and the images built on it.
pub struct Engine {
    dockerd: Mutex<Child>,
    /// Everything of the engine's lives under here.
    pub root: PathBuf,
    docker_host: String,
    containerd_socket: PathBuf,
    /// `connect-trace:VERSION`, as `cargo xtask image` built it.
    pub image: String,
    /// Seconds `cargo xtask image` took, for the report.
    pub image_build: Duration,
}

static SHARED: Mutex<Weak<Engine>> = Mutex::new(Weak::new());

impl Engine {
    /// The engine every test of this binary shares, started if none runs.
    pub fn shared() -> Arc<Engine> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = shared.upgrade() {
            return engine;
        }
        let engine = Arc::new(Engine::start());
        *shared = Arc::downgrade(&engine);
        engine
    }

    fn start() -> Self {
        // Short: the sockets' paths must fit in 108 bytes.
        let root = std::env::temp_dir().join(format!("ct-k8s-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("engine directory");
        fs::write(root.join("daemon.json"), "{}\n").expect("daemon.json");
        let log = fs::File::create(root.join("dockerd.log")).expect("dockerd.log");
        let docker_host = format!("unix://{}", root.join("docker.sock").display());
        let started = Instant::now();
        // No iptables, bridge or masquerading: this machine has no NAT, and
        // the containers here run with no network or a namespace the test
        // makes.
        let dockerd = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--ip-masq=false"])
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("x"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("--config-file")
            .arg(root.join("daemon.json"))
            .args(["--host", &docker_host])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd (`cargo xtask setup` installs docker.io)");
        let mut engine = Self {
            dockerd: Mutex::new(dockerd),
            containerd_socket: root.join("x/containerd/containerd.sock"),
            root,
            docker_host,
            image: String::new(),
            image_build: Duration::ZERO,
        };
        engine.wait_until_ready();
        eprintln!("private dockerd answered in {:?}", started.elapsed());

        let started = Instant::now();
        engine.image = engine.build_image();
        engine.image_build = started.elapsed();
        eprintln!(
            "cargo xtask image built {} in {:?}",
            engine.image, engine.image_build
        );
        engine.import_busybox();
        engine
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answered = self
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .is_ok_and(|output| output.status.success());
            if answered && self.containerd_socket.exists() {
                return;
            }
            let exited = self
                .dockerd
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait()
                .expect("dockerd status");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "dockerd did not come up ({exited:?}): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What dockerd and its containerd logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default()
    }

    /// A `docker` command talking to this engine.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", &self.docker_host);
        command
    }

    /// A `ctr` command talking to this engine's containerd, in the
    /// kubelet's namespace.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["--namespace", CONTAINERD_NAMESPACE]);
        command
    }

    /// `ctr run --rm`, with runc's state and the I/O pipes kept under the
    /// engine's directory rather than the host's /run/containerd.
    pub fn ctr_run(&self) -> Command {
        let mut command = self.ctr();
        command
            .args(["run", "--rm", "--runc-root"])
            .arg(self.root.join("runc"))
            .arg("--fifo-dir")
            .arg(self.root.join("fifo"));
        command
    }

    /// The socket of the containerd that runs the containers: the node's
    /// `/run/containerd/containerd.sock`, as far as the test is concerned.
    pub fn containerd_socket(&self) -> &Path {
        &self.containerd_socket
    }

    /// Runs `cargo xtask image` against this engine, exactly as a user
    /// would, then hands the image to containerd as a registry pull would.
    fn build_image(&self) -> String {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cargo = Command::new("cargo");
        cargo
            .args(["xtask", "image"])
            .current_dir(&workspace)
            .env("DOCKER_HOST", &self.docker_host);
        // `cargo test` names its own toolchain to its children; xtask is
        // built by the machine's default cargo, as when a user types it.
        for variable in [
            "RUSTUP_TOOLCHAIN",
            "RUSTC",
            "RUSTDOC",
            "CARGO",
            "RUSTC_WRAPPER",
        ] {
            cargo.env_remove(variable);
        }
        succeed(&mut cargo, "cargo xtask image");
        let image = format!("connect-trace:{}", env!("CARGO_PKG_VERSION"));
        self.to_containerd(&image);
        image
    }

    /// Copies `image` from Docker's store into containerd's `k8s.io`
    /// namespace, where the kubelet's containers come from.
    pub fn to_containerd(&self, image: &str) {
        let archive = self.root.join("image.tar");
        succeed(
            self.docker()
                .arg("save")
                .arg("--output")
                .arg(&archive)
                .arg(image),
            "docker save",
        );
        succeed(
            self.ctr().args(["images", "import"]).arg(&archive),
            "ctr images import",
        );
        let _ = fs::remove_file(archive);
    }

    /// Makes the busybox image with `docker import`, from a root
    /// filesystem holding Debian's static busybox: no registry needed.
    fn import_busybox(&self) {
        let rootfs = self.root.join("busybox-rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("busybox rootfs");
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (`cargo xtask setup` installs busybox-static)");
        for applet in ["sh", "nc", "sleep", "touch"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("busybox applet");
        }
        let tarball = self.root.join("busybox.tar");
        succeed(
            Command::new("tar")
                .arg("--create")
                .arg("--file")
                .arg(&tarball)
                .arg("--directory")
                .arg(&rootfs)
                .arg("."),
            "tar",
        );
        succeed(
            self.docker().arg("import").arg(&tarball).arg(BUSYBOX_IMAGE),
            "docker import",
        );
    }

    /// Kills and removes whatever still runs on the engine.
    fn remove_containers(&self) {
        if let Ok(output) = self.ctr().args(["tasks", "list", "--quiet"]).output() {
            for task in String::from_utf8_lossy(&output.stdout).lines() {
                let _ = self
                    .ctr()
                    .args(["tasks", "kill", "--signal", "SIGKILL", task])
                    .output();
                let _ = self
                    .ctr()
                    .args(["tasks", "delete", "--force", task])
                    .output();
            }
        }
        if let Ok(output) = self.ctr().args(["containers", "list", "--quiet"]).output() {
            for container in String::from_utf8_lossy(&output.stdout).lines() {
                let _ = self
                    .ctr()
                    .args(["containers", "delete", container])
                    .output();
            }
        }
        if let Ok(output) = self.docker().args(["ps", "--all", "--quiet"]).output() {
            for container in String::from_utf8_lossy(&output.stdout).lines() {
                let _ = self.docker().args(["rm", "--force", container]).output();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.remove_containers();
        let dockerd = self.dockerd.get_mut().unwrap_or_else(|e| e.into_inner());
        // dockerd stops its containerd and unmounts its layers on SIGTERM.
        // SAFETY: kill has no memory effects; the pid is our child's.
        unsafe { libc::kill(dockerd.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while dockerd.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = dockerd.kill();
                let _ = dockerd.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A dockerd that had to be killed leaves its containerd behind.
        if let Ok(pid) = fs::read_to_string(self.root.join("x/containerd/containerd.pid"))
            && let Ok(pid) = pid.trim().parse::<libc::pid_t>()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_below(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Unmounts anything still mounted below `root`, deepest first, so that
/// removing the directory cannot reach into a mounted file system.
fn unmount_below(root: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").arg("--lazy").arg(point).status();
    }
}

/// Runs `command`; panics with its output unless it succeeds.
pub fn succeed(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
