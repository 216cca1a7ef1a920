//! The two SQL engines behind one small interface. Queries are written once, in the subset of SQL
//! that SQLite and PostgreSQL share, with `$1`, `$2`, … placeholders numbered in order of first use
//! (SQLite binds `$N` by order of appearance, PostgreSQL by number: the same text works for both).

use crate::migrations::MIGRATIONS;
use crate::signal::ChangeSignal;
use crate::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

pub enum Engine {
    Sqlite(Sqlite),
    Postgres(deadpool_postgres::Pool),
}

impl Engine {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let config: tokio_postgres::Config = url
                .parse()
                .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
            let manager = deadpool_postgres::Manager::from_config(
                config,
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(16)
                .wait_timeout(Some(Duration::from_secs(5)))
                .create_timeout(Some(Duration::from_secs(5)))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))?;
            let engine = Engine::Postgres(pool);
            engine.migrate().await?;
            Ok(engine)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let target = match rest.trim_start_matches("//") {
                ":memory:" | "" if rest.contains(":memory:") => SqliteTarget::Memory,
                path if !path.is_empty() => SqliteTarget::File(PathBuf::from(path)),
                _ => return Err(StoreError::Config(format!("invalid SQLite URL {url:?}"))),
            };
            let engine = Engine::Sqlite(
                tokio::task::spawn_blocking(move || Sqlite::open(target))
                    .await
                    .map_err(join)??,
            );
            engine.migrate().await?;
            Ok(engine)
        } else {
            Err(StoreError::Config(format!(
                "unsupported store URL {url:?}: use sqlite://FILE, sqlite::memory: or postgres://…"
            )))
        }
    }

    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Engine::Sqlite(s) => s.path.as_deref(),
            Engine::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Engine::Postgres(_))
    }

    /// Runs a read-only query.
    pub async fn query(&self, sql: &'static str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        match self {
            Engine::Sqlite(s) => {
                let conn = s.reader();
                blocking(move || {
                    let conn = lock(&conn);
                    sqlite_query(&conn, sql, &params)
                })
                .await
            }
            Engine::Postgres(pool) => {
                let client = pool.get().await.map_err(pg_pool)?;
                pg_query(&client, sql, &params).await
            }
        }
    }

    /// The store's change counter (`store_version`). On SQLite it is read from the file only
    /// when the change signal moved (or once a second); otherwise it is remembered.
    pub async fn change_counter(&self, sql: &'static str) -> Result<i64, StoreError> {
        match self.change_counter_at_hand(sql) {
            Some(v) => v,
            None => scalar(&self.query(sql, vec![]).await?),
        }
    }

    /// The change counter when it can be had without waiting: on SQLite, from the change signal
    /// or the local file (a read of a few pages at most); `None` on PostgreSQL.
    pub fn change_counter_at_hand(&self, sql: &'static str) -> Option<Result<i64, StoreError>> {
        let Engine::Sqlite(s) = self else {
            return None;
        };
        let signal = s.signal.load();
        if let Some(v) = s.signal.remembered(signal) {
            return Some(Ok(v));
        }
        let v = sqlite_query(&lock(&s.probe), sql, &[]).and_then(|rows| scalar(&rows));
        if let Ok(v) = v {
            s.signal.remember(signal, v);
        }
        Some(v)
    }

    /// Inserts each run with `run_sql`, giving it the ids after the largest given so far, then
    /// runs the `after` statements; one transaction. Writers take turns (SQLite: the write lock;
    /// PostgreSQL: an advisory lock), so runs never share an id. On SQLite the commit is not
    /// fsync'd by itself (see [`Sqlite::bulk`]).
    pub async fn append_runs(&self, write: Arc<RunsWrite>) -> Result<(), StoreError> {
        match self {
            Engine::Sqlite(s) => {
                let conn = s.bulk.clone();
                blocking(move || {
                    let mut conn = lock(&conn);
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(sqlite_err)?;
                    let last: Option<i64> = tx
                        .query_row(write.last_id_sql, [], |r| r.get(0))
                        .map_err(sqlite_err)?;
                    let mut next = last.unwrap_or(0) + 1;
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
                    tx.commit().map_err(sqlite_err)
                })
                .await
            }
            Engine::Postgres(pool) => {
                let mut client = pool.get().await.map_err(pg_pool)?;
                let tx = client.transaction().await.map_err(pg_err)?;
                // Replicas writing at once take turns: each reads the largest id after the last
                // one committed.
                tx.execute("SELECT pg_advisory_xact_lock(7262736502)", &[])
                    .await
                    .map_err(pg_err)?;
                let last: Option<i64> = tx
                    .query_one(write.last_id_sql, &[])
                    .await
                    .map_err(pg_err)?
                    .get(0);
                let mut next = last.unwrap_or(0) + 1;
                let run = tx.prepare_cached(write.run_sql).await.map_err(pg_err)?;
                for r in &write.runs {
                    let head = [Val::Int(next + r.len - 1), Val::Int(next)];
                    tx.execute(&run, &pg_params(head.iter().chain(&r.params)))
                        .await
                        .map_err(pg_err)?;
                    next += r.len;
                }
                for (sql, rows) in &write.after {
                    let stmt = tx.prepare_cached(sql).await.map_err(pg_err)?;
                    for params in rows {
                        tx.execute(&stmt, &pg_params(params))
                            .await
                            .map_err(pg_err)?;
                    }
                }
                tx.commit().await.map_err(pg_err)
            }
        }
    }

    /// Runs a write, committed (and on SQLite, synced) before it returns.
    pub async fn write(&self, sql: &'static str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let mut out = self.transaction(vec![(sql, params)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Runs statements in one transaction; returns each statement's rows.
    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, StoreError> {
        match self {
            Engine::Sqlite(s) => {
                let conn = s.writer.clone();
                let signal = s.signal.clone();
                blocking(move || {
                    let mut conn = lock(&conn);
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(sqlite_err)?;
                    let mut out = Vec::with_capacity(stmts.len());
                    for (sql, params) in &stmts {
                        out.push(sqlite_query(&tx, sql, params)?);
                    }
                    tx.commit().map_err(sqlite_err)?;
                    signal.bump();
                    Ok(out)
                })
                .await
            }
            Engine::Postgres(pool) => {
                let mut client = pool.get().await.map_err(pg_pool)?;
                let tx = client.transaction().await.map_err(pg_err)?;
                let mut out = Vec::with_capacity(stmts.len());
                for (sql, params) in &stmts {
                    out.push(pg_query(&tx, sql, params).await?);
                }
                tx.commit().await.map_err(pg_err)?;
                Ok(out)
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Engine::Sqlite(s) => {
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
            Engine::Postgres(pool) => {
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
/// in WAL mode so readers never wait for the writer. Every commit is fsync'd (`synchronous=FULL`).
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
}

impl Sqlite {
    fn open(target: SqliteTarget) -> Result<Self, StoreError> {
        let configure = |c: &rusqlite::Connection| -> Result<(), StoreError> {
            c.busy_timeout(Duration::from_secs(5)).map_err(sqlite_err)?;
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
                })
            }
            SqliteTarget::File(path) => {
                let writer = rusqlite::Connection::open(&path).map_err(|e| {
                    StoreError::Config(format!("cannot open {}: {e}", path.display()))
                })?;
                configure(&writer)?;
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
                })
            }
        }
    }

    fn reader(&self) -> Arc<Mutex<rusqlite::Connection>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].clone()
    }
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
    use super::placeholders_in_order;

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
