//! What the daemon's user-space path costs per event, without the kernel:
//! synthetic records like the bench's (`connect-load --mode unix` or
//! `refused` in two threads) go through the same stages as
//! `pipeline::Pipeline::drain` (decode, resolve, workload identity,
//! aggregate, JSON Lines, Prometheus) in batches, and each stage's share
//! is the difference between runs that stop after it.
//!
//! ```console
//! $ cargo +1.99.1 run --release -p connect-trace --example pipeline_cost -- unix /dev/shm/cost.jsonl
//! ```
//!
//! `--only STAGE` after the file runs one stage alone (for `perf record`).
//! The output file (default `/dev/null`) is written by the JSON Lines
//! sink's writer thread; its CPU time shows in the `writer` line, measured
//! from the thread's own clock. Far steadier than the bench's whole-daemon
//! CPU on a busy machine, but it leaves out the ring buffer, the event loop
//! and the kernel's side of the output file when it goes to /dev/null.

use std::{
    env,
    hint::black_box,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Instant, SystemTime},
};

use connect_trace::{
    aggregate::{Aggregator, DEFAULT_CAPACITY},
    clock::WallClock,
    decode::Record,
    delivery::{Delivery, Ledger},
    export::{
        Sink,
        jsonl::JsonLinesSink,
        output::{Limits, Output},
        prometheus::{CountSource, Metrics, PrometheusSink},
    },
    kernel::OutcomeTally,
    pipeline::identify::Identity,
    report::AttemptReport,
    resolve::{Resolver, ResolverConfig},
    workload::{WorkloadConfig, Workloads},
};
use connect_trace_common::abi::{
    COMM_LEN, ConnectRecord, Handshake, SOCKADDR_MAX, record_kind, tcp_state,
};

/// Events per batch: about what a 10 ms poll takes at 400,000 events/s.
const BATCH: usize = 4000;
/// Batches per timed run.
const BATCHES: usize = 100;
/// Timed runs of each stage; the fastest is reported (noise only adds).
const RUNS: usize = 7;

/// No kernel here: the metrics read no counts at scrape time.
struct NoCounts;

impl CountSource for NoCounts {
    fn read(&self) -> Option<(Delivery, OutcomeTally)> {
        None
    }
}

/// One ring buffer's worth of records like `connect-load`'s.
fn records(mode: &str) -> Vec<Vec<u8>> {
    let pid = std::process::id();
    let start = WallClock::monotonic_now_ns();
    (0..BATCH)
        .map(|index| {
            let thread = u32::try_from(index % 2).unwrap_or(0);
            let mut comm = [0u8; COMM_LEN];
            let name = format!("load-{thread}");
            comm[..name.len()].copy_from_slice(name.as_bytes());
            let mut addr = [0u8; SOCKADDR_MAX];
            let mut record = ConnectRecord {
                kind: record_kind::CONNECT,
                tgid: pid,
                tid: pid + 1 + thread,
                uid: 0,
                gid: 0,
                fd: 3 + i32::try_from(thread).unwrap_or(0),
                ret: 0,
                addrlen: 0,
                addr_flags: 0,
                flags: 0,
                start_ns: start + index as u64 * 2_500,
                latency_ns: 6_000 + (index as u64 * 7919) % 90_000,
                cgroup_id: 1,
                netns: 4_026_531_833,
                via: 0,
                handshake: Handshake::default(),
                comm,
                addr,
            };
            if mode == "refused" {
                addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                addr[2..4].copy_from_slice(&41_651u16.to_be_bytes());
                addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
                record.addrlen = 16;
                record.ret = -libc::ECONNREFUSED;
                record.handshake = Handshake {
                    sock: 0xffff_8880_0000_0000 + index as u64 * 4096,
                    syn_ns: record.start_ns + 1_000,
                    outcome_ns: record.start_ns + 13_000,
                    outcome_state: tcp_state::CLOSE,
                    outcome_err: libc::ECONNREFUSED,
                };
            } else {
                let path = format!("/tmp/connect-load-{pid}-missing.sock");
                addr[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
                addr[2..2 + path.len()].copy_from_slice(path.as_bytes());
                record.addrlen = 110;
                record.ret = -libc::ENOENT;
            }
            record.addr = addr;
            bytemuck::bytes_of(&record).to_vec()
        })
        .collect()
}

/// How far through the pipeline a run goes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Stage {
    Decode,
    Resolve,
    Identify,
    Aggregate,
    Json,
    Prometheus,
}

const STAGES: [Stage; 6] = [
    Stage::Decode,
    Stage::Resolve,
    Stage::Identify,
    Stage::Aggregate,
    Stage::Json,
    Stage::Prometheus,
];

struct Stages {
    resolver: Resolver,
    identity: Identity,
    aggregator: Aggregator,
    json: JsonLinesSink,
    prometheus: PrometheusSink,
}

impl Stages {
    fn new(output: &Path) -> Self {
        let ledger = Arc::new(Ledger::default());
        let out = Output::file(output, Arc::clone(&ledger), Limits::default())
            .unwrap_or_else(|error| panic!("opening {}: {error}", output.display()));
        let metrics = Arc::new(
            Metrics::new(Arc::new(NoCounts), None)
                .unwrap_or_else(|error| panic!("metrics: {error}")),
        );
        let workloads = Workloads::start(WorkloadConfig {
            lookups: None,
            watch: false,
            ..WorkloadConfig::default()
        })
        .unwrap_or_else(|error| panic!("workloads: {error}"));
        Self {
            resolver: Resolver::new(ResolverConfig::default()),
            identity: Identity::new(workloads, None),
            aggregator: Aggregator::new(DEFAULT_CAPACITY, SystemTime::now()),
            json: JsonLinesSink::new(out, true, None),
            prometheus: PrometheusSink::new(metrics),
        }
    }

    /// One batch, as `Pipeline::drain` takes it, up to `last`.
    fn batch(&mut self, raw: &[Vec<u8>], last: Stage) {
        let now_ns = WallClock::monotonic_now_ns();
        let now = Instant::now();
        let Self {
            resolver,
            identity,
            aggregator,
            json,
            prometheus,
        } = self;
        for bytes in raw {
            let Ok(record) = Record::decode(bytes) else {
                panic!("a synthetic record does not decode");
            };
            if last == Stage::Decode {
                black_box(&record);
                continue;
            }
            if let Record::Connect(attempt) = &record
                && last >= Stage::Identify
            {
                identity.notice(attempt.cgroup_id(), attempt.pid(), now);
            }
            let _ = resolver.on_record(&record, now_ns, &mut |resolved| {
                if last == Stage::Resolve {
                    black_box(resolved);
                    return Ok::<_, ()>(());
                }
                let Some(report) = identity.admit(AttemptReport::new(*resolved), Instant::now())
                else {
                    return Ok(());
                };
                if last >= Stage::Aggregate {
                    aggregator.record(&report, now_ns / 1_000_000_000);
                }
                if last >= Stage::Json {
                    json.attempt(&report).map_err(|_| ())?;
                }
                if last >= Stage::Prometheus {
                    prometheus.attempt(&report).map_err(|_| ())?;
                }
                black_box::<&AttemptReport>(&report);
                Ok(())
            });
        }
        if last >= Stage::Identify {
            let _ = black_box(identity.release(now));
        }
        let _ = json.flush();
        let _ = prometheus.flush();
    }
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the calling thread's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// CPU time of every thread of this process, in ns.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the process's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn main() {
    let mut args = env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "unix".to_owned());
    let output = PathBuf::from(args.next().unwrap_or_else(|| "/dev/null".to_owned()));
    let raw = records(&mode);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("tokio: {error}"));
    let _guard = runtime.enter();
    let events = (BATCH * BATCHES) as f64;
    println!(
        "{mode}: {} events per run, fastest of {RUNS} runs, ns per event (main thread CPU; \
         all threads)",
        BATCH * BATCHES
    );
    // `--only STAGE` (a third argument) times that stage alone, for a
    // profiler.
    let only = args.next().filter(|flag| flag == "--only").and(args.next());
    let mut previous = 0.0;
    for stage in STAGES {
        if only
            .as_ref()
            .is_some_and(|only| !format!("{stage:?}").eq_ignore_ascii_case(only))
        {
            continue;
        }
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..RUNS {
            if output.is_file() {
                // A fresh file each run: appending would fill a tmpfs.
                let _ = std::fs::remove_file(&output);
            }
            let mut stages = Stages::new(&output);
            // Warm the caches and the maps, as a running daemon has them.
            stages.batch(&raw, stage);
            let (thread, process) = (thread_cpu_ns(), process_cpu_ns());
            for _ in 0..BATCHES {
                stages.batch(&raw, stage);
            }
            stages.json.settle();
            let thread = (thread_cpu_ns() - thread) as f64 / events;
            let process = (process_cpu_ns() - process) as f64 / events;
            if thread < best.0 {
                best = (thread, process);
            }
        }
        println!(
            "  up to {:<10} {:7.0} ({:+5.0})  {:7.0}",
            format!("{stage:?}"),
            best.0,
            best.0 - previous,
            best.1
        );
        previous = best.0;
    }
}
