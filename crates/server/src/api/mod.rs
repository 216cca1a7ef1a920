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
use serde::de::DeserializeOwned;
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
    Router::new()
        .route(CHECK_PATH, post(check::check))
        .route("/nl3/api/v1/sdk/importUsers", post(sdk::import_users))
        .route("/nl3/api/v1/sdk/lock", post(sdk::lock))
        .route("/nl3/api/v1/sdk/unlock", post(sdk::unlock))
        .route("/nl3/api/v1/sdk/status", get(sdk::status))
        .route("/nl3/api/v1/sdk/attempts", get(sdk::attempts))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
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
        .with_state(state)
}

async fn health(State(s): State<ApiState>) -> Result<Json<serde_json::Value>> {
    let version = s.db.store.ping().await?;
    Ok(Json(json!({"status": "ok", "store_version": version})))
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
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
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("invalid request body: {e}")))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
