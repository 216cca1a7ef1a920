//! Reading requests, shared by the HTTP surfaces: bodies with a size limit and a deadline, JSON
//! whatever the Content-Type, header values as text.

use axum::body::Body;
use axum::http::HeaderMap;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Reads a body of at most `limit` bytes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::TooLarge(limit));
    }
    // Short of a disconnect, reading a body fails on the length limit or the body timeout.
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<crate::conn::BodyTimedOut>() {
                return Error::Invalid(t.to_string());
            }
            cause = c.source();
        }
        Error::TooLarge(limit)
    })
}

/// Parses a JSON body whatever its Content-Type, with a clear message when it does not fit.
pub(crate) fn json_body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("invalid request body: {e}")))
}

/// Like [`json_body`], for a JSON object only: serde would otherwise fill a struct's fields from
/// an array in order, and `["a.example.com", "bob"]` must not name a domain and an account.
pub(crate) fn json_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::Invalid(
            "invalid request body: expected a JSON object".into(),
        ));
    }
    json_body(bytes)
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client's address as the connection shows it (a proxy in front shows as one client),
/// for the audit trail; `None` when the server was not given connection info (some tests).
pub struct Peer(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        ))
    }
}
