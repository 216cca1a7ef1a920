//! The portal's throttle counts, kept in the store so that every process on it counts the same
//! tries: per kind and hashed key, how many tries were let in, when, and until when the next
//! waits. What the counts mean (delays, free tries, how long a key is remembered) is the
//! portal's business; here they are only kept, changed atomically, and pruned.

use chrono::{DateTime, Utc};

use crate::engine::{Row, Stmt};
use crate::{ms, time, Result, Store, StoreError};

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod throttle_tests;

/// One thing counted: a kind (`login`, `mail`…) and a hash of its value (an email address, a
/// client address). The store never sees the value itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThrottleKey {
    pub kind: &'static str,
    pub hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleEntry {
    /// Tries counted.
    pub failures: u32,
    /// When the last try was let in.
    pub last: DateTime<Utc>,
    /// No try is let in before this.
    pub open_at: DateTime<Utc>,
    /// From this on the entry is as if it did not exist (and may be pruned).
    pub forget_at: DateTime<Utc>,
}

/// Locks a key's row and reads it, creating it first (as a forgotten one) when it does not
/// exist: a row that is not there cannot be locked, and two first tries at once must not both
/// see nothing. The no-op update is what locks an existing row on PostgreSQL (it waits for a
/// concurrent transaction on the row and then reads its committed values); SQLite holds its one
/// write lock for the whole transaction already.
const LOCK_SQL: &str =
    "INSERT INTO throttle_entries (kind, key_hash, failures, last_at, open_at, forget_at) \
     VALUES ($1, $2, 0, $3, $3, $3) \
     ON CONFLICT (kind, key_hash) DO UPDATE SET failures = throttle_entries.failures \
     RETURNING failures, last_at, open_at, forget_at";
const UPDATE_SQL: &str =
    "UPDATE throttle_entries SET failures = $1, last_at = $2, open_at = $3, forget_at = $4 \
     WHERE kind = $5 AND key_hash = $6";
const DELETE_SQL: &str = "DELETE FROM throttle_entries WHERE kind = $1 AND key_hash = $2";

fn entry(r: &Row) -> Result<ThrottleEntry> {
    Ok(ThrottleEntry {
        failures: u32::try_from(r.int(0)?)
            .map_err(|_| StoreError::Corrupt("a throttle count out of range".into()))?,
        last: time(r.int(1)?)?,
        open_at: time(r.int(2)?)?,
        forget_at: time(r.int(3)?)?,
    })
}

impl Store {
    /// The entries of `keys` (a forgotten one, or none, as `None`), read without locking or
    /// writing anything: what a try that will be refused needs, so that a flood of refused
    /// guesses costs reads, not writes. What it says may be stale by the time it is acted on;
    /// a try let in goes through [`Store::change_throttle`], which decides again.
    pub async fn throttle_entries(
        &self,
        keys: &[ThrottleKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<ThrottleEntry>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let e = self
                .one(
                    "SELECT failures, last_at, open_at, forget_at FROM throttle_entries \
                     WHERE kind = $1 AND key_hash = $2 AND forget_at > $3",
                    vec![k.kind.into(), (&k.hash).into(), ms(now)],
                    entry,
                )
                .await?;
            out.push(e);
        }
        Ok(out)
    }

    /// Reads the entries of `keys` (a forgotten one, or none, as `None`), lets `change` change
    /// them in place, and writes back what it left (`None` deletes); returns what `change`
    /// returned. One transaction, with the rows locked from the read to the write: tries made
    /// at once, through any number of processes, are counted one after the other, never raced.
    /// Rows are locked in one order (by key), whatever the order of `keys`, so that two
    /// changes of overlapping keys cannot deadlock.
    pub async fn change_throttle<T: Send + 'static>(
        &self,
        keys: &[ThrottleKey],
        now: DateTime<Utc>,
        change: impl FnOnce(&mut [Option<ThrottleEntry>]) -> T + Send + 'static,
    ) -> Result<T> {
        // A key given twice is locked and read twice in the one transaction (the same row, the
        // same values), and its later change is written last.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let locks: Vec<Stmt> = order
            .iter()
            .map(|&i| {
                let k = &keys[i];
                (LOCK_SQL, vec![k.kind.into(), (&k.hash).into(), ms(now)])
            })
            .collect();
        let keys = keys.to_vec();
        self.engine
            .read_modify_write(locks, move |rows| {
                let mut read = vec![None; keys.len()];
                for (&i, rows) in order.iter().zip(&rows) {
                    let e = rows.first().map(entry).transpose()?;
                    read[i] = e.filter(|e| e.forget_at > now);
                }
                let mut entries = read.clone();
                let out = change(&mut entries);
                let mut writes: Vec<Stmt> = Vec::new();
                for &i in &order {
                    let k = &keys[i];
                    match entries[i] {
                        Some(e) if read[i] == Some(e) => {}
                        Some(e) => writes.push((
                            UPDATE_SQL,
                            vec![
                                i64::from(e.failures).into(),
                                ms(e.last),
                                ms(e.open_at),
                                ms(e.forget_at),
                                k.kind.into(),
                                (&k.hash).into(),
                            ],
                        )),
                        // Also the row the lock created, or a forgotten one.
                        None => writes.push((DELETE_SQL, vec![k.kind.into(), (&k.hash).into()])),
                    }
                }
                Ok((writes, out))
            })
            .await
    }

    /// Deletes the entries forgotten by `now`; then, while more than `keep` are left, those
    /// that make no one wait, and then those whose waits end first, down to `keep`. Returns how
    /// many went. Run now and then: rows of forgotten keys otherwise stay, and a flood of
    /// made-up addresses would grow the table without bound.
    pub async fn prune_throttle(&self, now: DateTime<Utc>, keep: i64) -> Result<u64> {
        let out = self
            .engine
            .transaction(vec![
                (
                    "DELETE FROM throttle_entries WHERE forget_at <= $1 RETURNING failures",
                    vec![ms(now)],
                ),
                (
                    "DELETE FROM throttle_entries WHERE open_at <= $1 \
                     AND (SELECT count(*) FROM throttle_entries) > $2 RETURNING failures",
                    vec![ms(now), keep.into()],
                ),
                (
                    "DELETE FROM throttle_entries WHERE open_at <= \
                     (SELECT open_at FROM throttle_entries ORDER BY open_at DESC LIMIT 1 OFFSET $1) \
                     RETURNING failures",
                    vec![keep.max(0).into()],
                ),
            ])
            .await?;
        Ok(out.iter().map(|rows| rows.len() as u64).sum())
    }
}
