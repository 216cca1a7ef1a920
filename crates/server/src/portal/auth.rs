//! Signing in: sessions in cookies, CSRF tokens, passwords, and the emailed links that create
//! accounts (sign-up, invitations, password reset, the first operator).

use askama::Template;
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use deadbolt_store::Person;
use rand::RngCore;
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::pages::{render, Layout, PageError};
use super::throttle::{Key, Policy, Wait};
use super::{base_url, Portal, PortalState};
use crate::crypto::{self, token_hash};
use crate::error::Error;
use crate::ops::{valid_email, Deadbolt};

pub const SESSION_COOKIE: &str = "deadbolt_session";
/// The CSRF token of forms shown before signing in (double-submit: cookie and form field).
pub const PRE_CSRF_COOKIE: &str = "deadbolt_csrf";
const SESSION_HOURS: i64 = 12;
const LINK_DAYS: i64 = 3;
/// A first-run link lives an hour; a new one is printed at each start while no operator exists.
const OPERATOR_LINK_MINUTES: i64 = 60;

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

fn secure(portal: &Portal) -> bool {
    base_url(portal).starts_with("https://")
}

/// The signed-in person.
pub struct Me {
    pub person: Person,
    pub roles: Vec<Membership>,
    pub csrf: String,
    pub session_hash: String,
}

impl Me {
    async fn load(parts: &Parts, s: &PortalState) -> Result<Option<Me>, PageError> {
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

impl<S> FromRequestParts<S> for Me
where
    S: Send + Sync,
    PortalState: FromRef<S>,
{
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, PageError> {
        Me::load(parts, &PortalState::from_ref(s))
            .await?
            .ok_or(PageError::SignIn)
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

/// The cookie of a browser that signed in to an address before: `<nonce>.<mac>`, the MAC over
/// the nonce and the address under a key of this process.
pub const DEVICE_COOKIE: &str = "deadbolt_device";
const DEVICE_DAYS: i64 = 180;

/// The counts a sign-in try (or a current-password check) for `email` goes through. A browser
/// that signed in to this address before has a count of its own, so that a guesser elsewhere
/// cannot make the owner wait; any other try counts against the address and the client.
struct Tries {
    keys: Vec<Key>,
    /// Forgotten when the password is right.
    forget: Vec<Key>,
    /// The try taken back when the password is right.
    undo: Vec<Key>,
}

fn login_tries(portal: &Portal, headers: &HeaderMap, email: &str, client: &ClientAddr) -> Tries {
    if let Some(nonce) = known_device(portal, headers, email) {
        let device = portal.throttle.key("login-device", nonce, Policy::EMAIL);
        return Tries {
            keys: vec![device],
            forget: vec![device],
            undo: vec![],
        };
    }
    let address = portal.throttle.key("login", email, Policy::EMAIL);
    let client = portal
        .throttle
        .key("login-client", &client.0, Policy::CLIENT);
    Tries {
        keys: vec![address, client],
        forget: vec![address],
        undo: vec![client],
    }
}

fn device_mac(portal: &Portal, nonce: &str, email: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&portal.device_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(email.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The nonce of the browser's device cookie, if it was issued for `email`.
fn known_device<'a>(portal: &Portal, headers: &'a HeaderMap, email: &str) -> Option<&'a str> {
    let (nonce, mac) = cookie(headers, DEVICE_COOKIE)?.split_once('.')?;
    (nonce.len() <= 64 && same(mac, &device_mac(portal, nonce, email))).then_some(nonce)
}

/// A device cookie for `email`, set on a successful sign-in.
fn device_cookie(portal: &Portal, email: &str) -> HeaderValue {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let nonce = URL_SAFE_NO_PAD.encode(b);
    let value = format!("{nonce}.{}", device_mac(portal, &nonce, email));
    set_cookie(
        DEVICE_COOKIE,
        &value,
        DEVICE_DAYS * 24 * 3600,
        secure(portal),
    )
}

/// A 429 page's `Retry-After`.
fn retry_after(res: &mut Response, wait: Wait) {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.secs));
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
                    set_cookie(PRE_CSRF_COOKIE, &csrf.0, 3600 * 24, secure(portal)),
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
    s: &PortalState,
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
        set_cookie(SESSION_COOKIE, &id, SESSION_HOURS * 3600, secure(portal)),
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
    State(portal): State<Arc<Portal>>,
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
    anonymous_page(&portal, StatusCode::OK, render(&page), csrf)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
}

pub async fn login(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let email = deadbolt_store::normalize_email(&f.email);
    let tries = login_tries(&portal, &headers, &email, &client);
    let now = s.db.now();
    let fail = |status: StatusCode, msg: &str| {
        let page = LoginPage {
            l: Layout::anonymous("Sign in"),
            csrf: f.csrf.clone(),
            email: f.email.clone(),
            error: Some(msg.to_string()),
        };
        anonymous_page(&portal, status, render(&page), (f.csrf.clone(), false))
    };
    // Counted before the password is looked at: a burst of guesses is let in only as far as
    // the throttle allows, and the rest cost no hashing.
    if let Err(wait) = portal.throttle.admit(&tries.keys, now) {
        let mut res = fail(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed sign-ins. Try again in {} s, or reset your password.",
                wait.secs
            ),
        );
        retry_after(&mut res, wait);
        return Ok(res);
    }
    let stored = s.db.store.password_hash(&email).await?;
    let hash = stored.as_ref().and_then(|(_, h)| h.clone());
    // Unknown addresses cost the same as wrong passwords.
    let ok = portal.passwords.verify(&f.password, hash).await;
    match stored {
        Some((person_id, _)) if ok => {
            portal.throttle.succeeded(&tries.forget, &tries.undo);
            let mut res = start_session(&s, &portal, &headers, &person_id, "/").await?;
            if known_device(&portal, &headers, &email).is_none() {
                res.headers_mut()
                    .append(header::SET_COOKIE, device_cookie(&portal, &email));
            }
            Ok(res)
        }
        _ => Ok(fail(StatusCode::UNAUTHORIZED, "Wrong email or password.")),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    me: Me,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    s.db.store.delete_session(&me.session_hash).await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&portal)),
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

pub async fn signup_page(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let csrf = pre_csrf(&headers);
    let page = email_form(false, csrf.0.clone(), false);
    anonymous_page(&portal, StatusCode::OK, render(&page), csrf)
}

pub async fn reset_page(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let csrf = pre_csrf(&headers);
    let page = email_form(true, csrf.0.clone(), false);
    anonymous_page(&portal, StatusCode::OK, render(&page), csrf)
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    email: String,
}

pub async fn signup(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Result<Response, PageError> {
    email_request(s, portal, client, headers, f, LinkPurpose::SignUp).await
}

pub async fn reset(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Result<Response, PageError> {
    email_request(s, portal, client, headers, f, LinkPurpose::PasswordReset).await
}

/// A sign-up or reset request. The answer is the same, and takes the same time, whether or not
/// the address is known: everything that depends on it (the look-up, the link, the email) is
/// done after answering.
async fn email_request(
    s: PortalState,
    portal: Arc<Portal>,
    client: ClientAddr,
    headers: HeaderMap,
    f: EmailForm,
    purpose: LinkPurpose,
) -> Result<Response, PageError> {
    check_pre_csrf(&headers, &f.csrf)?;
    let email = valid_email(&f.email)?;
    let reset = purpose == LinkPurpose::PasswordReset;
    let keys = [
        portal.throttle.key("email-request", &email, Policy::EMAIL),
        portal
            .throttle
            .key("email-request-client", &client.0, Policy::CLIENT),
    ];
    if let Err(wait) = portal.throttle.admit(&keys, s.db.now()) {
        let page = email_form(reset, f.csrf, false);
        let mut res = (StatusCode::TOO_MANY_REQUESTS, render(&page)?).into_response();
        retry_after(&mut res, wait);
        return Ok(res);
    }
    tokio::spawn(async move {
        let sent = async {
            if reset && s.db.store.person_by_email(&email).await?.is_none() {
                return Ok(());
            }
            send_link(&s, &portal, purpose, &email, None).await
        };
        if let Err(e) = sent.await {
            tracing::error!(purpose = purpose.as_str(), error = ?e, "emailed link not sent");
        }
    });
    let page = email_form(reset, f.csrf, true);
    Ok(render(&page)?.into_response())
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
    let now = s.db.now();
    let key = portal.throttle.key("mail", email, Policy::MAIL);
    if portal.throttle.admit(&[key], now).is_err() {
        tracing::warn!(
            purpose = purpose.as_str(),
            "email not sent: too many to this address"
        );
        return Ok(());
    }
    let url = create_link(
        &s.db,
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
/// prints it). Like the link printed at start, it only creates a new person, lives an hour and
/// dies when any operator exists.
pub async fn invite_operator(db: &Deadbolt, base_url: &str, email: &str) -> Result<String, Error> {
    let email = valid_email(email)?;
    if db.store.has_operator().await? {
        return Err(Error::Conflict("an operator".into()));
    }
    operator_link(db, base_url, &email).await
}

/// At start: while no operator exists, a one-time link to create one (for the server to print).
pub async fn first_run_link(db: &Deadbolt, base_url: &str) -> Result<Option<String>, Error> {
    if db.store.has_operator().await? {
        return Ok(None);
    }
    operator_link(db, base_url, "").await.map(Some)
}

async fn operator_link(db: &Deadbolt, base_url: &str, email: &str) -> Result<String, Error> {
    let token = random_token();
    let now = db.now();
    db.store
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
async fn usable_link(s: &PortalState, hash: &str, take: bool) -> Result<Link, PageError> {
    let now = s.db.now();
    let link = if take {
        s.db.store.take_link(hash, now).await?
    } else {
        s.db.store.link(hash, now).await?
    };
    let link = link.ok_or_else(expired_link)?;
    let purpose = LinkPurpose::parse(&link.purpose).ok_or_else(expired_link)?;
    if purpose == LinkPurpose::OperatorSetup && s.db.store.has_operator().await? {
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
    let now = s.db.now();
    if link.purpose == LinkPurpose::OperatorSetup {
        // Only ever a new person, and only while no operator exists: checked and done in one
        // transaction by the store.
        let made =
            s.db.store
                .create_first_operator(&hash_of_token, &email, &hashed, now)
                .await;
        let person = match made {
            Ok(Some(p)) => p,
            Ok(None) => return Err(expired_link()),
            Err(deadbolt_store::StoreError::Conflict(_)) => {
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
    let person = match s.db.store.person_by_email(&email).await? {
        Some(p) => p,
        None if link.purpose == LinkPurpose::PasswordReset => return Err(expired_link()),
        None => s.db.create_person(&email, None, None).await?,
    };
    s.db.store
        .set_password_hash(&person.id, &hashed, true, now)
        .await?;
    // A password set from an emailed link proves the address: its sign-in wait is over.
    portal.throttle.clear(&[
        portal.throttle.key("login", &email, Policy::EMAIL),
        portal.throttle.key("email-request", &email, Policy::EMAIL),
    ]);
    if let (LinkPurpose::AdminInvite, Some(c)) = (link.purpose, &link.company_id) {
        grant(
            &s.db,
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
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    me: Me,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    let page = |error: Option<String>, done: bool| PasswordPage {
        l: Layout::signed_in("Change your password", &me, "/password"),
        csrf: me.csrf.clone(),
        error,
        done,
    };
    // The current-password check is a sign-in: the same throttle, the same counts, so that a
    // stolen session cannot guess at the password here instead.
    let tries = login_tries(&portal, &headers, &me.person.email, &client);
    if let Err(wait) = portal.throttle.admit(&tries.keys, s.db.now()) {
        let msg = format!("Too many wrong passwords. Try again in {} s.", wait.secs);
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            render(&page(Some(msg), false))?,
        )
            .into_response();
        retry_after(&mut res, wait);
        return Ok(res);
    }
    let stored =
        s.db.store
            .password_hash(&me.person.email)
            .await?
            .and_then(|(_, h)| h);
    let current_ok = stored.is_some() && portal.passwords.verify(&f.current, stored).await;
    if current_ok {
        portal.throttle.succeeded(&tries.forget, &tries.undo);
    }
    let problem = if !current_ok {
        Some("Your current password is not right.".to_string())
    } else {
        password_problem(&f.password, &f.confirm)
    };
    if let Some(problem) = problem {
        return Ok((
            StatusCode::BAD_REQUEST,
            render(&page(Some(problem), false))?,
        )
            .into_response());
    }
    let hash = portal.passwords.hash(&f.password).await?;
    let now = s.db.now();
    s.db.store
        .set_password_hash(&me.person.id, &hash, false, now)
        .await?;
    s.db.store
        .delete_other_sessions(&me.person.id, &me.session_hash, now)
        .await?;
    Ok(render(&page(None, true))?.into_response())
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
