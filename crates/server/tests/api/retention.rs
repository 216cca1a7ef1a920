//! Attempts are kept for the retention and then removed in the background, a run at a time,
//! while checks go on; `deadbolt attempts prune` does it by hand; the SDK's feed pages by id.

use chrono::Duration;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{deadbolt, deadbolt_fails};
use crate::helpers::{eventually, TestApp};
use deadbolt::service::By;

const ISSUER: &str = "retention.example.com";

async fn setup(t: &TestApp) -> (deadbolt_store::Application, String, String) {
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&app.company_id).await.unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "alice", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "alice").await.unwrap();
    (app, key, sdk)
}

async fn recorded(t: &TestApp, n: i64) {
    let store = t.store.clone();
    eventually(|| {
        let store = store.clone();
        async move { store.attempt_count().await.unwrap() == n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_past_the_retention_go_while_checks_are_answered() {
    let t = TestApp::spawn_with(|c| {
        c.attempts_retention = Some(std::time::Duration::from_secs(90 * 86_400));
        c.housekeeping_every = std::time::Duration::from_millis(50);
    })
    .await;
    let (app, key, _) = setup(&t).await;
    for _ in 0..600 {
        assert!(t.locked(ISSUER, &key, "alice").await);
    }
    recorded(&t, 600).await;
    // Ninety-one days on: those are past the retention. Checks go on, all the time they are
    // being removed, and are answered, right.
    t.clock.advance(Duration::days(91));
    let token = t.token(ISSUER, &key, "alice");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (url, stop) = (t.url.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                let resp = http
                    .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
                    .header("x-nl3-authorization-token", &token)
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["locked"], true, "a check during the pruning");
                n += 1;
            }
            n
        })
    };
    let horizon = deadbolt_core::Clock::now(&*t.clock) - Duration::days(90);
    let service = t.service.clone();
    let app_id = app.id.clone();
    eventually(|| {
        let (service, app_id) = (service.clone(), app_id.clone());
        async move {
            let all = service.attempts_after(&app_id, 0, 20_000).await.unwrap();
            all.iter().all(|a| a.at > horizon)
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let newer = checker.await.unwrap();
    recorded(&t, newer).await;
    let left = t.service.attempts_after(&app.id, 0, 20_000).await.unwrap();
    assert_eq!(left.len() as i64, newer);
    assert!(
        left.iter().all(|a| a.at > horizon),
        "only newer ones are kept"
    );
    assert!(
        left.windows(2)
            .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at),
        "and in their order"
    );
    t.stop().await;
}

#[tokio::test]
async fn without_retention_nothing_is_removed() {
    let t = TestApp::spawn_with(|c| {
        c.attempts_retention = None;
        c.housekeeping_every = std::time::Duration::from_millis(20);
    })
    .await;
    let (_, key, _) = setup(&t).await;
    for _ in 0..20 {
        t.locked(ISSUER, &key, "alice").await;
    }
    recorded(&t, 20).await;
    t.clock.advance(Duration::days(3650));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(t.store.attempt_count().await.unwrap(), 20);
    t.stop().await;
}

#[tokio::test]
async fn attempts_are_pruned_by_hand_before_a_date() {
    let t = TestApp::spawn_with(|c| c.attempts_retention = None).await;
    let (app, key, _) = setup(&t).await;
    // Ten at t0 (2026-11-27), five a week later.
    for _ in 0..10 {
        t.locked(ISSUER, &key, "alice").await;
    }
    recorded(&t, 10).await;
    t.clock.advance(Duration::days(7));
    for _ in 0..5 {
        t.locked(ISSUER, &key, "alice").await;
    }
    recorded(&t, 15).await;
    let out = deadbolt(&t.db_url, &["attempts", "prune", "--before", "2026-12-01"]);
    assert_eq!(out["removed"], 10);
    assert_eq!(out["before"], "2026-12-01T00:00:00Z");
    assert_eq!(
        t.service
            .attempts_after(&app.id, 0, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    let err = deadbolt_fails(
        &t.db_url,
        &["attempts", "prune", "--before", "last tuesday"],
    );
    assert!(err.contains("2026-09-01"), "{err}");
    let err = deadbolt_fails(&t.db_url, &["attempts"]);
    assert!(err.contains("--app"), "{err}");
    let out = deadbolt(&t.db_url, &["attempts", "--app", &app.id]);
    assert_eq!(out["attempts"].as_array().unwrap().len(), 5);
    t.stop().await;
}

#[tokio::test]
async fn the_sdk_feed_pages_by_id() {
    let t = TestApp::spawn().await;
    let (_, key, sdk) = setup(&t).await;
    for _ in 0..250 {
        t.locked(ISSUER, &key, "alice").await;
    }
    recorded(&t, 250).await;
    let mut after = 0;
    let mut ids = Vec::new();
    for expected in [100, 100, 50, 0] {
        let (status, page) = t
            .sdk(
                Method::GET,
                &format!("attempts?domain={ISSUER}&after={after}&limit=100"),
                &sdk,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let list = page["attempts"].as_array().unwrap();
        assert_eq!(list.len(), expected);
        ids.extend(list.iter().map(|a| a["id"].as_i64().unwrap()));
        let next = page["next"].as_i64().unwrap();
        assert_eq!(next, *ids.last().unwrap_or(&0).max(&after));
        after = next;
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "ascending, no repeats");
    assert_eq!(ids.len(), 250, "no gaps");
    let (status, body) = t
        .sdk(
            Method::GET,
            &format!("attempts?domain={ISSUER}&after=0&since=2026-01-01T00:00:00Z"),
            &sdk,
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = t
        .sdk(
            Method::GET,
            &format!("attempts?domain={ISSUER}&after=abc"),
            &sdk,
            None,
        )
        .await;
    assert_eq!(status, 400);
    t.stop().await;
}
