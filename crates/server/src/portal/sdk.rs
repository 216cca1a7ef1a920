//! `POST /nl3/api/v1/sdk/pair`: a company back end pairs one of its accounts with the person
//! who created the pairing code in the portal.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::token_hash;
use super::person::normalize_code;
use crate::api::{header, json_object, read_body, ApiState};
use crate::error::{Error, Result};
use crate::ops::valid_account;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairRequest {
    code: String,
    domain: String,
    #[serde(rename = "userAccountId")]
    user_account_id: String,
}

pub async fn pair(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let company =
        s.db.authenticate_sdk(header(&headers, "x-nl3-server-api-token"))
            .await?;
    let bytes = read_body(&headers, body, 16 * 1024).await?;
    let req: PairRequest = json_object(&bytes)?;
    let account = valid_account(&req.user_account_id)?;
    let app = s.db.company_application(&company, &req.domain).await?;
    // An account already paired with someone else is refused before the code is used up.
    let key = app.account_names.key(account);
    if let Some(existing) = s.db.store.account(&app.id, &key).await? {
        if existing.person_id.is_some() {
            return Err(Error::Conflict(format!(
                "a pairing for account {account:?}"
            )));
        }
    }
    let code = normalize_code(&req.code);
    let person_id = s
        .db
        .store
        .take_pairing_code(&token_hash(&code), s.db.now())
        .await?
        .ok_or_else(|| Error::NotFound("pairing code (it may have expired or been used)".into()))?;
    let (acc, created) =
        s.db.store
            .enroll(&app.id, account, Some(&person_id), s.db.now())
            .await?;
    if acc.person_id.as_deref() != Some(person_id.as_str()) {
        return Err(Error::Conflict(format!(
            "a pairing for account {account:?}"
        )));
    }
    Ok(Json(json!({
        "paired": true,
        "userAccountId": acc.account,
        "enrolled": created,
        "state": acc.state.as_str(),
    })))
}
