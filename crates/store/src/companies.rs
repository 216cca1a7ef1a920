//! Companies and their SDK keys.

use chrono::{DateTime, Utc};

use crate::engine::Row;
use crate::{ms, new_id, opt_time, time, Company, Result, SdkKeyRecord, Store, StoreError};

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
