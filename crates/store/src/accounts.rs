//! Enrolled accounts: enrolment, their lock state and what a check reads of them.

use chrono::{DateTime, Utc};
use deadbolt_core::{AccountKey, AccountState, Enrolment, PersonLocks};

use crate::audit::{self, AuditAction, AuditBy, AuditState};
use crate::engine::{scalar, Row, Stmt};
use crate::schedules::schedule;
use crate::{
    ms, new_id, opt_time, parse, time, Account, LockInputs, Result, Store, StoreError, ACCOUNT_COLS,
};

impl Store {
    /// Enrols `account` in the application (in the application's default state); linking it to
    /// `person_id` when given and the account has no person yet. A name that is another
    /// spelling of an enrolled one (by the application's `account_names`) is that account, kept
    /// under the name it was first enrolled with. Returns the account and whether it is new.
    /// The enrolment, or the pairing of an account that had no person, is in the audit trail.
    pub async fn enroll(
        &self,
        app_id: &str,
        account: &str,
        person_id: Option<&str>,
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<(Account, bool)> {
        let app = self
            .application(app_id)
            .await?
            .ok_or(StoreError::NotFound("application"))?;
        let key = app.account_names.key(account);
        let id = new_id();
        let mut stmts = vec![
            (
                "INSERT INTO accounts (id, app_id, account, account_key, key_dup, person_id, state, unlocked_until, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, $7, $7) ON CONFLICT DO NOTHING RETURNING id",
                vec![id.as_str().into(), app_id.into(), account.into(), key.as_str().into(), person_id.into(), app.default_state.as_str().into(), ms(now)],
            ),
            // Recorded when the row is ours, that is new.
            audit::insert_for_account(now, AuditAction::Enrol, by, None, &id),
        ];
        if let Some(person_id) = person_id {
            // An account enrolled before without a person is paired with this one: recorded
            // before the update, which the condition would no longer find.
            stmts.push(audit::insert_pairing(
                now,
                by,
                person_id,
                app_id,
                key.as_str(),
            ));
        }
        stmts.push((
            "UPDATE accounts SET person_id = COALESCE($1, person_id), updated_at = $2 WHERE app_id = $3 AND account_key = $4 AND person_id IS NULL",
            vec![person_id.into(), ms(now), app_id.into(), key.as_str().into()],
        ));
        let out = self.engine.transaction(stmts).await.map_err(|e| match e {
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
        self.accounts_page(app_id, search, 0, limit).await
    }

    /// A page of an application's accounts in name order, of those `search` finds (in the
    /// name, in any case, or in the person's email): `limit` from `offset`.
    pub async fn accounts_page(
        &self,
        app_id: &str,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Account>> {
        let (pattern, folded) = search_patterns(search);
        self.all(sql!(
                    "SELECT ", ACCOUNT_COLS,
                    " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.app_id = $1 \
                     AND (a.account LIKE $2 ESCAPE '\\' OR a.account_key LIKE $3 ESCAPE '\\' OR p.email LIKE $3 ESCAPE '\\') \
                     ORDER BY a.account, a.id LIMIT $4 OFFSET $5"
                ),
                vec![app_id.into(), pattern.into(), folded.into(), limit.into(), offset.into()], account_row).await
    }

    /// How many accounts [`Store::accounts_page`] finds in all.
    pub async fn account_count(&self, app_id: &str, search: Option<&str>) -> Result<i64> {
        let (pattern, folded) = search_patterns(search);
        scalar(
            &self
                .engine
                .query(
                    "SELECT count(*) FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.app_id = $1 \
                     AND (a.account LIKE $2 ESCAPE '\\' OR a.account_key LIKE $3 ESCAPE '\\' OR p.email LIKE $3 ESCAPE '\\')",
                    vec![app_id.into(), pattern.into(), folded.into()],
                )
                .await?,
        )
    }

    /// Every account of a person, across applications.
    pub async fn person_accounts(&self, person_id: &str) -> Result<Vec<Account>> {
        self.all(sql!("SELECT ", ACCOUNT_COLS, " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.person_id = $1 ORDER BY a.app_id, a.account"),
                vec![person_id.into()], account_row).await
    }

    /// Sets an account's own state and unlock window, durably, and records the change
    /// (`action`, by `by`) in the audit trail. `None` when the account is not enrolled.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_account_state(
        &self,
        app_id: &str,
        key: &AccountKey,
        state: AccountState,
        unlocked_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        action: AuditAction,
        by: &AuditBy,
    ) -> Result<Option<()>> {
        let update = (
            "UPDATE accounts SET state = $1, unlocked_until = $2, updated_at = $3, relock_after_use = 0 \
             WHERE app_id = $4 AND account_key = $5",
            vec![state.as_str().into(), unlocked_until.map(|t| t.timestamp_millis()).into(), ms(now), app_id.into(), key.as_str().into()],
        );
        let new = AuditState::new(state.as_str(), unlocked_until, false);
        let changed = self
            .change_accounts(app_id, key, update, new, now, action, by, |_| true)
            .await?;
        Ok(changed.then_some(()))
    }

    /// Unlocks an account for one sign-in: unlocked now, locked again by the check that uses
    /// it. Recorded in the audit trail.
    pub async fn unlock_once(
        &self,
        app_id: &str,
        key: &AccountKey,
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<Option<()>> {
        let update = (
            "UPDATE accounts SET state = 'unlocked', unlocked_until = NULL, relock_after_use = 1, updated_at = $1 \
             WHERE app_id = $2 AND account_key = $3",
            vec![ms(now), app_id.into(), key.as_str().into()],
        );
        let new = AuditState::new(AccountState::Unlocked.as_str(), None, true);
        let changed = self
            .change_accounts(
                app_id,
                key,
                update,
                new,
                now,
                AuditAction::UnlockOnce,
                by,
                |_| true,
            )
            .await?;
        Ok(changed.then_some(()))
    }

    /// Locks an account unlocked for one sign-in, durably, recording that the check used it.
    /// `false` when another check (or a person) already did: only one sign-in gets through.
    pub async fn relock_after_use(
        &self,
        app_id: &str,
        key: &AccountKey,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let update = (
            "UPDATE accounts SET state = 'locked', unlocked_until = NULL, relock_after_use = 0, updated_at = $1 \
             WHERE app_id = $2 AND account_key = $3 AND relock_after_use = 1",
            vec![ms(now), app_id.into(), key.as_str().into()],
        );
        let new = AuditState::new(AccountState::Locked.as_str(), None, false);
        self.change_accounts(
            app_id,
            key,
            update,
            new,
            now,
            AuditAction::RelockAfterUse,
            &AuditBy::check(),
            |old| old.once,
        )
        .await
    }

    /// Runs `update` on the accounts found by `key` and records, for each that `applies` to
    /// (by its state before), the change from that state to `new`; one transaction. The
    /// accounts are read first, and on PostgreSQL locked (`FOR UPDATE`): the state recorded as
    /// before is the one the update replaced, whatever runs beside it. (SQLite has one writer.)
    /// Whether any account was changed; the update runs only then.
    #[allow(clippy::too_many_arguments)]
    async fn change_accounts(
        &self,
        app_id: &str,
        key: &AccountKey,
        update: Stmt,
        new: AuditState,
        now: DateTime<Utc>,
        action: AuditAction,
        by: &AuditBy,
        applies: fn(&AuditState) -> bool,
    ) -> Result<bool> {
        const READ: &str =
            "SELECT id, account, person_id, state, unlocked_until, relock_after_use \
             FROM accounts WHERE app_id = $1 AND account_key = $2 ORDER BY key_dup";
        let read = if self.is_postgres() {
            sql!(READ, " FOR UPDATE")
        } else {
            READ
        };
        let app = app_id.to_string();
        let by = by.clone();
        self.engine
            .read_modify_write(
                vec![(read, vec![app_id.into(), key.as_str().into()])],
                move |rows| {
                    let mut writes = Vec::new();
                    for r in rows.first().map(Vec::as_slice).unwrap_or_default() {
                        let old =
                            AuditState::new(&r.text(3)?, opt_time(r.opt_int(4)?)?, r.flag(5)?);
                        if !applies(&old) {
                            continue;
                        }
                        let (id, account, person) = (r.text(0)?, r.text(1)?, r.opt_text(2)?);
                        writes.push(audit::insert(&audit::Record {
                            at: now,
                            app_id: Some(&app),
                            account_id: Some(&id),
                            account: Some(&account),
                            person_id: person.as_deref(),
                            action,
                            by: &by,
                            old: Some(&old),
                            new: Some(&new),
                            detail: None,
                        }));
                    }
                    if writes.is_empty() {
                        return Ok((writes, false));
                    }
                    writes.insert(0, update);
                    Ok((writes, true))
                },
            )
            .await
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
}

/// How many columns [`ACCOUNT_COLS`] names: a query may add its own after them.
pub(crate) const ACCOUNT_COLS_COUNT: usize = 10;

pub(crate) fn account_row(r: &Row) -> Result<Account> {
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

/// LIKE patterns of a search: as typed, and folded (names and emails also match in any case:
/// the folded name against the folded search).
fn search_patterns(search: Option<&str>) -> (String, String) {
    let like = |s: &str| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    };
    let search = search.unwrap_or("");
    let folded = deadbolt_core::AccountNames::CaseInsensitive.key(search);
    (like(search), like(folded.as_str()))
}
