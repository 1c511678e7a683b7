//! Driving the `connect-trace` binary as a user would: a child process,
//! its stdout and stderr line by line, signals to stop it.

use std::{
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{RawAddr, closed_port, require_root, tcp_connect};

pub const BINARY: &str = env!("CARGO_BIN_EXE_connect-trace");
/// How long a wait may take before the test fails. Generous: the kernel
/// matrix runs these tests under emulation, where starting the daemon alone
/// takes several seconds.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `connect-trace run` and its output, line by line.
pub struct Daemon {
    pub child: Child,
    pub stdout: Option<Receiver<String>>,
    pub stderr: Receiver<String>,
    pub program_ids: Vec<u32>,
}

pub fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
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

impl Daemon {
    /// Starts `connect-trace run ARGS` through `wrapper` (a command and its
    /// arguments placed before the binary), and waits until it is attached.
    pub fn start_with(wrapper: &[&str], args: &[&str]) -> Self {
        require_root();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        let mut child = command
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let banner = stderr.recv_timeout(TIMEOUT).unwrap_or_else(|error| {
            panic!(
                "no start-up line from connect-trace ({error}); status {:?}",
                child.try_wait()
            )
        });
        assert!(banner.contains("tracing connect()"), "unexpected: {banner}");
        let program_ids = parse_program_ids(&banner);
        assert_eq!(program_ids.len(), 3, "{banner}");
        Self {
            child,
            stdout: Some(stdout),
            stderr,
            program_ids,
        }
    }

    /// Starts a shell `script` in a private mount namespace; the script sets
    /// up mounts and ends with `exec {BINARY} run ...`. (The binary and `run`
    /// that `start_with` appends become `sh -c`'s `$0` and `$1`, unused.)
    pub fn start_in_private_mounts(script: &str) -> Self {
        Self::start_with(
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            &[],
        )
    }

    /// Starts `connect-trace run ARGS` and waits until it is attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(&[], args)
    }

    /// The next stdout record from thread `tid`, parsed.
    pub fn record_of(&self, tid: u32) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let stdout = self.stdout.as_ref().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stdout
                .recv_timeout(left)
                .unwrap_or_else(|error| panic!("no record from tid {tid}: {error}"));
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}"));
            if value["tid"] == tid {
                return value;
            }
        }
    }

    /// Sends `signal`, waits for the exit, and returns the status and the
    /// rest of stderr.
    pub fn stop(mut self, signal: libc::c_int) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain syscall on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = wait_timeout(&mut self.child, TIMEOUT).expect("connect-trace did not stop");
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status, stderr.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        // Polling a child's exit: there is no portable blocking wait with a
        // deadline, and the check is cheap.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// "… with programs [12, 13]; …" → [12, 13]
pub fn parse_program_ids(banner: &str) -> Vec<u32> {
    let Some(start) = banner.find('[') else {
        return Vec::new();
    };
    let Some(end) = banner[start..].find(']') else {
        return Vec::new();
    };
    banner[start + 1..start + end]
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

pub fn loaded_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|program| program.id())
        .collect()
}

pub fn refused_connect() -> u16 {
    let port = closed_port("127.0.0.1");
    let (_fd, errno) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, port), libc::AF_INET);
    assert_eq!(errno, libc::ECONNREFUSED);
    port
}

pub fn own_pid() -> String {
    std::process::id().to_string()
}
