//! The domain's error type.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Body(#[from] crate::body::BodyError),
    #[error("{0}")]
    Invalid(String),
}
