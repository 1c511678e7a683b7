//! Booting a kernel under QEMU and running one command in it.
//!
//! Software emulation (TCG) only: nested KVM is not available everywhere
//! the tests run (on some hosts `/dev/kvm` exists but fails), and TCG boots
//! a Debian kernel in a few seconds. The guest's console is its serial
//! port, read line by line from QEMU's standard output.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc::{RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::initramfs::{GUEST_PREFIX, STATUS_PREFIX};

/// How a guest is booted.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Memory, as QEMU takes it (`1G`).
    pub memory: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// How long the guest may run, boot included, before it is killed.
    pub timeout: Duration,
    /// How long the guest may take to reach its init before it is killed
    /// as hung (a boot normally takes 5 to 15 s under emulation).
    pub boot_timeout: Duration,
    /// Print the kernel's messages on the console (slower: the emulated
    /// serial port is slow), rather than only its errors.
    pub kernel_messages: bool,
    /// More kernel parameters (`preempt=voluntary`, ...).
    pub kernel_args: String,
}

/// What became of a guest.
#[derive(Debug)]
pub struct Outcome {
    /// The command's exit status; `None` when the guest gave none (it
    /// crashed, or was killed at the time limit).
    pub status: Option<i32>,
    /// Whether it was killed at the time limit.
    pub timed_out: bool,
    /// Whether it was killed because its init never started.
    pub boot_hung: bool,
    /// Whether its init started at all.
    pub booted: bool,
    /// Every console line.
    pub console: Vec<String>,
    /// From starting QEMU to its exit.
    pub elapsed: Duration,
}

/// Boots `image` with `initramfs` on `machine`, the host's root shared
/// read-only, and hands each console line to `on_line` as it comes.
pub fn run(
    image: &Path,
    initramfs: &Path,
    machine: &Machine,
    mut on_line: impl FnMut(&str),
) -> Result<Outcome> {
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-machine", "q35"])
        .args(["-m", &machine.memory, "-smp", &machine.cpus.to_string()])
        .args(["-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(initramfs)
        // panic=-1 with -no-reboot: a panic (or an oops) ends QEMU at once.
        // no_timer_check: a slow emulator fails the boot-time check that
        // the timer interrupt ticks, and the kernel panics.
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 oops=panic no_timer_check {} {}",
            if machine.kernel_messages {
                "loglevel=6"
            } else {
                "quiet loglevel=3"
            },
            machine.kernel_args
        ))
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (package qemu-system-x86; `cargo xtask setup` installs it)")?;
    let (lines, received) = channel();
    let stdout = child.stdout.take().context("no stdout from QEMU")?;
    let stderr = child.stderr.take().context("no stderr from QEMU")?;
    let readers = [
        spawn_reader(stdout, lines.clone()),
        spawn_reader(stderr, lines),
    ];
    let deadline = started + machine.timeout;
    let boot_deadline = started + machine.boot_timeout;
    let mut console = Vec::new();
    let mut booted = false;
    let (mut timed_out, mut boot_hung) = (false, false);
    loop {
        let until = if booted { deadline } else { boot_deadline };
        let left = until.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                booted |= line.starts_with(GUEST_PREFIX);
                on_line(&line);
                console.push(line);
            }
            // Both streams closed: QEMU is gone.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if booted {
                    timed_out = true;
                } else {
                    boot_hung = true;
                }
                let _ = child.kill();
                break;
            }
        }
    }
    child.wait().context("waiting for QEMU")?;
    for reader in readers {
        let _ = reader.join();
    }
    // Lines that came in after the time limit hit.
    for line in received.try_iter() {
        on_line(&line);
        console.push(line);
    }
    let status = console
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix(STATUS_PREFIX)?.trim().parse().ok());
    Ok(Outcome {
        status,
        timed_out,
        boot_hung,
        booted,
        console,
        elapsed: started.elapsed(),
    })
}

fn spawn_reader(
    stream: impl std::io::Read + Send + 'static,
    lines: std::sync::mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // The serial console ends lines with \r\n, and a test's
                    // output may hold any bytes.
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}
