//! DESIGN.md's five rules, end to end, with the clock moved by hand.

use crate::helpers::*;
use chrono::Duration;
use deadbolt::service::By;
use deadbolt_core::{AccountState, Schedule, UnenrolledPolicy};
use deadbolt_store::AppSettings;

const ISS: &str = "rules.example.com";

#[tokio::test]
async fn rule1_unenrolled_policy() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    assert!(!t.locked(ISS, &key, "stranger").await);
    t.store
        .update_application(
            &app.id,
            &AppSettings {
                unenrolled: UnenrolledPolicy::Deny,
                default_state: AccountState::Unlocked,
                audit_mode: false,
            },
        )
        .await
        .unwrap();
    assert!(t.locked(ISS, &key, "stranger").await);
    // New enrolments take the default state.
    t.store
        .update_application(
            &app.id,
            &AppSettings {
                unenrolled: UnenrolledPolicy::Deny,
                default_state: AccountState::Locked,
                audit_mode: false,
            },
        )
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "newcomer", None)
        .await
        .unwrap();
    assert!(t.locked(ISS, &key, "newcomer").await);
}

#[tokio::test]
async fn rule2_master_lock_beats_everything() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    t.service
        .create_person("pat@example.com", None, None)
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "pat", Some("pat@example.com"))
        .await
        .unwrap();
    t.service
        .unlock(&By::CLI, &app.id, "pat", Some(Duration::minutes(30)))
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "pat").await);
    t.service
        .set_master_lock(&By::CLI, "pat@example.com", true)
        .await
        .unwrap();
    assert!(
        t.locked(ISS, &key, "pat").await,
        "master lock beats an open window"
    );
    t.service
        .set_master_lock(&By::CLI, "pat@example.com", false)
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "pat").await);
}

#[tokio::test]
async fn rule3_unlock_window_closes_by_itself() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "win", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "win").await.unwrap();
    assert!(t.locked(ISS, &key, "win").await);
    t.service
        .unlock(&By::CLI, &app.id, "win", Some(Duration::minutes(15)))
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "win").await);
    t.clock.advance(Duration::minutes(14));
    assert!(!t.locked(ISS, &key, "win").await);
    t.clock.advance(Duration::minutes(1));
    assert!(
        t.locked(ISS, &key, "win").await,
        "the window closed without anybody writing anything"
    );
}

#[tokio::test]
async fn rule4_schedules_in_the_persons_time_zone() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    // Tokyo is UTC+9: t0 (12:00 UTC Friday) is 21:00 Friday in Tokyo.
    t.service
        .create_person("kenji@example.com", None, Some("Asia/Tokyo"))
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &app.id, "kenji", Some("kenji@example.com"))
        .await
        .unwrap();
    t.service
        .add_schedule(
            &By::CLI,
            "kenji@example.com",
            None,
            Schedule::parse("all", "23:00-07:00").unwrap(),
        )
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "kenji").await, "21:00 in Tokyo");
    t.clock.advance(Duration::hours(2));
    assert!(t.locked(ISS, &key, "kenji").await, "23:00 in Tokyo");
    t.clock.advance(Duration::hours(8));
    assert!(!t.locked(ISS, &key, "kenji").await, "07:00 in Tokyo");
    // An open unlock window beats a schedule.
    t.clock.advance(Duration::hours(16));
    assert!(t.locked(ISS, &key, "kenji").await);
    t.service
        .unlock(&By::CLI, &app.id, "kenji", Some(Duration::minutes(5)))
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "kenji").await);
}

#[tokio::test]
async fn rule5_own_state_and_audit_mode() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "own", None)
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "own").await);
    t.service.lock(&By::CLI, &app.id, "own").await.unwrap();
    assert!(t.locked(ISS, &key, "own").await);
    // Audit mode: answered as not locked, recorded as what would have happened.
    t.store
        .update_application(
            &app.id,
            &AppSettings {
                unenrolled: UnenrolledPolicy::Allow,
                default_state: AccountState::Unlocked,
                audit_mode: true,
            },
        )
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "own").await);
    let service = t.service.clone();
    let id = app.id.clone();
    eventually(|| {
        let (service, id) = (service.clone(), id.clone());
        async move { service.attempts(&id, 10).await.unwrap().len() == 3 }
    })
    .await;
    let newest = &t.service.attempts(&app.id, 1).await.unwrap()[0];
    assert!(newest.locked, "the attempt says what would have happened");
    assert_eq!(newest.reason, "account_locked");
    t.service
        .unlock(&By::CLI, &app.id, "own", None)
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "own").await);
}

#[tokio::test]
async fn unlock_once_lets_exactly_one_sign_in_through() {
    let t = TestApp::spawn().await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "once", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "once").await.unwrap();
    t.service
        .unlock_once(&By::CLI, &app.id, "once")
        .await
        .unwrap();
    assert!(
        t.service
            .account(&app.id, "once")
            .await
            .unwrap()
            .relock_after_use
    );
    // Several sign-ins at the same moment: exactly one gets through.
    let tok = t.token(ISS, &key, "once");
    let answers = futures_join(&t, &tok, 8).await;
    assert_eq!(answers.iter().filter(|l| !**l).count(), 1, "{answers:?}");
    assert!(t.locked(ISS, &key, "once").await);
    let acc = t.service.account(&app.id, "once").await.unwrap();
    assert!(!acc.relock_after_use && acc.state == AccountState::Locked);
    // An explicit unlock is for good again.
    t.service
        .unlock_once(&By::CLI, &app.id, "once")
        .await
        .unwrap();
    t.service
        .unlock(&By::CLI, &app.id, "once", None)
        .await
        .unwrap();
    assert!(!t.locked(ISS, &key, "once").await);
    assert!(!t.locked(ISS, &key, "once").await);
    assert!(t
        .service
        .unlock_once(&By::CLI, &app.id, "nobody")
        .await
        .is_err());
}

async fn futures_join(t: &TestApp, tok: &str, n: usize) -> Vec<bool> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let (http, url, tok) = (t.http.clone(), t.url.clone(), tok.to_string());
        handles.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
                .header("x-nl3-authorization-token", tok)
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()["locked"]
                .as_bool()
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
