//! Attempts, kept in runs: the attempts of one application in one written batch are one row of
//! `attempt_runs`, their fields a JSON array in `data`. Recording costs one row per application
//! and batch instead of one row and one index entry per attempt (migration `0005`); reads walk an
//! application's runs through the `attempt_runs_app` index and decode them.
//!
//! Ids: a run holds the ids `first_id ..= last_id`, its i-th attempt is `first_id + i`; runs
//! never overlap (one writer at a time takes the ids after the largest given).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::engine::{scalar, Row, Run, RunsWrite, Val};
use crate::{time, Attempt, NewAttempt, Result, Store, StoreError};

/// Runs read per query while walking.
const PAGE: i64 = 32;

/// One attempt as stored in a run's `data`: at (ms), key id, account, locked (0/1), reason, IP,
/// device, location, integration type, integration data.
type Stored<S> = (
    i64,
    Option<S>,
    S,
    i64,
    S,
    Option<S>,
    Option<S>,
    Option<S>,
    Option<S>,
    Option<S>,
);

/// Attempts converted once into runs (their JSON written before the transaction) for
/// [`Store::record_attempts`]; kept whole so that a write that failed can be retried.
pub struct AttemptBatch {
    write: Arc<RunsWrite>,
}

/// Inserts a run. Its until_at never goes below the application's previous run's, so that
/// (until_at, last_id) order is recording order. Parameters: last id, first id, application,
/// length, data, latest time in the run.
const INSERT_RUN: &str = "INSERT INTO attempt_runs (last_id, first_id, app_id, n, data, until_at) \
     SELECT CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS BIGINT), CAST($5 AS TEXT), max(v) FROM \
     (SELECT CAST($6 AS BIGINT) AS v UNION ALL SELECT max(until_at) FROM attempt_runs WHERE app_id = $3) m";

const KEY_USAGE: &str = "INSERT INTO key_usage (key_id, last_used_at) VALUES ($1, $2) ON CONFLICT (key_id) DO UPDATE SET \
     last_used_at = CASE WHEN excluded.last_used_at > key_usage.last_used_at THEN excluded.last_used_at ELSE key_usage.last_used_at END";

impl AttemptBatch {
    pub fn new(mut attempts: Vec<NewAttempt>) -> Self {
        Self::encode(&mut attempts)
    }

    /// As [`AttemptBatch::new`], leaving `attempts` empty with its room: the writer fills the
    /// same vector again (a batch's room is megabytes; a fresh one each time is page faults on
    /// every batch once the allocator has given the last one back).
    pub fn encode(attempts: &mut Vec<NewAttempt>) -> Self {
        let batch = Self::encode_sorted(attempts);
        attempts.clear();
        batch
    }

    /// As [`AttemptBatch::encode`], and hands over the blocked attempts, moved out of
    /// `attempts` rather than copied: the process that wrote them can pass them on (to the alert
    /// worker) without reading them back from the store.
    pub fn encode_keeping_blocked(attempts: &mut Vec<NewAttempt>) -> (Self, BlockedOfBatch) {
        let batch = Self::encode_sorted(attempts);
        // The write gives the sorted attempts consecutive ids, run after run: an attempt's place
        // in the sorted vector is its id's distance from the batch's first.
        let len = attempts.len() as i64;
        let blocked = attempts
            .drain(..)
            .enumerate()
            .filter(|(_, a)| a.locked)
            .filter_map(|(i, a)| {
                // As a read gives it back: to the millisecond. A time out of range (which a read
                // refuses) is not handed over: no alert could say when it was.
                let at = time(a.at.timestamp_millis()).ok()?;
                Some(Attempt {
                    id: i as i64,
                    at,
                    app_id: a.app_id,
                    key_id: a.key_id,
                    account: a.account,
                    locked: true,
                    reason: a.reason.as_str().to_string(),
                    ip: a.ip,
                    device: a.device,
                    location: a.location,
                    integration_type: a.integration_type,
                    integration_data: a.integration_data,
                })
            })
            .collect();
        (batch, BlockedOfBatch { len, blocked })
    }

    fn encode_sorted(attempts: &mut [NewAttempt]) -> Self {
        // Stable: each application's attempts keep the order they were queued in.
        attempts.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        let mut last_used: HashMap<&str, i64> = HashMap::new();
        let mut runs = Vec::new();
        for group in attempts.chunk_by(|a, b| a.app_id == b.app_id) {
            let mut until = i64::MIN;
            let stored: Vec<Stored<&str>> = group
                .iter()
                .map(|a| {
                    let at = a.at.timestamp_millis();
                    until = until.max(at);
                    if let Some(k) = &a.key_id {
                        let t = last_used.entry(k).or_insert(at);
                        *t = (*t).max(at);
                    }
                    (
                        at,
                        a.key_id.as_deref(),
                        a.account.as_str(),
                        i64::from(a.locked),
                        a.reason.as_str(),
                        a.ip.as_deref(),
                        a.device.as_deref(),
                        a.location.as_deref(),
                        a.integration_type.as_deref(),
                        a.integration_data.as_deref(),
                    )
                })
                .collect();
            // Serialising strings and integers cannot fail.
            let data = serde_json::to_string(&stored).unwrap_or_default();
            let len = group.len() as i64;
            runs.push(Run {
                len,
                params: vec![
                    group[0].app_id.as_str().into(),
                    len.into(),
                    data.into(),
                    until.into(),
                ],
            });
        }
        let usage = last_used
            .into_iter()
            .map(|(k, at)| vec![k.into(), at.into()])
            .collect();
        let write = RunsWrite {
            last_id_sql: "SELECT max(last_id) FROM attempt_runs",
            run_sql: INSERT_RUN,
            runs,
            after: vec![(KEY_USAGE, usage)],
        };
        Self {
            write: Arc::new(write),
        }
    }
}

impl AttemptBatch {
    /// How many attempts it holds.
    pub fn len(&self) -> usize {
        self.write.runs.iter().map(|r| r.len as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.write.runs.is_empty()
    }

    /// The applications it has attempts of.
    pub fn app_ids(&self) -> impl Iterator<Item = &str> {
        self.write
            .runs
            .iter()
            .filter_map(|r| match r.params.first() {
                Some(Val::Text(id)) => Some(id.as_str()),
                _ => None,
            })
    }
}

/// The blocked attempts of an [`AttemptBatch`], numbered by their place in it until its write
/// gives the batch its ids.
pub struct BlockedOfBatch {
    len: i64,
    blocked: Vec<Attempt>,
}

impl BlockedOfBatch {
    /// Given the first id the batch's write returned: the ids the batch took (first and last,
    /// every id between them is one of its attempts) and its blocked attempts with their ids.
    pub fn numbered(mut self, first: i64) -> (i64, i64, Vec<Attempt>) {
        for a in &mut self.blocked {
            a.id += first;
        }
        (first, first + self.len - 1, self.blocked)
    }
}

/// A run as read: its first id, application and attempts.
pub(crate) struct StoredRun {
    first_id: i64,
    pub(crate) last_id: i64,
    until_at: i64,
    app_id: String,
    data: String,
}

const RUN_COLS: &str = "first_id, last_id, until_at, app_id, data";

pub(crate) fn stored_run(r: &Row) -> Result<StoredRun> {
    Ok(StoredRun {
        first_id: r.int(0)?,
        last_id: r.int(1)?,
        until_at: r.int(2)?,
        app_id: r.text(3)?,
        data: r.text(4)?,
    })
}

impl StoredRun {
    /// The run's attempts, oldest first.
    pub(crate) fn attempts(&self) -> Result<Vec<Attempt>> {
        let stored: Vec<Stored<String>> = serde_json::from_str(&self.data)
            .map_err(|e| StoreError::Corrupt(format!("attempt run {}: {e}", self.last_id)))?;
        stored
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.attempt(i, s))
            .collect()
    }

    /// The run's blocked attempts, oldest first. Most attempts are allowed ones: each is looked
    /// at without copying its strings, and only the blocked ones are read whole.
    pub(crate) fn blocked_attempts(&self) -> Result<Vec<Attempt>> {
        use serde::de::IgnoredAny;
        use serde_json::value::RawValue;
        type Flag = (
            i64,
            IgnoredAny,
            IgnoredAny,
            i64,
            IgnoredAny,
            IgnoredAny,
            IgnoredAny,
            IgnoredAny,
            IgnoredAny,
            IgnoredAny,
        );
        let corrupt = |e: serde_json::Error| {
            StoreError::Corrupt(format!("attempt run {}: {e}", self.last_id))
        };
        let raw: Vec<&RawValue> = serde_json::from_str(&self.data).map_err(corrupt)?;
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let flag: Flag = serde_json::from_str(r.get()).map_err(corrupt)?;
            if flag.3 != 0 {
                let s: Stored<String> = serde_json::from_str(r.get()).map_err(corrupt)?;
                out.push(self.attempt(i, s)?);
            }
        }
        Ok(out)
    }

    fn attempt(&self, i: usize, s: Stored<String>) -> Result<Attempt> {
        Ok(Attempt {
            id: self.first_id + i as i64,
            at: time(s.0)?,
            app_id: self.app_id.clone(),
            key_id: s.1,
            account: s.2,
            locked: s.3 != 0,
            reason: s.4,
            ip: s.5,
            device: s.6,
            location: s.7,
            integration_type: s.8,
            integration_data: s.9,
        })
    }
}

/// Which of an application's attempts a list shows: of one account, blocked or allowed only,
/// in `[from, until)`.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub account: Option<String>,
    pub locked: Option<bool>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl AttemptFilter {
    fn is_empty(&self) -> bool {
        self.account.is_none()
            && self.locked.is_none()
            && self.from.is_none()
            && self.until.is_none()
    }

    fn range_ms(&self) -> (i64, i64) {
        (
            self.from.map_or(i64::MIN, |t| t.timestamp_millis()),
            self.until.map_or(i64::MAX, |t| t.timestamp_millis()),
        )
    }

    fn keeps(&self, a: &Attempt) -> bool {
        let (from, until) = self.range_ms();
        let at = a.at.timestamp_millis();
        self.account.as_deref().is_none_or(|x| a.account == x)
            && self.locked.is_none_or(|l| a.locked == l)
            && at >= from
            && at < until
    }
}

type PersonAccounts = HashMap<String, HashSet<String>>;

fn holds(mine: &PersonAccounts, a: &Attempt) -> bool {
    mine.get(&a.app_id).is_some_and(|s| s.contains(&a.account))
}

/// Which way a walk goes through the runs.
#[derive(Clone, Copy, PartialEq)]
enum Walk {
    NewestFirst,
    OldestFirst,
}

/// A walk through runs, page by page: the query of each page takes the cursor (the previous
/// page's last run: its until_at then its last_id, or its last_id alone with `by_id`) and the
/// page size as its last parameters.
struct Runs {
    sql: &'static str,
    params: Vec<Val>,
    walk: Walk,
    by_id: bool,
    /// Where the walk starts, if not at the newest (or oldest) run: the cursor of a run.
    start: Option<(i64, i64)>,
}

impl Store {
    /// Records a batch of attempts in one transaction. A batch that failed can be passed again.
    /// Returns the first id given to the batch (`None` for an empty one).
    pub async fn record_attempts(&self, batch: &AttemptBatch) -> Result<Option<i64>> {
        if batch.write.runs.is_empty() {
            return Ok(None);
        }
        self.engine.append_runs(batch.write.clone()).await.map(Some)
    }

    /// Walks `runs`, keeping the attempts `keep` accepts, until `limit` are kept.
    async fn walk(
        &self,
        runs: Runs,
        limit: i64,
        keep: impl Fn(&Attempt) -> bool,
    ) -> Result<Vec<Attempt>> {
        let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.visit(runs, |a| {
            if keep(&a) {
                out.push(a);
            }
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    /// Walks `runs`, handing each attempt to `visit` in the walk's order until it answers false.
    async fn visit(&self, runs: Runs, mut visit: impl FnMut(Attempt) -> bool) -> Result<()> {
        let mut cursor = runs.start.unwrap_or(match runs.walk {
            Walk::NewestFirst => (i64::MAX, i64::MAX),
            Walk::OldestFirst => (i64::MIN, i64::MIN),
        });
        loop {
            let mut params = runs.params.clone();
            if !runs.by_id {
                params.push(cursor.0.into());
            }
            params.extend([cursor.1.into(), PAGE.into()]);
            let page = self.all(runs.sql, params, stored_run).await?;
            for run in &page {
                let mut attempts = run.attempts()?;
                if runs.walk == Walk::NewestFirst {
                    attempts.reverse();
                }
                for a in attempts {
                    if !visit(a) {
                        return Ok(());
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => cursor = (last.until_at, last.last_id),
                _ => return Ok(()),
            }
        }
    }

    /// An application's attempts, newest first.
    pub async fn recent_attempts(&self, app_id: &str, limit: i64) -> Result<Vec<Attempt>> {
        // Ids start at 1: "after 0" is all of them.
        self.filtered_attempts(app_id, None, None, (None, None), 0, limit)
            .await
    }

    /// An application's attempts at or after `since`, oldest first: in the order they were
    /// recorded, which can differ from `at` order by the time an attempt waits in the queue.
    pub async fn attempts_since(
        &self,
        app_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        let since_ms = since.timestamp_millis();
        self.walk(
            Runs {
                sql: APP_RUNS_ASC,
                params: vec![app_id.into(), since_ms.into()],
                walk: Walk::OldestFirst,
                by_id: false,
                start: None,
            },
            limit,
            |a| a.at.timestamp_millis() >= since_ms,
        )
        .await
    }

    /// An application's attempts, newest first: of one account (`account`), blocked or allowed
    /// only (`locked`), in `[from, until)`, with an id above `after_id` (for live updates).
    pub async fn filtered_attempts(
        &self,
        app_id: &str,
        account: Option<&str>,
        locked: Option<bool>,
        (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        let from = from.map_or(i64::MIN, |t| t.timestamp_millis());
        let until = until.map_or(i64::MAX, |t| t.timestamp_millis());
        self.walk(
            Runs {
                sql: APP_RUNS_AFTER_DESC,
                params: vec![app_id.into(), from.into(), after_id.into()],
                walk: Walk::NewestFirst,
                by_id: false,
                start: None,
            },
            limit,
            |a| {
                let at = a.at.timestamp_millis();
                account.is_none_or(|x| a.account == x)
                    && locked.is_none_or(|l| a.locked == l)
                    && at >= from
                    && at < until
                    && a.id > after_id
            },
        )
        .await
    }

    /// A page of an application's attempts that `filter` finds, newest first: those recorded
    /// before the attempt `before_id` (0: from the newest). The walk starts at the run holding
    /// `before_id`, so a later page costs no more than the first.
    pub async fn attempts_page(
        &self,
        app_id: &str,
        filter: &AttemptFilter,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        let (from, _) = filter.range_ms();
        let start = if before_id > 0 {
            // Within an application, (until_at, last_id) order is recording order (INSERT_RUN),
            // so the run holding `before_id` and every run after it in the walk hold the rest.
            self.one(
                "SELECT until_at, last_id FROM attempt_runs WHERE app_id = $1 AND last_id >= $2 \
                 ORDER BY last_id LIMIT 1",
                vec![app_id.into(), before_id.into()],
                |r| Ok((r.int(0)?, r.int(1)?.saturating_add(1))),
            )
            .await?
        } else {
            None
        };
        self.walk(
            Runs {
                sql: APP_RUNS_AFTER_DESC,
                params: vec![app_id.into(), from.into(), 0.into()],
                walk: Walk::NewestFirst,
                by_id: false,
                start,
            },
            limit,
            |a| filter.keeps(a) && (before_id <= 0 || a.id < before_id),
        )
        .await
    }

    /// How many of an application's attempts `filter` finds. Without a filter the runs'
    /// lengths are summed; with one, the runs in its time range are read.
    pub async fn attempt_count_of(&self, app_id: &str, filter: &AttemptFilter) -> Result<i64> {
        if filter.is_empty() {
            return scalar(
                &self
                    .engine
                    .query(
                        "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM attempt_runs WHERE app_id = $1",
                        vec![app_id.into()],
                    )
                    .await?,
            );
        }
        let (from, _) = filter.range_ms();
        let mut n = 0;
        self.visit(
            Runs {
                sql: APP_RUNS_AFTER_DESC,
                params: vec![app_id.into(), from.into(), 0.into()],
                walk: Walk::NewestFirst,
                by_id: false,
                start: None,
            },
            |a| {
                n += i64::from(filter.keeps(&a));
                true
            },
        )
        .await?;
        Ok(n)
    }

    /// The accounts a person holds, by application, for matching their attempts.
    async fn held_accounts(&self, person_id: &str) -> Result<PersonAccounts> {
        let rows = self
            .all(
                "SELECT app_id, account FROM accounts WHERE person_id = $1",
                vec![person_id.into()],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )
            .await?;
        let mut mine = PersonAccounts::new();
        for (app, account) in rows {
            mine.entry(app).or_default().insert(account);
        }
        Ok(mine)
    }

    /// Blocked attempts on a person's accounts, newest first.
    pub async fn person_blocked_attempts(
        &self,
        person_id: &str,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        let mine = self.held_accounts(person_id).await?;
        self.walk(
            Runs {
                sql: PERSON_RUNS_DESC,
                params: vec![person_id.into()],
                walk: Walk::NewestFirst,
                by_id: true,
                start: None,
            },
            limit,
            |a| a.locked && holds(&mine, a),
        )
        .await
    }

    /// Blocked attempts on a person's accounts with an id above `after_id`, oldest first.
    pub async fn person_blocked_attempts_after(
        &self,
        person_id: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        let mine = self.held_accounts(person_id).await?;
        self.walk(
            Runs {
                sql: PERSON_RUNS_ASC,
                params: vec![person_id.into(), after_id.into()],
                walk: Walk::OldestFirst,
                by_id: true,
                start: None,
            },
            limit,
            |a| a.id > after_id && a.locked && holds(&mine, a),
        )
        .await
    }

    /// One attempt, by id.
    pub async fn attempt(&self, id: i64) -> Result<Option<Attempt>> {
        let run = self
            .one(
                const_format::concatcp!(
                    "SELECT ",
                    RUN_COLS,
                    " FROM attempt_runs WHERE last_id >= $1 ORDER BY last_id LIMIT 1"
                ),
                vec![id.into()],
                stored_run,
            )
            .await?;
        let Some(run) = run.filter(|r| r.first_id <= id) else {
            return Ok(None);
        };
        Ok(run.attempts()?.into_iter().find(|a| a.id == id))
    }

    /// How many attempts are recorded in all.
    /// An application's attempts with ids above `after`, oldest first: a feed to page through
    /// with the last id seen. Ids are given in commit order, so a page never misses an attempt
    /// recorded before it nor repeats one (only retention removes old ones).
    pub async fn attempts_after(
        &self,
        app_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        self.walk(
            Runs {
                sql: APP_RUNS_BY_ID,
                params: vec![app_id.into(), after.into()],
                walk: Walk::OldestFirst,
                by_id: true,
                start: None,
            },
            limit,
            |a| a.id > after,
        )
        .await
    }

    /// Removes up to `runs` whole runs whose attempts are all older than `before` (their
    /// latest is), oldest first; how many attempts went. A run that straddles `before` stays
    /// until it is wholly past it (a run is one written batch: milliseconds of attempts).
    /// Small batches, one transaction each: the writer and the checks go on between them.
    pub async fn prune_attempts(&self, before: DateTime<Utc>, runs: i64) -> Result<u64> {
        let rows = self
            .engine
            .write(
                "DELETE FROM attempt_runs WHERE last_id IN \
                 (SELECT last_id FROM attempt_runs WHERE until_at < $1 ORDER BY until_at LIMIT $2) \
                 RETURNING n",
                vec![before.timestamp_millis().into(), runs.into()],
            )
            .await?;
        rows.iter()
            .map(|r| r.int(0).map(|n| u64::try_from(n).unwrap_or(0)))
            .sum()
    }

    pub async fn attempt_count(&self) -> Result<i64> {
        // PostgreSQL sums BIGINTs into NUMERIC: cast back.
        scalar(
            &self
                .engine
                .query(
                    "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM attempt_runs",
                    vec![],
                )
                .await?,
        )
    }
}

// The walks' queries. Each ends with the cursor (until_at, last_id) and the page size; runs
// come in index order (`attempt_runs_app`, or the primary key for a person's walk).

/// An application's runs, oldest first, reaching `$2` (ms) or later.
pub(crate) const APP_RUNS_ASC: &str = const_format::concatcp!(
    "SELECT ",
    RUN_COLS,
    " FROM attempt_runs WHERE app_id = $1 AND until_at >= $2 \
     AND (until_at > $3 OR (until_at = $3 AND last_id > $4)) \
     ORDER BY until_at, last_id LIMIT $5"
);
/// An application's runs, newest first, reaching `$2` (ms) or later, with ids above `$3`.
pub(crate) const APP_RUNS_AFTER_DESC: &str = const_format::concatcp!(
    "SELECT ",
    RUN_COLS,
    " FROM attempt_runs WHERE app_id = $1 AND until_at >= $2 AND last_id > $3 \
     AND (until_at < $4 OR (until_at = $4 AND last_id < $5)) \
     ORDER BY until_at DESC, last_id DESC LIMIT $6"
);
/// An application's runs holding ids above `$2`, oldest first by id.
pub(crate) const APP_RUNS_BY_ID: &str = const_format::concatcp!(
    "SELECT ",
    RUN_COLS,
    " FROM attempt_runs WHERE app_id = $1 AND last_id > $2 AND last_id > $3 ORDER BY last_id LIMIT $4"
);
// A person's walks go through the primary key, newest (or oldest) first, and stop at the limit;
// `app_id || ''` keeps the planner off the application index, which would read every run of the
// person's applications and sort them.

/// The runs of a person's applications, newest first by id (runs do not overlap).
pub(crate) const PERSON_RUNS_DESC: &str = const_format::concatcp!(
    "SELECT ",
    RUN_COLS,
    " FROM attempt_runs WHERE app_id || '' IN (SELECT app_id FROM accounts WHERE person_id = $1) \
     AND last_id < $2 ORDER BY last_id DESC LIMIT $3"
);
/// The runs of a person's applications holding ids above `$2`, oldest first.
pub(crate) const PERSON_RUNS_ASC: &str = const_format::concatcp!(
    "SELECT ",
    RUN_COLS,
    " FROM attempt_runs WHERE app_id || '' IN (SELECT app_id FROM accounts WHERE person_id = $1) \
     AND last_id > $2 AND last_id > $3 ORDER BY last_id LIMIT $4"
);
