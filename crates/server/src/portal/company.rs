//! A company's pages: one router under `/companies/{cid}`, open only to the company's admins.

use axum::extract::{FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

use super::csrf::Signer;
use super::session::Me;
use super::{accounts, admin, attempts};
use super::{Portal, PortalState};

/// The company's pages, relative to `/companies/{cid}`.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PortalState: FromRef<S>,
    Arc<Portal>: FromRef<S>,
{
    Router::new()
        .route("/", get(admin::company_page))
        .route("/admins", post(admin::invite_admin))
        .route("/apps", post(admin::create_app))
        .route("/sdk-keys", post(admin::create_sdk_key))
        .route("/sdk-keys/{kid}/revoke", post(admin::revoke_sdk_key))
        .route("/apps/{aid}", get(admin::app_page))
        .route("/apps/{aid}/settings", post(admin::app_settings))
        .route("/apps/{aid}/keys", post(admin::create_signing_key))
        .route(
            "/apps/{aid}/keys/{kid}/revoke",
            post(admin::revoke_signing_key),
        )
        .route("/apps/{aid}/accounts", get(accounts::accounts_page))
        .route("/apps/{aid}/accounts/enroll", post(accounts::enroll))
        .route("/apps/{aid}/accounts/lock", post(accounts::lock))
        .route("/apps/{aid}/accounts/unlock", post(accounts::unlock))
        .route("/apps/{aid}/import", post(accounts::import_csv))
        .route("/apps/{aid}/attempts", get(attempts::attempts_page))
        .route("/apps/{aid}/attempts/events", get(attempts::attempt_events))
        .route("/apps/{aid}/integration", get(admin::integration_page))
}

/// A company's admin, checked once for every page under `/companies/{cid}`: to anyone else the
/// company's pages do not exist.
pub struct CompanyAdmin {
    pub me: Me,
    pub cid: String,
}

impl Signer for CompanyAdmin {
    fn me(&self) -> &Me {
        &self.me
    }
}

impl<S> FromRequestParts<S> for CompanyAdmin
where
    S: Send + Sync,
    PortalState: FromRef<S>,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Response> {
        let me = Me::from_request_parts(parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let cid = params.get("cid").cloned().unwrap_or_default();
        me.admin_of(&cid).map_err(IntoResponse::into_response)?;
        Ok(CompanyAdmin { me, cid })
    }
}
