//! A company's pages: one router under `/companies/{cid}`; every handler takes the
//! company-admin extractor (`company.rs`), so to anyone else these pages do not exist.

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use super::{accounts, admin, alerts, attempts, audit, Portal, PortalState};

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
        .route(
            "/admins/remove",
            get(admin::remove_admin_page).post(admin::remove_admin),
        )
        .route("/invitations/resend", post(admin::resend_invitation))
        .route("/invitations/cancel", post(admin::cancel_invitation))
        .route("/apps", post(admin::create_app))
        .route("/sdk-keys", post(admin::create_sdk_key))
        .route("/sdk-keys/{kid}/revoke", post(admin::revoke_sdk_key))
        .route("/apps/{aid}", get(admin::app_page))
        .route("/apps/{aid}/settings", post(admin::app_settings))
        .route(
            "/apps/{aid}/delete",
            get(admin::delete_app_page).post(admin::delete_app),
        )
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
        .route("/apps/{aid}/attempts.csv", get(attempts::attempts_csv))
        .route("/apps/{aid}/integration", get(admin::integration_page))
        .route("/apps/{aid}/audit", get(audit::app_audit_page))
        .route(
            "/webhook",
            get(alerts::webhook_page).post(alerts::set_webhook),
        )
        .route("/webhook/delete", post(alerts::delete_webhook))
}
