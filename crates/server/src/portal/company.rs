//! What every company page starts from: the company-admin extractor (to anyone else the
//! company's pages do not exist) and the company's application named in the path.

use axum::extract::{FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use super::csrf::Signer;
use super::error::PageError;
use super::session::Me;
use super::PortalState;
use deadbolt_store::Application;

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

/// The most rows a list page shows.
pub(super) const PAGE_LEN: i64 = 200;

/// The application `aid` of company `cid`; to another company's admin it does not exist.
pub(super) async fn company_app(
    s: &PortalState,
    cid: &str,
    aid: &str,
) -> Result<Application, PageError> {
    match s.service.find_application(aid).await? {
        Some(app) if app.company_id == cid => Ok(app),
        _ => Err(PageError::not_found()),
    }
}
