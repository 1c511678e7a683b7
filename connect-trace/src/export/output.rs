//! Where JSON lines go: stdout or a file that can be reopened (logrotate)
//! and that may fail (disk full) without stopping the daemon.
//!
//! Lines are collected per batch and written with one `write` where
//! possible. When a file write fails, the records not written are counted
//! and reported, and the next batch is tried again; the kernel keeps
//! counting and metrics keep being served meanwhile. A closed stdout
//! (`| head`) is different: it ends the daemon, quietly.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

/// What happened to a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Records written whole.
    pub records: u64,
    /// Records that could not be written.
    pub unwritten: u64,
}

/// A JSON Lines destination.
pub struct Output {
    path: Option<PathBuf>,
    sink: Sink,
    /// The batch being built, and where each record in it ends.
    batch: Vec<u8>,
    ends: Vec<usize>,
    /// A failed write left part of a line behind; the next write starts
    /// with a newline so that the next record is not glued to it.
    torn_line: bool,
    unwritten: u64,
    /// The error of the last failed write, until a write succeeds.
    failing: Option<io::Error>,
}

enum Sink {
    Stdout(io::Stdout),
    File(File),
}

impl Output {
    /// Standard output.
    pub fn stdout() -> Self {
        Self::new(None, Sink::Stdout(io::stdout()))
    }

    /// Appends to `path`, creating it if needed.
    pub fn file(path: &Path) -> io::Result<Self> {
        Ok(Self::new(
            Some(path.to_path_buf()),
            Sink::File(open_append(path)?),
        ))
    }

    fn new(path: Option<PathBuf>, sink: Sink) -> Self {
        Self {
            path,
            sink,
            batch: Vec::with_capacity(64 * 1024),
            ends: Vec::new(),
            torn_line: false,
            unwritten: 0,
            failing: None,
        }
    }

    /// The file written to, if not stdout.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Adds one record (a whole line) to the batch.
    pub fn record(
        &mut self,
        render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let start = self.batch.len();
        if let Err(error) = render(&mut self.batch) {
            self.batch.truncate(start);
            return Err(error);
        }
        self.ends.push(self.batch.len());
        Ok(())
    }

    /// Writes the batch. A failure to write to stdout is returned (the
    /// reader went away); a failure to write a file is counted, kept in
    /// [`Output::failing`], and not returned.
    pub fn flush(&mut self) -> io::Result<Written> {
        if self.ends.is_empty() {
            return Ok(Written::default());
        }
        let total = self.ends.len() as u64;
        let result = self.write_batch();
        let written = match result {
            Ok(()) => {
                self.failing = None;
                Written {
                    records: total,
                    unwritten: 0,
                }
            }
            Err((bytes, error)) => {
                if matches!(self.sink, Sink::Stdout(_)) {
                    self.clear();
                    return Err(error);
                }
                let whole = self.ends.iter().filter(|end| **end <= bytes).count() as u64;
                self.torn_line = !self.ends.contains(&bytes) && bytes > 0;
                self.failing = Some(error);
                Written {
                    records: whole,
                    unwritten: total - whole,
                }
            }
        };
        self.unwritten += written.unwritten;
        self.clear();
        Ok(written)
    }

    /// Writes the batch; on failure, how many bytes made it.
    fn write_batch(&mut self) -> Result<(), (usize, io::Error)> {
        let writer: &mut dyn Write = match &mut self.sink {
            Sink::Stdout(stdout) => stdout,
            Sink::File(file) => file,
        };
        if self.torn_line {
            writer.write_all(b"\n").map_err(|error| (0, error))?;
            self.torn_line = false;
        }
        let mut done = 0;
        while done < self.batch.len() {
            match writer.write(&self.batch[done..]) {
                Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err((done, error)),
            }
        }
        writer.flush().map_err(|error| (done, error))
    }

    fn clear(&mut self) {
        self.batch.clear();
        self.ends.clear();
    }

    /// Opens the file again (after logrotate moved it). The batch is written
    /// to the old file first, so no record is lost or written twice.
    pub fn reopen(&mut self) -> io::Result<Written> {
        let written = self.flush()?;
        if let Some(path) = &self.path {
            self.sink = Sink::File(open_append(path)?);
            self.torn_line = false;
        }
        Ok(written)
    }

    /// Records that could not be written, since start.
    pub const fn unwritten(&self) -> u64 {
        self.unwritten
    }

    /// The error of the last failed write, while writes keep failing.
    pub fn failing(&self) -> Option<&io::Error> {
        self.failing.as_ref()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> impl FnOnce(&mut Vec<u8>) -> io::Result<()> + '_ {
        move |out| {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
            Ok(())
        }
    }

    fn temp(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("ct-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn batches_are_written_and_reopen_follows_the_path() {
        let path = temp("reopen");
        let mut output = Output::file(&path).unwrap();
        output.record(line("{\"a\":1}")).unwrap();
        output.record(line("{\"a\":2}")).unwrap();
        assert_eq!(
            output.flush().unwrap(),
            Written {
                records: 2,
                unwritten: 0
            }
        );
        let rotated = path.with_extension("1");
        std::fs::rename(&path, &rotated).unwrap();
        output.record(line("{\"a\":3}")).unwrap();
        assert_eq!(output.reopen().unwrap().records, 1);
        output.record(line("{\"a\":4}")).unwrap();
        output.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":4}\n");
        let _ = std::fs::remove_file(rotated);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_failed_render_leaves_no_partial_record() {
        let path = temp("render");
        let mut output = Output::file(&path).unwrap();
        output.record(line("{\"ok\":1}")).unwrap();
        let failed = output.record(|out| {
            out.extend_from_slice(b"{\"half");
            Err(io::ErrorKind::Other.into())
        });
        assert!(failed.is_err());
        output.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"ok\":1}\n");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn write_failures_are_counted_not_fatal() {
        // /dev/full fails every write with ENOSPC.
        let mut output = Output::file(Path::new("/dev/full")).unwrap();
        output.record(line("{}")).unwrap();
        output.record(line("{}")).unwrap();
        let written = output.flush().unwrap();
        assert_eq!(
            written,
            Written {
                records: 0,
                unwritten: 2
            }
        );
        assert_eq!(output.unwritten(), 2);
        assert_eq!(
            output.failing().and_then(io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
    }
}
