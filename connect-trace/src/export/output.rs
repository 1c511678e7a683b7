//! Where JSON lines go: stdout or a file that can be reopened (logrotate)
//! and that may fail (disk full) or stall (a reader that stopped reading, a
//! FIFO nobody drains) without stopping the daemon.
//!
//! Lines are collected per batch on the daemon's thread and handed to a
//! writer thread of their own, which does the blocking `write`s. The
//! daemon's thread never waits for the output: the ring buffer keeps being
//! drained, `/metrics` and `/healthz` keep answering, signals are handled.
//! What waits for the writer is bounded ([`Limits::queued_bytes`]); a batch
//! beyond it is not written and its records are counted as not written.
//! When a file write fails, the records not written are counted and
//! reported, and the next batch is tried again. A closed stdout (`| head`)
//! is different: it ends the daemon, quietly.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{clock::WallClock, delivery::Ledger, kernel::privileges};

/// The most bytes a batch collects before it is handed to the writer.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// How much may wait for the writer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of lines queued for the writer at most; beyond it batches are
    /// counted as not written instead of queued.
    pub queued_bytes: usize,
    /// How long [`Output::close`] waits for the writer to finish.
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queued_bytes: 64 * 1024 * 1024,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// What the writer thread and the daemon's thread share.
#[derive(Debug, Default)]
pub struct Progress {
    queued_bytes: AtomicUsize,
    /// Lines handed to the writer and not yet written or counted.
    queued_lines: AtomicU64,
    /// CLOCK_MONOTONIC ns when the write in progress began; 0 when idle.
    busy_since_ns: AtomicU64,
    /// The reader of stdout went away.
    closed: AtomicBool,
    /// The error of the last failed write, until a write succeeds.
    failing: Mutex<Option<String>>,
}

impl Progress {
    /// How long the writer has been inside one write at `now_ns`, if it is
    /// writing: a stalled reader or disk shows here.
    pub fn busy_for(&self, now_ns: u64) -> Option<Duration> {
        match self.busy_since_ns.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_nanos(now_ns.saturating_sub(since))),
        }
    }

    /// Bytes waiting for the writer.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Why writes fail now, if they do.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().ok().and_then(|failing| failing.clone())
    }
}

enum Message {
    Batch { bytes: Vec<u8>, lines: Vec<usize> },
    Reopen,
}

/// A batch's buffers: its bytes and where each line ends.
type Batch = (Vec<u8>, Vec<usize>);

/// Emptied batches kept for reuse, at most: each holds about
/// [`BATCH_BYTES`], resident.
const SPARE_BATCHES: usize = 2;

/// A new batch's room: [`BATCH_BYTES`] and a last line past it. Filling a
/// buffer that starts smaller grows it five times (a copy each) to
/// [`BATCH_BYTES`], and a new buffer of that size is fresh memory that
/// faults in page by page; reusing the writer's emptied buffers at full
/// size avoids both. Saved about 100 ns per event of the daemon's thread
/// (`examples/pipeline_cost.rs unix --only json`: 920 to 1,010 ns before,
/// 720 to 900 ns after, three alternating runs on the busy bench machine).
fn new_batch() -> Batch {
    (Vec::with_capacity(BATCH_BYTES + 64 * 1024), Vec::new())
}

/// A JSON Lines destination.
pub struct Output {
    path: Option<PathBuf>,
    /// The batch being built, and where each line in it ends.
    batch: Vec<u8>,
    ends: Vec<usize>,
    queue: Option<SyncSender<Message>>,
    /// Batches the writer has written, emptied, to be filled again.
    spare: Receiver<Batch>,
    progress: Arc<Progress>,
    ledger: Arc<Ledger>,
    limits: Limits,
    writer: Option<JoinHandle<()>>,
    finished: Receiver<()>,
    /// Batches not queued because the writer was too far behind, until one
    /// is queued again: to log a stall once, not per batch.
    behind: u64,
    /// When the wait for the writer to finish ends: set by the first of
    /// [`Output::settle`] and [`Output::close`], so that the two together
    /// wait no longer than [`Limits::close_timeout`].
    give_up_at: Option<Instant>,
}

/// Where the writer thread writes.
enum Destination {
    Stdout(io::Stdout),
    File { path: PathBuf, file: File },
}

impl Output {
    /// Standard output.
    pub fn stdout(ledger: Arc<Ledger>, limits: Limits) -> Self {
        Self::start(None, Destination::Stdout(io::stdout()), ledger, limits)
    }

    /// Appends to `path`, creating it if needed. A FIFO must already have
    /// a reader: opening one without fails at once instead of waiting.
    pub fn file(path: &Path, ledger: Arc<Ledger>, limits: Limits) -> io::Result<Self> {
        let file = open_append(path)?;
        let destination = Destination::File {
            path: path.to_path_buf(),
            file,
        };
        Ok(Self::start(
            Some(path.to_path_buf()),
            destination,
            ledger,
            limits,
        ))
    }

    fn start(
        path: Option<PathBuf>,
        destination: Destination,
        ledger: Arc<Ledger>,
        limits: Limits,
    ) -> Self {
        let progress = Arc::new(Progress::default());
        // Messages are counted by the byte budget; this only bounds how
        // many small batches can queue.
        let (queue, messages) = sync_channel(4096);
        let (done, finished) = sync_channel(1);
        let (recycle, spare) = sync_channel(SPARE_BATCHES);
        let writer = Writer {
            recycle,
            destination,
            torn_line: false,
            progress: Arc::clone(&progress),
            ledger: Arc::clone(&ledger),
        };
        let writer = std::thread::Builder::new()
            .name("ct-output".to_owned())
            .spawn(move || {
                // Writing needs no capability; a thread made before the
                // daemon dropped its own would otherwise keep them all.
                if let Err(error) = privileges::drop_in_this_thread() {
                    tracing::warn!("the output thread could not drop its capabilities: {error}");
                }
                writer.run(&messages);
                let _ = done.send(());
            })
            .ok();
        let (batch, ends) = new_batch();
        Self {
            path,
            batch,
            ends,
            queue: Some(queue),
            spare,
            progress,
            ledger,
            limits,
            writer,
            finished,
            behind: 0,
            give_up_at: None,
        }
    }

    /// The file written to, if not stdout.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What the writer is doing, for `/healthz`.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Adds one record (a whole line) to the batch. A batch that reaches
    /// [`BATCH_BYTES`] is handed over at once, so a burst never builds one
    /// huge batch.
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
        if self.batch.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the batch to the writer without waiting for it. Fails only
    /// when stdout's reader has gone away; a batch the writer is too far
    /// behind to take is counted as not written.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.progress.closed.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.ends.is_empty() {
            return Ok(());
        }
        let (next_bytes, next_lines) = self.spare.try_recv().unwrap_or_else(|_| new_batch());
        let lines = std::mem::replace(&mut self.ends, next_lines);
        let bytes = std::mem::replace(&mut self.batch, next_bytes);
        let size = bytes.len();
        let count = lines.len() as u64;
        let queued = self.progress.queued_bytes.load(Ordering::Relaxed);
        let sent = if queued + size > self.limits.queued_bytes {
            false
        } else {
            self.progress
                .queued_bytes
                .fetch_add(size, Ordering::Relaxed);
            self.progress
                .queued_lines
                .fetch_add(count, Ordering::Relaxed);
            match self
                .queue
                .as_ref()
                .map(|queue| queue.try_send(Message::Batch { bytes, lines }))
            {
                Some(Ok(())) => true,
                Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                    self.progress
                        .queued_bytes
                        .fetch_sub(size, Ordering::Relaxed);
                    self.progress
                        .queued_lines
                        .fetch_sub(count, Ordering::Relaxed);
                    false
                }
            }
        };
        if sent {
            if self.behind > 0 {
                tracing::info!(
                    "{} takes writes again; {} batches could not wait for it",
                    self.describe(),
                    self.behind
                );
                self.behind = 0;
            }
        } else {
            self.ledger.written(0, count);
            if self.behind == 0 {
                tracing::error!(
                    "{} is not keeping up ({} bytes wait for it); records are counted as not written until it takes writes again (tracing, metrics and health go on)",
                    self.describe(),
                    self.progress.queued_bytes()
                );
            }
            self.behind += 1;
        }
        Ok(())
    }

    /// Hands over the batch and waits until the writer has written every
    /// line queued so far, at most [`Limits::close_timeout`].
    pub fn settle(&mut self) {
        if self.flush().is_err() {
            return;
        }
        let deadline = self.give_up_at();
        while self.progress.queued_lines.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            // The writer thread signals only when it finishes for good;
            // a short sleep is the simplest bounded wait.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Opens the file again (after logrotate moved it), once every batch
    /// before it is written to the old file, so no record is lost or
    /// written twice.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.path.is_some()
            && let Some(queue) = &self.queue
        {
            let _ = queue.try_send(Message::Reopen);
        }
        Ok(())
    }

    /// Hands over the last batch and waits for the writer to finish, at
    /// most [`Limits::close_timeout`]. Returns whether everything was
    /// written in time; what was not is counted as not written.
    pub fn close(&mut self) -> bool {
        let _ = self.flush();
        self.queue = None;
        let left = self.give_up_at().saturating_duration_since(Instant::now());
        let finished = match self.finished.recv_timeout(left) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if finished {
            if let Some(writer) = self.writer.take() {
                let _ = writer.join();
            }
        } else {
            let lines = self.progress.queued_lines.swap(0, Ordering::Relaxed);
            self.ledger.written(0, lines);
            tracing::error!(
                "{} did not take the last {lines} records within {:?}; giving up on them",
                self.describe(),
                self.limits.close_timeout
            );
        }
        finished
    }

    /// When waiting for the writer ends (the first call starts the clock).
    fn give_up_at(&mut self) -> Instant {
        *self
            .give_up_at
            .get_or_insert_with(|| Instant::now() + self.limits.close_timeout)
    }

    /// The output, as a person would name it.
    pub fn describe(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string())
    }
}

/// The writer thread: takes batches in order and writes them.
struct Writer {
    /// Where written batches go back, emptied, for reuse (dropped when
    /// enough are there already).
    recycle: SyncSender<Batch>,
    destination: Destination,
    /// A failed write left part of a line behind; the next write starts
    /// with a newline so that the next record is not glued to it.
    torn_line: bool,
    progress: Arc<Progress>,
    ledger: Arc<Ledger>,
}

impl Writer {
    fn run(mut self, messages: &Receiver<Message>) {
        while let Ok(message) = messages.recv() {
            match message {
                Message::Batch {
                    mut bytes,
                    mut lines,
                } => {
                    self.write(&bytes, &lines);
                    self.progress
                        .queued_bytes
                        .fetch_sub(bytes.len(), Ordering::Relaxed);
                    self.progress
                        .queued_lines
                        .fetch_sub(lines.len() as u64, Ordering::Relaxed);
                    bytes.clear();
                    lines.clear();
                    let _ = self.recycle.try_send((bytes, lines));
                }
                Message::Reopen => self.reopen(),
            }
        }
    }

    fn write(&mut self, bytes: &[u8], lines: &[usize]) {
        if self.progress.closed.load(Ordering::Relaxed) {
            self.ledger.written(0, lines.len() as u64);
            return;
        }
        self.progress
            .busy_since_ns
            .store(WallClock::monotonic_now_ns().max(1), Ordering::Relaxed);
        let result = self.write_all(bytes);
        self.progress.busy_since_ns.store(0, Ordering::Relaxed);
        let total = lines.len() as u64;
        match result {
            Ok(()) => {
                self.ledger.written(total, 0);
                self.report(None);
            }
            Err((done, error)) => {
                if matches!(self.destination, Destination::Stdout(_)) {
                    // The reader went away: the daemon ends quietly.
                    self.progress.closed.store(true, Ordering::Relaxed);
                    self.ledger.written(0, total);
                    return;
                }
                let whole = lines.iter().filter(|end| **end <= done).count() as u64;
                self.torn_line = !lines.contains(&done) && done > 0;
                self.ledger.written(whole, total - whole);
                self.report(Some(error));
            }
        }
    }

    /// Writes `bytes`; on failure, how many bytes made it.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
        let writer: &mut dyn Write = match &mut self.destination {
            Destination::Stdout(stdout) => stdout,
            Destination::File { file, .. } => file,
        };
        if self.torn_line {
            writer.write_all(b"\n").map_err(|error| (0, error))?;
            self.torn_line = false;
        }
        let mut done = 0;
        while done < bytes.len() {
            match writer.write(&bytes[done..]) {
                Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err((done, error)),
            }
        }
        writer.flush().map_err(|error| (done, error))
    }

    /// Logs when writes start failing and when they work again.
    fn report(&self, error: Option<io::Error>) {
        let Ok(mut failing) = self.progress.failing.lock() else {
            return;
        };
        let name = self.name();
        match (error, failing.is_some()) {
            (Some(error), false) => {
                tracing::error!(
                    "cannot write to {name}: {error}; records are counted as not written until it works again (the kernel keeps counting, metrics keep being served)"
                );
                *failing = Some(error.to_string());
            }
            (None, true) => {
                tracing::info!("writing to {name} works again");
                *failing = None;
            }
            _ => {}
        }
    }

    fn reopen(&mut self) {
        let Destination::File { path, .. } = &self.destination else {
            return;
        };
        let path = path.clone();
        match open_append(&path) {
            Ok(file) => {
                self.destination = Destination::File {
                    path: path.clone(),
                    file,
                };
                self.torn_line = false;
                tracing::info!("reopened {}", path.display());
            }
            Err(error) => tracing::error!("reopening {}: {error}", path.display()),
        }
    }

    fn name(&self) -> String {
        match &self.destination {
            Destination::Stdout(_) => "stdout".to_owned(),
            Destination::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Opens `path` for appending. A FIFO is opened without blocking first:
/// with no reader that fails at once (ENXIO) instead of hanging start-up,
/// and writes then block again (on the writer thread only).
fn open_append(path: &Path) -> io::Result<File> {
    let is_fifo = std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo());
    if !is_fifo {
        return OpenOptions::new().create(true).append(true).open(path);
    }
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ENXIO) {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "it is a FIFO with no reader; start the reader first",
                )
            } else {
                error
            }
        })?;
    set_blocking(&file)?;
    Ok(file)
}

fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Delivery;

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

    fn counts(ledger: &Ledger) -> (u64, u64) {
        let Delivery {
            records_written,
            records_unwritten,
            ..
        } = ledger.daemon_counts();
        (records_written, records_unwritten)
    }

    #[test]
    fn batches_are_written_and_reopen_follows_the_path() {
        let path = temp("reopen");
        let ledger = Arc::new(Ledger::default());
        let mut output = Output::file(&path, Arc::clone(&ledger), Limits::default()).unwrap();
        output.record(line("{\"a\":1}")).unwrap();
        output.record(line("{\"a\":2}")).unwrap();
        output.flush().unwrap();
        let rotated = path.with_extension("1");
        // Wait for the writer before moving the file, as logrotate's
        // timing would make it likely.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while counts(&ledger).0 < 2 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::rename(&path, &rotated).unwrap();
        output.record(line("{\"a\":3}")).unwrap();
        output.reopen().unwrap();
        output.record(line("{\"a\":4}")).unwrap();
        assert!(output.close());
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":4}\n");
        assert_eq!(counts(&ledger), (4, 0));
        let _ = std::fs::remove_file(rotated);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_failed_render_leaves_no_partial_record() {
        let path = temp("render");
        let ledger = Arc::new(Ledger::default());
        let mut output = Output::file(&path, ledger, Limits::default()).unwrap();
        output.record(line("{\"ok\":1}")).unwrap();
        let failed = output.record(|out| {
            out.extend_from_slice(b"{\"half");
            Err(io::ErrorKind::Other.into())
        });
        assert!(failed.is_err());
        assert!(output.close());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"ok\":1}\n");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn write_failures_are_counted_not_fatal() {
        // /dev/full fails every write with ENOSPC.
        let ledger = Arc::new(Ledger::default());
        let mut output = Output::file(
            Path::new("/dev/full"),
            Arc::clone(&ledger),
            Limits::default(),
        )
        .unwrap();
        output.record(line("{}")).unwrap();
        output.record(line("{}")).unwrap();
        output.flush().unwrap();
        let progress = output.progress();
        assert!(output.close());
        assert_eq!(counts(&ledger), (0, 2));
        assert!(progress.failing().unwrap().contains("No space left"));
    }

    fn fifo(name: &str) -> PathBuf {
        let path = temp(name);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn a_fifo_without_a_reader_fails_at_once() {
        let path = fifo("noreader");
        let error = Output::file(&path, Arc::new(Ledger::default()), Limits::default())
            .err()
            .unwrap();
        assert!(error.to_string().contains("no reader"), "{error}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_daemon() {
        let path = fifo("stalled");
        // A reader that never reads: the pipe fills at 64 KiB.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let ledger = Arc::new(Ledger::default());
        let limits = Limits {
            queued_bytes: 256 * 1024,
            close_timeout: Duration::from_millis(200),
        };
        let mut output = Output::file(&path, Arc::clone(&ledger), limits).unwrap();
        let started = std::time::Instant::now();
        let text = "x".repeat(1000);
        for _ in 0..1000 {
            for _ in 0..10 {
                output.record(line(&text)).unwrap();
            }
            output.flush().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "flushes waited for the reader: {:?}",
            started.elapsed()
        );
        let progress = output.progress();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while progress.busy_for(WallClock::monotonic_now_ns()).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never blocked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!output.close(), "the writer cannot finish");
        let (written, unwritten) = counts(&ledger);
        assert!(unwritten > 9_000, "{written} written, {unwritten} not");
        let _ = std::fs::remove_file(path);
    }
}
