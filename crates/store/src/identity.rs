//! Account identity in the store: the lookup keys SQL cannot compute (case folding), names that
//! fold together before they were compared that way, switching an application between
//! case-insensitive and exact names, and merging two spellings of one account.

use chrono::{DateTime, Utc};
use deadbolt_core::normalize::normalize_name;
use deadbolt_core::{AccountNames, AccountState};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::audit::{self, AuditAction, AuditBy, AuditState};
use crate::engine::Stmt;
use crate::{ms, parse, Account, Result, Store, StoreError};

/// Names of one application that fold to the same key and are not merged yet. Until they are,
/// a check for any of them answers locked if any of them would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collision {
    pub app_id: String,
    pub issuer: String,
    /// As enrolled, the first enrolled first.
    pub names: Vec<String>,
}

/// Accounts without a lookup key, oldest first. Run at every open (each CLI command too): it
/// reads the partial index `accounts_unkeyed`, not every account.
pub(crate) const UNKEYED_SQL: &str =
    "SELECT a.id, a.app_id, a.account, ap.account_names FROM accounts a \
     JOIN applications ap ON ap.id = a.app_id WHERE a.account_key IS NULL \
     ORDER BY a.created_at, a.id";

/// Key updates written per transaction when keys are filled in.
const KEY_CHUNK: usize = 5_000;

const COLLISION_COLS: &str = "SELECT a.app_id, ap.issuer, a.account_key, a.account FROM accounts a \
     JOIN applications ap ON ap.id = a.app_id \
     WHERE EXISTS (SELECT 1 FROM accounts b WHERE b.app_id = a.app_id AND b.account_key = a.account_key AND b.key_dup > 0)";

impl Store {
    /// Fills in what SQL cannot compute, for rows that lack it or were computed by older rules:
    /// the lookup key of every account (written by an older Deadbolt, or by hand), and each
    /// application's normalised issuer. Names that fold to an existing key are kept apart
    /// (`key_dup` > 0) and reported by [`Store::account_collisions`].
    pub(crate) async fn repair_keys(&self) -> Result<()> {
        for r in self
            .engine
            .query("SELECT id, issuer, issuer_norm FROM applications", vec![])
            .await?
        {
            let (id, issuer, stored) = (r.text(0)?, r.text(1)?, r.text(2)?);
            let norm = normalize_name(&issuer);
            if norm == stored {
                continue;
            }
            let renamed = self
                .engine
                .write(
                    "UPDATE applications SET issuer_norm = $1 WHERE id = $2",
                    vec![norm.as_str().into(), id.as_str().into()],
                )
                .await;
            match renamed {
                Ok(_) => {}
                // Two issuers that differ only by a default port now name one application:
                // the one that already had the name keeps it.
                Err(StoreError::Conflict(_)) => tracing::warn!(
                    application = %id, issuer = %issuer,
                    "another application's issuer is the same name once default ports are dropped; rename one of them"
                ),
                Err(e) => return Err(e),
            }
        }

        let rows = self.engine.query(UNKEYED_SQL, vec![]).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut next_dup: HashMap<(String, String), i64> = HashMap::new();
        for r in self
            .engine
            .query(
                "SELECT app_id, account_key, MAX(key_dup) FROM accounts \
                 WHERE account_key IS NOT NULL GROUP BY app_id, account_key",
                vec![],
            )
            .await?
        {
            next_dup.insert((r.text(0)?, r.text(1)?), r.int(2)? + 1);
        }
        let mut stmts: Vec<Stmt> = Vec::with_capacity(rows.len());
        for r in &rows {
            let names: AccountNames = parse(&r.text(3)?)?;
            let app_id = r.text(1)?;
            let key = names.key(&r.text(2)?).into_string();
            let dup = next_dup.entry((app_id, key.clone())).or_insert(0);
            stmts.push((
                "UPDATE accounts SET account_key = $1, key_dup = $2 WHERE id = $3 AND account_key IS NULL",
                vec![key.into(), (*dup).into(), r.text(0)?.into()],
            ));
            *dup += 1;
        }
        let total = stmts.len();
        let mut stmts = stmts.into_iter();
        loop {
            let chunk: Vec<Stmt> = stmts.by_ref().take(KEY_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            self.engine.transaction(chunk).await?;
        }
        tracing::info!(accounts = total, "account lookup keys filled in");
        Ok(())
    }

    /// Names that fold together and are not merged yet, of one application or of all.
    pub async fn account_collisions(&self, app_id: Option<&str>) -> Result<Vec<Collision>> {
        let rows = match app_id {
            Some(id) => {
                self.engine
                    .query(
                        const_format::concatcp!(
                            COLLISION_COLS,
                            " AND a.app_id = $1 ORDER BY a.app_id, a.account_key, a.key_dup"
                        ),
                        vec![id.into()],
                    )
                    .await?
            }
            None => {
                self.engine
                    .query(
                        const_format::concatcp!(
                            COLLISION_COLS,
                            " ORDER BY a.app_id, a.account_key, a.key_dup"
                        ),
                        vec![],
                    )
                    .await?
            }
        };
        let mut out: Vec<Collision> = Vec::new();
        let mut last: Option<(String, String)> = None;
        for r in rows {
            let group = (r.text(0)?, r.text(2)?);
            if last.as_ref() != Some(&group) {
                out.push(Collision {
                    app_id: group.0.clone(),
                    issuer: r.text(1)?,
                    names: Vec::new(),
                });
                last = Some(group);
            }
            if let Some(c) = out.last_mut() {
                c.names.push(r.text(3)?);
            }
        }
        Ok(out)
    }

    /// Switches how an application compares account names. Refused, with the names, when
    /// case-insensitive names would make two enrolled accounts one: merge them first.
    pub async fn set_account_names(&self, app_id: &str, names: AccountNames) -> Result<()> {
        let rows = self
            .engine
            .query(
                "SELECT id, account FROM accounts WHERE app_id = $1 ORDER BY created_at, id",
                vec![app_id.into()],
            )
            .await?;
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stmts: Vec<Stmt> = vec![
            (
                "UPDATE applications SET account_names = $1 WHERE id = $2 RETURNING id",
                vec![names.as_str().into(), app_id.into()],
            ),
            // Keys are cleared first so that no new key meets an old one half way.
            (
                "UPDATE accounts SET account_key = NULL, key_dup = 0 WHERE app_id = $1",
                vec![app_id.into()],
            ),
        ];
        for r in &rows {
            let name = r.text(1)?;
            let key = names.key(&name).into_string();
            stmts.push((
                "UPDATE accounts SET account_key = $1 WHERE id = $2",
                vec![key.as_str().into(), r.text(0)?.into()],
            ));
            groups.entry(key).or_default().push(name);
        }
        let clashes: Vec<String> = groups
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|g| format!("[{}]", g.join(", ")))
            .collect();
        if !clashes.is_empty() {
            let shown = clashes.len().min(20);
            let more = if clashes.len() > shown {
                format!(" and {} more", clashes.len() - shown)
            } else {
                String::new()
            };
            return Err(StoreError::Refused(format!(
                "names that would be one account: {}{more}; merge them first (deadbolt account merge)",
                clashes[..shown].join(", ")
            )));
        }
        let out = self.engine.transaction(stmts).await?;
        if out.first().is_none_or(Vec::is_empty) {
            return Err(StoreError::NotFound("application"));
        }
        // An account enrolled while the keys were rewritten has none yet.
        self.repair_keys().await
    }

    /// Merges the account named `from` into the account named `into` (both names exactly as
    /// enrolled, spellings of one name): `into` keeps its name and gains `from`'s person and
    /// schedules; it is locked if either was locked (unlock windows close); `from` is removed.
    pub async fn merge_accounts(
        &self,
        app_id: &str,
        into: &str,
        from: &str,
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<Account> {
        let find = |name: &str| {
            self.one(
                const_format::concatcp!(
                    "SELECT ",
                    crate::ACCOUNT_COLS,
                    ", a.account_key, a.key_dup FROM accounts a LEFT JOIN persons p ON p.id = a.person_id \
                     WHERE a.app_id = $1 AND a.account = $2"
                ),
                vec![app_id.into(), name.into()],
                |r| Ok((crate::account_row(r)?, r.text(10)?, r.int(11)?)),
            )
        };
        let (keep, key, _) = find(into)
            .await?
            .ok_or(StoreError::NotFound("account to merge into"))?;
        let (gone, _, _) = find(from)
            .await?
            .ok_or(StoreError::NotFound("account to merge"))?;
        if keep.id == gone.id {
            return Err(StoreError::Refused(
                "an account cannot be merged with itself".into(),
            ));
        }
        // Spellings of one name: equal once folded, whatever the application's setting (an
        // application with exact names merges them before it can switch to case-insensitive).
        if AccountNames::CaseInsensitive.key(into) != AccountNames::CaseInsensitive.key(from) {
            return Err(StoreError::Refused(format!(
                "{into:?} and {from:?} are different names: only spellings of one name are merged"
            )));
        }
        let person = match (&keep.person_id, &gone.person_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(StoreError::Refused(format!(
                    "{into:?} and {from:?} belong to different people"
                )))
            }
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let locked = keep.state == AccountState::Locked || gone.state == AccountState::Locked;
        let state = if locked {
            AccountState::Locked
        } else {
            AccountState::Unlocked
        };
        let relock = !locked && (keep.relock_after_use || gone.relock_after_use);
        // The survivor's change is the merge's record; the name merged away is its detail.
        let record = audit::insert(&audit::Record {
            at: now,
            app_id: Some(app_id),
            account_id: Some(&keep.id),
            account: Some(&keep.account),
            person_id: person.as_deref(),
            action: AuditAction::Merge,
            by,
            old: Some(&AuditState::new(
                keep.state.as_str(),
                keep.unlocked_until,
                keep.relock_after_use,
            )),
            new: Some(&AuditState::new(state.as_str(), None, relock)),
            detail: Some(&gone.account),
        });
        self.engine
            .transaction(vec![
                record,
                (
                    "UPDATE schedules SET account_id = $1 WHERE account_id = $2",
                    vec![keep.id.as_str().into(), gone.id.as_str().into()],
                ),
                (
                    "DELETE FROM accounts WHERE id = $1",
                    vec![gone.id.as_str().into()],
                ),
                (
                    "UPDATE accounts SET person_id = $1, state = $2, unlocked_until = NULL, relock_after_use = $3, updated_at = $4 WHERE id = $5",
                    vec![person.into(), state.as_str().into(), relock.into(), ms(now), keep.id.as_str().into()],
                ),
                // The survivor becomes the name's first spelling when that was the one removed.
                (
                    "UPDATE accounts SET key_dup = 0 WHERE id = $1 AND NOT EXISTS \
                     (SELECT 1 FROM accounts b WHERE b.app_id = $2 AND b.account_key = $3 AND b.key_dup = 0 AND b.id <> $1)",
                    vec![keep.id.as_str().into(), app_id.into(), key.into()],
                ),
            ])
            .await?;
        self.account_by_id(&keep.id)
            .await?
            .ok_or(StoreError::NotFound("account"))
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod identity_tests;
