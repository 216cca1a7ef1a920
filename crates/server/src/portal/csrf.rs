//! CSRF tokens: the session's for signed-in forms, a double-submit cookie for forms shown
//! before signing in.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::pages::PageError;
use super::session::{cookie, random_token, secure, set_cookie, Me};
use super::Portal;

/// The CSRF token of forms shown before signing in (double-submit: cookie and form field).
pub const PRE_CSRF_COOKIE: &str = "deadbolt_csrf";

pub(super) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Me {
    /// Every state-changing form carries the session's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
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

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
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
