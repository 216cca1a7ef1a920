//! Signing in: sessions in cookies, CSRF tokens, passwords, and the emailed links that create
//! accounts (sign-up, invitations, password reset, the first operator).

use askama::Template;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use deadbolt_store::Person;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::pages::{render, Layout, PageError};
use super::{base_url, Portal};
use crate::api::ApiState;
use crate::crypto;
use crate::error::Error;
use crate::ops::{valid_email, Deadbolt};

pub const SESSION_COOKIE: &str = "deadbolt_session";
/// The CSRF token of forms shown before signing in (double-submit: cookie and form field).
pub const PRE_CSRF_COOKIE: &str = "deadbolt_csrf";
const SESSION_HOURS: i64 = 12;
/// Failed sign-ins for one email address within 15 minutes before sign-in is refused.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// Emails sent to one address within 15 minutes.
const MAX_MAILS: u32 = 5;
const LINK_DAYS: i64 = 3;

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
    fn parts(&self) -> (&'static str, &str) {
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

async fn grant(db: &Deadbolt, person_id: &str, role: &Role) -> Result<(), Error> {
    let (name, company) = role.parts();
    Ok(db
        .store
        .grant_role(person_id, name, company, db.now())
        .await?)
}

/// A random token: 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
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

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("deadbolt_invalid=1"))
}

fn secure(s: &ApiState, portal: &Portal) -> bool {
    base_url(s, portal).starts_with("https://")
}

/// The signed-in person.
pub struct Me {
    pub person: Person,
    pub roles: Vec<Membership>,
    pub csrf: String,
    pub session_hash: String,
}

impl Me {
    async fn load(parts: &Parts, s: &ApiState) -> Result<Option<Me>, PageError> {
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let hash = token_hash(id);
        let Some(session) = s.db.store.session(&hash, s.db.now()).await? else {
            return Ok(None);
        };
        let Some(person) = s.db.store.person(&session.person_id).await? else {
            return Ok(None);
        };
        let roles =
            s.db.store
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
                .collect();
        Ok(Some(Me {
            person,
            roles,
            csrf: session.csrf,
            session_hash: hash,
        }))
    }

    /// Every state-changing form carries the session's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        if same(token, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::csrf())
        }
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

impl FromRequestParts<ApiState> for Me {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, PageError> {
        Me::load(parts, s).await?.ok_or(PageError::SignIn)
    }
}

impl OptionalFromRequestParts<ApiState> for Me {
    type Rejection = PageError;
    async fn from_request_parts(
        parts: &mut Parts,
        s: &ApiState,
    ) -> Result<Option<Self>, PageError> {
        Me::load(parts, s).await
    }
}

/// The pre-sign-in CSRF token: the cookie's, or a new one to set.
fn pre_csrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_CSRF_COOKIE) {
        Some(v) if v.len() >= 32 && v.len() <= 64 => (v.to_string(), false),
        _ => (random_token(), true),
    }
}

fn check_pre_csrf(headers: &HeaderMap, form_token: &str) -> Result<(), PageError> {
    match cookie(headers, PRE_CSRF_COOKIE) {
        Some(c) if same(form_token, c) => Ok(()),
        _ => Err(PageError::csrf()),
    }
}

/// A page shown before signing in, setting the CSRF cookie when needed.
fn anonymous_page(
    s: &ApiState,
    portal: &Portal,
    status: StatusCode,
    html: Result<axum::response::Html<String>, PageError>,
    csrf: (String, bool),
) -> Response {
    match html {
        Ok(html) => {
            let mut res = (status, html).into_response();
            if csrf.1 {
                res.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(PRE_CSRF_COOKIE, &csrf.0, 3600 * 24, secure(s, portal)),
                );
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

/// Starts a new session for `person_id` (a new id every time: no session fixation) and ends the
/// one the browser presented, if any.
async fn start_session(
    s: &ApiState,
    portal: &Portal,
    headers: &HeaderMap,
    person_id: &str,
    to: &str,
) -> Result<Response, PageError> {
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        s.db.store.delete_session(&token_hash(old)).await?;
    }
    let id = random_token();
    let now = s.db.now();
    s.db.store
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
        set_cookie(SESSION_COOKIE, &id, SESSION_HOURS * 3600, secure(s, portal)),
    );
    Ok(res)
}

// ---- sign in and out ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    csrf: String,
    email: String,
    error: Option<String>,
}

pub async fn login_page(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    me: Option<Me>,
    headers: HeaderMap,
) -> Response {
    if me.is_some() {
        return Redirect::to("/").into_response();
    }
    let csrf = pre_csrf(&headers);
    let page = LoginPage {
        l: Layout::anonymous("Sign in"),
        csrf: csrf.0.clone(),
        email: String::new(),
        error: None,
    };
    anonymous_page(&s, &portal, StatusCode::OK, render(&page), csrf)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
}

pub async fn login(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let email = deadbolt_store::normalize_email(&f.email);
    let key = format!("login:{email}");
    let now = s.db.now();
    let fail = |status: StatusCode, msg: &str| {
        let page = LoginPage {
            l: Layout::anonymous("Sign in"),
            csrf: f.csrf.clone(),
            email: f.email.clone(),
            error: Some(msg.to_string()),
        };
        Ok(anonymous_page(
            &s,
            &portal,
            status,
            render(&page),
            (f.csrf.clone(), false),
        ))
    };
    if portal.throttle.count(&key, now) >= MAX_FAILED_LOGINS {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins for this address. Wait 15 minutes, or reset your password.",
        );
    }
    let stored = s.db.store.password_hash(&email).await?;
    let password = f.password.clone();
    let hash = stored.as_ref().and_then(|(_, h)| h.clone());
    // Unknown addresses cost the same as wrong passwords.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => crypto::verify_password(&password, &h),
        None => {
            crypto::verify_password(&password, DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false);
    match stored {
        Some((person_id, _)) if ok => {
            portal.throttle.clear(&key);
            start_session(&s, &portal, &headers, &person_id, "/").await
        }
        _ => {
            portal.throttle.add(&key, now);
            fail(StatusCode::UNAUTHORIZED, "Wrong email or password.")
        }
    }
}

/// An Argon2id hash of a random password, verified against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0oJ7Yc2XyBmbhFJUP4GQy/4/g+rpmdrLLa0EX4bldWQ";

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    me: Me,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    s.db.store.delete_session(&me.session_hash).await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&s, &portal)),
    );
    Ok(res)
}

// ---- sign-up and password reset by email ----

#[derive(Template)]
#[template(path = "email_form.html")]
struct EmailFormPage {
    l: Layout,
    csrf: String,
    action: &'static str,
    intro: &'static str,
    button: &'static str,
    sent: bool,
}

fn email_form(reset: bool, csrf: String, sent: bool) -> EmailFormPage {
    if reset {
        EmailFormPage {
            l: Layout::anonymous("Reset your password"),
            csrf,
            action: "/reset",
            intro: "We will email you a link to choose a new password.",
            button: "Send the link",
            sent,
        }
    } else {
        EmailFormPage {
            l: Layout::anonymous("Create your account"),
            csrf,
            action: "/signup",
            intro: "Enter the email address your applications know you by. We will email you a link to choose a password.",
            button: "Send the link",
            sent,
        }
    }
}

pub async fn signup_page(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    headers: HeaderMap,
) -> Response {
    let csrf = pre_csrf(&headers);
    let page = email_form(false, csrf.0.clone(), false);
    anonymous_page(&s, &portal, StatusCode::OK, render(&page), csrf)
}

pub async fn reset_page(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    headers: HeaderMap,
) -> Response {
    let csrf = pre_csrf(&headers);
    let page = email_form(true, csrf.0.clone(), false);
    anonymous_page(&s, &portal, StatusCode::OK, render(&page), csrf)
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    email: String,
}

pub async fn signup(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let email = valid_email(&f.email)?;
    send_link(&s, &portal, LinkPurpose::SignUp, &email, None).await?;
    // The same answer whether or not the address is known.
    let page = email_form(false, f.csrf, true);
    Ok(render(&page)?.into_response())
}

pub async fn reset(
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let email = valid_email(&f.email)?;
    if s.db.store.person_by_email(&email).await?.is_some() {
        send_link(&s, &portal, LinkPurpose::PasswordReset, &email, None).await?;
    }
    let page = email_form(true, f.csrf, true);
    Ok(render(&page)?.into_response())
}

/// Creates a one-time link and emails it. Quietly sends nothing once an address has had its
/// share of emails for a while.
pub(super) async fn send_link(
    s: &ApiState,
    portal: &Portal,
    purpose: LinkPurpose,
    email: &str,
    company: Option<(&str, &str)>,
) -> Result<(), PageError> {
    let now = s.db.now();
    let key = format!("mail:{email}");
    if portal.throttle.count(&key, now) >= MAX_MAILS {
        tracing::warn!(
            purpose = purpose.as_str(),
            "email not sent: too many to this address"
        );
        return Ok(());
    }
    portal.throttle.add(&key, now);
    let url = create_link(
        &s.db,
        &base_url(s, portal),
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
    db: &Deadbolt,
    base: &str,
    purpose: LinkPurpose,
    email: &str,
    company_id: Option<&str>,
) -> Result<String, Error> {
    let token = random_token();
    let now = db.now();
    db.store
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
/// prints it).
pub async fn invite_operator(db: &Deadbolt, base_url: &str, email: &str) -> Result<String, Error> {
    let email = valid_email(email)?;
    create_link(db, base_url, LinkPurpose::OperatorSetup, &email, None).await
}

/// At start: while no operator exists, a one-time link to create one (for the server to print).
pub async fn first_run_link(db: &Deadbolt, base_url: &str) -> Result<Option<String>, Error> {
    if db.store.has_operator().await? {
        return Ok(None);
    }
    let token = random_token();
    let now = db.now();
    db.store
        .create_link(
            &token_hash(&token),
            LinkPurpose::OperatorSetup.as_str(),
            "",
            None,
            now,
            now + Duration::days(LINK_DAYS),
        )
        .await?;
    Ok(Some(format!(
        "{}/welcome/{token}",
        base_url.trim_end_matches('/')
    )))
}

/// First run: creates (or promotes) the operator account directly.
pub async fn create_operator(db: &Deadbolt, email: &str, password: &str) -> Result<Person, Error> {
    let email = valid_email(email)?;
    let person = match db.store.person_by_email(&email).await? {
        Some(p) => p,
        None => db.create_person(&email, None, None).await?,
    };
    let hash = crypto::hash_password(password)?;
    let now = db.now();
    db.store
        .set_password_hash(&person.id, &hash, true, now)
        .await?;
    grant(db, &person.id, &Role::Operator).await?;
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
async fn usable_link(s: &ApiState, hash: &str, take: bool) -> Result<Link, PageError> {
    let now = s.db.now();
    let link = if take {
        s.db.store.take_link(hash, now).await?
    } else {
        s.db.store.link(hash, now).await?
    };
    let link = link.ok_or_else(expired_link)?;
    Ok(Link {
        purpose: LinkPurpose::parse(&link.purpose).ok_or_else(expired_link)?,
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
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
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
    Ok(anonymous_page(
        &s,
        &portal,
        StatusCode::OK,
        render(&page),
        csrf,
    ))
}

async fn company_name(s: &ApiState, link: &Link) -> Result<Option<String>, PageError> {
    Ok(match &link.company_id {
        Some(c) => s.db.store.company(c).await?.map(|c| c.name),
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
    State(s): State<ApiState>,
    Extension(portal): Extension<Arc<Portal>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<WelcomeForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let hash_of_token = token_hash(&token);
    let now = s.db.now();
    let link = usable_link(&s, &hash_of_token, false).await?;
    let problem = password_problem(&f.password, &f.confirm);
    let hashed = match problem {
        None => {
            let pw = f.password.clone();
            tokio::task::spawn_blocking(move || crypto::hash_password(&pw))
                .await
                .map_err(|e| PageError::Internal(e.to_string()))?
                .map_err(PageError::from)
                .map(Some)?
        }
        Some(_) => None,
    };
    let Some(hashed) = hashed else {
        let company = company_name(&s, &link).await?;
        let page = WelcomePage {
            l: Layout::anonymous("Welcome"),
            csrf: f.csrf.clone(),
            token,
            ask_email: link.email.is_empty(),
            email: if link.email.is_empty() {
                f.email.clone()
            } else {
                link.email.clone()
            },
            heading: welcome_heading(&link, company),
            error: problem,
        };
        return Ok((StatusCode::BAD_REQUEST, render(&page)?).into_response());
    };
    let email = if link.email.is_empty() {
        valid_email(&f.email)?
    } else {
        link.email.clone()
    };
    // Only the first submission uses the link.
    let link = usable_link(&s, &hash_of_token, true).await?;
    let person = match s.db.store.person_by_email(&email).await? {
        Some(p) => p,
        None if link.purpose == LinkPurpose::PasswordReset => return Err(expired_link()),
        None => s.db.create_person(&email, None, None).await?,
    };
    s.db.store
        .set_password_hash(&person.id, &hashed, true, now)
        .await?;
    match (link.purpose, &link.company_id) {
        (LinkPurpose::AdminInvite, Some(c)) => {
            grant(
                &s.db,
                &person.id,
                &Role::Admin {
                    company_id: c.clone(),
                },
            )
            .await?;
        }
        (LinkPurpose::OperatorSetup, _) => {
            grant(&s.db, &person.id, &Role::Operator).await?;
        }
        _ => {}
    }
    let to = match (link.purpose, &link.company_id) {
        (LinkPurpose::AdminInvite, Some(c)) => format!("/companies/{c}"),
        (LinkPurpose::OperatorSetup, _) => "/operator".into(),
        _ => "/me".into(),
    };
    // A new password ends every other session.
    let res = start_session(&s, &portal, &headers, &person.id, &to).await?;
    Ok(res)
}

fn password_problem(password: &str, confirm: &str) -> Option<String> {
    if password != confirm {
        Some("The two passwords differ.".into())
    } else if password.chars().count() < 10 {
        Some("Choose a password of at least 10 characters.".into())
    } else if password.len() > 1024 {
        Some("That password is too long.".into())
    } else {
        None
    }
}

// ---- password change ----

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    l: Layout,
    csrf: String,
    error: Option<String>,
    done: bool,
}

pub async fn password_page(me: Me) -> Result<Response, PageError> {
    let page = PasswordPage {
        l: Layout::signed_in("Change your password", &me, "/password"),
        csrf: me.csrf.clone(),
        error: None,
        done: false,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    password: String,
    confirm: String,
}

pub async fn change_password(
    State(s): State<ApiState>,
    me: Me,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    let stored =
        s.db.store
            .password_hash(&me.person.email)
            .await?
            .and_then(|(_, h)| h);
    let current = f.current.clone();
    let current_ok = tokio::task::spawn_blocking(move || {
        stored.is_some_and(|h| crypto::verify_password(&current, &h))
    })
    .await
    .unwrap_or(false);
    let problem = if !current_ok {
        Some("Your current password is not right.".to_string())
    } else {
        password_problem(&f.password, &f.confirm)
    };
    if let Some(problem) = problem {
        let page = PasswordPage {
            l: Layout::signed_in("Change your password", &me, "/password"),
            csrf: me.csrf.clone(),
            error: Some(problem),
            done: false,
        };
        return Ok((StatusCode::BAD_REQUEST, render(&page)?).into_response());
    }
    let pw = f.password.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&pw))
        .await
        .map_err(|e| PageError::Internal(e.to_string()))??;
    let now = s.db.now();
    s.db.store
        .set_password_hash(&me.person.id, &hash, false, now)
        .await?;
    s.db.store
        .delete_other_sessions(&me.person.id, &me.session_hash, now)
        .await?;
    let page = PasswordPage {
        l: Layout::signed_in("Change your password", &me, "/password"),
        csrf: me.csrf.clone(),
        error: None,
        done: true,
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_tokens_and_passwords() {
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
        assert_eq!(cookie(&h, PRE_CSRF_COOKIE), Some("abc"));
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
        assert!(!same("", ""), "an empty token never matches");
        assert!(same("x", "x") && !same("x", "y"));
        assert!(password_problem("long enough!", "long enough?").is_some());
        assert!(password_problem("short", "short").is_some());
        assert!(password_problem("long enough!", "long enough!").is_none());
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
