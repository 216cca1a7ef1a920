//! `deadbolt account` and `deadbolt attempts`: an application's enrolled accounts, their state,
//! and the sign-ins its checks were asked about.

use chrono::{DateTime, Utc};
use deadbolt_core::duration::parse_duration;
use deadbolt_core::AccountState;
use deadbolt_store::{Account, Attempt, Collision};
use serde::Serialize;
use serde_json::Value;

use super::{view, AccountCmd};
use crate::service::{By, Service};

pub(super) async fn run(service: &Service, cmd: &AccountCmd) -> anyhow::Result<Value> {
    match cmd {
        AccountCmd::Enroll {
            app,
            account,
            person,
        } => view(enroll(service, app, account, person.as_deref()).await?),
        AccountCmd::Lock { app, account } => view(lock(service, app, account).await?),
        AccountCmd::Unlock {
            app,
            account,
            once: true,
            ..
        } => view(unlock_once(service, app, account).await?),
        AccountCmd::Unlock {
            app, account, for_, ..
        } => view(unlock(service, app, account, for_.as_deref()).await?),
        AccountCmd::Show { app, account } => view(show(service, app, account).await?),
        AccountCmd::List { app, search, limit } => {
            view(list(service, app, search.as_deref(), *limit).await?)
        }
        AccountCmd::Collisions { app } => view(collisions(service, app.as_deref()).await?),
        AccountCmd::Merge { app, into, from } => view(merge(service, app, into, from).await?),
    }
}

/// The account a name is enrolled as, and whether this enrolled it.
#[derive(Serialize)]
struct Enrolled {
    account: String,
    created: bool,
    id: String,
    state: AccountState,
}

async fn enroll(
    service: &Service,
    app: &str,
    account: &str,
    person: Option<&str>,
) -> anyhow::Result<Enrolled> {
    let (acc, created) = service.enroll(&By::CLI, app, account, person).await?;
    Ok(Enrolled {
        account: acc.account,
        created,
        id: acc.id,
        state: acc.state,
    })
}

/// The account as named on the command line.
#[derive(Serialize)]
struct Locked<'a> {
    account: &'a str,
    app: &'a str,
    locked: bool,
}

async fn lock<'a>(service: &Service, app: &'a str, account: &'a str) -> anyhow::Result<Locked<'a>> {
    service.lock(&By::CLI, app, account).await?;
    Ok(Locked {
        account,
        app,
        locked: true,
    })
}

#[derive(Serialize)]
struct UnlockedOnce<'a> {
    account: &'a str,
    app: &'a str,
    locked: bool,
    relock_after_use: bool,
}

async fn unlock_once<'a>(
    service: &Service,
    app: &'a str,
    account: &'a str,
) -> anyhow::Result<UnlockedOnce<'a>> {
    service.unlock_once(&By::CLI, app, account).await?;
    Ok(UnlockedOnce {
        account,
        app,
        locked: false,
        relock_after_use: true,
    })
}

/// `unlocked_until` is null for an unlock for good.
#[derive(Serialize)]
struct Unlocked<'a> {
    account: &'a str,
    app: &'a str,
    locked: bool,
    unlocked_until: Option<DateTime<Utc>>,
}

/// `window` as written after --for (90s, 15m); `None` unlocks for good.
async fn unlock<'a>(
    service: &Service,
    app: &'a str,
    account: &'a str,
    window: Option<&str>,
) -> anyhow::Result<Unlocked<'a>> {
    let window = window.map(parse_duration).transpose()?;
    let until = service.unlock(&By::CLI, app, account, window).await?;
    Ok(Unlocked {
        account,
        app,
        locked: false,
        unlocked_until: until,
    })
}

/// The account and what a check for it would answer now.
#[derive(Serialize)]
struct Status {
    account: Account,
    locked: bool,
    reason: &'static str,
}

async fn show(service: &Service, app: &str, account: &str) -> anyhow::Result<Status> {
    let application = service.application(app).await?;
    let acc = service.account(app, account).await?;
    let d = service.status(&application, account).await?;
    Ok(Status {
        account: acc,
        locked: d.locked,
        reason: d.reason.as_str(),
    })
}

#[derive(Serialize)]
struct Accounts {
    accounts: Vec<Account>,
}

async fn list(
    service: &Service,
    app: &str,
    search: Option<&str>,
    limit: i64,
) -> anyhow::Result<Accounts> {
    // An unknown application is an error, not an empty list.
    service.application(app).await?;
    Ok(Accounts {
        accounts: service
            .accounts(app, search, limit.clamp(1, 10_000))
            .await?,
    })
}

#[derive(Serialize)]
struct Collisions {
    collisions: Vec<Collision>,
}

async fn collisions(service: &Service, app: Option<&str>) -> anyhow::Result<Collisions> {
    Ok(Collisions {
        collisions: service.account_collisions(app).await?,
    })
}

/// The account that stayed, and the name merged into it.
#[derive(Serialize)]
struct Merged<'a> {
    account: Account,
    merged: &'a str,
}

async fn merge<'a>(
    service: &Service,
    app: &str,
    into: &str,
    from: &'a str,
) -> anyhow::Result<Merged<'a>> {
    Ok(Merged {
        account: service.merge_accounts(&By::CLI, app, into, from).await?,
        merged: from,
    })
}

#[derive(Serialize)]
pub(super) struct Attempts {
    attempts: Vec<AttemptView>,
}

/// An attempt without the store's row id, application and key.
#[derive(Serialize)]
struct AttemptView {
    account: String,
    at: DateTime<Utc>,
    device: Option<String>,
    integration_type: Option<String>,
    ip: Option<String>,
    location: Option<String>,
    locked: bool,
    reason: String,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            account: a.account,
            at: a.at,
            device: a.device,
            integration_type: a.integration_type,
            ip: a.ip,
            location: a.location,
            locked: a.locked,
            reason: a.reason,
        }
    }
}

/// The application's attempts, newest first.
pub(super) async fn attempts(service: &Service, app: &str, limit: i64) -> anyhow::Result<Attempts> {
    service.application(app).await?;
    let list = service.attempts(app, limit).await?;
    Ok(Attempts {
        attempts: list.into_iter().map(AttemptView::from).collect(),
    })
}

#[derive(Serialize)]
pub(super) struct Pruned {
    before: DateTime<Utc>,
    removed: u64,
}

/// A date (midnight UTC) or an RFC 3339 time.
fn parse_before(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        anyhow::anyhow!(
            "--before {s:?}: write a date like 2026-09-01 or a time like 2026-09-01T12:00:00Z"
        )
    })?;
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// Removes every attempt recorded before `before`, in small transactions (a server on the
/// same store goes on answering).
pub(super) async fn prune_attempts(service: &Service, before: &str) -> anyhow::Result<Pruned> {
    let before = parse_before(before)?;
    let removed = service.remove_attempts_before(before).await?;
    Ok(Pruned { before, removed })
}
