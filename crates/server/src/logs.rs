//! The process's log output: lines go to stderr through a bounded queue and one writer thread,
//! so a log line can never fail, panic or block the server. When stderr cannot be written (a
//! full disk, a closed pipe, a reader that stopped reading) lines are dropped and counted, and
//! the count is written as soon as stderr takes lines again.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Lines waiting for the writer thread; past this, new lines are dropped (and counted).
const QUEUE_LINES: usize = 10_000;
/// How long the end of the process waits for queued lines to reach stderr.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Where the subscriber writes: enqueues a formatted line, never waits and never fails.
#[derive(Clone)]
pub struct LineQueue {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Flushes the queued lines when dropped (at the end of `main`).
pub struct LogGuard {
    queue: LineQueue,
}

impl LineQueue {
    /// A queue whose lines the returned thread writes to `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("deadbolt-log".into())
            .spawn(move || write_lines(rx, out, &counter))?;
        Ok(Self { tx, dropped })
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `wait`) until every line queued so far was handed to the output.
    pub fn flush(&self, wait: Duration) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + wait;
        let mut msg = Message::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn write_lines<W: Write>(rx: Receiver<Message>, mut out: W, dropped: &AtomicU64) {
    let mut reported = 0u64;
    while let Ok(msg) = rx.recv() {
        match msg {
            Message::Line(line) => {
                let lost = dropped.load(Ordering::Relaxed);
                if lost > reported {
                    let note = format!("deadbolt: {} log lines dropped\n", lost - reported);
                    if out.write_all(note.as_bytes()).is_ok() {
                        reported = lost;
                    }
                }
                // A line stderr does not take is lost: there is nowhere else to say so.
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
        }
    }
}

impl Write for &LineQueue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The subscriber formats a whole event and writes it at once: one message per line.
        if self.tx.try_send(Message::Line(buf.to_vec())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineQueue {
    type Writer = &'a LineQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.queue.flush(FLUSH_WAIT);
    }
}

/// How the logs are written; `main` reads it from the flags and environment (`RUST_LOG`,
/// `NO_COLOR`) before anything runs.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `RUST_LOG` directive (`info`, `deadbolt=debug,warn`); `None` or unreadable: info.
    pub filter: Option<String>,
    /// Colour on a terminal; `false` when `NO_COLOR` is set.
    pub colour: bool,
}

/// Installs the global subscriber: stderr, the format, the level from the filter (default info).
pub fn init(settings: LogSettings) -> Option<LogGuard> {
    use tracing_subscriber::EnvFilter;
    let queue = LineQueue::start(std::io::stderr()).ok()?;
    let filter = settings
        .filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let colour = settings.colour && std::io::stderr().is_terminal();
    let format = settings.format;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        // The writer never fails; a subscriber reporting its own errors would write to
        // stderr directly, which is what must not happen.
        .log_internal_errors(false)
        .with_writer(queue.clone());
    // Libraries that log through `log` reach these logs through this bridge, except the
    // PostgreSQL driver, whose debug records carry statement parameters (password hashes,
    // session hashes, CSRF tokens): it is never bridged, whatever RUST_LOG says.
    let _ = tracing_log::LogTracer::builder()
        .ignore_crate("tokio_postgres")
        .ignore_crate("postgres_protocol")
        .ignore_crate("postgres_types")
        .init();
    let installed = match format {
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().finish()),
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
    };
    installed.ok()?;
    Some(LogGuard { queue })
}

/// Writes `text` to stderr if it can; a message that cannot be written is not worth failing for.
pub fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that refuses every write, like /dev/full.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(28))
        }
    }

    /// An output that never returns, like a pipe nobody reads.
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

    #[test]
    fn a_full_output_neither_fails_nor_panics_a_writer() {
        let q = LineQueue::start(Full).unwrap();
        for _ in 0..1000 {
            assert_eq!((&q).write(b"line\n").unwrap(), 5);
        }
        q.flush(Duration::from_secs(5));
    }

    #[test]
    fn a_stuck_output_drops_lines_instead_of_blocking() {
        let q = LineQueue::start(Stuck).unwrap();
        let start = Instant::now();
        for _ in 0..(QUEUE_LINES * 2) {
            (&q).write_all(b"line\n").unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "did not block");
        assert!(q.dropped() >= QUEUE_LINES as u64 - 1);
        // The end of the process does not wait on it for long either.
        q.flush(Duration::from_millis(100));
    }

    #[test]
    fn lines_reach_the_output_with_the_count_of_dropped_ones() {
        #[derive(Clone)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared(Arc::default());
        let q = LineQueue::start(out.clone()).unwrap();
        q.dropped.store(3, Ordering::Relaxed);
        (&q).write_all(b"hello\n").unwrap();
        q.flush(Duration::from_secs(5));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "deadbolt: 3 log lines dropped\nhello\n");
    }
}
