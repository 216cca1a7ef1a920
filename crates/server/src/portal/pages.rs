//! The page layout, the error page and what templates share.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::csrf::form_token;
use super::error::{ErrorMessage, PageError};
use super::session::{Me, Role};

/// What a page shows in its header: who is signed in and where they can go.
pub struct Layout {
    pub title: String,
    /// The signed-in person's email, CSRF token (for the sign-out form) and links.
    pub nav: Option<Nav>,
    /// What the action that led here did, said once at the top of the page.
    pub notice: Option<&'static str>,
}

/// What a page says about the action that led to it: after a form, the answer is a redirect
/// to a page (so that a refresh repeats nothing) whose query names one of these. A fixed list,
/// so that a link cannot make a page say anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The form was sent before: nothing was done again.
    Again,
    Saved,
    Created,
    Locked,
    Unlocked,
    Revoked,
    Deleted,
    Sent,
    /// A company was created and its first admin invited.
    Invited,
    InvitationSent,
    InvitationCancelled,
    AdminRemoved,
    Enrolled,
    AlreadyEnrolled,
    /// Enrolled, and its person emailed a link to sign up.
    EnrolledInvited,
    Imported,
}

impl Notice {
    const ALL: [Notice; 16] = [
        Notice::Again,
        Notice::Saved,
        Notice::Created,
        Notice::Locked,
        Notice::Unlocked,
        Notice::Revoked,
        Notice::Deleted,
        Notice::Sent,
        Notice::Invited,
        Notice::InvitationSent,
        Notice::InvitationCancelled,
        Notice::AdminRemoved,
        Notice::Enrolled,
        Notice::AlreadyEnrolled,
        Notice::EnrolledInvited,
        Notice::Imported,
    ];

    fn code(self) -> &'static str {
        match self {
            Notice::Again => "again",
            Notice::Saved => "saved",
            Notice::Created => "created",
            Notice::Locked => "locked",
            Notice::Unlocked => "unlocked",
            Notice::Revoked => "revoked",
            Notice::Deleted => "deleted",
            Notice::Sent => "sent",
            Notice::Invited => "invited",
            Notice::InvitationSent => "invitation-sent",
            Notice::InvitationCancelled => "invitation-cancelled",
            Notice::AdminRemoved => "admin-removed",
            Notice::Enrolled => "enrolled",
            Notice::AlreadyEnrolled => "already-enrolled",
            Notice::EnrolledInvited => "enrolled-invited",
            Notice::Imported => "imported",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Notice::Again => "That form was already sent: nothing was done a second time.",
            Notice::Saved => "Saved.",
            Notice::Created => "Created.",
            Notice::Locked => "Locked.",
            Notice::Unlocked => "Unlocked.",
            Notice::Revoked => "Revoked.",
            Notice::Deleted => "Deleted.",
            Notice::Sent => "Sent.",
            Notice::Invited => "The company was created and its first admin has been invited.",
            Notice::InvitationSent => "The invitation has been sent.",
            Notice::InvitationCancelled => {
                "The invitation was cancelled: its link no longer works."
            }
            Notice::AdminRemoved => "The admin was removed.",
            Notice::Enrolled => "The account is enrolled.",
            Notice::AlreadyEnrolled => "That account was already enrolled.",
            Notice::EnrolledInvited => {
                "The account is enrolled, and its person has been invited by email to sign up."
            }
            Notice::Imported => "The file was imported.",
        }
    }

    /// The notice a page's query names (`done=…`), if any.
    pub fn from_query(query: Option<&str>) -> Option<Notice> {
        let code = query?.split('&').find_map(|kv| kv.strip_prefix("done="))?;
        Notice::ALL.into_iter().find(|n| n.code() == code)
    }
}

/// `path` with `done=<notice>` in its query (replacing any there).
pub fn with_notice(path: &str, notice: Notice) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("done="))
        .collect();
    let done = format!("done={}", notice.code());
    parts.push(&done);
    format!("{base}?{}", parts.join("&"))
}

/// The answer to a form that did what it asked: back to a page (post/redirect/get), which says
/// what was done.
pub fn done(path: &str, notice: Notice) -> Response {
    axum::response::Redirect::to(&with_notice(path, notice)).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_the_query_and_nothing_else_is_said() {
        for n in Notice::ALL {
            let url = with_notice("/companies/c1?page=2&done=saved", n);
            assert_eq!(url, format!("/companies/c1?page=2&done={}", n.code()));
            assert_eq!(
                Notice::from_query(url.split_once('?').map(|q| q.1)),
                Some(n)
            );
        }
        assert_eq!(with_notice("/me", Notice::Locked), "/me?done=locked");
        assert_eq!(Notice::from_query(Some("done=<script>")), None);
        assert_eq!(Notice::from_query(None), None);
    }
}
