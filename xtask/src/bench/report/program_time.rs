//! The program-time table: nanoseconds of BPF program per connect(), from
//! the kernel's own statistics, per program and summed.

use std::fmt::Write as _;

use super::{
    Report,
    format::{cell, format_ns},
};
use crate::bench::{plan::Mode, plan::Tracer, stats::median};

/// The columns next to connect-trace's: its own floor (the same hooks,
/// programs that do nothing), bpftrace's floor and a printf tracer.
const OTHERS: [Tracer; 3] = [
    Tracer::ConnectTraceEmpty,
    Tracer::BpftraceEmpty,
    Tracer::BpftracePrintf,
];

impl Report<'_> {
    /// Program time per connect() of `mode` under `tracer`, one value per
    /// round.
    pub(crate) fn program_time(&self, mode: Mode, tracer: Tracer) -> Vec<f64> {
        self.rounds
            .program_times(mode, tracer)
            .map(|time| time.total_ns_per_call())
            .collect()
    }

    /// connect-trace's program names, as the kernel knows them, in the
    /// order of its `started` record.
    fn connect_trace_programs(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for sample in &self.rounds.programs {
            if sample.tracer != Tracer::ConnectTrace {
                continue;
            }
            for program in &sample.time.programs {
                if !names.contains(&program.name) {
                    names.push(program.name.clone());
                }
            }
        }
        names
    }

    pub(crate) fn render_program_time(&self, out: &mut String) {
        let _ = writeln!(out, "## Program time per connect()\n");
        if self.rounds.programs.is_empty() {
            let _ = writeln!(out, "Not measured (see notes).\n");
            return;
        }
        let _ = writeln!(
            out,
            "The kernel's own accounting of the time spent in each BPF program \
             (`run_time_ns`, turned on with `BPF_ENABLE_STATS` only for these runs and read \
             with `bpftool -j prog show` before and after each), divided by the connect() \
             calls made: {} calls per mode in one thread, under each tracer, once per round. \
             The machine's other work moves it far less than wall-clock time, though a busy \
             host still inflates it (cache misses, a preempted vCPU). It leaves out what the kernel does around the \
             programs (the tracepoint itself, the syscall slow path) and everything in user \
             space: the end-to-end tables below hold those. The tracepoints fire for every \
             process, so other work on the machine adds runs: *runs per call* (1 per \
             syscall program when nothing else connects) shows how much. Medians over the \
             rounds, with (min–max), in ns.\n",
            self.args.count
        );
        let names = self.connect_trace_programs();
        let mut header = String::from("| mode |");
        let mut rule = String::from("|---|");
        for name in &names {
            let _ = write!(header, " `{name}` |");
            rule.push_str("---:|");
        }
        header.push_str(" connect-trace, all programs |");
        rule.push_str("---:|");
        for tracer in OTHERS {
            let _ = write!(header, " {} |", tracer.label());
            rule.push_str("---:|");
        }
        header.push_str(" connect-trace runs per call |");
        rule.push_str("---|");
        let _ = writeln!(out, "{header}\n{rule}");
        for &mode in self.modes {
            let mut row = format!("| `{}` |", mode.name());
            let times: Vec<_> = self
                .rounds
                .program_times(mode, Tracer::ConnectTrace)
                .collect();
            let mut runs = Vec::new();
            for name in &names {
                let per_call: Vec<f64> = times
                    .iter()
                    .filter_map(|time| time.ns_per_call(name))
                    .collect();
                let _ = write!(row, " {} |", cell(&per_call, format_ns));
                let runs_per_call: Vec<f64> = times
                    .iter()
                    .filter_map(|time| time.runs_per_call(name))
                    .collect();
                runs.push(
                    median(&runs_per_call)
                        .map_or_else(|| "—".to_owned(), |stat| format!("{:.2}", stat.median)),
                );
            }
            let _ = write!(
                row,
                " **{}** |",
                cell(&self.program_time(mode, Tracer::ConnectTrace), format_ns)
            );
            for tracer in OTHERS {
                let _ = write!(
                    row,
                    " {} |",
                    cell(&self.program_time(mode, tracer), format_ns)
                );
            }
            let _ = writeln!(out, "{row} {} |", runs.join(" / "));
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "What bounds it. A refused TCP connect runs seven of connect-trace's programs (the \
             syscall's entry and exit, each of the two handshake programs on both state \
             changes, and `handshake_gone` as the socket is freed, which catches a handshake \
             end the kernel did not report); a UDP or unix connect runs two. The column of connect-trace's hooks \
             with programs that return at once is the floor of that design: the cost of \
             entering each program, including the two clock reads the statistics themselves \
             add to every run. No blind-spot coverage adds a program run to a plain \
             connect(): 32-bit programs, TCP Fast Open and kernel sockets are seen from the \
             handshake programs, which run anyway, and the io_uring tracepoints fire only \
             for io_uring requests. There is no program on every system call \
             (`raw_syscalls`), which would tax every process on the host.\n"
        );
    }
}
