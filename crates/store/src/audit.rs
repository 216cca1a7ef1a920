//! The audit trail: every change to an account or to a person's locks, with who made it, when,
//! from where, and the state before and after. The statements here are added to the
//! transactions of the changes they record (`accounts.rs`, `persons.rs`, `schedules.rs`,
//! `import.rs`, `identity.rs`): a change without its row, or a row without its change, is never
//! committed. Reading it back, newest first and a page at a time, lives here too.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{Row, Stmt, Val};
use crate::{ms, opt_time, time, Result, Store, StoreError};

/// Who made a change, as the trail keeps it: the kind of actor (`person`, `admin`, `operator`,
/// `sdk`, `cli`, `check`), its id (a person's id, an SDK key's id), a name to show (an admin's
/// email), and the client address the request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditBy {
    pub actor: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub ip: Option<String>,
}

impl AuditBy {
    /// A check using up an account's "unlock for one sign-in".
    pub fn check() -> Self {
        Self {
            actor: "check".into(),
            ..Self::default()
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Lock,
    Unlock,
    UnlockWindow,
    UnlockOnce,
    RelockAfterUse,
    Enrol,
    Pair,
    Merge,
    LockAllOn,
    LockAllOff,
    ScheduleAdded,
    ScheduleRemoved,
    /// A portal user registered a passkey (its name in `detail`).
    PasskeyAdded,
    PasskeyRemoved,
    /// The operator turned the second-factor requirement on or off (`on`/`off` before and
    /// after).
    SecondFactorRequired,
}

const ACTIONS: [(AuditAction, &str); 15] = [
    (AuditAction::Lock, "lock"),
    (AuditAction::Unlock, "unlock"),
    (AuditAction::UnlockWindow, "unlock_window"),
    (AuditAction::UnlockOnce, "unlock_once"),
    (AuditAction::RelockAfterUse, "relock_after_use"),
    (AuditAction::Enrol, "enrol"),
    (AuditAction::Pair, "pair"),
    (AuditAction::Merge, "merge"),
    (AuditAction::LockAllOn, "lock_all_on"),
    (AuditAction::LockAllOff, "lock_all_off"),
    (AuditAction::ScheduleAdded, "schedule_added"),
    (AuditAction::ScheduleRemoved, "schedule_removed"),
    (AuditAction::PasskeyAdded, "passkey_added"),
    (AuditAction::PasskeyRemoved, "passkey_removed"),
    (AuditAction::SecondFactorRequired, "second_factor_required"),
];

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("", |(_, s)| s)
    }

    fn parse(s: &str) -> Result<Self> {
        ACTIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {s:?}")))
    }
}

/// A state before or after a change: an account's own state (`locked`, `unlocked`), its unlock
/// window and whether it is unlocked for one sign-in; or a person's master lock (`on`, `off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditState {
    pub state: String,
    pub until: Option<DateTime<Utc>>,
    pub once: bool,
}

impl AuditState {
    pub fn new(state: &str, until: Option<DateTime<Utc>>, once: bool) -> Self {
        Self {
            state: state.to_string(),
            until,
            once,
        }
    }
}

/// One row of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub app_id: Option<String>,
    pub account_id: Option<String>,
    /// The account's name when the change was made.
    pub account: Option<String>,
    /// The person the account belonged to, or whose locks changed.
    pub person_id: Option<String>,
    pub action: AuditAction,
    pub by: AuditBy,
    pub old: Option<AuditState>,
    pub new: Option<AuditState>,
    /// What else says what changed: a schedule's days and hours, the name merged away.
    pub detail: Option<String>,
}

/// What is known of a change before it is written; the store fills in the rest.
pub(crate) struct Record<'a> {
    pub at: DateTime<Utc>,
    pub app_id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub account: Option<&'a str>,
    pub person_id: Option<&'a str>,
    pub action: AuditAction,
    pub by: &'a AuditBy,
    pub old: Option<&'a AuditState>,
    pub new: Option<&'a AuditState>,
    pub detail: Option<&'a str>,
}

const INSERT: &str = "INSERT INTO audit_trail (at, app_id, account_id, account, person_id, action, actor, actor_id, actor_name, ip, \
     old_state, old_until, old_once, new_state, new_until, new_once, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// A row for an account as it is at this point of its transaction. `$1` is cast: PostgreSQL
/// types a bare parameter in a select list as text.
const INSERT_SELECT: &str = "INSERT INTO audit_trail (at, app_id, account_id, account, person_id, action, actor, actor_id, actor_name, ip, \
     old_state, old_until, old_once, new_state, new_until, new_once, detail) \
     SELECT CAST($1 AS BIGINT), a.app_id, a.id, a.account, a.person_id, $2, $3, $4, $5, $6, NULL, NULL, NULL, a.state, a.unlocked_until, a.relock_after_use, $7 \
     FROM accounts a WHERE a.id = $8";

/// Inserts one row.
pub(crate) fn insert(r: &Record<'_>) -> Stmt {
    let state = |s: Option<&AuditState>| -> [Val; 3] {
        match s {
            Some(s) => [
                s.state.as_str().into(),
                s.until.map(|t| t.timestamp_millis()).into(),
                s.once.into(),
            ],
            None => [Val::Null, Val::Null, Val::Null],
        }
    };
    let [os, ou, oo] = state(r.old);
    let [ns, nu, no] = state(r.new);
    (
        INSERT,
        vec![
            ms(r.at),
            r.app_id.into(),
            r.account_id.into(),
            r.account.into(),
            r.person_id.into(),
            r.action.as_str().into(),
            r.by.actor.as_str().into(),
            r.by.actor_id.as_deref().into(),
            r.by.actor_name.as_deref().into(),
            r.by.ip.as_deref().into(),
            os,
            ou,
            oo,
            ns,
            nu,
            no,
            r.detail.into(),
        ],
    )
}

/// Inserts a row for the account with id `account_id` as it is at this point of the
/// transaction (its state is the new state; there was no old one): an enrolment. Nothing when
/// no account has that id (an enrolment that found the account already there).
pub(crate) fn insert_for_account(
    at: DateTime<Utc>,
    action: AuditAction,
    by: &AuditBy,
    detail: Option<&str>,
    account_id: &str,
) -> Stmt {
    (
        INSERT_SELECT,
        vec![
            ms(at),
            action.as_str().into(),
            by.actor.as_str().into(),
            by.actor_id.as_deref().into(),
            by.actor_name.as_deref().into(),
            by.ip.as_deref().into(),
            detail.into(),
            account_id.into(),
        ],
    )
}

/// Inserts a row for the account found by `key` that has no person yet and is about to be
/// paired with `person_id` (its state does not change).
pub(crate) fn insert_pairing(
    at: DateTime<Utc>,
    by: &AuditBy,
    person_id: &str,
    app_id: &str,
    key: &str,
) -> Stmt {
    (
        "INSERT INTO audit_trail (at, app_id, account_id, account, person_id, action, actor, actor_id, actor_name, ip, \
         old_state, old_until, old_once, new_state, new_until, new_once, detail) \
         SELECT CAST($1 AS BIGINT), a.app_id, a.id, a.account, $2, 'pair', $3, $4, $5, $6, \
         a.state, a.unlocked_until, a.relock_after_use, a.state, a.unlocked_until, a.relock_after_use, NULL \
         FROM accounts a WHERE a.app_id = $7 AND a.account_key = $8 AND a.person_id IS NULL",
        vec![
            ms(at),
            person_id.into(),
            by.actor.as_str().into(),
            by.actor_id.as_deref().into(),
            by.actor_name.as_deref().into(),
            by.ip.as_deref().into(),
            app_id.into(),
            key.into(),
        ],
    )
}

const COLS: &str =
    "id, at, app_id, account_id, account, person_id, action, actor, actor_id, actor_name, ip, \
     old_state, old_until, old_once, new_state, new_until, new_once, detail";

fn entry(r: &Row) -> Result<AuditEntry> {
    let state = |i: usize| -> Result<Option<AuditState>> {
        Ok(match r.opt_text(i)? {
            Some(state) => Some(AuditState {
                state,
                until: opt_time(r.opt_int(i + 1)?)?,
                once: r.opt_int(i + 2)?.unwrap_or(0) != 0,
            }),
            None => None,
        })
    };
    Ok(AuditEntry {
        id: r.int(0)?,
        at: time(r.int(1)?)?,
        app_id: r.opt_text(2)?,
        account_id: r.opt_text(3)?,
        account: r.opt_text(4)?,
        person_id: r.opt_text(5)?,
        action: AuditAction::parse(&r.text(6)?)?,
        by: AuditBy {
            actor: r.text(7)?,
            actor_id: r.opt_text(8)?,
            actor_name: r.opt_text(9)?,
            ip: r.opt_text(10)?,
        },
        old: state(11)?,
        new: state(14)?,
        detail: r.opt_text(17)?,
    })
}

/// Pages start below this id: the newest first.
fn below(before: Option<i64>) -> Val {
    Val::Int(before.unwrap_or(i64::MAX))
}

impl Store {
    /// The trail of one account and of the changes of its person that apply to all their
    /// accounts (lock everything, schedules of all accounts): newest first, `limit` rows with
    /// ids below `before`.
    pub async fn account_audit(
        &self,
        account_id: &str,
        person_id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        self.all(
            sql!(
                "SELECT ",
                COLS,
                " FROM audit_trail WHERE id < $1 AND (account_id = $2 \
                 OR (account_id IS NULL AND person_id = $3)) ORDER BY id DESC LIMIT $4"
            ),
            vec![
                below(before),
                account_id.into(),
                person_id.into(),
                limit.into(),
            ],
            entry,
        )
        .await
    }

    /// The trail of an application's accounts: newest first, `limit` rows with ids below
    /// `before`. A person's own lock everything and schedules for all accounts are theirs, not
    /// the application's, and are not in it.
    pub async fn app_audit(
        &self,
        app_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        self.all(
            sql!(
                "SELECT ",
                COLS,
                " FROM audit_trail WHERE id < $1 AND app_id = $2 ORDER BY id DESC LIMIT $3"
            ),
            vec![below(before), app_id.into(), limit.into()],
            entry,
        )
        .await
    }
}

impl Store {
    /// The rows of one action that name no account: newest first.
    pub(crate) async fn audit_of_action(
        &self,
        action: AuditAction,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        self.all(
            sql!(
                "SELECT ",
                COLS,
                " FROM audit_trail WHERE action = $1 AND account_id IS NULL ORDER BY id DESC LIMIT $2"
            ),
            vec![action.as_str().into(), limit.into()],
            entry,
        )
        .await
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod audit_tests;
