//! `deadbolt company` and `deadbolt sdk-key`: the tenants and the keys their servers call the SDK
//! API with.

use chrono::{DateTime, Utc};
use deadbolt_store::{Company, SdkKeyRecord};
use serde::Serialize;
use serde_json::Value;

use super::{view, CompanyCmd, KeyCreated, SdkKeyCmd};
use crate::ops::Deadbolt;

pub(super) async fn run(db: &Deadbolt, cmd: &CompanyCmd) -> anyhow::Result<Value> {
    match cmd {
        CompanyCmd::Create { name } => view(create(db, name).await?),
        CompanyCmd::List => view(list(db).await?),
    }
}

pub(super) async fn run_sdk_key(db: &Deadbolt, cmd: &SdkKeyCmd) -> anyhow::Result<Value> {
    match cmd {
        SdkKeyCmd::Create { company } => view(create_sdk_key(db, company).await?),
        SdkKeyCmd::Revoke { id } => view(revoke_sdk_key(db, id).await?),
        SdkKeyCmd::List { company } => view(sdk_keys(db, company).await?),
    }
}

/// A new company.
#[derive(Serialize)]
struct Created {
    id: String,
}

async fn create(db: &Deadbolt, name: &str) -> anyhow::Result<Created> {
    Ok(Created {
        id: db.create_company(name).await?.id,
    })
}

#[derive(Serialize)]
struct Companies {
    companies: Vec<Company>,
}

async fn list(db: &Deadbolt) -> anyhow::Result<Companies> {
    Ok(Companies {
        companies: db.store.companies().await?,
    })
}

async fn create_sdk_key(db: &Deadbolt, company: &str) -> anyhow::Result<KeyCreated> {
    let (id, secret) = db.create_sdk_key(company).await?;
    Ok(KeyCreated { id, secret })
}

#[derive(Serialize)]
struct SdkKeyRevoked<'a> {
    id: &'a str,
    revoked: bool,
}

async fn revoke_sdk_key<'a>(db: &Deadbolt, id: &'a str) -> anyhow::Result<SdkKeyRevoked<'a>> {
    db.revoke_sdk_key(id).await?;
    Ok(SdkKeyRevoked { id, revoked: true })
}

#[derive(Serialize)]
struct SdkKeys {
    keys: Vec<SdkKey>,
}

/// An SDK key without its secret's hash.
#[derive(Serialize)]
struct SdkKey {
    created_at: DateTime<Utc>,
    id: String,
    revoked_at: Option<DateTime<Utc>>,
}

async fn sdk_keys(db: &Deadbolt, company: &str) -> anyhow::Result<SdkKeys> {
    let keys = db.store.sdk_keys(company).await?;
    Ok(SdkKeys {
        keys: keys
            .into_iter()
            .map(|k: SdkKeyRecord| SdkKey {
                created_at: k.created_at,
                id: k.id,
                revoked_at: k.revoked_at,
            })
            .collect(),
    })
}
