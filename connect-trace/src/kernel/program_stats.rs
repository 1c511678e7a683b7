//! What the daemon's own programs cost (`run --bpf-stats`): the kernel's
//! accounting of each program's run time and run count, so that operators
//! can see what tracing costs their host.
//!
//! The kernel counts only while its statistics are enabled, and counting
//! costs every BPF program on the host two clock reads per run. A
//! [`ProgramStats`] enables them with `BPF_ENABLE_STATS` and holds the
//! descriptor that call returns: the statistics stay on while it lives and
//! go off when it is dropped or the daemon exits, however it exits. The
//! `kernel.bpf_stats_enabled` sysctl is never touched.
//!
//! The counts are read through descriptors of the programs taken at start,
//! from `/proc/self/fdinfo`: that needs no capability, so it keeps working
//! after the daemon drops its capabilities.

use std::{
    fs, io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    time::Duration,
};

use aya::{
    programs::{ProgramError, ProgramFd, loaded_programs},
    sys::{Stats, SyscallError, enable_stats},
};
use thiserror::Error;

/// The program statistics could not be enabled or read.
#[derive(Debug, Error)]
pub enum ProgramStatsError {
    /// The kernel refused to enable its statistics.
    #[error(
        "enabling the kernel's BPF statistics failed (--bpf-stats needs CAP_SYS_ADMIN, or root, \
         and Linux 5.8 or later): {0}"
    )]
    Enable(#[source] SyscallError),
    /// An attached program could not be found among the loaded ones.
    #[error("finding BPF program {id} among the loaded programs: {source}")]
    Find {
        /// The program's kernel id.
        id: u32,
        /// Why it was not found.
        #[source]
        source: ProgramError,
    },
    /// An attached program is not loaded any more.
    #[error("BPF program {0} is not loaded")]
    NotLoaded(u32),
    /// A program's counts could not be read.
    #[error("reading the statistics of BPF program {name}: {source}")]
    Read {
        /// The program's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One program's run time and run count since it was loaded, counted while
/// statistics were enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The program's name, as `bpftool prog show` lists it.
    pub name: String,
    /// Time spent running it.
    pub run_time: Duration,
    /// Times it ran.
    pub runs: u64,
}

/// A program whose counts are read.
#[derive(Debug)]
struct Watched {
    name: String,
    fd: ProgramFd,
}

/// The kernel's statistics, enabled while this lives, and the programs
/// whose counts it reads.
#[derive(Debug)]
pub struct ProgramStats {
    /// Closing it disables the statistics (unless something else holds
    /// them on).
    _enabled: OwnedFd,
    programs: Vec<Watched>,
}

impl ProgramStats {
    /// Enables the kernel's statistics and takes a descriptor of each
    /// program in `ids`. Both need CAP_SYS_ADMIN: call this before the
    /// daemon drops its capabilities.
    pub fn enable(ids: &[u32]) -> Result<Self, ProgramStatsError> {
        let enabled = enable_stats(Stats::RunTime).map_err(ProgramStatsError::Enable)?;
        let mut found: Vec<Option<Watched>> = ids.iter().map(|_| None).collect();
        let mut failure = None;
        for program in loaded_programs() {
            // A program unloaded while the list is walked gives an error
            // for its entry only; one of ours is told apart below.
            let program = match program {
                Ok(program) => program,
                Err(error) => {
                    failure = Some(error);
                    continue;
                }
            };
            let Some(slot) = ids.iter().position(|id| *id == program.id()) else {
                continue;
            };
            let fd = program.fd().map_err(|source| ProgramStatsError::Find {
                id: program.id(),
                source,
            })?;
            found[slot] = Some(Watched {
                name: program
                    .name_as_str()
                    .map_or_else(|| program.id().to_string(), str::to_owned),
                fd,
            });
        }
        let mut programs = Vec::with_capacity(ids.len());
        for (watched, &id) in found.into_iter().zip(ids) {
            let Some(watched) = watched else {
                return Err(match failure {
                    Some(source) => ProgramStatsError::Find { id, source },
                    None => ProgramStatsError::NotLoaded(id),
                });
            };
            programs.push(watched);
        }
        Ok(Self {
            _enabled: enabled,
            programs,
        })
    }

    /// Each program's run time and run count now.
    pub fn read(&self) -> Result<Vec<ProgramRuns>, ProgramStatsError> {
        self.programs
            .iter()
            .map(|program| {
                let path = format!("/proc/self/fdinfo/{}", program.fd.as_fd().as_raw_fd());
                let read_error = |source| ProgramStatsError::Read {
                    name: program.name.clone(),
                    source,
                };
                let text = fs::read_to_string(&path).map_err(read_error)?;
                let (run_time_ns, runs) = parse_fdinfo(&text).ok_or_else(|| {
                    read_error(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{path} has no run_time_ns and run_cnt"),
                    ))
                })?;
                Ok(ProgramRuns {
                    name: program.name.clone(),
                    run_time: Duration::from_nanos(run_time_ns),
                    runs,
                })
            })
            .collect()
    }
}

/// `run_time_ns` and `run_cnt` from the fdinfo of a program descriptor
/// (Linux 5.1 and later).
fn parse_fdinfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some((field("run_time_ns")?, field("run_cnt")?))
}

#[cfg(test)]
mod tests {
    use super::parse_fdinfo;

    #[test]
    fn reads_the_counts_of_a_program_descriptor() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1039\nprog_type:\t5\n\
                      prog_jited:\t1\nprog_tag:\tb11459a0e11ca14c\nmemlock:\t4096\n\
                      prog_id:\t1540\nrun_time_ns:\t123456\nrun_cnt:\t789\n\
                      recursion_misses:\t0\nverified_insns:\t2\n";
        assert_eq!(parse_fdinfo(fdinfo), Some((123_456, 789)));
        assert_eq!(parse_fdinfo("pos:\t0\nprog_id:\t1\n"), None);
    }
}
