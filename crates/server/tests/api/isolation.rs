//! Tenants: application A's keys and tokens never read or change B's accounts.

use crate::helpers::*;
use deadbolt::service::By;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_token_of_a_never_reads_b() {
    let t = TestApp::spawn().await;
    let a = t.app("a.example.com").await;
    let b = t.app("b.example.com").await;
    let key_a = t.key(&a).await;
    let key_b = t.key(&b).await;
    t.service
        .enroll(&By::CLI, &b.id, "shared", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &b.id, "shared").await.unwrap();
    // A's token about "shared" answers from A's side (not enrolled there → allow).
    assert!(!t.locked("a.example.com", &key_a, "shared").await);
    // A's key cannot speak for B.
    assert_refused(
        &t.check_raw(Some(&t.token("b.example.com", &key_a, "shared")), "{}")
            .await,
        401,
    );
    // B's own token says locked.
    assert!(t.locked("b.example.com", &key_b, "shared").await);
}

#[tokio::test]
async fn sdk_keys_act_only_on_their_company() {
    let t = TestApp::spawn().await;
    let a = t.app("sdk-a.example.com").await;
    let b = t.app("sdk-b.example.com").await;
    let key_b = t.key(&b).await;
    t.service
        .enroll(&By::CLI, &b.id, "victim", None)
        .await
        .unwrap();
    let (_, sdk_a) = t.service.create_sdk_key(&a.company_id).await.unwrap();
    let target = json!({"domain": "sdk-b.example.com", "userAccountId": "victim"});
    let unknown = json!({"domain": "nowhere.example.com", "userAccountId": "victim"});
    let got_b = t
        .sdk(Method::POST, "lock", &sdk_a, Some(target.clone()))
        .await;
    let got_unknown = t.sdk(Method::POST, "lock", &sdk_a, Some(unknown)).await;
    assert_refused(&got_b, 403);
    assert_refused(&got_unknown, 403);
    assert_eq!(
        got_b.1["message"].as_str().unwrap().replace("sdk-b", "X"),
        got_unknown.1["message"]
            .as_str()
            .unwrap()
            .replace("nowhere", "X"),
        "another company's application looks exactly like a missing one"
    );
    assert_refused(
        &t.sdk(Method::POST, "unlock", &sdk_a, Some(target.clone()))
            .await,
        403,
    );
    assert_refused(
        &t.sdk(
            Method::GET,
            "status?domain=sdk-b.example.com&userAccountId=victim",
            &sdk_a,
            None,
        )
        .await,
        403,
    );
    assert_refused(
        &t.sdk(
            Method::GET,
            "attempts?domain=sdk-b.example.com",
            &sdk_a,
            None,
        )
        .await,
        403,
    );
    let import = json!([{"domain": "sdk-b.example.com", "userAccountId": "planted", "email": "x@example.com"}]);
    assert_refused(
        &t.sdk(Method::POST, "importUsers", &sdk_a, Some(import))
            .await,
        400,
    );
    assert!(t
        .store
        .account(
            &b.id,
            &deadbolt_core::AccountNames::CaseInsensitive.key("planted")
        )
        .await
        .unwrap()
        .is_none());
    assert!(
        !t.locked("sdk-b.example.com", &key_b, "victim").await,
        "B's account unchanged"
    );
}
