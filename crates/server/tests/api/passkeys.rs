//! Passkeys against hostile requests: a forged or unreadable answer gets a clear 4xx and no
//! session; a challenge is used once and expires; one person cannot remove another's passkey.
//! (The ceremonies with a real authenticator are in the browser tests.)

use crate::helpers::*;
use crate::portal::Http;
use chrono::Duration;
use deadbolt_store::{AuditBy, NewPasskey};
use serde_json::{json, Value};

const PASSWORD: &str = "a long enough password";

fn body(page: &crate::portal::Page) -> Value {
    serde_json::from_str(&page.body).unwrap_or(Value::Null)
}

/// An answer shaped like an assertion, signed by nobody.
fn forged_assertion() -> Value {
    json!({
        "id": "AAAAAAAAAAAAAAAAAAAAAA",
        "rawId": "AAAAAAAAAAAAAAAAAAAAAA",
        "type": "public-key",
        "response": {
            "authenticatorData": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiQUFBQSIsIm9yaWdpbiI6Imh0dHA6Ly9sb2NhbGhvc3QifQ",
            "signature": "MEUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "userHandle": "AAECAwQFBgcICQoLDA0ODw"
        },
        "extensions": {}
    })
}

#[tokio::test]
async fn a_forged_or_unreadable_assertion_gets_a_clear_4xx_and_no_session() {
    let t = TestApp::spawn().await;
    t.service
        .create_person("ann@example.com", Some(PASSWORD), None)
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    let token = http.pre_csrf().await;

    // Without the page's token, nothing starts.
    let refused = http
        .post_json("/login/passkey/options", "", &json!({}))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    let start = http
        .post_json("/login/passkey/options", &token, &json!({}))
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let j = body(&start);
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["options"]["publicKey"]["rpId"], "localhost", "{j}");
    assert!(
        j["options"]["mediation"].is_null(),
        "a button, not autofill"
    );

    // Not an assertion at all.
    let garbage = http
        .post_json(
            "/login/passkey/finish",
            &token,
            &json!({"id": id, "credential": {"hello": [1, 2, 3]}}),
        )
        .await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(body(&garbage)["message"]
        .as_str()
        .unwrap()
        .contains("cannot be read"));
    // Its challenge was used up with it.
    let replay = http
        .post_json(
            "/login/passkey/finish",
            &token,
            &json!({"id": id, "credential": forged_assertion()}),
        )
        .await;
    assert_eq!(replay.status, 410, "{}", replay.body);

    // Shaped like one, signed by no passkey known here.
    let id = body(
        &http
            .post_json("/login/passkey/options", &token, &json!({}))
            .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = http
        .post_json(
            "/login/passkey/finish",
            &token,
            &json!({"id": id, "credential": forged_assertion()}),
        )
        .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(body(&forged)["message"]
        .as_str()
        .unwrap()
        .contains("could not be verified"));
    // Not JSON: refused by the body's reader.
    let not_json = http
        .post_json("/login/passkey/finish", &token, &json!("nope"))
        .await;
    assert!((400..500).contains(&not_json.status), "{}", not_json.status);

    // No session came of any of it.
    assert!(!http.cookies.contains_key("deadbolt_session"));
    assert_eq!(http.get("/me").await.status, 303);
    // And the second step does not start without a right password first.
    let second = http
        .post_json("/login/second-factor/options", &token, &json!({}))
        .await;
    assert_eq!(second.status, 410, "{}", second.body);
    t.stop().await;
}

#[tokio::test]
async fn the_registration_challenge_is_used_once_and_expires() {
    let t = TestApp::spawn().await;
    t.service
        .create_person("ann@example.com", Some(PASSWORD), None)
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login("ann@example.com", PASSWORD).await.status, 303);

    let page = http.get("/me/passkeys").await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    let start = http
        .post_json("/me/passkeys/options", &csrf, &json!({"name": "Laptop"}))
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let j = body(&start);
    let options = &j["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], "localhost", "{j}");
    assert_eq!(options["user"]["name"], "ann@example.com");
    assert_eq!(
        options["authenticatorSelection"]["residentKey"], "required",
        "{j}"
    );
    // The page's token went with it.
    let again = http
        .post_json("/me/passkeys/options", &csrf, &json!({"name": "Laptop"}))
        .await;
    assert_eq!(again.status, 403, "{}", again.body);

    // Five minutes later the challenge is gone: the answer is refused as expired, before it
    // is even read.
    t.clock.advance(Duration::minutes(5));
    let late = http
        .post_json(
            "/me/passkeys/finish",
            j["csrf"].as_str().unwrap(),
            &json!({"id": j["id"], "credential": {"not": "read"}}),
        )
        .await;
    assert_eq!(late.status, 410, "{}", late.body);
    assert!(body(&late)["message"].as_str().unwrap().contains("expired"));

    // In time, the same unreadable answer is read and refused as such.
    let csrf = http.get("/me/passkeys").await.csrf();
    let j = body(
        &http
            .post_json("/me/passkeys/options", &csrf, &json!({"name": "Laptop"}))
            .await,
    );
    let bad = http
        .post_json(
            "/me/passkeys/finish",
            j["csrf"].as_str().unwrap(),
            &json!({"id": j["id"], "credential": {"not": "read"}}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // A nameless passkey is refused before any challenge.
    let csrf = http.get("/me/passkeys").await.csrf();
    let nameless = http
        .post_json("/me/passkeys/options", &csrf, &json!({"name": "  "}))
        .await;
    assert_eq!(nameless.status, 400, "{}", nameless.body);
    let person = t
        .store
        .person_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(t.store.passkeys(&person.id).await.unwrap().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn one_person_cannot_remove_another_persons_passkey() {
    let t = TestApp::spawn().await;
    let ann = t
        .service
        .create_person("ann@example.com", Some(PASSWORD), None)
        .await
        .unwrap();
    t.service
        .create_person("bob@example.com", Some(PASSWORD), None)
        .await
        .unwrap();
    let anns = t
        .store
        .add_passkey(
            &NewPasskey {
                person_id: &ann.id,
                user_handle: "00000000-0000-4000-8000-000000000001",
                credential_id: "ann-credential",
                name: "Ann's laptop",
                credential: "{}",
                counter: 0,
            },
            &AuditBy::default(),
            t.service.now(),
        )
        .await
        .unwrap();

    let mut bob = Http::new(&t.url);
    assert_eq!(bob.login("bob@example.com", PASSWORD).await.status, 303);
    let page = bob.get("/me/passkeys").await;
    assert!(!page.body.contains("Ann's laptop"));
    let csrf = page.csrf();
    let refused = bob
        .post(
            &format!("/me/passkeys/{}/delete", anns.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(t.store.passkeys(&ann.id).await.unwrap(), vec![anns]);
    t.stop().await;
}

#[tokio::test]
async fn passkey_sign_ins_go_through_the_sign_in_throttle() {
    let t = TestApp::spawn().await;
    let mut http = Http::new(&t.url);
    let token = http.pre_csrf().await;
    // Each challenge counts as a try of this client until a sign-in succeeds: after the free
    // ones, a wait.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let page = http
            .post_json("/login/passkey/options", &token, &json!({}))
            .await;
        statuses.push(page.status);
        if page.status == 429 {
            assert!(body(&page)["message"]
                .as_str()
                .unwrap()
                .contains("Too many"));
        }
    }
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    t.stop().await;
}
