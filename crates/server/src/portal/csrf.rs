//! CSRF tokens: the session's for signed-in forms, a double-submit cookie for forms shown
//! before signing in.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::PageError;
use super::session::{cookie, random_token, secure, set_cookie, Me};
use super::Portal;

/// The CSRF token of forms shown before signing in (double-submit: cookie and form field).
pub const PRE_CSRF_COOKIE: &str = "deadbolt_csrf";

pub(super) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Me {
    /// Every state-changing form carries the session's CSRF token.
    fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        if same(token, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::csrf())
        }
    }
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
        let Form(f) = Form::<Signed<T>>::from_request(Request::from_parts(parts, body), s)
            .await
            .map_err(IntoResponse::into_response)?;
        who.me()
            .check_csrf(&f.csrf)
            .map_err(IntoResponse::into_response)?;
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
    W: FromRequestParts<S> + Signer + Send + Sync,
    W::Rejection: IntoResponse,
{
    type Rejection = Response;
    async fn from_request(req: Request, s: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = W::from_request_parts(&mut parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
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
            who.me().check_csrf(&csrf)?;
            Ok(text)
        };
        let text = read.await.map_err(IntoResponse::into_response)?;
        Ok(CsrfUpload { who, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare() {
        assert!(!same("", ""), "an empty token never matches");
        assert!(same("x", "x") && !same("x", "y"));
    }
}
