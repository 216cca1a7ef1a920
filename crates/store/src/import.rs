//! Bulk enrolment: the SDK's `importUsers` rows, people and accounts in one transaction.

use chrono::{DateTime, Utc};

use crate::audit::{self, AuditAction, AuditBy};
use crate::engine::Stmt;
use crate::{ms, new_id, normalize_email, ImportRow, Result, Store, StoreError};

impl Store {
    /// Imports rows in one transaction: each row creates its person (by email) if needed and
    /// enrols its account. Returns, per row, whether the account was new.
    /// Each new account is recorded in the audit trail, in the same transaction.
    pub async fn import(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<Vec<bool>> {
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
        let mut stmts: Vec<Stmt> = Vec::with_capacity(rows.len() * 3);
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
                    id.as_str().into(),
                    (&r.app_id).into(),
                    (&r.account).into(),
                    names.key(&r.account).into_string().into(),
                    email.into(),
                    state.as_str().into(),
                    ms(now),
                ],
            ));
            // Finds the account only when the insert above created it.
            stmts.push(audit::insert_for_account(
                now,
                AuditAction::Enrol,
                by,
                None,
                &id,
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
