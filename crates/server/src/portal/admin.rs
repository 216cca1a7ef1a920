//! A company admin's pages: applications and their settings, signing keys, SDK keys, enrolled
//! accounts, attempts (live) and the integration page. Every route names its company, and
//! every object is checked to belong to it: another company's objects look like missing ones.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use deadbolt_core::{AccountState, UnenrolledPolicy};
use deadbolt_store::{AppSettings, Application, Attempt, ImportRow};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

use super::company::CompanyAdmin;
use super::csrf::{CsrfForm, CsrfUpload, NoFields};
use super::links::{send_link, LinkPurpose};
use super::live;
use super::pages::{fragment, opt, render, utc_time, Layout, PageError};
use super::person::{explain_for_admin, unlock_window};
use super::session::Me;
use super::{base_url, Portal, PortalState};
use crate::ops::{valid_account, valid_email};

const PAGE_LEN: i64 = 200;

async fn company_app(s: &PortalState, cid: &str, aid: &str) -> Result<Application, PageError> {
    match s.db.store.application(aid).await? {
        Some(app) if app.company_id == cid => Ok(app),
        _ => Err(PageError::not_found()),
    }
}

// ---- the company ----

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub audit_mode: bool,
}

pub struct KeyRow {
    pub id: String,
    pub short: String,
    pub created: String,
    pub revoked: Option<String>,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "company.html")]
struct CompanyPage {
    l: Layout,
    csrf: String,
    cid: String,
    apps: Vec<AppRow>,
    sdk_keys: Vec<KeyRow>,
    new_sdk_key: Option<String>,
    admins: Vec<String>,
    notice: Option<String>,
}

async fn company_page_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    new_sdk_key: Option<String>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let company =
        s.db.store
            .company(cid)
            .await?
            .ok_or_else(PageError::not_found)?;
    let apps =
        s.db.store
            .applications(Some(cid))
            .await?
            .into_iter()
            .map(|a| AppRow {
                id: a.id,
                name: a.name,
                issuer: a.issuer,
                audit_mode: a.audit_mode,
            })
            .collect();
    let sdk_keys =
        s.db.store
            .sdk_keys(cid)
            .await?
            .into_iter()
            .map(|k| KeyRow {
                short: k.id.chars().take(8).collect(),
                created: utc_time(k.created_at),
                revoked: k.revoked_at.map(utc_time),
                last_used: String::new(),
                id: k.id,
            })
            .collect();
    let page = CompanyPage {
        l: Layout::signed_in(&company.name, me, &format!("/companies/{cid}")),
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        apps,
        sdk_keys,
        new_sdk_key,
        admins: s.db.store.company_admins(cid).await?,
        notice,
    };
    Ok(render(&page)?.into_response())
}

pub async fn company_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
) -> Result<Response, PageError> {
    company_page_with(&s, &me, &cid, None, None).await
}

#[derive(Deserialize)]
pub struct NewAppForm {
    issuer: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    unenrolled: String,
    #[serde(default)]
    default_state: String,
}

fn policy(v: &str) -> Result<UnenrolledPolicy, PageError> {
    if v.is_empty() {
        return Ok(UnenrolledPolicy::default());
    }
    v.parse()
        .map_err(|e: deadbolt_core::Error| PageError::bad(e.to_string()))
}

fn state(v: &str) -> Result<AccountState, PageError> {
    if v.is_empty() {
        return Ok(AccountState::default());
    }
    v.parse()
        .map_err(|e: deadbolt_core::Error| PageError::bad(e.to_string()))
}

pub async fn create_app(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<NewAppForm, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app =
        s.db.create_application(
            &cid,
            &f.issuer,
            Some(&f.name),
            policy(&f.unenrolled)?,
            state(&f.default_state)?,
        )
        .await?;
    Ok(Redirect::to(&format!("/companies/{cid}/apps/{}", app.id)))
}

pub async fn create_sdk_key(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { me, cid }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let (_, token) = s.db.create_sdk_key(&cid).await?;
    company_page_with(&s, &me, &cid, Some(token), None).await
}

pub async fn revoke_sdk_key(
    State(s): State<PortalState>,
    Path((_, kid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    match s.db.store.sdk_key(&kid).await? {
        Some(k) if k.company_id == cid => s.db.revoke_sdk_key(&kid).await?,
        _ => return Err(PageError::not_found()),
    }
    Ok(Redirect::to(&format!("/companies/{cid}")))
}

#[derive(Deserialize)]
pub struct InviteForm {
    email: String,
}

pub async fn invite_admin(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<InviteForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let email = valid_email(&f.email)?;
    let company = s.db.company(&cid).await?;
    send_link(
        &s,
        &portal,
        LinkPurpose::AdminInvite,
        &email,
        Some((&company.id, &company.name)),
    )
    .await?;
    company_page_with(
        &s,
        &me,
        &cid,
        None,
        Some(format!("{email} has been invited.")),
    )
    .await
}

// ---- one application ----

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    l: Layout,
    csrf: String,
    cid: String,
    app: Application,
    keys: Vec<KeyRow>,
    new_key: Option<String>,
    saved: bool,
}

async fn app_page_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    aid: &str,
    new_key: Option<String>,
    saved: bool,
) -> Result<Response, PageError> {
    let app = company_app(s, cid, aid).await?;
    let keys =
        s.db.store
            .signing_keys(&app.id)
            .await?
            .into_iter()
            .map(|k| KeyRow {
                short: k.id.chars().take(8).collect(),
                created: utc_time(k.created_at),
                revoked: k.revoked_at.map(utc_time),
                last_used: k.last_used_at.map_or_else(|| "never".into(), utc_time),
                id: k.id,
            })
            .collect();
    let page = AppPage {
        l: Layout::signed_in(&app.name, me, &format!("/companies/{cid}")),
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        app,
        keys,
        new_key,
        saved,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct AppPageQuery {
    saved: Option<String>,
}

pub async fn app_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AppPageQuery>,
) -> Result<Response, PageError> {
    let saved = q.saved.as_deref() == Some("settings");
    app_page_with(&s, &me, &cid, &aid, None, saved).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    unenrolled: String,
    default_state: String,
    #[serde(default)]
    audit_mode: Option<String>,
    #[serde(default)]
    account_names: Option<String>,
}

pub async fn app_settings(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<SettingsForm, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    // First, as it may be refused (names that would be one account): then nothing has changed.
    if let Some(names) = f.account_names.as_deref() {
        let names: deadbolt_core::AccountNames = names
            .parse()
            .map_err(|e: deadbolt_core::Error| PageError::bad(e.to_string()))?;
        if names != app.account_names {
            s.db.set_account_names(&app.id, names).await?;
        }
    }
    let settings = AppSettings {
        unenrolled: policy(&f.unenrolled)?,
        default_state: state(&f.default_state)?,
        audit_mode: f.audit_mode.is_some(),
    };
    s.db.store.update_application(&app.id, &settings).await?;
    // The page says the settings are saved: they are committed by now.
    Ok(Redirect::to(&format!(
        "/companies/{cid}/apps/{aid}?saved=settings"
    )))
}

pub async fn create_signing_key(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { me, cid }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let (_, secret) = s.db.create_signing_key(&app.id).await?;
    app_page_with(&s, &me, &cid, &aid, Some(secret), false).await
}

pub async fn revoke_signing_key(
    State(s): State<PortalState>,
    Path((_, aid, kid)): Path<(String, String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let keys = s.db.store.signing_keys(&app.id).await?;
    if !keys.iter().any(|k| k.id == kid) {
        return Err(PageError::not_found());
    }
    s.db.revoke_signing_key(&kid).await?;
    Ok(Redirect::to(&format!("/companies/{cid}/apps/{aid}")))
}

// ---- enrolled accounts ----

pub struct EnrolledRow {
    pub account: String,
    pub email: String,
    pub state: String,
    pub locked: bool,
    pub why: String,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    l: Layout,
    csrf: String,
    cid: String,
    app: Application,
    q: String,
    rows: Vec<EnrolledRow>,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: String,
}

async fn accounts_page_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    aid: &str,
    q: &str,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let app = company_app(s, cid, aid).await?;
    let q = q.trim();
    let accounts =
        s.db.store
            .accounts(&app.id, Some(q).filter(|q| !q.is_empty()), PAGE_LEN)
            .await?;
    let mut rows = Vec::with_capacity(accounts.len());
    for acc in accounts {
        let d = s.db.status(&app, &acc.account).await?;
        rows.push(EnrolledRow {
            why: explain_for_admin(d.reason, &acc),
            locked: d.locked,
            state: acc.state.as_str().into(),
            email: opt(&acc.person_email),
            account: acc.account,
        });
    }
    let page = AccountsPage {
        l: Layout::signed_in(&app.name, me, &format!("/companies/{cid}")),
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        app,
        q: q.to_string(),
        rows,
        notice,
    };
    Ok(render(&page)?.into_response())
}

pub async fn accounts_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    accounts_page_with(&s, &me, &cid, &aid, &search.q, None).await
}

#[derive(Deserialize)]
pub struct EnrollForm {
    account: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    invite: Option<String>,
}

/// Enrols an account, optionally for a person (by email), and invites that person to sign up
/// when they have no password yet.
pub async fn enroll(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<EnrollForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let account = valid_account(f.account.trim())?;
    let email = match f.email.trim() {
        "" => None,
        e => Some(valid_email(e)?),
    };
    let row = ImportRow {
        app_id: app.id.clone(),
        account: account.to_string(),
        email: email.clone(),
        first_name: None,
        last_name: None,
        phone: None,
    };
    let created = s.db.import(&[row]).await?;
    let mut notice = if created.first().copied().unwrap_or(false) {
        format!("{account} is enrolled.")
    } else {
        format!("{account} was already enrolled.")
    };
    if let (Some(email), Some(_)) = (&email, &f.invite) {
        let has_password =
            s.db.store
                .password_hash(email)
                .await?
                .is_some_and(|(_, h)| h.is_some());
        if !has_password {
            send_link(&s, &portal, LinkPurpose::SignUp, email, None).await?;
            notice.push_str(&format!(" {email} has been invited to sign up."));
        }
    }
    accounts_page_with(&s, &me, &cid, &aid, "", Some(notice)).await
}

#[derive(Deserialize)]
pub struct AccountForm {
    account: String,
    #[serde(default)]
    minutes: String,
}

pub async fn lock(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<AccountForm, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    s.db.lock(&app.id, &f.account).await?;
    Ok(Redirect::to(&format!(
        "/companies/{cid}/apps/{aid}/accounts"
    )))
}

pub async fn unlock(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<AccountForm, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let window = unlock_window(&f.minutes)?;
    s.db.unlock(&app.id, &f.account, window).await?;
    Ok(Redirect::to(&format!(
        "/companies/{cid}/apps/{aid}/accounts"
    )))
}

/// A CSV upload with the columns of `importUsers`: `userAccountId,email,first_name,last_name,phone`
/// (a header row naming them may come first, in any order). All rows or none are imported.
pub async fn import_csv(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfUpload {
        who: CompanyAdmin { me, cid },
        text: csv,
    }: CsrfUpload<CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let rows = parse_import(&csv, &app.id).map_err(PageError::bad)?;
    if rows.is_empty() {
        return Err(PageError::bad("The file has no rows."));
    }
    let created = s.db.import(&rows).await?;
    let new = created.iter().filter(|c| **c).count();
    let notice = format!(
        "Imported {} rows: {new} new, {} already enrolled.",
        rows.len(),
        rows.len() - new
    );
    accounts_page_with(&s, &me, &cid, &aid, "", Some(notice)).await
}

/// Splits one CSV line, with `"quoted, fields"` and `""` for a quote.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

fn parse_import(csv: &str, app_id: &str) -> Result<Vec<ImportRow>, String> {
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut cols = ["userAccountId", "email", "first_name", "last_name", "phone"]
        .map(String::from)
        .to_vec();
    if let Some((_, first)) = lines.peek() {
        let names = csv_fields(first);
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("userAccountId") || n.eq_ignore_ascii_case("account"))
        {
            cols = names;
            lines.next();
        }
    }
    let idx = |name: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(name));
    let account_col = idx("userAccountId")
        .or_else(|| idx("account"))
        .ok_or("no userAccountId column")?;
    let mut rows = Vec::new();
    for (n, line) in lines {
        let f = csv_fields(line);
        let get = |name: &str| {
            idx(name)
                .and_then(|i| f.get(i))
                .filter(|v| !v.is_empty())
                .map(|v| deadbolt_core::body::bounded(v, 200))
        };
        let account = f.get(account_col).cloned().unwrap_or_default();
        valid_account(&account).map_err(|e| format!("line {}: {e}", n + 1))?;
        let email = match get("email") {
            Some(e) => Some(valid_email(&e).map_err(|e| format!("line {}: {e}", n + 1))?),
            None => None,
        };
        rows.push(ImportRow {
            app_id: app_id.to_string(),
            account,
            email,
            first_name: get("first_name"),
            last_name: get("last_name"),
            phone: get("phone"),
        });
    }
    Ok(rows)
}

// ---- attempts ----

pub struct AttemptRow {
    pub id: i64,
    pub at: String,
    pub account: String,
    pub locked: bool,
    pub reason: String,
    pub ip: String,
    pub device: String,
    pub location: String,
    pub integration: String,
}

#[derive(Template)]
#[template(path = "attempt_rows.html")]
struct AttemptRows {
    attempts: Vec<AttemptRow>,
}

fn attempt_rows(attempts: &[Attempt]) -> Result<String, PageError> {
    fragment(&AttemptRows {
        attempts: attempts
            .iter()
            .map(|a| AttemptRow {
                id: a.id,
                at: utc_time(a.at),
                account: a.account.clone(),
                locked: a.locked,
                reason: a.reason.replace('_', " "),
                ip: opt(&a.ip),
                device: opt(&a.device),
                location: opt(&a.location),
                integration: opt(&a.integration_type),
            })
            .collect(),
    })
}

#[derive(Deserialize, Default, Clone)]
pub struct AttemptQuery {
    #[serde(default)]
    account: String,
    /// `blocked`, `allowed` or empty.
    #[serde(default)]
    decision: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

fn parse_utc(v: &str) -> Result<Option<DateTime<Utc>>, PageError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| Some(t.and_utc()))
        .map_err(|_| PageError::bad(format!("invalid time {v:?}: write YYYY-MM-DDTHH:MM")))
}

/// The attempts a page or a live stream shows.
struct Filter {
    account: Option<String>,
    locked: Option<bool>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after_id: i64,
}

impl Filter {
    async fn read(
        &self,
        s: &PortalState,
        app_id: &str,
        limit: i64,
    ) -> Result<Vec<Attempt>, PageError> {
        Ok(s.db
            .store
            .filtered_attempts(
                app_id,
                self.account.as_deref(),
                self.locked,
                (self.from, self.until),
                self.after_id,
                limit,
            )
            .await?)
    }
}

impl AttemptQuery {
    fn filter(&self) -> Result<Filter, PageError> {
        Ok(Filter {
            account: Some(self.account.trim().to_string()).filter(|a| !a.is_empty()),
            locked: match self.decision.as_str() {
                "blocked" => Some(true),
                "allowed" => Some(false),
                _ => None,
            },
            from: parse_utc(&self.from)?,
            until: parse_utc(&self.until)?,
            after_id: 0,
        })
    }

    fn query_string(&self) -> String {
        let enc = |v: &str| -> String {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect()
        };
        format!(
            "account={}&decision={}&from={}&until={}",
            enc(&self.account),
            enc(&self.decision),
            enc(&self.from),
            enc(&self.until)
        )
    }
}

#[derive(Template)]
#[template(path = "attempts.html")]
struct AttemptsPage {
    l: Layout,
    cid: String,
    app: Application,
    q: AttemptQuery,
    live_url: String,
    rows_html: String,
    empty: bool,
}

pub async fn attempts_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let attempts = q.filter()?.read(&s, &app.id, PAGE_LEN).await?;
    let page = AttemptsPage {
        l: Layout::signed_in(&app.name, &me, &format!("/companies/{cid}")),
        live_url: format!(
            "/companies/{cid}/apps/{aid}/attempts/events?{}",
            q.query_string()
        ),
        cid,
        rows_html: attempt_rows(&attempts)?,
        empty: attempts.is_empty(),
        app,
        q,
    };
    Ok(render(&page)?.into_response())
}

/// New attempts matching the page's filter, as they are recorded.
pub async fn attempt_events(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let mut filter = q.filter()?;
    filter.after_id =
        s.db.store
            .recent_attempts(&app.id, 1)
            .await?
            .first()
            .map_or(0, |a| a.id);
    let feed = AttemptFeed { app, filter };
    Ok(live::stream(s, portal, me.session_hash, feed))
}

/// An application's attempts page, live: new attempts that pass its filter.
struct AttemptFeed {
    app: Application,
    filter: Filter,
}

impl live::Feed for AttemptFeed {
    async fn poll(&mut self, s: &PortalState) -> Option<Event> {
        // Attempts past the filter's end never arrive; the stream stays quiet.
        match self.filter.read(s, &self.app.id, 100).await {
            Ok(new) if !new.is_empty() => {
                self.filter.after_id = new.first().map_or(self.filter.after_id, |a| a.id);
                if let Ok(html) = attempt_rows(&new) {
                    return Some(Event::default().event("attempts").data(html));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "live attempts: store read failed"),
        }
        None
    }
}

// ---- integration ----

#[derive(Template)]
#[template(path = "integration.html")]
struct IntegrationPage {
    l: Layout,
    cid: String,
    app: Application,
    api_uri: String,
    api_path: &'static str,
}

pub async fn integration_page(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let page = IntegrationPage {
        l: Layout::signed_in(&app.name, &me, &format!("/companies/{cid}")),
        cid,
        app,
        api_uri: base_url(&portal),
        api_path: deadbolt_client::DEFAULT_API_PATH,
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_reads_headers_quotes_and_refuses_bad_rows() {
        let rows = parse_import(
            "email,userAccountId,first_name\n\"a@example.com\",alice,\"Ann, A\"\n\nb@example.com,bob,\n",
            "app",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].account, "alice");
        assert_eq!(rows[0].email.as_deref(), Some("a@example.com"));
        assert_eq!(rows[0].first_name.as_deref(), Some("Ann, A"));
        assert_eq!(rows[1].first_name, None);
        let plain = parse_import("carol,c@example.com\ndave", "app").unwrap();
        assert_eq!(plain[1].account, "dave");
        assert_eq!(plain[0].email.as_deref(), Some("c@example.com"));
        assert!(parse_import("x,not-an-email", "app").is_err());
        assert!(parse_import(",a@example.com", "app").is_err());
        assert_eq!(csv_fields(r#"a,"b ""q""",c"#), vec!["a", "b \"q\"", "c"]);
    }
}
