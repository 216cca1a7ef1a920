//! The SDK API: import, lock, unlock, status, attempts, and its authentication.

use crate::helpers::*;
use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

const DOMAIN: &str = "shop.example.com";

async fn setup() -> (TestApp, String, String) {
    let t = TestApp::spawn().await;
    let app = t.app(DOMAIN).await;
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&app.company_id).await.unwrap();
    (t, key, sdk)
}

fn users(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"first_name": "Ann", "last_name": format!("Lee {i}"), "email": format!("ann{i}@example.com"),
                            "domain": DOMAIN, "phone": "+1 555 0100", "userAccountId": format!("ann{i}")}))
            .collect(),
    )
}

#[tokio::test]
async fn import_is_idempotent_and_all_or_nothing() {
    let (t, _, sdk) = setup().await;
    let got = t
        .sdk(Method::POST, "importUsers", &sdk, Some(users(3000)))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["created"], 3000);
    assert_eq!(
        got.1["results"][0],
        json!({"userAccountId": "ann0", "domain": DOMAIN, "result": "created"})
    );
    let got = t
        .sdk(Method::POST, "importUsers", &sdk, Some(users(3001)))
        .await;
    assert_eq!(got.0, 202, "rows existed already");
    assert_eq!(
        (got.1["created"].clone(), got.1["existing"].clone()),
        (json!(1), json!(3000))
    );
    let app = t
        .store
        .application_by_issuer(DOMAIN)
        .await
        .unwrap()
        .unwrap();
    let acc = t.service.account(&app.id, "ann7").await.unwrap();
    assert_eq!(acc.person_email.as_deref(), Some("ann7@example.com"));

    // One bad row: 400, the errors listed, nothing imported.
    let mut rows = users(2);
    rows[0]["userAccountId"] = json!("fresh-1");
    rows[1]["userAccountId"] = json!("");
    let got = t.sdk(Method::POST, "importUsers", &sdk, Some(rows)).await;
    assert_eq!(got.0, 400);
    assert_eq!(got.1["errors"][0]["row"], 1);
    assert!(t
        .store
        .account(
            &app.id,
            &deadbolt_core::AccountNames::CaseInsensitive.key("fresh-1")
        )
        .await
        .unwrap()
        .is_none());
    for bad in [
        json!({"not": "an array"}),
        json!([{"domain": DOMAIN}]),
        json!([{"domain": DOMAIN, "userAccountId": 5}]),
        json!([{"domain": DOMAIN, "userAccountId": "x", "email": "not-an-email"}]),
    ] {
        assert_refused(
            &t.sdk(Method::POST, "importUsers", &sdk, Some(bad)).await,
            400,
        );
    }
}

#[tokio::test]
async fn lock_unlock_status_round_trip() {
    let (t, key, sdk) = setup().await;
    let target = json!({"domain": "https://SHOP.example.com/", "userAccountId": "ann0"});
    assert_refused(
        &t.sdk(Method::POST, "lock", &sdk, Some(target.clone()))
            .await,
        404,
    );
    t.sdk(Method::POST, "importUsers", &sdk, Some(users(1)))
        .await;
    assert_eq!(
        t.sdk(Method::POST, "lock", &sdk, Some(target.clone()))
            .await,
        (200, json!({"locked": true}))
    );
    assert!(t.locked(DOMAIN, &key, "ann0").await);
    let status = t
        .sdk(
            Method::GET,
            "status?domain=shop.example.com&userAccountId=ann0",
            &sdk,
            None,
        )
        .await;
    assert_eq!(
        status,
        (200, json!({"locked": true, "reason": "account_locked"}))
    );

    let mut window = target.clone();
    window["minutes"] = json!(10);
    let got = t.sdk(Method::POST, "unlock", &sdk, Some(window)).await;
    assert_eq!((got.0, got.1["locked"].clone()), (200, json!(false)));
    assert!(got.1["unlocked_until"].is_string());
    assert!(!t.locked(DOMAIN, &key, "ann0").await);
    t.clock.advance(Duration::minutes(10));
    assert!(t.locked(DOMAIN, &key, "ann0").await, "the window closed");

    assert_eq!(
        t.sdk(Method::POST, "unlock", &sdk, Some(target.clone()))
            .await,
        (200, json!({"locked": false}))
    );
    assert!(!t.locked(DOMAIN, &key, "ann0").await);
    for minutes in [json!(0), json!(-5), json!("ten"), json!(10_000_000)] {
        let mut bad = target.clone();
        bad["minutes"] = minutes;
        assert_refused(&t.sdk(Method::POST, "unlock", &sdk, Some(bad)).await, 400);
    }
    assert_refused(
        &t.sdk(Method::GET, "status?domain=shop.example.com", &sdk, None)
            .await,
        400,
    );
}

#[tokio::test]
async fn attempts_feed_for_a_siem() {
    let (t, key, sdk) = setup().await;
    for i in 0..5 {
        t.locked(DOMAIN, &key, &format!("u{i}")).await;
        t.clock.advance(Duration::seconds(1));
    }
    let store = t.store.clone();
    eventually(|| {
        let store = store.clone();
        async move {
            let app = store.application_by_issuer(DOMAIN).await.unwrap().unwrap();
            store.recent_attempts(&app.id, 10).await.unwrap().len() == 5
        }
    })
    .await;
    let newest = t
        .sdk(
            Method::GET,
            "attempts?domain=shop.example.com&limit=2",
            &sdk,
            None,
        )
        .await;
    assert_eq!(newest.0, 200);
    let list = newest.1["attempts"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|a| a["account"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["u4", "u3"]
    );
    let since = (t0() + Duration::seconds(3)).to_rfc3339();
    let got = t
        .sdk(
            Method::GET,
            &format!(
                "attempts?domain=shop.example.com&since={}",
                urlencode(&since)
            ),
            &sdk,
            None,
        )
        .await;
    let list = got.1["attempts"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|a| a["account"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["u3", "u4"]
    );
    assert_refused(
        &t.sdk(
            Method::GET,
            "attempts?domain=shop.example.com&since=yesterday",
            &sdk,
            None,
        )
        .await,
        400,
    );
}

#[tokio::test]
async fn sdk_authentication() {
    let (t, _, sdk) = setup().await;
    let target = Some(json!({"domain": DOMAIN, "userAccountId": "x"}));
    let (id, secret) = sdk.split_once('.').unwrap();
    for bad in [
        "",
        "garbage",
        &format!("{id}.wrong"),
        &format!("other.{secret}"),
        &format!("{id}.{secret}x"),
    ] {
        assert_refused(&t.sdk(Method::POST, "lock", bad, target.clone()).await, 401);
    }
    let r = t
        .http
        .post(format!("{}/nl3/api/v1/sdk/lock", t.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no header at all");
    t.service.revoke_sdk_key(id).await.unwrap();
    assert_refused(&t.sdk(Method::POST, "lock", &sdk, target).await, 401);
}

/// The key is judged before anything the call names, as when it was read before the body: a
/// bad key gets 401 whatever the body or query says (unreadable, naming no application or
/// another company's, too large), and only a good key learns what was wrong with its call.
#[tokio::test]
async fn a_bad_key_is_refused_before_what_the_call_names() {
    let (t, _, sdk) = setup().await;
    let other = t.service.create_company("Other").await.unwrap();
    t.service
        .create_application(
            &other.id,
            "other.example.com",
            None,
            deadbolt_core::UnenrolledPolicy::Allow,
            deadbolt_core::AccountState::Unlocked,
        )
        .await
        .unwrap();
    let alice = json!([{"domain": DOMAIN, "userAccountId": "alice"}]);
    assert_eq!(
        t.sdk(Method::POST, "importUsers", &sdk, Some(alice))
            .await
            .0,
        200
    );
    let (id, secret) = sdk.split_once('.').unwrap();
    let call = |method: Method, path: &str, token: Option<&str>, body: String| {
        let mut req = t
            .http
            .request(method, format!("{}/nl3/api/v1/sdk/{path}", t.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            req = req.header("x-nl3-server-api-token", token);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let named = |domain: &str| json!({"domain": domain, "userAccountId": "alice"}).to_string();
    let bodies = [
        ("a good body", named(DOMAIN)),
        ("no JSON", "{not json".to_string()),
        ("no application", named("nowhere.example.com")),
        ("another company's application", named("other.example.com")),
        ("a body over the limit", "x".repeat(70 * 1024)),
    ];
    let wrong_secret = format!("{id}.wrong");
    let unknown_id = format!("other.{secret}");
    let bad_keys = [
        None,
        Some("garbage"),
        Some(&*wrong_secret),
        Some(&*unknown_id),
    ];
    for path in ["lock", "unlock"] {
        for (what, body) in &bodies {
            for key in bad_keys {
                let got = call(Method::POST, path, key, body.clone()).await;
                assert_eq!(got.0, 401, "{path} with {what} and key {key:?}: {}", got.1);
            }
        }
        let expected = [200, 400, 403, 403, 413];
        for ((what, body), status) in bodies.iter().zip(expected) {
            let got = call(Method::POST, path, Some(&sdk), body.clone()).await;
            assert_eq!(
                got.0, status,
                "{path} with {what} and the good key: {}",
                got.1
            );
        }
    }
    for key in bad_keys {
        for query in ["", "?domain=other.example.com&userAccountId=alice"] {
            let got = call(Method::GET, &format!("status{query}"), key, String::new()).await;
            assert_eq!(got.0, 401, "status{query} with key {key:?}: {}", got.1);
        }
    }
    let status = |query: &'static str| {
        call(
            Method::GET,
            &format!("status{query}"),
            Some(&sdk),
            String::new(),
        )
    };
    assert_eq!(status("").await.0, 400, "no query, good key");
    assert_eq!(
        status("?domain=other.example.com&userAccountId=alice")
            .await
            .0,
        403
    );
    assert_eq!(
        status("?domain=shop.example.com&userAccountId=alice")
            .await
            .0,
        200
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
