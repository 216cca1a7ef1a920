//! The two SQL engines behind one small interface. Queries are written once, in the subset of SQL
//! that SQLite and PostgreSQL share, with `$1`, `$2`, … placeholders numbered in order of first use
//! (SQLite binds `$N` by order of appearance, PostgreSQL by number: the same text works for both).

use crate::listen::Listener;
use crate::migrations::MIGRATIONS;
use crate::recent::RecentChanges;
use crate::signal::ChangeSignal;
use crate::{Change, StoreError, StoreOptions};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::{IsNull, ToSql, Type};

/// A parameter or column value: the only types the schema uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(v as i64)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// Statements each run once per parameter row.
pub type BulkRows = Vec<(&'static str, Vec<Vec<Val>>)>;

/// One run for [`Engine::append_runs`]: how many ids it takes, and its own parameters.
pub struct Run {
    pub len: i64,
    pub params: Vec<Val>,
}

/// What [`Engine::append_runs`] writes.
pub struct RunsWrite {
    /// The largest id given so far (one row, one integer or NULL).
    pub last_id_sql: &'static str,
    /// Inserts one run; its parameters are its last id, its first id, then the run's own.
    pub run_sql: &'static str,
    pub runs: Vec<Run>,
    /// Statements run after the runs, in the same transaction.
    pub after: BulkRows,
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Val>);

impl Row {
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected an integer, got {other:?}"
            ))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Val::Text(v)) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    pub fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }
}

/// Change-log rows (`seq, app_id, account_key, person_id`) as changes.
pub fn changes_of(rows: &[Row]) -> Result<Vec<Change>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Change {
                seq: r.int(0)?,
                app_id: r.opt_text(1)?,
                account_key: r.opt_text(2)?,
                person_id: r.opt_text(3)?,
            })
        })
        .collect()
}

/// The integer in the first column of the first row (a count, a counter).
pub fn scalar(rows: &[Row]) -> Result<i64, StoreError> {
    rows.first()
        .ok_or(StoreError::Corrupt(
            "a one-row query returned no row".into(),
        ))?
        .int(0)
}

/// A statement and its parameters.
pub type Stmt = (&'static str, Vec<Val>);

/// An engine, and how long anything may wait on it.
pub struct Engine {
    kind: Kind,
    limits: Limits,
    /// PostgreSQL: the change listener that keeps the change log's position at hand.
    listener: Option<Listener>,
    /// Reads of the change counter from the database made for `change_counter` (the check
    /// path), as opposed to those it found at hand.
    position_reads: AtomicU64,
    /// The check path's reads of the change counter, shared by the checks that wait for one.
    shared_reads: SharedReads,
    /// PostgreSQL writes acknowledged before every change listener was seen to apply them.
    unconfirmed_writes: AtomicU64,
    /// What this process's own commits logged, for its check path to apply without a read.
    recent: Arc<RecentChanges>,
    /// PostgreSQL writes that read `change_listeners` to learn that every listener applied them
    /// (the announcements did not say so in time, or there is no listener here).
    applied_reads: AtomicU64,
}

enum Kind {
    Sqlite(Sqlite),
    Postgres(deadpool_postgres::Pool),
}

/// The store deadline, and the last write that failed for want of the store (disk full, a
/// read-only file system, the database file gone, PostgreSQL down): shown by `/readyz` until a
/// write succeeds again.
struct Limits {
    timeout_ms: AtomicU64,
    write_fault: Mutex<Option<(String, Instant)>>,
}

/// The change log's last position (SQLite: read under the write lock, and after a commit).
const COMMIT_POSITION_SQL: &str = "SELECT COALESCE(MAX(seq), 0) FROM change_log";
/// PostgreSQL, before the commit: the position as the transaction leaves it, the position it
/// found on taking the log's turn (NULL when it logged nothing; migration 0021), and the rows it
/// logged after that, one a row (none: NULLs).
const OWN_LOGGED_SQL: &str = "SELECT (SELECT COALESCE(MAX(seq), 0) FROM change_log), b.before, \
     c.seq, c.app_id, c.account_key, c.person_id \
     FROM (SELECT NULLIF(current_setting('deadbolt.before', true), '')::bigint AS before) b \
     LEFT JOIN change_log c ON c.seq > b.before ORDER BY c.seq";
/// The rows a transaction logged, read back before its commit.
const LOGGED_SINCE_SQL: &str =
    "SELECT seq, app_id, account_key, person_id FROM change_log WHERE seq > $1 ORDER BY seq";

/// The check path's shared reads of the change counter ([`Engine::change_counter`]).
#[derive(Default)]
struct SharedReads {
    state: Mutex<ReadState>,
    /// Woken when a read ends, answered or given up.
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct ReadState {
    /// Reads begun, and the number of the last one answered (reads run one at a time, in
    /// order).
    started: u64,
    finished: u64,
    in_flight: bool,
    /// The answer of read number `finished`.
    last: Option<Result<i64, StoreError>>,
}

impl SharedReads {
    fn state(&self) -> std::sync::MutexGuard<'_, ReadState> {
        // Nothing panics while holding it; a poisoned lock still holds consistent numbers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The read a check is making for the others: when dropped before its answer (the check's
/// request went away), the next waiter reads instead.
struct ReadGuard<'a> {
    reads: &'a SharedReads,
    n: Option<u64>,
}

impl ReadGuard<'_> {
    fn finish(&mut self, r: Result<i64, StoreError>) {
        if let Some(n) = self.n.take() {
            let mut st = self.reads.state();
            st.finished = n;
            st.last = Some(r);
            st.in_flight = false;
            drop(st);
            self.reads.done.notify_waiters();
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if self.n.take().is_some() {
            self.reads.state().in_flight = false;
            self.reads.done.notify_waiters();
        }
    }
}

/// How long anything may wait on the store unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The attempt writer is not answering anybody: it may wait longer than a request, so that a
/// write cut short by the deadline while the store was only slow is not written twice.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(30);

impl Engine {
    /// Opens the engine at `url`; `position_sql` reads the change counter (the PostgreSQL
    /// change listener reads it when it connects and at each ping).
    pub async fn connect(
        url: &str,
        options: &StoreOptions,
        position_sql: &'static str,
    ) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config: tokio_postgres::Config = url
                .parse()
                .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
            if options.pg_pool_size == 0 {
                return Err(StoreError::Config(
                    "the PostgreSQL pool needs at least one connection".into(),
                ));
            }
            // A server that accepts the connection and then says nothing (frozen, or a SYN
            // backlog in front of a dead one) must not hold a pool slot for ever. A
            // connect_timeout written in the URL wins.
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(options.pg_connect_timeout);
            }
            let connect_timeout = config
                .get_connect_timeout()
                .copied()
                .unwrap_or(options.pg_connect_timeout);
            let listen_config = config.clone();
            // A change acknowledged to a person must survive a crash of PostgreSQL too, whatever
            // the cluster's default: commits wait for the WAL flush. (Attempts, written in bulk,
            // opt out per transaction, as they do on SQLite.)
            let server_options = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c synchronous_commit=on"),
                _ => "-c synchronous_commit=on".to_string(),
            };
            config.options(&server_options);
            let manager = deadpool_postgres::Manager::from_config(
                config,
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(options.pg_pool_size)
                .wait_timeout(Some(Duration::from_secs(5)))
                .create_timeout(Some(connect_timeout))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))?;
            let mut engine = Engine::new(Kind::Postgres(pool));
            engine.migrate().await?;
            if options.listen {
                engine.listener = Some(Listener::start(
                    listen_config,
                    connect_timeout,
                    position_sql,
                ));
            }
            Ok(engine)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let target = match rest.trim_start_matches("//") {
                ":memory:" | "" if rest.contains(":memory:") => SqliteTarget::Memory,
                path if !path.is_empty() => SqliteTarget::File(PathBuf::from(path)),
                _ => return Err(StoreError::Config(format!("invalid SQLite URL {url:?}"))),
            };
            let engine = Engine::new(Kind::Sqlite(
                tokio::task::spawn_blocking(move || Sqlite::open(target))
                    .await
                    .map_err(join)??,
            ));
            engine.migrate().await?;
            if let Kind::Sqlite(s) = &engine.kind {
                s.after_migrations();
            }
            Ok(engine)
        } else {
            Err(StoreError::Config(format!(
                "unsupported store URL {url:?}: use sqlite://FILE, sqlite::memory: or postgres://…"
            )))
        }
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            limits: Limits {
                timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
                write_fault: Mutex::new(None),
            },
            listener: None,
            position_reads: AtomicU64::new(0),
            shared_reads: SharedReads::default(),
            unconfirmed_writes: AtomicU64::new(0),
            applied_reads: AtomicU64::new(0),
            recent: Arc::default(),
        }
    }

    /// How many PostgreSQL writes were acknowledged before every change listener connected to
    /// the database was seen to apply them (the wait's bound passed, or its read failed).
    pub fn unconfirmed_writes(&self) -> u64 {
        self.unconfirmed_writes.load(Ordering::Relaxed)
    }

    /// How many PostgreSQL writes read `change_listeners` after their commit.
    pub fn applied_reads(&self) -> u64 {
        self.applied_reads.load(Ordering::Relaxed)
    }

    /// The PostgreSQL change listener, when the store has one.
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// How many times `change_counter` read the counter from the database.
    pub fn position_reads(&self) -> u64 {
        self.position_reads.load(Ordering::Relaxed)
    }

    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Sqlite(s) => s.path.as_deref(),
            Kind::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres(_))
    }

    /// How long a request may wait on the store before it is told the store is unavailable.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.limits.timeout_ms.load(Ordering::Relaxed))
    }

    pub fn set_timeout(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        self.limits.timeout_ms.store(ms, Ordering::Relaxed);
        if let Kind::Sqlite(s) = &self.kind {
            s.set_busy_timeout(Duration::from_millis(ms));
        }
    }

    /// Why the last write failed and how long ago, while no write has succeeded since.
    pub fn write_fault(&self) -> Option<(String, Duration)> {
        lock_fault(&self.limits.write_fault)
            .as_ref()
            .map(|(m, at)| (m.clone(), at.elapsed()))
    }

    /// Whether the file the store was opened on is still the one at its path (SQLite), checked
    /// now; always fine on PostgreSQL.
    pub fn file_identity(&self) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Sqlite(s) => s.identity.check(),
            Kind::Postgres(_) => Ok(()),
        }
    }

    /// Remembers how a write ended, for `/readyz`, and says so in the log when it changes.
    fn note_write<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let mut fault = lock_fault(&self.limits.write_fault);
        match &r {
            Ok(_) if fault.is_some() => {
                tracing::info!("the store takes writes again");
                *fault = None;
            }
            Err(StoreError::Unavailable(m)) => {
                if fault.as_ref().map(|(f, _)| f) != Some(m) {
                    tracing::error!(error = %m, "a write to the store failed: changes are refused until it takes writes again");
                }
                *fault = Some((m.clone(), Instant::now()));
            }
            _ => {}
        }
        r
    }

    /// Runs `work`, or fails as unavailable when it takes longer than `limit`.
    async fn bounded<T>(
        limit: Duration,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                limit.as_millis()
            )))
        })
    }

    /// Runs `read` with one of SQLite's reader connections on a store thread, within `limit`.
    async fn sqlite_read<T: Send + 'static>(
        s: &Sqlite,
        limit: Duration,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        s.identity.check_now_and_then()?;
        let conn = s.reader();
        let until = Instant::now() + limit;
        Self::bounded(
            limit,
            blocking(move || {
                let conn = lock_until(&conn, until)?;
                read(&conn)
            }),
        )
        .await
    }

    /// Runs a read-only query.
    pub async fn query(&self, sql: &'static str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let limit = self.timeout();
        match &self.kind {
            Kind::Sqlite(s) => {
                Self::sqlite_read(s, limit, move |c| sqlite_query(c, sql, &params)).await
            }
            Kind::Postgres(pool) => {
                Self::bounded(limit, async {
                    let client = pool.get().await.map_err(pg_pool)?;
                    pg_query(&client, sql, &params).await
                })
                .await
            }
        }
    }

    /// Takes the SQLite writers' turn and keeps it until the guard is dropped (tests: a write
    /// in progress, without a slow disk).
    #[cfg(test)]
    pub(crate) async fn hold_write_turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        match &self.kind {
            Kind::Sqlite(s) => s.turn.clone().lock_owned().await,
            Kind::Postgres(_) => unreachable!("SQLite only"),
        }
    }

    /// Runs read-only queries in one trip to the store: on SQLite one hand-off to a store
    /// thread, on PostgreSQL one pipeline, instead of one each. A hand-off wakes a thread and
    /// costs a busy server far more than the read itself, so a request's reads of several
    /// tables go together. Each statement reads what is committed when it runs (no common
    /// snapshot): for reads that do not depend on one another.
    pub async fn queries(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, StoreError> {
        let limit = self.timeout() + Duration::from_millis(stmts.len() as u64);
        match &self.kind {
            Kind::Sqlite(s) => {
                Self::sqlite_read(s, limit, move |c| {
                    stmts
                        .iter()
                        .map(|(sql, params)| sqlite_query(c, sql, params))
                        .collect()
                })
                .await
            }
            Kind::Postgres(pool) => {
                Self::bounded(limit, async {
                    let client = pool.get().await.map_err(pg_pool)?;
                    pg_pipeline(&client, &stmts).await
                })
                .await
            }
        }
    }

    /// Writes a consistent copy of an SQLite store to `dest` (a new file, mode 0600) while it
    /// serves: one `VACUUM INTO`, a read transaction on a connection of its own (the server's
    /// readers and writer go on), then the copy is synced to disk. Not under the store deadline:
    /// a large store takes seconds. PostgreSQL stores are backed up with PostgreSQL's tools.
    pub async fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        let Kind::Sqlite(s) = &self.kind else {
            return Err(StoreError::Refused(
                "a PostgreSQL store is backed up with pg_dump (see the README), not by Deadbolt"
                    .into(),
            ));
        };
        let Some(source) = s.path.clone() else {
            return Err(StoreError::Refused(
                "an in-memory store has nothing to back up".into(),
            ));
        };
        let dest = dest.to_path_buf();
        blocking(move || {
            // VACUUM INTO takes an empty file: made here, private, so the copy never exists
            // readable by others even for a moment.
            if !create_private(&dest)? {
                return Err(StoreError::Refused(format!(
                    "{} exists: choose a new file for the backup",
                    dest.display()
                )));
            }
            let copy = || -> Result<u64, StoreError> {
                let conn = rusqlite::Connection::open_with_flags(
                    &source,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite_err)?;
                conn.busy_timeout(Duration::from_secs(30))
                    .map_err(sqlite_err)?;
                let target = dest
                    .to_str()
                    .ok_or_else(|| StoreError::Config("the backup path is not UTF-8".into()))?;
                conn.execute("VACUUM INTO ?1", [target])
                    .map_err(sqlite_err)?;
                let file = std::fs::File::open(&dest)
                    .map_err(|e| StoreError::Unavailable(format!("cannot open the backup: {e}")))?;
                file.sync_all()
                    .map_err(|e| StoreError::Unavailable(format!("cannot sync the backup: {e}")))?;
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
            };
            let out = copy();
            if out.is_err() {
                // Half a backup is no backup: nothing is left to be mistaken for one.
                let _ = std::fs::remove_file(&dest);
            }
            out
        })
        .await
    }

    /// The store's change counter (`store_version`). On SQLite it is read from the file only
    /// when the change signal moved (or once a second); on PostgreSQL only while the change
    /// listener is not trusted; otherwise it is remembered.
    ///
    /// When it is not at hand, every check waiting for it would otherwise make a read of its
    /// own: on PostgreSQL with the listener down, one a check, which saturates the pool and the
    /// database just when they are slow (13,500 reads in a 10 s bench run, p99 118 ms). So the
    /// reads are shared: a check takes the answer of the first read that *began after it
    /// asked* (one begun earlier may have missed a change acknowledged before the check), and
    /// at most one read runs at a time. The reads then follow one another as fast as the
    /// database answers, whatever the number of checks. `sql` is the same at every call (the
    /// store's one counter), so one shared read serves all.
    pub async fn change_counter(&self, sql: &'static str) -> Result<i64, StoreError> {
        if let Some(v) = self.change_counter_at_hand(sql) {
            return v;
        }
        let reads = &self.shared_reads;
        // A read in flight began before this check asked: the one after it is needed.
        let need = reads.state().started + 1;
        // Bounded as a whole: the read in flight and then the next, each under the deadline.
        let limit = self.timeout() * 2;
        let wait = async {
            loop {
                let notified = reads.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let mine = {
                    let mut st = reads.state();
                    if st.finished >= need {
                        if let Some(r) = &st.last {
                            return r.clone();
                        }
                    }
                    if st.in_flight {
                        None
                    } else {
                        st.in_flight = true;
                        st.started += 1;
                        Some(st.started)
                    }
                };
                let Some(n) = mine else {
                    notified.await;
                    continue;
                };
                // Whoever reads hands the answer to the others; a read given up half-way (the
                // check's request was dropped) lets another waiter read instead.
                let mut guard = ReadGuard { reads, n: Some(n) };
                self.position_reads.fetch_add(1, Ordering::Relaxed);
                let r = self.query(sql, vec![]).await.and_then(|rows| scalar(&rows));
                guard.finish(r.clone());
                return r;
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                limit.as_millis()
            )))
        })
    }

    /// See [`crate::Store::changes_at_hand`].
    pub fn changes_at_hand(&self, after: i64, until: i64) -> Option<Vec<Change>> {
        self.recent.between(after, until)
    }

    /// The change counter when it can be had without waiting: on SQLite, from the change signal
    /// or the local file (a read of a few pages at most); on PostgreSQL, from the change
    /// listener while it is connected and trusted. `None` otherwise, and when the SQLite probe
    /// connection is busy or fails (the caller then asks with the deadline).
    pub fn change_counter_at_hand(&self, sql: &'static str) -> Option<Result<i64, StoreError>> {
        let s = match &self.kind {
            Kind::Sqlite(s) => s,
            Kind::Postgres(_) => return self.listener.as_ref()?.at_hand().map(Ok),
        };
        if let Err(e) = s.identity.check_now_and_then() {
            return Some(Err(e));
        }
        let signal = s.signal.load();
        if let Some(v) = s.signal.remembered(signal) {
            return Some(Ok(v));
        }
        // Never wait on a runtime thread: another check holding the probe is reading the same
        // counter, and a probe that fails is retried below the deadline.
        let probe = s.probe.try_lock().ok()?;
        self.position_reads.fetch_add(1, Ordering::Relaxed);
        let v = sqlite_query(&probe, sql, &[])
            .and_then(|rows| scalar(&rows))
            .ok()?;
        s.signal.remember(signal, v);
        Some(Ok(v))
    }

    /// Inserts each run with `run_sql`, giving it the ids after the largest given so far, then
    /// runs the `after` statements; one transaction. Writers take turns (SQLite: the write lock;
    /// PostgreSQL: an advisory lock), so runs never share an id. On SQLite the commit is not
    /// fsync'd by itself (see [`Sqlite::bulk`]). Bounded by a longer deadline than requests:
    /// nobody waits on it, and a write cut short might still commit and then be written twice.
    /// Returns the first id given: the runs hold that id and the ones after it, in order.
    pub async fn append_runs(&self, write: Arc<RunsWrite>) -> Result<i64, StoreError> {
        let limit = BACKGROUND_TIMEOUT.max(self.timeout());
        let r = match &self.kind {
            Kind::Sqlite(s) => {
                s.identity.check()?;
                let conn = s.bulk.clone();
                let identity = s.identity.clone();
                let until = Instant::now() + limit;
                Self::bounded(
                    limit,
                    blocking(move || {
                        let mut conn = lock_until(&conn, until)?;
                        // Past the deadline the writer has been told it failed and will write
                        // the batch again: this try must not commit it too.
                        let commit_by = until;
                        let tx = conn
                            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                            .map_err(sqlite_err)?;
                        let last: Option<i64> = tx
                            .query_row(write.last_id_sql, [], |r| r.get(0))
                            .map_err(sqlite_err)?;
                        let first = last.unwrap_or(0) + 1;
                        let mut next = first;
                        let mut run = tx.prepare_cached(write.run_sql).map_err(sqlite_err)?;
                        for r in &write.runs {
                            let head = [Val::Int(next + r.len - 1), Val::Int(next)];
                            run.execute(rusqlite::params_from_iter(
                                head.iter().chain(r.params.iter()),
                            ))
                            .map_err(sqlite_err)?;
                            next += r.len;
                        }
                        drop(run);
                        for (sql, rows) in &write.after {
                            let mut stmt = tx.prepare_cached(sql).map_err(sqlite_err)?;
                            for params in rows {
                                stmt.execute(rusqlite::params_from_iter(params.iter()))
                                    .map_err(sqlite_err)?;
                            }
                        }
                        past(commit_by)?;
                        tx.commit().map_err(sqlite_err)?;
                        // Committed into a file nobody will open again is not recorded.
                        identity.check()?;
                        Ok(first)
                    }),
                )
                .await
            }
            Kind::Postgres(pool) => {
                Self::bounded(limit, async {
                    let mut client = pool.get().await.map_err(pg_pool)?;
                    let tx = client.transaction().await.map_err(pg_err)?;
                    // Replicas writing at once take turns: each reads the largest id after the
                    // last one committed.
                    tx.batch_execute(
                        "SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock(7262736502)",
                    )
                    .await
                    .map_err(pg_err)?;
                    let last: Option<i64> = tx
                        .query_one(write.last_id_sql, &[])
                        .await
                        .map_err(pg_err)?
                        .get(0);
                    let first = last.unwrap_or(0) + 1;
                    let mut next = first;
                    let heads: Vec<[Val; 2]> = write
                        .runs
                        .iter()
                        .map(|r| {
                            let head = [Val::Int(next + r.len - 1), Val::Int(next)];
                            next += r.len;
                            head
                        })
                        .collect();
                    // One pipeline: a batch holds a run for each application, and a statement a
                    // round trip woke the backend and this process for each.
                    let mut stmts: Vec<PgStmt> = write
                        .runs
                        .iter()
                        .zip(&heads)
                        .map(|(r, head)| (write.run_sql, pg_params(head.iter().chain(&r.params))))
                        .collect();
                    for (sql, rows) in &write.after {
                        stmts.extend(rows.iter().map(|p| (*sql, pg_params(p))));
                    }
                    pg_pipelined(&tx, &stmts).await?;
                    tx.commit().await.map_err(pg_err)?;
                    Ok(first)
                })
                .await
            }
        };
        self.note_write(r)
    }

    /// Runs a write, committed (and on SQLite, synced) before it returns.
    pub async fn write(&self, sql: &'static str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let mut out = self.transaction(vec![(sql, params)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Runs statements in one transaction; returns each statement's rows. `Ok` means committed
    /// to stable storage of the store this engine was opened on; anything short of that (the
    /// deadline passed, the SQLite file deleted or replaced meanwhile, the disk full) is an
    /// error. The deadline grows with the work (a millisecond a statement): a large import is
    /// slow, not stuck.
    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, StoreError> {
        self.read_modify_write(stmts, |rows| Ok((vec![], rows)))
            .await
    }

    /// Runs `first` in a transaction, hands its rows to `then`, runs the statements `then`
    /// returns in the same transaction and commits; returns what `then` made of the rows. For a
    /// change whose arithmetic is Rust's, not SQL's: what `first` read cannot change before the
    /// write (SQLite's writer is one, and takes the write lock first; on PostgreSQL `first` locks
    /// the rows it reads, with `FOR UPDATE` or an upsert). Committed as [`Engine::transaction`]
    /// says; `then` runs on a blocking thread (SQLite) and must not wait on anything.
    pub async fn read_modify_write<T: Send + 'static>(
        &self,
        first: Vec<Stmt>,
        then: impl FnOnce(Vec<Vec<Row>>) -> Result<(Vec<Stmt>, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_modify_write_sized(first, 0, then).await
    }

    /// [`Engine::read_modify_write`] for a `then` that may return up to `writes` statements:
    /// the deadline grows with them as with `first` (a millisecond a statement). The alert
    /// queue's transaction writes a few statements per account of a flood, thousands of them,
    /// and under a fixed 2 s it failed on a busy machine, to be done again a second later with
    /// more: never committed while the flood lasted.
    pub async fn read_modify_write_sized<T: Send + 'static>(
        &self,
        first: Vec<Stmt>,
        writes: usize,
        then: impl FnOnce(Vec<Vec<Row>>) -> Result<(Vec<Stmt>, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let limit = self.timeout() + Duration::from_millis((first.len() + writes) as u64);
        self.read_modify_write_within(first, limit, then).await
    }

    /// [`Engine::transaction`] for a background task that nobody waits on, and whose write cut
    /// short costs more than waiting: under the background deadline (as the attempt writer's),
    /// not the request's.
    pub async fn transaction_background(
        &self,
        stmts: Vec<Stmt>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let limit =
            BACKGROUND_TIMEOUT.max(self.timeout()) + Duration::from_millis(stmts.len() as u64);
        self.read_modify_write_within(stmts, limit, |rows| Ok((vec![], rows)))
            .await
    }

    async fn read_modify_write_within<T: Send + 'static>(
        &self,
        first: Vec<Stmt>,
        limit: Duration,
        then: impl FnOnce(Vec<Vec<Row>>) -> Result<(Vec<Stmt>, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let r = match &self.kind {
            Kind::Sqlite(s) => {
                let conn = s.writer.clone();
                let signal = s.signal.clone();
                let recent = self.recent.clone();
                let identity = s.identity.clone();
                let turn = s.turn.clone();
                let started = Instant::now();
                let wait_until = started + self.timeout();
                Self::bounded(limit, async move {
                    let turn = tokio::time::timeout_at(wait_until.into(), turn.lock_owned())
                        .await
                        .map_err(|_| {
                            StoreError::Unavailable(
                                "the store is busy: no turn to write within the deadline".into(),
                            )
                        })?;
                    blocking(move || {
                        // Held until the commit is done, even if the caller stopped waiting.
                        let _turn = turn;
                        identity.check()?;
                        let mut conn = lock_until(&conn, wait_until)?;
                        let tx = conn
                            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                            .map_err(sqlite_err)?;
                        // The write lock is held from here to the commit: every log row after
                        // this position is this transaction's.
                        let before = scalar(&sqlite_query(&tx, COMMIT_POSITION_SQL, &[])?)?;
                        let mut read = Vec::with_capacity(first.len());
                        for (sql, params) in &first {
                            read.push(sqlite_query(&tx, sql, params)?);
                        }
                        let (writes, out) = then(read)?;
                        for (sql, params) in &writes {
                            sqlite_query(&tx, sql, params)?;
                        }
                        let logged = sqlite_query(&tx, LOGGED_SINCE_SQL, &[Val::Int(before)])?;
                        // The caller was told "unavailable" at the deadline: then nothing is
                        // committed (dropping the transaction rolls it back).
                        past(started + limit)?;
                        tx.commit().map_err(sqlite_err)?;
                        // A write that logged nothing (a session, an alert's outbox, a throttle
                        // count) changed nothing a check reads: no process is woken for it.
                        if !logged.is_empty() {
                            recent.committed(before, changes_of(&logged)?);
                            signal.bump();
                            // The position as of the signal just given, for this process's
                            // checks to find at hand: read after the signal, so that it covers
                            // every commit signalled up to it (another program's too).
                            let at = signal.load();
                            if let Ok(v) = sqlite_query(&conn, COMMIT_POSITION_SQL, &[])
                                .and_then(|rows| scalar(&rows))
                            {
                                signal.remember(at, v);
                            }
                        }
                        // The path may have been pointed elsewhere while we wrote: then what was
                        // committed is in a file this store will never be opened on again.
                        identity.check()?;
                        Ok(out)
                    })
                    .await
                })
                .await
            }
            Kind::Postgres(pool) => {
                let recent = &self.recent;
                let r = Self::bounded(limit, async {
                    let mut client = pool.get().await.map_err(pg_pool)?;
                    let tx = client.transaction().await.map_err(pg_err)?;
                    let read = pg_pipeline(&tx, &first).await?;
                    let (mut writes, out) = then(read)?;
                    // The change log's position as this transaction leaves it: its own rows
                    // when it logged any (it holds the log's turn until it commits, so every
                    // smaller sequence number is committed before it), else the last committed;
                    // and the rows it logged, after the position it found on taking the turn.
                    // Read in the writes' pipeline, after them.
                    writes.push((OWN_LOGGED_SQL, vec![]));
                    let rows = pg_pipeline(&tx, &writes).await?.pop().unwrap_or_default();
                    let position = scalar(&rows)?;
                    let before = rows.first().map(|r| r.opt_int(1)).transpose()?.flatten();
                    let logged = rows
                        .iter()
                        .filter(|r| !matches!(r.0.get(2), Some(Val::Null)))
                        .map(|r| Row(r.0[2..].to_vec()))
                        .collect::<Vec<_>>();
                    // This process's check path applies its own rows without reading them
                    // back. Recorded before the commit, not after: the listener may hear the
                    // commit's notification before the commit's answer arrives here, and a
                    // check that learned the new position then would otherwise find the rows
                    // missing and read the log, holding the others' catch-up meanwhile (under
                    // changes, a third of them did). A check applies rows only up to a position
                    // it learned from a commit (the listener's, or this write's below), so
                    // rows of a transaction that does not commit are never applied: their
                    // sequence numbers are not given again, and leave a gap the log is read
                    // across.
                    if let Some(b) = before {
                        recent.committed(b, changes_of(&logged)?);
                    }
                    tx.commit().await.map_err(pg_err)?;
                    Ok((out, position))
                })
                .await;
                let (out, position) = self.note_write(r)?;
                // Committed. This process's checks see it at once; every replica's once their
                // listeners have applied it, which is waited for (bounded) before answering.
                // The listeners' announcements say so without a read, mostly; when they do not
                // in time, `change_listeners` is read.
                let announced = match &self.listener {
                    Some(listener) => {
                        listener.committed(position);
                        listener
                            .applied_by_all(position, crate::listen::ANNOUNCED_WAIT)
                            .await
                    }
                    None => false,
                };
                if !announced {
                    self.applied_reads.fetch_add(1, Ordering::Relaxed);
                    if !crate::listen::wait_until_applied(pool, position).await {
                        self.unconfirmed_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return Ok(out);
            }
        };
        self.note_write(r)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Sqlite(s) => {
                let conn = s.writer.clone();
                blocking(move || {
                    let mut conn = lock(&conn);
                    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).map_err(sqlite_err)?;
                    tx.execute_batch(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
                    )
                    .map_err(sqlite_err)?;
                    for m in MIGRATIONS {
                        let done: i64 = tx
                            .query_row("SELECT count(*) FROM schema_migrations WHERE version = ?1", [m.name], |r| r.get(0))
                            .map_err(sqlite_err)?;
                        if done == 0 {
                            tracing::info!(migration = m.name, "applying migration");
                            tx.execute_batch(m.sqlite).map_err(sqlite_err)?;
                            tx.execute(
                                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now') * 1000)",
                                [m.name],
                            )
                            .map_err(sqlite_err)?;
                        }
                    }
                    tx.commit().map_err(sqlite_err)
                })
                .await
            }
            Kind::Postgres(pool) => {
                let mut client = pool.get().await.map_err(pg_pool)?;
                let tx = client.transaction().await.map_err(pg_err)?;
                // Replicas starting together apply migrations one at a time.
                tx.batch_execute(
                    "SELECT pg_advisory_xact_lock(7262736501);
                     CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
                .await
                .map_err(pg_err)?;
                for m in MIGRATIONS {
                    let done = tx
                        .query_opt(
                            "SELECT 1 FROM schema_migrations WHERE version = $1",
                            &[&m.name],
                        )
                        .await
                        .map_err(pg_err)?;
                    if done.is_none() {
                        tracing::info!(migration = m.name, "applying migration");
                        tx.batch_execute(m.postgres).await.map_err(pg_err)?;
                        tx.execute(
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, (extract(epoch from now()) * 1000)::bigint)",
                            &[&m.name],
                        )
                        .await
                        .map_err(pg_err)?;
                    }
                }
                tx.commit().await.map_err(pg_err)
            }
        }
    }
}

enum SqliteTarget {
    Memory,
    File(PathBuf),
}

/// SQLite: one writer connection (SQLite has one writer at a time anyway) and a few readers,
/// in WAL mode so readers never wait for the writer.
///
/// Durability: the writer runs with `synchronous=FULL`. In WAL mode a commit is a write to the
/// WAL file; `NORMAL` would already survive `kill -9` of the server (the write has reached the
/// kernel), but not a power cut or a kernel crash before the next checkpoint. `FULL` fsyncs the
/// WAL at every commit, so a change acknowledged to a person survives both: what DESIGN.md
/// calls durable. Attempts use their own connection with `NORMAL` (see `bulk`).
pub struct Sqlite {
    path: Option<PathBuf>,
    writer: Arc<Mutex<rusqlite::Connection>>,
    readers: Vec<Arc<Mutex<rusqlite::Connection>>>,
    /// For tiny reads run on the caller's thread (the check path's change-counter probe).
    probe: Arc<Mutex<rusqlite::Connection>>,
    /// Tells every process using this file that something was committed.
    pub signal: Arc<ChangeSignal>,
    /// For bulk records (attempts): commits are written but not fsync'd one by one
    /// (`synchronous=NORMAL`): a crash of the process loses nothing, a power cut the last batches.
    bulk: Arc<Mutex<rusqlite::Connection>>,
    next: AtomicUsize,
    /// Writes through `writer` take turns here first, in the order they came, each waiting as
    /// a task rather than on a thread of its own: a burst of changes does not hold a store
    /// thread per change polling for the connection, and none is passed over until its
    /// deadline while later ones go first.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The file the connections have open, to notice when the path names another one.
    identity: Arc<FileIdentity>,
    /// Whether the database file was created by this process (its WAL and SHM then get its mode).
    created: bool,
}

impl Sqlite {
    fn open(target: SqliteTarget) -> Result<Self, StoreError> {
        let configure = |c: &rusqlite::Connection| -> Result<(), StoreError> {
            c.busy_timeout(DEFAULT_TIMEOUT).map_err(sqlite_err)?;
            // Every statement stays prepared: the writer alone runs more distinct ones than
            // rusqlite keeps by default (16), and a flood's loops would prepare them again.
            c.set_prepared_statement_cache_capacity(128);
            // A 64 MiB page cache per connection: imports and lookups over millions of accounts
            // otherwise spend their time re-reading B-tree pages. Statement journals (an upsert
            // in a transaction writes one) stay in memory instead of a temporary file.
            c.execute_batch(
                "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
            )
            .map_err(sqlite_err)
        };
        match target {
            SqliteTarget::Memory => {
                let c = rusqlite::Connection::open_in_memory().map_err(sqlite_err)?;
                configure(&c)?;
                let writer = Arc::new(Mutex::new(c));
                Ok(Self {
                    path: None,
                    readers: vec![writer.clone()],
                    probe: writer.clone(),
                    bulk: writer.clone(),
                    signal: Arc::new(ChangeSignal::local()),
                    writer,
                    next: AtomicUsize::new(0),
                    turn: Arc::new(tokio::sync::Mutex::new(())),
                    identity: Arc::new(FileIdentity::none()),
                    created: false,
                })
            }
            SqliteTarget::File(path) => {
                // Created here, owner-only, before SQLite sees it: SQLite would create it with
                // 0644 less the umask, and it holds emails, phones, IPs and password hashes.
                let created = create_private(&path)?;
                if !created {
                    warn_if_readable_by_others(&path);
                }
                let writer = rusqlite::Connection::open(&path).map_err(|e| {
                    StoreError::Config(format!("cannot open {}: {e}", path.display()))
                })?;
                configure(&writer)?;
                let identity = Arc::new(FileIdentity::of(&path)?);
                let mode: String = writer
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    .map_err(sqlite_err)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(mode, "SQLite did not switch to WAL mode");
                }
                let mut readers = Vec::new();
                for _ in 0..4 {
                    let r = rusqlite::Connection::open(&path).map_err(sqlite_err)?;
                    configure(&r)?;
                    // Readers sit behind the check cache and read a few pages a request. SQLite
                    // drops a connection's whole page cache when another connection committed,
                    // at a cost that grows with the cache: 4 MiB (the B-trees' upper pages of
                    // millions of accounts) keeps that small at hundreds of changes a second.
                    r.execute_batch("PRAGMA cache_size = -4096")
                        .map_err(sqlite_err)?;
                    readers.push(Arc::new(Mutex::new(r)));
                }
                let probe = rusqlite::Connection::open(&path).map_err(sqlite_err)?;
                configure(&probe)?;
                let bulk = rusqlite::Connection::open(&path).map_err(sqlite_err)?;
                configure(&bulk)?;
                bulk.execute_batch("PRAGMA synchronous = NORMAL")
                    .map_err(sqlite_err)?;
                let signal = Arc::new(ChangeSignal::open(&signal_path(&path))?);
                Ok(Self {
                    path: Some(path),
                    writer: Arc::new(Mutex::new(writer)),
                    readers,
                    probe: Arc::new(Mutex::new(probe)),
                    bulk: Arc::new(Mutex::new(bulk)),
                    signal,
                    next: AtomicUsize::new(0),
                    turn: Arc::new(tokio::sync::Mutex::new(())),
                    identity,
                    created,
                })
            }
        }
    }

    /// SQLite gives the WAL and SHM files the database file's mode; should an older file have
    /// left them wider, a database created here makes them owner-only too. Of an existing
    /// database, wider files are only warned about (the operator may share them on purpose).
    fn after_migrations(&self) {
        let Some(path) = &self.path else { return };
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if !p.exists() {
                continue;
            }
            if self.created {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if let Err(e) =
                        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    {
                        tracing::warn!(path = %p.display(), error = %e, "cannot make the file owner-only");
                    }
                }
            } else {
                warn_if_readable_by_others(&p);
            }
        }
    }

    fn set_busy_timeout(&self, d: Duration) {
        let mut all = vec![&self.writer, &self.probe, &self.bulk];
        all.extend(self.readers.iter());
        for c in all {
            if let Err(e) = lock(c).busy_timeout(d) {
                tracing::warn!(error = %e, "cannot set SQLite's busy timeout");
            }
        }
    }

    fn reader(&self) -> Arc<Mutex<rusqlite::Connection>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].clone()
    }
}

/// Creates `path` with mode 0600 when it does not exist; whether it did not.
fn create_private(path: &Path) -> Result<bool, StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Warns when a file holding personal data can be read by others than its owner.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "this file holds personal data and is readable by group or others: chmod 600 it"
                );
            }
        }
    }
}

/// The identity (device and inode) of the SQLite file a store opened. A file deleted or
/// replaced underneath a running server keeps being written through the open connections, into
/// a file no one will open again: such writes must not be acknowledged.
struct FileIdentity {
    /// `None` for an in-memory store.
    file: Option<(PathBuf, u64, u64)>,
    /// Milliseconds after `base` of the last check, and whether it failed: reads check at most
    /// every few hundred milliseconds (a stat per check would be wasted work).
    checked_ms: AtomicU64,
    failed: std::sync::atomic::AtomicBool,
    base: Instant,
}

/// How often reads re-check the database file's identity.
const IDENTITY_EVERY: Duration = Duration::from_millis(200);

impl FileIdentity {
    fn none() -> Self {
        Self {
            file: None,
            checked_ms: AtomicU64::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
            base: Instant::now(),
        }
    }

    fn of(path: &Path) -> Result<Self, StoreError> {
        let (dev, ino) = dev_ino(path)
            .map_err(|e| StoreError::Config(format!("cannot read {}: {e}", path.display())))?;
        Ok(Self {
            file: Some((path.to_path_buf(), dev, ino)),
            ..Self::none()
        })
    }

    /// Checks now.
    fn check(&self) -> Result<(), StoreError> {
        let Some((path, dev, ino)) = &self.file else {
            return Ok(());
        };
        let r = match dev_ino(path) {
            Ok(now) if now == (*dev, *ino) => Ok(()),
            Ok(_) => Err(StoreError::Unavailable(format!(
                "the database file {} was replaced while the server was running: restart it on the file you mean",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Unavailable(format!(
                    "the database file {} was deleted while the server was running",
                    path.display()
                )))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot check the database file {}: {e}",
                path.display()
            ))),
        };
        let was = self.failed.swap(r.is_err(), Ordering::Relaxed);
        match &r {
            Err(e) if !was => tracing::error!(error = %e, "the store's database file is gone"),
            Ok(()) if was => tracing::info!("the store's database file is back"),
            _ => {}
        }
        self.checked_ms.store(self.elapsed_ms(), Ordering::Relaxed);
        r
    }

    /// Checks when the last check is older than [`IDENTITY_EVERY`]; else repeats its outcome.
    fn check_now_and_then(&self) -> Result<(), StoreError> {
        if self.file.is_none() {
            return Ok(());
        }
        let last = self.checked_ms.load(Ordering::Relaxed);
        if self.elapsed_ms().saturating_sub(last) >= IDENTITY_EVERY.as_millis() as u64 {
            return self.check();
        }
        if self.failed.load(Ordering::Relaxed) {
            return self.check();
        }
        Ok(())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(unix)]
fn dev_ino(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dev_ino(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// The change-signal file of the store at `db`: `deadbolt.db` → `deadbolt.db-signal`.
fn signal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-signal");
    PathBuf::from(p)
}

fn lock(m: &Mutex<rusqlite::Connection>) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    // A panic while holding the connection leaves no half-done transaction (rusqlite rolls back
    // on drop), so the connection is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the connection, or gives up at `until`: a store stuck in one call (a frozen disk) does
/// not collect a thread per request waiting behind it.
fn lock_until(
    m: &Mutex<rusqlite::Connection>,
    until: Instant,
) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, StoreError> {
    let mut pause = Duration::from_micros(50);
    loop {
        match m.try_lock() {
            Ok(g) => return Ok(g),
            Err(std::sync::TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if Instant::now() >= until {
            return Err(StoreError::Unavailable(
                "the store is busy: no connection within the deadline".into(),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// An error once `deadline` has passed.
fn past(deadline: Instant) -> Result<(), StoreError> {
    if Instant::now() >= deadline {
        return Err(StoreError::Unavailable(
            "the store deadline passed before the commit".into(),
        ));
    }
    Ok(())
}

fn lock_fault(
    m: &Mutex<Option<(String, Instant)>>,
) -> std::sync::MutexGuard<'_, Option<(String, Instant)>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(join)?
}

fn join(e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("store task failed: {e}"))
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Int(v) => ToSqlOutput::from(*v),
            Val::Text(v) => ToSqlOutput::from(v.as_str()),
            Val::Null => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

/// Whether `$N` placeholders first appear in the order 1, 2, 3, … — the order SQLite binds them in.
fn placeholders_in_order(sql: &str) -> bool {
    let mut seen: Vec<u32> = Vec::new();
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if let Ok(n) = sql[start..j].parse::<u32>() {
                if !seen.contains(&n) {
                    if n as usize != seen.len() + 1 {
                        return false;
                    }
                    seen.push(n);
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    true
}

fn sqlite_query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Val],
) -> Result<Vec<Row>, StoreError> {
    debug_assert!(
        placeholders_in_order(sql),
        "placeholders out of order in: {sql}"
    );
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err)?;
    let n = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(sqlite_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sqlite_err)? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(match r.get_ref(i).map_err(sqlite_err)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Real(v) => Val::Int(v as i64),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Val::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Text(v) => v.to_sql(ty, out),
            Val::Null => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

/// Parameters as tokio-postgres takes them.
fn pg_params<'a>(vals: impl IntoIterator<Item = &'a Val>) -> Vec<&'a (dyn ToSql + Sync)> {
    vals.into_iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

async fn pg_query<C: deadpool_postgres::GenericClient>(
    client: &C,
    sql: &str,
    params: &[Val],
) -> Result<Vec<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    let rows = client
        .query(&stmt, &pg_params(params))
        .await
        .map_err(pg_err)?;
    pg_rows(rows)
}

/// Runs the statements pipelined: sent one after the other without waiting for each answer,
/// and run by PostgreSQL in that order (an error stops the rest; the caller's transaction is
/// then rolled back). Their rows, in order. One round trip where each statement was one, and
/// one wake-up of the backend and of this task instead of one each.
async fn pg_pipeline<C: deadpool_postgres::GenericClient>(
    client: &C,
    stmts: &[Stmt],
) -> Result<Vec<Vec<Row>>, StoreError> {
    let stmts: Vec<PgStmt> = stmts.iter().map(|(sql, p)| (*sql, pg_params(p))).collect();
    pg_pipelined(client, &stmts).await
}

/// A statement and its parameters as PostgreSQL takes them (borrowed, not copied).
type PgStmt<'a> = (&'a str, Vec<&'a (dyn ToSql + Sync)>);

/// [`pg_pipeline`] for parameters already borrowed.
async fn pg_pipelined<C: deadpool_postgres::GenericClient>(
    client: &C,
    stmts: &[PgStmt<'_>],
) -> Result<Vec<Vec<Row>>, StoreError> {
    let mut prepared = Vec::with_capacity(stmts.len());
    for (sql, _) in stmts {
        prepared.push(client.prepare_cached(sql).await.map_err(pg_err)?);
    }
    let answers = futures_util::future::try_join_all(
        prepared
            .iter()
            .zip(stmts)
            .map(|(s, (_, p))| client.query(s, p)),
    )
    .await
    .map_err(pg_err)?;
    answers.into_iter().map(pg_rows).collect()
}

fn pg_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut vals = Vec::with_capacity(r.len());
        for (i, col) in r.columns().iter().enumerate() {
            let v = match *col.type_() {
                Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int)),
                Type::INT4 => r
                    .try_get::<_, Option<i32>>(i)
                    .map(|v| v.map(|v| Val::Int(v.into()))),
                Type::INT2 => r
                    .try_get::<_, Option<i16>>(i)
                    .map(|v| v.map(|v| Val::Int(v.into()))),
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)
                    .map(|v| v.map(|v| Val::Int(v.into()))),
                _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Val::Text)),
            }
            .map_err(pg_err)?;
            vals.push(v.unwrap_or(Val::Null));
        }
        out.push(Row(vals));
    }
    Ok(out)
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    // Both integrity violations map as on SQLite (a constraint failure): callers turn a
    // foreign-key failure into "not found" and a unique one into "already exists".
    use tokio_postgres::error::SqlState;
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        || e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
    {
        StoreError::Conflict(e.to_string())
    } else if e.code() == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) {
        // PostgreSQL text cannot hold NUL, which SQLite stores: bad input, not a store failure.
        StoreError::Config("text must not contain NUL characters".into())
    } else if let Some(db) = e.as_db_error() {
        StoreError::Unavailable(format!("PostgreSQL: {}", db.message()))
    } else {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    }
}

fn pg_pool(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL pool: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{placeholders_in_order, Kind};

    /// Only a write that logged a change wakes the checks of every process: the change signal
    /// moves for it and for nothing else.
    #[tokio::test]
    async fn only_a_logged_change_moves_the_signal() {
        let (store, _dir) = crate::testing::fresh_sqlite().await;
        let Kind::Sqlite(s) = &store.engine.kind else {
            unreachable!("a fresh SQLite store")
        };
        let before = s.signal.load();
        store
            .create_company("co", crate::test_support::t0())
            .await
            .unwrap();
        assert_eq!(s.signal.load(), before, "a company changes no check");
        store
            .engine
            .write("UPDATE store_version SET v = v WHERE id = 1", vec![])
            .await
            .unwrap();
        assert_eq!(s.signal.load(), before, "a no-op write neither");
        store
            .engine
            .write("INSERT INTO change_log (app_id) VALUES ('app-1')", vec![])
            .await
            .unwrap();
        assert_eq!(s.signal.load(), before + 1, "a logged change moves it");
    }

    #[test]
    fn placeholder_order_check() {
        assert!(placeholders_in_order(
            "SELECT a FROM t WHERE x = $1 AND y = $2 OR z = $1"
        ));
        assert!(!placeholders_in_order(
            "SELECT a FROM t WHERE y = $2 AND x = $1"
        ));
        assert!(placeholders_in_order("CREATE FUNCTION f() AS $$ x $$"));
    }
}
