//! The whole path a company and its users take, in the browser: the operator creates a company
//! and invites its admin; the admin creates an application and a signing key; a person signs
//! up through the emailed link, locks and unlocks, and sees blocked attempts arrive live.

use crate::harness::*;

const OPERATOR: &str = "operator@deadbolt.test";
const ADMIN: &str = "admin@acme.test";
const ALICE: &str = "alice@acme.test";
const PASSWORD: &str = "a long enough password";
const ISSUER: &str = "shop.acme.test";

#[tokio::test]
async fn operator_admin_and_person_journey() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    deadbolt::portal::create_operator(&portal.service, OPERATOR, PASSWORD)
        .await
        .unwrap();
    let b = Browser::start().await;
    let base = portal.url.clone();

    // The operator signs in, creates a company and invites its admin.
    b.goto(&format!("{base}/login")).await;
    b.find("#login-form").await;
    b.shot("01-sign-in").await;
    b.sign_in(&base, OPERATOR, PASSWORD).await;
    assert!(b.url().await.ends_with("/operator"), "{}", b.url().await);
    b.fill("#name", "Acme").await;
    b.fill("#admin_email", ADMIN).await;
    b.click("#company-form button[type=submit]").await;
    b.wait_text("#notice", "has been invited").await;
    b.wait_text("#companies", "Acme").await;
    b.shot("02-operator-companies").await;
    b.sign_out().await;

    // The admin follows the invitation, chooses a password and lands on the company.
    let invite = emailed_link(ADMIN).await;
    b.goto(&invite).await;
    b.wait_text("#welcome-email", ADMIN).await;
    b.shot("03-invitation").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm", PASSWORD).await;
    b.click("#welcome-form button[type=submit]").await;
    b.find("#app-form").await;
    assert!(b.url().await.contains("/companies/"), "{}", b.url().await);
    // The link works once.
    let mut http = Http::new(&portal);
    let again = http.get(invite.trim_start_matches(&base)).await;
    assert_eq!(again.status, 404);

    // An application, then a signing key, shown once and copied.
    b.fill("#issuer", ISSUER).await;
    b.fill("#name", "Acme Shop").await;
    b.click("#app-form button[type=submit]").await;
    b.wait_text("#issuer", ISSUER).await;
    b.wait_text("#notice", "Created").await;
    // The application's page, without the notice the redirect added.
    let app_url = b.url().await.split('?').next().unwrap().to_string();
    b.click("#new-key").await;
    let key = b.text("#new-secret").await;
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim())
            .unwrap()
            .len(),
        32
    );
    b.click("#copy-secret").await;
    b.wait_text("#copy-secret", "Copied").await;
    b.shot("04-signing-key-shown-once").await;
    b.goto(&app_url).await;
    b.find("#keys").await;
    assert!(
        !b.body().await.contains(key.trim()),
        "the key is shown once"
    );
    b.shot("05-application").await;

    // Enrol alice for a person, who is invited to sign up.
    b.goto(&format!("{app_url}/accounts")).await;
    b.fill("#account", "alice").await;
    b.fill("#email", ALICE).await;
    b.click("#enroll-form button[type=submit]").await;
    b.wait_text("#notice", "invited").await;
    b.wait_text("#enrolled", "alice").await;
    b.shot("06-enrolled-accounts").await;
    b.sign_out().await;

    // Alice signs up through the emailed link and sees her account.
    let signup = emailed_link(ALICE).await;
    b.goto(&signup).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm", PASSWORD).await;
    b.click("#welcome-form button[type=submit]").await;
    b.wait_text("li[data-account=alice]", "Unlocked").await;
    assert!(b.url().await.ends_with("/me"));
    assert!(!portal.locked(ISSUER, &key, "alice").await);

    // She locks it: the check says locked.
    b.click("li[data-account=alice] button.lock").await;
    b.wait_text("li[data-account=alice] .badge", "Locked").await;
    assert!(portal.locked(ISSUER, &key, "alice").await);
    b.shot("07-person-account-locked").await;

    // A blocked sign-in appears in her feed without a reload.
    // (The check just above was blocked too and may already be in the feed: the one to wait
    // for is the sign-in from 203.0.113.9, which has not happened yet.)
    b.find("#attempts").await;
    b.client
        .execute("window.deadboltMarker = 1;", vec![])
        .await
        .unwrap();
    let (status, _) = portal.check(ISSUER, &key, "alice", "203.0.113.9").await;
    assert_eq!(status, 200);
    b.wait_text("#attempts li.attempt", "203.0.113.9").await;
    let marker = b
        .client
        .execute("return window.deadboltMarker === 1;", vec![])
        .await
        .unwrap();
    assert_eq!(
        marker,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );
    b.shot("08-blocked-attempt-live").await;

    // Unlock for 15 minutes: the check says not locked, and locked again once it is over.
    b.click("li[data-account=alice] button.unlock-15").await;
    b.wait_text("li[data-account=alice] .why", "Unlocked until")
        .await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);
    portal.clock.advance(chrono::Duration::minutes(16));
    assert!(portal.locked(ISSUER, &key, "alice").await);

    // "This was me" on the blocked attempt opens a short window.
    b.goto(&format!("{base}/me")).await;
    b.click("#attempts li.attempt button.this-was-me").await;
    b.wait_text("li[data-account=alice] .why", "Unlocked until")
        .await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);
    portal.clock.advance(chrono::Duration::minutes(6));

    // Unlock for the next sign-in only: one check lets alice in, the next finds her locked.
    b.goto(&format!("{base}/me")).await;
    b.click("li[data-account=alice] button.unlock-once").await;
    b.wait_text("li[data-account=alice] .why", "next sign-in only")
        .await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);
    assert!(portal.locked(ISSUER, &key, "alice").await);

    // Lock everything: visibly different, and enforced.
    b.goto(&format!("{base}/me")).await;
    b.click("li[data-account=alice] button.unlock").await;
    b.wait_text("li[data-account=alice] .badge", "Unlocked")
        .await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);
    b.click("#lock-all").await;
    b.find(".banner.all-locked").await;
    b.wait_text("li[data-account=alice] .why", "lock everything")
        .await;
    assert!(portal.locked(ISSUER, &key, "alice").await);
    b.shot("09-lock-everything-on").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.shot("10-lock-everything-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.click("#unlock-all").await;
    b.find("#lock-all").await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);

    // A schedule: locked every day from 11:00 to 13:00 (the fake clock says 12:22 UTC).
    b.goto(&format!("{base}/me/schedules")).await;
    b.find("#days")
        .await
        .select_by_value("daily")
        .await
        .unwrap();
    b.set_value("#from", "11:00").await;
    b.set_value("#to", "13:00").await;
    b.click("#schedule-form button[type=submit]").await;
    b.wait_text("#schedules", "Every day").await;
    b.shot("11-schedules").await;
    assert!(portal.locked(ISSUER, &key, "alice").await);
    b.click("#schedules form button").await;
    b.wait_text("main", "No schedules.").await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);

    // A pairing code.
    b.goto(&format!("{base}/me/pairing")).await;
    b.click("#new-code").await;
    let code = b.text("#pairing-code").await;
    assert_eq!(code.len(), 9, "{code}");
    b.shot("12-pairing-code").await;
    b.sign_out().await;

    // The admin sees the attempts (live) and the integration page.
    b.sign_in(&base, ADMIN, PASSWORD).await;
    b.goto(&format!("{app_url}/attempts")).await;
    b.wait_text("#attempts", "203.0.113.9").await;
    portal.check(ISSUER, &key, "mallory", "192.0.2.66").await;
    b.wait_text("#attempts", "192.0.2.66").await;
    b.shot("13-attempts-live").await;
    b.goto(&format!("{app_url}/attempts?decision=blocked"))
        .await;
    let blocked = b.text("#attempts").await;
    assert!(blocked.contains("203.0.113.9") && !blocked.contains("192.0.2.66"));
    b.goto(&format!("{app_url}/integration")).await;
    let env = b.text("#cognito-env").await;
    assert!(env.contains(&format!("API_URI={base}")), "{env}");
    assert!(env.contains(&format!("APP_FQDN={ISSUER}")), "{env}");
    assert!(!env.contains("SIGNING_KEY") && !env.contains(key.trim()));
    let sam = b.text("#sam-command").await;
    assert!(
        sam.contains(&format!("ApiUri={base}")) && sam.contains(&format!("AppFqdn={ISSUER}")),
        "{sam}"
    );
    assert!(
        !b.body().await.contains(key.trim()),
        "the secret is not on the page"
    );
    b.shot("14-integration").await;

    // The admin locks alice on her behalf.
    b.goto(&format!("{app_url}/accounts?q=ali")).await;
    b.click("tr[data-account=alice] button.lock").await;
    b.wait_text("tr[data-account=alice]", "Locked").await;
    assert!(portal.locked(ISSUER, &key, "alice").await);
    // Audit mode: the decision is recorded, never enforced.
    b.goto(&app_url).await;
    b.click("#settings-form input[name=audit_mode]").await;
    b.click("#settings-form button[type=submit]").await;
    // Wait for the page the save answers with, not for the box ticked by the click.
    b.find("#settings-saved").await;
    b.find("#settings-form input[name=audit_mode]:checked")
        .await;
    assert!(!portal.locked(ISSUER, &key, "alice").await);
    b.goto(&format!("{base}/companies/nope")).await;
    b.wait_text("main", "does not exist").await;

    b.close().await;
    portal.stop().await;
}

#[tokio::test]
async fn first_run_link_creates_the_operator() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let link = deadbolt::portal::first_run_link(&portal.service, &portal.url)
        .await
        .unwrap()
        .expect("no operator yet: a link");
    let b = Browser::start().await;
    b.goto(&link).await;
    b.wait_text("#welcome-form", "Create the operator account")
        .await;
    b.fill("#email", OPERATOR).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm", "not the same password").await;
    b.click("#welcome-form button[type=submit]").await;
    b.wait_text(".error", "differ").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm", PASSWORD).await;
    b.shot("00-first-run-setup").await;
    b.click("#welcome-form button[type=submit]").await;
    b.find("#company-form").await;
    assert!(b.url().await.ends_with("/operator"));
    assert_eq!(
        deadbolt::portal::first_run_link(&portal.service, &portal.url)
            .await
            .unwrap(),
        None,
        "an operator exists"
    );
    b.goto(&link).await;
    b.wait_text("main", "expired or was already used").await;
    b.close().await;
    portal.stop().await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_email() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    portal.person("reset@acme.test", PASSWORD).await;
    let mut http = Http::new(&portal);
    let csrf = http.get("/reset").await.csrf();
    let unknown = http
        .post("/reset", &[("csrf", &csrf), ("email", "nobody@acme.test")])
        .await;
    let known = http
        .post("/reset", &[("csrf", &csrf), ("email", "reset@acme.test")])
        .await;
    assert_eq!((unknown.status, known.status), (200, 200));
    assert_eq!(
        unknown.body, known.body,
        "the answer does not tell who exists"
    );
    let link = emailed_link("reset@acme.test").await;
    let path = link.trim_start_matches(&portal.url).to_string();
    let csrf = http.get(&path).await.csrf();
    let new = "a brand new password";
    let page = http
        .post(
            &path,
            &[("csrf", &csrf), ("password", new), ("confirm", new)],
        )
        .await;
    assert_eq!((page.status, page.location()), (303, "/me".to_string()));
    assert_eq!(
        Http::new(&portal)
            .login("reset@acme.test", PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        Http::new(&portal)
            .login("reset@acme.test", new)
            .await
            .status,
        303
    );
    assert_eq!(http.get(&path).await.status, 404, "the link works once");
    portal.stop().await;
}

#[tokio::test]
async fn an_admin_imports_accounts_from_a_csv_file() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let c = portal.service.create_company("Acme").await.unwrap();
    let admin = portal.person(ADMIN, PASSWORD).await;
    portal
        .store
        .grant_role(&admin.id, "admin", &c.id, t0())
        .await
        .unwrap();
    let app = portal
        .service
        .create_application(
            &c.id,
            ISSUER,
            None,
            deadbolt_core::UnenrolledPolicy::Allow,
            deadbolt_core::AccountState::Locked,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "userAccountId,email,first_name\ncarol,carol@acme.test,Carol\n\"dave, jr\",,Dave\n",
    )
    .unwrap();
    let b = Browser::start().await;
    b.sign_in(&portal.url, ADMIN, PASSWORD).await;
    b.goto(&format!(
        "{}/companies/{}/apps/{}/accounts",
        portal.url, c.id, app.id
    ))
    .await;
    b.find("#file")
        .await
        .send_keys(csv.to_str().unwrap())
        .await
        .unwrap();
    b.click("form[enctype] button[type=submit]").await;
    b.wait_text("#notice", "2 new").await;
    b.wait_text("#enrolled", "dave, jr").await;
    b.wait_text("tr[data-account=carol]", "carol@acme.test")
        .await;
    b.shot("16-csv-import").await;
    // The same file again: nothing new.
    b.find("#file")
        .await
        .send_keys(csv.to_str().unwrap())
        .await
        .unwrap();
    b.click("form[enctype] button[type=submit]").await;
    b.wait_text("#notice", "0 new, 2 already enrolled").await;
    assert!(
        portal
            .locked(
                ISSUER,
                &portal.service.create_signing_key(&app.id).await.unwrap().1,
                "carol"
            )
            .await
    );
    b.close().await;
    portal.stop().await;
}
