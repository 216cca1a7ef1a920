//! `POST /nl3/api/v1/accountProtectionCheck`.

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

use super::MAX_CHECK_BODY;
use crate::check::{CheckService, HeaderContext};
use crate::error::Error;
use crate::request::{header, read_body};
use crate::request_id;
use std::sync::Arc;

/// A request header asking for the deciding rule in [`REASON`].
pub const EXPLAIN: &str = "x-deadbolt-explain";
/// The response header naming the rule that decided (`unenrolled_allow`, `account_locked`, …).
pub const REASON: &str = "x-deadbolt-reason";

/// Takes only the check service from the state: one reference count moved per request.
pub async fn check(State(checks): State<Arc<CheckService>>, request: Request) -> Response {
    let started = Instant::now();
    // The headers are taken from the request, not copied out of it as a `HeaderMap` extractor would.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let result = async {
        let bytes = read_body(&headers, body, MAX_CHECK_BODY).await?;
        let context = HeaderContext {
            forwarded_for: header(&headers, "x-forwarded-for").map(String::from),
            user_agent: header(&headers, "user-agent").map(String::from),
            device_location: header(&headers, "x-nl3-device-location").map(String::from),
        };
        // Each store call has the store deadline; so has the check as a whole, so that a few
        // slow calls in a row do not add up to a hang.
        let deadline = checks.store.timeout();
        tokio::time::timeout(
            deadline,
            checks.check(
                header(&headers, "x-nl3-authorization-token"),
                &bytes,
                context,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::Unavailable(format!(
                "the check took longer than the store deadline ({} ms)",
                deadline.as_millis()
            )))
        })
    }
    .await;
    checks.metrics.observe(started.elapsed());
    match result {
        Ok(answer) => {
            let body = if answer.locked {
                r#"{"locked":true}"#
            } else {
                r#"{"locked":false}"#
            };
            let mut response = ([(CONTENT_TYPE, "application/json")], body).into_response();
            // Which rule decided, for a caller that asks (`deadbolt check` says "not enrolled"
            // with it). Only after the token verified: the application's own accounts. The body
            // stays the wire format.
            if headers.contains_key(EXPLAIN) {
                response.headers_mut().insert(
                    REASON,
                    HeaderValue::from_static(answer.decision.reason.as_str()),
                );
            }
            response
        }
        Err(e) => {
            checks.metrics.error(e.status().as_u16());
            // Only a refused check pays for a span: its log lines name the request.
            let span = tracing::info_span!("request", request_id = request_id::of(&headers));
            let _entered = span.enter();
            if e.status().as_u16() == 401 {
                tracing::info!(reason = %e, "check refused");
            }
            e.into_response()
        }
    }
}
