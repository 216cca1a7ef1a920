//! Emailed one-time links (sign-up, invitations, password reset, the first operator) and the
//! welcome page that follows one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::Duration;
use deadbolt_store::Person;
use serde::Deserialize;
use std::sync::Arc;

use super::csrf::{anonymous_page, check_pre_csrf, pre_csrf};
use super::error::PageError;
use super::pages::{render, Layout};
use super::session::{random_token, start_session, Role};
use super::throttle::Policy;
use super::{base_url, Portal, PortalState};
use crate::crypto::{self, token_hash};
use crate::error::Error;
use crate::service::password_problem;
use crate::service::{valid_email, Service};

const LINK_DAYS: i64 = 3;
/// A first-run link lives an hour; a new one is printed at each start while no operator exists.
const OPERATOR_LINK_MINUTES: i64 = 60;

/// Why an emailed link was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// A person signs up (or verifies their email) and chooses a password.
    SignUp,
    /// A company admin is invited; following the link grants the role.
    AdminInvite,
    /// A forgotten password.
    PasswordReset,
    /// The first operator account.
    OperatorSetup,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::SignUp => "signup",
            LinkPurpose::AdminInvite => "admin_invite",
            LinkPurpose::PasswordReset => "password_reset",
            LinkPurpose::OperatorSetup => "operator_setup",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "signup" => LinkPurpose::SignUp,
            "admin_invite" => LinkPurpose::AdminInvite,
            "password_reset" => LinkPurpose::PasswordReset,
            "operator_setup" => LinkPurpose::OperatorSetup,
            _ => return None,
        })
    }
}

/// A usable emailed link.
struct Link {
    purpose: LinkPurpose,
    email: String,
    company_id: Option<String>,
}

async fn grant(service: &Service, person_id: &str, role: &Role) -> Result<(), Error> {
    let (name, company) = role.parts();
    service
        .grant_role(person_id, name, company, service.now())
        .await
}

/// Creates a one-time link and emails it. Quietly sends nothing once an address has had its
/// share of emails for a while.
pub(super) async fn send_link(
    s: &PortalState,
    portal: &Portal,
    purpose: LinkPurpose,
    email: &str,
    company: Option<(&str, &str)>,
) -> Result<(), PageError> {
    let now = s.service.now();
    let key = portal.throttle.key("mail", email, Policy::MAIL);
    if portal.throttle.admit(&[key], now).await?.is_err() {
        tracing::warn!(
            purpose = purpose.as_str(),
            "email not sent: too many to this address"
        );
        return Ok(());
    }
    let url = create_link(
        &s.service,
        &base_url(portal),
        purpose,
        email,
        company.map(|c| c.0),
    )
    .await?;
    let (subject, text) = match purpose {
        LinkPurpose::SignUp => (
            "Your Deadbolt account".to_string(),
            "Follow this link to choose your password and see the accounts you can lock:".to_string(),
        ),
        LinkPurpose::AdminInvite => (
            format!("You are invited to administer {} on Deadbolt", company.map_or("a company", |c| c.1)),
            format!(
                "You have been invited to administer {} on Deadbolt. Follow this link to accept and choose your password:",
                company.map_or("a company", |c| c.1)
            ),
        ),
        LinkPurpose::PasswordReset => (
            "Reset your Deadbolt password".to_string(),
            "Follow this link to choose a new password. If you did not ask for it, ignore this email.".to_string(),
        ),
        LinkPurpose::OperatorSetup => (
            "Set up Deadbolt".to_string(),
            "Follow this link to create the operator account:".to_string(),
        ),
    };
    let body = format!("{text}\n\n{url}\n\nThe link works once, for {LINK_DAYS} days.\n");
    portal.mailer.send(email, &subject, body).await?;
    Ok(())
}

async fn create_link(
    service: &Service,
    base: &str,
    purpose: LinkPurpose,
    email: &str,
    company_id: Option<&str>,
) -> Result<String, Error> {
    let token = random_token();
    let now = service.now();
    service
        .create_link(
            &token_hash(&token),
            purpose.as_str(),
            email,
            company_id,
            now,
            now + Duration::days(LINK_DAYS),
        )
        .await?;
    Ok(format!("{}/welcome/{token}", base.trim_end_matches('/')))
}

/// First run: a one-time link that creates the operator account `email` (for the CLI, which
/// prints it). Like the link printed at start, it only creates a new person, lives an hour and
/// dies when any operator exists.
pub async fn invite_operator(
    service: &Service,
    base_url: &str,
    email: &str,
) -> Result<String, Error> {
    let email = valid_email(email)?;
    if service.has_operator().await? {
        return Err(Error::Conflict("an operator".into()));
    }
    operator_link(service, base_url, &email).await
}

/// At start: while no operator exists, a one-time link to create one (for the server to print).
pub async fn first_run_link(service: &Service, base_url: &str) -> Result<Option<String>, Error> {
    if service.has_operator().await? {
        return Ok(None);
    }
    operator_link(service, base_url, "").await.map(Some)
}

async fn operator_link(service: &Service, base_url: &str, email: &str) -> Result<String, Error> {
    let token = random_token();
    let now = service.now();
    service
        .create_link(
            &token_hash(&token),
            LinkPurpose::OperatorSetup.as_str(),
            email,
            None,
            now,
            now + Duration::minutes(OPERATOR_LINK_MINUTES),
        )
        .await?;
    Ok(format!(
        "{}/welcome/{token}",
        base_url.trim_end_matches('/')
    ))
}

/// Creates (or promotes) the operator account directly: the CLI's way, for whoever runs it
/// with the store's credentials.
pub async fn create_operator(
    service: &Service,
    email: &str,
    password: &str,
) -> Result<Person, Error> {
    let email = valid_email(email)?;
    let person = match service.find_person_by_email(&email).await? {
        Some(p) => p,
        None => service.create_person(&email, None, None).await?,
    };
    let hash = crypto::hash_password(password)?;
    let now = service.now();
    service
        .set_password_hash(&person.id, &hash, true, now)
        .await?;
    grant(service, &person.id, &Role::Operator).await?;
    Ok(person)
}

// ---- following an emailed link ----

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    l: Layout,
    csrf: String,
    token: String,
    /// The first-run link names no one: the form asks.
    ask_email: bool,
    email: String,
    heading: String,
    error: Option<String>,
}

fn welcome_heading(link: &Link, company: Option<String>) -> String {
    match link.purpose {
        LinkPurpose::SignUp => "Choose your password".into(),
        LinkPurpose::AdminInvite => format!(
            "Administer {} — choose your password",
            company.unwrap_or_else(|| "your company".into())
        ),
        LinkPurpose::PasswordReset => "Choose a new password".into(),
        LinkPurpose::OperatorSetup => "Create the operator account".into(),
    }
}

/// The link with that hashed token, if it can still be used; `take` uses it up.
async fn usable_link(s: &PortalState, hash: &str, take: bool) -> Result<Link, PageError> {
    let now = s.service.now();
    let link = if take {
        s.service.take_link(hash, now).await?
    } else {
        s.service.link(hash, now).await?
    };
    let link = link.ok_or_else(expired_link)?;
    let purpose = LinkPurpose::parse(&link.purpose).ok_or_else(expired_link)?;
    if purpose == LinkPurpose::OperatorSetup && s.service.has_operator().await? {
        return Err(expired_link());
    }
    Ok(Link {
        purpose,
        email: link.email,
        company_id: link.company_id,
    })
}

fn expired_link() -> PageError {
    PageError::Status(
        StatusCode::NOT_FOUND,
        "This link has expired or was already used. Ask for a new one.".into(),
    )
}

pub async fn welcome_page(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let link = usable_link(&s, &token_hash(&token), false).await?;
    let company = company_name(&s, &link).await?;
    let csrf = pre_csrf(&headers);
    let page = WelcomePage {
        l: Layout::anonymous("Welcome"),
        csrf: csrf.0.clone(),
        token,
        ask_email: link.email.is_empty(),
        email: link.email.clone(),
        heading: welcome_heading(&link, company),
        error: None,
    };
    Ok(anonymous_page(&portal, StatusCode::OK, render(&page), csrf))
}

async fn company_name(s: &PortalState, link: &Link) -> Result<Option<String>, PageError> {
    Ok(match &link.company_id {
        Some(c) => s.service.find_company(c).await?.map(|c| c.name),
        None => None,
    })
}

#[derive(Deserialize)]
pub struct WelcomeForm {
    #[serde(default)]
    csrf: String,
    /// Asked only by the first-run link, which names no one.
    #[serde(default)]
    email: String,
    password: String,
    confirm: String,
}

pub async fn welcome(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<WelcomeForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let hash_of_token = token_hash(&token);
    let link = usable_link(&s, &hash_of_token, false).await?;
    let refuse = |problem: String, company: Option<String>| {
        let page = WelcomePage {
            l: Layout::anonymous("Welcome"),
            csrf: f.csrf.clone(),
            token: token.clone(),
            ask_email: link.email.is_empty(),
            email: if link.email.is_empty() {
                f.email.clone()
            } else {
                link.email.clone()
            },
            heading: welcome_heading(&link, company),
            error: Some(problem),
        };
        Ok::<_, PageError>((StatusCode::BAD_REQUEST, render(&page)?).into_response())
    };
    if let Some(problem) = password_problem(&f.password, &f.confirm) {
        let company = company_name(&s, &link).await?;
        return refuse(problem, company);
    }
    let hashed = portal.passwords.hash(&f.password).await?;
    let email = if link.email.is_empty() {
        valid_email(&f.email)?
    } else {
        link.email.clone()
    };
    let now = s.service.now();
    if link.purpose == LinkPurpose::OperatorSetup {
        // Only ever a new person, and only while no operator exists: checked and done in one
        // transaction by the store.
        let made = s
            .service
            .create_first_operator(&hash_of_token, &email, &hashed, now)
            .await;
        let person = match made {
            Ok(Some(p)) => p,
            Ok(None) => return Err(expired_link()),
            Err(Error::Conflict(_)) => {
                return refuse(
                    "This address cannot be used for the operator account. Choose another one."
                        .into(),
                    None,
                );
            }
            Err(e) => return Err(e.into()),
        };
        return start_session(&s, &portal, &headers, &person.id, "/operator").await;
    }
    // Only the first submission uses the link.
    let link = usable_link(&s, &hash_of_token, true).await?;
    let person = match s.service.find_person_by_email(&email).await? {
        Some(p) => p,
        None if link.purpose == LinkPurpose::PasswordReset => return Err(expired_link()),
        None => s.service.create_person(&email, None, None).await?,
    };
    s.service
        .set_password_hash(&person.id, &hashed, true, now)
        .await?;
    // A password set from an emailed link proves the address: its sign-in wait is over.
    // Should the store fail here, the password is set all the same: the wait ends by itself
    // (in a minute at most), and an error page would tell the person the change failed.
    let waits = [
        portal.throttle.key("login", &email, Policy::EMAIL),
        portal.throttle.key("email-request", &email, Policy::EMAIL),
    ];
    if let Err(e) = portal.throttle.clear(&waits, now).await {
        tracing::warn!(error = %e, "the sign-in wait of a reset address not ended");
    }
    if let (LinkPurpose::AdminInvite, Some(c)) = (link.purpose, &link.company_id) {
        grant(
            &s.service,
            &person.id,
            &Role::Admin {
                company_id: c.clone(),
            },
        )
        .await?;
    }
    let to = match (link.purpose, &link.company_id) {
        (LinkPurpose::AdminInvite, Some(c)) => format!("/companies/{c}"),
        _ => "/me".into(),
    };
    // A new password ends every other session.
    let res = start_session(&s, &portal, &headers, &person.id, &to).await?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_purposes_round_trip() {
        for p in [
            LinkPurpose::SignUp,
            LinkPurpose::AdminInvite,
            LinkPurpose::PasswordReset,
            LinkPurpose::OperatorSetup,
        ] {
            assert_eq!(LinkPurpose::parse(p.as_str()), Some(p));
        }
    }
}
