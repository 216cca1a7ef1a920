//! Text the signing-in client chose can be any length, and a phone is narrow: no page may grow
//! wider than the window, at desktop or phone width, and the navigation stays one row.

use crate::harness::*;
use deadbolt::service::By;
use deadbolt_core::{AccountState, UnenrolledPolicy};
use serde_json::json;

const ADMIN: &str = "admin@layout.test";
const PAT: &str = "pat@layout.test";
const PASSWORD: &str = "a long enough password";
const ISSUER: &str = "wide.layout.test";

/// How far the page is wider than the window (0: it fits).
async fn overflow(b: &Browser) -> i64 {
    b.client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

async fn height(b: &Browser, css: &str) -> i64 {
    b.client
        .execute(
            "return Math.round(document.querySelector(arguments[0]).getBoundingClientRect().height);",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn long_client_text_and_phones_keep_every_page_in_the_window() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let s = &portal.service;
    let company = s.create_company("Wide Company").await.unwrap();
    let app = s
        .create_application(
            &company.id,
            ISSUER,
            Some("An application with a rather long name to wrap"),
            UnenrolledPolicy::Allow,
            AccountState::Unlocked,
        )
        .await
        .unwrap();
    let (_, key) = s.create_signing_key(&app.id).await.unwrap();
    let admin = portal.person(ADMIN, PASSWORD).await;
    s.grant_role(&admin.id, "admin", &company.id, s.now())
        .await
        .unwrap();
    portal.person(PAT, PASSWORD).await;
    s.enroll(&By::CLI, &app.id, "pat", Some(PAT)).await.unwrap();
    s.lock(&By::CLI, &app.id, "pat").await.unwrap();

    // A blocked sign-in whose client sent 3,000 characters of device, some of them markup.
    let device = format!("<b>{}</b>{}", "Mozilla/5.0".repeat(150), "x".repeat(1342));
    let t = {
        use deadbolt_core::Clock;
        portal.clock.now().timestamp() as f64
    };
    let claims = json!({"iss": ISSUER, "aud": format!("http://127.0.0.1:{}", portal.port),
        "sub": "pat", "iat": t - 60.0, "exp": t + 300.0});
    let token = deadbolt_core::token::sign_hs256(
        &claims,
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim()).unwrap(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/nl3/api/v1/accountProtectionCheck", portal.url))
        .header("x-nl3-authorization-token", token)
        .body(
            json!({"userDevice": device, "userLocation": "L".repeat(400), "userIP": "203.0.113.9"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..100 {
        if !s.attempts(&app.id, 10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let b = Browser::start().await;
    let base = portal.url.clone();
    let admin_attempts = format!("{base}/companies/{}/apps/{}/attempts", company.id, app.id);
    for (who, page, name) in [
        (PAT, format!("{base}/me"), "person-me"),
        (ADMIN, admin_attempts.clone(), "admin-attempts"),
        (
            ADMIN,
            format!("{base}/companies/{}", company.id),
            "admin-company",
        ),
    ] {
        b.client.set_window_size(1280, 900).await.unwrap();
        b.sign_in(&base, who, PASSWORD).await;
        b.goto(&page).await;
        b.find("main").await;
        if name != "admin-company" {
            // Shown, and as the text it is: the markup is not made into an element.
            assert!(
                b.body().await.contains("<b>Mozilla/5.0"),
                "{name}: the attempt's device is shown as text"
            );
        }
        assert_eq!(overflow(&b).await, 0, "{name} at desktop width");
        b.shot(&format!("layout-{name}-desktop")).await;
        b.client.set_window_size(390, 844).await.unwrap();
        b.goto(&page).await;
        b.find("main").await;
        assert_eq!(overflow(&b).await, 0, "{name} at phone width");
        // The links: one row (they scroll sideways), not three.
        assert!(
            height(&b, "header nav").await < 48,
            "{name}: the navigation is {} px high on a phone",
            height(&b, "header nav").await
        );
        b.shot(&format!("layout-{name}-phone")).await;
        b.sign_out().await;
    }
    // The favicon is answered, not a 404.
    let icon = reqwest::get(format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    b.close().await;
    portal.stop().await;
}
