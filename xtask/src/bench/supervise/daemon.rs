//! `connect-trace run --output FILE`, watched through its own lifecycle
//! records: the `started` record, its first line, says the programs are
//! attached; the `stopped` record, its last, carries every count
//! (docs/json-schema.md). No log line is read.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{
    ATTACH_TIMEOUT, STOP_TIMEOUT, cpu_time, interrupt, lines_of, thread_cpu_time, vm_hwm_kib,
};
use crate::bench::{Binaries, remove_if_present};

/// How often to look for the `started` record: the resolution of the
/// attach time. The file is all there is to wait on.
const STARTED_POLL: Duration = Duration::from_millis(2);

/// The `stopped` record is a few hundred bytes; the end of the file read
/// to find it.
const TAIL_BYTES: u64 = 64 * 1024;

/// The daemon's lifecycle records.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Lifecycle {
    Started { programs: Vec<u32> },
    Stopped { delivery: DeliveryCounts },
}

/// The counts of the `stopped` record's `delivery` object that the bench
/// reports.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct DeliveryCounts {
    /// Call records that reached the daemon.
    pub(crate) records_delivered: u64,
    /// Call records dropped in the kernel because the ring buffer was full.
    pub(crate) records_lost: u64,
    /// Handshake outcomes dropped the same way.
    pub(crate) outcomes_lost: u64,
    /// Records that did not decode.
    pub(crate) records_undecodable: u64,
    /// Lines the daemon could not write.
    pub(crate) records_unwritten: u64,
}

/// A running `connect-trace run --output FILE`.
pub(crate) struct Daemon {
    child: Child,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
    output: PathBuf,
    /// From spawning to the `started` record: loading and attaching the
    /// programs.
    pub(crate) attach: Duration,
    /// The kernel ids of its programs, from the `started` record.
    pub(crate) programs: Vec<u32>,
    /// CPU time spent up to the `started` record: loading the programs
    /// (the kernel's verifier, counted as the daemon's system time) and
    /// attaching them.
    startup_cpu: Option<Duration>,
    running: bool,
}

/// What a stopped daemon reported about itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaemonEnd {
    /// The counts of its `stopped` record.
    pub(crate) delivery: DeliveryCounts,
    /// utime + stime over its whole life.
    pub(crate) cpu: Duration,
    /// The clock tick `cpu` is counted in: its resolution.
    pub(crate) cpu_tick: Duration,
    /// Peak resident set (VmHWM) just before it was stopped.
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) attach: Duration,
    /// CPU time up to the `started` record (ns-exact), part of `cpu`.
    pub(crate) startup_cpu: Option<Duration>,
}

impl Daemon {
    /// Starts `connect-trace run --output OUTPUT EXTRA...` and waits for
    /// its `started` record.
    pub(crate) fn start(binaries: &Binaries, output: &Path, extra: &[String]) -> Result<Self> {
        // The daemon appends: its first line must be this run's.
        remove_if_present(output)?;
        let spawned = Instant::now();
        let mut child = Command::new(&binaries.connect_trace)
            .arg("run")
            .arg("--output")
            .arg(output)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binaries.connect_trace.display()))?;
        let stderr = lines_of(child.stderr.take());
        let mut daemon = Self {
            child,
            stderr,
            stderr_seen: Vec::new(),
            output: output.to_path_buf(),
            attach: Duration::ZERO,
            programs: Vec::new(),
            startup_cpu: None,
            running: true,
        };
        loop {
            if let Some(line) = first_line(output)? {
                match serde_json::from_str(&line) {
                    Ok(Lifecycle::Started { programs }) => {
                        daemon.attach = spawned.elapsed();
                        daemon.startup_cpu = thread_cpu_time(daemon.child.id());
                        daemon.programs = programs;
                        return Ok(daemon);
                    }
                    _ => bail!("connect-trace's first line is not a started record: {line}"),
                }
            }
            if let Some(status) = daemon.child.try_wait().context("watching connect-trace")? {
                daemon.running = false;
                daemon.stderr_seen.extend(daemon.stderr.try_iter());
                bail!(
                    "connect-trace exited ({status}) before attaching: {}",
                    daemon.stderr_seen.join(" | ")
                );
            }
            if spawned.elapsed() > ATTACH_TIMEOUT {
                daemon.stderr_seen.extend(daemon.stderr.try_iter());
                bail!(
                    "connect-trace wrote no started record within {ATTACH_TIMEOUT:?}; stderr: {}",
                    daemon.stderr_seen.join(" | ")
                );
            }
            thread::sleep(STARTED_POLL);
        }
    }

    /// Reads its peak memory, stops it with SIGINT, reads its CPU time (the
    /// exited process stays readable in /proc until it is reaped) and the
    /// counts of its `stopped` record.
    pub(crate) fn stop(&mut self) -> Result<DaemonEnd> {
        let pid = self.child.id();
        let peak_rss_kib = vm_hwm_kib(pid);
        interrupt(pid)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Its stderr closes when it exits.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("connect-trace did not stop within {STOP_TIMEOUT:?} of SIGINT")
                }
            }
        }
        let cpu = cpu_time(pid);
        let status = self.child.wait().context("waiting for connect-trace")?;
        self.running = false;
        if !status.success() {
            bail!(
                "connect-trace failed ({status}): {}",
                self.stderr_seen.join(" | ")
            );
        }
        let last = last_line(&self.output)?;
        let delivery = match serde_json::from_str(&last) {
            Ok(Lifecycle::Stopped { delivery }) => delivery,
            _ => bail!(
                "connect-trace's last line is not a stopped record: {last}; stderr: {}",
                self.stderr_seen.join(" | ")
            ),
        };
        let (cpu, cpu_tick) = cpu.with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(DaemonEnd {
            delivery,
            cpu,
            cpu_tick,
            peak_rss_kib,
            attach: self.attach,
            startup_cpu: self.startup_cpu,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running {
            // Only on an error path: the bench is failing already.
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}

/// The first line of `path` once it is written whole; `None` before.
fn first_line(path: &Path) -> Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
    };
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(line.ends_with('\n').then_some(line))
}

/// The last line of `path`, read from its end: the file can be hundreds
/// of MB.
fn last_line(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .with_context(|| format!("reading {}", path.display()))?;
    let tail = String::from_utf8_lossy(&tail);
    let Some(body) = tail.strip_suffix('\n') else {
        bail!("{} does not end with a whole line", path.display());
    };
    Ok(body.rsplit('\n').next().unwrap_or_default().to_owned())
}

/// The process of one `connect` record line; `None` for other lines.
///
/// By hand rather than with serde_json: this runs once per record over
/// files of up to 400,000 lines, and xtask is built unoptimized (`cargo
/// xtask` is `cargo run`), where deserializing the line took 15 µs (6 s a
/// file) against 4 µs for this scan, reading the line included. It relies
/// on the record's field order: `type` comes first and `pid` is the first
/// key so named, both before any string a process controls, whose quotes
/// are escaped, so a process name cannot forge them. The tests check it
/// against serde_json.
fn record_pid(line: &[u8]) -> Option<u32> {
    const TYPE: &[u8] = b"{\"type\":\"connect\",";
    const KEY: &[u8] = b"\"pid\":";
    if !line.starts_with(TYPE) {
        return None;
    }
    let start = line.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let digits = line[start..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// Counts the `connect` records of each process in a JSON Lines file.
pub(crate) fn records_per_pid(path: &Path) -> Result<HashMap<u32, u64>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut counts = HashMap::new();
    // Split as bytes: a record is valid UTF-8, but nothing here should
    // fail if one were not.
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Some(pid) = record_pid(&line) {
            *counts.entry(pid).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::{Lifecycle, first_line, last_line, record_pid, records_per_pid};

    #[test]
    fn reads_the_lifecycle_records() {
        let started = r#"{"type":"started","ts":"2026-12-01T14:02:11.083324911Z","version":"0.2.0","pid":4242,"programs":[117,118,119],"handshake_hook":"raw tracepoint inet_sock_set_state","btf_missing":[]}"#;
        let Lifecycle::Started { programs } = serde_json::from_str(started).unwrap() else {
            panic!("not started");
        };
        assert_eq!(programs, [117, 118, 119]);
        let stopped = r#"{"type":"stopped","ts":"2026-12-01T14:05:40.512004187Z","delivery":{"attempts_counted":13,"failures_counted":7,"records_delivered":13,"records_lost":2,"outcomes_lost":1,"records_undecodable":0,"records_written":15,"records_unwritten":0,"pending":0,"unresolved_timeout":0,"unresolved_capacity":0,"outcomes_unmatched":0,"calls_unseen":0,"status_checks_unmatched":0}}"#;
        let Lifecycle::Stopped { delivery } = serde_json::from_str(stopped).unwrap() else {
            panic!("not stopped");
        };
        assert_eq!(delivery.records_delivered, 13);
        assert_eq!(delivery.records_lost, 2);
        assert_eq!(delivery.outcomes_lost, 1);
        assert!(serde_json::from_str::<Lifecycle>(r#"{"type":"connect","pid":1}"#).is_err());
    }

    #[test]
    fn reads_the_record_pid_not_a_forged_one() {
        let lines: [&[u8]; 4] = [
            br#"{"type":"connect","ts":"x","pid":11414,"tid":11414,"comm":"a\"pid\":9"}"#,
            br#"{"type":"connect","ts":"2026-11-21T14:18:36.001757296Z","pid":7,"tid":8,"uid":0,"gid":0,"comm":"\"pid\":9,","cgroup_id":1}"#,
            br#"{"type":"summary","top_processes":[{"pid":11414}]}"#,
            br#"{"type":"started","pid":4242,"programs":[1,2,3]}"#,
        ];
        // serde_json says what the pid of each is.
        for line in lines {
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            let expected = (record["type"] == "connect")
                .then(|| u32::try_from(record["pid"].as_u64().unwrap()).unwrap());
            assert_eq!(
                record_pid(line),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(record_pid(lines[0]), Some(11414));
        assert_eq!(record_pid(b"Attaching 2 probes..."), None);
    }

    #[test]
    fn reads_the_first_and_last_lines_and_counts_records() {
        let path = std::env::temp_dir().join(format!(
            "connect-trace-bench-test-{}.jsonl",
            std::process::id()
        ));
        let mut file = std::fs::File::create(&path).unwrap();
        assert_eq!(first_line(&path).unwrap(), None);
        write!(file, r#"{{"type":"started","programs":[1]}}"#).unwrap();
        // Not yet a whole line.
        assert_eq!(first_line(&path).unwrap(), None);
        writeln!(file).unwrap();
        for pid in [5, 6, 5] {
            writeln!(file, r#"{{"type":"connect","pid":{pid}}}"#).unwrap();
        }
        writeln!(file, r#"{{"type":"stopped","delivery":{{}}}}"#).unwrap();
        assert!(first_line(&path).unwrap().unwrap().contains("started"));
        assert!(last_line(&path).unwrap().contains("stopped"));
        let counts = records_per_pid(&path).unwrap();
        assert_eq!((counts[&5], counts[&6]), (2, 1));
        std::fs::remove_file(&path).unwrap();
    }
}
