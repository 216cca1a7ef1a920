//! A person's pages: their accounts and why each is locked or not, lock and unlock, lock
//! everything, blocked attempts (live), an account's trail. (Schedules, the time zone and
//! pairing codes: `schedules.rs`.)

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use chrono_tz::Tz;
use deadbolt_core::Reason;
use deadbolt_store::{Account, Application, Attempt};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use super::audit::{by_person, older_link, rows, AuditRow, PageQuery, TRAIL_PAGE};
use super::csrf::CsrfForm;
use super::error::PageError;
use super::live;
use super::pages::{fragment, local_time, opt, render, Layout};
use super::session::{ClientAddr, Me};
use super::{base_url, Portal, PortalState};
use deadbolt_store::ScheduleRecord;

/// How long "this was me" unlocks an account.
pub const THIS_WAS_ME_MINUTES: i64 = 5;
/// How old a blocked attempt may be for "this was me": an unlock window opened for an
/// attempt from long ago would let in whoever tries next, not the person who tried then.
pub const THIS_WAS_ME_WITHIN_MINUTES: i64 = 15;
/// How long a pairing code works.
pub const PAIRING_MINUTES: i64 = 10;
const FEED_LEN: i64 = 50;

pub struct AccountView {
    pub id: String,
    pub account: String,
    pub locked: bool,
    pub why: String,
    /// When a schedule next locks the account, in the person's time zone.
    pub next_lock: Option<String>,
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

pub(super) async fn apps_by_id(
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

/// When a schedule next begins to lock `acc`: the person's schedules for all their accounts
/// and the account's own, in the person's time zone.
fn next_lock(
    schedules: &[ScheduleRecord],
    acc: &Account,
    now: chrono::DateTime<chrono::Utc>,
    tz: Tz,
) -> Option<String> {
    schedules
        .iter()
        .filter(|r| r.account_id.as_ref().is_none_or(|id| *id == acc.id))
        .filter_map(|r| r.schedule.next_start(now, tz))
        .min()
        .map(|t| local_time(t, tz))
}

async fn groups(s: &PortalState, me: &Me) -> Result<Vec<AppGroup>, PageError> {
    let accounts = s.service.person_accounts(&me.person.id).await?;
    let apps = apps_by_id(s, accounts.iter().map(|a| a.app_id.clone())).await?;
    let schedules = s.service.person_schedules(&me.person.id).await?;
    let now = s.service.now();
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
            next_lock: next_lock(&schedules, &acc, now, me.person.time_zone),
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
    /// Why it was blocked, in words.
    pub reason: String,
    pub ip: String,
    pub device: String,
    pub location: String,
    /// Whether "this was me" can help now (see [`this_was_me_helps`]).
    pub this_was_me: bool,
}

/// Why a sign-in was blocked, in the person's words (`reason` as the attempt recorded it).
pub fn blocked_because(reason: &str) -> &'static str {
    match reason.parse::<Reason>() {
        Ok(Reason::MasterLock) => "Blocked because lock everything was on",
        Ok(Reason::Schedule) => "Blocked by a lock schedule",
        Ok(Reason::AccountLocked) => "Blocked because the account was locked",
        Ok(Reason::UnenrolledDeny) => "Blocked because the account is not enrolled",
        _ => "Blocked",
    }
}

/// Whether "this was me" can let the person in: the attempt is recent and blocked, and the
/// account is locked now by its own lock or a schedule, which a short unlock window lifts.
/// Under lock everything it cannot help (nothing lifts it but turning it off), nor when the
/// account is open already.
fn this_was_me_helps(
    attempt: &Attempt,
    now_reason: Option<Reason>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    attempt.locked
        && now - attempt.at <= Duration::minutes(THIS_WAS_ME_WITHIN_MINUTES)
        && matches!(now_reason, Some(Reason::AccountLocked | Reason::Schedule))
}

#[derive(Template)]
#[template(path = "me_attempt_rows.html")]
struct AttemptRows {
    csrf: String,
    attempts: Vec<AttemptView>,
}

async fn attempt_rows(s: &PortalState, me: &Me, attempts: &[Attempt]) -> Result<String, PageError> {
    let apps = apps_by_id(s, attempts.iter().map(|a| a.app_id.clone())).await?;
    let now = s.service.now();
    // Why each account is locked now, read once per account.
    let mut reasons: HashMap<(String, String), Option<Reason>> = HashMap::new();
    let mut views = Vec::with_capacity(attempts.len());
    for a in attempts {
        let key = (a.app_id.clone(), a.account.clone());
        let reason = match reasons.get(&key) {
            Some(r) => *r,
            None => {
                let r = match apps.get(&a.app_id) {
                    Some(app) => Some(s.service.status(app, &a.account).await?.reason),
                    None => None,
                };
                reasons.insert(key, r);
                r
            }
        };
        views.push(AttemptView {
            id: a.id,
            at: local_time(a.at, me.person.time_zone),
            app: apps
                .get(&a.app_id)
                .map_or_else(|| a.app_id.clone(), |app| app.name.clone()),
            account: a.account.clone(),
            reason: blocked_because(&a.reason).into(),
            ip: opt(&a.ip),
            device: opt(&a.device),
            location: opt(&a.location),
            this_was_me: this_was_me_helps(a, reason, now),
        });
    }
    fragment(&AttemptRows {
        csrf: me.csrf.clone(),
        attempts: views,
    })
}

#[derive(Template)]
#[template(path = "me.html")]
struct AccountsPage {
    l: Layout,
    accounts_html: String,
    attempts_html: String,
    has_attempts: bool,
    /// The newest attempt shown: the live stream sends those after it.
    last_attempt: i64,
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
        last_attempt: attempts.first().map_or(0, |a| a.id),
    };
    Ok(render(&page)?.into_response())
}

/// Live updates for the accounts page: new blocked attempts, and the accounts again whenever
/// anything a check reads has changed (a lock from another tab, the CLI, a company admin).
/// Polls the store, so changes made through any replica show up.
pub async fn events(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Query(q): Query<EventsQuery>,
    me: Me,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    // From the newest attempt the page showed: one recorded between the page and the stream
    // is sent, not taken as sent already. Without it (an older page), from the newest now.
    let last = match q.after {
        Some(after) => after,
        None => s
            .service
            .person_blocked_attempts(&me.person.id, 1)
            .await?
            .first()
            .map_or(0, |a| a.id),
    };
    let version = s.service.version().await?;
    let session_hash = me.session_hash.clone();
    let feed = PersonFeed { me, last, version };
    Ok(live::stream(s, portal, session_hash, feed))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    after: Option<i64>,
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
pub(super) async fn my_account(s: &PortalState, me: &Me, id: &str) -> Result<Account, PageError> {
    match s.service.account_by_id(id).await? {
        Some(a) if a.person_id.as_deref() == Some(me.person.id.as_str()) => Ok(a),
        _ => Err(PageError::not_found()),
    }
}

pub async fn lock(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    addr: ClientAddr,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    s.service
        .lock(&by_person(&me, &addr), &acc.app_id, &acc.account)
        .await?;
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

/// Unlocks one of the person's accounts; refused (by the service) while lock everything is on.
pub async fn unlock(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    addr: ClientAddr,
    CsrfForm(me, f): CsrfForm<UnlockForm>,
) -> Result<Redirect, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    let by = by_person(&me, &addr);
    if f.minutes.trim() == "once" {
        s.service
            .unlock_once(&by, &acc.app_id, &acc.account)
            .await?;
    } else {
        let window = unlock_window(&f.minutes)?;
        s.service
            .unlock(&by, &acc.app_id, &acc.account, window)
            .await?;
    }
    Ok(Redirect::to("/me"))
}

#[derive(Deserialize)]
pub struct LockAllForm {
    on: String,
}

pub async fn lock_all(
    State(s): State<PortalState>,
    addr: ClientAddr,
    CsrfForm(me, f): CsrfForm<LockAllForm>,
) -> Result<Redirect, PageError> {
    s.service
        .set_master_lock_of(&by_person(&me, &addr), &me.person.id, f.on == "1")
        .await?;
    Ok(Redirect::to("/me"))
}

/// A blocked attempt on one of the person's own accounts, and that account; anyone else's
/// does not exist.
async fn my_blocked_attempt(
    s: &PortalState,
    me: &Me,
    id: i64,
) -> Result<(Attempt, Account), PageError> {
    let attempt = s
        .service
        .attempt(id)
        .await?
        .filter(|a| a.locked)
        .ok_or_else(PageError::not_found)?;
    let acc = match s.service.account(&attempt.app_id, &attempt.account).await {
        Ok(a) => Some(a),
        Err(crate::error::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let acc = acc
        .filter(|a| a.person_id.as_deref() == Some(me.person.id.as_str()))
        .ok_or_else(PageError::not_found)?;
    Ok((attempt, acc))
}

/// "This was me": a recent blocked attempt on one of the person's accounts, locked by its own
/// lock or a schedule, opens a short unlock window. Refused where it cannot help (see
/// [`this_was_me_helps`]), as the page does not offer it there.
pub async fn this_was_me(
    State(s): State<PortalState>,
    Path(id): Path<i64>,
    addr: ClientAddr,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let (attempt, acc) = my_blocked_attempt(&s, &me, id).await?;
    let app = s.service.application(&acc.app_id).await?;
    let now_reason = s.service.status(&app, &acc.account).await?.reason;
    if !this_was_me_helps(&attempt, Some(now_reason), s.service.now()) {
        return Err(PageError::Status(
            axum::http::StatusCode::CONFLICT,
            format!(
                "\u{201c}This was me\u{201d} only unlocks an account locked by its own lock or a \
                 schedule, for a sign-in of the last {THIS_WAS_ME_WITHIN_MINUTES} minutes."
            ),
        ));
    }
    s.service
        .unlock(
            &by_person(&me, &addr),
            &acc.app_id,
            &acc.account,
            Some(Duration::minutes(THIS_WAS_ME_MINUTES)),
        )
        .await?;
    Ok(Redirect::to("/me"))
}

/// "This wasn't me": someone else tried one of the person's accounts. Everything is locked at
/// once, and the admins of the application's company are told, so they can look at the
/// attempts and at the account on their side.
pub async fn not_me(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(id): Path<i64>,
    addr: ClientAddr,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let (attempt, acc) = my_blocked_attempt(&s, &me, id).await?;
    s.service
        .set_master_lock_of(&by_person(&me, &addr), &me.person.id, true)
        .await?;
    tell_admins(&s, &portal, &me.person.email, &attempt, &acc).await?;
    Ok(Redirect::to("/me"))
}

/// Tells the admins of the account's company that its person reported `attempt` as not
/// theirs (and locked everything): from the attempts page and from an alert email's link.
pub(super) async fn tell_admins(
    s: &PortalState,
    portal: &Portal,
    person_email: &str,
    attempt: &Attempt,
    acc: &Account,
) -> Result<(), PageError> {
    let app = s.service.application(&acc.app_id).await?;
    let admins = s.service.company_admins(&app.company_id).await?;
    let body = format!(
        "A person whose account is protected by Deadbolt reported a blocked sign-in as not \
         theirs, and locked all their accounts.\n\n\
         Application: {app_name} ({issuer})\nAccount: {account}\nPerson: {email}\n\
         Attempt at: {at}\nIP: {ip}\nDevice: {device}\nLocation: {location}\n\n\
         The application's attempts: {base}/companies/{cid}/apps/{aid}/attempts\n",
        app_name = app.name,
        issuer = app.issuer,
        account = acc.account,
        email = person_email,
        at = super::pages::utc_time(attempt.at),
        ip = crate::mail::field(&attempt.ip),
        device = crate::mail::field(&attempt.device),
        location = crate::mail::field(&attempt.location),
        base = base_url(portal),
        cid = app.company_id,
        aid = app.id,
    );
    let subject = format!(
        "A sign-in to {} was reported as not the account's person",
        app.name
    );
    for admin in admins {
        // The lock is on and recorded; a message that cannot go out is logged, and the
        // other admins are still told.
        if let Err(e) = portal.mailer.send(&admin, &subject, body.clone()).await {
            tracing::warn!(error = %e, "cannot tell a company admin of a reported sign-in");
        }
    }
    Ok(())
}

#[derive(Template)]
#[template(path = "me_account.html")]
struct AccountPage {
    l: Layout,
    csrf: String,
    id: String,
    account: String,
    /// Whether a blocked sign-in is emailed to the person.
    alerts_on: bool,
    master_locked: bool,
    locked: bool,
    why: String,
    next_lock: Option<String>,
    rows: Vec<AuditRow>,
    older: Option<String>,
    first_page: bool,
}

/// One of the person's accounts: its state, its next scheduled lock and the trail of its
/// changes (with their own changes to all accounts), newest first, a page at a time.
pub async fn account_page(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    me: Me,
) -> Result<Response, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    let app = s.service.application(&acc.app_id).await?;
    let d = s.service.status(&app, &acc.account).await?;
    let tz = me.person.time_zone;
    let schedules = s.service.person_schedules(&me.person.id).await?;
    let entries = s
        .service
        .account_audit(&acc.id, Some(&me.person.id), q.before, TRAIL_PAGE)
        .await?;
    let alerts_on = s.service.alerts_on(&acc.id).await?;
    let master_locked = s
        .service
        .person(&me.person.id)
        .await?
        .is_some_and(|p| p.master_locked);
    let page = AccountPage {
        l: Layout::signed_in(&format!("{} at {}", acc.account, app.name), &me, "/me"),
        csrf: me.csrf.clone(),
        id: acc.id.clone(),
        account: acc.account.clone(),
        alerts_on,
        master_locked,
        locked: d.locked,
        why: explain(d.reason, &acc, tz),
        next_lock: next_lock(&schedules, &acc, s.service.now(), tz),
        rows: rows(&entries, Some(tz), Some(&me.person.id)),
        older: older_link(&format!("/me/accounts/{}", acc.id), &entries),
        first_page: q.before.is_none(),
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_windows() {
        assert_eq!(unlock_window("").unwrap(), None);
        assert_eq!(unlock_window("15").unwrap(), Some(Duration::minutes(15)));
        assert!(unlock_window("0").is_err() && unlock_window("x").is_err());
        assert!(unlock_window("1441").is_err());
    }
}
