//! The page layout, the error page and what templates share.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::error::{ErrorMessage, PageError};
use super::session::{Me, Role};

/// What a page shows in its header: who is signed in and where they can go.
pub struct Layout {
    pub title: String,
    /// The signed-in person's email, CSRF token (for the sign-out form) and links.
    pub nav: Option<Nav>,
}

pub struct Nav {
    pub email: String,
    pub csrf: String,
    pub links: Vec<NavLink>,
}

pub struct NavLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

impl Layout {
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_string(),
            nav: None,
        }
    }

    pub fn signed_in(title: &str, me: &Me, current: &str) -> Self {
        let mut links = vec![
            ("/me".to_string(), "My accounts".to_string()),
            ("/me/schedules".to_string(), "Schedules".to_string()),
            ("/me/pairing".to_string(), "Pairing".to_string()),
        ];
        for m in &me.roles {
            match &m.role {
                Role::Operator => links.push(("/operator".into(), "Companies".into())),
                Role::Admin { company_id } => links.push((
                    format!("/companies/{company_id}"),
                    m.company_name.clone().unwrap_or_else(|| "Company".into()),
                )),
            }
        }
        links.push(("/password".into(), "Password".into()));
        let links = links
            .into_iter()
            .map(|(href, label)| NavLink {
                current: href == current,
                href,
                label,
            })
            .collect();
        Self {
            title: title.to_string(),
            nav: Some(Nav {
                email: me.person.email.clone(),
                csrf: me.csrf.clone(),
                links,
            }),
        }
    }
}

/// Renders a template into a page.
pub fn render<T: Template>(t: &T) -> Result<Html<String>, PageError> {
    t.render()
        .map(Html)
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}

/// Renders a fragment (inserted into a page, or sent live).
pub fn fragment<T: Template>(t: &T) -> Result<String, PageError> {
    t.render()
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    message: String,
    request_id: String,
}

/// Renders the page of a response a [`PageError`] made, naming the request's id; any other
/// response passes untouched.
pub fn error_page(mut res: Response, request_id: &str) -> Response {
    let Some(ErrorMessage(message)) = res.extensions_mut().remove::<ErrorMessage>() else {
        return res;
    };
    let status = res.status();
    let page = ErrorPage {
        l: Layout::anonymous(status.canonical_reason().unwrap_or("Error")),
        message,
        request_id: request_id.to_string(),
    };
    let (mut parts, _) = res.into_parts();
    let html = match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(_) => "error".into_response(),
    };
    let (html_parts, body) = html.into_parts();
    parts.headers.extend(html_parts.headers);
    Response::from_parts(parts, body)
}

/// A time as the person reads it, in their time zone.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// A time in UTC, for admins of applications used across time zones.
pub fn utc_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}
