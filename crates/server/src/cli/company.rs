//! `deadbolt company` and `deadbolt sdk-key`: the tenants and the keys their servers call the SDK
//! API with.

use chrono::{DateTime, Utc};
use deadbolt_store::{Company, SdkKeyRecord};
use serde::Serialize;
use serde_json::Value;

use super::{view, CompanyCmd, KeyCreated, SdkKeyCmd};
use crate::service::Service;

pub(super) async fn run(service: &Service, cmd: &CompanyCmd) -> anyhow::Result<Value> {
    match cmd {
        CompanyCmd::Create { name } => view(create(service, name).await?),
        CompanyCmd::List => view(list(service).await?),
    }
}

pub(super) async fn run_sdk_key(service: &Service, cmd: &SdkKeyCmd) -> anyhow::Result<Value> {
    match cmd {
        SdkKeyCmd::Create { company } => view(create_sdk_key(service, company).await?),
        SdkKeyCmd::Revoke { id } => view(revoke_sdk_key(service, id).await?),
        SdkKeyCmd::List { company } => view(sdk_keys(service, company).await?),
    }
}

/// A new company.
#[derive(Serialize)]
struct Created {
    id: String,
}

async fn create(service: &Service, name: &str) -> anyhow::Result<Created> {
    Ok(Created {
        id: service.create_company(name).await?.id,
    })
}

#[derive(Serialize)]
struct Companies {
    companies: Vec<Company>,
}

async fn list(service: &Service) -> anyhow::Result<Companies> {
    Ok(Companies {
        companies: service.companies().await?,
    })
}

async fn create_sdk_key(service: &Service, company: &str) -> anyhow::Result<KeyCreated> {
    let (id, secret) = service.create_sdk_key(company).await?;
    Ok(KeyCreated { id, secret })
}

#[derive(Serialize)]
struct SdkKeyRevoked<'a> {
    id: &'a str,
    revoked: bool,
}

async fn revoke_sdk_key<'a>(service: &Service, id: &'a str) -> anyhow::Result<SdkKeyRevoked<'a>> {
    service.revoke_sdk_key(id).await?;
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

async fn sdk_keys(service: &Service, company: &str) -> anyhow::Result<SdkKeys> {
    let keys = service.sdk_keys(company).await?;
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
