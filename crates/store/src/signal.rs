//! The change signal of an SQLite store: a counter in a small file beside the database, mapped
//! into memory by every Deadbolt process that opens the store and bumped after each committed
//! write. A server reads it in nanoseconds to know whether it must ask SQLite for the change
//! counter (`store_version`), which costs a read transaction (file locks, a few microseconds).
//!
//! Writes by other programs (an `sqlite3` shell) do not bump it; for those the server asks
//! SQLite at least once a second anyway.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// How long a change-counter value read from SQLite is trusted without a signal.
const MAX_TRUST: Duration = Duration::from_secs(1);

pub struct ChangeSignal {
    counter: Counter,
    memo: Mutex<Option<Memo>>,
}

enum Counter {
    /// Shared with every process that maps the same file.
    Mapped(memmap2::MmapMut),
    /// An in-memory store lives in one process only.
    Local(AtomicU64),
}

#[derive(Clone, Copy)]
struct Memo {
    signal: u64,
    version: i64,
    at: Instant,
}

impl ChangeSignal {
    pub fn local() -> Self {
        Self {
            counter: Counter::Local(AtomicU64::new(0)),
            memo: Mutex::new(None),
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
            memo: Mutex::new(None),
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
        let memo = *self.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.filter(|m| m.signal == signal && m.at.elapsed() < MAX_TRUST)
            .map(|m| m.version)
    }

    /// Remembers `version`, read from SQLite after the signal was `signal`.
    pub fn remember(&self, signal: u64, version: i64) {
        *self.memo.lock().unwrap_or_else(|e| e.into_inner()) = Some(Memo {
            signal,
            version,
            at: Instant::now(),
        });
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
}
