//! Deadbolt's storage: every SQL statement lives here. One `Store` over two engines, SQLite (the
//! embedded default) and PostgreSQL (several replicas), sharing the same SQL text.
//!
//! Unlike a `Store` trait with one implementation per engine, the queries are written once in the
//! SQL both engines speak; a trait would have a single implementor. Tests run the same suite on
//! both engines, and failures are produced by breaking a real store, not by a mock.

/// Joins SQL text at compile time (shared column lists into statements).
macro_rules! sql {
    ($($part:expr),+ $(,)?) => { const_format::concatcp!($($part),+) };
}

mod engine;
mod listen;
pub mod migrations;
mod model;
mod recent;
mod signal;
#[cfg(test)]
#[macro_use]
mod test_support;
// After test_support: its macros are in scope for the modules below. One file an area, each
// an `impl Store` block with the SQL of that area and its tests beside it.
mod accounts;
#[cfg(test)]
mod admin_tests;
mod alerts;
mod applications;
mod attempts;
mod audit;
#[cfg(test)]
mod changes_tests;
mod companies;
mod identity;
mod import;
mod passkeys;
mod persons;
#[cfg(test)]
mod pg_tests;
mod portal;
#[cfg(test)]
mod retention_tests;
mod schedules;
#[cfg(test)]
mod tests;
mod throttle;

use chrono::{DateTime, Utc};
use engine::{Engine, Row, Val};
use thiserror::Error;

use accounts::account_row;
pub use alerts::{AlertEvent, AlertLink, AlertMail, Delivery, NewAlertLink, NewDelivery, Webhook};
pub use attempts::{AttemptBatch, AttemptFilter, BlockedOfBatch};
pub use audit::{AuditAction, AuditBy, AuditEntry, AuditState};
pub use engine::{warn_if_readable_by_others, DEFAULT_TIMEOUT};
pub use identity::Collision;
pub use model::*;
pub use passkeys::{Ceremony, NewPasskey, PasskeyRecord, SecondFactor};
pub use portal::{PendingLink, PortalLink, RoleRecord, SessionRecord};
pub use throttle::{ThrottleEntry, ThrottleKey};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("already exists: {0}")]
    Conflict(String),
    /// A change that cannot be made as things stand; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected data in the store: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How a store is opened, beyond its URL. The PostgreSQL settings do nothing on SQLite.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the PostgreSQL pool (the change listener has one more of its own).
    pub pg_pool_size: usize,
    /// How long a new PostgreSQL connection may take to open; a `connect_timeout` in the URL
    /// wins.
    pub pg_connect_timeout: std::time::Duration,
    /// Whether a PostgreSQL store listens for changes (`LISTEN deadbolt_changes`), so that
    /// checks learn the change log's position without a read. A server does; a one-shot
    /// command may not.
    pub listen: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pg_pool_size: 16,
            pg_connect_timeout: std::time::Duration::from_secs(5),
            listen: true,
        }
    }
}

/// A write failure this recent makes the store not ready without trying another write.
const WRITE_FAULT_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the store cannot be relied on now; the error inside has the details (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The SQLite file was deleted or replaced underneath the server.
    FileGone(StoreError),
    /// No answer within the deadline, or an error.
    Unreachable(StoreError),
    /// Reads work, writes fail (disk full, read-only file system).
    NotWritable(StoreError),
}

impl NotReady {
    /// What may be said about it to anyone who asks (`/readyz`), without internal details.
    pub fn reason(&self) -> &'static str {
        match self {
            NotReady::FileGone(_) => {
                "the database file was deleted or replaced while the server was running"
            }
            NotReady::Unreachable(_) => {
                "the store is unreachable or does not answer within its deadline"
            }
            NotReady::NotWritable(_) => {
                "the store does not take writes (disk full, read-only or unavailable)"
            }
        }
    }

    pub fn detail(&self) -> &StoreError {
        match self {
            NotReady::FileGone(e) | NotReady::Unreachable(e) | NotReady::NotWritable(e) => e,
        }
    }
}

fn ms(t: DateTime<Utc>) -> Val {
    Val::Int(t.timestamp_millis())
}
fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} out of range")))
}
fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(time).transpose()
}
/// A new row id. Version 7 UUIDs start with the time, so the ids of rows created together sit
/// together in their B-trees: a bulk import appends to the index instead of touching a random
/// page per row (1M rows: several times fewer page reads and writes). Ids are identifiers,
/// never secrets; what authorises is checked separately.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
fn parse<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unexpected value {s:?}")))
}
/// Emails identify people: compared trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub struct Store {
    engine: Engine,
}

/// Reads the change counter: the last sequence number of the change log, which triggers write
/// on every change to what a check reads. (The log is never pruned to empty.) Read through the
/// store's one-row `store_version` table: the probe also fails (and cached answers stop) when
/// the schema underneath a running server was broken, not only when the log was.
const VERSION_SQL: &str =
    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM change_log) FROM store_version WHERE id = 1";
const APP_COLS: &str =
    "id, company_id, name, issuer, unenrolled, default_state, audit_mode, created_at, account_names";
const ACCOUNT_COLS: &str =
    "a.id, a.app_id, a.account, a.person_id, p.email, a.state, a.unlocked_until, \
     a.created_at, a.updated_at, a.relock_after_use";
const PERSON_COLS: &str =
    "id, email, first_name, last_name, phone, time_zone, master_locked, created_at";

impl Store {
    /// Opens (and creates, and migrates) the store at `url`: `sqlite://FILE`, `sqlite::memory:`
    /// or `postgres://…`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with options (the PostgreSQL pool's size and connect timeout).
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let store = Self {
            engine: Engine::connect(url, options, VERSION_SQL).await?,
        };
        // What SQL cannot compute: the lookup keys of accounts that lack one (rows from before
        // account identity, or written by hand) and issuers normalised by older rules.
        store.repair_keys().await?;
        Ok(store)
    }

    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.engine.sqlite_path()
    }

    pub fn is_postgres(&self) -> bool {
        self.engine.is_postgres()
    }

    /// A number that grows with every committed change to what a check reads, by any process:
    /// the change log's last sequence number. On SQLite it is at hand without a read while the
    /// change signal has not moved; on PostgreSQL while the change listener is connected.
    pub async fn version(&self) -> Result<i64> {
        self.engine.change_counter(VERSION_SQL).await
    }

    /// [`Store::version`] when it is at hand without waiting (SQLite: the change signal;
    /// PostgreSQL: the change listener, while connected); `None` means: await
    /// [`Store::version`]. Lets the check path skip building a future, and on PostgreSQL a
    /// round trip. A write of this process is at hand as soon as it returns.
    pub fn version_at_hand(&self) -> Option<Result<i64>> {
        self.engine.change_counter_at_hand(VERSION_SQL)
    }

    /// How many times the change counter was read from the database for [`Store::version`] and
    /// [`Store::version_at_hand`], rather than found at hand (SQLite: the change signal moved or
    /// a second passed; PostgreSQL: the change listener was not trusted).
    pub fn position_reads(&self) -> u64 {
        self.engine.position_reads()
    }

    /// PostgreSQL: how many changes were acknowledged before every replica's change listener
    /// was seen to apply them (a listener slower than 200 ms, or PostgreSQL failing right after
    /// the commit). Until those listeners apply them, their replicas may answer from before.
    pub fn unconfirmed_writes(&self) -> u64 {
        self.engine.unconfirmed_writes()
    }

    /// PostgreSQL: how many writes read `change_listeners` after their commit to learn that
    /// every listener applied them, because the listeners' announcements did not say so within
    /// a few milliseconds (or this store has no listener).
    pub fn applied_reads(&self) -> u64 {
        self.engine.applied_reads()
    }

    /// PostgreSQL: how many change listeners of the database this store's listener knows of
    /// (its own included); 0 without one.
    pub fn listeners_known(&self) -> usize {
        self.engine.listener().map_or(0, |l| l.peers())
    }

    /// On PostgreSQL, whether the change listener is connected and trusted now (then
    /// [`Store::version_at_hand`] answers without a read); `None` on SQLite or without one.
    pub fn listening(&self) -> Option<bool> {
        self.engine.listener().map(|l| l.trusted())
    }

    /// Reads the change counter from the store itself, whatever is remembered: a health probe.
    pub async fn ping(&self) -> Result<i64> {
        engine::scalar(&self.engine.query(VERSION_SQL, vec![]).await?)
    }

    /// Writes a consistent copy of an SQLite store to the new file `dest` while it serves; its
    /// size in bytes. Refused for PostgreSQL (pg_dump backs it up) and in-memory stores.
    pub async fn backup_to(&self, dest: &std::path::Path) -> Result<u64> {
        self.engine.backup_to(dest).await
    }

    /// How long a request may wait on the store (default 2 s) before it is answered 503.
    pub fn timeout(&self) -> std::time::Duration {
        self.engine.timeout()
    }

    pub fn set_timeout(&self, d: std::time::Duration) {
        self.engine.set_timeout(d);
    }

    /// Whether the store can answer and take changes now: its file is still the one it was
    /// opened on (SQLite), it answers within the deadline, and no write failed in the last
    /// seconds; after an older failure, a write must succeed now (a no-op update of the change
    /// counter: the smallest write, so it may find room a larger one would not). The error says
    /// why not.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.engine.file_identity().map_err(NotReady::FileGone)?;
        self.ping().await.map_err(NotReady::Unreachable)?;
        if let Some((fault, age)) = self.engine.write_fault() {
            if age < WRITE_FAULT_FRESH {
                return Err(NotReady::NotWritable(StoreError::Unavailable(fault)));
            }
            self.engine
                .write("UPDATE store_version SET v = v WHERE id = 1", vec![])
                .await
                .map_err(NotReady::NotWritable)?;
        }
        Ok(())
    }

    /// The change log after sequence number `after` up to `until` (both positions as
    /// [`Store::version`] gives them), in order. `None` when rows after `after` were pruned
    /// already: the caller cannot know what changed and must forget everything.
    pub async fn changes(&self, after: i64, until: i64) -> Result<Option<Vec<Change>>> {
        let rows = self
            .engine
            .query(
                "SELECT seq, app_id, account_key, person_id FROM change_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                vec![after.into(), until.into()],
            )
            .await?;
        // Read after the rows: a prune between the two reads is seen, a prune before them too.
        let pruned = engine::scalar(
            &self
                .engine
                .query(
                    "SELECT pruned_through FROM store_version WHERE id = 1",
                    vec![],
                )
                .await?,
        )?;
        if pruned > after {
            return Ok(None);
        }
        engine::changes_of(&rows).map(Some)
    }

    /// The change log after `after` up to `until` without a read, when this process committed
    /// all of it itself (either engine). `None`: read it with [`Store::changes`].
    pub fn changes_at_hand(&self, after: i64, until: i64) -> Option<Vec<Change>> {
        if until <= after {
            return Some(Vec::new());
        }
        self.engine.changes_at_hand(after, until)
    }

    /// Deletes all but the last `keep` rows of the change log (at least one stays: the log's
    /// last sequence number is the change counter). Returns how many rows went.
    pub async fn prune_changes(&self, keep: i64) -> Result<u64> {
        let keep = keep.max(1);
        let out = self
            .engine
            .transaction(vec![
                (
                    "UPDATE store_version SET pruned_through = CASE \
                     WHEN (SELECT COALESCE(MAX(seq), 0) FROM change_log) - $1 > pruned_through \
                     THEN (SELECT COALESCE(MAX(seq), 0) FROM change_log) - $1 ELSE pruned_through END \
                     WHERE id = 1",
                    vec![keep.into()],
                ),
                (
                    "DELETE FROM change_log WHERE seq <= (SELECT pruned_through FROM store_version WHERE id = 1) RETURNING seq",
                    vec![],
                ),
            ])
            .await?;
        Ok(out.last().map_or(0, |rows| rows.len() as u64))
    }

    /// Runs a query and maps its first row, if any.
    pub(crate) async fn one<T>(
        &self,
        sql: &'static str,
        params: Vec<Val>,
        map: fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.engine
            .query(sql, params)
            .await?
            .first()
            .map(map)
            .transpose()
    }

    /// Runs a query and maps every row.
    pub(crate) async fn all<T>(
        &self,
        sql: &'static str,
        params: Vec<Val>,
        map: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.engine
            .query(sql, params)
            .await?
            .iter()
            .map(map)
            .collect()
    }
}

/// Fresh stores for tests: a new SQLite file or a new PostgreSQL database each. Behind the
/// `testing` feature, which only the test builds of the crates above turn on.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing {
    use super::{Store, StoreError};

    /// The admin URL of the test PostgreSQL cluster (`DEADBOLT_TEST_PG`), if any. When
    /// `DEADBOLT_REQUIRE_PG=1` (as `scripts/test` sets), its absence is a failure, not a skip.
    pub fn pg_admin_url() -> Option<String> {
        match std::env::var("DEADBOLT_TEST_PG") {
            Ok(u) if !u.is_empty() => Some(u),
            _ => {
                assert!(
                    std::env::var("DEADBOLT_REQUIRE_PG").as_deref() != Ok("1"),
                    "DEADBOLT_REQUIRE_PG=1 but DEADBOLT_TEST_PG is not set"
                );
                eprintln!(
                    "PostgreSQL tests skipped: DEADBOLT_TEST_PG is not set (scripts/test sets it)"
                );
                None
            }
        }
    }

    /// Creates a new, empty database on the test cluster and returns its URL.
    pub async fn fresh_pg_url(admin: &str) -> Result<String, StoreError> {
        let name = format!("deadbolt_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(format!("{base}/{name}"))
    }

    /// Ends every change listener connected to the database at `url`, as an operator's
    /// `pg_terminate_backend` would; how many there were.
    pub async fn end_change_listeners(url: &str) -> usize {
        #[allow(clippy::expect_used)]
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        #[allow(clippy::expect_used)]
        client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'deadbolt-listen' AND datname = current_database()",
                &[],
            )
            .await
            .expect("end the listeners")
            .len()
    }

    /// A fresh SQLite store in a new temporary directory (kept alive by the returned guard).
    pub async fn fresh_sqlite() -> (Store, tempfile::TempDir) {
        #[allow(clippy::expect_used)]
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
        #[allow(clippy::expect_used)]
        let store = Store::open(&url).await.expect("open SQLite store");
        (store, dir)
    }
}
