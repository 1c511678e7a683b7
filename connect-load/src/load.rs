//! Running the attempts in threads and adding up what they saw.

use std::{
    collections::BTreeMap,
    io,
    sync::{Condvar, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;

use crate::{
    errno,
    sys::Errno,
    target::{Mode, Target},
};

/// How much load to make.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// connect() calls in all, shared out evenly among the threads.
    pub count: u64,
    /// Threads making calls at the same time.
    pub threads: usize,
    /// Each thread stops after this long even if it has calls left.
    pub max_time: Duration,
}

/// What one run did: the JSON line `connect-load` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The mode the calls were made in.
    pub mode: Mode,
    /// Threads that made calls.
    pub threads: usize,
    /// This process's id (what `connect-trace run --pid` would filter on).
    pub pid: u32,
    /// connect() calls made.
    pub calls: u64,
    /// The outcome each call should have: an errno name or "success".
    pub expected: String,
    /// Calls with any other outcome, by errno name ("success" when a call
    /// that should fail did not). Empty when every call went as expected.
    pub errors: BTreeMap<String, u64>,
    /// Wall time from the start signal until the last thread finished.
    pub elapsed_ns: u64,
    /// `calls` per second of `elapsed_ns`.
    pub calls_per_sec: f64,
    /// Mean time of one whole iteration (socket, connect, close, ...) in one
    /// thread: the threads' busy time divided by `calls`.
    pub ns_per_call: f64,
    /// Mean time inside the connect() call alone.
    pub connect_ns_per_call: f64,
    /// "count" when every call was made, "time" when `--max-seconds` cut the
    /// run short.
    pub stopped_by: &'static str,
}

/// What one thread counted.
#[derive(Debug, Default)]
struct Tally {
    calls: u64,
    busy_ns: u64,
    connect_ns: u64,
    unexpected: BTreeMap<Errno, u64>,
    out_of_time: bool,
}

/// Holds the threads until all exist, so they start together.
#[derive(Default)]
struct StartGate {
    /// `None` until decided; then whether to run.
    go: Mutex<Option<bool>>,
    opened: Condvar,
}

impl StartGate {
    fn open(&self, go: bool) {
        *self.go.lock().unwrap_or_else(PoisonError::into_inner) = Some(go);
        self.opened.notify_all();
    }

    fn wait(&self) -> bool {
        let mut state = self.go.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(go) = *state {
                return go;
            }
            state = self
                .opened
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Runs `plan` against `target` and sums up.
pub fn run(mode: Mode, target: &Target, plan: Plan) -> Result<Summary> {
    let gate = StartGate::default();
    let (tallies, elapsed) = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(plan.threads);
        let mut spawn_error = None;
        for index in 0..plan.threads {
            let calls = share(plan.count, plan.threads, index);
            let gate = &gate;
            let spawned = thread::Builder::new()
                .name(format!("load-{index}"))
                .spawn_scoped(scope, move || {
                    if gate.wait() {
                        run_thread(target, calls, plan.max_time)
                    } else {
                        Ok(Tally::default())
                    }
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    spawn_error = Some(error);
                    break;
                }
            }
        }
        let started = Instant::now();
        gate.open(spawn_error.is_none());
        let results: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
        let elapsed = started.elapsed();
        if let Some(error) = spawn_error {
            return Err(anyhow!(error).context(format!("starting {} threads", plan.threads)));
        }
        let mut tallies = Vec::with_capacity(results.len());
        for result in results {
            let tally = result
                .map_err(|_| anyhow!("a load thread panicked"))?
                .context("making connect() calls")?;
            tallies.push(tally);
        }
        Ok((tallies, elapsed))
    })?;
    Ok(summarize(
        mode,
        target.expected(),
        plan.threads,
        &tallies,
        elapsed,
    ))
}

/// The calls thread `index` of `threads` makes: `count` shared as evenly as
/// possible.
fn share(count: u64, threads: usize, index: usize) -> u64 {
    let threads = threads as u64;
    let index = index as u64;
    count / threads + u64::from(index < count % threads)
}

fn run_thread(target: &Target, calls: u64, max_time: Duration) -> io::Result<Tally> {
    let started = Instant::now();
    let deadline = started + max_time;
    let mut tally = Tally::default();
    while tally.calls < calls {
        let attempt = target.attempt()?;
        tally.calls += 1;
        tally.connect_ns += attempt.connect_ns;
        if attempt.errno != target.expected() {
            *tally.unexpected.entry(attempt.errno).or_default() += 1;
        }
        if attempt.finished >= deadline {
            tally.out_of_time = tally.calls < calls;
            break;
        }
    }
    tally.busy_ns = nanos(started.elapsed());
    Ok(tally)
}

fn summarize(
    mode: Mode,
    expected: Errno,
    threads: usize,
    tallies: &[Tally],
    elapsed: Duration,
) -> Summary {
    let calls: u64 = tallies.iter().map(|tally| tally.calls).sum();
    let busy_ns: u64 = tallies.iter().map(|tally| tally.busy_ns).sum();
    let connect_ns: u64 = tallies.iter().map(|tally| tally.connect_ns).sum();
    let mut errors = BTreeMap::new();
    for (errno, count) in tallies.iter().flat_map(|tally| &tally.unexpected) {
        *errors.entry(errno::name(*errno)).or_default() += count;
    }
    let per_call = |total: u64| {
        if calls == 0 {
            0.0
        } else {
            total as f64 / calls as f64
        }
    };
    let elapsed_ns = nanos(elapsed);
    Summary {
        mode,
        threads,
        pid: std::process::id(),
        calls,
        expected: errno::name(expected),
        errors,
        elapsed_ns,
        calls_per_sec: if elapsed_ns == 0 {
            0.0
        } else {
            calls as f64 * 1e9 / elapsed_ns as f64
        },
        ns_per_call: per_call(busy_ns),
        connect_ns_per_call: per_call(connect_ns),
        stopped_by: if tallies.iter().any(|tally| tally.out_of_time) {
            "time"
        } else {
            "count"
        },
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Plan, run, share};
    use crate::target::{Mode, Target};

    #[test]
    fn shares_add_up_to_the_count() {
        for (count, threads) in [(10, 3), (2, 5), (7, 1), (1_000_001, 2)] {
            let total: u64 = (0..threads).map(|index| share(count, threads, index)).sum();
            assert_eq!(total, count, "{count} calls in {threads} threads");
        }
    }

    #[test]
    fn counts_every_call_and_no_unexpected_outcome() {
        let target = Target::set_up(Mode::Refused, None).unwrap();
        let plan = Plan {
            count: 101,
            threads: 2,
            max_time: Duration::from_secs(30),
        };
        let summary = run(Mode::Refused, &target, plan).unwrap();
        assert_eq!(summary.calls, 101);
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(summary.expected, "ECONNREFUSED");
        assert_eq!(summary.stopped_by, "count");
        assert!(summary.ns_per_call >= summary.connect_ns_per_call);
    }

    #[test]
    fn stops_at_the_time_limit() {
        let target = Target::set_up(Mode::Udp, None).unwrap();
        let plan = Plan {
            count: u64::MAX,
            threads: 1,
            max_time: Duration::from_millis(50),
        };
        let summary = run(Mode::Udp, &target, plan).unwrap();
        assert_eq!(summary.stopped_by, "time");
        assert!(summary.calls > 0);
    }
}
