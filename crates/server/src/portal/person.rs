//! A person's pages: their accounts and why each is locked or not, lock and unlock, lock
//! everything, blocked attempts (live), schedules and pairing codes.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use chrono_tz::Tz;
use deadbolt_core::{Reason, Schedule};
use deadbolt_store::{Account, Application, Attempt, ScheduleOwner};
use futures_util::Stream;
use rand::Rng;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use super::csrf::CsrfForm;
use super::error::PageError;
use super::live;
use super::pages::{fragment, local_time, opt, render, Layout};
use super::session::Me;
use super::{Portal, PortalState};
use crate::crypto::token_hash;
use crate::service::parse_time_zone;

/// How long "this was me" unlocks an account.
pub const THIS_WAS_ME_MINUTES: i64 = 5;
/// How long a pairing code works.
pub const PAIRING_MINUTES: i64 = 10;
const FEED_LEN: i64 = 50;

pub struct AccountView {
    pub id: String,
    pub account: String,
    pub locked: bool,
    pub why: String,
}

pub struct AppGroup {
    pub name: String,
    pub issuer: String,
    pub accounts: Vec<AccountView>,
}

/// Why an account is (not) locked, in the person's words.
pub fn explain(reason: Reason, acc: &Account, tz: Tz) -> String {
    match reason {
        Reason::MasterLock => "Locked: lock everything is on".into(),
        Reason::UnlockWindow => match acc.unlocked_until {
            Some(t) => format!("Unlocked until {}", local_time(t, tz)),
            None => "Unlocked for a while".into(),
        },
        Reason::Schedule => "Locked by a schedule".into(),
        Reason::AccountLocked => "Locked until you unlock it".into(),
        Reason::AccountUnlocked if acc.relock_after_use => {
            "Unlocked for the next sign-in only".into()
        }
        Reason::AccountUnlocked => "Unlocked until you lock it".into(),
        Reason::UnenrolledAllow => "Not enrolled".into(),
        Reason::UnenrolledDeny => "Not enrolled (refused)".into(),
    }
}

/// Why an account is (not) locked, as a company admin reads it.
pub fn explain_for_admin(reason: Reason, acc: &Account) -> String {
    match reason {
        Reason::MasterLock => "Locked: the person locked everything".into(),
        Reason::Schedule => "Locked by the person's schedule".into(),
        Reason::AccountLocked => "Locked (its own state)".into(),
        Reason::AccountUnlocked if acc.relock_after_use => "Unlocked for one sign-in".into(),
        Reason::AccountUnlocked => "Unlocked (its own state)".into(),
        r => explain(r, acc, chrono_tz::UTC),
    }
}

async fn apps_by_id(
    s: &PortalState,
    ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, Application>, PageError> {
    let mut apps = HashMap::new();
    for id in ids {
        if let std::collections::hash_map::Entry::Vacant(slot) = apps.entry(id) {
            if let Some(app) = s.service.find_application(slot.key()).await? {
                slot.insert(app);
            }
        }
    }
    Ok(apps)
}

async fn groups(s: &PortalState, me: &Me) -> Result<Vec<AppGroup>, PageError> {
    let accounts = s.service.person_accounts(&me.person.id).await?;
    let apps = apps_by_id(s, accounts.iter().map(|a| a.app_id.clone())).await?;
    let mut groups: Vec<AppGroup> = Vec::new();
    for acc in accounts {
        let Some(app) = apps.get(&acc.app_id) else {
            continue;
        };
        let d = s.service.status(app, &acc.account).await?;
        let view = AccountView {
            id: acc.id.clone(),
            account: acc.account.clone(),
            locked: d.locked,
            why: explain(d.reason, &acc, me.person.time_zone),
        };
        match groups.iter_mut().find(|g| g.issuer == app.issuer) {
            Some(g) => g.accounts.push(view),
            None => groups.push(AppGroup {
                name: app.name.clone(),
                issuer: app.issuer.clone(),
                accounts: vec![view],
            }),
        }
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

#[derive(Template)]
#[template(path = "me_accounts.html")]
struct AccountsSection {
    csrf: String,
    master_locked: bool,
    groups: Vec<AppGroup>,
}

async fn accounts_section(s: &PortalState, me: &Me) -> Result<String, PageError> {
    // Re-read the person: the master lock may have changed since the session was loaded.
    let master_locked = s
        .service
        .person(&me.person.id)
        .await?
        .is_some_and(|p| p.master_locked);
    fragment(&AccountsSection {
        csrf: me.csrf.clone(),
        master_locked,
        groups: groups(s, me).await?,
    })
}

pub struct AttemptView {
    pub id: i64,
    pub at: String,
    pub app: String,
    pub account: String,
    pub ip: String,
    pub device: String,
    pub location: String,
}

#[derive(Template)]
#[template(path = "me_attempt_rows.html")]
struct AttemptRows {
    csrf: String,
    attempts: Vec<AttemptView>,
}

async fn attempt_rows(s: &PortalState, me: &Me, attempts: &[Attempt]) -> Result<String, PageError> {
    let apps = apps_by_id(s, attempts.iter().map(|a| a.app_id.clone())).await?;
    let attempts = attempts
        .iter()
        .map(|a| AttemptView {
            id: a.id,
            at: local_time(a.at, me.person.time_zone),
            app: apps
                .get(&a.app_id)
                .map_or_else(|| a.app_id.clone(), |app| app.name.clone()),
            account: a.account.clone(),
            ip: opt(&a.ip),
            device: opt(&a.device),
            location: opt(&a.location),
        })
        .collect();
    fragment(&AttemptRows {
        csrf: me.csrf.clone(),
        attempts,
    })
}

#[derive(Template)]
#[template(path = "me.html")]
struct AccountsPage {
    l: Layout,
    accounts_html: String,
    attempts_html: String,
    has_attempts: bool,
}

pub async fn accounts_page(
    axum::extract::State(s): State<PortalState>,
    me: Me,
) -> Result<Response, PageError> {
    let attempts = s
        .service
        .person_blocked_attempts(&me.person.id, FEED_LEN)
        .await?;
    let page = AccountsPage {
        l: Layout::signed_in("My accounts", &me, "/me"),
        accounts_html: accounts_section(&s, &me).await?,
        attempts_html: attempt_rows(&s, &me, &attempts).await?,
        has_attempts: !attempts.is_empty(),
    };
    Ok(render(&page)?.into_response())
}

/// Live updates for the accounts page: new blocked attempts, and the accounts again whenever
/// anything a check reads has changed (a lock from another tab, the CLI, a company admin).
/// Polls the store, so changes made through any replica show up.
pub async fn events(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    me: Me,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let last = s
        .service
        .person_blocked_attempts(&me.person.id, 1)
        .await?
        .first()
        .map_or(0, |a| a.id);
    let version = s.service.version().await?;
    let session_hash = me.session_hash.clone();
    let feed = PersonFeed { me, last, version };
    Ok(live::stream(s, portal, session_hash, feed))
}

/// A person's page, live: their new blocked attempts, and their accounts when anything changed.
struct PersonFeed {
    me: Me,
    /// The newest attempt sent.
    last: i64,
    /// The store's version when the accounts were last sent.
    version: i64,
}

impl live::Feed for PersonFeed {
    async fn poll(&mut self, s: &PortalState) -> Option<Event> {
        match s
            .service
            .person_blocked_attempts_after(&self.me.person.id, self.last, FEED_LEN)
            .await
        {
            Ok(new) if !new.is_empty() => {
                self.last = new.last().map_or(self.last, |a| a.id);
                let newest_first: Vec<Attempt> = new.into_iter().rev().collect();
                if let Ok(html) = attempt_rows(s, &self.me, &newest_first).await {
                    return Some(Event::default().event("attempts").data(html));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "live attempts: store read failed"),
        }
        if let Ok(v) = s.service.version().await {
            if v != self.version {
                self.version = v;
                if let Ok(html) = accounts_section(s, &self.me).await {
                    return Some(Event::default().event("accounts").data(html));
                }
            }
        }
        None
    }
}

/// One of the person's own accounts; anyone else's does not exist.
async fn my_account(s: &PortalState, me: &Me, id: &str) -> Result<Account, PageError> {
    match s.service.account_by_id(id).await? {
        Some(a) if a.person_id.as_deref() == Some(me.person.id.as_str()) => Ok(a),
        _ => Err(PageError::not_found()),
    }
}

pub async fn lock(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    s.service.lock(&acc.app_id, &acc.account).await?;
    Ok(Redirect::to("/me"))
}

#[derive(Deserialize)]
pub struct UnlockForm {
    /// Empty: for good; `once`: for the next sign-in; otherwise minutes.
    #[serde(default)]
    minutes: String,
}

pub fn unlock_window(minutes: &str) -> Result<Option<Duration>, PageError> {
    match minutes.trim() {
        "" => Ok(None),
        m => match m.parse::<i64>() {
            Ok(n) if (1..=24 * 60).contains(&n) => Ok(Some(Duration::minutes(n))),
            _ => Err(PageError::bad("Unlock for 1 to 1440 minutes.")),
        },
    }
}

pub async fn unlock(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    CsrfForm(me, f): CsrfForm<UnlockForm>,
) -> Result<Redirect, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    if f.minutes.trim() == "once" {
        s.service.unlock_once(&acc.app_id, &acc.account).await?;
    } else {
        let window = unlock_window(&f.minutes)?;
        s.service.unlock(&acc.app_id, &acc.account, window).await?;
    }
    Ok(Redirect::to("/me"))
}

#[derive(Deserialize)]
pub struct LockAllForm {
    on: String,
}

pub async fn lock_all(
    State(s): State<PortalState>,
    CsrfForm(me, f): CsrfForm<LockAllForm>,
) -> Result<Redirect, PageError> {
    s.service
        .set_master_lock_of(&me.person.id, f.on == "1")
        .await?;
    Ok(Redirect::to("/me"))
}

/// "This was me": a blocked attempt on one of the person's accounts opens a short unlock window.
pub async fn this_was_me(
    State(s): State<PortalState>,
    Path(id): Path<i64>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let attempt = s
        .service
        .attempt(id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let acc = match s.service.account(&attempt.app_id, &attempt.account).await {
        Ok(a) => Some(a),
        Err(crate::error::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let acc = acc
        .filter(|a| a.person_id.as_deref() == Some(me.person.id.as_str()))
        .ok_or_else(PageError::not_found)?;
    s.service
        .unlock(
            &acc.app_id,
            &acc.account,
            Some(Duration::minutes(THIS_WAS_ME_MINUTES)),
        )
        .await?;
    Ok(Redirect::to("/me"))
}

// ---- schedules ----

pub struct ScheduleView {
    pub id: String,
    pub days: String,
    pub window: String,
    pub target: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    l: Layout,
    csrf: String,
    time_zone: String,
    schedules: Vec<ScheduleView>,
    targets: Vec<Choice>,
}

fn days_text(days: u8) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    match days {
        Schedule::ALL_DAYS => "Every day".into(),
        0b001_1111 => "Weekdays".into(),
        0b110_0000 => "Weekends".into(),
        d => (0..7)
            .filter(|i| d & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

pub async fn schedules_page(State(s): State<PortalState>, me: Me) -> Result<Response, PageError> {
    let accounts = s.service.person_accounts(&me.person.id).await?;
    let apps = apps_by_id(&s, accounts.iter().map(|a| a.app_id.clone())).await?;
    let name = |a: &Account| {
        let app = apps.get(&a.app_id).map_or("?", |x| x.name.as_str());
        format!("{} · {}", app, a.account)
    };
    let schedules = s
        .service
        .person_schedules(&me.person.id)
        .await?
        .into_iter()
        .map(|r| ScheduleView {
            id: r.id,
            days: days_text(r.schedule.days),
            window: if r.schedule.start_minute == r.schedule.end_minute {
                "all day".into()
            } else {
                format!(
                    "{}–{}",
                    hhmm(r.schedule.start_minute),
                    hhmm(r.schedule.end_minute)
                )
            },
            target: match &r.account_id {
                None => "All my accounts".into(),
                Some(id) => accounts
                    .iter()
                    .find(|a| &a.id == id)
                    .map_or_else(|| "An account".into(), name),
            },
        })
        .collect();
    let mut targets = vec![Choice {
        value: String::new(),
        label: "All my accounts".into(),
    }];
    targets.extend(accounts.iter().map(|a| Choice {
        value: a.id.clone(),
        label: name(a),
    }));
    let page = SchedulesPage {
        l: Layout::signed_in("Schedules", &me, "/me/schedules"),
        csrf: me.csrf.clone(),
        time_zone: me.person.time_zone.name().to_string(),
        schedules,
        targets,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    account: String,
    days: String,
    from: String,
    to: String,
}

pub async fn add_schedule(
    State(s): State<PortalState>,
    CsrfForm(me, f): CsrfForm<ScheduleForm>,
) -> Result<Redirect, PageError> {
    let schedule = Schedule::parse(&f.days, &format!("{}-{}", f.from, f.to))
        .map_err(|e| PageError::bad(e.to_string()))?;
    let owner = if f.account.is_empty() {
        ScheduleOwner::Person(me.person.id.clone())
    } else {
        let acc = my_account(&s, &me, &f.account).await?;
        ScheduleOwner::Account {
            person_id: Some(me.person.id.clone()),
            account_id: acc.id,
        }
    };
    s.service
        .add_schedule_for(&owner, schedule, s.service.now())
        .await?;
    Ok(Redirect::to("/me/schedules"))
}

pub async fn delete_schedule(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let mine = s.service.person_schedules(&me.person.id).await?;
    if !mine.iter().any(|r| r.id == id) {
        return Err(PageError::not_found());
    }
    s.service.delete_schedule(&id).await?;
    Ok(Redirect::to("/me/schedules"))
}

#[derive(Deserialize)]
pub struct TimeZoneForm {
    time_zone: String,
}

pub async fn set_time_zone(
    State(s): State<PortalState>,
    CsrfForm(me, f): CsrfForm<TimeZoneForm>,
) -> Result<Redirect, PageError> {
    let tz = parse_time_zone(f.time_zone.trim())?;
    s.service.set_time_zone(&me.person.id, tz).await?;
    Ok(Redirect::to("/me/schedules"))
}

// ---- pairing ----

#[derive(Template)]
#[template(path = "pairing.html")]
struct PairingPage {
    l: Layout,
    csrf: String,
    code: Option<String>,
    expires: String,
}

pub async fn pairing_page(me: Me) -> Result<Response, PageError> {
    let page = PairingPage {
        l: Layout::signed_in("Pairing", &me, "/me/pairing"),
        csrf: me.csrf.clone(),
        code: None,
        expires: String::new(),
    };
    Ok(render(&page)?.into_response())
}

/// Pairing codes avoid letters and digits that read alike.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

pub async fn create_pairing_code(
    State(s): State<PortalState>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Response, PageError> {
    let mut rng = rand::rngs::OsRng;
    let code: String = (0..8)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    let now = s.service.now();
    let expires = now + Duration::minutes(PAIRING_MINUTES);
    s.service
        .create_pairing_code(&token_hash(&code), &me.person.id, now, expires)
        .await?;
    let page = PairingPage {
        l: Layout::signed_in("Pairing", &me, "/me/pairing"),
        csrf: me.csrf.clone(),
        code: Some(format!("{}-{}", &code[..4], &code[4..])),
        expires: local_time(expires, me.person.time_zone),
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_windows_and_days() {
        assert_eq!(unlock_window("").unwrap(), None);
        assert_eq!(unlock_window("15").unwrap(), Some(Duration::minutes(15)));
        assert!(unlock_window("0").is_err() && unlock_window("x").is_err());
        assert!(unlock_window("1441").is_err());
        assert_eq!(days_text(Schedule::ALL_DAYS), "Every day");
        assert_eq!(days_text(0b110_0000), "Weekends");
        assert_eq!(days_text(0b000_0101), "Mon, Wed");
        assert_eq!(hhmm(23 * 60 + 5), "23:05");
    }
}
