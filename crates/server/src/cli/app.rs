//! `deadbolt app` and `deadbolt key`: applications, their settings and the keys that sign their
//! checks.

use chrono::{DateTime, Utc};
use deadbolt_core::{AccountNames, AccountState, UnenrolledPolicy};
use deadbolt_store::{AppSettings, Application, SigningKeyRecord};
use serde::Serialize;
use serde_json::Value;

use super::{view, AppCmd, KeyCmd, KeyCreated};
use crate::service::Service;

pub(super) async fn run(service: &Service, cmd: &AppCmd) -> anyhow::Result<Value> {
    match cmd {
        AppCmd::Create {
            company,
            issuer,
            name,
            unenrolled,
            default_state,
            account_names,
        } => {
            let settings = NewApp {
                unenrolled: *unenrolled,
                default_state: *default_state,
                account_names: *account_names,
            };
            view(create(service, company, issuer, name.as_deref(), settings).await?)
        }
        AppCmd::List { company } => view(list(service, company.as_deref()).await?),
        AppCmd::Show { id } => view(show(service, id).await?),
        AppCmd::Set {
            id,
            unenrolled,
            default_state,
            audit_mode,
            account_names,
        } => {
            let changes = Changes {
                unenrolled: *unenrolled,
                default_state: *default_state,
                audit_mode: *audit_mode,
                account_names: *account_names,
            };
            view(set(service, id, changes).await?)
        }
    }
}

pub(super) async fn run_key(service: &Service, cmd: &KeyCmd) -> anyhow::Result<Value> {
    match cmd {
        KeyCmd::Create { app } => view(create_key(service, app).await?),
        KeyCmd::Revoke { id } => view(revoke_key(service, id).await?),
        KeyCmd::List { app } => view(keys(service, app).await?),
    }
}

/// The settings a new application starts with.
struct NewApp {
    unenrolled: UnenrolledPolicy,
    default_state: AccountState,
    account_names: AccountNames,
}

/// A new application.
#[derive(Serialize)]
struct Created {
    account_names: AccountNames,
    id: String,
    issuer: String,
}

async fn create(
    service: &Service,
    company: &str,
    issuer: &str,
    name: Option<&str>,
    settings: NewApp,
) -> anyhow::Result<Created> {
    let mut app = service
        .create_application(
            company,
            issuer,
            name,
            settings.unenrolled,
            settings.default_state,
        )
        .await?;
    if app.account_names != settings.account_names {
        app = service
            .set_account_names(&app.id, settings.account_names)
            .await?;
    }
    Ok(Created {
        account_names: app.account_names,
        id: app.id,
        issuer: app.issuer,
    })
}

#[derive(Serialize)]
struct Applications {
    applications: Vec<Application>,
}

async fn list(service: &Service, company: Option<&str>) -> anyhow::Result<Applications> {
    Ok(Applications {
        applications: service.applications(company).await?,
    })
}

async fn show(service: &Service, id: &str) -> anyhow::Result<Application> {
    Ok(service.application(id).await?)
}

/// The settings `app set` changes; those not given stay as they are.
struct Changes {
    unenrolled: Option<UnenrolledPolicy>,
    default_state: Option<AccountState>,
    audit_mode: Option<bool>,
    account_names: Option<AccountNames>,
}

/// The application with its new settings.
async fn set(service: &Service, id: &str, changes: Changes) -> anyhow::Result<Application> {
    // Refused (nothing changed) while two enrolled names would be one account.
    if let Some(names) = changes.account_names {
        service.set_account_names(id, names).await?;
    }
    let app = service.application(id).await?;
    let settings = AppSettings {
        unenrolled: changes.unenrolled.unwrap_or(app.unenrolled),
        default_state: changes.default_state.unwrap_or(app.default_state),
        audit_mode: changes.audit_mode.unwrap_or(app.audit_mode),
    };
    Ok(service.update_application(id, &settings).await?)
}

async fn create_key(service: &Service, app: &str) -> anyhow::Result<KeyCreated> {
    let (id, secret) = service.create_signing_key(app).await?;
    Ok(KeyCreated { id, secret })
}

#[derive(Serialize)]
struct KeyRevoked<'a> {
    app: String,
    id: &'a str,
    revoked: bool,
}

async fn revoke_key<'a>(service: &Service, id: &'a str) -> anyhow::Result<KeyRevoked<'a>> {
    Ok(KeyRevoked {
        app: service.revoke_signing_key(id).await?,
        id,
        revoked: true,
    })
}

#[derive(Serialize)]
struct SigningKeys {
    keys: Vec<SigningKey>,
}

/// A signing key without its secret.
#[derive(Serialize)]
struct SigningKey {
    created_at: DateTime<Utc>,
    id: String,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

async fn keys(service: &Service, app: &str) -> anyhow::Result<SigningKeys> {
    let keys = service.signing_keys(app).await?;
    Ok(SigningKeys {
        keys: keys
            .into_iter()
            .map(|k: SigningKeyRecord| SigningKey {
                created_at: k.created_at,
                id: k.id,
                last_used_at: k.last_used_at,
                revoked_at: k.revoked_at,
            })
            .collect(),
    })
}
