//! What a person sees and can do on their pages (lock everything, blocked attempts and their
//! reasons, "this was me" / "this wasn't me", the next scheduled lock, the time zone), and the
//! audit trail of every change, with who made it: the person, an admin, the SDK, the CLI.

use crate::helpers::*;
use crate::portal::{Http, Page};
use crate::smtp::{smtp_receiver, Inbox};
use chrono::Duration;
use deadbolt::service::By;
use deadbolt_core::{AccountState, Schedule};
use deadbolt_store::{Application as App, AuditAction};
use reqwest::Method;
use serde_json::json;

const PASSWORD: &str = "a long enough password";
const PERSON: &str = "pat@example.com";

/// A server with an SMTP receiver, on SQLite or PostgreSQL.
async fn spawn(pg: bool) -> Option<(TestApp, Inbox)> {
    let (port, inbox) = smtp_receiver();
    let mail = deadbolt::mail::MailConfig {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        from: None,
        ..Default::default()
    };
    let t = if pg {
        TestApp::spawn_pg_with(move |c| c.portal.mail = mail).await?
    } else {
        TestApp::spawn_with(move |c| c.portal.mail = mail).await
    };
    Some((t, inbox))
}

/// An application with a signing key, and the person's account `pat` in it (locked), with
/// the person signed in.
async fn person_with_account(t: &TestApp) -> (App, String, Http) {
    let app = t.app("people.example.com").await;
    let key = t.key(&app).await;
    t.service
        .create_person(PERSON, Some(PASSWORD), None)
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "pat", Some(PERSON))
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "pat").await.unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(PERSON, PASSWORD).await.status, 303);
    (app, key, http)
}

/// A blocked sign-in of `pat`, waited for until the person's feed has it.
async fn blocked_attempt(t: &TestApp, app: &App, key: &str) -> i64 {
    let before = t.store.recent_attempts(&app.id, 1).await.unwrap();
    let last = before.first().map_or(0, |a| a.id);
    assert!(t.locked(&app.issuer, key, "pat").await);
    let mut id = 0;
    for _ in 0..250 {
        if let Some(a) = t.store.recent_attempts(&app.id, 1).await.unwrap().first() {
            if a.id > last {
                id = a.id;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(id > 0, "the attempt was recorded");
    id
}

/// Waits for the first email to `to` and returns it.
async fn email_to(inbox: &Inbox, to: &str) -> String {
    for _ in 0..250 {
        let found = inbox
            .lock()
            .unwrap()
            .iter()
            .find(|(r, _)| r == to)
            .map(|(_, b)| b.clone());
        if let Some(body) = found {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no email to {to}");
}

async fn me(http: &mut Http) -> Page {
    let page = http.get("/me").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// The markup of one attempt on the person's page.
fn attempt_row(page: &Page, id: i64) -> &str {
    let start = page
        .body
        .find(&format!("data-attempt=\"{id}\""))
        .unwrap_or_else(|| panic!("attempt {id} not shown: {}", page.body));
    let rest = &page.body[start..];
    &rest[..rest.find("</li>").unwrap()]
}

async fn lock_everything_hides_unlock_and_the_server_refuses_it(t: TestApp) {
    let (app, _, mut http) = person_with_account(&t).await;
    let page = me(&mut http).await;
    assert!(page.body.contains("class=\"btn unlock\""), "{}", page.body);
    let acc = t.service.account(&app.id, "pat").await.unwrap();
    // Lock everything.
    let csrf = fresh(&mut http).await;
    let r = http
        .post("/me/lock-all", &[("csrf", &csrf), ("on", "1")])
        .await;
    assert_eq!((r.status, r.header("location").as_str()), (303, "/me"));
    let page = me(&mut http).await;
    assert!(page.body.contains("id=\"unlock-hidden\""), "{}", page.body);
    assert!(page.body.contains("turn lock everything off first"));
    for action in [
        "unlock\"",
        "unlock-5",
        "unlock-15",
        "unlock-60",
        "unlock-once",
        "lock\"",
    ] {
        assert!(
            !page.body.contains(&format!("class=\"btn quiet {action}"))
                && !page.body.contains(&format!("class=\"btn {action}"))
                && !page.body.contains(&format!("class=\"btn primary {action}")),
            "{action} offered under lock everything: {}",
            page.body
        );
    }
    // Posted anyway: refused, and the account's stored state is what it was.
    let path = format!("/me/accounts/{}/unlock", acc.id);
    for minutes in ["5", "", "once"] {
        let csrf = fresh(&mut http).await;
        let r = http
            .post(&path, &[("csrf", &csrf), ("minutes", minutes)])
            .await;
        assert_eq!(r.status, 409, "unlock {minutes:?}: {}", r.body);
        assert!(r.body.contains("Lock everything is on"), "{}", r.body);
    }
    let csrf = fresh(&mut http).await;
    let r = http
        .post(&format!("/me/accounts/{}/lock", acc.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 409);
    let after = t.service.account(&app.id, "pat").await.unwrap();
    assert_eq!(
        (after.state, after.unlocked_until, after.relock_after_use),
        (AccountState::Locked, None, false)
    );
    assert_eq!(after.updated_at, acc.updated_at);
    // Turned off: the account is as it was before, locked, and the buttons are back.
    let csrf = fresh(&mut http).await;
    http.post("/me/lock-all", &[("csrf", &csrf), ("on", "0")])
        .await;
    let page = me(&mut http).await;
    assert!(page.body.contains("class=\"btn unlock\""));
    assert!(page.body.contains("Locked until you unlock it"));
    // The trail has the two lock-everything changes and no unlock.
    let trail = t
        .service
        .account_audit(&acc.id, acc.person_id.as_deref(), None, 50)
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action).collect();
    assert_eq!(
        &actions[..2],
        &[AuditAction::LockAllOff, AuditAction::LockAllOn]
    );
    assert!(!actions.contains(&AuditAction::UnlockWindow));
}

#[tokio::test]
async fn lock_everything_hides_unlock_and_the_server_refuses_it_sqlite() {
    lock_everything_hides_unlock_and_the_server_refuses_it(TestApp::spawn().await).await;
}

#[tokio::test]
async fn lock_everything_hides_unlock_and_the_server_refuses_it_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        lock_everything_hides_unlock_and_the_server_refuses_it(t).await;
    }
}

/// Each blocked attempt says why; "this was me" is offered where it can help (recent, and
/// the account locked by its own lock or a schedule), and "this wasn't me" on every one.
#[tokio::test]
async fn blocked_attempts_say_why_and_offer_what_helps() {
    let t = TestApp::spawn().await;
    let (app, key, mut http) = person_with_account(&t).await;
    let own_lock = blocked_attempt(&t, &app, &key).await;
    let page = me(&mut http).await;
    let row = attempt_row(&page, own_lock);
    assert!(
        row.contains("Blocked because the account was locked"),
        "{row}"
    );
    assert!(row.contains("this-was-me"), "{row}");
    assert!(row.contains("not-me"), "{row}");

    // Sixteen minutes later it is too old to help: a window opened now would let in whoever
    // tries next, not the person who tried then.
    t.clock.advance(Duration::minutes(16));
    let page = me(&mut http).await;
    assert!(!attempt_row(&page, own_lock).contains("this-was-me"));
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/attempts/{own_lock}/this-was-me"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(t.locked(&app.issuer, &key, "pat").await, "still locked");

    // A schedule's lock: the reason says so, and "this was me" lifts it for five minutes.
    t.service
        .unlock(&By::CLI, &app.id, "pat", None)
        .await
        .unwrap();
    t.service
        .add_schedule(
            &By::CLI,
            PERSON,
            None,
            Schedule::parse("all", "00:00-00:00").unwrap(),
        )
        .await
        .unwrap();
    let by_schedule = blocked_attempt(&t, &app, &key).await;
    let page = me(&mut http).await;
    let row = attempt_row(&page, by_schedule);
    assert!(row.contains("Blocked by a lock schedule"), "{row}");
    assert!(row.contains("this-was-me"), "{row}");
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/attempts/{by_schedule}/this-was-me"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!((r.status, r.header("location").as_str()), (303, "/me"));
    assert!(
        !t.locked(&app.issuer, &key, "pat").await,
        "unlocked for a while"
    );
    t.clock.advance(Duration::minutes(6));

    // Under lock everything: the reason says so, and "this was me" cannot lift it.
    t.service
        .set_master_lock(&By::CLI, PERSON, true)
        .await
        .unwrap();
    let master = blocked_attempt(&t, &app, &key).await;
    let page = me(&mut http).await;
    let row = attempt_row(&page, master);
    assert!(
        row.contains("Blocked because lock everything was on"),
        "{row}"
    );
    assert!(!row.contains("this-was-me"), "{row}");
    assert!(row.contains("not-me"), "{row}");
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/attempts/{master}/this-was-me"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
}

async fn this_wasnt_me_locks_everything_and_tells_the_admins(t: TestApp, inbox: Inbox) {
    let (app, key, mut http) = person_with_account(&t).await;
    let now = deadbolt_core::Clock::now(&*t.clock);
    for admin in ["ann@acme.example", "bob@acme.example"] {
        let p = t.service.create_person(admin, None, None).await.unwrap();
        t.store
            .grant_role(&p.id, "admin", &app.company_id, now)
            .await
            .unwrap();
    }
    // Someone else's company admin is not told.
    let other = t.app("other.example.com").await;
    let p = t
        .service
        .create_person("eve@other.example", None, None)
        .await
        .unwrap();
    t.store
        .grant_role(&p.id, "admin", &other.company_id, now)
        .await
        .unwrap();
    let attempt = blocked_attempt(&t, &app, &key).await;
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/attempts/{attempt}/not-me"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!((r.status, r.header("location").as_str()), (303, "/me"));
    let person = t.service.person_by_email(PERSON).await.unwrap();
    assert!(person.master_locked);
    let page = me(&mut http).await;
    assert!(page.body.contains("Everything is locked"));
    assert!(!page.body.contains("class=\"btn unlock\""));
    for admin in ["ann@acme.example", "bob@acme.example"] {
        let body = email_to(&inbox, admin).await;
        assert!(body.contains("Account: pat"), "{body}");
        assert!(body.contains(&format!("Person: {PERSON}")), "{body}");
        assert!(body.contains("reported a blocked sign-in as not"), "{body}");
        assert!(body.contains("/attempts"), "{body}");
    }
    assert!(!inbox
        .lock()
        .unwrap()
        .iter()
        .any(|(to, _)| to == "eve@other.example"));
    // Recorded: lock everything turned on by the person, from their address.
    let acc = t.service.account(&app.id, "pat").await.unwrap();
    let trail = t
        .service
        .account_audit(&acc.id, Some(&person.id), None, 1)
        .await
        .unwrap();
    assert_eq!(trail[0].action, AuditAction::LockAllOn);
    assert_eq!(trail[0].by.actor, "person");
    assert_eq!(trail[0].by.ip.as_deref(), Some("127.0.0.1"));
    // Another person's attempt is not theirs to report.
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/attempts/{}/not-me", attempt + 1000),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn this_wasnt_me_locks_everything_and_tells_the_admins_sqlite() {
    let (t, inbox) = spawn(false).await.unwrap();
    this_wasnt_me_locks_everything_and_tells_the_admins(t, inbox).await;
}

#[tokio::test]
async fn this_wasnt_me_locks_everything_and_tells_the_admins_postgres() {
    if let Some((t, inbox)) = spawn(true).await {
        this_wasnt_me_locks_everything_and_tells_the_admins(t, inbox).await;
    }
}

/// Each account shows when a schedule next locks it, in the person's time zone.
#[tokio::test]
async fn the_next_scheduled_lock_is_shown() {
    let t = TestApp::spawn().await;
    let (app, _, mut http) = person_with_account(&t).await;
    let page = me(&mut http).await;
    assert!(!page.body.contains("Next scheduled lock"));
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            "/me/time-zone",
            &[("csrf", &csrf), ("time_zone", "Europe/Paris")],
        )
        .await;
    assert_eq!(r.status, 303);
    // Friday 2026-11-27 12:00 UTC is 13:00 in Paris: tonight at 22:00 is next.
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            "/me/schedules",
            &[
                ("csrf", &csrf),
                ("account", ""),
                ("days", "weekdays"),
                ("from", "22:00"),
                ("to", "06:00"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = me(&mut http).await;
    assert!(
        page.body
            .contains("Next scheduled lock: <time>2026-11-27 22:00 CET</time>"),
        "{}",
        page.body
    );
    let acc = t.service.account(&app.id, "pat").await.unwrap();
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert!(page.body.contains("2026-11-27 22:00 CET"), "{}", page.body);
    assert!(page
        .body
        .contains("Schedule added: Weekdays 22:00\u{2013}06:00"));
}

/// The time zone is picked from the IANA zones, the current one selected.
#[tokio::test]
async fn the_time_zone_picker_round_trips() {
    let t = TestApp::spawn().await;
    let (_, _, mut http) = person_with_account(&t).await;
    let page = http.get("/me/schedules").await;
    assert!(page
        .body
        .contains("<select id=\"time_zone\" name=\"time_zone\""));
    assert!(
        page.body.contains("<option selected>UTC</option>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<option>Asia/Tokyo</option>"));
    assert!(page.body.matches("<option").count() > 400);
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            "/me/time-zone",
            &[("csrf", &csrf), ("time_zone", "Asia/Tokyo")],
        )
        .await;
    assert_eq!(
        (r.status, r.header("location").as_str()),
        (303, "/me/schedules")
    );
    let page = http.get("/me/schedules").await;
    assert!(page.body.contains("<option selected>Asia/Tokyo</option>"));
    assert_eq!(page.body.matches(" selected>").count(), 1);
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            "/me/time-zone",
            &[("csrf", &csrf), ("time_zone", "Mars/Olympus")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        t.service
            .person_by_email(PERSON)
            .await
            .unwrap()
            .time_zone
            .name(),
        "Asia/Tokyo"
    );
}

/// Runs the CLI on the server's store, with its master key (a PostgreSQL store has no key
/// file beside it).
fn cli(t: &TestApp, args: &[&str]) -> serde_json::Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_deadbolt"));
    cmd.arg("--db").arg(&t.db_url).args(args);
    match &t.key.value {
        Some(k) => cmd.env("DEADBOLT_MASTER_KEY", k),
        None => cmd.env_remove("DEADBOLT_MASTER_KEY"),
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "deadbolt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn the_audit_trail_names_who_changed_what(t: TestApp, inbox: Inbox) {
    let (app, key, mut http) = person_with_account(&t).await;
    let acc = t.service.account(&app.id, "pat").await.unwrap();
    let person = t.service.person_by_email(PERSON).await.unwrap();
    let now = deadbolt_core::Clock::now(&*t.clock);
    let admin = t
        .service
        .create_person("ann@acme.example", Some(PASSWORD), None)
        .await
        .unwrap();
    t.store
        .grant_role(&admin.id, "admin", &app.company_id, now)
        .await
        .unwrap();
    let (sdk_id, sdk_token) = t.service.create_sdk_key(&app.company_id).await.unwrap();

    // The person unlocks for 15 minutes.
    let csrf = fresh(&mut http).await;
    let r = http
        .post(
            &format!("/me/accounts/{}/unlock", acc.id),
            &[("csrf", &csrf), ("minutes", "15")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // An admin locks it, in the portal: the person is told by email.
    let mut boss = Http::new(&t.url);
    assert_eq!(boss.login("ann@acme.example", PASSWORD).await.status, 303);
    let accounts = format!("/companies/{}/apps/{}/accounts", app.company_id, app.id);
    let page = boss.get(&accounts).await;
    let r = boss
        .post(
            &format!("{accounts}/lock"),
            &[("csrf", &page.csrf()), ("account", "PAT")],
        )
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, format!("{accounts}?done=locked"))
    );
    // The person is told of the admin's change.
    let told = email_to(&inbox, PERSON).await;
    assert!(told.contains("Change: locked"), "{told}");
    assert!(told.contains("By: ann@acme.example"), "{told}");
    assert!(told.contains(&format!("/me/accounts/{}", acc.id)), "{told}");
    // The SDK unlocks it.
    let r = t
        .sdk(
            Method::POST,
            "unlock",
            &sdk_token,
            Some(json!({"domain": app.issuer, "userAccountId": "pat"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The CLI unlocks it for one sign-in, and a check uses it.
    cli(
        &t,
        &[
            "account",
            "unlock",
            "--app",
            &app.id,
            "--account",
            "pat",
            "--once",
        ],
    );
    assert!(!t.locked(&app.issuer, &key, "pat").await);

    let trail = t
        .service
        .account_audit(&acc.id, Some(&person.id), None, 50)
        .await
        .unwrap();
    let who: Vec<(AuditAction, &str, Option<&str>, Option<&str>)> = trail
        .iter()
        .take(5)
        .map(|e| {
            (
                e.action,
                e.by.actor.as_str(),
                e.by.actor_id.as_deref(),
                e.by.ip.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        who,
        vec![
            (AuditAction::RelockAfterUse, "check", None, None),
            (AuditAction::UnlockOnce, "cli", None, None),
            (
                AuditAction::Unlock,
                "sdk",
                Some(sdk_id.as_str()),
                Some("127.0.0.1")
            ),
            (
                AuditAction::Lock,
                "admin",
                Some(admin.id.as_str()),
                Some("127.0.0.1")
            ),
            (
                AuditAction::UnlockWindow,
                "person",
                Some(person.id.as_str()),
                Some("127.0.0.1")
            ),
        ]
    );
    let window = &trail[4];
    assert_eq!(window.old.as_ref().unwrap().state, "locked");
    assert_eq!(
        window.new.as_ref().unwrap().until,
        Some(now + Duration::minutes(15))
    );
    assert_eq!(trail[3].by.actor_name.as_deref(), Some("ann@acme.example"));

    // The person's account page shows it, newest first, the company's changes marked.
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    let pos = |s: &str| body.find(s).unwrap_or_else(|| panic!("{s} not in {body}"));
    assert!(pos("Locked again after its one sign-in") < pos("Unlocked for the next sign-in"));
    assert!(pos("The server&#39;s command line") < pos("Company admin ann@acme.example"));
    assert!(body.contains(&format!("SDK key {sdk_id}")));
    assert!(body.contains("You"));
    assert_eq!(body.matches("badge company").count(), 2, "{body}");
    assert!(
        body.contains("unlocked until 2026-11-27 12:15 UTC"),
        "{body}"
    );

    // The admins' page of the application lists the same, and no one else's.
    let audit = format!("/companies/{}/apps/{}/audit", app.company_id, app.id);
    let page = boss.get(&audit).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Company admin ann@acme.example"));
    assert!(page.body.contains("The account&#39;s person"));
    assert!(page.body.contains("Enrolled"));
    let app_page = boss
        .get(&format!("/companies/{}/apps/{}", app.company_id, app.id))
        .await;
    assert!(app_page.body.contains(&format!("href=\"{audit}\"")));
    // The person is no admin: the page does not exist for them.
    assert_eq!(http.get(&audit).await.status, 404);
}

#[tokio::test]
async fn the_audit_trail_names_who_changed_what_sqlite() {
    let (t, inbox) = spawn(false).await.unwrap();
    the_audit_trail_names_who_changed_what(t, inbox).await;
}

#[tokio::test]
async fn the_audit_trail_names_who_changed_what_postgres() {
    if let Some((t, inbox)) = spawn(true).await {
        the_audit_trail_names_who_changed_what(t, inbox).await;
    }
}

/// The trail comes a page at a time, newest first, with a link to the older ones.
#[tokio::test]
async fn the_trail_is_paged() {
    let t = TestApp::spawn().await;
    let (app, _, mut http) = person_with_account(&t).await;
    let acc = t.service.account(&app.id, "pat").await.unwrap();
    for _ in 0..12 {
        t.service
            .unlock(&By::CLI, &app.id, "pat", None)
            .await
            .unwrap();
        t.service.lock(&By::CLI, &app.id, "pat").await.unwrap();
    }
    // 2 (enrolment and first lock) + 24 changes: two pages of 20.
    let page = http.get(&format!("/me/accounts/{}", acc.id)).await;
    assert_eq!(page.body.matches("<li class=\"change").count(), 20);
    let i = page
        .body
        .find("id=\"older\"")
        .expect("a link to older changes");
    let href_at = page.body[..i].rfind("href=\"").unwrap() + 6;
    let href = &page.body[href_at..href_at + page.body[href_at..].find('"').unwrap()];
    assert!(
        href.starts_with(&format!("/me/accounts/{}?before=", acc.id)),
        "{href}"
    );
    let older = http.get(href).await;
    assert_eq!(older.body.matches("<li class=\"change").count(), 6);
    assert!(older.body.contains("Enrolled"));
    assert!(!older.body.contains("id=\"older\""));
}

/// A form token of a fresh page: each is good for one form.
async fn fresh(http: &mut Http) -> String {
    me(http).await.csrf()
}
