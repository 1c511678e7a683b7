//! Program time: the kernel's own accounting of each BPF program's run
//! time and runs, which the noise of a shared machine moves far less than
//! wall-clock time.
//!
//! The accounting costs a clock read or two per program run, so it is on
//! only while [`StatsEnabled`] lives: the end-to-end runs go without it.
//! `bpftool` reads the counters, and tells which programs a process such as
//! bpftrace has attached.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::process;

/// The `bpf()` command that turns the statistics on for as long as the
/// descriptor it returns is open (include/uapi/linux/bpf.h, Linux 5.8).
const BPF_ENABLE_STATS: libc::c_long = 32;

/// `enum bpf_stats_type`: run time and run count.
const BPF_STATS_RUN_TIME: u32 = 0;

/// The kernel counts the run time and runs of every BPF program while this
/// lives. Unlike `sysctl kernel.bpf_stats_enabled=1`, nothing is left on if
/// the bench dies: the kernel closes the descriptor with the process.
/// (xtask cannot use aya's `enable_stats`: it builds before the pinned
/// toolchain that aya needs is installed.)
pub(crate) struct StatsEnabled(#[expect(dead_code, reason = "held for its Drop")] OwnedFd);

impl StatsEnabled {
    pub(crate) fn enable() -> Result<Self> {
        let attr: u32 = BPF_STATS_RUN_TIME;
        // SAFETY: BPF_ENABLE_STATS reads `size` bytes of `union bpf_attr`
        // (here its only field for this command, a u32 that outlives the
        // call) and returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                std::ptr::from_ref(&attr),
                std::mem::size_of::<u32>() as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error())
                .context("turning on the kernel's BPF statistics (BPF_ENABLE_STATS, Linux 5.8+)");
        }
        let fd = RawFd::try_from(fd).context("bpf() returned an impossible descriptor")?;
        // SAFETY: a descriptor the kernel just created, owned by nothing else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Whether `sysctl kernel.bpf_stats_enabled` is on: then every BPF program
/// pays for the accounting all the time, end-to-end runs included.
pub(crate) fn stats_always_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|text| text.trim() == "1")
}

/// One program as `bpftool -j prog show` lists it. It leaves out the run
/// time and count while they are 0.
#[derive(Debug, Deserialize)]
struct ListedProgram {
    id: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    run_time_ns: u64,
    #[serde(default)]
    run_cnt: u64,
}

/// What the kernel counted for one program: since it was loaded, or over
/// one load run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProgramRuns {
    /// The kernel's name of the program (at most 15 bytes).
    pub(crate) name: String,
    pub(crate) run_time_ns: u64,
    pub(crate) runs: u64,
}

/// The counters of some programs at one moment, in the order asked for.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot(Vec<ProgramRuns>);

impl Snapshot {
    /// Reads the counters of the programs `ids`.
    pub(crate) fn read(ids: &[u32]) -> Result<Self> {
        let listing = process::output(Command::new("bpftool").args(["-j", "prog", "show"]))
            .context("`bpftool -j prog show` failed (`cargo xtask setup` installs bpftool)")?;
        Self::from_listing(&listing, ids)
    }

    fn from_listing(listing: &str, ids: &[u32]) -> Result<Self> {
        let programs: Vec<ListedProgram> =
            serde_json::from_str(listing).context("reading `bpftool -j prog show`")?;
        let by_id: BTreeMap<u32, &ListedProgram> = programs
            .iter()
            .map(|program| (program.id, program))
            .collect();
        ids.iter()
            .map(|id| {
                let program = by_id
                    .get(id)
                    .with_context(|| format!("BPF program {id} is no longer loaded"))?;
                Ok(ProgramRuns {
                    name: program.name.clone(),
                    run_time_ns: program.run_time_ns,
                    runs: program.run_cnt,
                })
            })
            .collect::<Result<_>>()
            .map(Self)
    }

    /// What each program counted since `before` (a snapshot of the same
    /// programs).
    pub(crate) fn since(&self, before: &Self) -> Vec<ProgramRuns> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|(now, then)| ProgramRuns {
                name: now.name.clone(),
                run_time_ns: now.run_time_ns.saturating_sub(then.run_time_ns),
                runs: now.runs.saturating_sub(then.runs),
            })
            .collect()
    }
}

/// One attachment of a program to a perf event, as `bpftool -j perf show`
/// lists it (tracepoints, kprobes, uprobes).
#[derive(Debug, Deserialize)]
struct PerfAttachment {
    pid: u32,
    prog_id: u32,
}

/// The programs process `pid` has attached to perf events (bpftrace's
/// tracepoints), once the kernel reports them attached.
pub(crate) fn attached_by(pid: u32) -> Result<Vec<u32>> {
    let listing = process::output(Command::new("bpftool").args(["-j", "perf", "show"]))
        .context("`bpftool -j perf show` failed (`cargo xtask setup` installs bpftool)")?;
    attached_in(&listing, pid)
}

fn attached_in(listing: &str, pid: u32) -> Result<Vec<u32>> {
    let attachments: Vec<PerfAttachment> =
        serde_json::from_str(listing).context("reading `bpftool -j perf show`")?;
    let mut ids: Vec<u32> = attachments
        .iter()
        .filter(|attachment| attachment.pid == pid)
        .map(|attachment| attachment.prog_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The program time of one load run: each program's run time and runs,
/// and the connect() calls made.
#[derive(Debug, Clone)]
pub(crate) struct ProgramTime {
    pub(crate) programs: Vec<ProgramRuns>,
    pub(crate) calls: u64,
}

impl ProgramTime {
    pub(crate) fn new(programs: Vec<ProgramRuns>, calls: u64) -> Result<Self> {
        if calls == 0 {
            bail!("a load run made no calls");
        }
        Ok(Self { programs, calls })
    }

    /// Nanoseconds of all the programs per connect() call.
    pub(crate) fn total_ns_per_call(&self) -> f64 {
        let total: u64 = self
            .programs
            .iter()
            .map(|program| program.run_time_ns)
            .sum();
        total as f64 / self.calls as f64
    }

    /// Nanoseconds of program `name` per connect() call.
    pub(crate) fn ns_per_call(&self, name: &str) -> Option<f64> {
        self.program(name)
            .map(|program| program.run_time_ns as f64 / self.calls as f64)
    }

    /// Runs of program `name` per connect() call: 1 for a syscall program
    /// when nothing else on the machine connects meanwhile.
    pub(crate) fn runs_per_call(&self, name: &str) -> Option<f64> {
        self.program(name)
            .map(|program| program.runs as f64 / self.calls as f64)
    }

    fn program(&self, name: &str) -> Option<&ProgramRuns> {
        self.programs.iter().find(|program| program.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::{ProgramRuns, ProgramTime, Snapshot, attached_in};

    const LISTING: &str = r#"[{"id":7,"type":"tracepoint","name":"enter_connect","tag":"ab","gpl_compatible":true,"run_time_ns":5000,"run_cnt":10,"recursion_misses":0},{"id":8,"type":"tracepoint","name":"exit_connect","tag":"cd"},{"id":9,"type":"raw_tracepoint","name":"handshake_end","run_time_ns":900,"run_cnt":3}]"#;

    #[test]
    fn reads_the_counters_of_the_programs_asked_for() {
        let before = Snapshot::from_listing(LISTING, &[9, 7, 8]).unwrap();
        let names: Vec<&str> = before.0.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["handshake_end", "enter_connect", "exit_connect"]);
        // bpftool leaves the fields out while they are 0.
        assert_eq!(before.0[2].runs, 0);
        let later = LISTING.replace(
            r#""run_time_ns":5000,"run_cnt":10"#,
            r#""run_time_ns":8000,"run_cnt":16"#,
        );
        let after = Snapshot::from_listing(&later, &[9, 7, 8]).unwrap();
        let runs = after.since(&before);
        assert_eq!(
            runs[1],
            ProgramRuns {
                name: "enter_connect".to_owned(),
                run_time_ns: 3000,
                runs: 6
            }
        );
        let time = ProgramTime::new(runs, 6).unwrap();
        assert!((time.total_ns_per_call() - 500.0).abs() < 1e-9);
        assert_eq!(time.runs_per_call("enter_connect"), Some(1.0));
        assert_eq!(time.ns_per_call("exit_connect"), Some(0.0));
    }

    #[test]
    fn a_program_gone_is_an_error() {
        let error = Snapshot::from_listing(LISTING, &[7, 42]).unwrap_err();
        assert!(format!("{error:#}").contains("42"), "{error:#}");
    }

    #[test]
    fn finds_the_programs_a_process_attached() {
        let listing = r#"[{"pid":100,"fd":7,"prog_id":12,"fd_type":"tracepoint","tracepoint":"sys_enter_connect"},{"pid":200,"fd":5,"prog_id":30,"fd_type":"kprobe","func":"x","offset":0},{"pid":100,"fd":9,"prog_id":11,"fd_type":"tracepoint","tracepoint":"sys_exit_connect"}]"#;
        assert_eq!(attached_in(listing, 100).unwrap(), [11, 12]);
        assert!(attached_in("[]", 100).unwrap().is_empty());
    }
}
