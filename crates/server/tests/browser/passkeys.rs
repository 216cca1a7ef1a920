//! Passkeys in the browser, with Chromium's virtual authenticator (WebDriver's WebAuthn
//! commands): a person registers one and signs in with it alone and after the password; the
//! operator requires a second factor and an admin must add one first; the last one goes only
//! after a fresh sign-in; a lost one is replaced through the password reset link.
//!
//! WebAuthn needs a secure origin and a domain name: the portal is opened at
//! `http://localhost:PORT` (the server, without a public URL, is its relying party there).

use crate::harness::*;
use axum::http::Method;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{json, Value};

const PASSWORD: &str = "a long enough password";

/// One of WebDriver's WebAuthn extension commands (fantoccini has none of its own).
#[derive(Debug)]
struct WebAuthn {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// Plugs a platform authenticator (user verification, resident keys) into the browser; its id.
async fn add_authenticator(b: &Browser) -> String {
    let out = b
        .client
        .issue_cmd(WebAuthn {
            method: Method::POST,
            path: "authenticator".into(),
            body: Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
            })),
        })
        .await
        .unwrap();
    out.as_str().expect("an authenticator id").to_string()
}

async fn remove_authenticator(b: &Browser, id: &str) {
    b.client
        .issue_cmd(WebAuthn {
            method: Method::DELETE,
            path: format!("authenticator/{id}"),
            body: None,
        })
        .await
        .unwrap();
}

/// The credentials the virtual authenticator holds.
async fn credentials(b: &Browser, id: &str) -> Vec<Value> {
    let out = b
        .client
        .issue_cmd(WebAuthn {
            method: Method::GET,
            path: format!("authenticator/{id}/credentials"),
            body: None,
        })
        .await
        .unwrap();
    out.as_array().cloned().unwrap_or_default()
}

fn local(portal: &TestPortal) -> String {
    format!("http://localhost:{}", portal.port)
}

/// Adds a passkey named `name` on the passkeys page and waits for it in the list.
async fn register(b: &Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/me/passkeys")).await;
    b.fill("#passkey-name", name).await;
    b.click("#passkey-add").await;
    b.wait_text("#passkeys", name).await;
}

async fn sign_in_with_passkey(b: &Browser, base: &str) {
    b.goto(&format!("{base}/login")).await;
    b.click("#passkey-sign-in").await;
    b.find("#sign-out").await;
}

#[tokio::test]
async fn a_person_signs_in_with_a_passkey_alone_and_after_the_password() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let base = local(&portal);
    let ann = portal.person("ann@passkeys.test", PASSWORD).await;
    let b = Browser::start().await;
    let authenticator = add_authenticator(&b).await;

    b.sign_in(&base, "ann@passkeys.test", PASSWORD).await;
    b.goto(&format!("{base}/me/passkeys")).await;
    b.find("#passkeys-empty").await;
    register(&b, &base, "Laptop").await;
    b.wait_text("#notice", "Created").await;
    b.shot("passkeys-page").await;
    let stored = portal.store.passkeys(&ann.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "Laptop");
    assert_eq!(stored[0].last_used_at, None);
    let held = credentials(&b, &authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["isResidentCredential"], json!(true), "{held:?}");
    // The registration is in the person's trail.
    let trail = portal
        .store
        .account_audit("", Some(&ann.id), None, 10)
        .await
        .unwrap();
    assert_eq!(
        trail[0].action,
        deadbolt_store::AuditAction::PasskeyAdded,
        "{trail:?}"
    );

    // The passkey alone.
    b.sign_out().await;
    b.shot("passkeys-sign-in").await;
    sign_in_with_passkey(&b, &base).await;
    assert!(b.url().await.ends_with("/me"), "{}", b.url().await);
    let used = portal.store.passkeys(&ann.id).await.unwrap();
    assert!(used[0].last_used_at.is_some());

    // The password is no longer enough: the passkey is asked for after it.
    b.sign_out().await;
    b.goto(&format!("{base}/login")).await;
    b.fill("#email", "ann@passkeys.test").await;
    b.fill("#password", PASSWORD).await;
    b.click("#login-form button[type=submit]").await;
    b.find("#passkey-second-factor").await;
    assert!(b.url().await.ends_with("/login/second-factor"));
    b.shot("passkeys-second-factor").await;
    b.click("#passkey-second-factor").await;
    b.find("#sign-out").await;
    assert!(b.url().await.ends_with("/me"), "{}", b.url().await);

    // Over plain HTTP, a right password alone gives no session.
    let mut http = Http::new(&portal);
    let answer = http.login("ann@passkeys.test", PASSWORD).await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.location(), "/login/second-factor");
    assert!(!http.cookies.contains_key("deadbolt_session"));
    assert_eq!(http.get("/me").await.location(), "/login");

    // At 127.0.0.1 the browser refuses the server's passkeys, and the page says where they work.
    b.sign_out().await;
    b.goto(&format!("{}/login", portal.url)).await;
    b.click("#passkey-sign-in").await;
    b.wait_text("#passkey-error", "belong to localhost").await;

    b.close().await;
    portal.stop().await;
}

#[tokio::test]
async fn the_operator_requires_a_second_factor_and_an_admin_adds_a_passkey_first() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let base = local(&portal);
    let operator = "operator@passkeys.test";
    deadbolt::portal::create_operator(&portal.service, operator, PASSWORD)
        .await
        .unwrap();
    let company = portal.service.create_company("Initech").await.unwrap();
    let admin = portal.person("admin@initech.test", PASSWORD).await;
    portal
        .service
        .grant_role(&admin.id, "admin", &company.id, t0())
        .await
        .unwrap();
    let b = Browser::start().await;
    add_authenticator(&b).await;

    // The operator turns the requirement on; having no passkey, they are sent to add one.
    b.sign_in(&base, operator, PASSWORD).await;
    b.goto(&format!("{base}/operator")).await;
    b.click("#second-factor-required").await;
    b.click("#second-factor-save").await;
    b.find("#passkey-required").await;
    assert!(b.url().await.ends_with("/me/passkeys"), "{}", b.url().await);
    let trail = portal.service.settings_audit(10).await.unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].by.actor_name.as_deref(), Some(operator));
    assert_eq!(trail[0].new.as_ref().unwrap().state, "on");
    b.sign_out().await;

    // The admin, without a passkey: every page leads to the passkeys page.
    b.sign_in(&base, "admin@initech.test", PASSWORD).await;
    b.find("#passkey-required").await;
    b.goto(&format!("{base}/companies/{}", company.id)).await;
    b.find("#passkey-required").await;
    assert!(b.url().await.ends_with("/me/passkeys"), "{}", b.url().await);
    b.shot("passkeys-required").await;
    // And nothing can be changed meanwhile.
    let mut http = Http::new(&portal);
    http.login("admin@initech.test", PASSWORD).await;
    let page = http.get("/me").await;
    assert_eq!(page.location(), "/me/passkeys");
    let csrf = http.get("/me/passkeys").await.csrf();
    let refused = http
        .post(
            &format!("/companies/{}/apps", company.id),
            &[("csrf", &csrf), ("issuer", "x.initech.test")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(portal
        .service
        .applications(Some(&company.id))
        .await
        .unwrap()
        .is_empty());

    // With a passkey, the company's pages open.
    register(&b, &base, "Work laptop").await;
    b.goto(&format!("{base}/companies/{}", company.id)).await;
    b.find("#app-form").await;
    // And its last passkey cannot be removed while the requirement holds.
    b.goto(&format!("{base}/me/passkeys")).await;
    b.click("#passkeys button[type=submit]").await;
    b.wait_text("#passkey-remove-error", "add another passkey")
        .await;
    assert_eq!(portal.store.passkeys(&admin.id).await.unwrap().len(), 1);
    b.sign_out().await;

    // The operator, with a passkey of their own, sees the setting and who changed it.
    b.sign_in(&base, operator, PASSWORD).await;
    register(&b, &base, "Operator key").await;
    b.goto(&format!("{base}/operator")).await;
    b.wait_text(
        "#second-factor-changed",
        "Turned on by operator@passkeys.test",
    )
    .await;
    assert!(b
        .find("#second-factor-required")
        .await
        .is_selected()
        .await
        .unwrap());
    b.shot("passkeys-operator-setting").await;

    b.close().await;
    portal.stop().await;
}

#[tokio::test]
async fn the_last_passkey_goes_after_a_fresh_sign_in_and_the_reset_link_recovers_a_lost_one() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let base = local(&portal);
    let email = "bea@passkeys.test";
    let bea = portal.person(email, PASSWORD).await;
    let b = Browser::start().await;
    let first = add_authenticator(&b).await;
    b.sign_in(&base, email, PASSWORD).await;
    register(&b, &base, "Laptop").await;

    // Ten minutes later, the last passkey asks for a fresh sign-in.
    portal.clock.advance(chrono::Duration::minutes(10));
    b.goto(&format!("{base}/me/passkeys")).await;
    b.click("#passkeys button[type=submit]").await;
    b.wait_text("#passkey-remove-error", "fresh sign-in").await;
    b.shot("passkeys-fresh-sign-in").await;
    assert_eq!(portal.store.passkeys(&bea.id).await.unwrap().len(), 1);
    b.click("#sign-in-again").await;
    b.find("#login-form").await;
    assert!(
        b.url().await.contains("next=%2Fme%2Fpasskeys"),
        "{}",
        b.url().await
    );
    b.click("#passkey-sign-in").await;
    b.find("#passkeys").await;
    assert!(b.url().await.ends_with("/me/passkeys"), "{}", b.url().await);
    b.click("#passkeys button[type=submit]").await;
    b.find("#passkeys-empty").await;
    assert!(portal.store.passkeys(&bea.id).await.unwrap().is_empty());

    // A passkey again, then the authenticator is lost.
    register(&b, &base, "Old phone").await;
    remove_authenticator(&b, &first).await;
    b.sign_out().await;
    b.goto(&format!("{base}/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("#login-form button[type=submit]").await;
    b.find("#passkey-second-factor").await;
    // The reset link signs in without it.
    b.goto(&format!("{base}/reset")).await;
    b.fill("#email", email).await;
    b.click("main form button[type=submit]").await;
    let link = emailed_link(email).await.replace(&portal.url, &base);
    b.goto(&link).await;
    b.fill("#password", "another long password").await;
    b.fill("#confirm", "another long password").await;
    b.click("#welcome-form button[type=submit]").await;
    b.find("#sign-out").await;
    // A new passkey on a new authenticator, and the lost one removed.
    add_authenticator(&b).await;
    register(&b, &base, "New phone").await;
    b.goto(&format!("{base}/me/passkeys")).await;
    b.click("#passkeys tr:first-child button[type=submit]")
        .await;
    b.wait_text("#notice", "Deleted").await;
    let left = portal.store.passkeys(&bea.id).await.unwrap();
    assert_eq!(
        left.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["New phone"]
    );
    b.sign_out().await;
    sign_in_with_passkey(&b, &base).await;
    b.goto(&format!("{base}/me/passkeys")).await;
    b.wait_text("#passkeys", "New phone").await;

    b.close().await;
    portal.stop().await;
}

/// Puts a credential (as `credentials` lists it) into an authenticator: a copy of a passkey.
async fn add_credential(b: &Browser, authenticator: &str, credential: &Value) {
    b.client
        .issue_cmd(WebAuthn {
            method: Method::POST,
            path: format!("authenticator/{authenticator}/credential"),
            body: Some(credential.clone()),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_copied_authenticator_whose_counter_went_back_is_refused() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let base = local(&portal);
    let cat = portal.person("cat@passkeys.test", PASSWORD).await;
    let b = Browser::start().await;
    let original = add_authenticator(&b).await;
    b.sign_in(&base, "cat@passkeys.test", PASSWORD).await;
    register(&b, &base, "Security key").await;
    b.sign_out().await;

    // A copy taken now, then the original is used once more: the store's counter moves on.
    sign_in_with_passkey(&b, &base).await;
    let copy = credentials(&b, &original).await.remove(0);
    let copied_count = copy["signCount"].as_i64().unwrap();
    assert!(copied_count > 0, "the virtual authenticator counts: {copy}");
    b.sign_out().await;
    sign_in_with_passkey(&b, &base).await;
    let stored = portal.store.passkeys(&cat.id).await.unwrap().remove(0);
    assert!(stored.counter > copied_count, "{stored:?}");
    b.sign_out().await;

    // The copy, in another authenticator, shows a count already seen: refused, no session.
    remove_authenticator(&b, &original).await;
    let clone = add_authenticator(&b).await;
    add_credential(&b, &clone, &copy).await;
    b.goto(&format!("{base}/login")).await;
    b.click("#passkey-sign-in").await;
    b.wait_text("#passkey-error", "counter went backwards")
        .await;
    assert!(b.url().await.contains("/login"), "{}", b.url().await);
    let kept = portal.store.passkeys(&cat.id).await.unwrap().remove(0);
    assert_eq!(
        kept.counter, stored.counter,
        "the refused use changed nothing"
    );

    b.close().await;
    portal.stop().await;
}
