//! Sign-in throttling: a guesser is slowed, counted before any password is looked at; the owner
//! gets in once the wait has passed; a reset ends the wait; the current-password check and
//! reset requests are throttled alike; replicas on one store count the same tries, a restart
//! forgets none, and a store that cannot count refuses.

use crate::helpers::TestApp;
use crate::portal::{Http, Page};
use chrono::Duration;
use deadbolt::MasterKeySource;

const PASSWORD: &str = "ann's long password";
const ANN: &str = "ann@example.test";

async fn with_ann() -> TestApp {
    let t = TestApp::spawn().await;
    t.service
        .create_person(ANN, Some(PASSWORD), None)
        .await
        .unwrap();
    t
}

/// `n` wrong sign-ins for `email` at once from one client; the answers' statuses.
async fn burst(t: &TestApp, email: &str, n: usize) -> Vec<Page> {
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    let tries = (0..n).map(|i| {
        let mut http = http.clone();
        let csrf = csrf.clone();
        let email = email.to_string();
        async move {
            let wrong = format!("wrong password {i}");
            http.post(
                "/login",
                &[("csrf", &csrf), ("email", &email), ("password", &wrong)],
            )
            .await
        }
    });
    futures_util::future::join_all(tries).await
}

fn wait_of(page: &Page) -> i64 {
    assert_eq!(page.status, 429, "{}", page.body);
    page.header("retry-after").parse().expect("a Retry-After")
}

#[tokio::test]
async fn a_burst_of_guesses_evaluates_a_handful_and_the_owner_gets_in_after_the_wait() {
    let t = with_ann().await;
    let pages = burst(&t, ANN, 100).await;
    let evaluated = pages.iter().filter(|p| p.status == 401).count();
    let refused: Vec<&Page> = pages.iter().filter(|p| p.status == 429).collect();
    assert_eq!(
        evaluated, 4,
        "three free tries and the one that starts the wait"
    );
    assert_eq!(refused.len(), 96);
    assert!(refused.iter().all(|p| wait_of(p) == 1));
    // The owner waits too, without their password being looked at…
    let mut owner = Http::new(&t.url);
    let page = owner.login(ANN, PASSWORD).await;
    assert_eq!(wait_of(&page), 1);
    assert!(page.body.contains("Try again in 1 s"), "{}", page.body);
    assert!(!owner.cookies.contains_key("deadbolt_session"));
    // …and gets in once it has passed.
    t.clock.advance(Duration::seconds(1));
    assert_eq!(owner.login(ANN, PASSWORD).await.status, 303);
    // Signing in forgot the count: a typo costs nothing.
    assert_eq!(Http::new(&t.url).login(ANN, "a typo!").await.status, 401);
    assert_eq!(Http::new(&t.url).login(ANN, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn waits_double_up_to_the_cap() {
    let t = with_ann().await;
    let mut waits = Vec::new();
    let mut http = Http::new(&t.url);
    for _ in 0..20 {
        let page = http.login(ANN, "wrong password").await;
        let wait = if page.status == 401 {
            0
        } else {
            wait_of(&page)
        };
        waits.push(wait);
        t.clock.advance(Duration::seconds(wait));
    }
    // Three free tries, one that starts the wait; then each try, made when the wait is over,
    // doubles it up to a minute.
    assert_eq!(
        waits,
        [0, 0, 0, 0, 1, 0, 2, 0, 4, 0, 8, 0, 16, 0, 32, 0, 60, 0, 60, 0]
    );
}

#[tokio::test]
async fn a_password_reset_ends_the_wait() {
    let t = with_ann().await;
    burst(&t, ANN, 10).await;
    assert_eq!(wait_of(&Http::new(&t.url).login(ANN, PASSWORD).await), 1);
    let token = "a-reset-token-for-ann-made-by-the-test-0123456";
    let now = t.service.now();
    t.store
        .create_link(
            &deadbolt::crypto::token_hash(token),
            "password_reset",
            ANN,
            None,
            now,
            now + Duration::hours(1),
        )
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    let new = "ann's new long password";
    let page = http
        .post(
            &format!("/welcome/{token}"),
            &[("csrf", &csrf), ("password", new), ("confirm", new)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(Http::new(&t.url).login(ANN, new).await.status, 303);
}

#[tokio::test]
async fn the_current_password_check_is_a_sign_in() {
    let t = with_ann().await;
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(ANN, PASSWORD).await.status, 303);
    let new = "ann's new long password";
    let change = |current: &'static str| {
        let mut http = http.clone();
        async move {
            // A form token is good for one form: each try sends the form of a fresh page.
            let csrf = http.get("/password").await.csrf();
            http.post(
                "/password",
                &[
                    ("csrf", &csrf),
                    ("current", current),
                    ("password", new),
                    ("confirm", new),
                ],
            )
            .await
        }
    };
    for _ in 0..4 {
        assert_eq!(change("not my password").await.status, 400);
    }
    assert_eq!(wait_of(&change(PASSWORD).await), 1);
    // One count for both doors of this browser.
    let mut signed_out = http.clone();
    signed_out.cookies.remove("deadbolt_session");
    assert_eq!(wait_of(&signed_out.login(ANN, PASSWORD).await), 1);
    t.clock.advance(Duration::seconds(1));
    assert_eq!(change(PASSWORD).await.status, 200);
    assert_eq!(Http::new(&t.url).login(ANN, new).await.status, 303);
}

#[tokio::test]
async fn a_client_address_is_slowed_across_addresses() {
    let t = TestApp::spawn().await;
    let mut http = Http::new(&t.url);
    for i in 0..11 {
        let page = http
            .login(&format!("guess{i}@example.test"), "password!")
            .await;
        assert_eq!(page.status, 401);
    }
    let page = http.login("guess11@example.test", "password!").await;
    assert_eq!(wait_of(&page), 1);
    // Another client is not held by it.
    let mut other = Http::from(&t.url, "127.0.0.2");
    assert_eq!(
        other
            .login("guess11@example.test", "password!")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn reset_requests_are_throttled_alike_for_known_and_unknown_addresses() {
    let t = with_ann().await;
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    for email in [ANN, "nobody@example.test"] {
        for _ in 0..4 {
            let page = http
                .post("/reset", &[("csrf", &csrf), ("email", email)])
                .await;
            assert_eq!(page.status, 200);
        }
        let page = http
            .post("/reset", &[("csrf", &csrf), ("email", email)])
            .await;
        assert_eq!(wait_of(&page), 1);
    }
}

/// Sign-up and reset answer alike whether or not the address has an account: same status,
/// same page, same headers.
#[tokio::test]
async fn answers_do_not_tell_who_has_an_account() {
    let t = with_ann().await;
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    for path in ["/reset", "/signup"] {
        let known = http.post(path, &[("csrf", &csrf), ("email", ANN)]).await;
        let unknown = http
            .post(path, &[("csrf", &csrf), ("email", "nobody@example.test")])
            .await;
        assert_eq!(known.status, 200, "{}", known.body);
        assert_eq!(known.status, unknown.status);
        assert_eq!(known.body, unknown.body);
        let headers = |p: &Page| {
            let mut h: Vec<(String, String)> = p
                .headers
                .iter()
                // The date and the request's own id differ between any two answers.
                .filter(|(k, _)| *k != "date" && *k != "x-request-id")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            h.sort();
            h
        };
        assert_eq!(headers(&known), headers(&unknown));
    }
}

/// A browser that signed in to an address before has its own count: a guesser elsewhere does
/// not make the owner wait there. Its cookie is good for that address only.
#[tokio::test]
async fn a_known_browser_is_not_held_by_a_guesser() {
    let t = with_ann().await;
    t.service
        .create_person("bob@example.test", Some(PASSWORD), None)
        .await
        .unwrap();
    let mut owner = Http::new(&t.url);
    assert_eq!(owner.login(ANN, PASSWORD).await.status, 303);
    let device = owner.cookies["deadbolt_device"].clone();
    let csrf = owner.get("/password").await.csrf();
    let pages = burst(&t, ANN, 50).await;
    assert_eq!(pages.iter().filter(|p| p.status == 401).count(), 4);
    // The owner's browser signs in at once, and its password form still works.
    let mut again = Http::new(&t.url);
    again
        .cookies
        .insert("deadbolt_device".into(), device.clone());
    assert_eq!(again.login(ANN, PASSWORD).await.status, 303);
    let new = "ann's new long password";
    let page = owner
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
    assert_eq!(page.status, 200, "{}", page.body);
    // Without the cookie, or with a forged one, the address's wait holds.
    let mut other = Http::new(&t.url);
    other
        .cookies
        .insert("deadbolt_device".into(), format!("x{device}"));
    assert_eq!(wait_of(&other.login(ANN, new).await), 1);
    // Ann's cookie is nothing to bob's address: it goes through bob's own count.
    let mut guesser = Http::new(&t.url);
    guesser.cookies.insert("deadbolt_device".into(), device);
    for _ in 0..4 {
        assert_eq!(
            guesser.login("bob@example.test", "guess!").await.status,
            401
        );
    }
    assert_eq!(
        wait_of(&guesser.login("bob@example.test", "guess!").await),
        1
    );
}

/// A server on the store at `db_url` with the master key `key`: another replica, or the same
/// server restarted.
async fn replica_of(db_url: &str, key: &MasterKeySource) -> TestApp {
    TestApp::spawn_on(
        db_url.to_string(),
        tempfile::tempdir().unwrap(),
        key.clone(),
        |_| {},
    )
    .await
}

/// Two replicas: two servers on one SQLite file, and on one PostgreSQL database when the test
/// cluster is configured. Ann has an account.
async fn replica_pairs() -> Vec<(TestApp, TestApp)> {
    let mut pairs = Vec::new();
    let mut firsts = vec![TestApp::spawn().await];
    firsts.extend(TestApp::spawn_pg().await);
    for a in firsts {
        a.service
            .create_person(ANN, Some(PASSWORD), None)
            .await
            .unwrap();
        let b = replica_of(&a.db_url, &a.key).await;
        pairs.push((a, b));
    }
    pairs
}

/// Signs in through the form of the server at `base`, whatever server `http` was made for
/// (the pre-sign-in CSRF cookie is not tied to one).
async fn login_at(http: &mut Http, base: &str, email: &str, password: &str) -> Page {
    let csrf = http.get(&format!("{base}/login")).await.csrf();
    http.post(
        &format!("{base}/login"),
        &[("csrf", &csrf), ("email", email), ("password", password)],
    )
    .await
}

/// Guesses alternating between two replicas are counted together: the try that waits on one
/// waits on the other, and the owner's right password, on either, forgets the count on both.
#[tokio::test]
async fn replicas_count_the_same_tries() {
    for (a, b) in replica_pairs().await {
        let mut guesser = Http::new(&a.url);
        for i in 0..4 {
            let at = if i % 2 == 0 { &a.url } else { &b.url };
            let page = login_at(&mut guesser, at, ANN, "wrong password").await;
            assert_eq!(page.status, 401, "try {i}");
        }
        for t in [&a, &b] {
            let page = login_at(&mut Http::new(&a.url), &t.url, ANN, PASSWORD).await;
            assert_eq!(wait_of(&page), 1, "on {}", t.db_url);
        }
        for t in [&a, &b] {
            t.clock.advance(Duration::seconds(1));
        }
        let mut owner = Http::new(&b.url);
        assert_eq!(owner.login(ANN, PASSWORD).await.status, 303);
        // Signing in on one replica forgot the count on both: a typo costs nothing.
        let typo = login_at(&mut Http::new(&a.url), &a.url, ANN, "a typo!").await;
        assert_eq!(typo.status, 401);
        b.stop().await;
        a.stop().await;
    }
}

/// A browser that signed in through one replica is known to the other: a guesser on the other
/// does not make the owner wait there.
#[tokio::test]
async fn a_known_browser_is_known_to_every_replica() {
    for (a, b) in replica_pairs().await {
        let mut owner = Http::new(&a.url);
        assert_eq!(owner.login(ANN, PASSWORD).await.status, 303);
        owner.cookies.remove("deadbolt_session");
        let pages = burst(&b, ANN, 20).await;
        assert_eq!(pages.iter().filter(|p| p.status == 401).count(), 4);
        assert_eq!(
            login_at(&mut owner, &b.url, ANN, PASSWORD).await.status,
            303
        );
        let mut stranger = Http::new(&a.url);
        assert_eq!(wait_of(&stranger.login(ANN, PASSWORD).await), 1);
        b.stop().await;
        a.stop().await;
    }
}

/// A server restarted on the same store still makes the guessed address wait.
#[tokio::test]
async fn a_restarted_server_remembers_the_wait() {
    let data = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", data.path().join("deadbolt.db").display());
    let mut stores = vec![(sqlite, MasterKeySource::default())];
    // A fresh PostgreSQL database and its key, when the test cluster is configured.
    if let Some(t) = TestApp::spawn_pg().await {
        stores.push((t.db_url.clone(), t.key.clone()));
        t.stop().await;
    }
    for (db_url, key) in stores {
        let t = replica_of(&db_url, &key).await;
        t.service
            .create_person(ANN, Some(PASSWORD), None)
            .await
            .unwrap();
        let pages = burst(&t, ANN, 10).await;
        assert_eq!(pages.iter().filter(|p| p.status == 401).count(), 4);
        t.stop().await;
        let t = replica_of(&db_url, &key).await;
        assert_eq!(wait_of(&Http::new(&t.url).login(ANN, PASSWORD).await), 1);
        t.clock.advance(Duration::seconds(1));
        assert_eq!(Http::new(&t.url).login(ANN, PASSWORD).await.status, 303);
        t.stop().await;
    }
}

/// A store that cannot count a try refuses it (503): not let through uncounted, even with the
/// right password.
#[tokio::test]
async fn a_store_that_cannot_count_refuses_the_sign_in() {
    let t = with_ann().await;
    let path = t.db_url.trim_start_matches("sqlite://").to_string();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute("DROP TABLE throttle_entries", []).unwrap();
    })
    .await
    .unwrap();
    let mut http = Http::new(&t.url);
    let page = http.login(ANN, PASSWORD).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(!http.cookies.contains_key("deadbolt_session"));
    t.stop().await;
}
