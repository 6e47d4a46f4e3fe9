//! The process's log sink: tracing's formatted lines go through a bounded queue to one
//! thread that writes them to stderr (or any other target).
//!
//! Guarantees: logging never panics and never blocks the caller. A line that cannot be
//! queued (the writing thread is stuck on a full pipe or a slow disk) or cannot be
//! written (the disk holding the log is full, stderr is `/dev/full` or closed) is dropped
//! and counted; the count is in `/healthz` (`log.dropped_lines`). The writer thread of the
//! database logs from inside its commit loop, so a log write that panicked there — as
//! tracing-subscriber's own "unable to write" fallback does, through `eprintln!` — would
//! stop every write of the center.
//!
//! Where `[logging] file` is set, the lines go to that file instead, and the same thread
//! rotates it by size ([`RotatingFile`]): `node.log` → `node.log.1` → … up to `keep`
//! old files. The thread that writes is the only one that renames, so no line is cut in
//! two and none is lost to a copy-and-truncate.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

/// Lines queued for the writing thread before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;

/// Counters of one sink.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// What the sink did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Lines handed to the target without error.
    pub written: u64,
    /// Lines dropped: the queue was full or the target refused them.
    pub dropped: u64,
}

/// A handle to the sink; cheap to clone. Each [`LogSink::line`] is one log line.
#[derive(Clone)]
pub struct LogSink {
    tx: SyncSender<Vec<u8>>,
    counters: Arc<Counters>,
}

impl LogSink {
    /// Starts the thread that writes queued lines to `target`.
    pub fn spawn(target: impl Write + Send + 'static, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(queue.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let mut target = target;
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    // `write_all` returns the error (ENOSPC, EPIPE…); it never panics.
                    match target.write_all(&line).and_then(|()| target.flush()) {
                        Ok(()) => c.written.fetch_add(1, Ordering::Relaxed),
                        Err(_) => c.dropped.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })?;
        Ok(Self { tx, counters })
    }

    /// A writer for one line: it collects what is written and queues it when dropped.
    pub fn line(&self) -> LineWriter {
        LineWriter {
            buf: Vec::new(),
            sink: self.clone(),
        }
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    fn queue(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One log line being written; queued to the sink when dropped. Its `write` always
/// succeeds, so the formatter never sees an error to report.
pub struct LineWriter {
    buf: Vec<u8>,
    sink: LogSink,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.queue(std::mem::take(&mut self.buf));
        }
    }
}

static PROCESS_SINK: OnceLock<LogSink> = OnceLock::new();

/// The sink of this process's stderr, started on first use. The log of the process is a
/// process-wide resource, so its sink is too.
pub fn stderr_sink() -> std::io::Result<&'static LogSink> {
    process_sink(std::io::stderr())
}

/// The sink of this process's log, writing to `target` when this call starts it (a
/// later call gets the sink already running, whatever its target).
pub fn process_sink(target: impl Write + Send + 'static) -> std::io::Result<&'static LogSink> {
    if let Some(s) = PROCESS_SINK.get() {
        return Ok(s);
    }
    let sink = LogSink::spawn(target, QUEUE_LINES)?;
    Ok(PROCESS_SINK.get_or_init(|| sink))
}

/// A log file that is renamed away when the next line would take it past `max_bytes`:
/// `path` → `path.1` → `path.2` …, keeping `keep` old files (the oldest is removed).
/// Only the log's own thread writes it. A rename or reopen that fails is an error of
/// that line's write (counted as dropped by the sink); the next line tries again.
pub struct RotatingFile {
    path: std::path::PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<std::fs::File>,
    len: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating it with mode 0640.
    pub fn open(path: &std::path::Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let mut f = Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            len: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        self.len = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn numbered(&self, n: u32) -> std::path::PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        name.into()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // The oldest goes; each other moves one up; the current becomes `.1`.
            match std::fs::remove_file(self.numbered(self.keep)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        self.reopen()
    }
}

impl Write for RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() || (self.len > 0 && self.len + bytes.len() as u64 > self.max_bytes) {
            if self.file.is_none() {
                self.reopen()?;
            } else {
                self.rotate()?;
            }
        }
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
        let n = file.write(bytes)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// What the process's log sink did so far (zeros when the process logs elsewhere, as
/// tests that build an `App` in-process do).
pub fn process_stats() -> LogStats {
    PROCESS_SINK.get().map(LogSink::stats).unwrap_or_default()
}

/// Writes `text` to stdout without panicking: `false` when it could not be written
/// (stdout is `/dev/full`, a closed pipe…). `println!` would panic there.
pub fn try_print(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A target whose disk is full.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A target that never returns (a pipe nobody reads).
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(sink: &LogSink, n: usize) {
        for i in 0..n {
            let mut w = sink.line();
            writeln!(w, "line {i}").expect("a line writer never fails");
        }
    }

    fn eventually(what: &str, probe: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !probe() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_target_drops_and_counts_lines() {
        let sink = LogSink::spawn(Full, 16).unwrap();
        log(&sink, 10);
        eventually("10 lines dropped", || sink.stats().dropped == 10);
        assert_eq!(sink.stats().written, 0);
    }

    #[test]
    fn a_stuck_target_never_blocks_the_caller() {
        let sink = LogSink::spawn(Stuck, 8).unwrap();
        let started = Instant::now();
        log(&sink, 1000);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "logging blocked"
        );
        // One line is inside the stuck write, 8 are queued, the rest are dropped.
        assert!(sink.stats().dropped >= 1000 - 9, "{:?}", sink.stats());
    }

    #[test]
    fn a_log_file_rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let sink = LogSink::spawn(RotatingFile::open(&path, 100, 2).unwrap(), 64).unwrap();
        // 40 lines of 9 bytes, 11 to a file of at most 100: 4 files' worth (0–10, 11–21,
        // 22–32, 33–39); the oldest file is gone, the rest are whole lines.
        for i in 0..40 {
            let mut w = sink.line();
            writeln!(w, "line {i:03}").unwrap();
        }
        eventually("40 lines written", || sink.stats().written == 40);
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        let one = read(&dir.path().join("node.log.1"));
        let two = read(&dir.path().join("node.log.2"));
        assert!(!dir.path().join("node.log.3").exists(), "keeps 2 old files");
        for f in [&current, &one, &two] {
            assert!(f.len() <= 100, "a file past max_bytes: {} bytes", f.len());
            assert!(f.lines().all(|l| l.len() == 8), "a line cut in two: {f:?}");
        }
        assert!(current.ends_with("line 039\n"), "{current:?}");
        assert_eq!(two.lines().next(), Some("line 011"), "{two:?}");
        let kept: Vec<String> = [&two, &one, &current]
            .iter()
            .flat_map(|f| f.lines().map(str::to_owned))
            .collect();
        let expected: Vec<String> = (11..40).map(|i| format!("line {i:03}")).collect();
        assert_eq!(
            kept, expected,
            "the newest lines, in order, none lost in between"
        );
        assert_eq!(sink.stats().dropped, 0);
    }

    #[test]
    fn lines_reach_a_working_target_whole() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Chan(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Chan {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = LogSink::spawn(Chan(tx), 16).unwrap();
        {
            let mut w = sink.line();
            w.write_all(b"first half, ").unwrap();
            w.write_all(b"second half\n").unwrap();
        }
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, b"first half, second half\n");
        eventually("counted", || sink.stats().written == 1);
    }
}
