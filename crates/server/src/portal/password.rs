//! Passwords: signing in (with its throttle and known-browser cookie), the sign-up and reset
//! request forms, and changing a password.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;

use super::csrf::{anonymous_page, check_pre_csrf, pre_csrf, same, CsrfForm};
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::pages::{render, Layout};
use super::session::{
    cookie, safe_return, secure, set_cookie, start_session, ClientAddr, Me, SESSION_COOKIE,
};
use super::throttle::{Key, Policy, Wait};
use super::{Portal, PortalState};
use crate::crypto::token_hash;
use crate::service::{password_problem, valid_email};
use deadbolt_store::Ceremony;

/// The cookie of a browser that signed in to an address before: `<nonce>.<mac>`, the MAC over
/// the nonce and the address under a key of this process.
pub const DEVICE_COOKIE: &str = "deadbolt_device";
const DEVICE_DAYS: i64 = 180;

/// The counts a sign-in try (or a current-password check) for `email` goes through. A browser
/// that signed in to this address before has a count of its own, so that a guesser elsewhere
/// cannot make the owner wait; any other try counts against the address and the client.
pub(super) struct Tries {
    pub(super) keys: Vec<Key>,
    /// Forgotten when the password is right.
    pub(super) forget: Vec<Key>,
    /// The try taken back when the password is right.
    pub(super) undo: Vec<Key>,
}

pub(super) fn login_tries(
    portal: &Portal,
    headers: &HeaderMap,
    email: &str,
    client: &ClientAddr,
) -> Tries {
    if let Some(nonce) = known_device(portal, headers, email) {
        let device = portal.throttle.key("login-device", nonce, Policy::EMAIL);
        return Tries {
            keys: vec![device.clone()],
            forget: vec![device],
            undo: vec![],
        };
    }
    let address = portal.throttle.key("login", email, Policy::EMAIL);
    let client = portal
        .throttle
        .key("login-client", &client.0, Policy::CLIENT);
    Tries {
        keys: vec![address.clone(), client.clone()],
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

// ---- sign in and out ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    csrf: String,
    email: String,
    error: Option<String>,
    /// Where the sign-in leads: the page that was asked for (a path of this site), or empty.
    next: String,
    /// Whether the "Sign in with a passkey" button is offered.
    passkeys: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Where a sign-in leads: the page asked for when it is a page of this site, else the start.
pub(super) fn after_sign_in(next: &str) -> &str {
    safe_return(next).unwrap_or("/")
}

pub async fn login_page(
    State(portal): State<Arc<Portal>>,
    me: Option<Me>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if me.is_some() {
        return Redirect::to(after_sign_in(&q.next)).into_response();
    }
    let csrf = pre_csrf(&headers);
    let page = LoginPage {
        l: Layout::anonymous("Sign in"),
        csrf: csrf.0.clone(),
        email: String::new(),
        error: None,
        next: safe_return(&q.next).unwrap_or_default().to_string(),
        passkeys: portal.passkeys.is_ok(),
    };
    anonymous_page(&portal, StatusCode::OK, render(&page), csrf)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
    #[serde(default)]
    next: String,
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
    let now = s.service.now();
    let fail = |status: StatusCode, msg: &str| {
        let page = LoginPage {
            l: Layout::anonymous("Sign in"),
            csrf: f.csrf.clone(),
            email: f.email.clone(),
            error: Some(msg.to_string()),
            next: safe_return(&f.next).unwrap_or_default().to_string(),
            passkeys: portal.passkeys.is_ok(),
        };
        anonymous_page(&portal, status, render(&page), (f.csrf.clone(), false))
    };
    // Counted before the password is looked at: a burst of guesses is let in only as far as
    // the throttle allows, and the rest cost no hashing. A store that cannot count refuses.
    if let Err(wait) = portal.throttle.admit(&tries.keys, now).await? {
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
    let stored = s.service.password_hash(&email).await?;
    let hash = stored.as_ref().and_then(|(_, h)| h.clone());
    // Unknown addresses cost the same as wrong passwords.
    let ok = portal.passwords.verify(&f.password, hash).await;
    match stored {
        Some((person_id, _)) if ok => {
            portal
                .throttle
                .succeeded(&tries.forget, &tries.undo, now)
                .await?;
            let to = after_sign_in(&f.next);
            // Someone with a passkey signs in with it too: the password alone opens nothing.
            let mut res = if portal.passkeys.is_ok()
                && s.service.second_factor(&person_id).await?.passkeys > 0
            {
                second_factor_step(&s, &portal, &person_id, to).await?
            } else {
                start_session(&s, &portal, &headers, &person_id, to).await?
            };
            if known_device(&portal, &headers, &email).is_none() {
                res.headers_mut()
                    .append(header::SET_COOKIE, device_cookie(&portal, &email));
            }
            Ok(res)
        }
        _ => Ok(fail(StatusCode::UNAUTHORIZED, "Wrong email or password.")),
    }
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
    if let Err(wait) = portal.throttle.admit(&keys, s.service.now()).await? {
        let page = email_form(reset, f.csrf, false);
        let mut res = (StatusCode::TOO_MANY_REQUESTS, render(&page)?).into_response();
        retry_after(&mut res, wait);
        return Ok(res);
    }
    tokio::spawn(async move {
        let sent = async {
            if reset && s.service.find_person_by_email(&email).await?.is_none() {
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

#[derive(Deserialize)]
pub struct LogoutForm {
    /// Where to come back after signing in again (a fresh sign-in asked for), if anywhere.
    #[serde(default)]
    next: String,
}

pub async fn logout(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CsrfForm(me, f): CsrfForm<LogoutForm>,
) -> Result<Response, PageError> {
    s.service.delete_session(&me.session_hash).await?;
    let mut res = Redirect::to(&super::session::sign_in_to(&f.next)).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&portal)),
    );
    Ok(res)
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
    current: String,
    password: String,
    confirm: String,
}

pub async fn change_password(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    CsrfForm(me, f): CsrfForm<PasswordForm>,
) -> Result<Response, PageError> {
    let page = |error: Option<String>, done: bool| PasswordPage {
        l: Layout::signed_in("Change your password", &me, "/password"),
        csrf: me.csrf.clone(),
        error,
        done,
    };
    // The current-password check is a sign-in: the same throttle, the same counts, so that a
    // stolen session cannot guess at the password here instead.
    let tries = login_tries(&portal, &headers, &me.person.email, &client);
    if let Err(wait) = portal.throttle.admit(&tries.keys, s.service.now()).await? {
        let msg = format!("Too many wrong passwords. Try again in {} s.", wait.secs);
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            render(&page(Some(msg), false))?,
        )
            .into_response();
        retry_after(&mut res, wait);
        return Ok(res);
    }
    let stored = s
        .service
        .password_hash(&me.person.email)
        .await?
        .and_then(|(_, h)| h);
    let current_ok = stored.is_some() && portal.passwords.verify(&f.current, stored).await;
    if current_ok {
        portal
            .throttle
            .succeeded(&tries.forget, &tries.undo, s.service.now())
            .await?;
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
    let now = s.service.now();
    s.service
        .set_password_hash(&me.person.id, &hash, false, now)
        .await?;
    s.service
        .delete_other_sessions(&me.person.id, &me.session_hash, now)
        .await?;
    Ok(render(&page(None, true))?.into_response())
}

/// How long a passkey ceremony may take, from the challenge to the answer (the password step
/// included, for the second factor).
pub(super) const CEREMONY_MINUTES: i64 = 5;
/// The cookie of a sign-in whose password was right and whose passkey is awaited.
pub(super) const SECOND_FACTOR_COOKIE: &str = "deadbolt_second_factor";

/// The password was right and the person has a passkey: the sign-in waits for it, for a few
/// minutes, in a cookie naming a ceremony (no session yet).
pub(super) async fn second_factor_step(
    s: &PortalState,
    portal: &Portal,
    person_id: &str,
    to: &str,
) -> Result<Response, PageError> {
    let token = super::session::random_token();
    s.service
        .put_ceremony(
            &token_hash(&token),
            &Ceremony {
                kind: "second_factor".into(),
                person_id: Some(person_id.into()),
                detail: Some(to.into()),
                state: None,
                expires_at: s.service.ceremony_expiry(CEREMONY_MINUTES),
            },
        )
        .await?;
    let mut res = Redirect::to("/login/second-factor").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SECOND_FACTOR_COOKIE,
            &token,
            CEREMONY_MINUTES * 60,
            secure(portal),
        ),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert!(password_problem("long enough!", "long enough?").is_some());
        assert!(password_problem("short", "short").is_some());
        assert!(password_problem("long enough!", "long enough!").is_none());
    }
}
