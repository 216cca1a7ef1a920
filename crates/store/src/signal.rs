//! The change signal of an SQLite store: a counter in a small file beside the database, mapped
//! into memory by every Deadbolt process that opens the store and bumped after each committed
//! write. A server reads it in nanoseconds to know whether it must ask SQLite for the change
//! counter (`store_version`), which costs a read transaction (file locks, a few microseconds).
//!
//! Writes by other programs (an `sqlite3` shell) do not bump it; for those the server asks
//! SQLite at least once a second anyway.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// How long a change-counter value read from SQLite is trusted without a signal.
const MAX_TRUST: Duration = Duration::from_secs(1);

pub struct ChangeSignal {
    counter: Counter,
    memo: Memo,
}

enum Counter {
    /// Shared with every process that maps the same file.
    Mapped(memmap2::MmapMut),
    /// An in-memory store lives in one process only.
    Local(AtomicU64),
}

/// The last change counter read from SQLite, and the signal it was read under. Read at every
/// check by every worker: a sequence lock, so that reading writes nothing shared (a mutex would
/// move its cache line between the cores at each check). Writers are rare (a change, or once a
/// second) and take `write`.
struct Memo {
    /// Odd while a writer is between its stores.
    seq: AtomicU64,
    signal: AtomicU64,
    version: AtomicI64,
    /// Trusted until this many nanoseconds after `base`; 0: nothing remembered.
    until_ns: AtomicU64,
    base: Instant,
    write: Mutex<()>,
}

impl Memo {
    fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            signal: AtomicU64::new(0),
            version: AtomicI64::new(0),
            until_ns: AtomicU64::new(0),
            base: Instant::now(),
            write: Mutex::new(()),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `None` when nothing usable is remembered, or when a writer was busy: the caller then
    /// reads SQLite, which is always right.
    fn read(&self, signal: u64) -> Option<i64> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 % 2 == 1 {
            return None;
        }
        let (sig, version, until) = (
            self.signal.load(Ordering::Relaxed),
            self.version.load(Ordering::Relaxed),
            self.until_ns.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        let fresh = self.seq.load(Ordering::Relaxed) == s1;
        (fresh && sig == signal && self.now_ns() < until).then_some(version)
    }

    fn write(&self, signal: u64, version: i64) {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let until = self.now_ns().saturating_add(MAX_TRUST.as_nanos() as u64);
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.signal.store(signal, Ordering::Relaxed);
        self.version.store(version, Ordering::Relaxed);
        self.until_ns.store(until, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }
}

impl ChangeSignal {
    pub fn local() -> Self {
        Self {
            counter: Counter::Local(AtomicU64::new(0)),
            memo: Memo::new(),
        }
    }

    /// Maps `path` (created with mode 0600 when missing).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts
            .open(path)
            .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::Config(e.to_string()))?
            .len();
        if len < 4096 {
            file.set_len(4096)
                .map_err(|e| StoreError::Config(e.to_string()))?;
        }
        // SAFETY: the mapping stays alive as long as `self`; other processes only ever touch the
        // first 8 bytes, and only through atomic operations (see `atomic`).
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            counter: Counter::Mapped(map),
            memo: Memo::new(),
        })
    }

    fn atomic(&self) -> &AtomicU64 {
        match &self.counter {
            // SAFETY: a mapping starts on a page boundary, so its first 8 bytes are aligned for
            // an AtomicU64, and the mapping (4096 bytes) outlives the returned reference.
            Counter::Mapped(map) => unsafe { &*(map.as_ptr() as *const AtomicU64) },
            Counter::Local(a) => a,
        }
    }

    pub fn load(&self) -> u64 {
        self.atomic().load(Ordering::SeqCst)
    }

    /// Called after every committed write that may change what a check reads.
    pub fn bump(&self) {
        self.atomic().fetch_add(1, Ordering::SeqCst);
    }

    /// The remembered change counter, if no write was signalled since `signal` was read and the
    /// value is fresh enough.
    pub fn remembered(&self, signal: u64) -> Option<i64> {
        self.memo.read(signal)
    }

    /// Remembers `version`, read from SQLite after the signal was `signal`.
    pub fn remember(&self, signal: u64, version: i64) {
        self.memo.write(signal, version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_see_each_others_bumps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.signal");
        let a = ChangeSignal::open(&path).unwrap();
        let b = ChangeSignal::open(&path).unwrap();
        let before = b.load();
        a.bump();
        assert_eq!(b.load(), before + 1);
        b.remember(b.load(), 7);
        assert_eq!(b.remembered(b.load()), Some(7));
        a.bump();
        assert_eq!(
            b.remembered(b.load()),
            None,
            "a write elsewhere invalidates the memo"
        );
    }

    #[test]
    fn nothing_is_remembered_at_first_and_a_memo_expires() {
        let s = ChangeSignal::local();
        assert_eq!(s.remembered(0), None);
        s.remember(0, 3);
        assert_eq!(s.remembered(0), Some(3));
        assert_eq!(s.remembered(1), None, "another signal");
        s.memo.until_ns.store(1, Ordering::SeqCst);
        assert_eq!(s.remembered(0), None, "past its second of trust");
    }

    /// Readers racing a writer see either a whole memo or none: never one signal's version
    /// paired with another signal.
    #[test]
    fn readers_never_see_a_torn_memo() {
        let s = std::sync::Arc::new(ChangeSignal::local());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    // The version is always ten times the signal.
                    s.remember(i, i as i64 * 10);
                    // Quiet moments too, so that some reads see a memo and check it.
                    if i.is_multiple_of(64) {
                        std::thread::sleep(std::time::Duration::from_micros(100));
                    }
                }
            })
        };
        let (mut seen, mut reads) = (0, 0);
        let started = std::time::Instant::now();
        while (reads < 200_000 || seen < 100) && started.elapsed().as_secs() < 20 {
            reads += 1;
            let sig = s.memo.signal.load(Ordering::Relaxed);
            if let Some(v) = s.remembered(sig) {
                assert_eq!(v, sig as i64 * 10);
                seen += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(seen >= 100, "only {seen} of {reads} reads saw a memo");
    }
}
