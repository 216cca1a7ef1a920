//! The operator's page: companies, and the invitation of each company's first admin.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::csrf::CsrfForm;
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::pages::{done, render, utc_time, Layout, Notice};
use super::session::Me;
use super::{Portal, PortalState};
use crate::service::valid_email;

pub struct CompanyView {
    pub name: String,
    pub created: String,
    pub admins: String,
    pub apps: usize,
}

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    l: Layout,
    csrf: String,
    companies: Vec<CompanyView>,
}

async fn page_with(s: &PortalState, me: &Me) -> Result<Response, PageError> {
    let mut companies = Vec::new();
    for c in s.service.companies().await? {
        let admins = s.service.company_admins(&c.id).await?;
        let apps = s.service.applications(Some(&c.id)).await?.len();
        companies.push(CompanyView {
            created: utc_time(c.created_at),
            admins: if admins.is_empty() {
                "invitation pending".into()
            } else {
                admins.join(", ")
            },
            apps,
            name: c.name,
        });
    }
    let page = OperatorPage {
        l: Layout::signed_in("Companies", me, "/operator"),
        csrf: me.csrf.clone(),
        companies,
    };
    Ok(render(&page)?.into_response())
}

pub async fn page(State(s): State<PortalState>, me: Me) -> Result<Response, PageError> {
    me.operator()?;
    page_with(&s, &me).await
}

#[derive(Deserialize)]
pub struct CompanyForm {
    name: String,
    admin_email: String,
}

/// Creates a company and emails its first admin an invitation.
pub async fn create_company(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(me, f): CsrfForm<CompanyForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    let email = valid_email(&f.admin_email)?;
    let company = s.service.create_company(&f.name).await?;
    send_link(
        &s,
        &portal,
        LinkPurpose::AdminInvite,
        &email,
        Some((&company.id, &company.name)),
    )
    .await?;
    // Post/redirect/get: a refresh of the page that follows does not make a second company.
    Ok(done("/operator", Notice::Invited))
}
