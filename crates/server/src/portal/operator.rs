//! The operator's pages: companies, a page at a time, the invitation of each company's first
//! admin, and one company's page (rename, invite an admin, delete).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadbolt_store::{Application, Company};
use serde::Deserialize;
use std::sync::Arc;

use super::admin::{confirm_page, invite, Confirm};
use super::csrf::CsrfForm;
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::notice::{done, Notice};
use super::pages::{count_of, refusal, render, when, Layout, Pager, When};
use super::session::Me;
use super::{Portal, PortalState};
use crate::service::valid_email;

pub struct CompanyView {
    pub id: String,
    pub name: String,
    pub created: When,
    pub admins: String,
    pub apps: usize,
}

/// The operator's companies, a page at a time.
const COMPANIES_PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    l: Layout,
    csrf: String,
    companies: Vec<CompanyView>,
    pager: Pager,
    f: CompanyForm,
    error: Option<String>,
    /// Whether operators and company admins must sign in with a passkey.
    second_factor: bool,
    /// Who changed that last, and when.
    second_factor_changed: Option<String>,
    /// Why passkeys are off, when they are.
    passkeys_off: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<i64>,
}

async fn page_with(
    s: &PortalState,
    me: &Me,
    page: i64,
    status: StatusCode,
    (f, error): (CompanyForm, Option<String>),
) -> Result<Response, PageError> {
    let total = s.service.company_count().await?;
    let mut companies = Vec::new();
    for c in s
        .service
        .companies_page(Pager::offset(page, COMPANIES_PAGE), COMPANIES_PAGE)
        .await?
    {
        let admins = s.service.company_admins(&c.id).await?;
        let apps = s.service.applications(Some(&c.id)).await?.len();
        companies.push(CompanyView {
            created: when(c.created_at, me.person.time_zone),
            admins: if admins.is_empty() {
                "invitation pending".into()
            } else {
                admins.join(", ")
            },
            apps,
            id: c.id,
            name: c.name,
        });
    }
    let pager = Pager::new(page, COMPANIES_PAGE, total, companies.len(), |n| {
        format!("/operator?page={n}")
    });
    let second_factor = s.service.second_factor(&me.person.id).await?.required;
    let second_factor_changed = s.service.settings_audit(1).await?.first().map(|e| {
        format!(
            "Turned {} by {} on {}.",
            e.new.as_ref().map_or("", |n| n.state.as_str()),
            e.by.actor_name.as_deref().unwrap_or(&e.by.actor),
            when(e.at, me.person.time_zone).local
        )
    });
    let page = OperatorPage {
        second_factor,
        second_factor_changed,
        passkeys_off: portal_passkeys_off(s),
        l: Layout::signed_in("Companies", me, "/operator"),
        csrf: me.csrf.clone(),
        companies,
        pager,
        f,
        error,
    };
    Ok((status, render(&page)?).into_response())
}

fn portal_passkeys_off(s: &PortalState) -> Option<String> {
    s.portal.passkeys.as_ref().err().cloned()
}

pub async fn page(
    State(s): State<PortalState>,
    me: Me,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    me.operator()?;
    page_with(
        &s,
        &me,
        q.page.unwrap_or(1),
        StatusCode::OK,
        Default::default(),
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct CompanyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    admin_email: String,
}

/// Creates a company and emails its first admin an invitation; a refused one shows the form
/// again with its input.
pub async fn create_company(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(me, f): CsrfForm<CompanyForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    let created = async {
        let email = valid_email(&f.admin_email)?;
        let company = s.service.create_company(&f.name).await?;
        send_link(
            &s,
            &portal,
            LinkPurpose::AdminInvite,
            &email,
            Some((&company.id, &company.name)),
        )
        .await
    }
    .await;
    match created {
        // Post/redirect/get: a refresh of the page that follows does not make a second company.
        Ok(()) => Ok(done("/operator", Notice::Invited)),
        Err(e) => {
            let (status, message) = refusal(e)?;
            page_with(&s, &me, 1, status, (f, Some(message))).await
        }
    }
}

// ---- one company ----

#[derive(Template)]
#[template(path = "operator_company.html")]
struct CompanyPage {
    l: Layout,
    csrf: String,
    company: Company,
    created: When,
    admins: Vec<String>,
    invitations: Vec<String>,
    apps: Vec<Application>,
    rename: String,
    rename_error: Option<String>,
    invite_email: String,
    invite_error: Option<String>,
}

/// The company page's forms as sent, when one was refused.
#[derive(Default)]
struct CompanyForms {
    rename: Option<String>,
    rename_error: Option<String>,
    invite_email: String,
    invite_error: Option<String>,
}

async fn company_with(
    s: &PortalState,
    me: &Me,
    cid: &str,
    status: StatusCode,
    f: CompanyForms,
) -> Result<Response, PageError> {
    let company = s.service.company(cid).await?;
    let page = CompanyPage {
        l: Layout::signed_in(&company.name, me, "/operator"),
        csrf: me.csrf.clone(),
        created: when(company.created_at, me.person.time_zone),
        admins: s.service.company_admins(cid).await?,
        invitations: s
            .service
            .pending_invitations(cid)
            .await?
            .into_iter()
            .map(|i| i.email)
            .collect(),
        apps: s.service.applications(Some(cid)).await?,
        rename: f.rename.unwrap_or_else(|| company.name.clone()),
        rename_error: f.rename_error,
        invite_email: f.invite_email,
        invite_error: f.invite_error,
        company,
    };
    Ok((status, render(&page)?).into_response())
}

/// A company as the operator sees it: its name, admins, invitations and applications, and what
/// the operator may do with it.
pub async fn company_page(
    State(s): State<PortalState>,
    me: Me,
    Path(cid): Path<String>,
) -> Result<Response, PageError> {
    me.operator()?;
    company_with(&s, &me, &cid, StatusCode::OK, CompanyForms::default()).await
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

pub async fn rename_company(
    State(s): State<PortalState>,
    Path(cid): Path<String>,
    CsrfForm(me, f): CsrfForm<RenameForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    match s.service.rename_company(&cid, &f.name).await {
        Ok(()) => Ok(done(&format!("/operator/companies/{cid}"), Notice::Saved)),
        Err(e) => {
            let (status, message) = refusal(e.into())?;
            let forms = CompanyForms {
                rename: Some(f.name),
                rename_error: Some(message),
                ..CompanyForms::default()
            };
            company_with(&s, &me, &cid, status, forms).await
        }
    }
}

#[derive(Deserialize)]
pub struct AdminForm {
    #[serde(default)]
    email: String,
}

/// Invites an admin to an existing company (one whose first admin left, or a second one).
pub async fn invite_admin(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(cid): Path<String>,
    CsrfForm(me, f): CsrfForm<AdminForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    match invite(&s, &portal, &cid, &f.email).await {
        Ok(()) => Ok(done(
            &format!("/operator/companies/{cid}"),
            Notice::InvitationSent,
        )),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let forms = CompanyForms {
                invite_email: f.email,
                invite_error: Some(message),
                ..CompanyForms::default()
            };
            company_with(&s, &me, &cid, status, forms).await
        }
    }
}

/// Asks before a company is deleted, naming it and what goes with it; the name must be typed.
pub async fn delete_company_page(
    State(s): State<PortalState>,
    me: Me,
    Path(cid): Path<String>,
) -> Result<Response, PageError> {
    me.operator()?;
    let company = s.service.company(&cid).await?;
    let apps = s.service.applications(Some(&cid)).await?;
    let issuers = apps
        .iter()
        .map(|a| a.issuer.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut lines = vec![format!(
        "The company {} will be deleted with its {}{}: their enrolled accounts, signing keys and recorded attempts, the company's SDK keys, its admins' roles and its pending invitations. This cannot be undone.",
        company.name,
        count_of(apps.len() as i64, "application"),
        if issuers.is_empty() { String::new() } else { format!(" ({issuers})") }
    )];
    lines.push("The hooks of its applications are refused at their next check. The people stay: their Deadbolt logins and accounts at other companies are not touched.".into());
    confirm_page(
        &me,
        Confirm {
            title: format!("Delete {}?", company.name),
            lines,
            action: format!("/operator/companies/{cid}/delete"),
            fields: vec![],
            button: format!("Delete {}", company.name),
            back: format!("/operator/companies/{cid}"),
            type_name: Some(company.name),
        },
    )
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

pub async fn delete_company(
    State(s): State<PortalState>,
    Path(cid): Path<String>,
    CsrfForm(me, f): CsrfForm<DeleteForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    let company = s.service.company(&cid).await?;
    if f.confirm.trim() != company.name {
        return Err(PageError::bad(format!(
            "Nothing was deleted: type the company's name, {}, to confirm.",
            company.name
        )));
    }
    s.service.delete_company(&cid).await?;
    Ok(done("/operator", Notice::Deleted))
}
