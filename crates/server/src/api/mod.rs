//! The HTTP surface: the check API, the SDK API, health and metrics. Errors are JSON
//! `{"message": …}` everywhere, and only a 200 from the check carries `locked`.

mod check;
mod sdk;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use crate::check::CheckService;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::ops::Deadbolt;

/// The check path, as the NL3 integrations call it.
pub const CHECK_PATH: &str = "/nl3/api/v1/accountProtectionCheck";
/// Largest check body accepted.
pub const MAX_CHECK_BODY: usize = 64 * 1024;
/// Largest SDK body accepted (an import of many thousand rows).
pub const MAX_SDK_BODY: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub db: Deadbolt,
    pub checks: Arc<CheckService>,
    pub metrics: Arc<Metrics>,
}

impl axum::extract::FromRef<ApiState> for Arc<CheckService> {
    fn from_ref(s: &ApiState) -> Self {
        s.checks.clone()
    }
}

pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .route(CHECK_PATH, post(check::check))
        .route("/nl3/api/v1/sdk/importUsers", post(sdk::import_users))
        .route("/nl3/api/v1/sdk/lock", post(sdk::lock))
        .route("/nl3/api/v1/sdk/unlock", post(sdk::unlock))
        .route("/nl3/api/v1/sdk/status", get(sdk::status))
        .route("/nl3/api/v1/sdk/attempts", get(sdk::attempts))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .merge(crate::portal::router())
        .fallback(|| async { Error::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"message": "method not allowed"})),
            )
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"message": "internal error"})),
            )
                .into_response()
        }))
        .with_state(state);
    // Paths are normalised before routing (a layer on the router would run after it): an
    // `API_URI` written with a trailing slash makes clients post to `//nl3/…`, and a 404 there
    // reads as "not locked" to a fail-open client.
    Router::new().fallback_service(tower::ServiceExt::map_request(routes, normalize_path))
}

/// Collapses repeated `/` and drops a trailing one, keeping the query: `//nl3/api/v1/x/` is
/// `/nl3/api/v1/x`. Paths already in that form pass untouched (the common case allocates nothing).
fn normalize_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    let trailing = path.len() > 1 && path.ends_with('/');
    if !trailing && !path.contains("//") {
        return req;
    }
    let mut clean = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && clean.ends_with('/')) {
            clean.push(c);
        }
    }
    if clean.len() > 1 && clean.ends_with('/') {
        clean.pop();
    }
    if let Some(q) = req.uri().query() {
        clean.push('?');
        clean.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = clean.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The OpenAPI 3 document of the check and SDK APIs (`tests/api/openapi.rs` keeps it honest).
const OPENAPI: &str = include_str!("../../api/openapi.json");

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

/// The process is alive and serving: 200 whatever the store does (`/readyz` says whether it
/// can be relied on).
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Whether this server can answer checks and take changes now: 200, or 503 with the reasons
/// (the store unreachable or past its deadline, its file gone or replaced, its last write
/// failed, the attempt writer stalled or its queue above the high-water mark).
async fn ready(State(s): State<ApiState>) -> Response {
    let mut reasons = Vec::new();
    if let Err(e) = s.db.store.readiness().await {
        tracing::warn!(error = %e.detail(), "not ready: {}", e.reason());
        reasons.push(e.reason().to_string());
    }
    if let Some(r) = crate::attempts::writer_trouble(&s.checks.attempts) {
        reasons.push(r);
    }
    if reasons.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "message": reasons.join("; "), "reasons": reasons}),
            ),
        )
            .into_response()
    }
}

/// `/metrics`, served on its own listener: what it tells (traffic, queue depths) is for the
/// operator's monitoring, not for whoever reaches the public port.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(State(m): State<Arc<Metrics>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], m.render()).into_response()
}

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
