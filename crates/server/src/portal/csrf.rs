//! CSRF tokens: one-time form tokens for signed-in forms, a double-submit cookie for forms
//! shown before signing in.
//!
//! A signed-in page's forms carry a token made from the session's secret: a random nonce and
//! its HMAC under that secret. A form is accepted when the HMAC is right (it came from a page
//! of this session) and its nonce was never sent before: the store keeps the nonces sent (by
//! hash, until the session could have expired), so a refresh, a second click or a replay of a
//! form does nothing twice, on whichever replica it lands. Such a repeat is answered with the
//! page it came from and a notice that nothing was done again.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use axum::extract::FromRef;
use axum::response::Redirect;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::error::PageError;
use super::form_token::form_mac;
use super::notice::{with_notice, Notice};
use super::session::{cookie, random_token, safe_return, secure, set_cookie, Me};
use super::{Portal, PortalState};
use crate::crypto::token_hash;

/// The CSRF token of forms shown before signing in (double-submit: cookie and form field).
pub const PRE_CSRF_COOKIE: &str = "deadbolt_csrf";

/// The header a page script's JSON request carries its form token in (it has no form fields).
pub const CSRF_HEADER: &str = "x-deadbolt-csrf";

pub(super) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Me {
    /// Every state-changing form carries a form token of this session; its nonce if it does.
    fn check_csrf(&self, token: &str) -> Result<String, PageError> {
        let (nonce, mac) = token.split_once('.').ok_or_else(PageError::csrf)?;
        let want = URL_SAFE_NO_PAD.encode(form_mac(&self.session_csrf, nonce));
        if nonce.len() == 22 && same(mac, &want) {
            Ok(nonce.to_string())
        } else {
            Err(PageError::csrf())
        }
    }

    /// Uses up a checked form token: `Err` with the answer to give when the form was sent
    /// before (the page it came from, saying so).
    async fn use_form(
        &self,
        s: &PortalState,
        nonce: &str,
        headers: &HeaderMap,
    ) -> Result<(), Response> {
        let first = s
            .service
            .use_form_token(&token_hash(nonce), self.session_expires)
            .await
            .map_err(|e| PageError::from(e).into_response())?;
        if first {
            return Ok(());
        }
        let back = headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(referer_path)
            .unwrap_or("/me");
        Err(Redirect::to(&with_notice(back, Notice::Again)).into_response())
    }
}

impl Me {
    /// A page script's request: its form token, in the [`CSRF_HEADER`] header, is checked and
    /// used up as a form's would be. A token sent before is refused (no page to go back to).
    pub(super) async fn use_header_token(
        &self,
        s: &PortalState,
        headers: &HeaderMap,
    ) -> Result<(), PageError> {
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let nonce = self.check_csrf(token)?;
        if s.service
            .use_form_token(&token_hash(&nonce), self.session_expires)
            .await?
        {
            Ok(())
        } else {
            Err(PageError::csrf())
        }
    }
}

/// The path (and query) of a Referer, if it names a page: the path is only ever used on this
/// site, so a Referer from elsewhere leads to that path here, never away.
fn referer_path(referer: &str) -> Option<&str> {
    let rest = referer.split_once("://").map_or(referer, |(_, r)| r);
    let path = &rest[rest.find('/')?..];
    safe_return(path)
}

/// The pre-sign-in CSRF token: the cookie's, or a new one to set.
pub(super) fn pre_csrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_CSRF_COOKIE) {
        Some(v) if v.len() >= 32 && v.len() <= 64 => (v.to_string(), false),
        _ => (random_token(), true),
    }
}

pub(super) fn check_pre_csrf(headers: &HeaderMap, form_token: &str) -> Result<(), PageError> {
    match cookie(headers, PRE_CSRF_COOKIE) {
        Some(c) if same(form_token, c) => Ok(()),
        _ => Err(PageError::csrf()),
    }
}

/// A page shown before signing in, setting the CSRF cookie when needed.
pub(super) fn anonymous_page(
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

/// A signed-in person's form whose `csrf` field was checked against their session before the
/// handler runs, so that no handler can forget the check. Rejects as the parts it is made of
/// would: no session asks to sign in, an unreadable form is refused, a wrong token is a CSRF
/// error.
pub struct CsrfForm<T = NoFields, W = Me>(pub W, pub T);

/// Whoever signs a form: the signed-in person, or a role of theirs that an extractor checked.
pub trait Signer {
    fn me(&self) -> &Me;
}

impl Signer for Me {
    fn me(&self) -> &Me {
        self
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct Signed<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<S, T, W> FromRequest<S> for CsrfForm<T, W>
where
    S: Send + Sync,
    PortalState: FromRef<S>,
    T: DeserializeOwned + Send,
    W: FromRequestParts<S> + Signer + Send + Sync,
    W::Rejection: IntoResponse,
{
    type Rejection = Response;
    async fn from_request(req: Request, s: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = W::from_request_parts(&mut parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let Form(f) = Form::<Signed<T>>::from_request(Request::from_parts(parts, body), s)
            .await
            .map_err(IntoResponse::into_response)?;
        let nonce = who
            .me()
            .check_csrf(&f.csrf)
            .map_err(IntoResponse::into_response)?;
        who.me()
            .use_form(&PortalState::from_ref(s), &nonce, &headers)
            .await?;
        Ok(CsrfForm(who, f.form))
    }
}

/// The largest file a signed upload takes.
const MAX_UPLOAD: usize = 8 * 1024 * 1024;

/// A signed-in person's upload of one UTF-8 text file (the `file` field), its `csrf` field
/// checked against their session before the handler runs. The whole upload is read first, so
/// an unreadable or oversized file is refused as such whatever the token.
pub struct CsrfUpload<W = Me> {
    pub who: W,
    pub text: String,
}

impl<S, W> FromRequest<S> for CsrfUpload<W>
where
    S: Send + Sync,
    PortalState: FromRef<S>,
    W: FromRequestParts<S> + Signer + Send + Sync,
    W::Rejection: IntoResponse,
{
    type Rejection = Response;
    async fn from_request(req: Request, s: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = W::from_request_parts(&mut parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let mut form = Multipart::from_request(Request::from_parts(parts, body), s)
            .await
            .map_err(IntoResponse::into_response)?;
        let read = async {
            let mut csrf = String::new();
            let mut text = String::new();
            while let Some(field) = form
                .next_field()
                .await
                .map_err(|e| PageError::bad(format!("invalid upload: {e}")))?
            {
                match field.name() {
                    Some("csrf") => csrf = field.text().await.unwrap_or_default(),
                    Some("file") => {
                        let bytes = field
                            .bytes()
                            .await
                            .map_err(|e| PageError::bad(format!("invalid upload: {e}")))?;
                        if bytes.len() > MAX_UPLOAD {
                            return Err(PageError::bad("That file is over 8 MiB."));
                        }
                        text = String::from_utf8(bytes.to_vec())
                            .map_err(|_| PageError::bad("The file is not UTF-8 text."))?;
                    }
                    _ => {}
                }
            }
            let nonce = who.me().check_csrf(&csrf)?;
            Ok((nonce, text))
        };
        let (nonce, text) = read.await.map_err(IntoResponse::into_response)?;
        who.me()
            .use_form(&PortalState::from_ref(s), &nonce, &headers)
            .await?;
        Ok(CsrfUpload { who, text })
    }
}

#[cfg(test)]
mod tests {
    use super::super::form_token::form_token;
    use super::*;

    #[test]
    fn form_tokens_belong_to_their_session() {
        let t = form_token("secret of session one");
        let (nonce, mac) = t.split_once('.').unwrap();
        assert_eq!(nonce.len(), 22);
        assert_ne!(
            form_token("secret of session one"),
            t,
            "a new nonce each time"
        );
        let want = URL_SAFE_NO_PAD.encode(form_mac("secret of session one", nonce));
        assert!(same(mac, &want));
        let other = URL_SAFE_NO_PAD.encode(form_mac("secret of session two", nonce));
        assert!(
            !same(mac, &other),
            "another session's secret makes another token"
        );
    }

    #[test]
    fn a_referer_leads_back_to_a_page_of_this_site_only() {
        assert_eq!(
            referer_path("https://portal.example.com/companies/c1?x=1"),
            Some("/companies/c1?x=1")
        );
        assert_eq!(referer_path("https://evil.example/me"), Some("/me"));
        assert_eq!(referer_path("https://evil.example//evil.example/x"), None);
        assert_eq!(referer_path("https://portal.example.com"), None);
        assert_eq!(referer_path("https://portal.example.com/login"), None);
    }

    #[test]
    fn tokens_compare() {
        assert!(!same("", ""), "an empty token never matches");
        assert!(same("x", "x") && !same("x", "y"));
    }
}
