//! The company admin's and the operator's pages as used every day: every form is
//! post/redirect/get (a refresh does nothing twice), a refused form keeps its input, lists come
//! in pages with counts, attempts export as CSV, invitations, admins, companies and
//! applications are managed, keys are told apart, and `deadbolt demo` hands out logins.

use crate::helpers::*;
use crate::logs::emailed_link;
use crate::portal::{Http, Page};
use crate::smtp::{smtp_receiver, Inbox};
use deadbolt::service::By;
use deadbolt_core::{Clock, Reason};
use deadbolt_store::{Application, AttemptBatch, NewAttempt};
use std::time::Duration;

const PASSWORD: &str = "an admin's long password";

/// A company with one application, its admin signed in (in `tz`), and the company's id.
async fn admin_of(t: &TestApp, issuer: &str, email: &str, tz: &str) -> (Http, Application) {
    let app = t.app(issuer).await;
    let admin = t
        .service
        .create_person(email, Some(PASSWORD), Some(tz))
        .await
        .unwrap();
    t.service
        .grant_role(&admin.id, "admin", &app.company_id, t.clock.now())
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(email, PASSWORD).await.status, 303);
    (http, app)
}

/// The operator, signed in.
async fn operator(t: &TestApp) -> Http {
    let op = t
        .service
        .create_person("op@example.test", Some(PASSWORD), None)
        .await
        .unwrap();
    t.service
        .grant_role(&op.id, "operator", "", t.clock.now())
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login("op@example.test", PASSWORD).await.status, 303);
    http
}

/// A server whose emails arrive in the returned inbox.
async fn with_mail() -> (TestApp, Inbox) {
    let (port, inbox) = smtp_receiver();
    let t = TestApp::spawn_with(|c| {
        c.portal.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.portal.mail.from = Some("Deadbolt <deadbolt@test.example>".into());
    })
    .await;
    (t, inbox)
}

fn emails_to(inbox: &Inbox, to: &str) -> usize {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r == to)
        .count()
}

/// Posts a form with a fresh token from `page`, then posts it again with the same token (a
/// refresh of the answer, or a second click): both answers.
async fn twice(http: &mut Http, page: &str, action: &str, fields: &[(&str, &str)]) -> (Page, Page) {
    let csrf = http.get(page).await.csrf();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend_from_slice(fields);
    let first = http.post(action, &form).await;
    let again = http.post(action, &form).await;
    (first, again)
}

/// Posts a form with a fresh token from `page`.
async fn send(http: &mut Http, page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = http.get(page).await.csrf();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend_from_slice(fields);
    http.post(action, &form).await
}

fn assert_again(p: &Page) {
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(
        p.header("location").contains("done=again"),
        "{:?}",
        p.headers
    );
}

/// The element with `id`, as text up to its end tag (enough to look inside one form).
fn element<'a>(body: &'a str, id: &str) -> &'a str {
    let i = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let start = body[..i].rfind('<').unwrap();
    let end = body[i..].find("</form>").map_or(body.len(), |e| i + e);
    &body[start..end]
}

fn count(body: &str, needle: &str) -> usize {
    body.matches(needle).count()
}

#[tokio::test]
async fn a_refresh_after_each_create_makes_nothing_twice() {
    let (t, inbox) = with_mail().await;
    let (mut http, app) = admin_of(&t, "prg.example.com", "admin@prg.test", "UTC").await;
    let cid = app.company_id.clone();
    let company = format!("/companies/{cid}");

    // An application: the answer leads to its page, saying so; the refresh does nothing.
    let (first, again) = twice(
        &mut http,
        &company,
        &format!("{company}/apps"),
        &[("issuer", "second.example.com"), ("name", "Second")],
    )
    .await;
    assert_eq!(first.status, 303, "{}", first.body);
    let location = first.header("location");
    assert!(location.ends_with("?done=created"), "{location}");
    assert!(http.get(&location).await.body.contains("id=\"notice\""));
    assert_again(&again);
    assert_eq!(t.service.applications(Some(&cid)).await.unwrap().len(), 2);

    // A signing key: its secret is on the answer to the form, once; the refresh adds none.
    let app_page = format!("{company}/apps/{}", app.id);
    let (first, again) = twice(
        &mut http,
        &app_page,
        &format!("{app_page}/keys"),
        &[("label", "production pool")],
    )
    .await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("id=\"new-secret\""));
    assert!(!first.header("location").contains("secret"));
    assert_again(&again);
    assert_eq!(t.service.signing_keys(&app.id).await.unwrap().len(), 1);

    // An SDK key, the same way.
    let (first, again) = twice(&mut http, &company, &format!("{company}/sdk-keys"), &[]).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("id=\"new-secret\""));
    assert_again(&again);
    assert_eq!(t.service.sdk_keys(&cid).await.unwrap().len(), 1);

    // An invitation: one email, one pending invitation.
    let (first, again) = twice(
        &mut http,
        &company,
        &format!("{company}/admins"),
        &[("email", "second-admin@prg.test")],
    )
    .await;
    assert_eq!(first.status, 303);
    assert!(first.header("location").ends_with("done=invitation-sent"));
    assert_again(&again);
    emailed_link(&inbox, "second-admin@prg.test", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(emails_to(&inbox, "second-admin@prg.test"), 1);
    assert_eq!(t.service.pending_invitations(&cid).await.unwrap().len(), 1);

    // An enrolment, a revocation, a lock.
    let accounts = format!("{app_page}/accounts");
    let (first, again) = twice(
        &mut http,
        &accounts,
        &format!("{accounts}/enroll"),
        &[("account", "carol")],
    )
    .await;
    assert!(first.header("location").ends_with("done=enrolled"));
    assert_again(&again);
    let key = &t.service.signing_keys(&app.id).await.unwrap()[0];
    let (first, again) = twice(
        &mut http,
        &app_page,
        &format!("{app_page}/keys/{}/revoke", key.id),
        &[],
    )
    .await;
    assert!(first.header("location").ends_with("done=revoked"));
    assert_again(&again);
    let (first, again) = twice(
        &mut http,
        &accounts,
        &format!("{accounts}/lock"),
        &[("account", "carol")],
    )
    .await;
    assert!(first.header("location").ends_with("done=locked"));
    assert_again(&again);

    // The operator's company: one company, one invitation.
    let mut op = operator(&t).await;
    let before = t.service.company_count().await.unwrap();
    let (first, again) = twice(
        &mut op,
        "/operator",
        "/operator/companies",
        &[("name", "Once Ltd"), ("admin_email", "once@prg.test")],
    )
    .await;
    assert_eq!(first.status, 303);
    assert_again(&again);
    assert_eq!(t.service.company_count().await.unwrap(), before + 1);
}

#[tokio::test]
async fn a_refused_form_says_why_in_the_form_and_keeps_its_input() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "taken.example.com", "admin@keep.test", "UTC").await;
    let company = format!("/companies/{}", app.company_id);

    // A taken issuer: 409, the message in the application form, the input still there.
    let page = send(
        &mut http,
        &company,
        &format!("{company}/apps"),
        &[
            ("issuer", "taken.example.com"),
            ("name", "My second try"),
            ("unenrolled", "deny"),
            ("default_state", "locked"),
        ],
    )
    .await;
    assert_eq!(page.status, 409, "{}", page.body);
    let form = element(&page.body, "app-form");
    assert!(form.contains("id=\"app-error\""), "{form}");
    assert!(form.contains("already exists"), "{form}");
    assert!(form.contains("value=\"taken.example.com\""), "{form}");
    assert!(form.contains("value=\"My second try\""), "{form}");
    assert!(form.contains("value=\"deny\" selected"), "{form}");
    assert!(form.contains("value=\"locked\" selected"), "{form}");
    // The page is the whole company page, with a form token that works.
    assert!(page.body.contains("id=\"apps\""));
    let csrf = page.csrf();
    let fixed = http
        .post(
            &format!("{company}/apps"),
            &[("csrf", &csrf), ("issuer", "fixed.example.com")],
        )
        .await;
    assert_eq!(fixed.status, 303);

    // A bad CSV file: 400, the message in the import form, nothing imported.
    let accounts = format!("{company}/apps/{}/accounts", app.id);
    let csrf = http.get(&accounts).await.csrf();
    let boundary = "deadbolt-admin-pages";
    let upload = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"users.csv\"\r\n\
         content-type: text/csv\r\n\r\nuserAccountId,email\nann,ann@example.com\nbob,not-an-email\n\r\n\
         --{boundary}--\r\n"
    );
    let cookie = http
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/companies/{}/apps/{}/import",
            t.url, app.company_id, app.id
        ))
        .header("cookie", cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    let form = element(&body, "import-form");
    assert!(form.contains("id=\"import-error\""), "{form}");
    assert!(form.contains("line 3"), "{form}");
    assert!(t
        .service
        .accounts(&app.id, None, 10)
        .await
        .unwrap()
        .is_empty());

    // An enrolment with a bad email: the account and the email are kept.
    let page = send(
        &mut http,
        &accounts,
        &format!("{accounts}/enroll"),
        &[("account", "dora"), ("email", "dora at example")],
    )
    .await;
    assert_eq!(page.status, 400);
    let form = element(&page.body, "enroll-form");
    assert!(form.contains("id=\"enroll-error\""));
    assert!(form.contains("value=\"dora\"") && form.contains("value=\"dora at example\""));

    // An invitation to a bad address.
    let page = send(
        &mut http,
        &company,
        &format!("{company}/admins"),
        &[("email", "nobody")],
    )
    .await;
    assert_eq!(page.status, 400);
    let form = element(&page.body, "invite-form");
    assert!(form.contains("id=\"invite-error\"") && form.contains("value=\"nobody\""));

    // The operator's company form.
    let mut op = operator(&t).await;
    let page = send(
        &mut op,
        "/operator",
        "/operator/companies",
        &[("name", "Kept Ltd"), ("admin_email", "not an email")],
    )
    .await;
    assert_eq!(page.status, 400);
    let form = element(&page.body, "company-form");
    assert!(form.contains("id=\"company-error\""));
    assert!(form.contains("value=\"Kept Ltd\"") && form.contains("value=\"not an email\""));
}

#[tokio::test]
async fn issuers_that_are_no_host_name_or_uri_are_refused() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "good.example.com", "admin@issuers.test", "UTC").await;
    let company = format!("/companies/{}", app.company_id);
    for bad in [
        "my app.example.com",
        "<script>alert(1)</script>",
        "app\".example.com",
        "app'.example.com",
        "app\t.example.com",
        "app\u{1}.example.com",
    ] {
        let page = send(
            &mut http,
            &company,
            &format!("{company}/apps"),
            &[("issuer", bad)],
        )
        .await;
        assert_eq!(page.status, 400, "{bad:?}: {}", page.body);
        assert!(
            element(&page.body, "app-form").contains("An issuer is a host name or URI"),
            "{bad:?}"
        );
    }
    assert_eq!(
        t.service
            .applications(Some(&app.company_id))
            .await
            .unwrap()
            .len(),
        1
    );
    // URIs and host names are fine.
    for good in ["https://login.example.com/", "login2.example.com:8443"] {
        let page = send(
            &mut http,
            &company,
            &format!("{company}/apps"),
            &[("issuer", good)],
        )
        .await;
        assert_eq!(page.status, 303, "{good}");
    }
}

/// Records `n` attempts on `app`, a second apart from t0, every third blocked; the account of
/// the first is one a spreadsheet would run.
async fn record(t: &TestApp, app: &Application, n: usize) {
    let attempts = (0..n)
        .map(|i| NewAttempt {
            at: t0() + chrono::Duration::seconds(i as i64),
            app_id: app.id.clone(),
            key_id: None,
            account: if i == 0 {
                "=HYPERLINK(\"http://evil.example\")".into()
            } else {
                format!("user{i:03}")
            },
            locked: i % 3 == 0,
            reason: if i % 3 == 0 {
                Reason::AccountLocked
            } else {
                Reason::AccountUnlocked
            },
            ip: Some("-1+1".into()),
            device: Some("@device".into()),
            location: None,
            integration_type: Some("cognito".into()),
            integration_data: None,
        })
        .collect();
    // In batches, as the writer would.
    let batch: Vec<NewAttempt> = attempts;
    for chunk in batch.chunks(50) {
        t.store
            .record_attempts(&AttemptBatch::new(chunk.to_vec()))
            .await
            .unwrap();
    }
}

fn attempt_ids(body: &str) -> Vec<i64> {
    body.match_indices("data-attempt=\"")
        .map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn attempts_come_in_pages_with_counts_and_export_as_csv() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "many.example.com", "admin@many.test", "UTC").await;
    record(&t, &app, 224).await;
    let page_url = format!("/companies/{}/apps/{}/attempts", app.company_id, app.id);

    let first = http.get(&page_url).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("1–200 of 224"), "{}", first.body);
    let ids = attempt_ids(&first.body);
    assert_eq!(ids.len(), 200);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let next = first.body.split("id=\"attempts-next\"").next().unwrap();
    let href = next[next.rfind("href=\"").unwrap() + 6..]
        .split('"')
        .next()
        .unwrap();
    let href = href.replace("&#38;", "&").replace("&amp;", "&");
    let second = http.get(&href).await;
    assert_eq!(second.status, 200);
    assert!(second.body.contains("201–224 of 224"), "{}", second.body);
    let rest = attempt_ids(&second.body);
    assert_eq!(rest.len(), 24);
    assert!(rest.iter().all(|id| !ids.contains(id)));
    assert!(!second.body.contains("id=\"attempts-next\""));
    assert!(second.body.contains("id=\"attempts-prev\""));
    // The second page is not live: new attempts belong on the first.
    assert!(!second.body.contains("data-live"));
    assert!(first.body.contains("data-live"));
    assert!(first.body.contains("aria-live=\"polite\""));

    // Counts follow the filter: every third of 224 is blocked (0, 3, …, 222): 75.
    let blocked = http.get(&format!("{page_url}?decision=blocked")).await;
    assert!(blocked.body.contains("1–75 of 75"), "{}", blocked.body);
    assert_eq!(attempt_ids(&blocked.body).len(), 75);

    // The CSV file: a header, every attempt, formulas defused.
    let csv = http.get(&format!("{page_url}.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(csv.header("content-disposition").contains("attachment"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "id,time_utc,account,decision,reason,ip,device,location,integration"
    );
    assert_eq!(lines.len(), 225);
    let oldest = lines.last().unwrap();
    assert!(
        oldest.contains("\"'=HYPERLINK(\"\"http://evil.example\"\")\""),
        "{oldest}"
    );
    assert!(oldest.contains(",'-1+1,'@device,"), "{oldest}");
    assert!(oldest.contains("2026-11-27T12:00:00.000Z"), "{oldest}");
    assert!(!csv.body.contains(",=") && !csv.body.contains(",@"));
    let blocked_csv = http.get(&format!("{page_url}.csv?decision=blocked")).await;
    assert_eq!(blocked_csv.body.lines().count(), 76);
}

#[tokio::test]
async fn accounts_and_companies_come_in_pages_with_counts() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "people.example.com", "admin@people.test", "UTC").await;
    let rows: Vec<_> = (0..205)
        .map(|i| deadbolt_store::ImportRow {
            app_id: app.id.clone(),
            account: format!("acct{i:03}"),
            email: None,
            first_name: None,
            last_name: None,
            phone: None,
        })
        .collect();
    t.service.import(&By::CLI, &rows).await.unwrap();
    let url = format!("/companies/{}/apps/{}/accounts", app.company_id, app.id);
    let first = http.get(&url).await;
    assert!(first.body.contains("1–200 of 205"), "{}", first.body);
    assert_eq!(count(&first.body, "data-account=\""), 200);
    let second = http.get(&format!("{url}?q=&page=2")).await;
    assert!(second.body.contains("201–205 of 205"), "{}", second.body);
    assert_eq!(count(&second.body, "data-account=\""), 5);
    assert!(second.body.contains("data-account=\"acct204\""));
    let found = http.get(&format!("{url}?q=acct20")).await;
    assert!(found.body.contains("1–5 of 5"), "{}", found.body);

    let mut op = operator(&t).await;
    for i in 0..100 {
        t.service
            .create_company(&format!("Company {i:03}"))
            .await
            .unwrap();
    }
    let first = op.get("/operator").await;
    assert!(first.body.contains("1–100 of 101"), "{}", first.body);
    let second = op.get("/operator?page=2").await;
    assert!(second.body.contains("101–101 of 101"), "{}", second.body);
    assert!(second.body.contains("Company 099"));
}

#[tokio::test]
async fn pending_invitations_are_listed_sent_again_and_cancelled() {
    let (t, inbox) = with_mail().await;
    let (mut http, app) = admin_of(&t, "inv.example.com", "admin@inv.test", "UTC").await;
    let company = format!("/companies/{}", app.company_id);
    let to = "newcomer@inv.test";
    send(
        &mut http,
        &company,
        &format!("{company}/admins"),
        &[("email", to)],
    )
    .await;
    let first_link = emailed_link(&inbox, to, 1).await;
    let page = http.get(&company).await;
    assert!(
        page.body.contains(&format!("<tr data-email=\"{to}\">")),
        "{}",
        page.body
    );

    // Sent again: a new link; the old one no longer works.
    let again = send(
        &mut http,
        &company,
        &format!("{company}/invitations/resend"),
        &[("email", to)],
    )
    .await;
    assert!(again.header("location").ends_with("done=invitation-sent"));
    let second_link = emailed_link(&inbox, to, 2).await;
    assert_ne!(first_link, second_link);
    let mut stranger = Http::new(&t.url);
    assert_eq!(stranger.get(&first_link).await.status, 404);
    assert_eq!(stranger.get(&second_link).await.status, 200);
    assert_eq!(count(&http.get(&company).await.body, "data-email="), 1);

    // Cancelled: the list is empty and the link is dead.
    let cancelled = send(
        &mut http,
        &company,
        &format!("{company}/invitations/cancel"),
        &[("email", to)],
    )
    .await;
    assert!(cancelled
        .header("location")
        .ends_with("done=invitation-cancelled"));
    assert!(!http.get(&company).await.body.contains("data-email="));
    let dead = stranger.get(&second_link).await;
    assert_eq!(dead.status, 404);
    assert!(dead.body.contains("expired or was already used"));
    // Cancelling what is not pending is a missing page.
    let none = send(
        &mut http,
        &company,
        &format!("{company}/invitations/cancel"),
        &[("email", to)],
    )
    .await;
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn an_admin_is_removed_after_a_confirmation_but_never_the_last() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "rm.example.com", "first@rm.test", "UTC").await;
    let cid = app.company_id.clone();
    let company = format!("/companies/{cid}");
    // Alone, there is no removal to offer, and the store refuses it.
    assert!(!http.get(&company).await.body.contains("/admins/remove"));
    let refused = send(
        &mut http,
        &company,
        &format!("{company}/admins/remove"),
        &[("email", "first@rm.test")],
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("at least one admin"));
    assert_eq!(t.service.company_admins(&cid).await.unwrap().len(), 1);

    let second = t
        .service
        .create_person("second@rm.test", Some(PASSWORD), None)
        .await
        .unwrap();
    t.service
        .grant_role(&second.id, "admin", &cid, t.clock.now())
        .await
        .unwrap();
    // The confirmation names the admin, and says so when it is oneself.
    let confirm = http
        .get(&format!("{company}/admins/remove?email=second%40rm.test"))
        .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Remove second@rm.test?"));
    assert!(confirm.body.contains("id=\"confirm-form\""));
    let mine = http
        .get(&format!("{company}/admins/remove?email=first%40rm.test"))
        .await;
    assert!(mine.body.contains("You are about to remove yourself"));
    assert_eq!(
        http.get(&format!("{company}/admins/remove?email=nobody%40rm.test"))
            .await
            .status,
        404
    );
    let removed = send(
        &mut http,
        &format!("{company}/admins/remove?email=second%40rm.test"),
        &format!("{company}/admins/remove"),
        &[("email", "second@rm.test")],
    )
    .await;
    assert!(removed.header("location").ends_with("done=admin-removed"));
    assert_eq!(
        t.service.company_admins(&cid).await.unwrap(),
        vec!["first@rm.test".to_string()]
    );
    // The removed admin no longer reaches the company.
    let mut gone = Http::new(&t.url);
    gone.login("second@rm.test", PASSWORD).await;
    assert_eq!(gone.get(&company).await.status, 404);
}

#[tokio::test]
async fn the_operator_renames_adds_an_admin_to_and_deletes_a_company() {
    let (t, inbox) = with_mail().await;
    let app = t.app("gone.example.com").await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "zed", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "zed").await.unwrap();
    assert!(t.locked("gone.example.com", &key, "zed").await);
    let cid = app.company_id.clone();
    let mut op = operator(&t).await;
    let page_url = format!("/operator/companies/{cid}");
    assert!(op.get("/operator").await.body.contains(&page_url));
    let page = op.get(&page_url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("gone.example.com"));

    let renamed = send(
        &mut op,
        &page_url,
        &format!("{page_url}/rename"),
        &[("name", "Renamed Ltd")],
    )
    .await;
    assert!(renamed.header("location").ends_with("done=saved"));
    assert_eq!(t.service.company(&cid).await.unwrap().name, "Renamed Ltd");
    let refused = send(
        &mut op,
        &page_url,
        &format!("{page_url}/rename"),
        &[("name", "  ")],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(element(&refused.body, "rename-form").contains("id=\"rename-error\""));

    let invited = send(
        &mut op,
        &page_url,
        &format!("{page_url}/admins"),
        &[("email", "late@gone.test")],
    )
    .await;
    assert!(invited.header("location").ends_with("done=invitation-sent"));
    emailed_link(&inbox, "late@gone.test", 1).await;
    assert!(op.get(&page_url).await.body.contains("late@gone.test"));

    // Deleting asks first, naming the company; a wrong name deletes nothing.
    let confirm = op.get(&format!("{page_url}/delete")).await;
    assert!(confirm.body.contains("Delete Renamed Ltd?"));
    assert!(confirm.body.contains("gone.example.com"));
    let wrong = send(
        &mut op,
        &format!("{page_url}/delete"),
        &format!("{page_url}/delete"),
        &[("confirm", "Renamed")],
    )
    .await;
    assert_eq!(wrong.status, 400);
    assert!(t.service.find_company(&cid).await.unwrap().is_some());
    let deleted = send(
        &mut op,
        &format!("{page_url}/delete"),
        &format!("{page_url}/delete"),
        &[("confirm", "Renamed Ltd")],
    )
    .await;
    assert_eq!(deleted.status, 303);
    assert!(deleted.header("location").ends_with("done=deleted"));
    assert!(t.service.find_company(&cid).await.unwrap().is_none());
    assert!(t.service.applications(Some(&cid)).await.unwrap().is_empty());
    assert!(t
        .service
        .pending_invitations(&cid)
        .await
        .unwrap()
        .is_empty());
    // Its hook's checks are refused: the issuer is unknown now.
    let token = t.token("gone.example.com", &key, "zed");
    assert_eq!(t.check_raw(Some(&token), "{}").await.0, 401);
    assert_eq!(op.get(&page_url).await.status, 404);
}

#[tokio::test]
async fn an_application_is_deleted_after_a_confirmation_naming_its_issuer() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "old.example.com", "admin@old.test", "UTC").await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "amy", None)
        .await
        .unwrap();
    assert!(!t.locked("old.example.com", &key, "amy").await);
    let app_url = format!("/companies/{}/apps/{}", app.company_id, app.id);
    let confirm = http.get(&format!("{app_url}/delete")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Delete old.example.com?"));
    assert!(confirm.body.contains("its 1 enrolled account "));
    assert!(confirm.body.contains("0 recorded attempts"));
    assert!(confirm.body.contains("unknown issuer"));
    let deleted = send(
        &mut http,
        &format!("{app_url}/delete"),
        &format!("{app_url}/delete"),
        &[],
    )
    .await;
    assert_eq!(deleted.status, 303);
    assert!(deleted.header("location").ends_with("done=deleted"));
    assert!(t.service.find_application(&app.id).await.unwrap().is_none());
    assert!(t
        .service
        .accounts(&app.id, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(http.get(&app_url).await.status, 404);
    let token = t.token("old.example.com", &key, "amy");
    assert_eq!(t.check_raw(Some(&token), "{}").await.0, 401);
    // The issuer is free again.
    let again = send(
        &mut http,
        &format!("/companies/{}", app.company_id),
        &format!("/companies/{}/apps", app.company_id),
        &[("issuer", "old.example.com")],
    )
    .await;
    assert_eq!(again.status, 303);
}

#[tokio::test]
async fn keys_have_labels_last_use_and_ids_that_tell_them_apart() {
    let t = TestApp::spawn().await;
    let (mut http, app) = admin_of(&t, "keys.example.com", "admin@keys.test", "Europe/Paris").await;
    let app_url = format!("/companies/{}/apps/{}", app.company_id, app.id);
    let made = send(
        &mut http,
        &app_url,
        &format!("{app_url}/keys"),
        &[("label", "production pool")],
    )
    .await;
    assert_eq!(made.status, 200);
    let i = made.body.find("id=\"new-secret\">").unwrap() + "id=\"new-secret\">".len();
    let secret = made.body[i..].split('<').next().unwrap().to_string();
    let page = http.get(&app_url).await;
    assert!(page
        .body
        .contains("<td class=\"label\">production pool</td>"));
    assert!(page.body.contains("<td class=\"last-used\">never</td>"));
    // Times are the admin's (Paris is UTC+1 in November), UTC in the title.
    assert!(page.body.contains("2026-11-27 13:00 CET"), "{}", page.body);
    assert!(page.body.contains("title=\"2026-11-27 12:00:00 UTC\""));
    // A label that is too long is refused in the form, kept.
    let long = "x".repeat(101);
    let refused = send(
        &mut http,
        &app_url,
        &format!("{app_url}/keys"),
        &[("label", &long)],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(element(&refused.body, "key-form").contains(&format!("value=\"{long}\"")));

    // A check signed with it: the writer notes the key's use, and the page shows when.
    assert!(!t.locked("keys.example.com", &secret, "anyone").await);
    let mut shown = false;
    for _ in 0..100 {
        let page = http.get(&app_url).await;
        if !page.body.contains("<td class=\"last-used\">never</td>") {
            shown = page.body.contains("<td class=\"last-used\"><time");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shown, "last use shown");

    // Two SDK keys made a moment apart: the parts shown differ.
    let company = format!("/companies/{}", app.company_id);
    for _ in 0..2 {
        send(&mut http, &company, &format!("{company}/sdk-keys"), &[]).await;
    }
    let page = http.get(&company).await;
    let shown: Vec<String> = page
        .body
        .match_indices("<code class=\"key-id\"")
        .map(|(i, _)| {
            let rest = &page.body[i..];
            let start = rest.find('>').unwrap() + 1;
            rest[start..rest.find("</code>").unwrap()].to_string()
        })
        .collect();
    assert_eq!(shown.len(), 2, "{}", page.body);
    assert_ne!(shown[0], shown[1]);
    let ids: Vec<String> = t
        .service
        .sdk_keys(&app.company_id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert!(shown
        .iter()
        .all(|s| ids.iter().any(|id| id.ends_with(&s[s.len() - 8..]))));
}

#[tokio::test]
async fn the_demo_prints_logins_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args(["--db", &db, "demo", "--listen", "127.0.0.1:0"])
        .env_remove("DEADBOLT_MASTER_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = started["url"].as_str().unwrap().to_string();
    let demo = &started["demo"];
    let admin = (
        demo["admin"]["email"].as_str().unwrap(),
        demo["admin"]["password"].as_str().unwrap(),
    );
    let person = (
        demo["person"]["email"].as_str().unwrap(),
        demo["person"]["password"].as_str().unwrap(),
    );

    let mut http = Http::new(&url);
    assert_eq!(http.login(admin.0, admin.1).await.status, 303);
    let me = http.get("/me").await;
    let i = me.body.find("href=\"/companies/").expect("a company link");
    let href = me.body[i + 6..].split('"').next().unwrap().to_string();
    let company = http.get(&href).await;
    assert_eq!(company.status, 200);
    assert!(company.body.contains("demo.deadbolt.local"));

    let mut http = Http::new(&url);
    assert_eq!(http.login(person.0, person.1).await.status, 303);
    let me = http.get("/me").await;
    assert!(
        me.body.contains("alice") && me.body.contains("bob"),
        "{}",
        me.body
    );

    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = child.wait();
    assert!(
        stderr.contains(admin.0) && stderr.contains(admin.1),
        "{stderr}"
    );
    assert!(stderr.contains(person.0) && stderr.contains(person.1));
}
