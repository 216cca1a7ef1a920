//! Protocol fidelity as real clients exercise it: default ports in audiences and issuers,
//! slashes in paths, and one account per name whatever its case or Unicode form — on both
//! engines, through checks, the SDK and the check cache.

use crate::helpers::*;
use deadbolt::service::By;
use deadbolt_core::UnenrolledPolicy;
use reqwest::Method;
use serde_json::{json, Value};

const ISSUER: &str = "app.example.com";

async fn setup_public(public_url: &str) -> (TestApp, String) {
    let url = public_url.to_string();
    let t = TestApp::spawn_with(move |c| c.public_url = Some(url)).await;
    let key = t.locked_account(ISSUER, "alice").await;
    (t, key)
}

async fn check_aud(t: &TestApp, key: &str, aud: &str) -> (u16, Value) {
    let mut claims = t.claims(ISSUER, "alice");
    claims["aud"] = json!(aud);
    t.check_raw(Some(&sign(&claims, key)), "{}").await
}

#[tokio::test]
async fn default_ports_name_one_audience_and_other_ports_stay_distinct() {
    // (the server's public URL, audiences that must be accepted, audiences that must not)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "https://api.example.com:443",
            &[
                "api.example.com",
                "https://api.example.com",
                "https://api.example.com/",
                "api.example.com:443",
                "https://API.example.com:443/",
            ],
            &[
                "https://api.example.com:8443",
                "https://api.example.com:80",
                "http://api.example.com:443",
                "api.example.com:444",
                "api.example.com.evil",
            ],
        ),
        (
            "https://api.example.com",
            &[
                "api.example.com:443",
                "https://api.example.com:443",
                "HTTPS://API.EXAMPLE.COM",
            ],
            &["api.example.com:8443", "https://api.example.com:4443"],
        ),
        (
            "http://api.example.com:80",
            &[
                "api.example.com",
                "http://api.example.com",
                "api.example.com:80",
            ],
            &["http://api.example.com:8080", "https://api.example.com:80"],
        ),
        (
            "https://api.example.com:8443",
            &["api.example.com:8443", "https://api.example.com:8443/"],
            &[
                "api.example.com",
                "https://api.example.com",
                "api.example.com:443",
            ],
        ),
    ];
    for (public, accepted, refused) in cases {
        let (t, key) = setup_public(public).await;
        for aud in *accepted {
            let got = check_aud(&t, &key, aud).await;
            assert_eq!(got.0, 200, "public {public}, aud {aud}: {}", got.1);
            assert_eq!(got.1["locked"], true, "public {public}, aud {aud}");
        }
        for aud in *refused {
            let got = check_aud(&t, &key, aud).await;
            assert_refused(&got, 401);
            assert_eq!(
                got.1["message"], "wrong audience",
                "public {public}, aud {aud}"
            );
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn issuers_with_default_ports_name_one_application() {
    for (registered, sent) in [
        ("https://app.example.com:443", "app.example.com"),
        ("app.example.com", "https://app.example.com:443/"),
        ("http://legacy.example.com:80", "legacy.example.com"),
    ] {
        let t = TestApp::spawn().await;
        let app = t.app(registered).await;
        let key = t.key(&app).await;
        t.service
            .enroll(&By::CLI, &app.id, "alice", None)
            .await
            .unwrap();
        t.service.lock(&By::CLI, &app.id, "alice").await.unwrap();
        assert!(t.locked(sent, &key, "alice").await, "{registered} / {sent}");
        let mut other = t.claims("app.example.com:8443", "alice");
        other["iss"] = json!("app.example.com:8443");
        let got = t.check_raw(Some(&sign(&other, &key)), "{}").await;
        assert_refused(&got, 401);
        t.stop().await;
    }
}

#[tokio::test]
async fn repeated_and_trailing_slashes_reach_the_route() {
    let t = TestApp::spawn().await;
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "alice", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "alice").await.unwrap();
    let token = t.token(ISSUER, &key, "alice");
    let post = |path: &'static str| {
        let req = t
            .http
            .post(format!("{}{path}", t.url))
            .header("x-nl3-authorization-token", &token)
            .body("{}");
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // What the Python sample posts with an API_URI ending in `/`, and other variants.
    for path in [
        "/nl3/api/v1/accountProtectionCheck",
        "//nl3/api/v1/accountProtectionCheck",
        "/nl3/api/v1/accountProtectionCheck/",
        "//nl3//api/v1///accountProtectionCheck//",
    ] {
        assert_eq!(post(path).await, (200, json!({"locked": true})), "{path}");
    }
    // Paths that are another route stay 404 (JSON, no decision).
    for path in [
        "/nl3/api/v1/accountProtectionCheckX",
        "/nl3/api/v1/accountProtectionCheck/x",
        "/nl3/api/v2/accountProtectionCheck",
    ] {
        let (status, body) = post(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.get("locked").is_none());
    }
    // The SDK's routes too, with their query kept.
    let company = t.service.application(&app.id).await.unwrap().company_id;
    let (_, sdk) = t.service.create_sdk_key(&company).await.unwrap();
    let resp = t
        .http
        .get(format!(
            "{}//nl3/api/v1/sdk/status/?domain={ISSUER}&userAccountId=alice",
            t.url
        ))
        .header("x-nl3-server-api-token", &sdk)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["locked"], true);
    t.stop().await;
}

/// The identity matrix, run on the given server.
async fn one_account_per_name(t: &TestApp) {
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    let company = app.company_id.clone();
    let (_, sdk) = t.service.create_sdk_key(&company).await.unwrap();
    let import = |rows: Value| t.sdk(Method::POST, "importUsers", &sdk, Some(rows));

    // Enrolled and locked as the directory spells it; signed in as the user typed it.
    let got = import(json!([{"domain": ISSUER, "userAccountId": "Alice@Contoso.com", "email": "alice@contoso.com"}])).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let lock = t
        .sdk(
            Method::POST,
            "lock",
            &sdk,
            Some(json!({"domain": ISSUER, "userAccountId": "ALICE@contoso.com"})),
        )
        .await;
    assert_eq!(lock.0, 200, "{}", lock.1);
    for sub in [
        "alice@contoso.com",
        "Alice@Contoso.com",
        "ALICE@CONTOSO.COM",
    ] {
        assert!(t.locked(ISSUER, &key, sub).await, "{sub}");
    }
    // The same name imported again in another case is the same account.
    let again = import(json!([{"domain": ISSUER, "userAccountId": "alice@CONTOSO.com"}])).await;
    assert_eq!(again.0, 202, "{}", again.1);
    assert_eq!(again.1["results"][0]["result"], "exists");

    // Status and unlock through yet other spellings.
    let status = t
        .sdk(
            Method::GET,
            &format!("status?domain={ISSUER}&userAccountId=aLiCe%40contoso.com"),
            &sdk,
            None,
        )
        .await;
    assert_eq!(status.1["locked"], true, "{}", status.1);
    assert_eq!(status.1["reason"], "account_locked");
    let unlock = t
        .sdk(
            Method::POST,
            "unlock",
            &sdk,
            Some(json!({"domain": ISSUER, "userAccountId": "alice@contoso.COM"})),
        )
        .await;
    assert_eq!(unlock.0, 200, "{}", unlock.1);
    assert!(!t.locked(ISSUER, &key, "ALICE@contoso.com").await);

    // NFC and NFD spellings of café are one account.
    t.service
        .enroll(&By::CLI, &app.id, "caf\u{e9}", None)
        .await
        .unwrap();
    t.service
        .lock(&By::CLI, &app.id, "caf\u{e9}")
        .await
        .unwrap();
    assert!(t.locked(ISSUER, &key, "cafe\u{301}").await);
    assert!(t.locked(ISSUER, &key, "CAF\u{c9}").await);

    // The cache warmed through one spelling sees a change made through another.
    t.service
        .enroll(&By::CLI, &app.id, "carol", None)
        .await
        .unwrap();
    assert!(!t.locked(ISSUER, &key, "carol").await);
    assert!(!t.locked(ISSUER, &key, "Carol").await);
    let lock = t
        .sdk(
            Method::POST,
            "lock",
            &sdk,
            Some(json!({"domain": ISSUER, "userAccountId": "CAROL"})),
        )
        .await;
    assert_eq!(lock.0, 200);
    assert!(t.locked(ISSUER, &key, "carol").await);
    assert!(t.locked(ISSUER, &key, "Carol").await);

    // Invisible and bidirectional characters: refused at enrolment, naming the character;
    // a check carrying one is not the account's (here: not enrolled, allowed by policy).
    for (name, named) in [
        ("ali\u{200B}ce@contoso.com", "U+200B ZERO WIDTH SPACE"),
        ("\u{202E}moc.osotnoc@ecila", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("alice\u{7}", "U+0007"),
    ] {
        let got = import(json!([{"domain": ISSUER, "userAccountId": name}])).await;
        assert_eq!(got.0, 400, "{}", got.1);
        let message = got.1["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
        let (status, body) = t.check_raw(Some(&t.token(ISSUER, &key, name)), "{}").await;
        assert_eq!(status, 200);
        assert_eq!(body["locked"], false, "{name:?}");
    }
    // With the unenrolled policy "deny", the same checks are refused.
    let mut settings = deadbolt_store::AppSettings {
        unenrolled: UnenrolledPolicy::Deny,
        default_state: app.default_state,
        audit_mode: false,
    };
    t.store
        .update_application(&app.id, &settings)
        .await
        .unwrap();
    assert!(t.locked(ISSUER, &key, "ali\u{200B}ce@contoso.com").await);
    settings.unenrolled = UnenrolledPolicy::Allow;
    t.store
        .update_application(&app.id, &settings)
        .await
        .unwrap();

    // Attempts are recorded under the name as enrolled, whatever spelling signed in.
    assert!(!t.locked(ISSUER, &key, "ALICE@CONTOSO.COM").await);
    let app_id = app.id.clone();
    eventually(|| {
        let service = t.service.clone();
        let app_id = app_id.clone();
        async move {
            let list = service.attempts(&app_id, 100).await.unwrap();
            list.iter().any(|a| a.account == "Alice@Contoso.com")
                && !list.iter().any(|a| a.account == "ALICE@CONTOSO.COM")
        }
    })
    .await;

    // An application with exact names: names that differ by case are different accounts.
    let exact = t.app("exact.example.com").await;
    let exact_key = t.key(&exact).await;
    t.service
        .set_account_names(&exact.id, deadbolt_core::AccountNames::Exact)
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &exact.id, "Dave", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &exact.id, "Dave").await.unwrap();
    assert!(t.locked("exact.example.com", &exact_key, "Dave").await);
    assert!(!t.locked("exact.example.com", &exact_key, "dave").await);
    // Enrolling "dave" makes a second account; switching to case-insensitive is then refused
    // with both names, and changes nothing.
    t.service
        .enroll(&By::CLI, &exact.id, "dave", None)
        .await
        .unwrap();
    let err = t
        .service
        .set_account_names(&exact.id, deadbolt_core::AccountNames::CaseInsensitive)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[Dave, dave]"), "{err}");
    assert!(!t.locked("exact.example.com", &exact_key, "dave").await);
    // Merged (locked, since Dave was), the switch goes through, and every spelling is locked.
    t.service
        .merge_accounts(&By::CLI, &exact.id, "Dave", "dave")
        .await
        .unwrap();
    t.service
        .set_account_names(&exact.id, deadbolt_core::AccountNames::CaseInsensitive)
        .await
        .unwrap();
    assert!(t.locked("exact.example.com", &exact_key, "dAVE").await);
}

#[tokio::test]
async fn one_account_per_name_on_sqlite() {
    let t = TestApp::spawn().await;
    one_account_per_name(&t).await;
    t.stop().await;
}

#[tokio::test]
async fn one_account_per_name_on_postgres() {
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    one_account_per_name(&t).await;
    t.stop().await;
}

#[tokio::test]
async fn names_that_fold_together_from_an_older_store_lock_if_any_would() {
    // An SQLite store as an older Deadbolt left it: "Erin" and "erin" enrolled apart.
    let t = TestApp::spawn().await;
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    let path = t.dir.path().join("deadbolt.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (i, (name, state)) in [("Erin", "unlocked"), ("erin", "locked")]
            .iter()
            .enumerate()
        {
            conn.execute(
                "INSERT INTO accounts (id, app_id, account, person_id, state, unlocked_until, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, NULL, ?4, NULL, ?5, ?5)",
                rusqlite::params![format!("legacy-{i}"), app.id, name, state, i as i64],
            )
            .unwrap();
        }
    }
    // Keys are filled in when a store is opened: as a restarted server would.
    let reopened = deadbolt::Service::open(
        &t.db_url,
        &deadbolt::MasterKeySource::default(),
        t.clock.clone(),
    )
    .await
    .unwrap();
    let collisions = reopened.account_collisions(Some(&app.id)).await.unwrap();
    assert_eq!(collisions.len(), 1);
    assert_eq!(collisions[0].names, vec!["Erin", "erin"]);
    // Every spelling answers locked: one of the two is.
    for sub in ["Erin", "erin", "ERIN"] {
        assert!(t.locked(ISSUER, &key, sub).await, "{sub}");
    }
    let status = reopened
        .status(&reopened.application(&app.id).await.unwrap(), "ERIN")
        .await
        .unwrap();
    assert!(status.locked);
    t.stop().await;
}

#[tokio::test]
async fn pairing_in_another_case_pairs_the_enrolled_account() {
    use sha2::Digest;
    let t = TestApp::spawn().await;
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&app.company_id).await.unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "Frank@Example.com", None)
        .await
        .unwrap();
    let person = t
        .service
        .create_person("frank@example.com", None, None)
        .await
        .unwrap();
    let code = "PAIRCODE1";
    let hash: String = sha2::Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let later = t0() + chrono::Duration::minutes(10);
    t.store
        .create_pairing_code(&hash, &person.id, t0(), later)
        .await
        .unwrap();
    let got = t
        .sdk(
            Method::POST,
            "pair",
            &sdk,
            Some(json!({"code": code, "domain": ISSUER, "userAccountId": "FRANK@example.COM"})),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["userAccountId"], "Frank@Example.com");
    assert_eq!(
        got.1["enrolled"], false,
        "the enrolled account, not a new one"
    );
    // Paired: the person's master lock now locks every spelling.
    t.service
        .set_master_lock(&By::CLI, "frank@example.com", true)
        .await
        .unwrap();
    assert!(t.locked(ISSUER, &key, "frank@example.com").await);
    let accounts = t.store.person_accounts(&person.id).await.unwrap();
    assert_eq!(accounts.len(), 1);
    t.stop().await;
}
