//! A company admin's attempts page: the filter, the rows and the live feed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use deadbolt_store::{Application, Attempt};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

use super::company::CompanyAdmin;
use super::company::{company_app, PAGE_LEN};
use super::error::PageError;
use super::live;
use super::pages::{fragment, opt, render, utc_time, Layout};
use super::{Portal, PortalState};

pub struct AttemptRow {
    pub id: i64,
    pub at: String,
    pub account: String,
    pub locked: bool,
    pub reason: String,
    pub ip: String,
    pub device: String,
    pub location: String,
    pub integration: String,
}

#[derive(Template)]
#[template(path = "attempt_rows.html")]
struct AttemptRows {
    attempts: Vec<AttemptRow>,
}

fn attempt_rows(attempts: &[Attempt]) -> Result<String, PageError> {
    fragment(&AttemptRows {
        attempts: attempts
            .iter()
            .map(|a| AttemptRow {
                id: a.id,
                at: utc_time(a.at),
                account: a.account.clone(),
                locked: a.locked,
                reason: a.reason.replace('_', " "),
                ip: opt(&a.ip),
                device: opt(&a.device),
                location: opt(&a.location),
                integration: opt(&a.integration_type),
            })
            .collect(),
    })
}

#[derive(Deserialize, Default, Clone)]
pub struct AttemptQuery {
    #[serde(default)]
    account: String,
    /// `blocked`, `allowed` or empty.
    #[serde(default)]
    decision: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

fn parse_utc(v: &str) -> Result<Option<DateTime<Utc>>, PageError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| Some(t.and_utc()))
        .map_err(|_| PageError::bad(format!("invalid time {v:?}: write YYYY-MM-DDTHH:MM")))
}

/// The attempts a page or a live stream shows.
struct Filter {
    account: Option<String>,
    locked: Option<bool>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after_id: i64,
}

impl Filter {
    async fn read(
        &self,
        s: &PortalState,
        app_id: &str,
        limit: i64,
    ) -> Result<Vec<Attempt>, PageError> {
        Ok(s.service
            .filtered_attempts(
                app_id,
                self.account.as_deref(),
                self.locked,
                (self.from, self.until),
                self.after_id,
                limit,
            )
            .await?)
    }
}

impl AttemptQuery {
    fn filter(&self) -> Result<Filter, PageError> {
        Ok(Filter {
            account: Some(self.account.trim().to_string()).filter(|a| !a.is_empty()),
            locked: match self.decision.as_str() {
                "blocked" => Some(true),
                "allowed" => Some(false),
                _ => None,
            },
            from: parse_utc(&self.from)?,
            until: parse_utc(&self.until)?,
            after_id: 0,
        })
    }

    fn query_string(&self) -> String {
        let enc = |v: &str| -> String {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect()
        };
        format!(
            "account={}&decision={}&from={}&until={}",
            enc(&self.account),
            enc(&self.decision),
            enc(&self.from),
            enc(&self.until)
        )
    }
}

#[derive(Template)]
#[template(path = "attempts.html")]
struct AttemptsPage {
    l: Layout,
    cid: String,
    app: Application,
    q: AttemptQuery,
    live_url: String,
    rows_html: String,
    empty: bool,
}

pub async fn attempts_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let attempts = q.filter()?.read(&s, &app.id, PAGE_LEN).await?;
    let page = AttemptsPage {
        l: Layout::signed_in(&app.name, &me, &format!("/companies/{cid}")),
        live_url: format!(
            "/companies/{cid}/apps/{aid}/attempts/events?{}",
            q.query_string()
        ),
        cid,
        rows_html: attempt_rows(&attempts)?,
        empty: attempts.is_empty(),
        app,
        q,
    };
    Ok(render(&page)?.into_response())
}

/// New attempts matching the page's filter, as they are recorded.
pub async fn attempt_events(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let mut filter = q.filter()?;
    filter.after_id = s
        .service
        .recent_attempts(&app.id, 1)
        .await?
        .first()
        .map_or(0, |a| a.id);
    let feed = AttemptFeed { app, filter };
    Ok(live::stream(s, portal, me.session_hash, feed))
}

/// An application's attempts page, live: new attempts that pass its filter.
struct AttemptFeed {
    app: Application,
    filter: Filter,
}

impl live::Feed for AttemptFeed {
    async fn poll(&mut self, s: &PortalState) -> Option<Event> {
        // Attempts past the filter's end never arrive; the stream stays quiet.
        match self.filter.read(s, &self.app.id, 100).await {
            Ok(new) if !new.is_empty() => {
                self.filter.after_id = new.first().map_or(self.filter.after_id, |a| a.id);
                if let Ok(html) = attempt_rows(&new) {
                    return Some(Event::default().event("attempts").data(html));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "live attempts: store read failed"),
        }
        None
    }
}
