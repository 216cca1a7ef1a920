//! The portal's error type: what a page handler fails with, and how it answers (a redirect to
//! the sign-in, or a status with a message that the portal's last layer renders as a page).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use deadbolt_store::StoreError;

use crate::error::Error;

#[derive(Debug)]
pub enum PageError {
    /// Not signed in: go to the sign-in page.
    SignIn,
    /// Shown to the person as it is.
    Status(StatusCode, String),
    /// Logged; the person sees a generic message.
    Internal(String),
}

impl PageError {
    pub fn not_found() -> Self {
        PageError::Status(StatusCode::NOT_FOUND, "This page does not exist.".into())
    }
    pub fn bad(msg: impl Into<String>) -> Self {
        PageError::Status(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn csrf() -> Self {
        PageError::Status(
            StatusCode::FORBIDDEN,
            "This form has expired. Go back, reload the page and try again.".into(),
        )
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => PageError::Status(StatusCode::BAD_REQUEST, m),
            Error::Unauthorized(_) => PageError::SignIn,
            // Another tenant's page looks exactly like a missing one.
            Error::Forbidden(_) | Error::NotFound(_) => PageError::not_found(),
            Error::Conflict(m) => {
                PageError::Status(StatusCode::CONFLICT, format!("{m} already exists."))
            }
            Error::Refused(m) => PageError::Status(StatusCode::CONFLICT, m),
            Error::TooLarge(n) => PageError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("That upload is over the limit of {n} bytes."),
            ),
            Error::RateLimited => PageError::Status(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; wait a little and try again.".into(),
            ),
            Error::Unavailable(m) => PageError::Internal(m),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

/// What an error page will say; the portal's last layer renders the page around it, with the
/// request's id (see [`error_page`]).
#[derive(Clone, Debug)]
pub(super) struct ErrorMessage(pub(super) String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::SignIn => return Redirect::to("/login").into_response(),
            PageError::Status(s, m) => (s, m),
            PageError::Internal(detail) => {
                tracing::error!(error = %detail, "portal page failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Something went wrong on our side. Try again in a moment.".to_string(),
                )
            }
        };
        (status, axum::Extension(ErrorMessage(message))).into_response()
    }
}
