//! A company admin's enrolled accounts: the list and search, enrolling, locking and unlocking,
//! and importing a CSV.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadbolt_store::{Application, ImportRow};
use serde::Deserialize;
use std::sync::Arc;

use super::audit::{by_admin, tell_person_of_admin_change};
use super::company::CompanyAdmin;
use super::company::{company_app, PAGE_LEN};
use super::csrf::{CsrfForm, CsrfUpload};
use super::error::PageError;
use super::links::{send_link, LinkPurpose};
use super::notice::{done, Notice};
use super::pages::{enc, opt, refusal, render, Layout, Pager};
use super::person::{explain_for_admin, unlock_window};
use super::session::{ClientAddr, Me};
use super::{Portal, PortalState};
use crate::service::{valid_account, valid_email, By};

pub struct EnrolledRow {
    pub account: String,
    pub email: String,
    pub state: String,
    pub locked: bool,
    pub why: String,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    l: Layout,
    csrf: String,
    cid: String,
    app: Application,
    q: String,
    rows: Vec<EnrolledRow>,
    pager: Pager,
    /// After an import: how many rows were new and how many were enrolled already.
    imported: Option<(u32, u32)>,
    f: AccountForms,
}

/// The page's forms as sent, when one was refused: it shows the message and keeps its input
/// (a file input cannot be filled again: the import form names the file's problem).
#[derive(Default)]
struct AccountForms {
    enroll: EnrollForm,
    enroll_error: Option<String>,
    import_error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
    /// After an import (`done=imported`): its counts, numbers only.
    #[serde(default)]
    new: Option<u32>,
    #[serde(default)]
    existing: Option<u32>,
}

async fn accounts_page_with(
    s: &PortalState,
    me: &Me,
    (cid, aid): (&str, &str),
    search: &Search,
    status: StatusCode,
    f: AccountForms,
) -> Result<Response, PageError> {
    let app = company_app(s, cid, aid).await?;
    let q = search.q.trim();
    let filter = Some(q).filter(|q| !q.is_empty());
    let page = search.page.unwrap_or(1).max(1);
    let total = s.service.account_count(&app.id, filter).await?;
    let accounts = s
        .service
        .accounts_page(&app.id, filter, Pager::offset(page, PAGE_LEN), PAGE_LEN)
        .await?;
    let mut rows = Vec::with_capacity(accounts.len());
    for acc in &accounts {
        let d = s.service.status(&app, &acc.account).await?;
        rows.push(EnrolledRow {
            why: explain_for_admin(d.reason, acc),
            locked: d.locked,
            state: acc.state.as_str().into(),
            email: opt(&acc.person_email),
            account: acc.account.clone(),
        });
    }
    let base = format!("/companies/{cid}/apps/{aid}/accounts?q={}", enc(q));
    let pager = Pager::new(page, PAGE_LEN, total, rows.len(), |n| {
        format!("{base}&page={n}")
    });
    let imported = (me.notice == Some(Notice::Imported))
        .then(|| search.new.zip(search.existing))
        .flatten();
    let mut l = Layout::signed_in(&app.name, me, &format!("/companies/{cid}"));
    if imported.is_some() {
        // The page says it with the counts instead.
        l.notice = None;
    }
    let page = AccountsPage {
        l,
        csrf: me.csrf.clone(),
        cid: cid.to_string(),
        app,
        q: q.to_string(),
        rows,
        pager,
        imported,
        f,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn accounts_page(
    State(s): State<PortalState>,
    CompanyAdmin { me, cid }: CompanyAdmin,
    Path((_, aid)): Path<(String, String)>,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    accounts_page_with(
        &s,
        &me,
        (&cid, &aid),
        &search,
        StatusCode::OK,
        AccountForms::default(),
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct EnrollForm {
    #[serde(default)]
    account: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    invite: Option<String>,
}

/// Enrols an account, optionally for a person (by email), and invites that person to sign up
/// when they have no password yet. A refused one shows the form again with its input.
pub async fn enroll(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path((_, aid)): Path<(String, String)>,
    addr: ClientAddr,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<EnrollForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    match enroll_one(&s, &portal, (&cid, &aid), &f, &by_admin(&me, &addr)).await {
        Ok(notice) => Ok(done(
            &format!("/companies/{cid}/apps/{aid}/accounts"),
            notice,
        )),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let forms = AccountForms {
                enroll: f,
                enroll_error: Some(message),
                ..AccountForms::default()
            };
            accounts_page_with(&s, &me, (&cid, &aid), &Search::default(), status, forms).await
        }
    }
}

async fn enroll_one(
    s: &PortalState,
    portal: &Portal,
    (cid, aid): (&str, &str),
    f: &EnrollForm,
    by: &By,
) -> Result<Notice, PageError> {
    let app = company_app(s, cid, aid).await?;
    let account = valid_account(f.account.trim())?;
    let email = match f.email.trim() {
        "" => None,
        e => Some(valid_email(e)?),
    };
    let row = ImportRow {
        app_id: app.id.clone(),
        account: account.to_string(),
        email: email.clone(),
        first_name: None,
        last_name: None,
        phone: None,
    };
    let created = s.service.import(by, &[row]).await?;
    let mut notice = if created.first().copied().unwrap_or(false) {
        Notice::Enrolled
    } else {
        Notice::AlreadyEnrolled
    };
    if let (Some(email), Some(_)) = (&email, &f.invite) {
        let has_password = s
            .service
            .password_hash(email)
            .await?
            .is_some_and(|(_, h)| h.is_some());
        if !has_password {
            send_link(s, portal, LinkPurpose::SignUp, email, None).await?;
            notice = Notice::EnrolledInvited;
        }
    }
    Ok(notice)
}

#[derive(Deserialize)]
pub struct AccountForm {
    account: String,
    #[serde(default)]
    minutes: String,
}

pub async fn lock(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path((_, aid)): Path<(String, String)>,
    addr: ClientAddr,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<AccountForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    s.service
        .lock(&by_admin(&me, &addr), &app.id, &f.account)
        .await?;
    tell_person_of_admin_change(&s, &portal, &app, &f.account, &me, "locked").await;
    Ok(done(
        &format!("/companies/{cid}/apps/{aid}/accounts"),
        Notice::Locked,
    ))
}

pub async fn unlock(
    State(s): State<PortalState>,
    State(portal): State<Arc<Portal>>,
    Path((_, aid)): Path<(String, String)>,
    addr: ClientAddr,
    CsrfForm(CompanyAdmin { me, cid }, f): CsrfForm<AccountForm, CompanyAdmin>,
) -> Result<Response, PageError> {
    let app = company_app(&s, &cid, &aid).await?;
    let window = unlock_window(&f.minutes)?;
    s.service
        .unlock(&by_admin(&me, &addr), &app.id, &f.account, window)
        .await?;
    tell_person_of_admin_change(&s, &portal, &app, &f.account, &me, "unlocked").await;
    Ok(done(
        &format!("/companies/{cid}/apps/{aid}/accounts"),
        Notice::Unlocked,
    ))
}

/// A CSV upload with the columns of `importUsers`: `userAccountId,email,first_name,last_name,phone`
/// (a header row naming them may come first, in any order). All rows or none are imported; a
/// refused file is named in the import form.
pub async fn import_csv(
    State(s): State<PortalState>,
    Path((_, aid)): Path<(String, String)>,
    addr: ClientAddr,
    CsrfUpload {
        who: CompanyAdmin { me, cid },
        text: csv,
    }: CsrfUpload<CompanyAdmin>,
) -> Result<Response, PageError> {
    let imported = async {
        let app = company_app(&s, &cid, &aid).await?;
        let rows = parse_import(&csv, &app.id).map_err(PageError::bad)?;
        if rows.is_empty() {
            return Err(PageError::bad("The file has no rows."));
        }
        let created = s.service.import(&by_admin(&me, &addr), &rows).await?;
        let new = created.iter().filter(|c| **c).count();
        Ok((new, rows.len() - new))
    }
    .await;
    match imported {
        Ok((new, existing)) => Ok(done(
            &format!("/companies/{cid}/apps/{aid}/accounts?new={new}&existing={existing}"),
            Notice::Imported,
        )),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let forms = AccountForms {
                import_error: Some(format!("Nothing was imported: {message}")),
                ..AccountForms::default()
            };
            accounts_page_with(&s, &me, (&cid, &aid), &Search::default(), status, forms).await
        }
    }
}

/// Splits one CSV line, with `"quoted, fields"` and `""` for a quote.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

fn parse_import(csv: &str, app_id: &str) -> Result<Vec<ImportRow>, String> {
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut cols = ["userAccountId", "email", "first_name", "last_name", "phone"]
        .map(String::from)
        .to_vec();
    if let Some((_, first)) = lines.peek() {
        let names = csv_fields(first);
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("userAccountId") || n.eq_ignore_ascii_case("account"))
        {
            cols = names;
            lines.next();
        }
    }
    let idx = |name: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(name));
    let account_col = idx("userAccountId")
        .or_else(|| idx("account"))
        .ok_or("no userAccountId column")?;
    let mut rows = Vec::new();
    for (n, line) in lines {
        let f = csv_fields(line);
        let get = |name: &str| {
            idx(name)
                .and_then(|i| f.get(i))
                .filter(|v| !v.is_empty())
                .map(|v| deadbolt_core::body::bounded(v, 200))
        };
        let account = f.get(account_col).cloned().unwrap_or_default();
        valid_account(&account).map_err(|e| format!("line {}: {e}", n + 1))?;
        let email = match get("email") {
            Some(e) => Some(valid_email(&e).map_err(|e| format!("line {}: {e}", n + 1))?),
            None => None,
        };
        rows.push(ImportRow {
            app_id: app_id.to_string(),
            account,
            email,
            first_name: get("first_name"),
            last_name: get("last_name"),
            phone: get("phone"),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_reads_headers_quotes_and_refuses_bad_rows() {
        let rows = parse_import(
            "email,userAccountId,first_name\n\"a@example.com\",alice,\"Ann, A\"\n\nb@example.com,bob,\n",
            "app",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].account, "alice");
        assert_eq!(rows[0].email.as_deref(), Some("a@example.com"));
        assert_eq!(rows[0].first_name.as_deref(), Some("Ann, A"));
        assert_eq!(rows[1].first_name, None);
        let plain = parse_import("carol,c@example.com\ndave", "app").unwrap();
        assert_eq!(plain[1].account, "dave");
        assert_eq!(plain[0].email.as_deref(), Some("c@example.com"));
        assert!(parse_import("x,not-an-email", "app").is_err());
        assert!(parse_import(",a@example.com", "app").is_err());
        assert_eq!(csv_fields(r#"a,"b ""q""",c"#), vec!["a", "b \"q\"", "c"]);
    }
}
