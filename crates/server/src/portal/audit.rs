//! The audit trail as the portal shows it (a person's account page, an application's audit
//! page for its company's admins), who a portal change is made by, and the emails that tell
//! people of changes they did not make themselves.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use deadbolt_store::{Application, AuditAction, AuditEntry, AuditState};
use serde::Deserialize;

use super::company::{company_app, CompanyAdmin};
use super::error::PageError;
use super::pages::{local_time, render, utc_time, Layout};
use super::session::{ClientAddr, Me};
use super::{base_url, Portal, PortalState};
use crate::service::{Actor, By};

/// Rows on one page of a trail.
pub const TRAIL_PAGE: i64 = 20;

/// The signed-in person acting on their own accounts, from the client's address.
pub fn by_person(me: &Me, addr: &ClientAddr) -> By {
    By::new(
        Actor::Person {
            id: me.person.id.clone(),
        },
        Some(addr.0.clone()),
    )
}

/// The signed-in person acting as an admin of a company.
pub fn by_admin(me: &Me, addr: &ClientAddr) -> By {
    By::new(
        Actor::Admin {
            person_id: me.person.id.clone(),
            email: me.person.email.clone(),
        },
        Some(addr.0.clone()),
    )
}

/// One row of a trail, in words.
pub struct AuditRow {
    pub at: String,
    pub account: String,
    pub what: String,
    /// Before → after, when the change has states.
    pub change: String,
    pub who: String,
    pub from: String,
    /// Made by a company admin or the operator: marked on the person's page.
    pub by_company: bool,
}

/// A state as a person reads it.
fn state_text(s: &AuditState, time: &dyn Fn(chrono::DateTime<chrono::Utc>) -> String) -> String {
    match (s.state.as_str(), s.until, s.once) {
        ("on", _, _) => "lock everything on".into(),
        ("off", _, _) => "lock everything off".into(),
        (_, _, true) => "unlocked for one sign-in".into(),
        (_, Some(t), _) => format!("unlocked until {}", time(t)),
        (state, None, false) => state.into(),
    }
}

fn what_text(e: &AuditEntry) -> String {
    let detail = e.detail.as_deref().unwrap_or("");
    match e.action {
        AuditAction::Lock => "Locked".into(),
        AuditAction::Unlock => "Unlocked".into(),
        AuditAction::UnlockWindow => "Unlocked for a while".into(),
        AuditAction::UnlockOnce => "Unlocked for the next sign-in".into(),
        AuditAction::RelockAfterUse => "Locked again after its one sign-in".into(),
        AuditAction::Enrol => "Enrolled".into(),
        AuditAction::Pair => "Paired with its person".into(),
        AuditAction::Merge => format!("Merged with the spelling \u{201c}{detail}\u{201d}"),
        AuditAction::LockAllOn => "Lock everything turned on".into(),
        AuditAction::LockAllOff => "Lock everything turned off".into(),
        AuditAction::ScheduleAdded => format!("Schedule added: {detail}"),
        AuditAction::ScheduleRemoved => format!("Schedule removed: {detail}"),
        AuditAction::PasskeyAdded => format!("Passkey added: {detail}"),
        AuditAction::PasskeyRemoved => format!("Passkey removed: {detail}"),
        AuditAction::SecondFactorRequired => "Second factor requirement changed".into(),
    }
}

/// Who made the change; `me` is the person reading their own trail (their changes are "You").
fn who_text(e: &AuditEntry, me: Option<&str>) -> String {
    let name = e.by.actor_name.as_deref().unwrap_or("unknown");
    let id = e.by.actor_id.as_deref().unwrap_or("unknown");
    match e.by.actor.as_str() {
        "person" if me.is_some() && me == e.by.actor_id.as_deref() => "You".into(),
        "person" => "The account's person".into(),
        "admin" => format!("Company admin {name}"),
        "operator" => format!("Server operator {name}"),
        "sdk" => format!("The company's back end (SDK key {id})"),
        "cli" => "The server's command line".into(),
        "check" => "A sign-in (the unlock for one sign-in was used)".into(),
        other => other.to_string(),
    }
}

/// The rows of a trail: times in `tz` for a person, in UTC for admins (`tz` = `None`).
pub fn rows(entries: &[AuditEntry], tz: Option<Tz>, me: Option<&str>) -> Vec<AuditRow> {
    let time = |t| match tz {
        Some(tz) => local_time(t, tz),
        None => utc_time(t),
    };
    entries
        .iter()
        .map(|e| AuditRow {
            at: time(e.at),
            account: e
                .account
                .clone()
                .unwrap_or_else(|| "All your accounts".into()),
            what: what_text(e),
            change: match (&e.old, &e.new) {
                (Some(o), Some(n)) => {
                    format!("{} \u{2192} {}", state_text(o, &time), state_text(n, &time))
                }
                (None, Some(n)) => state_text(n, &time),
                _ => String::new(),
            },
            who: who_text(e, me),
            from: e.by.ip.clone().unwrap_or_default(),
            by_company: matches!(e.by.actor.as_str(), "admin" | "operator" | "sdk"),
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// The last row of the previous page: this page starts below it.
    #[serde(default)]
    pub before: Option<i64>,
}

/// The link to the page after `entries`, when it may hold rows.
pub fn older_link(base: &str, entries: &[AuditEntry]) -> Option<String> {
    match entries.last() {
        Some(last) if entries.len() as i64 >= TRAIL_PAGE => {
            Some(format!("{base}?before={}", last.id))
        }
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "app_audit.html")]
struct AppAuditPage {
    l: Layout,
    cid: String,
    app: Application,
    rows: Vec<AuditRow>,
    older: Option<String>,
    first_page: bool,
}

/// An application's audit trail, for its company's admins: every change to its accounts,
/// newest first, a page at a time.
pub async fn app_audit_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let entries = s.service.app_audit(&app.id, q.before, TRAIL_PAGE).await?;
    let base = format!("/companies/{cid}/apps/{aid}/audit");
    let page = AppAuditPage {
        l: Layout::signed_in(&app.name, &me, &format!("/companies/{cid}")),
        older: older_link(&base, &entries),
        rows: rows(&entries, None, None),
        first_page: q.before.is_none(),
        cid,
        app,
    };
    Ok(render(&page)?.into_response())
}

/// Tells the person an account belongs to that a company admin changed it (`what`: "locked",
/// "unlocked", …). The change is committed and in the trail already: a message that cannot be
/// sent is logged, not an error for the admin.
pub async fn tell_person_of_admin_change(
    s: &PortalState,
    portal: &Portal,
    app: &Application,
    account: &str,
    admin: &Me,
    what: &str,
) {
    let acc = match s.service.account(&app.id, account).await {
        Ok(acc) => acc,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the account to tell its person of a change");
            return;
        }
    };
    let Some(email) = acc.person_email.as_deref() else {
        return;
    };
    let tz = match &acc.person_id {
        Some(id) => s
            .service
            .person(id)
            .await
            .ok()
            .flatten()
            .map_or(Tz::UTC, |p| p.time_zone),
        None => Tz::UTC,
    };
    let body = format!(
        "An admin of the company behind {app_name} changed your account there.\n\n\
         Account: {account}\nApplication: {app_name} ({issuer})\nChange: {what}\n\
         By: {admin}\nWhen: {when}\n\n\
         Every change to the account is listed on its page:\n{base}/me/accounts/{id}\n\n\
         If you did not expect this, you can lock the account, or lock everything, there.\n",
        app_name = app.name,
        issuer = app.issuer,
        account = acc.account,
        admin = admin.person.email,
        when = local_time(s.service.now(), tz),
        base = base_url(portal),
        id = acc.id,
    );
    let subject = format!("Your account at {} was {what} by an admin", app.name);
    if let Err(e) = portal.mailer.send(email, &subject, body).await {
        tracing::warn!(error = %e, "cannot tell a person of an admin's change to their account");
    }
}
