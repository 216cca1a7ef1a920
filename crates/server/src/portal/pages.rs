//! The page layout, the error page and what templates share.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::error::{ErrorMessage, PageError};
use super::form_token::form_token;
use super::notice::Notice;
use super::session::{Me, Role};

/// What a page shows in its header: who is signed in and where they can go.
pub struct Layout {
    pub title: String,
    /// The signed-in person's email, CSRF token (for the sign-out form) and links.
    pub nav: Option<Nav>,
    /// What the action that led here did, said once at the top of the page.
    pub notice: Option<&'static str>,
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
            notice: None,
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
        links.push(("/me/passkeys".into(), "Passkeys".into()));
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
                // Its own token: signing out from a page whose forms were used still works.
                csrf: form_token(&me.session_csrf),
                links,
            }),
            notice: me.notice.map(Notice::message),
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

/// A time on an admin's page: in the admin's own time zone, with UTC beside it (in a
/// `title`) for comparing with logs.
pub struct When {
    pub local: String,
    pub utc: String,
    /// For `<time datetime>`.
    pub iso: String,
}

pub fn when(t: DateTime<Utc>, tz: Tz) -> When {
    When {
        local: local_time(t, tz),
        utc: utc_time(t),
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// What a form that was refused shows: the message, in the form, whose input is kept. Refusals
/// of the input (4xx other than 404) become this; anything else stays an error page.
pub fn refusal(e: PageError) -> Result<(axum::http::StatusCode, String), PageError> {
    match e {
        PageError::Status(code, message)
            if code.is_client_error() && code != axum::http::StatusCode::NOT_FOUND =>
        {
            Ok((code, message))
        }
        e => Err(e),
    }
}

/// One page of a list: where it starts, and the links to the pages beside it.
pub struct Pager {
    /// 1-based.
    pub page: i64,
    pub total: i64,
    pub first: i64,
    pub last: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// Page `page` of `total` rows, `len` to a page; `link(n)` is page n's URL.
    pub fn new(
        page: i64,
        len: i64,
        total: i64,
        shown: usize,
        link: impl Fn(i64) -> String,
    ) -> Self {
        let page = page.max(1);
        let first = (page - 1) * len + 1;
        let last = first + shown as i64 - 1;
        Self {
            page,
            total,
            first: first.min(total.max(1)),
            last: last.max(0),
            prev: (page > 1).then(|| link(page - 1)),
            next: (last < total).then(|| link(page + 1)),
        }
    }

    /// The offset of page `page`.
    pub fn offset(page: i64, len: i64) -> i64 {
        (page.max(1) - 1).saturating_mul(len)
    }
}

/// `n` things, in the singular when it is one: `count_of(1, "application")`.
pub fn count_of(n: i64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A query value, percent-encoded.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A time in UTC, for admins of applications used across time zones.
pub fn utc_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}
