//! The first-run link: only while no operator exists, once, for an hour, and only for a new
//! person.

use crate::helpers::TestApp;
use crate::portal::Http;

const PASSWORD: &str = "a long operator password";

async fn link(t: &TestApp) -> String {
    deadbolt::portal::first_run_link(&t.service, &t.url)
        .await
        .unwrap()
        .expect("no operator yet: a link")
}

/// Posts the first-run form with a fresh browser; returns the status.
async fn use_link(t: &TestApp, link: &str, email: &str) -> u16 {
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    http.post(
        link,
        &[
            ("csrf", &csrf),
            ("email", email),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    )
    .await
    .status
}

async fn operators(t: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for p in t.store.persons(1000).await.unwrap() {
        let roles = t.store.roles(&p.id).await.unwrap();
        if roles.iter().any(|r| r.role == "operator") {
            out.push(p.email);
        }
    }
    out
}

#[tokio::test]
async fn the_link_dies_when_the_cli_makes_an_operator() {
    let t = TestApp::spawn().await;
    let link = link(&t).await;
    deadbolt::portal::create_operator(&t.service, "cli@example.test", PASSWORD)
        .await
        .unwrap();
    assert_eq!(Http::new(&t.url).get(&link).await.status, 404);
    assert_eq!(use_link(&t, &link, "late@example.test").await, 404);
    assert_eq!(operators(&t).await, ["cli@example.test"]);
    assert!(t
        .store
        .person_by_email("late@example.test")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        deadbolt::portal::first_run_link(&t.service, &t.url)
            .await
            .unwrap(),
        None,
        "no new link once an operator exists"
    );
    assert!(
        deadbolt::portal::invite_operator(&t.service, &t.url, "x@example.test")
            .await
            .is_err(),
        "nor an emailed one"
    );
}

#[tokio::test]
async fn the_link_works_once() {
    let t = TestApp::spawn().await;
    let link = link(&t).await;
    let other = self::link(&t).await;
    assert_eq!(use_link(&t, &link, "first@example.test").await, 303);
    assert_eq!(use_link(&t, &link, "second@example.test").await, 404);
    // Every other first-run link died with the first operator.
    assert_eq!(use_link(&t, &other, "third@example.test").await, 404);
    assert_eq!(operators(&t).await, ["first@example.test"]);
}

#[tokio::test]
async fn the_link_expires_within_an_hour() {
    let t = TestApp::spawn().await;
    let link = link(&t).await;
    t.clock.advance(chrono::Duration::minutes(59));
    assert_eq!(Http::new(&t.url).get(&link).await.status, 200);
    t.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(Http::new(&t.url).get(&link).await.status, 404);
    assert_eq!(use_link(&t, &link, "late@example.test").await, 404);
    assert!(operators(&t).await.is_empty());
    // The next start makes a new one.
    assert_eq!(
        use_link(&t, &self::link(&t).await, "ops@example.test").await,
        303
    );
}

#[tokio::test]
async fn the_link_never_touches_an_existing_person() {
    let t = TestApp::spawn().await;
    let link = link(&t).await;
    t.service
        .create_person("ann@example.test", Some("ann's own password"), None)
        .await
        .unwrap();
    let before = t.store.password_hash("ann@example.test").await.unwrap();
    let mut http = Http::new(&t.url);
    let csrf = http.pre_csrf().await;
    let page = http
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("email", "Ann@Example.test"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("cannot be used"), "{}", page.body);
    assert!(!http.cookies.contains_key("deadbolt_session"));
    assert_eq!(
        t.store.password_hash("ann@example.test").await.unwrap(),
        before,
        "ann's password is unchanged"
    );
    assert!(operators(&t).await.is_empty());
    assert_eq!(
        Http::new(&t.url)
            .login("ann@example.test", "ann's own password")
            .await
            .status,
        303
    );
    // Nothing was used up: the link still makes a new operator.
    assert_eq!(use_link(&t, &link, "ops@example.test").await, 303);
    assert_eq!(operators(&t).await, ["ops@example.test"]);
}

/// Uses at once, of one link and of two, make exactly one operator, on both engines.
#[tokio::test]
async fn simultaneous_uses_make_one_operator() {
    let t = TestApp::spawn().await;
    race(&t).await;
    if let Some(t) = TestApp::spawn_pg().await {
        race(&t).await;
    }
}

async fn race(t: &TestApp) {
    let links = [link(t).await, link(t).await];
    let mut tries = Vec::new();
    for i in 0..6 {
        let link = links[i % 2].clone();
        tries.push(async move { use_link(t, &link, &format!("op{i}@example.test")).await });
    }
    let statuses = futures_util::future::join_all(tries).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 404),
        "{statuses:?}"
    );
    assert_eq!(operators(t).await.len(), 1);
    assert_eq!(t.store.persons(1000).await.unwrap().len(), 1);
}
