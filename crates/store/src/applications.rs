//! Applications and their signing keys.

use chrono::{DateTime, Utc};

use crate::engine::Row;
use crate::{
    ms, new_id, opt_time, parse, time, AppSettings, Application, NewApplication, Result,
    SigningKeyRecord, Store, StoreError, APP_COLS,
};

pub(crate) const APP_BY_ISSUER_SQL: &str = sql!(
    "SELECT ",
    APP_COLS,
    " FROM applications WHERE issuer_norm = $1"
);

impl Store {
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
        self.one(APP_BY_ISSUER_SQL, vec![issuer_norm.into()], application)
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

    /// Stores a signing key; `secret_enc` is the secret already encrypted by the caller, bound to `id`.
    pub async fn create_signing_key(
        &self,
        id: &str,
        app_id: &str,
        secret_enc: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.create_labelled_signing_key(id, app_id, "", secret_enc, now)
            .await
    }

    /// Stores a signing key with the label its admin gave it.
    pub async fn create_labelled_signing_key(
        &self,
        id: &str,
        app_id: &str,
        label: &str,
        secret_enc: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO signing_keys (id, app_id, secret_enc, created_at, revoked_at, label) VALUES ($1, $2, $3, $4, NULL, $5)",
                vec![id.into(), app_id.into(), secret_enc.into(), ms(now), label.into()],
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
                 (SELECT u.last_used_at FROM key_usage u WHERE u.key_id = k.id), k.label \
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
                    label: r.text(6)?,
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
}

impl Store {
    /// Deletes an application with everything that is only its: its accounts and their
    /// schedules, its signing keys and their use, its attempts. One transaction: all or none.
    /// The change log's triggers name the application, so every process forgets it and its
    /// issuer is unknown to the next check.
    pub async fn delete_application(&self, id: &str) -> Result<()> {
        let rows = self
            .engine
            .transaction(Self::delete_application_stmts(id))
            .await?;
        if rows.last().is_none_or(|r| r.is_empty()) {
            return Err(StoreError::NotFound("application"));
        }
        Ok(())
    }

    /// The statements that delete application `id`; the last returns its id if it existed.
    pub(crate) fn delete_application_stmts(id: &str) -> Vec<crate::engine::Stmt> {
        let p = || vec![id.into()];
        vec![
            (
                "DELETE FROM schedules WHERE account_id IN (SELECT id FROM accounts WHERE app_id = $1)",
                p(),
            ),
            ("DELETE FROM accounts WHERE app_id = $1", p()),
            (
                "DELETE FROM key_usage WHERE key_id IN (SELECT id FROM signing_keys WHERE app_id = $1)",
                p(),
            ),
            ("DELETE FROM signing_keys WHERE app_id = $1", p()),
            ("DELETE FROM attempt_runs WHERE app_id = $1", p()),
            // The trail of a deleted application's accounts is its company's data: it goes too.
            ("DELETE FROM audit_trail WHERE app_id = $1", p()),
            ("DELETE FROM applications WHERE id = $1 RETURNING id", p()),
        ]
    }
}

pub(crate) fn application(r: &Row) -> Result<Application> {
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
