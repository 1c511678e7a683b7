//! Driving the `connect-trace` binary as a user would: a child process,
//! its stdout and stderr line by line, signals to stop it.

use std::{
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{RawAddr, require_root, tcp_connect};

pub const BINARY: &str = env!("CARGO_BIN_EXE_connect-trace");
/// How long a wait may take before the test fails. Generous: the kernel
/// matrix runs these tests under emulation, where starting the daemon alone
/// takes several seconds.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `connect-trace run` and its output, line by line.
pub struct Daemon {
    pub child: Child,
    /// Its JSON lines, when it writes to stdout.
    pub stdout: Option<Receiver<String>>,
    pub stderr: Receiver<String>,
    /// Its `--output` file, when it writes to one this process can see.
    output: Option<PathBuf>,
    /// The ids of its attached programs, from its `started` record.
    pub program_ids: Vec<u32>,
    /// Its `started` record (`Null` when readiness came from the metrics).
    pub started: Value,
}

/// How to tell that the daemon is attached.
pub enum Ready {
    /// Its `started` record, on stdout or in the `--output` file.
    Started,
    /// `connect_trace_programs_attached 1` at `/metrics` on this port (for
    /// an output this process cannot read).
    Metrics(u16),
}

/// How a daemon ended.
pub struct Stopped {
    pub status: ExitStatus,
    /// Its log.
    pub stderr: String,
    /// The `delivery` object of its `stopped` record: every count.
    pub delivery: Value,
}

impl Stopped {
    /// One count of the `stopped` record.
    pub fn count(&self, name: &str) -> u64 {
        self.delivery[name].as_u64().unwrap_or_else(|| {
            panic!(
                "no count `{name}` in {}; stderr: {}",
                self.delivery, self.stderr
            )
        })
    }
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

/// The value after `--output` or `-o` in `args`.
fn output_of(args: &[&str]) -> Option<PathBuf> {
    args.windows(2)
        .find(|pair| pair[0] == "--output" || pair[0] == "-o")
        .map(|pair| PathBuf::from(pair[1]))
}

/// The records of a JSON Lines file written so far.
pub fn records_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}"))
        })
        .collect()
}

impl Daemon {
    /// Starts `connect-trace run ARGS` through `wrapper` (a command and its
    /// arguments placed before the binary), and waits until it is attached.
    pub fn start_with(wrapper: &[&str], args: &[&str]) -> Self {
        Self::start_ready(wrapper, args, Ready::Started)
    }

    /// Like [`Daemon::start_with`], telling readiness by `ready`.
    pub fn start_ready(wrapper: &[&str], args: &[&str], ready: Ready) -> Self {
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
        let mut daemon = Self {
            child,
            stdout: Some(stdout),
            stderr,
            output: output_of(args),
            program_ids: Vec::new(),
            started: Value::Null,
        };
        match ready {
            Ready::Started => {
                let started = daemon.wait_for(|record| record["type"] == "started");
                daemon.program_ids = started["programs"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no programs in {started}"))
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|id| u32::try_from(id).unwrap())
                    .collect();
                // Two syscall programs, one to three for handshakes, two
                // for io_uring where the kernel has their tracepoints, and
                // the DNS capture unless --no-dns.
                assert!((3..=8).contains(&daemon.program_ids.len()), "{started}");
                daemon.started = started;
            }
            Ready::Metrics(port) => daemon.wait_for_metrics(port),
        }
        daemon
    }

    /// Starts a shell `script` in a private mount namespace; the script sets
    /// up mounts and ends with `exec {BINARY} run ...`. (The binary and `run`
    /// that `start_with` appends become `sh -c`'s `$0` and `$1`, unused.)
    pub fn start_in_private_mounts(script: &str, ready: Ready) -> Self {
        Self::start_ready(
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
            ready,
        )
    }

    /// Starts `connect-trace run ARGS` and waits until it is attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(&[], args)
    }

    /// Panics with the daemon's stderr if it has exited.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let stderr: Vec<String> = self.stderr.try_iter().collect();
            panic!("connect-trace exited ({status}) before {waiting_for}: {stderr:?}");
        }
    }

    /// The first record, on stdout or in the output file, that `matches`.
    fn wait_for(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = 0;
        loop {
            self.assert_running("its started record");
            if let Some(path) = &self.output {
                let records = records_in(path);
                if let Some(found) = records.iter().skip(seen).find(|record| matches(record)) {
                    return found.clone();
                }
                seen = records.len();
            } else if let Some(stdout) = &self.stdout {
                while let Ok(line) = stdout.recv_timeout(Duration::from_millis(10)) {
                    let record: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}"));
                    if matches(&record) {
                        return record;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no started record within {TIMEOUT:?}"
            );
            // Polling a file that the daemon appends to; nothing to wait on.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for_metrics(&mut self, port: u16) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            self.assert_running("serving metrics");
            if scrape(port, "connect_trace_programs_attached") == Some(1.0) {
                return;
            }
            assert!(Instant::now() < deadline, "not attached within {TIMEOUT:?}");
            // The server is not up yet; nothing to wait on but time.
            std::thread::sleep(Duration::from_millis(20));
        }
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
    pub fn stop(self, signal: libc::c_int) -> (ExitStatus, String) {
        let stopped = self.stop_counted(signal);
        (stopped.status, stopped.stderr)
    }

    /// Sends `signal`, waits for the exit, and returns how it ended with the
    /// counts of its `stopped` record (`Value::Null` when it wrote none, or
    /// wrote it where this process cannot read).
    pub fn stop_counted(mut self, signal: libc::c_int) -> Stopped {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain syscall on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = wait_timeout(&mut self.child, TIMEOUT).expect("connect-trace did not stop");
        // The reader thread may not have passed on the last lines yet: read
        // until it sees EOF and hangs up.
        let stderr: Vec<String> =
            std::iter::from_fn(|| self.stderr.recv_timeout(Duration::from_secs(1)).ok()).collect();
        let last = match (&self.output, &self.stdout) {
            (Some(path), _) => records_in(path).pop(),
            (None, Some(stdout)) => {
                // The reader thread sees EOF shortly after the exit.
                let lines: Vec<String> =
                    std::iter::from_fn(|| stdout.recv_timeout(Duration::from_secs(1)).ok())
                        .collect();
                lines.last().map(|line| serde_json::from_str(line).unwrap())
            }
            (None, None) => None,
        };
        let delivery = match last {
            Some(record) if record["type"] == "stopped" => record["delivery"].clone(),
            _ => Value::Null,
        };
        Stopped {
            status,
            stderr: stderr.join("\n"),
            delivery,
        }
    }
}

/// The whole `/metrics` text on `port`; `None` when nothing answers. (The
/// scrape is itself a connect(), which a daemon tracing this process sees.)
pub fn metrics(port: u16) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The sum of the samples of `series` in a `/metrics` text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of the samples of `series` at `/metrics` on `port`; `None` when
/// nothing answers.
pub fn scrape(port: u16, series: &str) -> Option<f64> {
    metrics(port).map(|text| sample(&text, series))
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

pub fn loaded_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|program| program.id())
        .collect()
}

/// A refused connect to 127.0.0.1:1, where nothing listens (a port picked
/// at random could be taken by a listener of a test running alongside);
/// returns the port.
pub fn refused_connect() -> u16 {
    const NOBODY: u16 = 1;
    let (_fd, errno) = tcp_connect(&RawAddr::inet(Ipv4Addr::LOCALHOST, NOBODY), libc::AF_INET);
    assert_eq!(errno, libc::ECONNREFUSED);
    NOBODY
}

pub fn own_pid() -> String {
    std::process::id().to_string()
}
