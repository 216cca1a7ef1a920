//! A company admin's attempts page: the filter, the rows and the live feed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use deadbolt_store::{Application, Attempt, AttemptFilter};
use futures_util::Stream;
use futures_util::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

use super::company::CompanyAdmin;
use super::company::{company_app, PAGE_LEN};
use super::error::PageError;
use super::live;
use super::pages::{enc, fragment, opt, render, when, Layout, Pager, When};
use super::{Portal, PortalState};

pub struct AttemptRow {
    pub id: i64,
    pub at: When,
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

fn attempt_rows(attempts: &[Attempt], tz: Tz) -> Result<String, PageError> {
    fragment(&AttemptRows {
        attempts: attempts
            .iter()
            .map(|a| AttemptRow {
                id: a.id,
                at: when(a.at, tz),
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
    /// Paging: the attempts recorded before this one (the last of the page before).
    #[serde(default)]
    before: Option<i64>,
    /// The page's number, for its "201–224 of 224" only.
    #[serde(default)]
    page: Option<i64>,
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
    of: AttemptFilter,
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
                self.of.account.as_deref(),
                self.of.locked,
                (self.of.from, self.of.until),
                self.after_id,
                limit,
            )
            .await?)
    }
}

impl AttemptQuery {
    fn filter(&self) -> Result<Filter, PageError> {
        Ok(Filter {
            of: AttemptFilter {
                account: Some(self.account.trim().to_string()).filter(|a| !a.is_empty()),
                locked: match self.decision.as_str() {
                    "blocked" => Some(true),
                    "allowed" => Some(false),
                    _ => None,
                },
                from: parse_utc(&self.from)?,
                until: parse_utc(&self.until)?,
            },
            after_id: 0,
        })
    }

    /// The filter's part of a URL's query (not the paging).
    fn query_string(&self) -> String {
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
    /// Only the first page is live: new attempts belong at its top.
    live_url: Option<String>,
    csv_url: String,
    rows_html: String,
    empty: bool,
    pager: Pager,
    first_page: String,
}

pub async fn attempts_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let filter = q.filter()?;
    let before = q.before.unwrap_or(0).max(0);
    let total = s.service.attempt_count_of(&app.id, &filter.of).await?;
    let attempts = s
        .service
        .attempts_page(&app.id, &filter.of, before, PAGE_LEN)
        .await?;
    let base = format!("/companies/{cid}/apps/{aid}/attempts?{}", q.query_string());
    let page = if before > 0 {
        q.page.unwrap_or(2).max(2)
    } else {
        1
    };
    let oldest = attempts.last().map(|a| a.id);
    let mut pager = Pager::new(page, PAGE_LEN, total, attempts.len(), |_| String::new());
    // Keyset paging: the next page starts after this page's oldest attempt; the page before is
    // found again from the top (attempts arrive at the top, so "previous" is the newest).
    pager.next = pager
        .next
        .and(oldest)
        .map(|id| format!("{base}&before={id}&page={}", page + 1));
    pager.prev = (page > 1).then(|| base.clone());
    let page = AttemptsPage {
        l: Layout::signed_in(&app.name, &me, &format!("/companies/{cid}")),
        live_url: (before == 0).then(|| {
            format!(
                "/companies/{cid}/apps/{aid}/attempts/events?{}",
                q.query_string()
            )
        }),
        csv_url: format!(
            "/companies/{cid}/apps/{aid}/attempts.csv?{}",
            q.query_string()
        ),
        first_page: base,
        cid,
        rows_html: attempt_rows(&attempts, me.person.time_zone)?,
        empty: attempts.is_empty(),
        pager,
        app,
        q,
    };
    Ok(render(&page)?.into_response())
}

/// Attempts read for the CSV file per store query.
const CSV_PAGE: i64 = 1000;

/// The attempts the page's filter finds, all of them, as a CSV file (UTC times, a header row),
/// streamed page by page so that a large export holds one page in memory. A value a
/// spreadsheet would run as a formula (starting with `= + - @`, a tab or a carriage return) is
/// prefixed with `'`: account names, devices and locations come from the sign-in's client.
pub async fn attempts_csv(
    State(s): State<PortalState>,
    CompanyAdmin { cid, .. }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let filter = q.filter()?.of;
    let header = "id,time_utc,account,decision,reason,ip,device,location,integration\r\n";
    // State: the next page starts before this id (0: the newest); None when done.
    let pages = futures_util::stream::unfold(Some(0i64), move |before| {
        let (s, app_id, filter) = (s.clone(), app.id.clone(), filter.clone());
        async move {
            let before = before?;
            let chunk = match s
                .service
                .attempts_page(&app_id, &filter, before, CSV_PAGE)
                .await
            {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!(error = ?e, "attempts export: store read failed");
                    // The file ends short rather than pretending to be whole: a broken stream.
                    return Some((Err(std::io::Error::other("store read failed")), None));
                }
            };
            if chunk.is_empty() {
                return None;
            }
            let next = (chunk.len() as i64 == CSV_PAGE).then(|| chunk.last().map_or(0, |a| a.id));
            let text: String = chunk.iter().map(csv_row).collect();
            Some((Ok::<_, std::io::Error>(text), next))
        }
    });
    let body = futures_util::stream::once(async move { Ok(header.to_string()) }).chain(pages);
    let name = format!(
        "attempts-{}.csv",
        app.issuer
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            })
            .collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

fn csv_row(a: &Attempt) -> String {
    let fields = [
        a.id.to_string(),
        a.at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        a.account.clone(),
        if a.locked { "blocked" } else { "allowed" }.to_string(),
        a.reason.clone(),
        opt(&a.ip),
        opt(&a.device),
        opt(&a.location),
        opt(&a.integration_type),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// One CSV field: defused if a spreadsheet would run it, quoted if it needs to be.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
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
    let feed = AttemptFeed {
        app,
        filter,
        tz: me.person.time_zone,
    };
    Ok(live::stream(s, portal, me.session_hash, feed))
}

/// An application's attempts page, live: new attempts that pass its filter.
struct AttemptFeed {
    app: Application,
    filter: Filter,
    /// The admin's, for the times on the rows.
    tz: Tz,
}

impl live::Feed for AttemptFeed {
    async fn poll(&mut self, s: &PortalState) -> Option<Event> {
        // Attempts past the filter's end never arrive; the stream stays quiet.
        match self.filter.read(s, &self.app.id, 100).await {
            Ok(new) if !new.is_empty() => {
                self.filter.after_id = new.first().map_or(self.filter.after_id, |a| a.id);
                if let Ok(html) = attempt_rows(&new, self.tz) {
                    return Some(Event::default().event("attempts").data(html));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "live attempts: store read failed"),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_defused_and_quoted() {
        assert_eq!(csv_field("alice"), "alice");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
    }
}
