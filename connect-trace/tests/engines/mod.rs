//! Real container engines for tests, private to one test binary.
//!
//! [`Docker`] starts a dockerd of its own (its own data root, exec root,
//! pid file and API socket under a temporary directory, no iptables, no
//! bridge), which starts its own containerd. Nothing is shared with a
//! system Docker or with another test binary, and stopping it removes every
//! container, task, mount and directory it made.
#![allow(dead_code, reason = "not every test uses every helper")]

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The image every test container runs: a root filesystem holding
/// Debian's static busybox, imported (no registry is reachable).
pub const IMAGE: &str = "ct-test:1";
/// The same image as containerd names it after `docker save | ctr import`.
pub const CTR_IMAGE: &str = "docker.io/library/ct-test:1";
/// How long one engine command may take.
const COMMAND_TIMEOUT: &str = "60";

/// The cgroup directories this test binary made (in any hierarchy), which
/// it alone removes. Held while making or removing them, so that tests
/// running in parallel do not remove a parent (`/kubepods`) another is
/// making a child in; whichever test is last to leave a shared parent
/// removes it.
static MADE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn made() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    MADE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every hierarchy's mount point, v1 and v2.
fn hierarchies() -> Vec<PathBuf> {
    mounts_of("cgroup")
        .into_iter()
        .chain(mounts_of("cgroup2"))
        .collect()
}

/// `relative` and its ancestors under `root`, deepest first.
fn lineage(root: &Path, relative: &str) -> Vec<PathBuf> {
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty()).collect();
    (1..=components.len())
        .rev()
        .map(|depth| root.join(components[..depth].join("/")))
        .collect()
}

/// Makes cgroup `relative` under `root`, noting each directory made.
fn make_cgroup(made: &mut BTreeSet<PathBuf>, root: &Path, relative: &str) -> PathBuf {
    for dir in lineage(root, relative).into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => {
                made.insert(dir);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => panic!("{}: {error}", dir.display()),
        }
    }
    root.join(relative.trim_start_matches('/'))
}

/// Notes the directories of `relative` that do not exist yet in any
/// hierarchy: a runtime is about to make them for this test.
pub fn claim_cgroup(relative: &str) {
    let mut made = made();
    for root in hierarchies() {
        for dir in lineage(&root, relative) {
            if !dir.exists() {
                made.insert(dir);
            }
        }
    }
}

/// Where cgroup v2 is mounted, from /proc/self/mounts.
pub fn cgroup2_root() -> PathBuf {
    mounts_of("cgroup2")
        .into_iter()
        .next()
        .expect("a cgroup2 mount (see ../shared/kernel-facts.md)")
}

/// Every mount point of filesystem type `fstype`.
pub fn mounts_of(fstype: &str) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .expect("/proc/self/mounts")
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == fstype).then(|| PathBuf::from(point))
        })
        .collect()
}

/// The id of cgroup v2 `relative` (such as `/docker/<id>`): its inode.
pub fn cgroup_id(relative: &str) -> u64 {
    let path = cgroup2_root().join(relative.trim_start_matches('/'));
    fs::metadata(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .ino()
}

/// Removes cgroup `relative` and those of its parents this binary made, in
/// every hierarchy, when they are empty.
pub fn remove_cgroup_everywhere(relative: &str) {
    let mut made = made();
    for root in hierarchies() {
        for dir in lineage(&root, relative) {
            if made.contains(&dir) && fs::remove_dir(&dir).is_ok() {
                made.remove(&dir);
            }
        }
    }
}

/// A 64-hex-digit id that no runtime made.
pub fn random_container_id() -> String {
    format!("{}{}", random_pod_uid(), random_pod_uid()).replace('-', "")
}

/// A random pod uid (a UUID).
pub fn random_pod_uid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("a uuid")
        .trim()
        .to_owned()
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Runs a command with a time limit; its stdout, trimmed. Panics with its
/// stderr when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn timed(program: &str) -> Command {
    let mut command = Command::new("timeout");
    command.args(["-k", "5", COMMAND_TIMEOUT, program]);
    command
}

/// A private Docker engine and its containerd.
pub struct Docker {
    dir: PathBuf,
    dockerd: Option<Child>,
    /// The Docker Engine API socket.
    pub socket: PathBuf,
    /// The socket of the containerd that dockerd started.
    pub containerd_socket: PathBuf,
    /// Containers started with `ctr`, as (namespace, id).
    ctr_containers: Vec<(String, String)>,
    /// Cgroups made for `ctr` containers, removed when stopping.
    ctr_cgroups: Vec<String>,
}

impl Docker {
    /// Starts dockerd and waits until it answers (at most 60 s).
    pub fn start() -> Self {
        // dockerd makes /docker for its containers: remove it afterwards
        // unless something else had made it.
        claim_cgroup("/docker");
        let dir = temp_dir("ct-dockerd");
        let socket = dir.join("docker.sock");
        let log = fs::File::create(dir.join("dockerd.log")).expect("log file");
        let dockerd = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-masq=false",
                "--shutdown-timeout=2",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian's docker.io; `cargo xtask setup` installs it)");
        let mut docker = Self {
            containerd_socket: dir.join("exec/containerd/containerd.sock"),
            dir,
            dockerd: Some(dockerd),
            socket,
            ctr_containers: Vec::new(),
            ctr_cgroups: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = docker.socket.exists()
                && docker.containerd_socket.exists()
                && docker
                    .command()
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if ready {
                return docker;
            }
            if let Some(child) = docker.dockerd.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = fs::read_to_string(docker.dir.join("dockerd.log")).unwrap_or_default();
                docker.dockerd = None;
                panic!("dockerd exited at start ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of dockerd.
    pub fn pid(&self) -> u32 {
        self.dockerd
            .as_ref()
            .map(Child::id)
            .expect("dockerd running")
    }

    /// A `docker` command for this engine. Debian's client is used, as it
    /// matches the engine's API version.
    pub fn command(&self) -> Command {
        let program = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut command = timed(program);
        command
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("client"));
        command
    }

    /// Runs `docker ARGS`; its output.
    pub fn docker(&self, args: &[&str]) -> String {
        run(self.command().args(args))
    }

    /// Runs `ctr -n NAMESPACE ARGS` against this engine's containerd.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> String {
        let mut command = timed("ctr");
        command
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["-n", namespace])
            .args(args);
        run(&mut command)
    }

    /// Imports the busybox image into Docker; returns its name.
    pub fn import_image(&self) -> &'static str {
        let rootfs = self.dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (Debian's busybox-static; `cargo xtask setup` installs it)");
        let tarball = self.dir.join("rootfs.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        self.docker(&["import", &tarball.to_string_lossy(), IMAGE]);
        IMAGE
    }

    /// Copies the image into containerd namespace `namespace`, as
    /// [`CTR_IMAGE`].
    pub fn import_image_into_containerd(&self, namespace: &str) -> &'static str {
        let saved = self.dir.join("image.tar");
        self.docker(&["save", "-o", &saved.to_string_lossy(), IMAGE]);
        self.ctr(namespace, &["images", "import", &saved.to_string_lossy()]);
        CTR_IMAGE
    }

    /// Starts `busybox sleep 600` through `ctr` in `namespace`, in cgroup
    /// `cgroup`, with `labels`; it is removed when the engine stops.
    pub fn ctr_run(&mut self, namespace: &str, id: &str, cgroup: &str, labels: &[(&str, &str)]) {
        let mut args = vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--null-io".to_owned(),
            "--cgroup".to_owned(),
            cgroup.to_owned(),
        ];
        for (key, value) in labels {
            args.push("--label".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.extend(
            [CTR_IMAGE, id, "/bin/busybox", "sleep", "600"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        self.ctr_containers
            .push((namespace.to_owned(), id.to_owned()));
        self.ctr_cgroups.push(cgroup.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        claim_cgroup(cgroup);
        self.ctr(namespace, &args);
    }

    /// Freezes dockerd (SIGSTOP): its socket accepts connections but
    /// nothing answers, like a hung engine.
    pub fn freeze(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Undoes [`Docker::freeze`].
    pub fn thaw(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Removes every container and stops dockerd and its containerd.
    pub fn stop(&mut self) {
        let Some(mut dockerd) = self.dockerd.take() else {
            return;
        };
        signal(dockerd.id(), libc::SIGCONT);
        // Killed rather than stopped: busybox as pid 1 ignores SIGTERM.
        if let Ok(ids) = std::panic::catch_unwind(|| self.docker(&["ps", "-aq"])) {
            for id in ids.split_whitespace() {
                let _ = self.command().args(["rm", "-f", id]).output();
            }
        }
        for (namespace, id) in std::mem::take(&mut self.ctr_containers) {
            let _ = std::panic::catch_unwind(|| {
                let _ = self.ctr(&namespace, &["tasks", "delete", "-f", &id]);
            });
            let _ = std::panic::catch_unwind(|| {
                let _ = self.ctr(&namespace, &["containers", "delete", &id]);
            });
        }
        signal(dockerd.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while dockerd.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = dockerd.kill();
                let _ = dockerd.wait();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // dockerd stops its containerd; make sure.
        if let Ok(pid) = fs::read_to_string(self.dir.join("exec/containerd/containerd.pid"))
            && let Ok(pid) = pid.trim().parse::<u32>()
            && Path::new(&format!("/proc/{pid}")).exists()
            && fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.contains(&*self.dir.to_string_lossy()))
        {
            signal(pid, libc::SIGKILL);
        }
        for cgroup in std::mem::take(&mut self.ctr_cgroups) {
            remove_cgroup_everywhere(&cgroup);
        }
        remove_cgroup_everywhere("/docker");
        unmount_below(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// The last lines of dockerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory effects; the pid is one this test started.
    unsafe { libc::kill(pid, signal) };
}

/// Unmounts whatever dockerd left mounted below `dir`.
fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let dir = dir.to_string_lossy();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| point.starts_with(&*dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// A process (`sleep`) moved into a cgroup directory the test made;
/// dropping it kills the process and removes the directories made for it.
pub struct CgroupProcess {
    /// The cgroup, relative to its hierarchy's root.
    pub relative: String,
    /// The process.
    pub child: Child,
}

impl CgroupProcess {
    /// Makes cgroup v2 `relative` (and its parents) and moves a new
    /// `sleep` into it.
    pub fn start(relative: &str) -> Self {
        Self::start_in(&cgroup2_root(), relative)
    }

    /// Makes `relative` in the v1 hierarchy mounted at `v1_root` only and
    /// moves a new `sleep` into it; its v2 cgroup stays this process's.
    pub fn start_v1(v1_root: &Path, relative: &str) -> Self {
        Self::start_in(v1_root, relative)
    }

    fn start_in(root: &Path, relative: &str) -> Self {
        let dir = make_cgroup(&mut made(), root, relative);
        // /system.slice and the like may be made by this binary (they are
        // noted) or by another program; either way the process goes in.
        if !dir.is_dir() {
            panic!("{} was not made", dir.display());
        }
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        move_into(&dir, child.id());
        Self {
            relative: relative.to_owned(),
            child,
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process and waits for it; the cgroup stays until drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and removes the cgroup.
    pub fn remove(&mut self) {
        self.kill();
        remove_cgroup_everywhere(&self.relative);
    }
}

impl Drop for CgroupProcess {
    fn drop(&mut self) {
        self.remove();
    }
}

fn move_into(dir: &Path, pid: u32) {
    let mut procs = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .unwrap_or_else(|error| panic!("{}/cgroup.procs: {error}", dir.display()));
    write!(procs, "{pid}")
        .unwrap_or_else(|error| panic!("moving {pid} into {}: {error}", dir.display()));
}
