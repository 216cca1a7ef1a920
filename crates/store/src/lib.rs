//! Deadbolt's storage: every SQL statement lives here. One `Store` over two engines, SQLite (the
//! embedded default) and PostgreSQL (several replicas), sharing the same SQL text.
//!
//! Unlike a `Store` trait with one implementation per engine, the queries are written once in the
//! SQL both engines speak; a trait would have a single implementor. Tests run the same suite on
//! both engines, and failures are produced by breaking a real store, not by a mock.

mod attempts;
mod engine;
mod listen;
pub mod migrations;
mod model;
#[cfg(test)]
#[macro_use]
mod test_support;
// After test_support: its macros are in scope for the modules below.
mod accounts;
#[cfg(test)]
mod changes_tests;
#[cfg(test)]
mod pg_tests;
mod portal;
mod signal;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use deadbolt_core::{AccountKey, AccountState, Enrolment, PersonLocks, Schedule};
use engine::{Engine, Row, Stmt, Val};
use thiserror::Error;

pub use accounts::Collision;
pub use attempts::AttemptBatch;
pub use engine::{warn_if_readable_by_others, DEFAULT_TIMEOUT};
pub use model::*;

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

macro_rules! sql {
    ($($part:expr),+ $(,)?) => { const_format::concatcp!($($part),+) };
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

    /// On PostgreSQL, whether the change listener is connected and trusted now (then
    /// [`Store::version_at_hand`] answers without a read); `None` on SQLite or without one.
    pub fn listening(&self) -> Option<bool> {
        self.engine.listener().map(|l| l.trusted())
    }

    /// Reads the change counter from the store itself, whatever is remembered: a health probe.
    pub async fn ping(&self) -> Result<i64> {
        engine::scalar(&self.engine.query(VERSION_SQL, vec![]).await?)
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
        rows.iter()
            .map(|r| {
                Ok(Change {
                    seq: r.int(0)?,
                    app_id: r.opt_text(1)?,
                    account_key: r.opt_text(2)?,
                    person_id: r.opt_text(3)?,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
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

    // ---- companies ----

    pub async fn create_company(&self, name: &str, now: DateTime<Utc>) -> Result<Company> {
        let id = new_id();
        self.engine
            .write(
                "INSERT INTO companies (id, name, created_at) VALUES ($1, $2, $3)",
                vec![(&id).into(), name.into(), ms(now)],
            )
            .await?;
        Ok(Company {
            id,
            name: name.to_string(),
            created_at: now,
        })
    }

    pub async fn company(&self, id: &str) -> Result<Option<Company>> {
        self.one(
            "SELECT id, name, created_at FROM companies WHERE id = $1",
            vec![id.into()],
            company,
        )
        .await
    }

    pub async fn companies(&self) -> Result<Vec<Company>> {
        self.all(
            "SELECT id, name, created_at FROM companies ORDER BY created_at, id",
            vec![],
            company,
        )
        .await
    }

    // ---- applications ----

    pub async fn create_application(
        &self,
        new: &NewApplication,
        now: DateTime<Utc>,
    ) -> Result<Application> {
        let id = new_id();
        let issuer_norm = deadbolt_core::normalize::normalize_name(&new.issuer);
        self.engine
            .write(
                "INSERT INTO applications (id, company_id, name, issuer, issuer_norm, unenrolled, default_state, audit_mode, created_at, account_names) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
                vec![
                    (&id).into(),
                    (&new.company_id).into(),
                    (&new.name).into(),
                    (&new.issuer).into(),
                    issuer_norm.into(),
                    new.unenrolled.as_str().into(),
                    new.default_state.as_str().into(),
                    ms(now),
                    new.account_names.as_str().into(),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("an application with issuer {:?}", new.issuer)),
                e => e,
            })?;
        self.application(&id)
            .await?
            .ok_or(StoreError::NotFound("application"))
    }

    pub async fn application(&self, id: &str) -> Result<Option<Application>> {
        self.one(
            sql!("SELECT ", APP_COLS, " FROM applications WHERE id = $1"),
            vec![id.into()],
            application,
        )
        .await
    }

    /// The application whose normalised issuer is `issuer_norm`.
    pub async fn application_by_issuer(&self, issuer_norm: &str) -> Result<Option<Application>> {
        self.one(
            sql!(
                "SELECT ",
                APP_COLS,
                " FROM applications WHERE issuer_norm = $1"
            ),
            vec![issuer_norm.into()],
            application,
        )
        .await
    }

    pub async fn applications(&self, company_id: Option<&str>) -> Result<Vec<Application>> {
        let rows = match company_id {
            Some(c) => {
                self.engine
                    .query(
                        sql!(
                            "SELECT ",
                            APP_COLS,
                            " FROM applications WHERE company_id = $1 ORDER BY created_at, id"
                        ),
                        vec![c.into()],
                    )
                    .await?
            }
            None => {
                self.engine
                    .query(
                        sql!(
                            "SELECT ",
                            APP_COLS,
                            " FROM applications ORDER BY created_at, id"
                        ),
                        vec![],
                    )
                    .await?
            }
        };
        rows.iter().map(application).collect()
    }

    pub async fn update_application(
        &self,
        id: &str,
        settings: &AppSettings,
    ) -> Result<Application> {
        let rows = self
            .engine
            .write(
                "UPDATE applications SET unenrolled = $1, default_state = $2, audit_mode = $3 WHERE id = $4 RETURNING id",
                vec![
                    settings.unenrolled.as_str().into(),
                    settings.default_state.as_str().into(),
                    settings.audit_mode.into(),
                    id.into(),
                ],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("application"));
        }
        self.application(id)
            .await?
            .ok_or(StoreError::NotFound("application"))
    }

    // ---- signing keys ----

    /// Stores a signing key; `secret_enc` is the secret already encrypted by the caller, bound to `id`.
    pub async fn create_signing_key(
        &self,
        id: &str,
        app_id: &str,
        secret_enc: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO signing_keys (id, app_id, secret_enc, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)",
                vec![id.into(), app_id.into(), secret_enc.into(), ms(now)],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("application"),
                e => e,
            })?;
        Ok(())
    }

    /// Every key of the application, newest first, with when each last verified a check.
    pub async fn signing_keys(&self, app_id: &str) -> Result<Vec<SigningKeyRecord>> {
        let rows = self
            .engine
            .query(
                "SELECT k.id, k.app_id, k.secret_enc, k.created_at, k.revoked_at, \
                 (SELECT u.last_used_at FROM key_usage u WHERE u.key_id = k.id) \
                 FROM signing_keys k WHERE k.app_id = $1 ORDER BY k.created_at DESC, k.id",
                vec![app_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    id: r.text(0)?,
                    app_id: r.text(1)?,
                    secret_enc: r.text(2)?,
                    created_at: time(r.int(3)?)?,
                    revoked_at: opt_time(r.opt_int(4)?)?,
                    last_used_at: opt_time(r.opt_int(5)?)?,
                })
            })
            .collect()
    }

    /// The keys that verify checks: not revoked.
    pub async fn active_signing_keys(&self, app_id: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .engine
            .query(
                "SELECT id, secret_enc FROM signing_keys WHERE app_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id",
                vec![app_id.into()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// Revokes a key; returns its application. Revoking twice is not an error.
    pub async fn revoke_signing_key(&self, key_id: &str, now: DateTime<Utc>) -> Result<String> {
        let rows = self
            .engine
            .write(
                "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING app_id",
                vec![ms(now), key_id.into()],
            )
            .await?;
        rows.first()
            .ok_or(StoreError::NotFound("signing key"))?
            .text(0)
    }

    // ---- SDK keys ----

    pub async fn create_sdk_key(
        &self,
        company_id: &str,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let id = new_id();
        self.engine
            .write(
                "INSERT INTO sdk_keys (id, company_id, secret_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)",
                vec![(&id).into(), company_id.into(), secret_hash.into(), ms(now)],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("company"),
                e => e,
            })?;
        Ok(id)
    }

    pub async fn sdk_key(&self, id: &str) -> Result<Option<SdkKeyRecord>> {
        self.one("SELECT id, company_id, secret_hash, created_at, revoked_at FROM sdk_keys WHERE id = $1", vec![id.into()], sdk_key).await
    }

    pub async fn sdk_keys(&self, company_id: &str) -> Result<Vec<SdkKeyRecord>> {
        self.all("SELECT id, company_id, secret_hash, created_at, revoked_at FROM sdk_keys WHERE company_id = $1 ORDER BY created_at DESC, id",
                vec![company_id.into()], sdk_key).await
    }

    pub async fn revoke_sdk_key(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        let rows = self
            .engine
            .write(
                "UPDATE sdk_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING id",
                vec![ms(now), id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("SDK key"));
        }
        Ok(())
    }

    // ---- persons ----

    pub async fn create_person(&self, new: &NewPerson, now: DateTime<Utc>) -> Result<Person> {
        let id = new_id();
        let email = normalize_email(&new.email);
        self.engine
            .write(
                "INSERT INTO persons (id, email, password_hash, first_name, last_name, phone, time_zone, master_locked, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
                vec![
                    (&id).into(),
                    (&email).into(),
                    new.password_hash.as_deref().into(),
                    new.first_name.as_deref().into(),
                    new.last_name.as_deref().into(),
                    new.phone.as_deref().into(),
                    new.time_zone.name().into(),
                    ms(now),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a person with email {email}")),
                e => e,
            })?;
        self.person_by_email(&email)
            .await?
            .ok_or(StoreError::NotFound("person"))
    }

    pub async fn person_by_email(&self, email: &str) -> Result<Option<Person>> {
        self.one(
            sql!("SELECT ", PERSON_COLS, " FROM persons WHERE email = $1"),
            vec![normalize_email(email).into()],
            person,
        )
        .await
    }

    pub async fn person(&self, id: &str) -> Result<Option<Person>> {
        self.one(
            sql!("SELECT ", PERSON_COLS, " FROM persons WHERE id = $1"),
            vec![id.into()],
            person,
        )
        .await
    }

    pub async fn persons(&self, limit: i64) -> Result<Vec<Person>> {
        self.all(
            sql!(
                "SELECT ",
                PERSON_COLS,
                " FROM persons ORDER BY email LIMIT $1"
            ),
            vec![limit.into()],
            person,
        )
        .await
    }

    pub async fn password_hash(&self, email: &str) -> Result<Option<(String, Option<String>)>> {
        let rows = self
            .engine
            .query(
                "SELECT id, password_hash FROM persons WHERE email = $1",
                vec![normalize_email(email).into()],
            )
            .await?;
        rows.first()
            .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
            .transpose()
    }

    /// Turns the master lock ("lock everything") on or off.
    pub async fn set_master_lock(&self, person_id: &str, on: bool) -> Result<()> {
        let rows = self
            .engine
            .write(
                "UPDATE persons SET master_locked = $1 WHERE id = $2 RETURNING id",
                vec![on.into(), person_id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("person"));
        }
        Ok(())
    }

    // ---- accounts ----

    /// Enrols `account` in the application (in the application's default state); linking it to
    /// `person_id` when given and the account has no person yet. A name that is another
    /// spelling of an enrolled one (by the application's `account_names`) is that account, kept
    /// under the name it was first enrolled with. Returns the account and whether it is new.
    pub async fn enroll(
        &self,
        app_id: &str,
        account: &str,
        person_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Account, bool)> {
        let app = self
            .application(app_id)
            .await?
            .ok_or(StoreError::NotFound("application"))?;
        let key = app.account_names.key(account);
        let out = self
            .engine
            .transaction(vec![
                (
                    "INSERT INTO accounts (id, app_id, account, account_key, key_dup, person_id, state, unlocked_until, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, $7, $7) ON CONFLICT DO NOTHING RETURNING id",
                    vec![new_id().into(), app_id.into(), account.into(), key.as_str().into(), person_id.into(), app.default_state.as_str().into(), ms(now)],
                ),
                (
                    "UPDATE accounts SET person_id = COALESCE($1, person_id), updated_at = $2 WHERE app_id = $3 AND account_key = $4 AND person_id IS NULL",
                    vec![person_id.into(), ms(now), app_id.into(), key.as_str().into()],
                ),
            ])
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("person"),
                e => e,
            })?;
        let created = out.first().is_some_and(|rows| !rows.is_empty());
        let acc = self
            .account(app_id, &key)
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        Ok((acc, created))
    }

    /// The account found by `key` (of the application's `account_names`). Of names that fold
    /// together and are not merged yet, the one enrolled first.
    pub async fn account(&self, app_id: &str, key: &AccountKey) -> Result<Option<Account>> {
        self.one(
            sql!(
                "SELECT ",
                ACCOUNT_COLS,
                " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id \
                       WHERE a.app_id = $1 AND a.account_key = $2 ORDER BY a.key_dup LIMIT 1"
            ),
            vec![app_id.into(), key.as_str().into()],
            account_row,
        )
        .await
    }

    pub async fn accounts(
        &self,
        app_id: &str,
        search: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Account>> {
        let like = |s: &str| {
            format!(
                "%{}%",
                s.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        };
        let search = search.unwrap_or("");
        let pattern = like(search);
        // Names and emails also match in any case: the folded name against the folded search.
        let folded = like(
            deadbolt_core::AccountNames::CaseInsensitive
                .key(search)
                .as_str(),
        );
        self.all(sql!(
                    "SELECT ", ACCOUNT_COLS,
                    " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.app_id = $1 \
                     AND (a.account LIKE $2 ESCAPE '\\' OR a.account_key LIKE $3 ESCAPE '\\' OR p.email LIKE $3 ESCAPE '\\') \
                     ORDER BY a.account LIMIT $4"
                ),
                vec![app_id.into(), pattern.into(), folded.into(), limit.into()], account_row).await
    }

    /// Every account of a person, across applications.
    pub async fn person_accounts(&self, person_id: &str) -> Result<Vec<Account>> {
        self.all(sql!("SELECT ", ACCOUNT_COLS, " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.person_id = $1 ORDER BY a.app_id, a.account"),
                vec![person_id.into()], account_row).await
    }

    /// Sets an account's own state and unlock window, durably. `None` when the account is not enrolled.
    pub async fn set_account_state(
        &self,
        app_id: &str,
        key: &AccountKey,
        state: AccountState,
        unlocked_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<()>> {
        let rows = self
            .engine
            .write(
                "UPDATE accounts SET state = $1, unlocked_until = $2, updated_at = $3, relock_after_use = 0 \
                 WHERE app_id = $4 AND account_key = $5 RETURNING id",
                vec![state.as_str().into(), unlocked_until.map(|t| t.timestamp_millis()).into(), ms(now), app_id.into(), key.as_str().into()],
            )
            .await?;
        Ok((!rows.is_empty()).then_some(()))
    }

    /// Unlocks an account for one sign-in: unlocked now, locked again by the check that uses it.
    pub async fn unlock_once(
        &self,
        app_id: &str,
        key: &AccountKey,
        now: DateTime<Utc>,
    ) -> Result<Option<()>> {
        let rows = self
            .engine
            .write(
                "UPDATE accounts SET state = 'unlocked', unlocked_until = NULL, relock_after_use = 1, updated_at = $1 \
                 WHERE app_id = $2 AND account_key = $3 RETURNING id",
                vec![ms(now), app_id.into(), key.as_str().into()],
            )
            .await?;
        Ok((!rows.is_empty()).then_some(()))
    }

    /// Locks an account unlocked for one sign-in, durably. `false` when another check (or a
    /// person) already did: only one sign-in gets through.
    pub async fn relock_after_use(
        &self,
        app_id: &str,
        key: &AccountKey,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "UPDATE accounts SET state = 'locked', unlocked_until = NULL, relock_after_use = 0, updated_at = $1 \
                 WHERE app_id = $2 AND account_key = $3 AND relock_after_use = 1 RETURNING id",
                vec![ms(now), app_id.into(), key.as_str().into()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// What the lock decision needs about one account, in two reads (more when names that
    /// fold together are not merged yet: each of them is read, and any of them can lock).
    pub async fn lock_inputs(&self, app_id: &str, key: &AccountKey) -> Result<LockInputs> {
        let rows = self
            .engine
            .query(
                "SELECT a.id, a.state, a.unlocked_until, p.id, p.master_locked, p.time_zone, a.relock_after_use, a.account \
                 FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.app_id = $1 AND a.account_key = $2 \
                 ORDER BY a.key_dup",
                vec![app_id.into(), key.as_str().into()],
            )
            .await?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            all.push(self.account_inputs(r).await?);
        }
        let mut all = all.into_iter();
        let Some(mut first) = all.next() else {
            return Ok(LockInputs::default());
        };
        first.colliding = all.collect();
        Ok(first)
    }

    async fn account_inputs(&self, r: &Row) -> Result<LockInputs> {
        let account_id = r.text(0)?;
        let enrolment = Enrolment {
            state: parse(&r.text(1)?)?,
            unlocked_until: opt_time(r.opt_int(2)?)?,
        };
        let person_id = r.opt_text(3)?;
        let relock_after_use = r.flag(6)?;
        let person = match &person_id {
            Some(_) => Some(PersonLocks {
                master_locked: r.flag(4)?,
                time_zone: parse(&r.text(5)?)?,
            }),
            None => None,
        };
        let schedules = self
            .engine
            .query(
                "SELECT days, start_minute, end_minute FROM schedules WHERE account_id = $1 OR (account_id IS NULL AND person_id = $2)",
                vec![account_id.into(), person_id.clone().into()],
            )
            .await?
            .iter()
            .map(schedule)
            .collect::<Result<_>>()?;
        Ok(LockInputs {
            name: Some(r.text(7)?),
            enrolment: Some(enrolment),
            person,
            person_id,
            schedules,
            relock_after_use,
            colliding: Vec::new(),
        })
    }

    // ---- schedules ----

    /// Adds a weekly lock window to a person (all their accounts) or to one account.
    pub async fn add_schedule(
        &self,
        owner: &ScheduleOwner,
        s: Schedule,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord> {
        let id = new_id();
        let (person_id, account_id) = match owner {
            ScheduleOwner::Person(p) => (Some(p.as_str()), None),
            ScheduleOwner::Account {
                person_id,
                account_id,
            } => (person_id.as_deref(), Some(account_id.as_str())),
        };
        self.engine
            .write(
                "INSERT INTO schedules (id, person_id, account_id, days, start_minute, end_minute, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    (&id).into(),
                    person_id.into(),
                    account_id.into(),
                    i64::from(s.days).into(),
                    i64::from(s.start_minute).into(),
                    i64::from(s.end_minute).into(),
                    ms(now),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("person or account"),
                e => e,
            })?;
        Ok(ScheduleRecord {
            id,
            person_id: person_id.map(String::from),
            account_id: account_id.map(String::from),
            schedule: s,
            created_at: now,
        })
    }

    /// A person's schedules and those of their accounts.
    pub async fn person_schedules(&self, person_id: &str) -> Result<Vec<ScheduleRecord>> {
        let rows = self
            .engine
            .query(
                "SELECT id, person_id, account_id, days, start_minute, end_minute, created_at FROM schedules \
                 WHERE person_id = $1 OR account_id IN (SELECT id FROM accounts WHERE person_id = $1) ORDER BY created_at, id",
                vec![person_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRecord {
                    id: r.text(0)?,
                    person_id: r.opt_text(1)?,
                    account_id: r.opt_text(2)?,
                    schedule: schedule_at(r, 3)?,
                    created_at: time(r.int(6)?)?,
                })
            })
            .collect()
    }

    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        let rows = self
            .engine
            .write(
                "DELETE FROM schedules WHERE id = $1 RETURNING id",
                vec![id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("schedule"));
        }
        Ok(())
    }

    // ---- import ----

    /// Imports rows in one transaction: each row creates its person (by email) if needed and
    /// enrols its account. Returns, per row, whether the account was new.
    pub async fn import(&self, rows: &[ImportRow], now: DateTime<Utc>) -> Result<Vec<bool>> {
        let mut apps = std::collections::HashMap::new();
        for r in rows {
            if !apps.contains_key(&r.app_id) {
                let app = self
                    .application(&r.app_id)
                    .await?
                    .ok_or(StoreError::NotFound("application"))?;
                apps.insert(r.app_id.clone(), (app.default_state, app.account_names));
            }
        }
        let mut stmts: Vec<Stmt> = Vec::with_capacity(rows.len() * 2);
        let mut account_stmt = Vec::with_capacity(rows.len());
        for r in rows {
            let email = r
                .email
                .as_deref()
                .map(normalize_email)
                .filter(|e| !e.is_empty());
            if let Some(email) = &email {
                stmts.push((
                    "INSERT INTO persons (id, email, password_hash, first_name, last_name, phone, time_zone, master_locked, created_at) \
                     VALUES ($1, $2, NULL, $3, $4, $5, 'UTC', 0, $6) ON CONFLICT (email) DO NOTHING",
                    vec![new_id().into(), email.into(), r.first_name.as_deref().into(), r.last_name.as_deref().into(), r.phone.as_deref().into(), ms(now)],
                ));
            }
            // An existing account keeps its state; it only gains a person when it had none.
            let id = new_id();
            let (state, names) = apps.get(&r.app_id).copied().unwrap_or_default();
            account_stmt.push((stmts.len(), id.clone()));
            // Another spelling of an enrolled name is that account (the first spelling stays).
            stmts.push((
                "INSERT INTO accounts (id, app_id, account, account_key, key_dup, person_id, state, unlocked_until, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, (SELECT id FROM persons WHERE email = $5), $6, NULL, $7, $7) \
                 ON CONFLICT (app_id, account_key, key_dup) DO UPDATE SET person_id = COALESCE(accounts.person_id, excluded.person_id) \
                 RETURNING id",
                vec![
                    id.into(),
                    (&r.app_id).into(),
                    (&r.account).into(),
                    names.key(&r.account).into_string().into(),
                    email.into(),
                    state.as_str().into(),
                    ms(now),
                ],
            ));
        }
        let out = self.engine.transaction(stmts).await?;
        // The statement returns the row's id: ours when it inserted, the old one when it existed.
        Ok(account_stmt
            .iter()
            .map(|(i, id)| {
                out.get(*i)
                    .and_then(|rows| rows.first())
                    .is_some_and(|r| r.text(0).is_ok_and(|got| &got == id))
            })
            .collect())
    }
}

fn company(r: &Row) -> Result<Company> {
    Ok(Company {
        id: r.text(0)?,
        name: r.text(1)?,
        created_at: time(r.int(2)?)?,
    })
}

fn application(r: &Row) -> Result<Application> {
    Ok(Application {
        id: r.text(0)?,
        company_id: r.text(1)?,
        name: r.text(2)?,
        issuer: r.text(3)?,
        unenrolled: parse(&r.text(4)?)?,
        default_state: parse(&r.text(5)?)?,
        audit_mode: r.flag(6)?,
        created_at: time(r.int(7)?)?,
        account_names: parse(&r.text(8)?)?,
    })
}

fn sdk_key(r: &Row) -> Result<SdkKeyRecord> {
    Ok(SdkKeyRecord {
        id: r.text(0)?,
        company_id: r.text(1)?,
        secret_hash: r.text(2)?,
        created_at: time(r.int(3)?)?,
        revoked_at: opt_time(r.opt_int(4)?)?,
    })
}

fn person(r: &Row) -> Result<Person> {
    Ok(Person {
        id: r.text(0)?,
        email: r.text(1)?,
        first_name: r.opt_text(2)?,
        last_name: r.opt_text(3)?,
        phone: r.opt_text(4)?,
        time_zone: parse(&r.text(5)?)?,
        master_locked: r.flag(6)?,
        created_at: time(r.int(7)?)?,
    })
}

fn account_row(r: &Row) -> Result<Account> {
    Ok(Account {
        id: r.text(0)?,
        app_id: r.text(1)?,
        account: r.text(2)?,
        person_id: r.opt_text(3)?,
        person_email: r.opt_text(4)?,
        state: parse(&r.text(5)?)?,
        unlocked_until: opt_time(r.opt_int(6)?)?,
        created_at: time(r.int(7)?)?,
        updated_at: time(r.int(8)?)?,
        relock_after_use: r.flag(9)?,
    })
}

fn schedule(r: &Row) -> Result<Schedule> {
    schedule_at(r, 0)
}

fn schedule_at(r: &Row, i: usize) -> Result<Schedule> {
    let small =
        |v: i64| u16::try_from(v).map_err(|_| StoreError::Corrupt(format!("schedule value {v}")));
    let days = u8::try_from(r.int(i)?).map_err(|_| StoreError::Corrupt("schedule days".into()))?;
    Schedule::new(days, small(r.int(i + 1)?)?, small(r.int(i + 2)?)?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Fresh stores for tests: a new SQLite file or a new PostgreSQL database each.
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
