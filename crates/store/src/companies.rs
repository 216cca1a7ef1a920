//! Companies and their SDK keys.

use chrono::{DateTime, Utc};

use const_format::concatcp;

use crate::applications::{application, APP_BY_ISSUER_SQL};
use crate::engine::{scalar, Row};
use crate::{
    ms, new_id, opt_time, time, Application, Company, Result, SdkKeyRecord, Store, StoreError,
};

const SDK_KEY_SQL: &str =
    "SELECT id, company_id, secret_hash, created_at, revoked_at FROM sdk_keys WHERE id = $1";

impl Store {
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

    /// A page of companies, oldest first: `limit` from `offset`.
    pub async fn companies_page(&self, offset: i64, limit: i64) -> Result<Vec<Company>> {
        self.all(
            "SELECT id, name, created_at FROM companies ORDER BY created_at, id LIMIT $1 OFFSET $2",
            vec![limit.into(), offset.into()],
            company,
        )
        .await
    }

    pub async fn company_count(&self) -> Result<i64> {
        scalar(
            &self
                .engine
                .query("SELECT count(*) FROM companies", vec![])
                .await?,
        )
    }

    pub async fn rename_company(&self, id: &str, name: &str) -> Result<()> {
        let rows = self
            .engine
            .write(
                "UPDATE companies SET name = $1 WHERE id = $2 RETURNING id",
                vec![name.into(), id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("company"));
        }
        Ok(())
    }

    /// Deletes a company with everything that is only its: its applications (their accounts,
    /// schedules on them, signing keys, attempts), SDK keys, admin roles and pending
    /// invitations. The persons stay: they may hold accounts elsewhere. One transaction, so a
    /// half-deleted company is never seen; the change log's triggers name each application.
    pub async fn delete_company(&self, id: &str) -> Result<()> {
        const APPS: &str = "(SELECT id FROM applications WHERE company_id = $1)";
        let p = || vec![id.into()];
        let rows = self
            .engine
            .transaction(vec![
                (
                    concatcp!(
                        "DELETE FROM schedules WHERE account_id IN (SELECT id FROM accounts WHERE app_id IN ",
                        APPS,
                        ")"
                    ),
                    p(),
                ),
                (concatcp!("DELETE FROM accounts WHERE app_id IN ", APPS), p()),
                (
                    concatcp!(
                        "DELETE FROM key_usage WHERE key_id IN (SELECT id FROM signing_keys WHERE app_id IN ",
                        APPS,
                        ")"
                    ),
                    p(),
                ),
                (concatcp!("DELETE FROM signing_keys WHERE app_id IN ", APPS), p()),
                (concatcp!("DELETE FROM attempt_runs WHERE app_id IN ", APPS), p()),
                (concatcp!("DELETE FROM audit_trail WHERE app_id IN ", APPS), p()),
                ("DELETE FROM applications WHERE company_id = $1", p()),
                ("DELETE FROM sdk_keys WHERE company_id = $1", p()),
                ("DELETE FROM portal_roles WHERE company_id = $1", p()),
                ("DELETE FROM portal_links WHERE company_id = $1", p()),
                // Its webhook (and secret) and their log go with it.
                ("DELETE FROM webhook_deliveries WHERE company_id = $1", p()),
                ("DELETE FROM webhooks WHERE company_id = $1", p()),
                ("DELETE FROM companies WHERE id = $1 RETURNING id", p()),
            ])
            .await?;
        if rows.last().is_none_or(|r| r.is_empty()) {
            return Err(StoreError::NotFound("company"));
        }
        Ok(())
    }

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
        self.one(SDK_KEY_SQL, vec![id.into()], sdk_key).await
    }

    /// An SDK key, and the application whose normalised issuer is `issuer_norm`: what every
    /// SDK call reads before it acts, in one trip to the store. `None` for the issuer (a name
    /// no application can have) reads the key alone.
    pub async fn sdk_key_and_application(
        &self,
        key_id: &str,
        issuer_norm: Option<&str>,
    ) -> Result<(Option<SdkKeyRecord>, Option<Application>)> {
        let mut stmts = vec![(SDK_KEY_SQL, vec![key_id.into()])];
        if let Some(issuer) = issuer_norm {
            stmts.push((APP_BY_ISSUER_SQL, vec![issuer.into()]));
        }
        let rows = self.engine.queries(stmts).await?;
        let first = |i: usize| rows.get(i).and_then(|r| r.first());
        Ok((
            first(0).map(sdk_key).transpose()?,
            first(1).map(application).transpose()?,
        ))
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
}

pub(crate) fn company(r: &Row) -> Result<Company> {
    Ok(Company {
        id: r.text(0)?,
        name: r.text(1)?,
        created_at: time(r.int(2)?)?,
    })
}

pub(crate) fn sdk_key(r: &Row) -> Result<SdkKeyRecord> {
    Ok(SdkKeyRecord {
        id: r.text(0)?,
        company_id: r.text(1)?,
        secret_hash: r.text(2)?,
        created_at: time(r.int(3)?)?,
        revoked_at: opt_time(r.opt_int(4)?)?,
    })
}
