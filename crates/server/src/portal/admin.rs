//! A company admin's pages: the company, its applications and their settings, signing keys,
//! SDK keys, admins and the integration page. Every route names its company, and every object
//! is checked to belong to it: another company's objects look like missing ones.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use deadbolt_core::{AccountState, UnenrolledPolicy};
use deadbolt_store::{AppSettings, Application};
use serde::Deserialize;
use std::sync::Arc;

use super::company::{company_app, CompanyAdmin};
use super::csrf::{CsrfForm, NoFields};
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::pages::{render, utc_time, Layout};
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
    let company = s
        .service
        .find_company(cid)
        .await?
        .ok_or_else(PageError::not_found)?;
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
        admins: s.service.company_admins(cid).await?,
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
    let app = s
        .service
        .create_application(
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
    let (_, token) = s.service.create_sdk_key(&cid).await?;
    company_page_with(&s, &me, &cid, Some(token), None).await
}

pub async fn revoke_sdk_key(
    State(s): State<PortalState>,
    Path((_, kid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    match s.service.sdk_key(&kid).await? {
        Some(k) if k.company_id == cid => s.service.revoke_sdk_key(&kid).await?,
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
    let company = s.service.company(&cid).await?;
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
    let keys = s
        .service
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

pub async fn create_signing_key(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    CsrfForm(CompanyAdmin { me, cid }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let (_, secret) = s.service.create_signing_key(&app.id).await?;
    app_page_with(&s, &me, &cid, &aid, Some(secret), false).await
}

pub async fn revoke_signing_key(
    State(s): State<PortalState>,
    Path((_, aid, kid)): Path<(String, String, String)>,
    CsrfForm(CompanyAdmin { cid, .. }, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Redirect, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let keys = s.service.signing_keys(&app.id).await?;
    if !keys.iter().any(|k| k.id == kid) {
        return Err(PageError::not_found());
    }
    s.service.revoke_signing_key(&kid).await?;
    Ok(Redirect::to(&format!("/companies/{cid}/apps/{aid}")))
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
