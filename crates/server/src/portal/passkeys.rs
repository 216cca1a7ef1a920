//! Passkeys (WebAuthn): registering, listing and removing them; signing in with a passkey
//! alone, or with one as the second step after the password; and the operator's requirement
//! of a second factor for operators and company admins.
//!
//! A ceremony spans two requests (the challenge, then the browser's signed answer). Its state
//! is kept in the store, under the hash of a one-time id, for a few minutes, and taken (deleted)
//! by the request that finishes it: any replica can finish what another started, and an answer
//! cannot be replayed. (A signed cookie would carry the state as well, but could be sent twice
//! within its lifetime; refusing the second use needs the store anyway.)
//!
//! The page script talks JSON. Its requests carry a form token in a header, checked as a form
//! field would be: the session's one-time token when signed in, the double-submit cookie's value
//! before; and a JSON body, which no cross-site form can send.
//!
//! Over 600 lines: the three ceremonies (register, sign in alone, second step after the
//! password) share the JSON error type, the ceremony store and the hand-off to a session; the
//! second step is the part to move out first when this grows.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use deadbolt_store::{Ceremony, NewPasskey, PasskeyRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder,
};

use super::csrf::{anonymous_page, check_pre_csrf, pre_csrf, CsrfForm, CSRF_HEADER};
use super::error::PageError;
use super::form_token::form_token;
use super::notice::{done, with_notice, Notice};
use super::pages::{local_time, render, Layout};
use super::password::{after_sign_in, login_tries, CEREMONY_MINUTES, SECOND_FACTOR_COOKIE};
use super::session::{cookie, safe_return, secure, set_cookie, start_session, ClientAddr, Me};
use super::{Portal, PortalState};
use crate::crypto::token_hash;
use crate::service::{Actor, By};

/// Removing one's last passkey needs a sign-in this recent.
pub const FRESH_MINUTES: i64 = 5;
const NAME_MAX: usize = 100;

// ---- the relying party ----

/// The portal's WebAuthn relying party, from its public URL: its host is the relying party id
/// and its origin the only one accepted. Browsers offer passkeys to secure origins only, and an
/// id must be a domain name: a loopback address (a server without a public URL) is served as
/// `localhost`, on the same port. Anything else over plain HTTP has no passkeys, and says why.
pub fn relying_party(base_url: &str) -> Result<Webauthn, String> {
    let url = Url::parse(base_url)
        .map_err(|e| format!("passkeys are off: the portal's URL {base_url} is invalid ({e})"))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let origin = if loopback {
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Url::parse(&format!("{}://localhost{port}", url.scheme()))
            .map_err(|e| format!("passkeys are off: {e}"))?
    } else if url.scheme() != "https" {
        return Err(format!(
            "passkeys are off: the portal's URL {base_url} is neither https nor localhost, and \
             browsers offer passkeys to secure sites only (set --public-url https://…)"
        ));
    } else if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(format!(
            "passkeys are off: the portal's URL {base_url} names an IP address; passkeys are \
             bound to a domain name"
        ));
    } else {
        let mut o = url.clone();
        o.set_path("");
        o
    };
    let rp_id = origin.host_str().unwrap_or_default().to_string();
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name("Deadbolt").build())
        .map_err(|e| format!("passkeys are off: {e}"))
}

fn webauthn(portal: &Portal) -> Result<&Webauthn, JsonError> {
    portal
        .passkeys
        .as_ref()
        .map_err(|why| JsonError(StatusCode::NOT_FOUND, why.clone()))
}

// ---- JSON answers ----

/// The page script's error: a status and a message it shows as it is.
pub struct JsonError(StatusCode, String);

impl JsonError {
    fn bad(msg: impl Into<String>) -> Self {
        JsonError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn expired() -> Self {
        JsonError(
            StatusCode::GONE,
            "This passkey request has expired or was already used: start again.".into(),
        )
    }
    fn refused() -> Self {
        JsonError(
            StatusCode::UNAUTHORIZED,
            "That passkey is not known here, or its answer could not be verified.".into(),
        )
    }
    fn copied() -> Self {
        JsonError(
            StatusCode::UNAUTHORIZED,
            "This passkey's counter went backwards: it may have been copied, and is refused. \
             Sign in another way and remove it."
                .into(),
        )
    }
    fn sign_in() -> Self {
        JsonError(StatusCode::UNAUTHORIZED, "Sign in first.".into())
    }
}

impl From<PageError> for JsonError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::SignIn => JsonError::sign_in(),
            PageError::Status(s, m) => JsonError(s, m),
            PageError::Internal(detail) => {
                tracing::error!(error = %detail, "passkey request failed");
                JsonError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Something went wrong on our side. Try again in a moment.".into(),
                )
            }
        }
    }
}

impl From<crate::error::Error> for JsonError {
    fn from(e: crate::error::Error) -> Self {
        PageError::from(e).into()
    }
}

impl From<deadbolt_store::StoreError> for JsonError {
    fn from(e: deadbolt_store::StoreError) -> Self {
        PageError::from(e).into()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> JsonError {
    PageError::Internal(format!("{what}: {e}")).into()
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

/// The header token of a request made before signing in.
fn check_pre_csrf_header(headers: &HeaderMap) -> Result<(), JsonError> {
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(check_pre_csrf(headers, token)?)
}

/// What the page script sends to finish a ceremony.
#[derive(Deserialize)]
pub struct FinishBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    credential: Value,
    #[serde(default)]
    next: String,
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, JsonError> {
    serde_json::from_value(v)
        .map_err(|_| JsonError::bad("That is not a passkey's answer: it cannot be read as one."))
}

fn stored_passkey(r: &PasskeyRecord) -> Result<Passkey, JsonError> {
    serde_json::from_str(&r.credential).map_err(|e| internal("stored passkey", e))
}

fn credential_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signature counter the verifier keeps in a passkey's record (its own type keeps it private).
fn counter_of(passkey: &Passkey) -> i64 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v["cred"]["counter"].as_i64())
        .unwrap_or(0)
}

/// A new ceremony id, and its row.
async fn begin(
    s: &PortalState,
    kind: &str,
    person_id: Option<&str>,
    detail: Option<String>,
    state: String,
) -> Result<String, JsonError> {
    let id = super::session::random_token();
    s.service
        .put_ceremony(
            &token_hash(&id),
            &Ceremony {
                kind: kind.into(),
                person_id: person_id.map(str::to_string),
                detail,
                state: Some(state),
                expires_at: s.service.ceremony_expiry(CEREMONY_MINUTES),
            },
        )
        .await?;
    Ok(id)
}

/// A sign-in's answer to the page script: where to go, with the new session's cookie.
fn signed_in(session: Response, to: &str, portal: &Portal) -> Response {
    let (parts, _) = session.into_parts();
    let mut res = Json(json!({ "to": to })).into_response();
    for v in parts.headers.get_all(header::SET_COOKIE) {
        res.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SECOND_FACTOR_COOKIE, "", 0, secure(portal)),
    );
    res
}

/// Records a passkey's use; refused when its counter went backwards (a copied authenticator).
async fn record_use(
    s: &PortalState,
    record: &PasskeyRecord,
    mut passkey: Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<(), JsonError> {
    passkey.update_credential(result);
    let stored = serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?;
    if s.service
        .use_passkey(&record.id, i64::from(result.counter()), &stored)
        .await?
    {
        Ok(())
    } else {
        tracing::warn!(passkey = %record.id, "passkey refused: its counter did not move forward");
        Err(JsonError::copied())
    }
}

/// A verification that failed: a copied authenticator (its counter is behind the one kept) says
/// so; anything else is a plain refusal.
fn verification_failed(e: webauthn_rs::prelude::WebauthnError) -> JsonError {
    if matches!(
        e,
        webauthn_rs::prelude::WebauthnError::CredentialPossibleCompromise
    ) {
        tracing::warn!("passkey refused: its counter did not move forward");
        return JsonError::copied();
    }
    tracing::info!(error = %e, "passkey refused");
    JsonError::refused()
}

// ---- the person's passkeys page ----

struct PasskeyView {
    id: String,
    name: String,
    added: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
struct PasskeysPage {
    l: Layout,
    csrf: String,
    passkeys: Vec<PasskeyView>,
    /// The operator requires a second factor of this person, who has none yet.
    required: bool,
    unavailable: Option<String>,
    error: Option<String>,
    /// The error asks for a fresh sign-in: a form that signs out and comes back here.
    reauth: Option<String>,
}

async fn page_with(
    s: &PortalState,
    portal: &Portal,
    me: &Me,
    status: StatusCode,
    error: Option<String>,
    reauth: bool,
) -> Result<Response, PageError> {
    let tz = me.person.time_zone;
    let passkeys = s
        .service
        .passkeys(&me.person.id)
        .await?
        .into_iter()
        .map(|p| PasskeyView {
            added: local_time(p.created_at, tz),
            last_used: p
                .last_used_at
                .map_or_else(|| "never".into(), |t| local_time(t, tz)),
            id: p.id,
            name: p.name,
        })
        .collect();
    let page = PasskeysPage {
        l: Layout::signed_in("Passkeys", me, "/me/passkeys"),
        csrf: me.csrf.clone(),
        passkeys,
        required: me.needs_passkey,
        unavailable: portal.passkeys.as_ref().err().cloned(),
        error,
        reauth: reauth.then(|| form_token(&me.session_csrf)),
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn passkeys_page(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    me: Me,
) -> Result<Response, PageError> {
    page_with(&s, &portal, &me, StatusCode::OK, None, false).await
}

#[derive(Deserialize)]
pub struct NameBody {
    #[serde(default)]
    name: String,
}

/// The challenge for a new passkey of the signed-in person.
pub async fn registration_options(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    me: Option<Me>,
    headers: HeaderMap,
    Json(b): Json<NameBody>,
) -> Result<Response, JsonError> {
    let me = me.ok_or_else(JsonError::sign_in)?;
    let webauthn = webauthn(&portal)?;
    me.use_header_token(&s, &headers).await?;
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(JsonError::bad(format!(
            "Give the passkey a name of 1 to {NAME_MAX} characters, such as \u{201c}Laptop\u{201d}."
        )));
    }
    let existing = s.service.passkeys(&me.person.id).await?;
    // The id the person's authenticators know them by: random, and the same for all of their
    // passkeys (authenticators keep one passkey per site and id).
    let handle = match existing.first() {
        Some(p) => Uuid::parse_str(&p.user_handle).map_err(|e| internal("user handle", e))?,
        None => Uuid::new_v4(),
    };
    let exclude = existing
        .iter()
        .map(|p| stored_passkey(p).map(|k| k.cred_id().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let (ccr, state) = webauthn
        .start_passkey_registration(handle, &me.person.email, &me.person.email, Some(exclude))
        .map_err(|e| internal("registration challenge", e))?;
    let state = serde_json::to_string(&state).map_err(|e| internal("registration state", e))?;
    let detail = json!({ "name": name, "handle": handle.to_string() }).to_string();
    let id = begin(&s, "registration", Some(&me.person.id), Some(detail), state).await?;
    let mut options = serde_json::to_value(&ccr).map_err(|e| internal("options", e))?;
    // A passkey that signs in without an email must live on the authenticator (a discoverable
    // credential); the library's default leaves that to the authenticator.
    if let Some(sel) = options["publicKey"]["authenticatorSelection"].as_object_mut() {
        sel.insert("residentKey".into(), json!("required"));
        sel.insert("requireResidentKey".into(), json!(true));
    }
    Ok(Json(json!({
        "id": id,
        // The finishing request's own one-time token: this one is used up.
        "csrf": form_token(&me.session_csrf),
        "options": options,
    }))
    .into_response())
}

/// Registers the passkey the browser made for the challenge.
pub async fn registration_finish(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    me: Option<Me>,
    client: ClientAddr,
    headers: HeaderMap,
    Json(b): Json<FinishBody>,
) -> Result<Response, JsonError> {
    let me = me.ok_or_else(JsonError::sign_in)?;
    let webauthn = webauthn(&portal)?;
    me.use_header_token(&s, &headers).await?;
    let ceremony = s
        .service
        .take_ceremony(&token_hash(&b.id), "registration")
        .await?
        .filter(|c| c.person_id.as_deref() == Some(me.person.id.as_str()))
        .ok_or_else(JsonError::expired)?;
    let state: PasskeyRegistration = serde_json::from_str(ceremony.state.as_deref().unwrap_or(""))
        .map_err(|e| internal("registration state", e))?;
    let detail: Value = serde_json::from_str(ceremony.detail.as_deref().unwrap_or("{}"))
        .map_err(|e| internal("registration detail", e))?;
    let reg: RegisterPublicKeyCredential = parse(b.credential)?;
    let passkey = webauthn
        .finish_passkey_registration(&reg, &state)
        .map_err(|e| JsonError::bad(format!("The passkey could not be registered: {e}.")))?;
    let stored = serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?;
    let new = NewPasskey {
        person_id: &me.person.id,
        user_handle: detail["handle"].as_str().unwrap_or_default(),
        credential_id: &credential_id(passkey.cred_id().as_ref()),
        name: detail["name"].as_str().unwrap_or("Passkey"),
        credential: &stored,
        counter: counter_of(&passkey),
    };
    let by = By::new(
        Actor::Person {
            id: me.person.id.clone(),
        },
        Some(client.0),
    );
    match s.service.add_passkey(&by, &new).await {
        Ok(_) => {}
        Err(crate::error::Error::Conflict(_)) => {
            return Err(JsonError(
                StatusCode::CONFLICT,
                "That passkey is registered already.".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Json(json!({ "to": with_notice("/me/passkeys", Notice::Created) })).into_response())
}

/// Removes a passkey of the signed-in person. The last one goes only after a fresh sign-in
/// (a stolen session cannot take the factor away), and not at all while the operator requires
/// one of this person.
pub async fn remove(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    Path(id): Path<String>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Response, PageError> {
    let passkeys = s.service.passkeys(&me.person.id).await?;
    if !passkeys.iter().any(|p| p.id == id) {
        return Err(PageError::not_found());
    }
    if passkeys.len() == 1 {
        let required = !me.roles.is_empty()
            && portal.passkeys.is_ok()
            && s.service.second_factor(&me.person.id).await?.required;
        if required {
            let msg = "Your server requires a passkey of operators and company admins: add another passkey before removing this one.";
            return page_with(
                &s,
                &portal,
                &me,
                StatusCode::CONFLICT,
                Some(msg.into()),
                false,
            )
            .await;
        }
        if s.service.now() - me.session_started > Duration::minutes(FRESH_MINUTES) {
            let msg = format!(
                "This is your last passkey: removing it needs a fresh sign-in (within {FRESH_MINUTES} minutes). Sign in again, then remove it."
            );
            return page_with(&s, &portal, &me, StatusCode::FORBIDDEN, Some(msg), true).await;
        }
    }
    let by = By::new(
        Actor::Person {
            id: me.person.id.clone(),
        },
        Some(client.0),
    );
    s.service.remove_passkey(&by, &me.person.id, &id).await?;
    Ok(done("/me/passkeys", Notice::Deleted))
}

// ---- signing in with a passkey alone ----

/// The challenge for a passkey sign-in: any passkey of this site, the authenticator says whose.
/// Counted by the client address's sign-in throttle, as a password try is.
pub async fn sign_in_options(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Json(_): Json<Value>,
) -> Result<Response, JsonError> {
    let webauthn = webauthn(&portal)?;
    check_pre_csrf_header(&headers)?;
    let key = passkey_client_key(&portal, &client);
    if let Err(wait) = portal.throttle.admit(&[key], s.service.now()).await? {
        return Err(JsonError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many sign-ins from here. Try again in {} s.", wait.secs),
        ));
    }
    let (rcr, state) = webauthn
        .start_discoverable_authentication()
        .map_err(|e| internal("sign-in challenge", e))?;
    let state = serde_json::to_string(&state).map_err(|e| internal("sign-in state", e))?;
    let id = begin(&s, "sign_in", None, None, state).await?;
    let mut options = serde_json::to_value(&rcr).map_err(|e| internal("options", e))?;
    // A button, not the browser's autofill: the browser asks at once.
    if let Some(o) = options.as_object_mut() {
        o.remove("mediation");
    }
    Ok(Json(json!({ "id": id, "options": options })).into_response())
}

fn passkey_client_key(portal: &Portal, client: &ClientAddr) -> super::throttle::Key {
    portal
        .throttle
        .key("passkey-client", &client.0, super::throttle::Policy::CLIENT)
}

pub async fn sign_in_finish(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Json(b): Json<FinishBody>,
) -> Result<Response, JsonError> {
    let webauthn = webauthn(&portal)?;
    check_pre_csrf_header(&headers)?;
    let ceremony = s
        .service
        .take_ceremony(&token_hash(&b.id), "sign_in")
        .await?
        .ok_or_else(JsonError::expired)?;
    let state: DiscoverableAuthentication =
        serde_json::from_str(ceremony.state.as_deref().unwrap_or(""))
            .map_err(|e| internal("sign-in state", e))?;
    let cred: PublicKeyCredential = parse(b.credential)?;
    let (handle, cred_id) = webauthn
        .identify_discoverable_authentication(&cred)
        .map_err(|_| JsonError::refused())?;
    let cred_id = credential_id(cred_id);
    let record = s
        .service
        .passkeys_by_user_handle(&handle.to_string())
        .await?
        .into_iter()
        .find(|p| p.credential_id == cred_id)
        .ok_or_else(JsonError::refused)?;
    let passkey = stored_passkey(&record)?;
    let result = webauthn
        .finish_discoverable_authentication(&cred, state, &[DiscoverableKey::from(&passkey)])
        .map_err(verification_failed)?;
    record_use(&s, &record, passkey, &result).await?;
    let now = s.service.now();
    portal
        .throttle
        .succeeded(&[], &[passkey_client_key(&portal, &client)], now)
        .await?;
    let to = after_sign_in(&b.next).to_string();
    let session = start_session(&s, &portal, &headers, &record.person_id, &to).await?;
    Ok(signed_in(session, &to, &portal))
}

// ---- a passkey after the password ----

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage {
    l: Layout,
    csrf: String,
}

pub async fn second_factor_page(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let waiting = match cookie(&headers, SECOND_FACTOR_COOKIE) {
        Some(t) => s
            .service
            .ceremony(&token_hash(t), "second_factor")
            .await?
            .is_some(),
        None => false,
    };
    if !waiting {
        return Ok(Redirect::to("/login").into_response());
    }
    let csrf = pre_csrf(&headers);
    let page = SecondFactorPage {
        l: Layout::anonymous("Use your passkey"),
        csrf: csrf.0.clone(),
    };
    Ok(anonymous_page(&portal, StatusCode::OK, render(&page), csrf))
}

/// The second step's ceremony token, from its cookie.
fn second_factor_token(headers: &HeaderMap) -> Result<String, JsonError> {
    cookie(headers, SECOND_FACTOR_COOKIE)
        .map(token_hash)
        .ok_or_else(JsonError::expired)
}

/// The challenge for the person whose password was right: one of their passkeys. Counted by
/// the same throttle as their password.
pub async fn second_factor_options(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Json(_): Json<Value>,
) -> Result<Response, JsonError> {
    let webauthn = webauthn(&portal)?;
    check_pre_csrf_header(&headers)?;
    let hash = second_factor_token(&headers)?;
    let ceremony = s
        .service
        .ceremony(&hash, "second_factor")
        .await?
        .ok_or_else(JsonError::expired)?;
    let person_id = ceremony.person_id.unwrap_or_default();
    let person = s
        .service
        .person(&person_id)
        .await?
        .ok_or_else(JsonError::expired)?;
    let tries = login_tries(&portal, &headers, &person.email, &client);
    if let Err(wait) = portal.throttle.admit(&tries.keys, s.service.now()).await? {
        return Err(JsonError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many sign-ins. Try again in {} s.", wait.secs),
        ));
    }
    let passkeys = s
        .service
        .passkeys(&person_id)
        .await?
        .iter()
        .map(stored_passkey)
        .collect::<Result<Vec<_>, _>>()?;
    let (rcr, state) = webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| internal("second-factor challenge", e))?;
    let state = serde_json::to_string(&state).map_err(|e| internal("second-factor state", e))?;
    if !s
        .service
        .set_ceremony_state(&hash, "second_factor", &state)
        .await?
    {
        return Err(JsonError::expired());
    }
    Ok(Json(json!({ "options": rcr })).into_response())
}

pub async fn second_factor_finish(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    headers: HeaderMap,
    Json(b): Json<FinishBody>,
) -> Result<Response, JsonError> {
    let webauthn = webauthn(&portal)?;
    check_pre_csrf_header(&headers)?;
    let hash = second_factor_token(&headers)?;
    // Taken: a wrong answer ends this sign-in, and the password is asked again.
    let ceremony = s
        .service
        .take_ceremony(&hash, "second_factor")
        .await?
        .ok_or_else(JsonError::expired)?;
    let person_id = ceremony.person_id.clone().unwrap_or_default();
    let state: PasskeyAuthentication =
        serde_json::from_str(ceremony.state.as_deref().unwrap_or(""))
            .map_err(|_| JsonError::expired())?;
    let cred: PublicKeyCredential = parse(b.credential)?;
    let result = webauthn
        .finish_passkey_authentication(&cred, &state)
        .map_err(verification_failed)?;
    let used = credential_id(result.cred_id().as_ref());
    let record = s
        .service
        .passkeys(&person_id)
        .await?
        .into_iter()
        .find(|p| p.credential_id == used)
        .ok_or_else(JsonError::refused)?;
    let passkey = stored_passkey(&record)?;
    record_use(&s, &record, passkey, &result).await?;
    if let Some(person) = s.service.person(&person_id).await? {
        let tries = login_tries(&portal, &headers, &person.email, &client);
        portal
            .throttle
            .succeeded(&tries.forget, &tries.undo, s.service.now())
            .await?;
    }
    let to = ceremony
        .detail
        .as_deref()
        .and_then(safe_return)
        .unwrap_or("/")
        .to_string();
    let session = start_session(&s, &portal, &headers, &person_id, &to).await?;
    Ok(signed_in(session, &to, &portal))
}

// ---- the operator's requirement ----

#[derive(Deserialize)]
pub struct SecondFactorForm {
    #[serde(default)]
    required: String,
}

/// Turns on or off the requirement of a passkey for operators and company admins; recorded
/// in the audit trail.
pub async fn set_second_factor(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    client: ClientAddr,
    CsrfForm(me, f): CsrfForm<SecondFactorForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    let on = f.required == "on";
    if on {
        if let Err(why) = &portal.passkeys {
            return Err(PageError::Status(
                StatusCode::CONFLICT,
                format!("A second factor cannot be required: {why}."),
            ));
        }
    }
    let by = By::new(
        Actor::Operator {
            person_id: me.person.id.clone(),
            email: me.person.email.clone(),
        },
        Some(client.0),
    );
    s.service.set_second_factor_required(&by, on).await?;
    Ok(done("/operator", Notice::Saved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_comes_from_the_portal_url() {
        assert!(relying_party("https://deadbolt.example.com").is_ok());
        assert!(
            relying_party("http://127.0.0.1:8080").is_ok(),
            "as localhost"
        );
        assert!(relying_party("http://localhost:8080").is_ok());
        let why = relying_party("http://deadbolt.example.com").unwrap_err();
        assert!(why.contains("neither https nor localhost"), "{why}");
        assert!(relying_party("https://192.0.2.1").is_err());
    }
}
