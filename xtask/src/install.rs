//! `cargo xtask install`: set up, build the release binary, and install it
//! with its systemd unit and logrotate snippet. It never starts, stops or
//! reloads anything: it prints the commands for that.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{build_release, setup};

/// The unit, as shipped in the repository.
const UNIT: &str = "packaging/connect-trace.service";
/// The logrotate snippet, as shipped in the repository.
const LOGROTATE: &str = "packaging/connect-trace.logrotate";
/// Where the shipped unit expects the binary; rewritten for other prefixes.
const UNIT_BINARY: &str = "/usr/local/bin/connect-trace";

/// Options of `cargo xtask install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Installation prefix: the binary goes to PREFIX/bin/connect-trace, and
    /// the unit's ExecStart= is rewritten to match.
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    prefix: PathBuf,

    /// Where the systemd unit goes.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,

    /// Where the logrotate snippet goes (as `connect-trace`).
    #[arg(long, value_name = "DIR", default_value = "/etc/logrotate.d")]
    logrotate_dir: PathBuf,

    /// Print what would be done, and do none of it (not even the build).
    #[arg(long)]
    dry_run: bool,
}

/// One file to put in place.
struct Placement {
    what: &'static str,
    contents: Vec<u8>,
    target: PathBuf,
    mode: u32,
}

/// Sets up, builds, and installs the binary, the unit and the logrotate
/// snippet; then says how to start the service.
pub fn install(root: &Path, args: &InstallArgs) -> Result<()> {
    let InstallArgs {
        prefix,
        unit_dir,
        logrotate_dir,
        dry_run,
    } = args;
    for (flag, dir) in [
        ("--prefix", prefix),
        ("--unit-dir", unit_dir),
        ("--logrotate-dir", logrotate_dir),
    ] {
        if !dir.is_absolute() {
            bail!("{flag} must be an absolute path, not {}", dir.display());
        }
    }
    let built = release_binary(root);
    let binary_target = prefix.join("bin/connect-trace");
    let binary_path = binary_target
        .to_str()
        .context("the binary's path must be UTF-8 to go into the unit")?;

    if *dry_run {
        eprintln!("xtask: dry run: nothing is changed");
        eprintln!(
            "xtask: would run setup, then build the release binary ({})",
            built.display()
        );
    } else {
        setup::setup(root)?;
        build_release(root)?;
    }

    let unit = read(root, UNIT)?;
    if !unit.contains(UNIT_BINARY) {
        bail!("{UNIT} no longer names {UNIT_BINARY}; update xtask/src/install.rs");
    }
    let placements = [
        Placement {
            what: "binary",
            contents: if *dry_run {
                Vec::new()
            } else {
                fs::read(&built).with_context(|| format!("reading {}", built.display()))?
            },
            target: binary_target.clone(),
            mode: 0o755,
        },
        Placement {
            what: "systemd unit",
            contents: unit.replace(UNIT_BINARY, binary_path).into_bytes(),
            target: unit_dir.join("connect-trace.service"),
            mode: 0o644,
        },
        Placement {
            what: "logrotate snippet",
            contents: read(root, LOGROTATE)?.into_bytes(),
            target: logrotate_dir.join("connect-trace"),
            mode: 0o644,
        },
    ];

    for placement in &placements {
        if *dry_run {
            eprintln!(
                "xtask: would install the {} at {} (mode {:o})",
                placement.what,
                placement.target.display(),
                placement.mode
            );
        } else {
            let outcome = place(placement)?;
            eprintln!(
                "xtask: {outcome} the {} at {}",
                placement.what,
                placement.target.display()
            );
        }
    }

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}Next, as root: check that this host has what the tracer needs, then start it:\n\
         \n    {binary_path} check\n    systemctl daemon-reload && systemctl enable --now connect-trace\n\
         \nIf it was already running: systemctl daemon-reload && systemctl restart connect-trace\n\
         Records go to /var/log/connect-trace/connects.jsonl; see docs/operations.md.",
        if *dry_run { "(dry run) " } else { "" }
    )?;
    Ok(())
}

/// Where cargo puts the release binary: `CARGO_TARGET_DIR` if set (relative
/// to the workspace, where the build runs), else `target/`.
fn release_binary(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    target.join("release/connect-trace")
}

fn read(root: &Path, file: &str) -> Result<String> {
    let path = root.join(file);
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Writes the file next to its target and renames it into place, so a
/// running binary is replaced rather than overwritten ("text file busy") and
/// nothing ever sees half a file. Says what it did.
fn place(placement: &Placement) -> Result<&'static str> {
    let Placement {
        what: _,
        contents,
        target,
        mode,
    } = placement;
    let existing = fs::read(target).ok();
    if existing.as_deref() == Some(contents.as_slice())
        && fs::metadata(target).is_ok_and(|meta| meta.permissions().mode() & 0o7777 == *mode)
    {
        return Ok("kept (unchanged)");
    }
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating {} (installing needs root for system directories)",
            dir.display()
        )
    })?;
    let name = target
        .file_name()
        .with_context(|| format!("{} has no file name", target.display()))?;
    let staging = dir.join(format!(".{}.xtask-new", name.to_string_lossy()));
    fs::write(&staging, contents).with_context(|| {
        format!(
            "writing {} (installing needs root for system directories)",
            staging.display()
        )
    })?;
    let renamed = fs::set_permissions(&staging, fs::Permissions::from_mode(*mode))
        .and_then(|()| fs::rename(&staging, target));
    if let Err(error) = renamed {
        let _ = fs::remove_file(&staging);
        return Err(error).with_context(|| format!("installing {}", target.display()));
    }
    Ok(if existing.is_some() {
        "replaced"
    } else {
        "installed"
    })
}
