//! The check API and the SDK API. Errors are JSON `{"message": …}`, and only a 200 from the
//! check carries `locked`.

pub mod check;
mod sdk;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;

use crate::check::CheckService;
use crate::error::Error;
use crate::request_id::{self, Panicked};
use crate::service::Service;

/// The check path, as the NL3 integrations call it.
pub const CHECK_PATH: &str = deadbolt_client::DEFAULT_API_PATH;
/// Largest check body accepted.
pub const MAX_CHECK_BODY: usize = 64 * 1024;
/// Largest SDK body accepted (an import of many thousand rows).
pub const MAX_SDK_BODY: usize = 32 * 1024 * 1024;

/// The check and SDK APIs, for a server state that provides the check service and the service.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Service: FromRef<S>,
    Arc<CheckService>: FromRef<S>,
{
    // The SDK calls have a span per request; the check does not (see `request_id`).
    let sdk = Router::new()
        .route("/nl3/api/v1/sdk/importUsers", post(sdk::import_users))
        .route("/nl3/api/v1/sdk/lock", post(sdk::lock))
        .route("/nl3/api/v1/sdk/unlock", post(sdk::unlock))
        .route("/nl3/api/v1/sdk/status", get(sdk::status))
        .route("/nl3/api/v1/sdk/attempts", get(sdk::attempts))
        .route("/nl3/api/v1/sdk/pair", post(sdk::pair))
        .route("/openapi.json", get(openapi))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panicked))
        .layer(request_id::traced());
    Router::new()
        .route(CHECK_PATH, post(check::check))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panicked))
        .merge(sdk)
}

/// The API's answer to a path it does not have.
pub async fn not_found() -> Error {
    Error::NotFound("route".into())
}

pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"message": "method not allowed"})),
    )
        .into_response()
}

/// A handler that panicked: a plain JSON 500; the request id layer logs it.
pub fn panicked(_: Box<dyn std::any::Any + Send>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Extension(Panicked),
        Json(json!({"message": "internal error"})),
    )
        .into_response()
}

/// The OpenAPI 3 document of the check and SDK APIs (`tests/api/openapi.rs` keeps it honest).
const OPENAPI: &str = include_str!("../../api/openapi.json");

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}
