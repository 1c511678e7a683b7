//! `cargo xtask image`: the container image, built with the local Docker
//! engine and no registry.
//!
//! The binary is built for the musl target, so it is static and the image
//! holds it alone (`FROM scratch`, packaging/Dockerfile): nothing has to be
//! pulled. When no engine answers, one is started for the build, the way
//! this machine needs it, and stopped after; the image stays in its store.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{
    process::{self, is_root, output},
    toolchain,
};

/// The version in the image's tag: the workspace's, which xtask shares.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a Docker engine started here may take to answer.
const ENGINE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long it may take to stop once asked.
const ENGINE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `cargo xtask image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image's name without a tag, for example
    /// `registry.example/ops/connect-trace` to push it somewhere.
    #[arg(long, default_value = "connect-trace")]
    name: String,
}

/// Builds the static binary, then the image `NAME:VERSION`, also tagged
/// `NAME:latest`.
pub fn image(root: &Path, args: &ImageArgs) -> Result<()> {
    let target = toolchain::image_target();
    process::run(toolchain::cargo(root).args([
        "build",
        "--release",
        "--package",
        "connect-trace",
        "--target",
        &target,
    ]))?;
    let binary = root
        .join("target")
        .join(&target)
        .join("release/connect-trace");
    let context = build_context(root, &binary)?;

    let engine = Engine::reach(root)?;
    let versioned = format!("{}:{VERSION}", args.name);
    let latest = format!("{}:latest", args.name);
    process::run(
        Command::new("docker")
            .arg("build")
            .arg("--build-arg")
            .arg(format!("VERSION={VERSION}"))
            .args(["--tag", &versioned, "--tag", &latest])
            .arg(&context),
    )?;
    let size = output(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Size}}",
        &versioned,
    ]))
    .and_then(|size| size.trim().parse::<u64>().ok());
    drop(engine);
    match size {
        Some(bytes) => eprintln!(
            "xtask: built {versioned} and {latest}: {:.1} MB, one static binary",
            bytes as f64 / 1e6
        ),
        None => eprintln!("xtask: built {versioned} and {latest}"),
    }
    Ok(())
}

/// A fresh build context holding the Dockerfile and the binary, so nothing
/// else in the tree is sent to the engine.
fn build_context(root: &Path, binary: &Path) -> Result<PathBuf> {
    let context = root.join("target/image-context");
    if context.exists() {
        fs::remove_dir_all(&context)
            .with_context(|| format!("removing the old build context {}", context.display()))?;
    }
    fs::create_dir_all(&context)
        .with_context(|| format!("creating the build context {}", context.display()))?;
    fs::copy(
        root.join("packaging/Dockerfile"),
        context.join("Dockerfile"),
    )
    .context("copying packaging/Dockerfile into the build context")?;
    fs::copy(binary, context.join("connect-trace"))
        .with_context(|| format!("copying {} into the build context", binary.display()))?;
    Ok(context)
}

/// The Docker engine the build talks to: the one that answers, or one
/// started here and stopped when this is dropped.
struct Engine {
    started: Option<Child>,
}

impl Engine {
    fn reach(root: &Path) -> Result<Self> {
        if answers() {
            return Ok(Self { started: None });
        }
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            bail!(
                "no Docker engine answers at DOCKER_HOST={}; start it, or unset DOCKER_HOST to let this task start one",
                host.to_string_lossy()
            );
        }
        if !is_root() {
            bail!(
                "no Docker engine answers and starting one needs root: start it (`sudo dockerd --iptables=false --bridge=none --ip-masq=false`) or run this as root"
            );
        }
        if output(Command::new("dockerd").arg("--version")).is_none() {
            bail!(
                "no Docker engine answers and `dockerd` is not installed: `cargo xtask setup` installs Debian's docker.io"
            );
        }
        // Without iptables, a bridge or masquerading: this machine has no
        // NAT support, and building FROM scratch needs no network anyway.
        let log_path = root.join("target/xtask-dockerd.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let errors = log.try_clone().context("duplicating the log file")?;
        eprintln!(
            "xtask: no Docker engine answers; starting `dockerd --iptables=false --bridge=none --ip-masq=false` for the build (log: {})",
            log_path.display()
        );
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .context("starting dockerd")?;
        let mut engine = Self {
            started: Some(child),
        };
        let deadline = Instant::now() + ENGINE_START_TIMEOUT;
        while !answers() {
            if let Some(Ok(Some(status))) = engine.started.as_mut().map(Child::try_wait) {
                bail!(
                    "dockerd exited ({status}) before it answered; see {}",
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "dockerd did not answer within {ENGINE_START_TIMEOUT:?}; see {}",
                    log_path.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(engine)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some(child) = self.started.as_mut() else {
            return;
        };
        eprintln!("xtask: stopping the dockerd started for the build");
        // dockerd stops its containerd and unmounts its layers on SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + ENGINE_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("xtask: dockerd did not stop within {ENGINE_STOP_TIMEOUT:?}; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether a Docker engine answers where the `docker` client looks.
fn answers() -> bool {
    output(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
        .is_some_and(|version| !version.trim().is_empty())
}
