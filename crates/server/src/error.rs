//! The server's error type and its only mapping to HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use deadbolt_core::token::TokenError;
use deadbolt_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a clear message for the caller.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// A change that cannot be made as things stand (409); the message says why.
    #[error("{0}")]
    Refused(String),
    #[error("request body over the limit of {0} bytes")]
    TooLarge(usize),
    #[error("rate limit exceeded")]
    RateLimited,
    /// The store (or the key material) cannot answer; details are logged, not returned.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(what.to_string()),
            StoreError::Conflict(what) => Error::Conflict(what),
            StoreError::Refused(why) => Error::Refused(why),
            StoreError::Config(m) => Error::Invalid(m),
            StoreError::Unavailable(m) | StoreError::Corrupt(m) => Error::Unavailable(m),
        }
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Unauthorized(e.to_string())
    }
}

impl From<deadbolt_core::body::BodyError> for Error {
    fn from(e: deadbolt_core::body::BodyError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<deadbolt_core::Error> for Error {
    fn from(e: deadbolt_core::Error) -> Self {
        match e {
            deadbolt_core::Error::Token(t) => t.into(),
            e => Error::Invalid(e.to_string()),
        }
    }
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Refused(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Error::Unavailable(detail) => {
                tracing::error!(error = %detail, "store unavailable");
                "service unavailable, try again".to_string()
            }
            e => e.to_string(),
        };
        (status, Json(json!({ "message": message }))).into_response()
    }
}
