//! A company admin's pages: the company, its applications and their settings, signing keys,
//! SDK keys, admins and the integration page. Every route names its company, and every object
//! is checked to belong to it: another company's objects look like missing ones.
//!
//! Over 600 lines on purpose: the company page and the application page share their forms'
//! state, refusals and paging; split, each half would import the other's.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use deadbolt_core::{AccountState, UnenrolledPolicy};
use deadbolt_store::{AppSettings, Application};
use serde::Deserialize;
use std::sync::Arc;

use super::company::{company_app, CompanyAdmin};
use super::csrf::{CsrfForm, NoFields};
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::notice::{done, Notice};
use super::pages::{count_of, refusal, render, when, Layout, When};
use super::session::Me;
use super::{base_url, Portal, PortalState};
use crate::service::valid_email;

// ---- the company ----

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub audit_mode: bool,
}

pub struct KeyRow {
    pub id: String,
    /// A part of its id that tells it from the others: ids made close together share their
    /// first characters (UUIDv7 starts with the time), so the last ones.
    pub short: String,
    pub label: String,
    pub created: When,
    pub revoked: Option<When>,
    /// When a check it signed was last recorded. The attempt writer notes it (one upsert a
    /// key for each batch it writes, in the batch's transaction), never the check itself: the
    /// check only queues its attempt, which names the key, so it gets no slower and no store
    /// write; the time is as fresh as the attempts list.
    pub last_used: Option<When>,
}

/// The last 8 characters of an id: the part that differs between keys made seconds apart.
pub(super) fn id_tail(id: &str) -> String {
    let n = id.chars().count();
    id.chars().skip(n.saturating_sub(8)).collect()
}

pub struct InvitationRow {
    pub email: String,
    pub sent: When,
    pub expires: When,
}

/// What the application form holds: as sent when it was refused, else empty.
#[derive(Deserialize, Default)]
pub struct NewAppForm {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    unenrolled: String,
    #[serde(default)]
    default_state: String,
}

/// The company page's forms as they were sent, when one was refused: the refused form shows
/// the message and keeps its input.
#[derive(Default)]
struct CompanyForms {
    app: NewAppForm,
    app_error: Option<String>,
    invite_email: String,
    invite_error: Option<String>,
    new_sdk_key: Option<String>,
}

#[derive(Template)]
#[template(path = "company.html")]
struct CompanyPage {
    l: Layout,
    csrf: String,
    cid: String,
    me_email: String,
    apps: Vec<AppRow>,
    sdk_keys: Vec<KeyRow>,
    admins: Vec<String>,
    invitations: Vec<InvitationRow>,
    f: CompanyForms,
}

async fn company_page_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    status: StatusCode,
    f: CompanyForms,
) -> Result<Response, PageError> {
    let company = s
        .service
        .find_company(cid)
        .await?
        .ok_or_else(PageError::not_found)?;
    let tz = me.person.time_zone;
    let apps = s
        .service
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
    let sdk_keys = s
        .service
        .sdk_keys(cid)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            short: id_tail(&k.id),
            label: String::new(),
            created: when(k.created_at, tz),
            revoked: k.revoked_at.map(|t| when(t, tz)),
            last_used: None,
            id: k.id,
        })
        .collect();
    let invitations = s
        .service
        .pending_invitations(cid)
        .await?
        .into_iter()
        .map(|i| InvitationRow {
            sent: when(i.sent_at, tz),
            expires: when(i.expires_at, tz),
            email: i.email,
        })
        .collect();
    let page = CompanyPage {
        l: Layout::signed_in(&company.name, me, &format!("/companies/{cid}")),
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        me_email: me.person.email.clone(),
        apps,
        sdk_keys,
        admins: s.service.company_admins(cid).await?,
        invitations,
        f,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn company_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
) -> Result<Response, PageError> {
    company_page_with(&s, &me, &cid, StatusCode::OK, CompanyForms::default()).await
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

/// Creates an application and leads to its page; a refused one (a taken or malformed issuer)
/// shows the company page again with the message in the form and the form as it was sent.
pub async fn create_app(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<NewAppForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let created = async {
        Ok::<_, PageError>(
            s.service
                .create_application(
                    &cid,
                    &f.issuer,
                    Some(&f.name),
                    policy(&f.unenrolled)?,
                    state(&f.default_state)?,
                )
                .await?,
        )
    }
    .await;
    match created {
        Ok(app) => Ok(done(
            &format!("/companies/{cid}/apps/{}", app.id),
            Notice::Created,
        )),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let forms = CompanyForms {
                app: f,
                app_error: Some(message),
                ..CompanyForms::default()
            };
            company_page_with(&s, &me, &cid, status, forms).await
        }
    }
}

/// Creates an SDK key and shows it once, on the answer to this form (never in a URL or a
/// cookie). A refresh of that answer sends the same one-time form token again, which does
/// nothing a second time.
pub async fn create_sdk_key(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { me, cid }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let (_, token) = s.service.create_sdk_key(&cid).await?;
    let forms = CompanyForms {
        new_sdk_key: Some(token),
        ..CompanyForms::default()
    };
    company_page_with(&s, &me, &cid, StatusCode::OK, forms).await
}

pub async fn revoke_sdk_key(
    State(s): State<PortalState>,
    Path((_, kid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    match s.service.sdk_key(&kid).await? {
        Some(k) if k.company_id == cid => s.service.revoke_sdk_key(&kid).await?,
        _ => return Err(PageError::not_found()),
    }
    Ok(done(&format!("/companies/{cid}"), Notice::Revoked))
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
}

pub async fn invite_admin(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<InviteForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    match invite(&s, &portal, &cid, &f.email).await {
        Ok(()) => Ok(done(&format!("/companies/{cid}"), Notice::InvitationSent)),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let forms = CompanyForms {
                invite_email: f.email,
                invite_error: Some(message),
                ..CompanyForms::default()
            };
            company_page_with(&s, &me, &cid, status, forms).await
        }
    }
}

/// Emails `email` an invitation to administer company `cid`, replacing any sent before (whose
/// links stop working): one invitation an address is what the page lists.
pub(super) async fn invite(
    s: &PortalState,
    portal: &Portal,
    cid: &str,
    email: &str,
) -> Result<(), PageError> {
    let email = valid_email(email)?;
    let company = s.service.company(cid).await?;
    s.service.cancel_invitations(cid, &email).await?;
    send_link(
        s,
        portal,
        LinkPurpose::AdminInvite,
        &email,
        Some((&company.id, &company.name)),
    )
    .await
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

/// Sends a pending invitation again, with a new link (the old one stops working).
pub async fn resend_invitation(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<EmailForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let pending = s.service.pending_invitations(&cid).await?;
    if !pending.iter().any(|i| i.email == f.email) {
        return Err(PageError::not_found());
    }
    invite(&s, &portal, &cid, &f.email).await?;
    Ok(done(&format!("/companies/{cid}"), Notice::InvitationSent))
}

pub async fn cancel_invitation(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { cid, .. }, f): CsrfForm<EmailForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    if s.service.cancel_invitations(&cid, &f.email).await? == 0 {
        return Err(PageError::not_found());
    }
    Ok(done(
        &format!("/companies/{cid}"),
        Notice::InvitationCancelled,
    ))
}

#[derive(Deserialize, Default)]
pub struct RemoveAdminQuery {
    #[serde(default)]
    email: String,
}

/// Asks before an admin is removed, naming them (and saying so when it is oneself): the guard
/// that works without JavaScript.
pub async fn remove_admin_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Query(q): Query<RemoveAdminQuery>,
) -> Result<Response, PageError> {
    let company = s.service.company(&cid).await?;
    let email = deadbolt_store::normalize_email(&q.email);
    if !s.service.company_admins(&cid).await?.contains(&email) {
        return Err(PageError::not_found());
    }
    let myself = email == me.person.email;
    let mut lines = vec![if myself {
        format!(
            "You are about to remove yourself as an admin of {}: you will no longer see its pages.",
            company.name
        )
    } else {
        format!(
            "{email} will no longer be an admin of {}. Their account stays; they can be invited again.",
            company.name
        )
    }];
    lines.push("A company keeps at least one admin.".into());
    confirm_page(
        &me,
        Confirm {
            title: format!("Remove {email}?"),
            lines,
            action: format!("/companies/{cid}/admins/remove"),
            fields: vec![("email".into(), email)],
            button: "Remove admin".into(),
            back: format!("/companies/{cid}"),
            type_name: None,
        },
    )
}

pub async fn remove_admin(
    State(s): State<PortalState>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<EmailForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    s.service.remove_admin(&cid, &f.email).await?;
    if deadbolt_store::normalize_email(&f.email) == me.person.email {
        return Ok(done("/me", Notice::AdminRemoved));
    }
    Ok(done(&format!("/companies/{cid}"), Notice::AdminRemoved))
}

/// A page that asks before something is done that cannot be undone.
pub(super) struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub button: String,
    pub back: String,
    /// A name the person types to confirm (a whole company's deletion).
    pub type_name: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    l: Layout,
    csrf: String,
    c: Confirm,
}

pub(super) fn confirm_page(me: &Me, c: Confirm) -> Result<Response, PageError> {
    let page = ConfirmPage {
        l: Layout::signed_in(&c.title, me, ""),
        csrf: me.csrf.clone(),
        c,
    };
    Ok(render(&page)?.into_response())
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
    key_label: String,
    key_error: Option<String>,
    saved: bool,
}

/// The application page's key form: the new key's secret, shown once, or a refusal with the
/// label as it was sent.
#[derive(Default)]
struct KeyForm {
    new_key: Option<String>,
    label: String,
    error: Option<String>,
}

async fn app_page_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    aid: &str,
    status: StatusCode,
    form: KeyForm,
    saved: bool,
) -> Result<Response, PageError> {
    let app = company_app(s, cid, aid).await?;
    let tz = me.person.time_zone;
    let keys = s
        .service
        .signing_keys(&app.id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            short: id_tail(&k.id),
            label: k.label,
            created: when(k.created_at, tz),
            revoked: k.revoked_at.map(|t| when(t, tz)),
            last_used: k.last_used_at.map(|t| when(t, tz)),
            id: k.id,
        })
        .collect();
    let page = AppPage {
        l: Layout::signed_in(&app.name, me, &format!("/companies/{cid}")),
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        app,
        keys,
        new_key: form.new_key,
        key_label: form.label,
        key_error: form.error,
        saved,
    };
    Ok((status, render(&page)?).into_response())
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
    app_page_with(
        &s,
        &me,
        &cid,
        &aid,
        StatusCode::OK,
        KeyForm::default(),
        saved,
    )
    .await
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
            s.service.set_account_names(&app.id, names).await?;
        }
    }
    let settings = AppSettings {
        unenrolled: policy(&f.unenrolled)?,
        default_state: state(&f.default_state)?,
        audit_mode: f.audit_mode.is_some(),
    };
    s.service.update_application(&app.id, &settings).await?;
    // The page says the settings are saved: they are committed by now.
    Ok(Redirect::to(&format!(
        "/companies/{cid}/apps/{aid}?saved=settings"
    )))
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    label: String,
}

/// Creates a signing key and shows its secret once, on the answer to this form (never in a URL
/// or a cookie); a refresh sends the same one-time form token again, which adds no key.
pub async fn create_signing_key(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<NewKeyForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let (status, form) = match s
        .service
        .create_labelled_signing_key(&app.id, &f.label)
        .await
    {
        Ok((_, secret)) => (
            StatusCode::OK,
            KeyForm {
                new_key: Some(secret),
                ..KeyForm::default()
            },
        ),
        Err(e) => {
            let (status, message) = refusal(e.into())?;
            (
                status,
                KeyForm {
                    label: f.label,
                    error: Some(message),
                    ..KeyForm::default()
                },
            )
        }
    };
    app_page_with(&s, &me, &cid, &aid, status, form, false).await
}

pub async fn revoke_signing_key(
    State(s): State<PortalState>,
    Path((_, aid, kid)): Path<(String, String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let keys = s.service.signing_keys(&app.id).await?;
    if !keys.iter().any(|k| k.id == kid) {
        return Err(PageError::not_found());
    }
    s.service.revoke_signing_key(&kid).await?;
    Ok(done(
        &format!("/companies/{cid}/apps/{aid}"),
        Notice::Revoked,
    ))
}

/// Asks before an application is deleted, naming its issuer and saying what goes with it.
pub async fn delete_app_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let accounts = s.service.account_count(&app.id, None).await?;
    let attempts = s
        .service
        .attempt_count_of(&app.id, &Default::default())
        .await?;
    confirm_page(
        &me,
        Confirm {
            title: format!("Delete {}?", app.issuer),
            lines: vec![
                format!(
                    "The application {} (issuer {}) will be deleted, with its {} (their locks, unlock windows and schedules), its signing keys and its {}. This cannot be undone.",
                    app.name,
                    app.issuer,
                    count_of(accounts, "enrolled account"),
                    count_of(attempts, "recorded attempt"),
                ),
                "Its sign-in hook's next check is refused as coming from an unknown issuer: remove the hook first, or its users cannot sign in. The people who held its accounts keep their Deadbolt login.".into(),
            ],
            action: format!("/companies/{cid}/apps/{aid}/delete"),
            fields: vec![],
            button: format!("Delete {}", app.issuer),
            back: format!("/companies/{cid}/apps/{aid}"),
            type_name: None,
        },
    )
}

pub async fn delete_app(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    s.service.delete_application(&app.id).await?;
    Ok(done(&format!("/companies/{cid}"), Notice::Deleted))
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
