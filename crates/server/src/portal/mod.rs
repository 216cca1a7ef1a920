//! The portal: server-rendered pages for company admins and people.

use axum::Router;

use crate::api::ApiState;

/// The portal's routes, merged into the server's router.
pub fn router() -> Router<ApiState> {
    Router::new()
}
