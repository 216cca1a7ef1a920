//! What alert emails lead to, and what people and companies set about alerts: the one-time
//! links of an alert ("this was me", "this wasn't me"), a person's per-account switch, and a
//! company's webhook with its delivery log.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use deadbolt_store::{Attempt, Delivery};
use serde::Deserialize;
use std::sync::Arc;

use super::company::CompanyAdmin;
use super::csrf::{anonymous_page, check_pre_csrf, pre_csrf, CsrfForm, NoFields};
use super::error::PageError;
use super::notice::{done, Notice};
use super::pages::{refusal, render, utc_time, Layout};
use super::person::{my_account, tell_admins};
use super::session::ClientAddr;
use super::{Portal, PortalState};
use crate::service::{Actor, AlertLinkPurpose, By};

fn expired_link() -> PageError {
    PageError::Status(
        StatusCode::NOT_FOUND,
        "This link has expired or was already used. Sign in to see your accounts.".into(),
    )
}

#[derive(Template)]
#[template(path = "alert_not_me.html")]
struct NotMePage {
    l: Layout,
    csrf: String,
    token: String,
    account: String,
    app: String,
}

#[derive(Template)]
#[template(path = "alert_done.html")]
struct NotMeDone {
    l: Layout,
    told: bool,
}

/// An alert's link. "This was me" signs nothing in and changes nothing: it leads to the account's
/// page (its unlock choices), through the sign-in when there is no session, as often as it is
/// followed until it expires, so that a mail scanner or a link preview following it first does
/// not spoil it for the person. "This wasn't me" only shows a confirmation here: a GET must not
/// lock anything, for the same reason.
pub async fn alert_link(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let link = s
        .service
        .alert_link(&token, false)
        .await?
        .ok_or_else(expired_link)?;
    match AlertLinkPurpose::parse(&link.purpose) {
        Some(AlertLinkPurpose::WasMe) => {
            Ok(Redirect::to(&format!("/me/accounts/{}", link.account_id)).into_response())
        }
        Some(AlertLinkPurpose::NotMe) => {
            let acc = s.service.account_by_id(&link.account_id).await?;
            let app = match &acc {
                Some(a) => s.service.find_application(&a.app_id).await?,
                None => None,
            };
            let csrf = pre_csrf(&headers);
            let page = NotMePage {
                l: Layout::anonymous("This wasn't me"),
                csrf: csrf.0.clone(),
                token,
                account: acc.map_or_else(|| "your account".into(), |a| a.account),
                app: app.map_or_else(|| "an application".into(), |a| a.name),
            };
            Ok(anonymous_page(&portal, StatusCode::OK, render(&page), csrf))
        }
        None => Err(expired_link()),
    }
}

#[derive(Deserialize)]
pub struct NotMeForm {
    #[serde(default)]
    csrf: String,
}

/// "This wasn't me", confirmed: lock everything (the same operation as the attempts page's
/// button, recorded as the person's own change) and tell the company's admins. The link is
/// used up; a second use finds it used.
pub async fn not_me(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(token): Path<String>,
    addr: ClientAddr,
    headers: HeaderMap,
    Form(f): Form<NotMeForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let link = s
        .service
        .alert_link(&token, false)
        .await?
        .filter(|l| AlertLinkPurpose::parse(&l.purpose) == Some(AlertLinkPurpose::NotMe))
        .ok_or_else(expired_link)?;
    let person = s
        .service
        .person(&link.person_id)
        .await?
        .ok_or_else(expired_link)?;
    // Locked before the link is used up: should the lock fail, the link still works. Locking
    // twice changes nothing, and only the use that takes the link tells the admins.
    let by = By::new(
        Actor::Person {
            id: person.id.clone(),
        },
        Some(addr.0.clone()),
    );
    s.service.set_master_lock_of(&by, &person.id, true).await?;
    let mut told = false;
    if s.service.alert_link(&token, true).await?.is_some() {
        let acc = s
            .service
            .account_by_id(&link.account_id)
            .await?
            .filter(|a| a.person_id.as_deref() == Some(person.id.as_str()));
        if let Some(acc) = acc {
            let attempt = s
                .service
                .attempt(link.attempt_id)
                .await?
                .unwrap_or_else(|| Attempt {
                    id: link.attempt_id,
                    at: s.service.now(),
                    app_id: acc.app_id.clone(),
                    key_id: None,
                    account: acc.account.clone(),
                    locked: true,
                    reason: String::new(),
                    ip: None,
                    device: None,
                    location: None,
                    integration_type: None,
                    integration_data: None,
                });
            tell_admins(&s, &portal, &person.email, &attempt, &acc).await?;
            told = true;
        }
    } else {
        return Err(expired_link());
    }
    let page = NotMeDone {
        l: Layout::anonymous("Everything is locked"),
        told,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct AlertsForm {
    on: String,
}

/// Turns alerts for one of the person's accounts on or off.
pub async fn set_alerts(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    CsrfForm(me, f): CsrfForm<AlertsForm>,
) -> Result<Response, PageError> {
    let acc = my_account(&s, &me, &id).await?;
    s.service.set_alerts(&acc.id, f.on == "1").await?;
    Ok(done(&format!("/me/accounts/{}", acc.id), Notice::Saved))
}

// ---- a company's webhook ----

pub struct DeliveryRow {
    pub at: String,
    pub attempt_id: i64,
    pub state: String,
    pub tries: i64,
    pub status: String,
    pub error: String,
    pub last_try: String,
}

fn delivery_row(d: &Delivery) -> DeliveryRow {
    DeliveryRow {
        at: utc_time(d.created_at),
        attempt_id: d.attempt_id,
        state: d.state.clone(),
        tries: d.tries,
        status: d.last_status.map_or_else(String::new, |s| s.to_string()),
        error: d.last_error.clone().unwrap_or_default(),
        last_try: d.last_try_at.map_or_else(String::new, utc_time),
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    l: Layout,
    csrf: String,
    cid: String,
    url: Option<String>,
    new_secret: Option<String>,
    error: Option<String>,
    form_url: String,
    deliveries: Vec<DeliveryRow>,
}

/// Deliveries shown in the log.
const LOG_LEN: i64 = 100;

async fn webhook_page_with(
    s: &PortalState,
    admin: &CompanyAdmin,
    status: StatusCode,
    new_secret: Option<String>,
    error: Option<String>,
    form_url: String,
) -> Result<Response, PageError> {
    let hook = s.service.webhook(&admin.cid).await?;
    let deliveries = s.service.deliveries(&admin.cid, LOG_LEN).await?;
    let page = WebhookPage {
        l: Layout::signed_in("Webhook", &admin.me, &format!("/companies/{}", admin.cid)),
        csrf: admin.me.csrf.clone(),
        cid: admin.cid.clone(),
        url: hook.map(|h| h.url),
        new_secret,
        error,
        form_url,
        deliveries: deliveries.iter().map(delivery_row).collect(),
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn webhook_page(
    State(s): State<PortalState>,
    admin: CompanyAdmin,
) -> Result<Response, PageError> {
    webhook_page_with(&s, &admin, StatusCode::OK, None, None, String::new()).await
}

#[derive(Deserialize)]
pub struct WebhookForm {
    #[serde(default)]
    url: String,
}

/// Sets the company's webhook; the new secret is shown once, on the answer.
pub async fn set_webhook(
    State(s): State<PortalState>,
    CsrfForm(admin, f): CsrfForm<WebhookForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    match s.service.set_webhook(&admin.cid, &f.url).await {
        Ok(secret) => {
            webhook_page_with(
                &s,
                &admin,
                StatusCode::OK,
                Some(secret),
                None,
                String::new(),
            )
            .await
        }
        Err(e) => {
            let (status, message) = refusal(e.into())?;
            // What was typed is shown back only when it is short: 3,000 characters of HTML
            // need not be echoed (they are escaped anyway).
            let back = if f.url.len() <= crate::service::MAX_WEBHOOK_URL {
                f.url
            } else {
                String::new()
            };
            webhook_page_with(&s, &admin, status, None, Some(message), back).await
        }
    }
}

pub async fn delete_webhook(
    State(s): State<PortalState>,
    CsrfForm(admin, _): CsrfForm<NoFields, CompanyAdmin>,
) -> Result<Response, PageError> {
    s.service.delete_webhook(&admin.cid).await?;
    Ok(done(
        &format!("/companies/{}/webhook", admin.cid),
        Notice::Deleted,
    ))
}
