//! Sessions: the session cookie, the signed-in person (`Me`) and the client's address.

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use deadbolt_store::Person;
use rand::RngCore;

use super::error::PageError;
use super::form_token::form_token;
use super::notice::Notice;
use super::{base_url, Portal, PortalState};
use crate::crypto::token_hash;

pub const SESSION_COOKIE: &str = "deadbolt_session";

const SESSION_HOURS: i64 = 12;

/// What a person may do besides managing their own accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Runs the server: creates companies and invites their first admin.
    Operator,
    /// Administers one company.
    Admin { company_id: String },
}

impl Role {
    /// As the store keeps it: role name and company (empty for the operator).
    pub(super) fn parts(&self) -> (&'static str, &str) {
        match self {
            Role::Operator => ("operator", ""),
            Role::Admin { company_id } => ("admin", company_id),
        }
    }
}

pub struct Membership {
    pub role: Role,
    pub company_name: Option<String>,
}

/// A random token: 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("deadbolt_invalid=1"))
}

pub(super) fn secure(portal: &Portal) -> bool {
    base_url(portal).starts_with("https://")
}

/// The signed-in person.
pub struct Me {
    pub person: Person,
    pub roles: Vec<Membership>,
    /// A one-time form token minted for this request's page: every form the page shows carries
    /// it, and the first of them sent uses it up (see `csrf.rs`).
    pub csrf: String,
    /// The session's own CSRF secret, which form tokens are made and checked with.
    pub(super) session_csrf: String,
    pub(super) session_expires: chrono::DateTime<chrono::Utc>,
    /// When this session signed in (removing one's last passkey needs a recent one).
    pub(super) session_started: chrono::DateTime<chrono::Utc>,
    /// The operator requires a second factor of this operator or admin, who has no passkey
    /// yet: nothing but registering one (or signing out) until they do.
    pub(super) needs_passkey: bool,
    pub session_hash: String,
    /// What the page says about the action that led to it (`?done=…`).
    pub notice: Option<Notice>,
}

impl Me {
    async fn load(parts: &Parts, s: &PortalState) -> Result<Option<Me>, PageError> {
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let hash = token_hash(id);
        let Some(session) = s.service.session(&hash, s.service.now()).await? else {
            return Ok(None);
        };
        let Some(person) = s.service.person(&session.person_id).await? else {
            return Ok(None);
        };
        let roles = s
            .service
            .roles(&person.id)
            .await?
            .into_iter()
            .filter_map(|r| {
                let role = match r.role.as_str() {
                    "operator" => Role::Operator,
                    "admin" => Role::Admin {
                        company_id: r.company_id,
                    },
                    _ => return None,
                };
                Some(Membership {
                    role,
                    company_name: r.company_name,
                })
            })
            .collect::<Vec<Membership>>();
        let needs_passkey = !roles.is_empty() && s.portal.passkeys.is_ok() && {
            let f = s.service.second_factor(&person.id).await?;
            f.required && f.passkeys == 0
        };
        Ok(Some(Me {
            person,
            roles,
            csrf: form_token(&session.csrf),
            session_csrf: session.csrf,
            session_expires: session.expires_at,
            session_started: session.created_at,
            needs_passkey,
            session_hash: hash,
            notice: Notice::from_query(parts.uri.query()),
        }))
    }
    pub fn is_operator(&self) -> bool {
        self.roles.iter().any(|m| m.role == Role::Operator)
    }

    /// Only the company's admins see its pages; to anyone else they do not exist.
    pub fn admin_of(&self, company_id: &str) -> Result<(), PageError> {
        let ok = self
            .roles
            .iter()
            .any(|m| matches!(&m.role, Role::Admin { company_id: c } if c == company_id));
        if ok {
            Ok(())
        } else {
            Err(PageError::not_found())
        }
    }

    pub fn operator(&self) -> Result<(), PageError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(PageError::not_found())
        }
    }
}

impl<S> FromRequestParts<S> for Me
where
    S: Send + Sync,
    PortalState: FromRef<S>,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Response> {
        match Me::load(parts, &PortalState::from_ref(s)).await {
            Ok(Some(me)) if me.needs_passkey => {
                // Nested routers see their own part of the path: the whole one decides.
                let path = parts
                    .extensions
                    .get::<axum::extract::OriginalUri>()
                    .map_or(parts.uri.path(), |u| u.0.path());
                if open_before_passkey(path) {
                    Ok(me)
                } else if parts.method == axum::http::Method::GET {
                    Err(Redirect::to("/me/passkeys").into_response())
                } else {
                    Err(PageError::Status(
                        axum::http::StatusCode::FORBIDDEN,
                        "Register a passkey first: your server requires one of operators and company admins.".into(),
                    )
                    .into_response())
                }
            }
            Ok(Some(me)) => Ok(me),
            // A page asked for while signed out is where the sign-in leads back to.
            Ok(None) if parts.method == axum::http::Method::GET => {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(Redirect::to(&sign_in_to(next)).into_response())
            }
            Ok(None) => Err(PageError::SignIn.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl<S> OptionalFromRequestParts<S> for Me
where
    S: Send + Sync,
    PortalState: FromRef<S>,
{
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Option<Self>, PageError> {
        Me::load(parts, &PortalState::from_ref(s)).await
    }
}

/// The sign-in page that leads back to `next` once signed in.
pub(super) fn sign_in_to(next: &str) -> String {
    match safe_return(next) {
        Some(n) if n != "/" && n != "/me" => {
            format!(
                "/login?next={}",
                form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
            )
        }
        _ => "/login".to_string(),
    }
}

/// `next` if it is a path of this site to go back to after signing in: a local absolute path,
/// never another site (`//evil`, `/\\evil`, `https://…`), a control character, or the sign-in
/// pages themselves.
pub(super) fn safe_return(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2000
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && !["/login", "/logout", "/signup", "/reset"].iter().any(|p| {
            next == *p || next.starts_with(&format!("{p}?")) || next.starts_with(&format!("{p}/"))
        });
    ok.then_some(next)
}

/// The client's address as the connection shows it (a proxy in front shows as one client).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        Ok(ClientAddr(ip))
    }
}

/// Starts a new session for `person_id` (a new id every time: no session fixation) and ends the
/// one the browser presented, if any.
pub(super) async fn start_session(
    s: &PortalState,
    portal: &Portal,
    headers: &HeaderMap,
    person_id: &str,
    to: &str,
) -> Result<Response, PageError> {
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        s.service.delete_session(&token_hash(old)).await?;
    }
    let id = random_token();
    let now = s.service.now();
    s.service
        .create_session(
            &token_hash(&id),
            person_id,
            &random_token(),
            now,
            now + Duration::hours(SESSION_HOURS),
        )
        .await?;
    let mut res = Redirect::to(to).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, SESSION_HOURS * 3600, secure(portal)),
    );
    Ok(res)
}

/// Whether a signed-in page may be shown to someone who must register a passkey first: the
/// passkeys page and what it posts, and signing out.
pub(super) fn open_before_passkey(path: &str) -> bool {
    path == "/logout" || path == "/me/passkeys" || path.starts_with("/me/passkeys/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; deadbolt_session=xyz"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("deadbolt_csrf=abc"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, super::super::csrf::PRE_CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let set = set_cookie(SESSION_COOKIE, "v", 60, true);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.ends_with("; Secure")
        );
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn only_the_passkeys_page_is_open_before_registering_one() {
        assert!(open_before_passkey("/me/passkeys"));
        assert!(open_before_passkey("/me/passkeys/options"));
        assert!(open_before_passkey("/logout"));
        assert!(!open_before_passkey("/me"));
        assert!(!open_before_passkey("/me/passkeysx"));
        assert!(!open_before_passkey("/operator"));
        assert!(!open_before_passkey("/companies/c1"));
    }
}
