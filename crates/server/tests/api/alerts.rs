//! Alerts: a blocked sign-in to a person's account is emailed to them (what, where from, why,
//! and two one-time links), batched per account, switchable per account, and never lost while
//! the mail server is down. The links: "this was me" leads to the account's unlock choices
//! (until it expires, however often it is followed),
//! "this wasn't me" to a confirmation that locks everything and tells the company.
//!
//! The server's clock is the tests' fake clock: an email waiting for the end of a window or
//! for its next try is sent when the test moves the clock, not when real time passes.

use crate::helpers::*;
use crate::portal::Http;
use crate::smtp::SmtpReceiver;
use chrono::Duration;
use deadbolt::service::By;
use deadbolt_store::Application as App;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Instant;

const PASSWORD: &str = "a long enough password";
const PERSON: &str = "alex@example.com";
const ADMIN: &str = "admin@alerts.example";

/// A server whose emails go to a test receiver, on SQLite or PostgreSQL; its worker polls
/// often, so that the tests wait little.
async fn spawn(
    pg: bool,
    adjust: impl FnOnce(&mut deadbolt::Config),
) -> Option<(TestApp, SmtpReceiver)> {
    let smtp = SmtpReceiver::start();
    let port = smtp.port;
    let set = move |c: &mut deadbolt::Config| {
        c.portal.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.alerts.poll_every = std::time::Duration::from_millis(50);
        adjust(c);
    };
    let t = if pg {
        TestApp::spawn_pg_with(set).await?
    } else {
        TestApp::spawn_with(set).await
    };
    Some((t, smtp))
}

/// An application "Alerts App" with a signing key, the person's locked account `alex` and
/// unlocked account `alex2` in it, and a company admin.
async fn person_with_accounts(t: &TestApp) -> (App, String) {
    let c = t.service.create_company("Alerts Co").await.unwrap();
    let app = t
        .service
        .create_application(
            &c.id,
            "alerts.example.com",
            Some("Alerts App"),
            deadbolt_core::UnenrolledPolicy::Allow,
            deadbolt_core::AccountState::Unlocked,
        )
        .await
        .unwrap();
    let key = t.key(&app).await;
    t.service
        .create_person(PERSON, Some(PASSWORD), None)
        .await
        .unwrap();
    for account in ["alex", "alex2"] {
        t.service
            .enroll(&By::CLI, &app.id, account, Some(PERSON))
            .await
            .unwrap();
    }
    t.service.lock(&By::CLI, &app.id, "alex").await.unwrap();
    let admin = t.service.create_person(ADMIN, None, None).await.unwrap();
    let now = deadbolt_core::Clock::now(&*t.clock);
    t.store
        .grant_role(&admin.id, "admin", &c.id, now)
        .await
        .unwrap();
    (app, key)
}

/// A check of `account` from `ip`; returns `locked`.
async fn check_from(t: &TestApp, app: &App, key: &str, account: &str, ip: &str) -> bool {
    let body = json!({
        "userIP": ip,
        "userDevice": "Firefox 133 on Linux",
        "userLocation": "Lyon, FR",
        "integrationType": "cognito",
    });
    let (status, v) = t
        .check_raw(Some(&t.token(&app.issuer, key, account)), body.to_string())
        .await;
    assert_eq!(status, 200, "{v}");
    v["locked"].as_bool().unwrap()
}

/// Waits (at most 10 s) for the `n`-th email to `to`.
async fn nth_email(smtp: &SmtpReceiver, to: &str, n: usize) -> String {
    for _ in 0..500 {
        if let Some(m) = smtp.to(to).get(n - 1) {
            return m.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no email #{n} to {to}: {:?}", smtp.to(to));
}

/// Waits until the application's `n` attempts are recorded (in the background); the id of the
/// latest.
async fn recorded(t: &TestApp, app: &App, n: usize) -> i64 {
    for _ in 0..500 {
        let recorded = t.store.recent_attempts(&app.id, 1000).await.unwrap();
        if recorded.len() >= n {
            return recorded[0].id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{n} attempts not recorded");
}

/// Waits until the application's `n` attempts are recorded (in the background) and the
/// worker has examined them all.
async fn worker_caught_up(t: &TestApp, app: &App, n: usize) {
    let last = recorded(t, app, n).await;
    for _ in 0..500 {
        if t.store.alert_cursor().await.unwrap() >= last {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the alert worker did not reach attempt {last}");
}

/// The URL after `label` in an email.
fn link(mail: &str, label: &str) -> String {
    let i = mail
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {mail}"));
    mail[i + label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

async fn a_blocked_check_is_emailed_and_its_links_work(t: TestApp, smtp: SmtpReceiver) {
    let (app, key) = person_with_accounts(&t).await;
    let started = Instant::now();
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.7").await);
    let mail = nth_email(&smtp, PERSON, 1).await;
    let emailed = started.elapsed();
    for want in [
        "Subject: Blocked sign-in to Alerts App (alex)",
        "your account alex at Alerts App (alerts.example.com)",
        "IP: 203.0.113.7",
        "Device: Firefox 133 on Linux",
        "Location: Lyon, FR",
        "Why it was blocked: the account was locked",
        "2026-11-27 12:00:00 UTC",
    ] {
        assert!(mail.contains(want), "{want:?} not in {mail}");
    }
    let was_me = link(&mail, "This was me: ");
    let not_me = link(&mail, "This wasn't me: ");
    assert!(
        was_me.starts_with(&format!("{}/alerts/", t.url)),
        "{was_me}"
    );
    assert!(
        not_me.starts_with(&format!("{}/alerts/", t.url)),
        "{not_me}"
    );
    assert_ne!(was_me, not_me);
    let acc = t.service.account(&app.id, "alex").await.unwrap();

    // "This was me", followed first by a mail scanner (no session, no cookie): it leads to the
    // account's page, which asks to sign in first, and changes nothing.
    let mut scanner = Http::new(&t.url);
    let r = scanner.get(&was_me).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The person, after it: the same way, still; signed in, the page offers to unlock.
    let mut anon = Http::new(&t.url);
    let r = anon.get(&was_me).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), format!("/me/accounts/{}", acc.id));
    let r = anon.get(&r.header("location")).await;
    assert_eq!(r.status, 303);
    assert!(
        r.header("location").starts_with("/login"),
        "{}",
        r.header("location")
    );
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(PERSON, PASSWORD).await.status, 303);
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"unlock-choices\""), "{}", page.body);
    assert!(page.body.contains("unlock-5"), "{}", page.body);
    assert_eq!(
        t.service.account(&app.id, "alex").await.unwrap().state,
        deadbolt_core::AccountState::Locked,
        "following it unlocked nothing"
    );

    // "This wasn't me": a GET only shows a confirmation; nothing is locked by it.
    let page = anon.get(&not_me).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Lock everything and tell the company"));
    assert!(
        !t.service
            .person_by_email(PERSON)
            .await
            .unwrap()
            .master_locked
    );
    assert!(!t.locked(&app.issuer, &key, "alex2").await);
    let csrf = page.csrf();
    let r = anon.post(&not_me, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Everything is locked"), "{}", r.body);
    let decided = started.elapsed();
    assert!(
        t.service
            .person_by_email(PERSON)
            .await
            .unwrap()
            .master_locked
    );
    // A check now answers locked, for the account that was open too.
    assert!(t.locked(&app.issuer, &key, "alex2").await);
    let told = nth_email(&smtp, ADMIN, 1).await;
    assert!(told.contains("reported a blocked sign-in as not"), "{told}");
    assert!(told.contains("Account: alex"), "{told}");
    assert!(told.contains("IP: 203.0.113.7"), "{told}");
    // Used: refused the second time, and the admins are not told twice.
    let page = anon.get(&not_me).await;
    assert_eq!(page.status, 404);
    let r = anon.post(&not_me, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(smtp.to(ADMIN).len(), 1);
    // The blocked check of the account that was open is emailed too (its own account, its
    // own window), after allowed checks the worker stored no cursor for.
    let second = nth_email(&smtp, PERSON, 2).await;
    assert!(
        second.contains("Subject: Blocked sign-in to Alerts App (alex2)"),
        "{second}"
    );
    assert!(
        second.contains("Why it was blocked: lock everything was on"),
        "{second}"
    );
    // A made-up link is refused the same way.
    assert_eq!(
        anon.get(&format!("{}/alerts/nothing-here", t.url))
            .await
            .status,
        404
    );
    eprintln!(
        "alerts timing ({}): blocked check -> email received {:?} -> decision made (\"this wasn't me\" confirmed) {:?}",
        if t.db_url.starts_with("postgres") { "postgres" } else { "sqlite" },
        emailed,
        decided
    );
    assert!(
        emailed < std::time::Duration::from_secs(60),
        "within a minute"
    );
    // "This was me" works until it expires (3 days), then no more.
    assert_eq!(anon.get(&was_me).await.status, 303);
    t.clock.advance(Duration::days(3) + Duration::minutes(1));
    assert_eq!(anon.get(&was_me).await.status, 404);
}

#[tokio::test]
async fn a_blocked_check_is_emailed_and_its_links_work_sqlite() {
    let (t, smtp) = spawn(false, |_| {}).await.unwrap();
    a_blocked_check_is_emailed_and_its_links_work(t, smtp).await;
}

#[tokio::test]
async fn a_blocked_check_is_emailed_and_its_links_work_postgres() {
    if let Some((t, smtp)) = spawn(true, |_| {}).await {
        a_blocked_check_is_emailed_and_its_links_work(t, smtp).await;
    }
}

async fn blocked_checks_in_a_row_make_one_email_then_a_digest(t: TestApp, smtp: SmtpReceiver) {
    let (app, key) = person_with_accounts(&t).await;
    assert!(check_from(&t, &app, &key, "alex", "198.51.100.1").await);
    let first = nth_email(&smtp, PERSON, 1).await;
    assert!(first.contains("IP: 198.51.100.1"), "{first}");
    eventually(|| async { t.service.unsent_alert_mails().await.unwrap() == 0 }).await;
    // Two more within the window: queued for the digest, not sent while the window lasts
    // (the server's clock does not move by itself).
    assert!(check_from(&t, &app, &key, "alex", "198.51.100.2").await);
    assert!(check_from(&t, &app, &key, "alex", "198.51.100.3").await);
    worker_caught_up(&t, &app, 3).await;
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.to(PERSON).len(), 1, "a second email within the window");
    // The window (2 s here) ends: one digest with both.
    t.clock.advance(Duration::seconds(2));
    let digest = nth_email(&smtp, PERSON, 2).await;
    assert!(
        digest.contains("Subject: 2 blocked sign-ins to Alerts App (alex)"),
        "{digest}"
    );
    assert!(digest.contains("IP: 198.51.100.2") && digest.contains("IP: 198.51.100.3"));
    assert!(!digest.contains("IP: 198.51.100.1"), "{digest}");
    // Recorded as sent once the relay took it (just after it arrived there).
    eventually(|| async { t.service.unsent_alert_mails().await.unwrap() == 0 }).await;
    assert_eq!(smtp.to(PERSON).len(), 2);
}

/// A 2-second window, and sign-ins for a waiting digest held by the worker for 300 ms before
/// they are written (10 s by default).
fn held_for_a_moment(c: &mut deadbolt::Config) {
    c.alerts.window = std::time::Duration::from_secs(2);
    c.alerts.save_cursor_every = std::time::Duration::from_millis(300);
}

/// Sign-ins that only add to a waiting digest are held by the worker, not written: the stored
/// cursor stays before them. One replica queues at a time (a lease in the store): another's
/// worker does nothing while it is held, takes over once it has run out (the first replica
/// stopped renewing it: crashed) and reads the held sign-ins again, so the digest lists every
/// one, once; the first worker, back, finds the lease taken and writes nothing.
#[tokio::test]
async fn one_replica_queues_and_another_takes_over_without_losing_held_sign_ins() {
    // The server's own worker looks once at start, then not for an hour: the test drives two
    // workers by hand.
    let (t, _smtp) = spawn(false, |c| {
        c.alerts.poll_every = std::time::Duration::from_secs(3600)
    })
    .await
    .unwrap();
    let lease_ends = || t.clock.advance(Duration::seconds(31));
    // The server's worker took the lease at its first look; it will not renew it.
    eventually(|| async { t.store.alert_queue_holder().await.unwrap().is_some() }).await;
    lease_ends();
    let (app, key) = person_with_accounts(&t).await;
    let config = deadbolt::alerts::AlertsConfig {
        save_cursor_every: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let worker = || {
        deadbolt::alerts::AlertWorker::new(
            t.service.clone(),
            deadbolt::mail::Mailer::Log,
            t.url.clone(),
            &config,
            std::sync::Arc::default(),
            None,
        )
        .unwrap()
    };
    let (first, second) = (worker(), worker());
    let (mut seen, mut seen2) = (
        deadbolt::alerts::Seen::default(),
        deadbolt::alerts::Seen::default(),
    );
    assert!(check_from(&t, &app, &key, "alex", "198.51.100.1").await);
    let one = recorded(&t, &app, 1).await;
    first.queue_pass(&mut seen).await.unwrap();
    let cursor = || async { t.store.alert_cursor().await.unwrap() };
    assert_eq!(cursor().await, one, "a first sign-in is queued at once");
    for i in 2..=4 {
        assert!(check_from(&t, &app, &key, "alex", &format!("198.51.100.{i}")).await);
    }
    let four = recorded(&t, &app, 4).await;
    first.queue_pass(&mut seen).await.unwrap();
    assert_eq!(
        cursor().await,
        one,
        "the next ones are held, the cursor before them"
    );
    assert!(!second.queue_pass(&mut seen2).await.unwrap());
    assert_eq!(cursor().await, one, "the other replica does not queue");
    // The first replica stops renewing its lease: the other takes over once it has run out.
    lease_ends();
    second.queue_pass(&mut seen2).await.unwrap();
    assert_eq!(cursor().await, four);
    // The first one back: the lease is taken, and what it held is not written again (that
    // would fail on the sign-ins already attached, for ever).
    assert!(!first.queue_pass(&mut seen).await.unwrap());
    assert_eq!(cursor().await, four);
    let now = deadbolt_core::Clock::now(&*t.clock);
    let mails = t
        .store
        .claim_alert_mails(now, now + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    let ips: Vec<_> = t
        .store
        .alert_mail_events(&mails[0])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.ip.unwrap_or_default())
        .collect();
    assert_eq!(
        ips,
        [
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "198.51.100.4"
        ]
    );
    t.stop().await;
}

#[tokio::test]
async fn blocked_checks_in_a_row_make_one_email_then_a_digest_sqlite() {
    let (t, smtp) = spawn(false, held_for_a_moment).await.unwrap();
    blocked_checks_in_a_row_make_one_email_then_a_digest(t, smtp).await;
}

#[tokio::test]
async fn blocked_checks_in_a_row_make_one_email_then_a_digest_postgres() {
    if let Some((t, smtp)) = spawn(true, held_for_a_moment).await {
        blocked_checks_in_a_row_make_one_email_then_a_digest(t, smtp).await;
    }
}

/// A guesser hammers a locked account: the first email goes at once, and the digest after the
/// window lists the first 20 sign-ins and counts the rest, without a row for each.
#[tokio::test]
async fn a_guessers_many_sign_ins_are_listed_up_to_20_and_counted() {
    let (t, smtp) = spawn(false, |c| {
        c.alerts.window = std::time::Duration::from_secs(2);
        c.alerts.save_cursor_every = std::time::Duration::ZERO;
    })
    .await
    .unwrap();
    let (app, key) = person_with_accounts(&t).await;
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.1").await);
    nth_email(&smtp, PERSON, 1).await;
    eventually(|| async { t.service.unsent_alert_mails().await.unwrap() == 0 }).await;
    for i in 2..=26 {
        assert!(check_from(&t, &app, &key, "alex", &format!("203.0.113.{i}")).await);
    }
    worker_caught_up(&t, &app, 26).await;
    t.clock.advance(Duration::seconds(2));
    let digest = nth_email(&smtp, PERSON, 2).await;
    assert!(
        digest.contains("Subject: 25 blocked sign-ins to Alerts App (alex)"),
        "{digest}"
    );
    assert!(digest.contains("IP: 203.0.113.2\r\n") || digest.contains("IP: 203.0.113.2\n"));
    assert!(
        digest.contains("...and 5 more blocked sign-ins"),
        "{digest}"
    );
    assert_eq!(digest.matches("IP: ").count(), 20, "{digest}");
    t.stop().await;
}

/// The value of a counter line of `/metrics`.
fn counter(metrics: &str, line: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
}

/// The server's own blocked sign-ins reach the alert worker from its attempt writer, not read
/// back from the store; a blocked sign-in another process wrote in between (the CLI, another
/// replica) leaves a gap the worker reads the store across: everyone is emailed, once.
#[tokio::test]
async fn blocked_attempts_come_from_the_writer_and_another_process_from_the_store() {
    let (t, smtp) = spawn(false, |c| {
        c.alerts.save_cursor_every = std::time::Duration::ZERO
    })
    .await
    .unwrap();
    let (app, key) = person_with_accounts(&t).await;
    for (person, account) in [("sam@example.com", "sam"), ("kim@example.com", "kim")] {
        t.service.create_person(person, None, None).await.unwrap();
        t.service
            .enroll(&By::CLI, &app.id, account, Some(person))
            .await
            .unwrap();
        t.service.lock(&By::CLI, &app.id, account).await.unwrap();
    }
    let read = |from: &'static str| {
        let t = &t;
        async move {
            let line = format!("deadbolt_alert_attempts_read_total{{from=\"{from}\"}}");
            counter(&t.metrics_text().await, &line)
        }
    };
    // Three of the server's own, one at a time: handed over (a worker reading the store
    // between a write's commit and its hand-over would take one from there instead; not all
    // three).
    for (i, n) in (1..=3).enumerate() {
        assert!(check_from(&t, &app, &key, "alex", &format!("203.0.113.{n}")).await);
        worker_caught_up(&t, &app, i + 1).await;
    }
    nth_email(&smtp, PERSON, 1).await;
    let handed = read("writer").await;
    assert!(handed >= 1, "the writer handed its blocked attempts over");
    let from_store = read("store").await;
    // Another process writes sam's blocked sign-in; then the server blocks kim's.
    t.store
        .record_attempts(&deadbolt_store::AttemptBatch::new(vec![
            deadbolt_store::NewAttempt {
                at: deadbolt_core::Clock::now(&*t.clock),
                app_id: app.id.clone(),
                key_id: None,
                account: "sam".into(),
                locked: true,
                reason: deadbolt_core::Reason::AccountLocked,
                ip: Some("198.51.100.9".into()),
                device: None,
                location: None,
                integration_type: Some("cognito".into()),
                integration_data: None,
            },
        ]))
        .await
        .unwrap();
    assert!(check_from(&t, &app, &key, "kim", "203.0.113.9").await);
    worker_caught_up(&t, &app, 5).await;
    let sam = nth_email(&smtp, "sam@example.com", 1).await;
    assert!(sam.contains("198.51.100.9"), "{sam}");
    nth_email(&smtp, "kim@example.com", 1).await;
    assert!(
        read("store").await > from_store,
        "the other process's sign-in was read from the store"
    );
    // What waits is alex's digest of its second and third sign-ins, due when the window ends.
    eventually(|| async { t.service.unsent_alert_mails().await.unwrap() == 1 }).await;
    for to in [PERSON, "sam@example.com", "kim@example.com"] {
        assert_eq!(smtp.to(to).len(), 1, "one email to {to}");
    }
    t.stop().await;
}

/// The person turns alerts off for one account on its page: its blocked sign-ins are not
/// emailed; turned on again, they are.
#[tokio::test]
async fn an_account_with_alerts_off_is_not_emailed() {
    // The cursor stored at every pass, to see that the worker has looked at the attempt.
    let (t, smtp) = spawn(false, |c| {
        c.alerts.save_cursor_every = std::time::Duration::ZERO
    })
    .await
    .unwrap();
    let (app, key) = person_with_accounts(&t).await;
    let acc = t.service.account(&app.id, "alex").await.unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(PERSON, PASSWORD).await.status, 303);
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert!(
        page.body.contains("id=\"alerts-off\""),
        "alerts are on by default"
    );
    let csrf = page.csrf();
    let r = http
        .post(
            &format!("/me/accounts/{}/alerts", acc.id),
            &[("csrf", &csrf), ("on", "0")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert!(page.body.contains("Alerts are off"), "{}", page.body);
    assert!(check_from(&t, &app, &key, "alex", "192.0.2.1").await);
    worker_caught_up(&t, &app, 1).await;
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(smtp.to(PERSON).is_empty(), "{:?}", smtp.to(PERSON));
    // On again: the next one is emailed.
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    let csrf = page.csrf();
    http.post(
        &format!("/me/accounts/{}/alerts", acc.id),
        &[("csrf", &csrf), ("on", "1")],
    )
    .await;
    assert!(check_from(&t, &app, &key, "alex", "192.0.2.2").await);
    let mail = nth_email(&smtp, PERSON, 1).await;
    assert!(mail.contains("IP: 192.0.2.2") && !mail.contains("IP: 192.0.2.1"));
    // Another person's account is not theirs to switch.
    let other = t.app("other.example.com").await;
    t.service
        .enroll(&By::CLI, &other.id, "someone", None)
        .await
        .unwrap();
    let theirs = t.service.account(&other.id, "someone").await.unwrap();
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    let r = http
        .post(
            &format!("/me/accounts/{}/alerts", theirs.id),
            &[("csrf", &page.csrf()), ("on", "0")],
        )
        .await;
    assert_eq!(r.status, 404);
}

/// An application in audit mode lets every sign-in in (it only records what it would have
/// decided): no "blocked sign-in" email for a decision that blocked nothing.
#[tokio::test]
async fn no_alert_for_an_application_in_audit_mode() {
    let (t, smtp) = spawn(false, |c| {
        c.alerts.save_cursor_every = std::time::Duration::ZERO
    })
    .await
    .unwrap();
    let (app, key) = person_with_accounts(&t).await;
    let settings = deadbolt_store::AppSettings {
        unenrolled: app.unenrolled,
        default_state: app.default_state,
        audit_mode: true,
    };
    t.service
        .update_application(&app.id, &settings)
        .await
        .unwrap();
    assert!(!check_from(&t, &app, &key, "alex", "192.0.2.9").await);
    worker_caught_up(&t, &app, 1).await;
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 0);
    // Out of audit mode, the same check is blocked and emailed.
    let settings = deadbolt_store::AppSettings {
        audit_mode: false,
        ..settings
    };
    t.service
        .update_application(&app.id, &settings)
        .await
        .unwrap();
    assert!(check_from(&t, &app, &key, "alex", "192.0.2.10").await);
    let mail = nth_email(&smtp, PERSON, 1).await;
    assert!(
        mail.contains("IP: 192.0.2.10") && !mail.contains("IP: 192.0.2.9"),
        "{mail}"
    );
}

async fn an_alert_sent_while_the_mail_server_is_down_arrives_later(t: TestApp, smtp: SmtpReceiver) {
    let (app, key) = person_with_accounts(&t).await;
    smtp.down.store(true, Ordering::SeqCst);
    // The check is answered at once, whatever the mail server does.
    let started = Instant::now();
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.99").await);
    let answered = started.elapsed();
    for _ in 0..500 {
        if smtp.refused.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(smtp.refused.load(Ordering::SeqCst) > 0, "the worker tried");
    // Kept, to be tried again after a wait (30 s on the server's clock).
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 1);
    smtp.down.store(false, Ordering::SeqCst);
    t.clock.advance(Duration::seconds(31));
    let mail = nth_email(&smtp, PERSON, 1).await;
    assert!(mail.contains("IP: 203.0.113.99"), "{mail}");
    eventually(|| async { t.service.unsent_alert_mails().await.unwrap() == 0 }).await;
    assert_eq!(smtp.to(PERSON).len(), 1, "sent once");
    // In /metrics: the failed try (or tries) and the email sent.
    let emails = |result: &str| {
        let name = format!("deadbolt_alert_emails_total{{result=\"{result}\"}}");
        let t = &t;
        async move { crate::faults::metric(t, &name).await }
    };
    assert!(emails("failed").await >= 1);
    assert_eq!(emails("sent").await, 1);
    eprintln!("alerts: check answered in {answered:?} while the mail server was down");
}

#[tokio::test]
async fn an_alert_sent_while_the_mail_server_is_down_arrives_later_sqlite() {
    let (t, smtp) = spawn(false, |_| {}).await.unwrap();
    an_alert_sent_while_the_mail_server_is_down_arrives_later(t, smtp).await;
}

#[tokio::test]
async fn an_alert_sent_while_the_mail_server_is_down_arrives_later_postgres() {
    if let Some((t, smtp)) = spawn(true, |_| {}).await {
        an_alert_sent_while_the_mail_server_is_down_arrives_later(t, smtp).await;
    }
}

/// What was queued survives a restart: a server stopped with an email still waiting sends it
/// once started again on the same store.
#[tokio::test]
async fn a_queued_alert_survives_a_restart() {
    let (t, smtp) = spawn(false, |_| {}).await.unwrap();
    let (app, key) = person_with_accounts(&t).await;
    smtp.down.store(true, Ordering::SeqCst);
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.50").await);
    worker_caught_up(&t, &app, 1).await;
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 1);
    // The first server goes (its shutdown handle with the rest of it); the store stays.
    let (db, dir, key_source) = {
        let t = t;
        (t.db_url.clone(), t.dir, t.key.clone())
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    smtp.down.store(false, Ordering::SeqCst);
    let port = smtp.port;
    let t2 = TestApp::spawn_on(db, dir, key_source, move |c| {
        c.portal.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.alerts.poll_every = std::time::Duration::from_millis(50);
    })
    .await;
    // The new server's clock starts at the same time; its retry is 30 s on.
    t2.clock.advance(Duration::seconds(31));
    let mail = nth_email(&smtp, PERSON, 1).await;
    assert!(mail.contains("IP: 203.0.113.50"), "{mail}");
}

/// The relay's credentials are sent with AUTH (here over the test relay's plain connection).
#[tokio::test]
async fn the_relay_is_given_its_credentials() {
    let (t, smtp) = spawn(false, |c| {
        c.portal.mail.user = Some("deadbolt".into());
        c.portal.mail.password = Some("relay-secret-pw".into());
    })
    .await
    .unwrap();
    let (app, key) = person_with_accounts(&t).await;
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.1").await);
    nth_email(&smtp, PERSON, 1).await;
    assert!(
        smtp.auths
            .lock()
            .unwrap()
            .contains(&"deadbolt:relay-secret-pw".to_string()),
        "{:?}",
        smtp.auths.lock().unwrap()
    );
}

/// `smtp+starttls://` requires STARTTLS: a relay that does not offer it (as the test relay
/// does not) is given neither the credentials nor the message, and the alert waits.
#[tokio::test]
async fn starttls_is_required_and_credentials_never_go_in_the_clear() {
    let smtp = SmtpReceiver::start();
    let port = smtp.port;
    let t = TestApp::spawn_with(move |c| {
        c.portal.mail.smtp_url = Some(format!(
            "smtp+starttls://deadbolt:relay-secret-pw@127.0.0.1:{port}"
        ));
        c.alerts.poll_every = std::time::Duration::from_millis(50);
    })
    .await;
    let (app, key) = person_with_accounts(&t).await;
    assert!(check_from(&t, &app, &key, "alex", "203.0.113.2").await);
    worker_caught_up(&t, &app, 1).await;
    eventually(|| async { smtp.connections.load(Ordering::SeqCst) > 0 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        smtp.auths.lock().unwrap().is_empty(),
        "credentials sent in the clear"
    );
    assert!(smtp.to(PERSON).is_empty());
    assert_eq!(t.service.unsent_alert_mails().await.unwrap(), 1, "kept");
}

/// Two replicas on one PostgreSQL database, each with its alert worker: every blocked attempt
/// is emailed once and delivered to the webhook once, whichever replica answered the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_send_each_alert_and_delivery_once() {
    let Some(admin) = deadbolt_store::testing::pg_admin_url() else {
        return;
    };
    let url = deadbolt_store::testing::fresh_pg_url(&admin).await.unwrap();
    let smtp = SmtpReceiver::start();
    let port = smtp.port;
    let set = move |c: &mut deadbolt::Config| {
        c.portal.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.alerts.poll_every = std::time::Duration::from_millis(10);
        c.alerts.window = std::time::Duration::from_secs(60);
    };
    let key_source = crate::faults::master_key();
    let a = TestApp::spawn_on(
        url.clone(),
        tempfile::tempdir().unwrap(),
        key_source.clone(),
        set,
    )
    .await;
    let b = TestApp::spawn_on(url, tempfile::tempdir().unwrap(), key_source, set).await;
    let (app, key) = person_with_accounts(&a).await;
    let secret = a
        .service
        .set_webhook(&app.company_id, "http://127.0.0.1:9/unused")
        .await;
    assert!(secret.is_ok());
    // The webhook goes to a receiver counting what it gets.
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let g = got.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    a.service
        .set_webhook(&app.company_id, &hook_url)
        .await
        .unwrap();
    let n = 8;
    for i in 0..n {
        let t = if i % 2 == 0 { &a } else { &b };
        assert!(check_from(t, &app, &key, "alex", &format!("198.51.100.{}", 100 + i)).await);
    }
    worker_caught_up(&a, &app, n).await;
    // Windows end on both replicas' clocks until nothing waits: the digest (if any) goes too.
    // (The first email may still be on its way when the clock first moves: then the digest's
    // window starts later, and a second move ends it.)
    for _ in 0..20 {
        if a.service.unsent_alert_mails().await.unwrap() == 0 {
            break;
        }
        a.clock.advance(Duration::seconds(61));
        b.clock.advance(Duration::seconds(61));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(a.service.unsent_alert_mails().await.unwrap(), 0);
    eventually(|| async { got.lock().unwrap().len() >= n }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = smtp.to(PERSON);
    assert!(
        !mails.is_empty() && mails.len() <= 2,
        "{} emails",
        mails.len()
    );
    for i in 0..n {
        let ip = format!("IP: 198.51.100.{}\r", 100 + i);
        let times = mails.iter().map(|m| m.matches(&ip).count()).sum::<usize>();
        assert_eq!(times, 1, "{ip:?} told {times} times");
    }
    let mut ids: Vec<i64> = got
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["attempt"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (n, n), "each attempt delivered once");
    b.stop().await;
    a.stop().await;
}

/// A flood over more accounts than the alert sender looks up in one read of the store (256):
/// each blocked account's person is emailed once, and the one whose alerts are off is not,
/// however the sign-ins fall into passes.
#[tokio::test]
async fn a_flood_over_many_accounts_emails_each_of_their_persons() {
    const N: usize = 300;
    const OFF: usize = 290;
    let (t, smtp) = spawn(false, |c| {
        // Passes far enough apart that a pass holds more accounts than one lookup reads.
        c.alerts.poll_every = std::time::Duration::from_secs(2);
    })
    .await
    .unwrap();
    let c = t.service.create_company("Flood Co").await.unwrap();
    let app = t
        .service
        .create_application(
            &c.id,
            "flood.example.com",
            None,
            deadbolt_core::UnenrolledPolicy::Allow,
            deadbolt_core::AccountState::Locked,
        )
        .await
        .unwrap();
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&c.id).await.unwrap();
    let email = |i: usize| format!("p{i}@flood.example");
    let rows: Vec<serde_json::Value> = (0..N)
        .map(|i| json!({"domain": app.issuer, "userAccountId": format!("acc{i}"), "email": email(i)}))
        .collect();
    let imported = t
        .sdk(
            reqwest::Method::POST,
            "importUsers",
            &sdk,
            Some(json!(rows)),
        )
        .await;
    assert_eq!(imported.0, 200, "{}", imported.1);
    let off = t
        .service
        .account(&app.id, &format!("acc{OFF}"))
        .await
        .unwrap();
    t.service.set_alerts(&off.id, false).await.unwrap();
    // Sent 50 at a time, so that the flood takes a fraction of a pass.
    let accounts: Vec<String> = (0..N).map(|i| format!("acc{i}")).collect();
    for batch in accounts.chunks(50) {
        let checks = batch
            .iter()
            .map(|a| check_from(&t, &app, &key, a, "192.0.2.9"));
        assert!(futures_util::future::join_all(checks)
            .await
            .into_iter()
            .all(|locked| locked));
    }
    for i in (0..N).filter(|i| *i != OFF) {
        let mail = nth_email(&smtp, &email(i), 1).await;
        assert!(mail.contains(&format!("acc{i}")), "{mail}");
    }
    worker_caught_up(&t, &app, N).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        smtp.to(&email(OFF)).is_empty(),
        "alerts off: {:?}",
        smtp.to(&email(OFF))
    );
    for i in (0..N).filter(|i| *i != OFF) {
        assert_eq!(smtp.to(&email(i)).len(), 1, "one email for {}", email(i));
    }
}
