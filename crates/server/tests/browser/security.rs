//! Security of the portal: headers, CSRF, session fixation, sign-in throttling, and tenants
//! that cannot reach each other's pages, even by guessing URLs.

use crate::harness::*;
use deadbolt_core::{AccountState, UnenrolledPolicy};

const PASSWORD: &str = "a long enough password";

#[tokio::test]
async fn security_headers_on_portal_pages() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    portal.person("ann@example.test", PASSWORD).await;
    let mut http = Http::new(&portal);
    let login = http.get("/login").await;
    let me = {
        http.login("ann@example.test", PASSWORD).await;
        http.get("/me").await
    };
    assert_eq!(me.status, 200);
    for page in [&login, &me] {
        let h = |k: &str| {
            page.headers
                .get(k)
                .unwrap_or_else(|| panic!("no {k}"))
                .to_str()
                .unwrap()
                .to_string()
        };
        let csp = h("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert_eq!(h("cache-control"), "no-store");
        assert!(!page.body.contains("<script>"), "no inline scripts");
        assert!(!page.body.contains(" style="), "no inline styles");
    }
    // The session cookie is out of reach of scripts and of other sites' requests.
    let set = login.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    portal.stop().await;
}

#[tokio::test]
async fn forms_refuse_missing_or_wrong_csrf_tokens() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let ann = portal.person("ann@example.test", PASSWORD).await;
    let mut http = Http::new(&portal);

    // Sign-in itself needs the form's token.
    let no_token = http
        .post(
            "/login",
            &[("email", "ann@example.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(no_token.status, 403);
    let ok = http.login("ann@example.test", PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let csrf = http.get("/me").await.csrf();

    for form in [
        vec![("on", "1")],
        vec![("on", "1"), ("csrf", "forged")],
        vec![("on", "1"), ("csrf", "")],
    ] {
        let page = http.post("/me/lock-all", &form).await;
        assert_eq!(page.status, 403, "{form:?}");
    }
    let p = portal.store.person(&ann.id).await.unwrap().unwrap();
    assert!(!p.master_locked, "a refused form changed nothing");
    let page = http
        .post("/me/lock-all", &[("on", "1"), ("csrf", &csrf)])
        .await;
    assert_eq!(page.status, 303);
    let p = portal.store.person(&ann.id).await.unwrap().unwrap();
    assert!(p.master_locked);

    // Another session's token is no good either.
    let mut other = Http::new(&portal);
    other.login("ann@example.test", PASSWORD).await;
    let page = other
        .post("/me/lock-all", &[("on", "0"), ("csrf", &csrf)])
        .await;
    assert_eq!(page.status, 403);
    portal.stop().await;
}

#[tokio::test]
async fn sign_in_starts_a_new_session_and_sign_out_ends_it() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    portal.person("ann@example.test", PASSWORD).await;
    let b = Browser::start().await;

    // A session id planted before sign-in (session fixation) is replaced, and worthless.
    b.goto(&format!("{}/login", portal.url)).await;
    b.client
        .execute(
            "document.cookie = 'deadbolt_session=planted-by-an-attacker; path=/';",
            vec![],
        )
        .await
        .unwrap();
    b.sign_in(&portal.url, "ann@example.test", PASSWORD).await;
    let session = b
        .client
        .get_named_cookie("deadbolt_session")
        .await
        .unwrap()
        .value()
        .to_string();
    assert_ne!(session, "planted-by-an-attacker");
    assert!(session.len() >= 40);
    let mut http = Http::new(&portal);
    http.cookies
        .insert("deadbolt_session".into(), "planted-by-an-attacker".into());
    let page = http.get("/me").await;
    assert_eq!((page.status, page.location()), (303, "/login".to_string()));

    // Each sign-in gets its own id; signing out ends the session on the server.
    let mut again = Http::new(&portal);
    again.login("ann@example.test", PASSWORD).await;
    assert_ne!(again.cookies["deadbolt_session"], session);
    http.cookies
        .insert("deadbolt_session".into(), session.clone());
    assert_eq!(http.get("/me").await.status, 200);
    b.sign_out().await;
    assert_eq!(
        http.get("/me").await.status,
        303,
        "the old id no longer works"
    );
    b.close().await;
    portal.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_and_passwords_change() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    portal.person("ann@example.test", PASSWORD).await;
    let mut http = Http::new(&portal);
    for _ in 0..4 {
        let page = http.login("ann@example.test", "wrong password!").await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong email or password"));
    }
    let page = http.login("ann@example.test", PASSWORD).await;
    assert_eq!(page.status, 429, "even the right password waits");
    assert_eq!(page.headers["retry-after"], "1");
    assert!(!http.cookies.contains_key("deadbolt_session"));
    portal.clock.advance(chrono::Duration::seconds(1));
    let page = http.login("ann@example.test", PASSWORD).await;
    assert_eq!(page.status, 303);

    // Changing the password needs the current one, and ends the other sessions.
    let mut other = Http::new(&portal);
    other.login("ann@example.test", PASSWORD).await;
    let csrf = http.get("/password").await.csrf();
    let new = "another long password";
    let wrong = http
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current", "nope nope nope"),
                ("password", new),
                ("confirm", new),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    // A form token is good for one form: the page of the refusal carries a fresh one.
    let csrf = wrong.csrf();
    let done = http
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("password", new),
                ("confirm", new),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(http.get("/me").await.status, 200);
    assert_eq!(other.get("/me").await.status, 303);
    assert_eq!(
        Http::new(&portal)
            .login("ann@example.test", new)
            .await
            .status,
        303
    );
    portal.stop().await;
}

#[tokio::test]
async fn one_tenant_cannot_reach_another() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let service = &portal.service;
    let now = t0();
    let mut ids = Vec::new();
    for (name, admin, issuer) in [
        ("Acme", "admin@acme.test", "acme.test"),
        ("Globex", "admin@globex.test", "globex.test"),
    ] {
        let c = service.create_company(name).await.unwrap();
        let p = portal.person(admin, PASSWORD).await;
        portal
            .store
            .grant_role(&p.id, "admin", &c.id, now)
            .await
            .unwrap();
        let app = service
            .create_application(
                &c.id,
                issuer,
                None,
                UnenrolledPolicy::Allow,
                AccountState::Unlocked,
            )
            .await
            .unwrap();
        let (key_id, _) = service.create_signing_key(&app.id).await.unwrap();
        let (sdk_id, _) = service.create_sdk_key(&c.id).await.unwrap();
        ids.push((c.id, app.id, key_id, sdk_id));
    }
    let (acme, acme_app, _, _) = ids[0].clone();
    let (globex, globex_app, globex_key, globex_sdk) = ids[1].clone();
    let bob = portal.person("bob@globex.test", PASSWORD).await;
    let (bob_acc, _) = portal
        .store
        .enroll(&globex_app, "bob", Some(&bob.id), now, &Default::default())
        .await
        .unwrap();

    // In the browser, Acme's admin guesses Globex's URLs.
    let b = Browser::start().await;
    b.sign_in(&portal.url, "admin@acme.test", PASSWORD).await;
    for path in [
        format!("/companies/{globex}"),
        format!("/companies/{globex}/apps/{globex_app}"),
        format!("/companies/{globex}/apps/{globex_app}/accounts"),
        format!("/companies/{globex}/apps/{globex_app}/attempts"),
        format!("/companies/{globex}/apps/{globex_app}/integration"),
        format!("/companies/{acme}/apps/{globex_app}"),
        format!("/companies/{acme}/apps/{globex_app}/accounts"),
        "/operator".to_string(),
    ] {
        b.goto(&format!("{}{path}", portal.url)).await;
        let body = b.body().await;
        assert!(body.contains("does not exist"), "{path}: {body}");
        assert!(
            !body.contains("globex.test") && !body.contains("Globex"),
            "{path}: {body}"
        );
    }
    b.goto(&format!("{}/companies/{globex}", portal.url)).await;
    b.shot("15-another-tenant-not-found").await;
    b.close().await;

    // And forges its forms, with a valid session and CSRF token of its own.
    let mut http = Http::new(&portal);
    http.login("admin@acme.test", PASSWORD).await;
    let csrf = http.get(&format!("/companies/{acme}")).await.csrf();
    for (path, form) in [
        (
            format!("/companies/{globex}/sdk-keys"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/companies/{acme}/sdk-keys/{globex_sdk}/revoke"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/companies/{globex}/apps/{globex_app}/keys"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/companies/{acme}/apps/{acme_app}/keys/{globex_key}/revoke"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/companies/{acme}/apps/{globex_app}/accounts/unlock"),
            vec![("csrf", csrf.as_str()), ("account", "bob")],
        ),
        (
            format!("/companies/{globex}/apps/{globex_app}/settings"),
            vec![
                ("csrf", csrf.as_str()),
                ("unenrolled", "deny"),
                ("default_state", "locked"),
            ],
        ),
        (
            format!("/me/accounts/{}/lock", bob_acc.id),
            vec![("csrf", csrf.as_str())],
        ),
    ] {
        // Each forgery with a fresh token of its own: a used one would be refused as a repeat.
        let fresh = http.get(&format!("/companies/{acme}")).await.csrf();
        let form: Vec<(&str, &str)> = form
            .into_iter()
            .map(|(k, v)| (k, if k == "csrf" { fresh.as_str() } else { v }))
            .collect();
        let page = http.post(&path, &form).await;
        assert_eq!(page.status, 404, "{path}");
    }
    let keys = portal.store.signing_keys(&globex_app).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_at.is_none());
    assert!(portal.store.sdk_keys(&globex).await.unwrap()[0]
        .revoked_at
        .is_none());
    let app = service.application(&globex_app).await.unwrap();
    assert_eq!(app.unenrolled, UnenrolledPolicy::Allow);
    assert_eq!(
        service.account(&globex_app, "bob").await.unwrap().state,
        AccountState::Unlocked
    );
    portal.stop().await;
}

#[tokio::test]
async fn a_pairing_code_pairs_an_account_once() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let service = &portal.service;
    let c = service.create_company("Acme").await.unwrap();
    service
        .create_application(
            &c.id,
            "acme.test",
            None,
            UnenrolledPolicy::Allow,
            AccountState::Locked,
        )
        .await
        .unwrap();
    let other = service.create_company("Globex").await.unwrap();
    let (_, other_sdk) = service.create_sdk_key(&other.id).await.unwrap();
    let (_, sdk) = service.create_sdk_key(&c.id).await.unwrap();
    let ann = portal.person("ann@example.test", PASSWORD).await;
    let mut http = Http::new(&portal);
    http.login("ann@example.test", PASSWORD).await;
    let csrf = http.get("/me/pairing").await.csrf();
    let page = http.post("/me/pairing", &[("csrf", &csrf)]).await;
    let i = page.body.find("id=\"pairing-code\">").unwrap() + 18;
    let code = page.body[i..i + 9].to_string();

    let pair = |token: String, code: String| {
        let url = format!("{}/nl3/api/v1/sdk/pair", portal.url);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("x-nl3-server-api-token", token)
                .body(serde_json::json!({"code": code, "domain": "acme.test", "userAccountId": "ann-42"}).to_string())
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, _) = pair(other_sdk.clone(), code.clone()).await;
    assert_eq!(status, 403, "another company's key");
    let (status, body) = pair(sdk.clone(), "ZZZZ-ZZZZ".into()).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = pair(sdk.clone(), code.to_lowercase()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paired"], true);
    let accounts = portal.store.person_accounts(&ann.id).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].account, "ann-42");
    let (status, _) = pair(sdk, code).await;
    assert_eq!(status, 409, "the account is paired already");
    let me = http.get("/me").await;
    assert!(me.body.contains("ann-42"));
    portal.stop().await;
}
