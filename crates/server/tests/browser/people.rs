//! A person's day with a blocked sign-in, in the browser: the attempt arrives with its reason,
//! "This wasn't me" locks everything and tells the company's admins, and the page then offers
//! no unlock; the company's admin finds the application's audit trail. Screenshots at desktop
//! and phone width.

use crate::harness::*;
use deadbolt::service::By;
use deadbolt_core::{AccountState, UnenrolledPolicy};
use fantoccini::Locator;
use serde_json::json;

const ADMIN: &str = "admin@globex.test";
const PERSON: &str = "sam@globex.test";
const PASSWORD: &str = "a long enough password";
const ISSUER: &str = "app.globex.test";
/// What a hostile or odd client may send as its device: long, without spaces to break at.
const DEVICE: &str = "Mozilla/5.0(X11;Linux_x86_64)AppleWebKit/537.36(KHTML,like_Gecko)Chrome/131.0.0.0_Safari/537.36_with_a_very_long_tail_that_never_breaks_by_itself";

#[tokio::test]
async fn person_reports_a_blocked_sign_in_that_was_not_them() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let s = &portal.service;
    let company = s.create_company("Globex").await.unwrap();
    let app = s
        .create_application(
            &company.id,
            ISSUER,
            Some("Globex Mail"),
            UnenrolledPolicy::Allow,
            AccountState::Unlocked,
        )
        .await
        .unwrap();
    let (_, key) = s.create_signing_key(&app.id).await.unwrap();
    let admin = portal.person(ADMIN, PASSWORD).await;
    portal
        .store
        .grant_role(&admin.id, "admin", &company.id, t0())
        .await
        .unwrap();
    portal.person(PERSON, PASSWORD).await;
    s.enroll(&By::CLI, &app.id, "sam", Some(PERSON))
        .await
        .unwrap();
    s.lock(&By::CLI, &app.id, "sam").await.unwrap();

    let b = Browser::start().await;
    let base = portal.url.clone();
    b.client.set_window_size(1280, 900).await.unwrap();
    b.sign_in(&base, PERSON, PASSWORD).await;
    b.wait_text("li[data-account=sam] .why", "Locked until you unlock it")
        .await;
    b.find("li[data-account=sam] button.unlock").await;

    // A sign-in from somewhere else is blocked: it arrives with its reason, and both answers.
    let token = {
        use deadbolt_core::Clock;
        let t = portal.clock.now().timestamp() as f64;
        let claims = json!({"iss": ISSUER, "aud": format!("http://127.0.0.1:{}", portal.port),
            "sub": "sam", "iat": t - 60.0, "exp": t + 300.0});
        let secret =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim()).unwrap();
        deadbolt_core::token::sign_hs256(&claims, &secret)
    };
    let resp = reqwest::Client::new()
        .post(format!("{base}/nl3/api/v1/accountProtectionCheck"))
        .header("x-nl3-authorization-token", token)
        .body(json!({"userIP": "203.0.113.77", "userDevice": DEVICE, "userLocation": "Somewhere, far away"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"locked": true})
    );
    let row = b
        .wait_text(
            "#attempts li.attempt",
            "Blocked because the account was locked",
        )
        .await;
    assert!(row.contains("203.0.113.77"), "{row}");
    b.find("#attempts li.attempt button.this-was-me").await;
    b.find("#attempts li.attempt button.not-me").await;
    // The device wraps inside the page: nothing scrolls sideways.
    assert!(!scrolls_sideways(&b).await, "the page scrolls sideways");
    b.shot("people-01-blocked-attempt-with-reason").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.client
        .execute(
            "document.querySelector('#attempts').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        !scrolls_sideways(&b).await,
        "the phone page scrolls sideways"
    );
    b.shot("people-02-blocked-attempt-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // "This wasn't me": everything is locked, and no account offers an unlock.
    b.click("#attempts li.attempt button.not-me").await;
    b.find(".banner.all-locked").await;
    b.wait_text("li[data-account=sam] .why", "lock everything")
        .await;
    b.find("#unlock-hidden").await;
    let unlocks = b
        .client
        .find_all(Locator::Css(
            "li.account button.unlock, li.account button.lock",
        ))
        .await
        .unwrap();
    assert!(
        unlocks.is_empty(),
        "no per-account action under lock everything"
    );
    assert!(b
        .client
        .find_all(Locator::Css("#attempts button.this-was-me"))
        .await
        .unwrap()
        .is_empty());
    assert!(portal.locked(ISSUER, &key, "sam").await);
    let told = email_to(ADMIN).await;
    assert!(
        told.contains("Account: sam") && told.contains("203.0.113.77"),
        "{told}"
    );
    b.shot("people-03-not-me-everything-locked").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.shot("people-04-not-me-everything-locked-phone").await;

    // The account's history names the change and where it came from.
    b.click("li[data-account=sam] a.history").await;
    b.wait_text("#trail", "Lock everything turned on").await;
    b.shot("people-05-account-history-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.shot("people-06-account-history").await;
    b.sign_out().await;

    // The company's admin finds the change in the application's audit trail.
    b.sign_in(&base, ADMIN, PASSWORD).await;
    b.goto(&format!("{base}/companies/{}/apps/{}", company.id, app.id))
        .await;
    b.click("nav.sub a[href$='/audit']").await;
    b.wait_text("#trail", "Enrolled").await;
    b.shot("people-07-admin-audit-trail").await;

    b.close().await;
    portal.stop().await;
}

/// Whether the page is wider than the window.
async fn scrolls_sideways(b: &Browser) -> bool {
    b.client
        .execute(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap()
        == json!(true)
}
