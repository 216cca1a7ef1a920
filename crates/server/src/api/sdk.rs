//! The SDK API for company back ends, authenticated by `x-nl3-server-api-token`. A key acts only
//! on its company's applications; another company's application is indistinguishable from none.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use deadbolt_store::{Application, ImportRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;

use super::MAX_SDK_BODY;
use crate::crypto::token_hash;
use crate::error::{Error, Result};
use crate::request::{header, json_object, read_body, Peer};
use crate::service::{normalize_code, split_sdk_token, valid_account, Actor, By, Service};

/// The company the request's key acts for; and for changes, the key and the client, as the
/// audit trail records them.
async fn company(service: &Service, headers: &HeaderMap, peer: Peer) -> Result<(String, By)> {
    let (company, key_id) = service
        .authenticate_sdk(header(headers, "x-nl3-server-api-token"))
        .await?;
    Ok((company, By::new(Actor::Sdk { key_id }, peer.0)))
}

/// A lock or unlock: its target (the JSON body), and the key and the application the target
/// names, read together in one trip to the store (a change's path is otherwise three). The key
/// is judged first, as when it was read before the body: a request without a key of the right
/// form is refused before its body is read, and one whose body cannot be read or parsed is
/// answered about its key before its body.
async fn target(
    service: &Service,
    headers: &HeaderMap,
    peer: Peer,
    body: Body,
) -> Result<(Target, Application, By)> {
    let token = header(headers, "x-nl3-server-api-token");
    split_sdk_token(token)?;
    let parsed = match read_body(headers, body, 64 * 1024).await {
        Ok(bytes) => json_object::<Target>(&bytes),
        Err(e) => Err(e),
    };
    let t = match parsed {
        Ok(t) => t,
        Err(e) => {
            service.authenticate_sdk(token).await?;
            return Err(e);
        }
    };
    let (_, key_id, app) = service.authenticate_sdk_for(token, &t.domain).await?;
    Ok((t, app, By::new(Actor::Sdk { key_id }, peer.0)))
}

/// The answer to an import, written straight from the rows (no JSON tree of 100,000 objects).
#[derive(Serialize)]
struct ImportAnswer<'a> {
    created: usize,
    existing: usize,
    results: Vec<RowResult<'a>>,
}

#[derive(Serialize)]
struct RowResult<'a> {
    domain: &'a str,
    result: &'static str,
    #[serde(rename = "userAccountId")]
    user_account_id: &'a str,
}

/// Imports users in one transaction: 200 when every row was new, 202 when some existed already,
/// 400 (and nothing imported) when any row is invalid.
pub async fn import_users(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (company, by) = company(&service, &headers, peer).await?;
    let bytes = read_body(&headers, body, MAX_SDK_BODY).await?;
    let users =
        deadbolt_core::import::parse_import(&bytes).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut apps: HashMap<&str, Option<String>> = HashMap::new();
    let mut rows = Vec::with_capacity(users.len());
    let mut errors = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let domain: &str = &u.domain;
        if !apps.contains_key(domain) {
            let app = service
                .company_application(&company, domain)
                .await
                .ok()
                .map(|a| a.id);
            apps.insert(domain, app);
        }
        let app_id = apps.get(domain).and_then(Option::as_ref);
        let problem = match (app_id, valid_account(&u.user_account_id)) {
            (None, _) => Some(format!(
                "no application with domain {domain:?} in this company"
            )),
            (_, Err(e)) => Some(e.to_string()),
            (Some(_), Ok(_)) => match u.email.as_deref().filter(|e| !e.trim().is_empty()) {
                Some(e) => crate::service::valid_email(e).err().map(|e| e.to_string()),
                None => None,
            },
        }
        .or_else(|| {
            // Names are shown in the portal and stored as text on either engine (PostgreSQL
            // refuses NUL): control characters are refused like a bad email.
            [
                ("first_name", &u.first_name),
                ("last_name", &u.last_name),
                ("phone", &u.phone),
            ]
            .into_iter()
            .find(|(_, v)| {
                v.as_deref()
                    .is_some_and(|v| v.chars().any(char::is_control))
            })
            .map(|(name, _)| format!("{name} must not contain control characters"))
        });
        if let Some(message) = problem {
            errors.push(json!({"row": i, "userAccountId": u.user_account_id, "domain": domain, "message": message}));
            continue;
        }
        let field = |v: &Option<Cow<'_, str>>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| deadbolt_core::body::bounded(v, 200))
        };
        rows.push(ImportRow {
            app_id: app_id.cloned().unwrap_or_default(),
            account: u.user_account_id.clone().into_owned(),
            email: field(&u.email),
            first_name: field(&u.first_name),
            last_name: field(&u.last_name),
            phone: field(&u.phone),
        });
    }
    if !errors.is_empty() {
        let body = json!({"message": format!("{} invalid rows; nothing was imported", errors.len()), "errors": errors});
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    let created = service.import(&by, &rows).await?;
    drop(rows);
    let new = created.iter().filter(|c| **c).count();
    let status = if new == created.len() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let answer = ImportAnswer {
        created: new,
        existing: created.len() - new,
        results: users
            .iter()
            .zip(&created)
            .map(|(u, c)| RowResult {
                domain: &u.domain,
                result: if *c { "created" } else { "exists" },
                user_account_id: &u.user_account_id,
            })
            .collect(),
    };
    Ok((status, Json(answer)).into_response())
}

#[derive(Deserialize)]
struct Target {
    domain: String,
    #[serde(rename = "userAccountId")]
    user_account_id: String,
    #[serde(default)]
    minutes: Option<i64>,
}

pub async fn lock(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let (t, app, by) = target(&service, &headers, peer, body).await?;
    service.lock_in(&by, &app, &t.user_account_id).await?;
    Ok(Json(json!({"locked": true})))
}

pub async fn unlock(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let (t, app, by) = target(&service, &headers, peer, body).await?;
    let window = match t.minutes {
        None => None,
        Some(m) if (1..=525_600).contains(&m) => Some(Duration::minutes(m)),
        Some(_) => {
            return Err(Error::Invalid(
                "minutes must be between 1 and 525600".into(),
            ))
        }
    };
    let until = service
        .unlock_in(&by, &app, &t.user_account_id, window)
        .await?;
    Ok(Json(match until {
        Some(u) => json!({"locked": false, "unlocked_until": u}),
        None => json!({"locked": false}),
    }))
}

#[derive(Deserialize)]
pub struct StatusQuery {
    domain: String,
    #[serde(rename = "userAccountId")]
    user_account_id: String,
}

pub async fn status(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    q: std::result::Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let token = header(&headers, "x-nl3-server-api-token");
    let q = match q {
        Ok(Query(q)) => q,
        // The key is judged before the query, as for every SDK call.
        Err(e) => {
            company(&service, &headers, peer).await?;
            return Err(Error::Invalid(e.body_text()));
        }
    };
    let (_, _, app) = service.authenticate_sdk_for(token, &q.domain).await?;
    let d = service.status(&app, &q.user_account_id).await?;
    Ok(Json(
        json!({"locked": d.locked, "reason": d.reason.as_str()}),
    ))
}

#[derive(Deserialize)]
pub struct AttemptsQuery {
    domain: String,
    #[serde(default)]
    since: Option<String>,
    /// The feed: attempts with ids above this one, oldest first (a page's `next`).
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// With `since` (RFC 3339 or Unix milliseconds): attempts from then on, oldest first; without:
/// the newest first.
pub async fn attempts(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    q: std::result::Result<Query<AttemptsQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let (company, _) = company(&service, &headers, peer).await?;
    let Query(q) = q.map_err(|e| Error::Invalid(e.body_text()))?;
    let app = service.company_application(&company, &q.domain).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if let Some(after) = q.after {
        if q.since.is_some() {
            return Err(Error::Invalid("give after or since, not both".into()));
        }
        // Paged by id: the next page starts after the last id of this one (the same `after`
        // when the page is empty), so an export never repeats or skips an attempt.
        let list = service.attempts_after(&app.id, after.max(0), limit).await?;
        let next = list.last().map_or(after.max(0), |a| a.id);
        return Ok(Json(json!({"attempts": list, "next": next})));
    }
    let list = match q.since.as_deref() {
        Some(since) => {
            service
                .attempts_since(&app.id, parse_since(since)?, limit)
                .await?
        }
        None => service.recent_attempts(&app.id, limit).await?,
    };
    Ok(Json(json!({"attempts": list})))
}

fn parse_since(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(ms) = s.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| Error::Invalid("since is out of range".into()));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Error::Invalid(
                "since must be RFC 3339 (2026-11-27T10:00:00Z) or Unix milliseconds".into(),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairRequest {
    code: String,
    domain: String,
    #[serde(rename = "userAccountId")]
    user_account_id: String,
}

/// Pairs one of the company's accounts with the person who created the pairing code in the
/// portal.
pub async fn pair(
    State(service): State<Service>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let (company, by) = company(&service, &headers, peer).await?;
    let bytes = read_body(&headers, body, 16 * 1024).await?;
    let req: PairRequest = json_object(&bytes)?;
    let account = valid_account(&req.user_account_id)?;
    let app = service.company_application(&company, &req.domain).await?;
    // An account already paired with someone else is refused before the code is used up.
    let key = app.account_names.key(account);
    if let Some(existing) = service.find_account(&app.id, &key).await? {
        if existing.person_id.is_some() {
            return Err(Error::Conflict(format!(
                "a pairing for account {account:?}"
            )));
        }
    }
    let code = normalize_code(&req.code);
    let person_id = service
        .take_pairing_code(&token_hash(&code), service.now())
        .await?
        .ok_or_else(|| Error::NotFound("pairing code (it may have expired or been used)".into()))?;
    let (acc, created) = service
        .enroll_key(&by, &app.id, account, Some(&person_id), service.now())
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
